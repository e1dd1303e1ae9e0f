//! [`Tokenizer`]: text to token ids and back, built from a GGUF file's vocabulary, matching llama.cpp.
//!
//! Encoding runs in two stages, as in llama.cpp:
//! 1. special-token partition: text that spells a user-defined token (always) or a control/unknown token (when
//!    `parse_special`) becomes that token; longer special tokens are cut out first;
//! 2. every remaining text fragment goes through the HF `tokenizers` pipeline: for byte-level BPE, the regex
//!    pre-tokenizer of `tokenizer.ggml.pre`, the byte-to-character map and the file's merges; for SentencePiece,
//!    spaces become `▁` (with a leading `▁` on a fragment at the start or after a special token when
//!    `add_space_prefix`) and llama.cpp's score-driven merging with byte fallback (`spm.rs`); for WordPiece (BERT),
//!    HF's BertNormalizer (clean-up, CJK spacing, lowercasing and accent stripping as the file says),
//!    BertPreTokenizer (whitespace and punctuation splits) and greedy longest-match WordPiece.
//!
//! Decoding does not use the HF decoders: every token's exact bytes are tabulated once ([`Tokenizer::token_bytes`],
//! also what constrained decoding needs) and decoding concatenates them.

use crate::error::{Result, TextError};
use crate::spm::Spm;
use crate::vocab::{ModelKind, TokenType, Vocab};
use aho_corasick::AhoCorasick;
use hearth_gguf::Gguf;
use std::collections::HashMap;
use tokenizers::models::bpe::{Vocab as BpeVocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;

/// What encodes a text fragment: HF `tokenizers` for byte-level BPE, llama.cpp's score-driven merging for
/// SentencePiece.
enum Backend {
    Hf(Box<tokenizers::Tokenizer>),
    Spm(Spm),
}

/// A tokenizer built from GGUF metadata. Cheap to share between threads (`Send + Sync`).
pub struct Tokenizer {
    kind: ModelKind,
    backend: Backend,
    pieces: Vec<String>,
    types: Vec<TokenType>,
    /// The bytes of every token, back to back; token `i` is `bytes[offsets[i]..offsets[i + 1]]`.
    bytes: Vec<u8>,
    offsets: Vec<u32>,
    /// Finds special tokens in text; pattern `k` is token `special_ids[k]`.
    special_finder: Option<AhoCorasick>,
    special_ids: Vec<u32>,
    bos: Option<u32>,
    eos: Option<u32>,
    add_bos: bool,
    add_eos: bool,
    add_space_prefix: bool,
    eog: Vec<u32>,
}

/// A piece of the input after the special-token partition.
enum Fragment<'t> {
    Text(&'t str),
    Token(u32),
}

impl Tokenizer {
    /// Builds the tokenizer described by the file's `tokenizer.ggml.*` metadata.
    pub fn from_gguf(g: &Gguf) -> Result<Tokenizer> {
        let v = Vocab::from_gguf(g)?;

        let mut by_text: HashMap<&str, u32> = HashMap::with_capacity(v.pieces.len());
        for (i, p) in v.pieces.iter().enumerate() {
            if let Some(first) = by_text.insert(p.as_str(), i as u32) {
                return Err(TextError::BadMetadata {
                    key: "tokenizer.ggml.tokens",
                    why: format!("duplicate token {p:?} at ids {first} and {i}"),
                });
            }
        }

        let backend = match v.kind {
            ModelKind::BytePairBpe => Backend::Hf(Box::new(build_byte_level(&v, &by_text)?)),
            ModelKind::WordPiece => Backend::Hf(Box::new(build_wordpiece(&v)?)),
            ModelKind::SentencePiece => {
                Backend::Spm(Spm::new(&v.pieces, &v.types, &v.scores, v.unk))
            }
        };
        drop(by_text);

        let (bytes, offsets) = token_byte_table(&v);

        // Candidates for the partition: what llama.cpp caches as special (control, user-defined, unknown).
        let special_ids: Vec<u32> = (0..v.pieces.len() as u32)
            .filter(|&i| {
                matches!(
                    v.types[i as usize],
                    TokenType::Control | TokenType::UserDefined | TokenType::Unknown
                )
            })
            .collect();
        let special_finder = if special_ids.is_empty() {
            None
        } else {
            let pats = special_ids.iter().map(|&i| v.pieces[i as usize].as_str());
            Some(AhoCorasick::new(pats).map_err(|e| TextError::Build(e.to_string()))?)
        };

        Ok(Tokenizer {
            kind: v.kind,
            backend,
            bytes,
            offsets,
            special_finder,
            special_ids,
            bos: v.bos,
            eos: v.eos,
            add_bos: v.add_bos,
            add_eos: v.add_eos,
            add_space_prefix: v.add_space_prefix,
            eog: v.eog,
            pieces: v.pieces,
            types: v.types,
        })
    }

    /// Token ids for `text`. `add_special` adds BOS (and EOS) where the file's `add_bos_token` (`add_eos_token`)
    /// says so; `parse_special` turns text that spells a control token (`<|im_start|>`) into that token.
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Result<Vec<u32>> {
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        if add_special && self.add_bos {
            out.extend(self.bos);
        }
        let mut prev_special = true;
        for frag in self.partition(text, parse_special) {
            match frag {
                Fragment::Token(id) => {
                    out.push(id);
                    prev_special = true;
                }
                Fragment::Text(s) => {
                    let spm_prefix = self.kind == ModelKind::SentencePiece
                        && self.add_space_prefix
                        && prev_special;
                    match &self.backend {
                        Backend::Hf(hf) => {
                            let enc = hf
                                .encode_fast(s, false)
                                .map_err(|e| TextError::Encode(e.to_string()))?;
                            out.extend_from_slice(enc.get_ids());
                        }
                        Backend::Spm(spm) => {
                            let prefix = if spm_prefix { "▁" } else { "" };
                            let text = format!("{prefix}{}", s.replace(' ', "▁"));
                            spm.encode(&self.pieces, &text, &mut out);
                        }
                    }
                    prev_special = false;
                }
            }
        }
        if add_special && self.add_eos {
            out.extend(self.eos);
        }
        Ok(out)
    }

    /// llama.cpp's special-token partition: for each special token present in the text, longest first, cut
    /// every occurrence out of the text fragments that remain.
    fn partition<'t>(&self, text: &'t str, parse_special: bool) -> Vec<Fragment<'t>> {
        let mut frags = Vec::new();
        if text.is_empty() {
            return frags;
        }
        frags.push(Fragment::Text(text));
        let Some(finder) = &self.special_finder else {
            return frags;
        };
        let mut present: Vec<u32> = finder
            .find_overlapping_iter(text)
            .map(|m| self.special_ids[m.pattern().as_usize()])
            .filter(|&id| parse_special || self.types[id as usize] == TokenType::UserDefined)
            .collect();
        present.sort_unstable_by(|&a, &b| {
            let (la, lb) = (self.pieces[a as usize].len(), self.pieces[b as usize].len());
            lb.cmp(&la).then(a.cmp(&b))
        });
        present.dedup();
        for id in present {
            let needle = self.pieces[id as usize].as_str();
            let mut next = Vec::with_capacity(frags.len() + 2);
            for f in frags {
                match f {
                    Fragment::Text(s) if s.contains(needle) => {
                        let mut last = 0;
                        for (pos, _) in s.match_indices(needle) {
                            if pos > last {
                                next.push(Fragment::Text(&s[last..pos]));
                            }
                            next.push(Fragment::Token(id));
                            last = pos + needle.len();
                        }
                        if last < s.len() {
                            next.push(Fragment::Text(&s[last..]));
                        }
                    }
                    other => next.push(other),
                }
            }
            frags = next;
        }
        frags
    }

    /// The text of `ids`, special tokens rendered as their text. Invalid UTF-8 becomes U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> String {
        self.decode_with(ids, false)
    }

    /// Like [`Tokenizer::decode`]; `skip_special` leaves out control and unknown tokens (user-defined tokens such
    /// as Gemma's newline runs are text and always kept). Like llama.cpp, a SentencePiece vocabulary with
    /// `add_space_prefix` drops one leading space of the first token.
    pub fn decode_with(&self, ids: &[u32], skip_special: bool) -> String {
        let mut bytes = Vec::new();
        let mut strip_space = (self.kind == ModelKind::SentencePiece && self.add_space_prefix)
            || self.kind == ModelKind::WordPiece;
        for &id in ids {
            if skip_special && self.is_control_like(id) {
                continue;
            }
            let b = self.token_bytes_ref(id);
            let b = match (strip_space, b.first()) {
                (true, Some(b' ')) => &b[1..],
                _ => b,
            };
            strip_space = false;
            bytes.extend_from_slice(b);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// The exact bytes token `id` stands for: text pieces decoded (byte-level map or `▁` → space), byte tokens as
    /// their byte, special tokens as their text, unused tokens and out-of-range ids as nothing.
    pub fn token_bytes(&self, id: u32) -> Vec<u8> {
        self.token_bytes_ref(id).to_vec()
    }

    /// [`Tokenizer::token_bytes`] without the copy.
    pub fn token_bytes_ref(&self, id: u32) -> &[u8] {
        let i = id as usize;
        match (self.offsets.get(i), self.offsets.get(i + 1)) {
            (Some(&a), Some(&b)) => &self.bytes[a as usize..b as usize],
            _ => &[],
        }
    }

    /// The piece as stored in the file (`▁Hello`, `Ġworld`, `<|im_end|>`).
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.pieces.get(id as usize).map(String::as_str)
    }

    /// The id of the piece `text` exactly as stored in the file.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        match &self.backend {
            Backend::Hf(hf) => hf.token_to_id(text),
            Backend::Spm(spm) => spm.find(&self.pieces, text),
        }
    }

    /// The token's type from the file (control tokens that llama.cpp recognises as end-of-generation by their
    /// text count as control).
    pub fn token_type(&self, id: u32) -> Option<TokenType> {
        self.types.get(id as usize).copied()
    }

    /// Whether `id` is a special token: any type other than normal text and byte fallback.
    pub fn is_special(&self, id: u32) -> bool {
        self.token_type(id)
            .is_some_and(|t| !matches!(t, TokenType::Normal | TokenType::Byte))
    }

    /// Control and unknown tokens: what "skip special tokens" leaves out.
    pub(crate) fn is_control_like(&self, id: u32) -> bool {
        matches!(
            self.token_type(id),
            Some(TokenType::Control | TokenType::Unknown)
        )
    }

    pub fn bos(&self) -> Option<u32> {
        self.bos
    }

    pub fn eos(&self) -> Option<u32> {
        self.eos
    }

    /// Whether `encode(.., add_special = true, ..)` puts BOS in front (`tokenizer.ggml.add_bos_token`).
    pub fn adds_bos(&self) -> bool {
        self.add_bos
    }

    /// Whether `encode` puts a space (`▁`) in front of a text fragment at the start of its input or after a
    /// special token (SentencePiece's `add_space_prefix`): then encoding a fragment is not how it tokenizes mid-text.
    pub fn adds_space_prefix(&self) -> bool {
        self.kind == ModelKind::SentencePiece && self.add_space_prefix
    }

    /// Whether `encode(.., add_special = true, ..)` appends EOS (`tokenizer.ggml.add_eos_token`).
    pub fn adds_eos(&self) -> bool {
        self.add_eos
    }

    /// End-of-generation ids, sorted: eos, eot, eom and tokens such as `<|im_end|>`, `<end_of_turn>`.
    pub fn eog_ids(&self) -> &[u32] {
        &self.eog
    }

    pub fn is_eog(&self, id: u32) -> bool {
        self.eog.binary_search(&id).is_ok()
    }

    pub fn vocab_size(&self) -> usize {
        self.pieces.len()
    }

    pub fn model_kind(&self) -> ModelKind {
        self.kind
    }
}

