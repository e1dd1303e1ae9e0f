//! The error type of hearth-text.

use hearth_gguf::GgufError;

/// Everything that can go wrong between text and token ids.
#[derive(Debug, thiserror::Error)]
pub enum TextError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error("the GGUF file has no {key:?}, which the tokenizer needs")]
    MissingKey { key: &'static str },
    #[error("GGUF metadata {key:?} is unusable: {why}")]
    BadMetadata { key: &'static str, why: String },
    #[error("tokenizer model {0:?} (tokenizer.ggml.model) is not supported; supported: \"gpt2\" (byte-level BPE), \"llama\" (SentencePiece)")]
    UnsupportedModel(String),
    #[error(
        "pre-tokenizer {name:?} (tokenizer.ggml.pre) is not supported; supported: {supported}"
    )]
    UnknownPreTokenizer { name: String, supported: String },
    #[error("building the tokenizer failed: {0}")]
    Build(String),
    #[error("tokenizing failed: {0}")]
    Encode(String),
    #[error("the GGUF file has no chat template (tokenizer.chat_template) and architecture {arch:?} has no built-in turn format; supported without a template: gemma3, llama, qwen2, qwen3")]
    NoChatTemplate { arch: String },
    #[error("chat template: {0}")]
    Template(String),
}

impl From<minijinja::Error> for TextError {
    fn from(e: minijinja::Error) -> Self {
        // `{:#}` includes the detail and the template location.
        TextError::Template(format!("{e:#}"))
    }
}

pub type Result<T, E = TextError> = std::result::Result<T, E>;
