//! Shared test helpers: a deterministic RNG and random weight matrices in every format.
#![allow(dead_code)]

use hearth_kernels::{quantize_row, DType};

/// SplitMix64: small, deterministic, good enough for test data.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    pub fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    /// Roughly normal (sum of uniforms), times a per-call scale.
    pub fn normal(&mut self) -> f32 {
        (0..4).map(|_| self.uniform()).sum::<f32>() * 0.866
    }
    pub fn byte(&mut self) -> u8 {
        (self.next_u64() >> 56) as u8
    }
}

/// The f16 fields (byte offsets in a block) that hold scales, for formats filled with random bytes.
pub fn f16_scale_fields(dtype: DType) -> &'static [usize] {
    match dtype {
        DType::Q2_K => &[80, 82],
        DType::Q3_K => &[108],
        DType::Q4_K | DType::Q5_K => &[0, 2],
        DType::Q6_K => &[208],
        _ => &[],
    }
}

/// Whether `quantize_row` supports the format.
pub fn quantizable(dtype: DType) -> bool {
    f16_scale_fields(dtype).is_empty()
}

/// `n` values with a few magnitudes mixed in, like real activations.
pub fn activations(rng: &mut Rng, n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| rng.normal() * if i % 97 == 5 { 8.0 } else { 1.0 })
        .collect()
}

/// A (rows, cols) weight matrix in `dtype`: quantized from random data, or random bytes with sane f16 scales for
/// formats without a quantizer here (the K-quants).
pub fn weights(rng: &mut Rng, dtype: DType, rows: usize, cols: usize) -> Vec<u8> {
    let row_bytes = dtype.row_bytes(cols as u64).unwrap() as usize;
    let mut data = vec![0u8; rows * row_bytes];
    if quantizable(dtype) {
        let src: Vec<f32> = (0..rows * cols).map(|_| rng.normal() * 0.05).collect();
        for (r, row) in data.chunks_exact_mut(row_bytes).enumerate() {
            quantize_row(dtype, &src[r * cols..(r + 1) * cols], row).unwrap();
        }
    } else {
        data.iter_mut().for_each(|b| *b = rng.byte());
        for block in data.chunks_exact_mut(dtype.type_size()) {
            for &off in f16_scale_fields(dtype) {
                let v = (0.001 + 0.01 * rng.uniform().abs())
                    * if rng.byte() & 1 == 0 { 1.0 } else { -1.0 };
                block[off..off + 2].copy_from_slice(&half::f16::from_f32(v).to_le_bytes());
            }
        }
    }
    data
}
