//! hearth-gguf.
