//! hearth-text.
