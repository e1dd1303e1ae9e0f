//! Bad checkpoints give clear errors that name the file and the key or tensor: a malformed config.json, a missing
//! key, an unsupported architecture, a missing tensor, a shape mismatch; and the target file is left alone.

mod common;

use hearth_convert::{convert, ConvertError, ConvertOptions};
use std::path::Path;

fn edit_config(dir: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let p = dir.join("config.json");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(&p, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
}

fn run(dir: &Path) -> ConvertError {
    let out = dir.parent().unwrap().join("out.gguf");
    std::fs::write(&out, b"keep me").unwrap();
    let e = convert(dir, &out, &ConvertOptions::default()).expect_err("conversion should fail");
    assert_eq!(
        std::fs::read(&out).unwrap(),
        b"keep me",
        "a failed conversion touched the target"
    );
    e
}

#[test]
fn malformed_config_names_the_file() {
    let d = common::copy_of("qwen3", "err-json");
    std::fs::write(d.join("config.json"), b"{\"hidden_size\": 64,").unwrap();
    let msg = run(&d).to_string();
    assert!(
        msg.contains("config.json") && msg.contains("not valid JSON"),
        "{msg}"
    );
}

#[test]
fn missing_and_mistyped_keys_are_named() {
    let d = common::copy_of("qwen3", "err-key");
    edit_config(&d, |v| {
        v.as_object_mut().unwrap().remove("num_hidden_layers");
    });
    let msg = run(&d).to_string();
    assert!(
        msg.contains("config.json") && msg.contains("\"num_hidden_layers\" is missing"),
        "{msg}"
    );

    let d = common::copy_of("qwen3", "err-type");
    edit_config(&d, |v| v["hidden_size"] = "sixty-four".into());
    let msg = run(&d).to_string();
    assert!(
        msg.contains("\"hidden_size\"") && msg.contains("non-negative integer"),
        "{msg}"
    );
}

#[test]
fn unsupported_architecture_lists_supported_ones() {
    let d = common::copy_of("qwen3", "err-arch");
    edit_config(&d, |v| {
        v["architectures"] = serde_json::json!(["MambaForCausalLM"])
    });
    let msg = run(&d).to_string();
    assert!(
        msg.contains("MambaForCausalLM") && msg.contains("Qwen3ForCausalLM"),
        "{msg}"
    );
}

#[test]
fn missing_tensor_is_named() {
    let d = common::copy_of("qwen3", "err-tensor");
    // One layer more than the weights have.
    edit_config(&d, |v| v["num_hidden_layers"] = 3.into());
    let msg = run(&d).to_string();
    assert!(
        msg.contains("model.layers.2.") && msg.contains("missing"),
        "{msg}"
    );
}

#[test]
fn shape_mismatch_names_tensor_and_file() {
    let d = common::copy_of("qwen3", "err-shape");
    edit_config(&d, |v| v["intermediate_size"] = 96.into());
    let e = run(&d);
    assert!(matches!(e, ConvertError::ShapeMismatch { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("mlp.gate_proj.weight")
            && msg.contains("model.safetensors")
            && msg.contains("[96, 64]"),
        "{msg}"
    );
}

#[test]
fn unknown_pre_tokenizer_asks_for_flag() {
    let d = common::copy_of("qwen3", "err-pre");
    let p = d.join("tokenizer.json");
    let t = std::fs::read_to_string(&p)
        .unwrap()
        .replace("\\\\p{N}|", "\\\\p{N}{1,2}|");
    std::fs::write(&p, t).unwrap();
    let msg = run(&d).to_string();
    assert!(
        msg.contains("tokenizer.json") && msg.contains("--pre"),
        "{msg}"
    );
    let out = d.parent().unwrap().join("ok.gguf");
    let opts = ConvertOptions {
        pre: Some("qwen2".into()),
        ..Default::default()
    };
    convert(&d, &out, &opts).unwrap();
}

#[test]
fn transformers_5_rope_parameters_are_accepted() {
    // The same llama checkpoint with its config in transformers 5.x spelling converts to the same metadata.
    let d = common::copy_of("llama", "rope5");
    edit_config(&d, |v| {
        let o = v.as_object_mut().unwrap();
        let mut rp = o.remove("rope_scaling").unwrap();
        rp["rope_theta"] = o.remove("rope_theta").unwrap();
        o.insert("rope_parameters".into(), rp);
    });
    let out = d.parent().unwrap().join("v5.gguf");
    convert(&d, &out, &ConvertOptions::default()).unwrap();
    let a = hearth_gguf::Gguf::open(&out).unwrap();
    let b = hearth_gguf::Gguf::open(common::converted("llama", "f16")).unwrap();
    assert_eq!(a.get_f32("llama.rope.freq_base").unwrap(), Some(500000.0));
    let fa = a.tensor("rope_freqs.weight").unwrap();
    let fb = b.tensor("rope_freqs.weight").unwrap();
    assert_eq!(a.tensor_data(fa), b.tensor_data(fb));
}
