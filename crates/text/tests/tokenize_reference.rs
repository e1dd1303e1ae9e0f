//! Tokenization identical to llama.cpp's on the shared reference strings (../shared/reference/README.md: made with
//! llama.cpp 0c1e57098, special tokens parsed, no BOS), for the three vocabularies hearth targets first.

mod common;

use hearth_gguf::Gguf;
use hearth_text::Tokenizer;

fn check(tok: &Tokenizer, cases: &[(String, Vec<u32>)]) {
    let mut bad = Vec::new();
    for (text, want) in cases {
        let got = tok.encode(text, false, true).expect("encode");
        if &got != want {
            bad.push(format!(
                "{text:?}\n   llama.cpp {want:?}\n   hearth    {got:?}"
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

#[test]
fn smollm2_matches_llama_cpp() {
    let g = Gguf::open(common::model("smollm2-135m")).unwrap();
    let tok = Tokenizer::from_gguf(&g).unwrap();
    let cases = common::load_cases(&common::reference("smollm2-135m-q4_1/tokenize.json"));
    assert_eq!(cases.len(), 25);
    check(&tok, &cases);
}

#[test]
fn gemma3_matches_llama_cpp() {
    let g = Gguf::open(common::model("gemma3-270m")).unwrap();
    let tok = Tokenizer::from_gguf(&g).unwrap();
    let cases = common::load_cases(&common::reference("gemma3-270m-q4_k_m/tokenize.json"));
    assert_eq!(cases.len(), 25);
    check(&tok, &cases);
}

#[test]
fn gemma3_matches_transformers() {
    let g = Gguf::open(common::model("gemma3-270m")).unwrap();
    let tok = Tokenizer::from_gguf(&g).unwrap();
    let cases = common::load_cases(&common::reference(
        "gemma3-270m-q4_k_m-transformers/tokenize.json",
    ));
    check(&tok, &cases);
}

#[test]
fn deepseek_r1_qwen_matches_llama_cpp() {
    let g = Gguf::open_metadata_only(common::deepseek_header()).unwrap();
    assert_eq!(
        g.get_str("tokenizer.ggml.pre").unwrap(),
        Some("deepseek-r1-qwen")
    );
    let tok = Tokenizer::from_gguf(&g).unwrap();
    let cases = common::load_cases(&common::reference(
        "deepseek-r1-distill-qwen-7b-vocab/tokenize.json",
    ));
    assert_eq!(cases.len(), 25);
    check(&tok, &cases);
}

/// The greedy references' prompt ids include BOS exactly where the model adds one (Gemma3 yes, SmolLM2 no).
#[test]
fn prompts_of_greedy_references_with_bos() {
    for (model, reference) in [
        ("smollm2-135m", "smollm2-135m-q4_1/greedy.json"),
        ("gemma3-270m", "gemma3-270m-q4_k_m/greedy.json"),
    ] {
        let g = Gguf::open(common::model(model)).unwrap();
        let tok = Tokenizer::from_gguf(&g).unwrap();
        let data = std::fs::read_to_string(common::reference(reference)).unwrap();
        let v: serde_json::Value = serde_json::from_str(&data).unwrap();
        let prompts = v
            .as_array()
            .or_else(|| v["prompts"].as_array())
            .expect("prompt list");
        assert!(!prompts.is_empty());
        for p in prompts {
            let text = p["prompt"].as_str().expect("prompt text");
            let want: Vec<u32> = p["prompt_tokens"]
                .as_array()
                .expect("prompt_tokens")
                .iter()
                .map(|i| i.as_u64().unwrap() as u32)
                .collect();
            assert_eq!(
                tok.encode(text, true, true).unwrap(),
                want,
                "{model}: {text:?}"
            );
            // And the completion's ids decode to llama.cpp's completion text.
            let completion: Vec<u32> = p["completion_tokens"]
                .as_array()
                .expect("completion_tokens")
                .iter()
                .map(|i| i.as_u64().unwrap() as u32)
                .collect();
            assert_eq!(
                tok.decode(&completion),
                p["completion"].as_str().unwrap(),
                "{model}: {text:?}"
            );
        }
    }
}