/// Byte-level BPE: Split(regex, Isolated) for each regex of the pre-tokenizer, then the byte-to-char map.
fn build_byte_level(v: &Vocab, by_text: &HashMap<&str, u32>) -> Result<tokenizers::Tokenizer> {
    let pre = v
        .pre
        .as_ref()
        .ok_or_else(|| TextError::Build("no pre-tokenizer".into()))?;
    // Keep merges whose parts and result are pieces (others can never apply); the first of duplicates wins.
    let mut seen = std::collections::HashSet::with_capacity(v.merges.len());
    let merges: Vec<(String, String)> = v
        .merges
        .iter()
        .filter(|(a, b)| {
            by_text.contains_key(a.as_str())
                && by_text.contains_key(b.as_str())
                && by_text.contains_key(format!("{a}{b}").as_str())
                && seen.insert((a.as_str(), b.as_str()))
        })
        .cloned()
        .collect();
    let bpe = BPE::builder()
        .vocab_and_merges(bpe_vocab(v), merges)
        .ignore_merges(pre.ignore_merges)
        .build()
        .map_err(|e| TextError::Build(e.to_string()))?;

    let mut steps = pre.split_steps()?;
    steps.push(ByteLevel::new(false, false, false).into());

    let mut hf = tokenizers::Tokenizer::new(bpe);
    if pre.nfc {
        hf.with_normalizer(Some(tokenizers::normalizers::unicode::NFC))
            .map_err(|e| TextError::Build(e.to_string()))?;
    }
    hf.with_pre_tokenizer(Some(Sequence::new(steps)));
    Ok(hf)
}

