//! The `qwen2` and `deepseek-v3` pre-tokenizers against Hugging Face `tokenizers` (PyPI, Oniguruma regexes) on the
//! broad corpus of tests/data/qwen-corpus.json, with the real Qwen vocabulary under both.
//! Expected ids: tests/data/hf-tokenizers-expected.json, made by scripts/hf_tokenizers_reference.py, which builds
//! each HF tokenizer with the normalizer and pre-tokenizer its Hub tokenizer.json declares and the vocabulary and
//! merges of the DeepSeek-R1-Distill-Qwen GGUF header. Here the same header is rewritten with only
//! `tokenizer.ggml.pre` changed, and hearth's tokenizer is built from it.

mod common;

use hearth_gguf::{Gguf, GgufWriter, MetaValue, WriteError};
use hearth_text::Tokenizer;
use std::path::PathBuf;

/// The DeepSeek-R1-Distill-Qwen header's metadata with `tokenizer.ggml.pre` set to `pre`, written (no tensors) to
/// a file under the test target's scratch directory.
fn header_with_pre(pre: &str) -> PathBuf {
    let g = Gguf::open_metadata_only(common::deepseek_header()).expect("DeepSeek header");
    let mut w = GgufWriter::new();
    for key in g.keys() {
        let v = g.get(key).expect("listed key");
        w.add_meta(key, MetaValue::from_value(key, &v).expect("copyable value"))
            .expect("unique key");
    }
    w.set_meta("tokenizer.ggml.pre", MetaValue::Str(pre.to_string()))
        .expect("string value");
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("qwen-vocab-{pre}.gguf"));
    w.write::<WriteError>(&path, |_, _| Ok(()))
        .expect("writing the header");
    path
}

struct Case {
    text: String,
    qwen2: Vec<u32>,
    deepseek_v3: Vec<u32>,
}

fn load_cases() -> Vec<Case> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/hf-tokenizers-expected.json");
    let v = hearth_test_support::read_json(path);
    let ids = hearth_test_support::ids;
    v["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|c| Case {
            text: c["text"].as_str().expect("text").to_string(),
            qwen2: ids(&c["qwen2"]),
            deepseek_v3: ids(&c["deepseek-v3"]),
        })
        .collect()
}

/// Encodes every case with `pre` and lists each string whose ids differ from HF's, with both tokenizations
/// spelled as pieces.
fn check(pre: &str, want: impl Fn(&Case) -> &[u32]) {
    let cases = load_cases();
    assert!(cases.len() > 250, "corpus too small: {}", cases.len());
    let g = Gguf::open_metadata_only(header_with_pre(pre)).expect("rewritten header");
    assert_eq!(g.get_str("tokenizer.ggml.pre").unwrap(), Some(pre));
    let tok = Tokenizer::from_gguf(&g).expect("tokenizer");
    let pieces = |ids: &[u32]| -> Vec<String> {
        ids.iter()
            .map(|&i| String::from_utf8_lossy(&tok.token_bytes(i)).into_owned())
            .collect()
    };
    let mut bad = Vec::new();
    for c in &cases {
        // HF's encode(add_special_tokens=False); the corpus spells no special tokens.
        let got = tok.encode(&c.text, false, false).expect("encode");
        let want = want(c);
        if got != want {
            bad.push(format!(
                "{:?}\n   hf     {want:?} {:?}\n   hearth {got:?} {:?}",
                c.text,
                pieces(want),
                pieces(&got)
            ));
        }
    }
    assert!(
        bad.is_empty(),
        "pre {pre}: {} of {} strings differ from HF tokenizers:\n{}",
        bad.len(),
        cases.len(),
        bad.join("\n")
    );
}

#[test]
fn qwen2_matches_hf_tokenizers() {
    check("qwen2", |c| &c.qwen2);
}

#[test]
fn deepseek_v3_matches_hf_tokenizers() {
    check("deepseek-v3", |c| &c.deepseek_v3);
}
