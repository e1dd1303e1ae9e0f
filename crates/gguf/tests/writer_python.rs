//! The files `GgufWriter` writes are read by the `gguf` Python package (llama.cpp's reader) with the same keys,
//! types and tensors. Needs `python3` with `gguf` installed (CI installs gguf==0.19.0; set HEARTH_PYTHON to pick
//! an interpreter).

use hearth_gguf::{DType, GgufWriter, MetaArray, MetaValue, WriteError};
use std::process::Command;

fn python() -> String {
    std::env::var("HEARTH_PYTHON").unwrap_or_else(|_| "python3".into())
}

#[test]
fn gguf_python_package_reads_written_file() {
    let have_gguf = Command::new(python())
        .args(["-c", "import gguf"])
        .status()
        .is_ok_and(|s| s.success());
    if !have_gguf {
        panic!("python3 with the gguf package is needed: pip install gguf==0.19.0 (or set HEARTH_PYTHON)");
    }
    let path = hearth_test_support::TempPath::new("writer-py", "py.gguf");
    let mut w = GgufWriter::new();
    w.add_meta("general.architecture", MetaValue::Str("llama".into()))
        .unwrap();
    w.add_meta("llama.block_count", MetaValue::U32(2)).unwrap();
    w.add_meta("llama.rope.freq_base", MetaValue::F32(500000.0))
        .unwrap();
    w.add_meta("x.i64", MetaValue::I64(-5)).unwrap();
    w.add_meta("x.f64", MetaValue::F64(0.125)).unwrap();
    w.add_meta("x.bool", MetaValue::Bool(true)).unwrap();
    w.add_meta(
        "tokenizer.ggml.tokens",
        MetaValue::Array(MetaArray::Str(vec![
            "a".into(),
            "Ġb".into(),
            "<|im_end|>".into(),
        ])),
    )
    .unwrap();
    w.add_meta(
        "tokenizer.ggml.token_type",
        MetaValue::Array(MetaArray::I32(vec![1, 1, 3])),
    )
    .unwrap();
    w.add_tensor("blk.0.attn_norm.weight", vec![5], DType::F32)
        .unwrap();
    w.add_tensor("token_embd.weight", vec![32, 3], DType::Q8_0)
        .unwrap();
    w.add_tensor("output.weight", vec![4, 3], DType::F16)
        .unwrap();
    let norm: Vec<f32> = vec![1.0, -2.0, 3.5, 0.0, 0.25];
    let q8: Vec<u8> = (0..3 * 34).map(|i| (i % 251) as u8).collect();
    let f16: Vec<u8> = (0..12)
        .flat_map(|i| half::f16::from_f32(i as f32 * 0.5).to_le_bytes())
        .collect();
    w.write(&path, |i, buf: &mut Vec<u8>| -> Result<(), WriteError> {
        match i {
            0 => buf.extend(norm.iter().flat_map(|x| x.to_le_bytes())),
            1 => buf.extend(&q8),
            _ => buf.extend(&f16),
        }
        Ok(())
    })
    .unwrap();

    let script = r#"
import sys, gguf
r = gguf.GGUFReader(sys.argv[1])
def val(k):
    return r.fields[k].contents()
assert val("general.architecture") == "llama", val("general.architecture")
assert val("llama.block_count") == 2
assert r.fields["llama.block_count"].types == [gguf.GGUFValueType.UINT32]
assert val("llama.rope.freq_base") == 500000.0
assert val("x.i64") == -5 and val("x.f64") == 0.125 and val("x.bool") is True
assert val("tokenizer.ggml.tokens") == ["a", "Ġb", "<|im_end|>"], val("tokenizer.ggml.tokens")
assert val("tokenizer.ggml.token_type") == [1, 1, 3]
t = {x.name: x for x in r.tensors}
assert list(t) == ["blk.0.attn_norm.weight", "token_embd.weight", "output.weight"], list(t)
n = t["blk.0.attn_norm.weight"]
assert n.tensor_type == gguf.GGMLQuantizationType.F32 and list(n.data) == [1.0, -2.0, 3.5, 0.0, 0.25]
e = t["token_embd.weight"]
assert e.tensor_type == gguf.GGMLQuantizationType.Q8_0 and list(e.shape) == [32, 3]
assert bytes(e.data.tobytes()) == bytes(i % 251 for i in range(102))
o = t["output.weight"]
assert o.tensor_type == gguf.GGMLQuantizationType.F16 and list(o.shape) == [4, 3]
assert [float(x) for x in o.data.flatten()] == [i * 0.5 for i in range(12)]
print("ok")
"#;
    let out = Command::new(python())
        .arg("-c")
        .arg(script)
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("ok"),
        "gguf package rejected the file:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