/// WordPiece over llama.cpp's pieces, turned back into HF's form: `▁word` → `word`, a continuation `ing` →
/// `##ing`, special and `[bracketed]` pieces as they are (the first of any duplicates wins).
fn build_wordpiece(v: &Vocab) -> Result<tokenizers::Tokenizer> {
    let mut vocab: HashMap<String, u32> = HashMap::with_capacity(v.pieces.len());
    for (i, p) in v.pieces.iter().enumerate() {
        let hf = match (v.types[i], p.strip_prefix('▁')) {
            (TokenType::Normal, Some(word)) => word.to_string(),
            (TokenType::Normal, None) if !(p.starts_with('[') && p.ends_with(']')) => {
                format!("##{p}")
            }
            _ => p.clone(),
        };
        vocab.entry(hf).or_insert(i as u32);
    }
    let unk = v
        .unk
        .and_then(|u| v.pieces.get(u as usize))
        .cloned()
        .unwrap_or_else(|| "[UNK]".into());
    if !vocab.contains_key(&unk) {
        return Err(TextError::BadMetadata {
            key: "tokenizer.ggml.unknown_token_id",
            why: format!("the unknown token {unk:?} is not in the vocabulary"),
        });
    }
    let wp = tokenizers::models::wordpiece::WordPiece::builder()
        .vocab(vocab.into_iter().collect::<BpeVocab>())
        .unk_token(unk)
        .continuing_subword_prefix("##".into())
        .max_input_chars_per_word(100)
        .build()
        .map_err(|e| TextError::Build(e.to_string()))?;
    let mut hf = tokenizers::Tokenizer::new(wp);
    hf.with_normalizer(Some(tokenizers::normalizers::bert::BertNormalizer::new(
        true,
        true,
        Some(v.strip_accents),
        v.lowercase,
    )))
    .map_err(|e| TextError::Build(e.to_string()))?;
    hf.with_pre_tokenizer(Some(tokenizers::pre_tokenizers::bert::BertPreTokenizer));
    Ok(hf)
}

