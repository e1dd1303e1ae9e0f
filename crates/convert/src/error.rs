//! Everything that can stop a conversion, each naming the file and the key or tensor involved.

use hearth_gguf::DType;

#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not valid JSON: {source}")]
    Json {
        path: String,
        source: serde_json::Error,
    },
    #[error("{path}: key {key:?} is missing")]
    MissingKey { path: String, key: String },
    #[error("{path}: key {key:?} is {found}, expected {expected}")]
    BadKey {
        path: String,
        key: String,
        expected: &'static str,
        found: String,
    },
    #[error("{path}: architecture {arch:?} is not supported (supported: {supported})")]
    UnsupportedArchitecture {
        path: String,
        arch: String,
        supported: String,
    },
    #[error("{path}: {what}")]
    Unsupported { path: String, what: String },
    #[error("no *.safetensors files in {dir}")]
    NoWeights { dir: String },
    #[error("{path} is not a valid safetensors file: {why}")]
    BadSafetensors { path: String, why: String },
    #[error("tensor {name:?} is missing from the checkpoint in {dir}")]
    MissingTensor { name: String, dir: String },
    #[error("tensor {name:?} in {path} has shape {found:?}, expected {expected:?}")]
    ShapeMismatch {
        name: String,
        path: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("tensor {name:?} in {path} has type {dtype}; only F32, F16 and BF16 checkpoints are converted")]
    TensorType {
        name: String,
        path: String,
        dtype: String,
    },
    #[error("tensor {name:?} appears in both {a} and {b}")]
    DuplicateTensor { name: String, a: String, b: String },
    #[error("tensors in {dir} that this converter does not know what to do with: {names}")]
    UnusedTensors { dir: String, names: String },
    #[error("{path}: the pre-tokenizer is not recognised ({detail}); pass --pre NAME (e.g. qwen2, llama-bpe, deepseek-v3, gpt-2)")]
    UnknownPreTokenizer { path: String, detail: String },
    #[error("cannot quantize tensor {name:?} to {dtype}: {why}")]
    Quantize {
        name: String,
        dtype: DType,
        why: String,
    },
    #[error("output type {0:?} is not supported (use f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q4_k, q6_k)")]
    BadOutType(String),
    #[error(transparent)]
    Write(#[from] hearth_gguf::WriteError),
    #[error(transparent)]
    Gguf(#[from] hearth_gguf::GgufError),
}
