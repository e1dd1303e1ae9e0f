//! Why loading a model or running it failed, with what the user needs to fix it.

use hearth_gguf::GgufError;
use hearth_kernels::{MatmulError, QuantError};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error("architecture {arch:?} is not supported (hearth runs: {supported})")]
    UnknownArchitecture { arch: String, supported: String },
    #[error("the model file has no tensor {name:?} (an incomplete or foreign conversion?)")]
    MissingTensor { name: String },
    #[error("metadata key {key:?} is missing; the file does not describe its {what}")]
    MissingKey { key: String, what: &'static str },
    #[error("tensor {name:?} has shape {found:?}, expected {expected:?}")]
    BadTensorShape {
        name: String,
        expected: Vec<u64>,
        found: Vec<u64>,
    },
    #[error("tensor {name:?} has type {dtype}, which hearth cannot use there")]
    UnsupportedTensorType {
        name: String,
        dtype: hearth_kernels::DType,
    },
    #[error("the model's hyperparameters are inconsistent: {0}")]
    BadConfig(String),
    #[error("the prompt is empty: there is nothing to continue")]
    EmptyPrompt,
    /// A request's input (not the model) is unusable; the message says why.
    #[error("{0}")]
    BadInput(String),
    #[error("the context is full: {needed} tokens needed but the context holds {n_ctx} (raise --ctx-size or shorten the prompt)")]
    ContextFull { needed: usize, n_ctx: usize },
    #[error("token id {id} is outside the vocabulary of {n_vocab}")]
    BadToken { id: u32, n_vocab: usize },
    #[error("KV cache type {kv_type} cannot be used with this model: {reason}")]
    KvType {
        kv_type: &'static str,
        reason: String,
    },
    #[error("the model computed a non-finite {what} ({value}): its weights hold NaN or infinite values, or its activations overflowed; the file is corrupt or was converted wrongly")]
    NonFinite { what: &'static str, value: f32 },
    /// A generation asked of a model that has no output matrix (an encoder such as BERT).
    #[error("this model makes embeddings only: it has no output layer to generate text with")]
    EmbeddingOnly,
    /// A bidirectional model (or a pooled embedding) needs the whole sequence in one forward pass.
    #[error("{0}: a sequence must be read whole, in one forward pass, from an empty cache")]
    NotWhole(&'static str),
    #[error(transparent)]
    Kernel(#[from] MatmulError),
    #[error(transparent)]
    Quant(#[from] QuantError),
}
