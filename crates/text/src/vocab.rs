//! The vocabulary as a GGUF file describes it: pieces, token types, scores, merges, special ids and flags.
//!
//! Defaults for keys a file leaves out follow llama.cpp's `llama_vocab::load`.

use crate::error::{Result, TextError};
use crate::pretok::{self, PreTokenizer};
use hearth_gguf::Gguf;

/// The tokenizer families hearth reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelKind {
    /// `tokenizer.ggml.model = "gpt2"`: byte-level BPE with a merge list (SmolLM2, Qwen, DeepSeek, Llama 3).
    BytePairBpe,
    /// `tokenizer.ggml.model = "llama"`: SentencePiece with scores and byte fallback (Gemma, Llama 2).
    SentencePiece,
    /// `tokenizer.ggml.model = "bert"`: WordPiece (BERT encoders), pieces in llama.cpp's form: `▁word` starts a
    /// word, a bare piece continues one (HF's `##piece`).
    WordPiece,
}

/// A token's type, from `tokenizer.ggml.token_type` (the numbering llama.cpp's converters write).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenType {
    /// 0, or any number this list does not know.
    Undefined,
    /// 1: ordinary text.
    Normal,
    /// 2: the unknown token.
    Unknown,
    /// 3: control tokens such as `<|im_start|>`, `<bos>`.
    Control,
    /// 4: added tokens that always tokenize as themselves (Gemma's `\n` runs, Qwen's `<think>`).
    UserDefined,
    /// 5: reserved, never produced.
    Unused,
    /// 6: `<0xXX>` byte-fallback tokens.
    Byte,
}

impl TokenType {
    fn from_gguf(n: i64) -> TokenType {
        match n {
            1 => TokenType::Normal,
            2 => TokenType::Unknown,
            3 => TokenType::Control,
            4 => TokenType::UserDefined,
            5 => TokenType::Unused,
            6 => TokenType::Byte,
            _ => TokenType::Undefined,
        }
    }
}

/// Token texts that end generation, besides the ids the file names (llama.cpp's list).
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<｜end▁of▁sentence｜>",
];

/// Fill-in-the-middle pad / repository / file-separator tokens, which llama.cpp also treats as end of generation.
const FIM_EOG_TEXTS: &[&str] = &[
    "<|fim_pad|>",
    "<fim-pad>",
    "<fim_pad>",
    "<PAD>",
    "<|fim_repo|>",
    "<|repo_name|>",
    "<fim-repo>",
    "<REPO>",
    "<reponame>",
    "<|file_sep|>",
];

/// Everything read from the file, validated.
pub(crate) struct Vocab {
    pub kind: ModelKind,
    /// Piece text per id (empty pieces renamed `[EMPTY_<id>]` as llama.cpp does).
    pub pieces: Vec<String>,
    pub types: Vec<TokenType>,
    /// Scores per id (SentencePiece only; empty otherwise).
    pub scores: Vec<f32>,
    /// Merge pairs in rank order (byte-level BPE only).
    pub merges: Vec<(String, String)>,
    pub pre: Option<PreTokenizer>,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub unk: Option<u32>,
    pub add_bos: bool,
    pub add_eos: bool,
    pub add_space_prefix: bool,
    /// WordPiece's BasicTokenizer: lowercase, and strip accents (`tokenizer.bert.*`, hearth's keys; llama.cpp's
    /// files lack them and get BERT-uncased's true, true).
    pub lowercase: bool,
    pub strip_accents: bool,
    /// Sorted, deduplicated.
    pub eog: Vec<u32>,
}

impl Vocab {
    pub fn from_gguf(g: &Gguf) -> Result<Vocab> {
        let model = g
            .get_str("tokenizer.ggml.model")?
            .ok_or(TextError::MissingKey {
                key: "tokenizer.ggml.model",
            })?;
        let kind = match model {
            "gpt2" => ModelKind::BytePairBpe,
            "llama" => ModelKind::SentencePiece,
            "bert" => ModelKind::WordPiece,
            other => return Err(TextError::UnsupportedModel(other.to_string())),
        };

        let tokens = g
            .get_array("tokenizer.ggml.tokens")?
            .ok_or(TextError::MissingKey {
                key: "tokenizer.ggml.tokens",
            })?;
        let tokens = tokens
            .strs()
            .ok_or_else(|| bad("tokenizer.ggml.tokens", "not an array of strings"))?;
        let n = tokens.len();
        if n == 0 || n > u32::MAX as usize / 2 {
            return Err(bad("tokenizer.ggml.tokens", format!("{n} tokens")));
        }
        let pieces: Vec<String> = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| {
                if t.is_empty() {
                    format!("[EMPTY_{i}]")
                } else {
                    t.to_string()
                }
            })
            .collect();

        let mut types = match g.get_array("tokenizer.ggml.token_type")? {
            None => vec![TokenType::Normal; n],
            Some(a) => {
                let v = a
                    .to_i64_vec()
                    .ok_or_else(|| bad("tokenizer.ggml.token_type", "not an array of integers"))?;
                if v.len() < n {
                    return Err(bad(
                        "tokenizer.ggml.token_type",
                        format!("{} entries for {n} tokens", v.len()),
                    ));
                }
                v[..n].iter().map(|&t| TokenType::from_gguf(t)).collect()
            }
        };

