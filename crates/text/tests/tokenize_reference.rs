//! Tokenization identical to llama.cpp's on the shared reference strings (../shared/reference/README.md: made with
//! llama.cpp 0c1e57098, special tokens parsed, no BOS), for the three vocabularies hearth targets first.

mod common;

use hearth_gguf::Gguf;
use hearth_text::Tokenizer;

#[test]
fn smollm2_matches_llama_cpp() {
    let g = Gguf::open(common::model_path("smollm2-135m")).unwrap();
    let tok = Tokenizer::from_gguf(&g).unwrap();
    let cases = common::load_cases(&common::reference("smollm2-135m-q4_1/tokenize.json"));
    assert_eq!(cases.len(), 25);
    common::assert_encodes(&tok, &cases, true, "llama.cpp");
}

#[test]
fn gemma3_matches_llama_cpp() {
    let g = Gguf::open(common::model_path("gemma3-270m")).unwrap();
    let tok = Tokenizer::from_gguf(&g).unwrap();
    let cases = common::load_cases(&common::reference("gemma3-270m-q4_k_m/tokenize.json"));
    assert_eq!(cases.len(), 25);
    common::assert_encodes(&tok, &cases, true, "llama.cpp");
}

#[test]
fn gemma3_matches_transformers() {
    let g = Gguf::open(common::model_path("gemma3-270m")).unwrap();
    let tok = Tokenizer::from_gguf(&g).unwrap();
    let cases = common::load_cases(&common::reference(
        "gemma3-270m-q4_k_m-transformers/tokenize.json",
    ));
    common::assert_encodes(&tok, &cases, true, "llama.cpp");
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
    common::assert_encodes(&tok, &cases, true, "llama.cpp");
}

/// The greedy references' prompt ids include BOS exactly where the model adds one (Gemma3 yes, SmolLM2 no).
#[test]
fn prompts_of_greedy_references_with_bos() {
    for (model, reference) in [
        ("smollm2-135m", "smollm2-135m-q4_1/greedy.json"),
        ("gemma3-270m", "gemma3-270m-q4_k_m/greedy.json"),
    ] {
        let g = Gguf::open(common::model_path(model)).unwrap();
        let tok = Tokenizer::from_gguf(&g).unwrap();
        let v = hearth_test_support::read_json(common::reference(reference));
        let prompts = v
            .as_array()
            .or_else(|| v["prompts"].as_array())
            .expect("prompt list");
        assert!(!prompts.is_empty());
        for p in prompts {
            let text = p["prompt"].as_str().expect("prompt text");
            let want = common::ids(&p["prompt_tokens"]);
            assert_eq!(
                tok.encode(text, true, true).unwrap(),
                want,
                "{model}: {text:?}"
            );
            // And the completion's ids decode to llama.cpp's completion text.
            let completion = common::ids(&p["completion_tokens"]);
            assert_eq!(
                tok.decode(&completion),
                p["completion"].as_str().unwrap(),
                "{model}: {text:?}"
            );
        }
    }
}
