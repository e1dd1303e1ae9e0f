//! Shared helpers: the tiny checkpoints under tests/fixtures/tiny and their transformers golden outputs.
#![allow(dead_code, unused_imports)]

use hearth_convert::{convert, ConvertOptions, OutType};
use hearth_test_support::ids;
use serde_json::Value;
use std::path::PathBuf;

pub use hearth_test_support::tiny_fixture as fixture;
use hearth_test_support::TempPath;

/// A copy of the tiny `arch` checkpoint that a test may change: the directory `ckpt` in a temporary directory of its
/// own, both removed with the guard.
pub fn copy_of(arch: &str, tag: &str) -> TempPath {
    let dst = TempPath::new(&format!("convert-{tag}"), "ckpt");
    std::fs::create_dir_all(&dst).unwrap();
    for e in std::fs::read_dir(fixture(arch)).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, dst.join(p.file_name().unwrap())).unwrap();
    }
    dst
}

/// Converts the tiny `arch` checkpoint at `outtype` into a temporary file of its own (tests run in parallel),
/// removed with the guard.
pub fn converted(arch: &str, outtype: &str) -> TempPath {
    let out = TempPath::new(
        &format!("convert-{arch}"),
        &format!("{arch}-{outtype}.gguf"),
    );
    let opts = ConvertOptions {
        outtype: OutType::parse(outtype).unwrap(),
        ..Default::default()
    };
    convert(&fixture(arch), &out, &opts).unwrap_or_else(|e| panic!("convert {arch}: {e}"));
    out
}

/// transformers' outputs for the tiny `arch` checkpoint (see make_tiny.py).
pub struct Golden {
    pub sequences: Vec<Vec<u32>>,
    /// Per sequence: (len, n_vocab) row-major.
    pub logits: Vec<Vec<f32>>,
    pub prompt: Vec<u32>,
    pub generate: Vec<u32>,
}

pub fn golden(arch: &str) -> Golden {
    let v: Value =
        serde_json::from_slice(&std::fs::read(fixture(arch).join("golden.json")).unwrap()).unwrap();
    Golden {
        sequences: v["sequences"].as_array().unwrap().iter().map(ids).collect(),
        logits: {
            let shape = ids(&v["logits_shape"]);
            let raw = std::fs::read(fixture(arch).join("logits.f32")).unwrap();
            let all: Vec<f32> = raw
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            let per = (shape[1] * shape[2]) as usize;
            assert_eq!(
                all.len(),
                shape[0] as usize * per,
                "{arch}: logits.f32 size"
            );
            all.chunks_exact(per).map(<[f32]>::to_vec).collect()
        },
        prompt: ids(&v["prompt"]),
        generate: ids(&v["generate"]),
    }
}

/// Rewrites a converted f32 deepseek2 file into the MLA layout llama.cpp wrote before it split `attn_kv_b`
/// (April 2025; many published GGUFs): `attn_kv_b` (n_head * (nope + v), kv_lora) instead of `attn_k_b`/`attn_v_b`,
/// per-head key/value sizes in `key_length`/`value_length`, no `*_mla` keys, `head_count_kv` = `head_count`. The
/// file is written beside `path` (and goes with its directory).
pub fn legacy_mla(path: &std::path::Path) -> PathBuf {
    use hearth_gguf::{DType, Gguf, GgufWriter, MetaValue};
    let g = Gguf::open(path).unwrap();
    let a = g.architecture().unwrap().to_string();
    let u = |k: &str| g.get_uint(&format!("{a}.{k}")).unwrap().unwrap() as usize;
    let (n_head, r, rot) = (
        u("attention.head_count"),
        u("attention.kv_lora_rank"),
        u("rope.dimension_count"),
    );
    let (qk, v) = (
        u("attention.key_length_mla"),
        u("attention.value_length_mla"),
    );
    let nope = qk - rot;
    let mut w = GgufWriter::new();
    for key in g.keys() {
        let val = match key.strip_prefix(&format!("{a}.")) {
            Some("attention.key_length_mla" | "attention.value_length_mla") => continue,
            Some("attention.key_length") => MetaValue::U32(qk as u32),
            Some("attention.value_length") => MetaValue::U32(v as u32),
            Some("attention.head_count_kv") => MetaValue::U32(n_head as u32),
            _ => MetaValue::from_value(key, &g.get(key).unwrap()).unwrap(),
        };
        w.add_meta(key, val).unwrap();
    }
    let f32s = |b: &[u8]| -> Vec<f32> {
        b.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    };
    // (name, data) in file order, with each layer's k_b/v_b pair replaced by one kv_b.
    let mut out: Vec<(String, Vec<u64>, Vec<f32>)> = Vec::new();
    for t in g.tensors() {
        if t.name.ends_with("attn_v_b.weight") {
            continue;
        }
        if let Some(pre) = t.name.strip_suffix("attn_k_b.weight") {
            assert_eq!(t.dtype, DType::F32);
            let kb = f32s(g.tensor_data(t)); // (n_head, kv_lora, nope)
            let vt = g.tensor(&format!("{pre}attn_v_b.weight")).unwrap();
            let vb = f32s(g.tensor_data(vt)); // (n_head, v, kv_lora)
            let mut kv = vec![0f32; n_head * (nope + v) * r]; // (n_head * (nope + v), kv_lora)
            for h in 0..n_head {
                for j in 0..nope {
                    for c in 0..r {
                        kv[(h * (nope + v) + j) * r + c] = kb[(h * r + c) * nope + j];
                    }
                }
                kv[(h * (nope + v) + nope) * r..][..v * r]
                    .copy_from_slice(&vb[h * v * r..][..v * r]);
            }
            out.push((
                format!("{pre}attn_kv_b.weight"),
                vec![r as u64, (n_head * (nope + v)) as u64],
                kv,
            ));
        } else {
            out.push((t.name.clone(), t.dims.clone(), Vec::new()));
        }
    }
    for (name, dims, _) in &out {
        let dtype = g.tensor(name).map_or(DType::F32, |t| t.dtype);
        w.add_tensor(name.clone(), dims.clone(), dtype).unwrap();
    }
    let dst = path.with_extension("legacy.gguf");
    w.write(
        &dst,
        |i, buf: &mut Vec<u8>| -> Result<(), hearth_gguf::WriteError> {
            let (name, _, data) = &out[i];
            match g.tensor(name) {
                Some(t) => buf.extend_from_slice(g.tensor_data(t)),
                None => buf.extend(data.iter().flat_map(|x| x.to_le_bytes())),
            }
            Ok(())
        },
    )
    .unwrap();
    dst
}
