//! Q4_K and Q6_K quantizers against llama.cpp's own (ggml's `quantize_row_*_ref`, fixtures from
//! make_kquant_fixtures.py): the same blocks, byte for byte, and a round trip that stays within the format's error.

use hearth_kernels::{dequantize_row, quantize_row, DType};
use std::path::PathBuf;

fn fixture(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn check(dtype: DType) {
    let name = dtype.name();
    let src = f32s(&fixture(&format!("{name}.ggml.src.f32")));
    let want = fixture(&format!("{name}.ggml.blocks.bin"));
    let mut got = vec![0u8; want.len()];
    quantize_row(dtype, &src, &mut got).unwrap();
    let bs = dtype.type_size();
    let differ: Vec<usize> = (0..want.len() / bs)
        .filter(|&i| got[i * bs..][..bs] != want[i * bs..][..bs])
        .collect();
    assert!(
        differ.is_empty(),
        "{name}: blocks differing from ggml's: {differ:?}"
    );

    // Round trip: per super-block, the error is a small fraction of the block's range.
    let mut back = vec![0f32; src.len()];
    dequantize_row(dtype, &got, &mut back).unwrap();
    for (i, (x, y)) in src
        .chunks_exact(256)
        .zip(back.chunks_exact(256))
        .enumerate()
    {
        let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
        let err = x.iter().zip(y).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        let bound = match dtype {
            DType::Q4_K => 0.25 * amax, // 15 steps over the range, 6-bit scales
            _ => 0.05 * amax,           // 63 steps, 8-bit scales
        };
        // Plus an absolute 1e-5: scales of values near 1e-6 underflow f16 (ggml writes the same bytes).
        assert!(
            err <= bound + 1e-5,
            "{name} block {i}: max error {err} for max |x| {amax}"
        );
    }
}

#[test]
fn q4_k_matches_ggml() {
    check(DType::Q4_K);
}

#[test]
fn q6_k_matches_ggml() {
    check(DType::Q6_K);
}