fn bpe_vocab(v: &Vocab) -> BpeVocab {
    v.pieces
        .iter()
        .enumerate()
        .map(|(i, p)| (p.clone(), i as u32))
        .collect()
}

/// GPT-2's map from bytes to printable characters: printable Latin-1 bytes map to themselves, the other 68 bytes
/// to U+0100 onwards in byte order.
pub(crate) fn byte_to_char() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut next = 256u32;
    for (b, slot) in table.iter_mut().enumerate() {
        let b = b as u32;
        let printable =
            (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
        let c = if printable {
            b
        } else {
            next += 1;
            next - 1
        };
        *slot = char::from_u32(c).unwrap_or('\0');
    }
    table
}

/// The bytes of every token, per llama.cpp's `token_to_piece` with `special = true`.
fn token_byte_table(v: &Vocab) -> (Vec<u8>, Vec<u32>) {
    let mut char_to_byte: HashMap<char, u8> = HashMap::with_capacity(256);
    for (b, c) in byte_to_char().iter().enumerate() {
        char_to_byte.insert(*c, b as u8);
    }
    let mut bytes = Vec::new();
    let mut offsets = Vec::with_capacity(v.pieces.len() + 1);
    offsets.push(0u32);
    for (i, p) in v.pieces.iter().enumerate() {
        match v.types[i] {
            TokenType::Normal => match v.kind {
                ModelKind::BytePairBpe => {
                    for c in p.chars() {
                        match char_to_byte.get(&c) {
                            Some(&b) => bytes.push(b),
                            // Not a byte-level character: keep the character itself.
                            None => bytes.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
                        }
                    }
                }
                ModelKind::SentencePiece | ModelKind::WordPiece => {
                    bytes.extend_from_slice(p.replace('▁', " ").as_bytes())
                }
            },
            TokenType::Byte => match parse_byte_token(p) {
                Some(b) => bytes.push(b),
                None => bytes.extend_from_slice(p.as_bytes()),
            },
            TokenType::Control | TokenType::UserDefined | TokenType::Unknown => {
                bytes.extend_from_slice(p.as_bytes())
            }
            TokenType::Unused | TokenType::Undefined => {}
        }
        offsets.push(bytes.len() as u32);
    }
    (bytes, offsets)
}

/// `<0x41>` → 0x41.
fn parse_byte_token(p: &str) -> Option<u8> {
    let hex = p.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_map_is_gpt2s() {
        let t = byte_to_char();
        assert_eq!(t[b'A' as usize], 'A');
        assert_eq!(t[b' ' as usize], 'Ġ');
        assert_eq!(t[b'\n' as usize], 'Ċ');
        assert_eq!(t[0], 'Ā');
        assert_eq!(t[0xAD], 'Ń');
        let mut sorted: Vec<char> = t.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 256);
    }

    #[test]
    fn byte_tokens_parse() {
        assert_eq!(parse_byte_token("<0x0A>"), Some(10));
        assert_eq!(parse_byte_token("<0xFF>"), Some(255));
        assert_eq!(parse_byte_token("<0x1>"), None);
        assert_eq!(parse_byte_token("<0xZZ>"), None);
    }
}
