//! Shared helpers: the tiny checkpoints under tests/fixtures/tiny and their transformers golden outputs.
#![allow(dead_code)]

use hearth_convert::{convert, ConvertOptions, OutType};
use serde_json::Value;
use std::path::PathBuf;

pub fn fixture(arch: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/tiny")
        .join(arch)
}

pub fn tmp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hearth-convert-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Converts the tiny `arch` checkpoint at `outtype` into a temporary file.
pub fn converted(arch: &str, outtype: &str) -> PathBuf {
    let out = tmp(arch).join(format!("{arch}-{outtype}.gguf"));
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

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
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
