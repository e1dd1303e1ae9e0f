//! Formats against golden fixtures from the independent `gguf` Python package (see fixtures/make_fixtures.py).

use hearth_kernels::{dequantize_row, quantize_row, DType};
use std::path::PathBuf;

const ALL: [DType; 15] = [
    DType::F32,
    DType::F16,
    DType::BF16,
    DType::Q4_0,
    DType::Q4_1,
    DType::Q5_0,
    DType::Q5_1,
    DType::Q8_0,
    DType::Q8_1,
    DType::Q8_K,
    DType::Q2_K,
    DType::Q3_K,
    DType::Q4_K,
    DType::Q5_K,
    DType::Q6_K,
];

/// Formats with a quantizer in the package (or, for Q8_1 / Q8_K, ggml's reference transcribed in the script).
const QUANTIZABLE: [DType; 10] = [
    DType::F32,
    DType::F16,
    DType::BF16,
    DType::Q4_0,
    DType::Q4_1,
    DType::Q5_0,
    DType::Q5_1,
    DType::Q8_0,
    DType::Q8_1,
    DType::Q8_K,
];

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "missing fixture {}: {e} (run make_fixtures.py)",
            path.display()
        )
    })
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[test]
fn dequantize_matches_gguf_package_bit_exact() {
    for dtype in ALL {
        let blocks = fixture(&format!("{dtype}.blocks.bin"));
        let want = f32s(&fixture(&format!("{dtype}.deq.f32")));
        assert_eq!(
            blocks.len() / dtype.type_size() * dtype.block_size(),
            want.len(),
            "{dtype} fixture sizes"
        );
        assert!(
            want.len() >= 256,
            "{dtype}: fixture too small to cover a block"
        );
        let mut got = vec![f32::NAN; want.len()];
        dequantize_row(dtype, &blocks, &mut got).unwrap();
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()),
                "{dtype} element {i}: got {g} ({:#x}), gguf says {w} ({:#x})",
                g.to_bits(),
                w.to_bits()
            );
        }
    }
}

#[test]
fn quantize_matches_gguf_package_bytes() {
    for dtype in QUANTIZABLE {
        let src = f32s(&fixture(&format!("{dtype}.src.f32")));
        let want = fixture(&format!("{dtype}.blocks.bin"));
        let mut got = vec![0xAAu8; want.len()];
        quantize_row(dtype, &src, &mut got).unwrap();
        let bs = dtype.type_size().max(4);
        for (b, (g, w)) in got.chunks(bs).zip(want.chunks(bs)).enumerate() {
            assert_eq!(
                g, w,
                "{dtype}: chunk {b} ({bs} bytes) differs from the gguf package's quantization"
            );
        }
    }
}

#[test]
fn bad_lengths_are_errors_not_panics() {
    let mut dst = vec![0f32; 32];
    let e = dequantize_row(DType::Q4_0, &[0u8; 17], &mut dst).unwrap_err();
    assert!(e.to_string().contains("18"), "{e}");
    let e = dequantize_row(DType::Q4_K, &[0u8; 144], &mut dst).unwrap_err();
    assert!(e.to_string().contains("256"), "{e}");
    let e = dequantize_row(DType::IQ2_XXS, &[0u8; 66], &mut vec![0f32; 256]).unwrap_err();
    assert!(e.to_string().contains("IQ2_XXS"), "{e}");
    let e = quantize_row(DType::Q5_K, &[0f32; 256], &mut [0u8; 176]).unwrap_err();
    assert!(e.to_string().contains("Q5_K"), "{e}");
}
