//! Q5_K: as Q4_K with a fifth bit per weight; value = d * sc * q - dmin * m, q in 0..32. Pairs with Q8_K activations.
//!
//! Block (176 bytes): `d: f16` at 0, `dmin: f16` at 2, `scales: [u8; 12]` at 4 (as Q4_K), `qh: [u8; 32]` at 16,
//! `qs: [u8; 128]` at 48. Element `64c + 32h + l`: nibble h of qs[32c + l], fifth bit = bit (2c + h) of qh[l].

use super::{f16_at, q4_k::scale_min, q8_k};

pub const QK: usize = 256;
pub const BLOCK_BYTES: usize = 176;

/// The 5-bit quant of element e (0..256).
#[inline(always)]
pub fn quant(b: &[u8], e: usize) -> i32 {
    let (c, h, l) = (e / 64, (e % 64) / 32, e % 32);
    let low = (b[48 + 32 * c + l] >> (4 * h)) & 0x0F;
    let high = (b[16 + l] >> (2 * c + h)) & 1;
    (low | (high << 4)) as i32
}

pub fn dequantize(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(BLOCK_BYTES).zip(dst.chunks_exact_mut(QK)) {
        let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
        let (sc, mn) = scale_min(&b[4..16]);
        for (e, v) in y.iter_mut().enumerate() {
            let g = e / 32;
            *v = (d * sc[g] as f32) * quant(b, e) as f32 - dmin * mn[g] as f32;
        }
    }
}

/// Scalar specification of Q5_K x Q8_K (same shape as Q4_K's).
pub fn vec_dot(w: &[u8], a: &[u8]) -> f32 {
    let mut sum = 0.0f32;
    for (bw, ba) in w
        .chunks_exact(BLOCK_BYTES)
        .zip(a.chunks_exact(q8_k::BLOCK_BYTES))
    {
        let (sc, mn) = scale_min(&bw[4..16]);
        let (mut isum, mut summs) = (0i32, 0i32);
        for g in 0..8 {
            let dot: i32 = (32 * g..32 * g + 32)
                .map(|e| quant(bw, e) * ba[q8_k::QS + e] as i8 as i32)
                .sum();
            isum += sc[g] as i32 * dot;
            summs += mn[g] as i32 * (q8_k::bsum(ba, 2 * g) + q8_k::bsum(ba, 2 * g + 1));
        }
        let da = super::f32_at(ba, 0);
        sum += da * f16_at(bw, 0) * isum as f32 - da * f16_at(bw, 2) * summs as f32;
    }
    sum
}
