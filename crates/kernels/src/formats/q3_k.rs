//! Q3_K: super-blocks of 256 weights in 16 groups of 16; 3-bit q (2 low bits + a high-bit mask), signed 6-bit scale
//! per group; value = d * (sc - 32) * (q - 4), where q = low + 4 * hbit. Pairs with Q8_K activations.
//!
//! Block (110 bytes): `hmask: [u8; 32]` at 0, `qs: [u8; 64]` at 32, `scales: [u8; 12]` at 96, `d: f16` at 108.
//! Element `128c + 32j + l`: low bits 2j..2j+2 of qs[32c + l], high bit (4c + j) of hmask[l]. Scale k (0..16): low
//! nibble of scales[k] (k < 8) or high nibble of scales[k - 8], plus bits 2(k/4)..2(k/4)+2 of scales[8 + k % 4] << 4.

use super::{f16_at, q8_k};

pub const QK: usize = 256;
pub const BLOCK_BYTES: usize = 110;

/// The signed quant of element e (0..256), in -4..4.
#[inline(always)]
pub fn quant(b: &[u8], e: usize) -> i32 {
    let (c, j, l) = (e / 128, (e % 128) / 32, e % 32);
    let low = ((b[32 + 32 * c + l] >> (2 * j)) & 3) as i32;
    let hbit = ((b[l] >> (4 * c + j)) & 1) as i32;
    low - if hbit == 1 { 0 } else { 4 }
}

/// The 16 signed group scales (-32..32).
pub fn scales(b: &[u8]) -> [i32; 16] {
    let s = &b[96..108];
    let mut out = [0i32; 16];
    for (k, o) in out.iter_mut().enumerate() {
        let low = if k < 8 { s[k] & 0x0F } else { s[k - 8] >> 4 };
        let high = (s[8 + k % 4] >> (2 * (k / 4))) & 3;
        *o = (low | (high << 4)) as i32 - 32;
    }
    out
}

pub fn dequantize(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(BLOCK_BYTES).zip(dst.chunks_exact_mut(QK)) {
        let d = f16_at(b, 108);
        let sc = scales(b);
        for (e, v) in y.iter_mut().enumerate() {
            *v = (d * sc[e / 16] as f32) * quant(b, e) as f32;
        }
    }
}

/// Scalar specification of Q3_K x Q8_K: `d * d_a * sum_g sc_g * sum(q * q_a)`.
pub fn vec_dot(w: &[u8], a: &[u8]) -> f32 {
    let mut sum = 0.0f32;
    for (bw, ba) in w
        .chunks_exact(BLOCK_BYTES)
        .zip(a.chunks_exact(q8_k::BLOCK_BYTES))
    {
        let sc = scales(bw);
        let mut isum = 0i32;
        for (g, s) in sc.iter().enumerate() {
            let dot: i32 = (16 * g..16 * g + 16)
                .map(|e| quant(bw, e) * ba[q8_k::QS + e] as i8 as i32)
                .sum();
            isum += s * dot;
        }
        sum += f16_at(bw, 108) * super::f32_at(ba, 0) * isum as f32;
    }
    sum
}
