//! hearth-engine.
