//! The two real model files parse, with the tensor mix llama.cpp reports for them (../shared/reference/README.md).

use hearth_gguf::{DType, Gguf};
use std::collections::BTreeMap;

fn mix(g: &Gguf) -> BTreeMap<&'static str, usize> {
    let mut m = BTreeMap::new();
    for t in g.tensors() {
        *m.entry(t.dtype.name()).or_default() += 1;
    }
    m
}

#[test]
fn smollm2_tensor_mix() {
    let g = Gguf::open(hearth_test_support::model_path("smollm2-135m")).unwrap();
    assert_eq!(g.architecture().unwrap(), "llama");
    assert_eq!(
        mix(&g),
        BTreeMap::from([("F32", 61), ("Q4_1", 210), ("Q8_0", 1)])
    );
    assert_eq!(g.tensor("token_embd.weight").unwrap().dtype, DType::Q8_0);
    assert!(
        g.tensor("output.weight").is_none(),
        "SmolLM2 ties its output to the embedding"
    );
    assert_eq!(
        g.get_array("tokenizer.ggml.tokens")
            .unwrap()
            .unwrap()
            .strs()
            .unwrap()
            .len(),
        49152
    );
    assert_eq!(
        g.get_bool("tokenizer.ggml.add_bos_token").unwrap(),
        Some(false)
    );
}

#[test]
fn gemma3_tensor_mix() {
    let g = Gguf::open(hearth_test_support::model_path("gemma3-270m")).unwrap();
    assert_eq!(g.architecture().unwrap(), "gemma3");
    assert_eq!(
        mix(&g),
        BTreeMap::from([
            ("F32", 109),
            ("Q4_K", 27),
            ("Q5_0", 81),
            ("Q6_K", 9),
            ("Q8_0", 10)
        ])
    );
    assert!(g.get_str("tokenizer.chat_template").unwrap().is_none());
    assert_eq!(
        g.get_array("tokenizer.ggml.tokens").unwrap().unwrap().len(),
        262144
    );
}
