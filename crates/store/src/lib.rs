//! hearth-store.
