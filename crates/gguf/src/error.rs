//! Everything that can be wrong with a GGUF file, each with the data a user needs to understand it.

/// Why a GGUF file was refused.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is {kind}, not a GGUF file")]
    NotAFile { path: String, kind: &'static str },
    #[error("not a GGUF file: the first four bytes are {found:?}, expected \"GGUF\"")]
    BadMagic { found: [u8; 4] },
    #[error("GGUF version {0} is not supported (hearth reads versions 2 and 3; re-convert the model with a current converter)")]
    UnsupportedVersion(u32),
    #[error("the file is truncated: {what} needs bytes {start}..{end} but the file has {len} bytes (an incomplete download?)")]
    Truncated {
        what: String,
        start: u64,
        end: u64,
        len: u64,
    },
    #[error("{what} count {count} is impossible for a file of {len} bytes (corrupt header)")]
    AbsurdCount {
        what: &'static str,
        count: u64,
        len: u64,
    },
    #[error("metadata key #{index} has unknown value type {ty}")]
    UnknownValueType { index: u64, ty: u32 },
    #[error("metadata key {key:?}: arrays of arrays are not supported")]
    NestedArray { key: String },
    #[error("{what} is not valid UTF-8")]
    BadUtf8 { what: String },
    #[error("metadata key {key:?} appears twice")]
    DuplicateKey { key: String },
    #[error("metadata key {key:?} has type {found}, expected {expected}")]
    WrongType {
        key: String,
        expected: &'static str,
        found: &'static str,
    },
    #[error("metadata key {key:?} is missing")]
    MissingKey { key: String },
    #[error("general.alignment is {0}; it must be a non-zero power of two")]
    BadAlignment(u64),
    #[error("tensor {name:?} has {n_dims} dimensions; at most 4 are allowed")]
    TooManyDims { name: String, n_dims: u32 },
    #[error("tensor {name:?} has unknown type id {id} (made by a newer converter? update hearth)")]
    UnknownDType { name: String, id: u32 },
    #[error("tensor {name:?} has shape {dims:?}, which {why}")]
    BadShape {
        name: String,
        dims: Vec<u64>,
        why: String,
    },
    #[error("tensor {name:?} appears twice")]
    DuplicateTensor { name: String },
    #[error("tensor {name:?} offset {offset} is not a multiple of the alignment {alignment}")]
    MisalignedTensor {
        name: String,
        offset: u64,
        alignment: u64,
    },
    #[error("tensor {name:?} needs bytes {start}..{end} of the file but it has {len} bytes (truncated or corrupt file)")]
    TensorOutOfBounds {
        name: String,
        start: u64,
        end: u64,
        len: u64,
    },
    #[error("tensors {a:?} and {b:?} overlap in the file (corrupt tensor index)")]
    OverlappingTensors { a: String, b: String },
}
