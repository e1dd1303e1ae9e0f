//! hearth's vocabulary as llguidance sees it: every token id's exact bytes in a `toktrie` trie, special tokens
//! marked, and hearth's own tokenizer for the text a grammar forces.
//!
//! Marking follows llguidance's convention (docs/special_tokens.md): control and unknown tokens (`<|im_end|>`,
//! `<end_of_turn>`, `<unk>`) are stored as `0xFF` + their text, so no grammar can spell them by accident while a
//! Lark grammar can still name them (`<|im_end|>`); user-defined tokens are text that always tokenizes as itself
//! (Gemma's runs of `\n`, Qwen's `<tool_call>`), so they keep their text; unused ids and ids past the tokenizer's
//! vocabulary get no bytes and are never allowed. The trie's end-of-sequence set is the tokenizer's
//! end-of-generation ids.

use hearth_text::{TokenType, Tokenizer};
use llguidance::toktrie::{TokRxInfo, TokTrie, TokenId, TokenizerEnv, INVALID_TOKEN};
use std::sync::Arc;

/// The bytes llguidance sees for each of the model's `n_vocab` ids.
pub fn token_table(tok: &Tokenizer, n_vocab: usize) -> Vec<Vec<u8>> {
    (0..n_vocab as u32)
        .map(|id| match tok.token_type(id) {
            Some(TokenType::Control | TokenType::Unknown) => {
                let mut b = vec![TokTrie::SPECIAL_TOKEN_MARKER];
                b.extend_from_slice(tok.token_bytes_ref(id));
                b
            }
            Some(TokenType::Normal | TokenType::Byte | TokenType::UserDefined) => {
                tok.token_bytes_ref(id).to_vec()
            }
            Some(TokenType::Unused | TokenType::Undefined) | None => Vec::new(),
        })
        .collect()
}

/// A [`TokenizerEnv`] over hearth's tokenizer.
pub struct HearthTokEnv {
    tok: Arc<Tokenizer>,
    trie: TokTrie,
    n_vocab: usize,
    /// Whether `encode` of a fragment is the tokenization the model would see mid-text (false for SentencePiece
    /// vocabularies that prepend a space to every fragment): only then does llguidance force tokens.
    canonical: bool,
}

impl HearthTokEnv {
    pub fn new(tok: Arc<Tokenizer>, n_vocab: usize) -> HearthTokEnv {
        let words = token_table(&tok, n_vocab);
        let eog: Vec<u32> = tok
            .eog_ids()
            .iter()
            .copied()
            .filter(|&id| (id as usize) < n_vocab && !words[id as usize].is_empty())
            .collect();
        let info = TokRxInfo {
            vocab_size: n_vocab as u32,
            tok_eos: eog.first().copied().unwrap_or(INVALID_TOKEN),
            tok_bos: tok.bos(),
            tok_pad: None,
            tok_unk: None,
            tok_end_of_turn: None,
        };
        let mut trie = TokTrie::from(&info, &words);
        if !eog.is_empty() {
            trie = trie.with_eos_tokens(&eog);
        }
        let canonical = !tok.adds_space_prefix();
        HearthTokEnv {
            tok,
            trie,
            n_vocab,
            canonical,
        }
    }
}

impl TokenizerEnv for HearthTokEnv {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    fn tokenize_bytes(&self, s: &[u8]) -> Vec<TokenId> {
        let ids = std::str::from_utf8(s)
            .ok()
            .and_then(|text| self.tok.encode(text, false, false).ok());
        match ids {
            Some(ids) if ids.iter().all(|&id| (id as usize) < self.n_vocab) => ids,
            // Bytes that are not UTF-8 (a grammar cut a character) or ids the model does not have.
            _ => self.trie.greedy_tokenize(s),
        }
    }

    fn tokenize_is_canonical(&self) -> bool {
        self.canonical
    }
}
