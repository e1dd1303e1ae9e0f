//! Converted files as llama.cpp's own reader (the `gguf` Python package, 0.19.0 in CI) sees them: every tensor name
//! is one llama.cpp defines for the architecture, the expected keys are there, and q8_0 weights dequantized by the
//! package match the checkpoint's f32 weights within q8_0's error. Needs python3 with `gguf` and `safetensors`
//! (HEARTH_PYTHON picks the interpreter).

mod common;

use std::process::Command;

fn python() -> String {
    std::env::var("HEARTH_PYTHON").unwrap_or_else(|_| "python3".into())
}

const SCRIPT: &str = r#"
import sys, json, glob, numpy as np, gguf
from safetensors.numpy import load_file
path, arch, ckpt = sys.argv[1], sys.argv[2], sys.argv[3]
r = gguf.GGUFReader(path)
ma = {v: k for k, v in gguf.MODEL_ARCH_NAMES.items()}[arch]
allowed = {gguf.TENSOR_NAMES[t].format(bid=b) for t in gguf.MODEL_TENSORS[ma] for b in range(64)}
bad = [t.name for t in r.tensors if t.name.rsplit(".", 1)[0] not in allowed]
assert not bad, f"names llama.cpp does not define for {arch}: {bad}"
f = lambda k: r.fields[k].contents()
assert f("general.architecture") == arch
for k in ["context_length", "embedding_length", "block_count", "attention.head_count", "attention.head_count_kv",
          "attention.layer_norm_rms_epsilon", "rope.freq_base"]:
    assert f"{arch}.{k}" in r.fields, k
assert f("tokenizer.ggml.model") == "gpt2"
cfg = json.load(open(ckpt + "/config.json"))
assert len(f("tokenizer.ggml.tokens")) == cfg["vocab_size"]
assert len(f("tokenizer.ggml.token_type")) == cfg["vocab_size"]
assert len(f("tokenizer.ggml.merges")) > 0 and "tokenizer.chat_template" in r.fields
st = {}
for p in glob.glob(ckpt + "/*.safetensors"):
    st.update(load_file(p))
t = {x.name: x for x in r.tensors}
e = t["token_embd.weight"]
assert e.tensor_type == gguf.GGMLQuantizationType.Q8_0, e.tensor_type
deq = gguf.quants.dequantize(e.data, e.tensor_type)
ref = st["model.embed_tokens.weight"]
assert deq.shape == ref.shape, (deq.shape, ref.shape)
err = np.abs(deq - ref).max() / np.abs(ref).max()
assert err < 0.01, err
print("ok", len(r.tensors))
"#;

/// `fixture`: the tiny checkpoint's folder; `arch`: the GGUF architecture it converts to.
fn check(fixture: &str, arch: &str) {
    let path = common::converted(fixture, "q8_0");
    let out = Command::new(python())
        .arg("-c")
        .arg(SCRIPT)
        .arg(&path)
        .arg(arch)
        .arg(common::fixture(fixture))
        .output()
        .expect("python3 with gguf and safetensors is needed (pip install gguf==0.19.0 safetensors numpy)");
    assert!(
        out.status.success(),
        "{arch}: the gguf package disagrees:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_architecture_reads_in_gguf_package() {
    for arch in ["llama", "qwen2", "qwen3", "qwen3moe", "deepseek2"] {
        check(arch, arch);
    }
    check("deepseek2-v2", "deepseek2");
    check("deepseek2-v2-qlora", "deepseek2");
    check("qwen2-yarn", "qwen2");
    // Not qwen3moe-mixed: llama.cpp defines no dense FFN tensors for qwen3moe (no released Qwen3-MoE has
    // `mlp_only_layers`); hearth runs such files, llama.cpp would refuse them.
}
