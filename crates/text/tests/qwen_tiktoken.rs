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
    let cases = common::cases(&hearth_test_support::read_json(path)["cases"]);
    assert!(cases.len() > 100);

    let g = Gguf::open_metadata_only(common::deepseek_header()).unwrap();
    let tok = Tokenizer::from_gguf(&g).unwrap();
    // tiktoken's encode_ordinary knows no special tokens; the corpus spells none.
    common::assert_encodes(&tok, &cases, false, "tiktoken");
    // Decoding gives the text back byte for byte.
    for (text, ids) in &cases {
        assert_eq!(tok.decode(ids), *text);
    }
}
