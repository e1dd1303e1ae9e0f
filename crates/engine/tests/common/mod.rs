//! Shared by the engine's integration tests: model paths and the reference data in ../shared/reference.

#![allow(dead_code)]

use std::path::PathBuf;

/// An installed test model; fails loudly when it is missing.
pub fn model_path(name: &str) -> PathBuf {
    let home = std::env::var_os("HEARTH_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/hearth")
        });
    let p = home.join("models").join(format!("{name}.gguf"));
    assert!(
        p.exists(),
        "{} is missing: run scripts/fetch-models.sh",
        p.display()
    );
    p
}

/// `../shared/reference/<rel>` relative to the repository root.
pub fn reference(rel: &str) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let p = root.join("../shared/reference").join(rel);
    assert!(
        p.exists(),
        "{} is missing: the reference data must sit beside the repository",
        p.display()
    );
    p
}

pub fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
