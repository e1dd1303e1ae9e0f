//! Q6_K: super-blocks of 256 weights in 16 groups of 16; 6-bit q, signed 8-bit scale per group;
//! value = d * sc * (q - 32). Pairs with Q8_K activations.
//!
//! Block (210 bytes): `ql: [u8; 128]` at 0, `qh: [u8; 64]` at 128, `scales: [i8; 16]` at 192, `d: f16` at 208.
//! Element `128c + 32k + l` (c < 2, k < 4, l < 32): low 4 bits = nibble k/2 of ql[64c + 32(k%2) + l],
//! high 2 bits = bits 2k..2k+2 of qh[32c + l]. Group = element / 16.

use super::{f16_at, q8_k};

pub const QK: usize = 256;
pub const BLOCK_BYTES: usize = 210;

/// The signed quant of element e (0..256), in -32..32.
#[inline(always)]
pub fn quant(b: &[u8], e: usize) -> i32 {
    let (c, k, l) = (e / 128, (e % 128) / 32, e % 32);
    let low = (b[64 * c + 32 * (k % 2) + l] >> (4 * (k / 2))) & 0x0F;
    let high = (b[128 + 32 * c + l] >> (2 * k)) & 3;
    (low | (high << 4)) as i32 - 32
}

pub fn dequantize(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(BLOCK_BYTES).zip(dst.chunks_exact_mut(QK)) {
        let d = f16_at(b, 208);
        for (e, v) in y.iter_mut().enumerate() {
            let sc = b[192 + e / 16] as i8 as f32;
            *v = (d * sc) * quant(b, e) as f32;
        }
    }
}

/// Scalar specification of Q6_K x Q8_K: `d * d_a * sum_g sc_g * sum(q * q_a)`.
pub fn vec_dot(w: &[u8], a: &[u8]) -> f32 {
    let mut sum = 0.0f32;
    for (bw, ba) in w
        .chunks_exact(BLOCK_BYTES)
        .zip(a.chunks_exact(q8_k::BLOCK_BYTES))
    {
        let mut isum = 0i32;
        for g in 0..16 {
            let dot: i32 = (16 * g..16 * g + 16)
                .map(|e| quant(bw, e) * ba[q8_k::QS + e] as i8 as i32)
                .sum();
            isum += bw[192 + g] as i8 as i32 * dot;
        }
        sum += f16_at(bw, 208) * super::f32_at(ba, 0) * isum as f32;
    }
    sum
}
