//! Q2_K: super-blocks of 256 weights in 16 groups of 16; 2-bit q, 4-bit scale and min per group;
//! value = d * sc * q - dmin * m. Pairs with Q8_K activations.
//!
//! Block (84 bytes): `scales: [u8; 16]` at 0 (low nibble sc, high nibble m), `qs: [u8; 64]` at 16, `d: f16` at 80,
//! `dmin: f16` at 82. Element `128c + 32j + l` (c < 2, j < 4, l < 32) is bits 2j..2j+2 of qs[32c + l]; its group is
//! element / 16.

use super::{f16_at, q8_k};

pub const QK: usize = 256;
pub const BLOCK_BYTES: usize = 84;

/// The 2-bit quant of element e (0..256).
#[inline(always)]
pub fn quant(b: &[u8], e: usize) -> i32 {
    let (c, j, l) = (e / 128, (e % 128) / 32, e % 32);
    ((b[16 + 32 * c + l] >> (2 * j)) & 3) as i32
}

pub fn dequantize(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(BLOCK_BYTES).zip(dst.chunks_exact_mut(QK)) {
        let (d, dmin) = (f16_at(b, 80), f16_at(b, 82));
        for (e, v) in y.iter_mut().enumerate() {
            let sc = b[e / 16];
            let dl = d * (sc & 0x0F) as f32;
            let ml = dmin * (sc >> 4) as f32;
            *v = dl * quant(b, e) as f32 - ml;
        }
    }
}

/// Scalar specification of Q2_K x Q8_K: `d_a * (d * sum_g sc_g * sum(q * q_a) - dmin * sum_g m_g * bsum_g)`.
pub fn vec_dot(w: &[u8], a: &[u8]) -> f32 {
    let mut sum = 0.0f32;
    for (bw, ba) in w
        .chunks_exact(BLOCK_BYTES)
        .zip(a.chunks_exact(q8_k::BLOCK_BYTES))
    {
        let mut isum = 0i32;
        let mut summs = 0i32;
        for g in 0..16 {
            let sc = bw[g];
            summs += (sc >> 4) as i32 * q8_k::bsum(ba, g);
            let s: i32 = (16 * g..16 * g + 16)
                .map(|e| quant(bw, e) * ba[q8_k::QS + e] as i8 as i32)
                .sum();
            isum += (sc & 0x0F) as i32 * s;
        }
        let da = super::f32_at(ba, 0);
        sum += da * f16_at(bw, 80) * isum as f32 - da * f16_at(bw, 82) * summs as f32;
    }
    sum
}
