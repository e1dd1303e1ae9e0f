//! hearth-server.