        let scores = match (kind, g.get_array("tokenizer.ggml.scores")?) {
            (ModelKind::SentencePiece, Some(a)) => {
                let v = a
                    .to_f32_vec()
                    .ok_or_else(|| bad("tokenizer.ggml.scores", "not an array of numbers"))?;
                if v.len() < n {
                    return Err(bad(
                        "tokenizer.ggml.scores",
                        format!("{} entries for {n} tokens", v.len()),
                    ));
                }
                v[..n].to_vec()
            }
            (ModelKind::SentencePiece, None) => {
                return Err(TextError::MissingKey {
                    key: "tokenizer.ggml.scores",
                })
            }
            (ModelKind::BytePairBpe | ModelKind::WordPiece, _) => Vec::new(),
        };

        let merges = match kind {
            ModelKind::SentencePiece | ModelKind::WordPiece => Vec::new(),
            ModelKind::BytePairBpe => {
                let a = g
                    .get_array("tokenizer.ggml.merges")?
                    .ok_or(TextError::MissingKey {
                        key: "tokenizer.ggml.merges",
                    })?;
                let strs = a
                    .strs()
                    .ok_or_else(|| bad("tokenizer.ggml.merges", "not an array of strings"))?;
                // Like llama.cpp: split at the first space after the first byte; a line without one is ignored.
                strs.iter()
                    .filter_map(|m| {
                        let pos = m.bytes().skip(1).position(|b| b == b' ')? + 1;
                        Some((m[..pos].to_string(), m[pos + 1..].to_string()))
                    })
                    .collect()
            }
        };

        let pre = match kind {
            ModelKind::SentencePiece | ModelKind::WordPiece => None,
            ModelKind::BytePairBpe => {
                let name = g.get_str("tokenizer.ggml.pre")?.unwrap_or("default");
                Some(
                    pretok::for_name(name).ok_or_else(|| TextError::UnknownPreTokenizer {
                        name: name.to_string(),
                        supported: pretok::SUPPORTED.to_string(),
                    })?,
                )
            }
        };

        // Special ids: llama.cpp's SentencePiece defaults are bos 1, eos 2, unk 0, its WordPiece ones [CLS] 101,
        // [SEP] 102, [UNK] 100; we give BPE none.
        let (def_bos, def_eos, def_unk) = match kind {
            ModelKind::SentencePiece => (Some(1), Some(2), Some(0)),
            ModelKind::WordPiece => (Some(101), Some(102), Some(100)),
            ModelKind::BytePairBpe => (None, None, None),
        };
        let in_range = |id: Option<u32>| id.filter(|&i| (i as usize) < n);
        let id = |key: &str, default: Option<u32>| -> Result<Option<u32>> {
            Ok(match g.get_uint(key)? {
                Some(v) => in_range(u32::try_from(v).ok()),
                None => in_range(default),
            })
        };
        let mut bos = id("tokenizer.ggml.bos_token_id", def_bos)?;
        let mut eos = id("tokenizer.ggml.eos_token_id", def_eos)?;
        if kind == ModelKind::WordPiece {
            // A sequence is [CLS] text [SEP]: llama.cpp's cls and separator keys win when present.
            bos = id("tokenizer.ggml.cls_token_id", bos)?;
            eos = id("tokenizer.ggml.seperator_token_id", eos)?;
        }
        let unk = id("tokenizer.ggml.unknown_token_id", def_unk)?;
        let eot = id("tokenizer.ggml.eot_token_id", None)?;
        let eom = id("tokenizer.ggml.eom_token_id", None)?;

        let (def_add_bos, def_add_eos, def_space) = match kind {
            ModelKind::SentencePiece => (true, false, true),
            ModelKind::WordPiece => (true, true, false),
            ModelKind::BytePairBpe => (pre.as_ref().is_some_and(|p| p.add_bos), false, false),
        };
        let add_bos = g
            .get_bool("tokenizer.ggml.add_bos_token")?
            .unwrap_or(def_add_bos);
        let add_eos = g
            .get_bool("tokenizer.ggml.add_eos_token")?
            .unwrap_or(def_add_eos);
        let lowercase = g.get_bool("tokenizer.bert.lowercase")?.unwrap_or(true);
        let strip_accents = g
            .get_bool("tokenizer.bert.strip_accents")?
            .unwrap_or(lowercase);
        let add_space_prefix = g
            .get_bool("tokenizer.ggml.add_space_prefix")?
            .unwrap_or(def_space);
        if add_bos && bos.is_none() {
            return Err(bad(
                "tokenizer.ggml.add_bos_token",
                "true, but there is no valid bos_token_id",
            ));
        }
        if add_eos && eos.is_none() {
            return Err(bad(
                "tokenizer.ggml.add_eos_token",
                "true, but there is no valid eos_token_id",
            ));
        }

        // End of generation: the named ids, plus tokens recognised by their text. Like llama.cpp, a token found by
        // its text that is not marked as control becomes control (so it is parsed and skipped like one).
        let mut eog: Vec<u32> = [eos, eot, eom].into_iter().flatten().collect();
        for (i, p) in pieces.iter().enumerate() {
            if EOG_TEXTS.contains(&p.as_str()) || FIM_EOG_TEXTS.contains(&p.as_str()) {
                eog.push(i as u32);
                if types[i] != TokenType::Control {
                    types[i] = TokenType::Control;
                }
            }
        }
        eog.sort_unstable();
        eog.dedup();

        Ok(Vocab {
            kind,
            pieces,
            types,
            scores,
            merges,
            pre,
            bos,
            eos,
            unk,
            add_bos,
            add_eos,
            add_space_prefix,
            lowercase,
            strip_accents,
            eog,
        })
    }
}

fn bad(key: &'static str, why: impl Into<String>) -> TextError {
    TextError::BadMetadata {
        key,
        why: why.into(),
    }
}
