//! The DeepSeek-R1-Distill-Qwen GGUF tokenizer against tiktoken (an independent BPE implementation) on a broad
//! corpus that is not in the shared reference data: code, many scripts, emoji, numbers, whitespace runs.
//! Expected ids: tests/data/qwen-tiktoken-expected.json, made by scripts/qwen_tiktoken_reference.py from the
//! qwen.tiktoken ranks in PyPI's `dashscope`.

mod common;

use hearth_gguf::Gguf;
use hearth_text::Tokenizer;

#[test]
fn qwen_vocab_matches_tiktoken_on_corpus() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/qwen-tiktoken-expected.json");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let cases = v["cases"].as_array().unwrap();
    assert!(cases.len() > 100);

    let g = Gguf::open_metadata_only(common::deepseek_header()).unwrap();
    let tok = Tokenizer::from_gguf(&g).unwrap();
    let mut bad = Vec::new();
    for c in cases {
        let text = c["text"].as_str().unwrap();
        let want: Vec<u32> = c["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i.as_u64().unwrap() as u32)
            .collect();
        // tiktoken's encode_ordinary knows no special tokens; the corpus spells none.
        let got = tok.encode(text, false, false).unwrap();
        if got != want {
            bad.push(format!(
                "{text:?}\n   tiktoken {want:?}\n   hearth   {got:?}"
            ));
        }
        // Decoding gives the text back byte for byte.
        assert_eq!(tok.decode(&got), text);
    }
    assert!(
        bad.is_empty(),
        "{} of {} strings differ:\n{}",
        bad.len(),
        cases.len(),
        bad.join("\n")
    );
}
