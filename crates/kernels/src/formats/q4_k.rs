//! Q4_K: super-blocks of 256 weights in 8 groups of 32; 4-bit q, 6-bit scale and min per group;
//! value = d * sc * q - dmin * m. Pairs with Q8_K activations.
//!
//! Block (144 bytes): `d: f16` at 0, `dmin: f16` at 2, `scales: [u8; 12]` at 4 (packed, see [`scale_min`]),
//! `qs: [u8; 128]` at 16. Element `64c + 32h + l` (c < 4, h < 2, l < 32) is nibble h of qs[32c + l], group 2c + h.

use super::{f16_at, q8_k};

pub const QK: usize = 256;
pub const BLOCK_BYTES: usize = 144;

/// Unpacks the 8 six-bit (scale, min) pairs shared by Q4_K and Q5_K from their 12 bytes: groups 0..4 take the low 6
/// bits of bytes 0..4 (scale) and 4..8 (min); groups 4..8 take a nibble of bytes 8..12 plus the top 2 bits of
/// bytes 0..4 (scale) or 4..8 (min).
pub fn scale_min(s: &[u8]) -> ([u8; 8], [u8; 8]) {
    let (mut sc, mut mn) = ([0u8; 8], [0u8; 8]);
    for j in 0..4 {
        sc[j] = s[j] & 0x3F;
        mn[j] = s[4 + j] & 0x3F;
        sc[4 + j] = (s[8 + j] & 0x0F) | ((s[j] >> 2) & 0x30);
        mn[4 + j] = (s[8 + j] >> 4) | ((s[4 + j] >> 2) & 0x30);
    }
    (sc, mn)
}

/// The 4-bit quant of element e (0..256).
#[inline(always)]
pub fn quant(b: &[u8], e: usize) -> i32 {
    let (c, h, l) = (e / 64, (e % 64) / 32, e % 32);
    ((b[16 + 32 * c + l] >> (4 * h)) & 0x0F) as i32
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

/// Scalar specification of Q4_K x Q8_K:
/// `d_a * (d * sum_g sc_g * sum(q * q_a) - dmin * sum_g m_g * (bsum_2g + bsum_2g+1))`.
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
