//! Q4_0: 32 weights as 4-bit q with one f16 scale; value = d * (q - 8). Pairs with Q8_0 activations.
//!
//! Block (18 bytes): `d: f16` at 0, `qs: [u8; 16]` at 2; element j (< 16) is the low nibble of qs[j], element
//! j + 16 the high nibble.

use super::{f16_at, put_f16};

pub const QK: usize = 32;
pub const BLOCK_BYTES: usize = 18;

pub fn dequantize(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(BLOCK_BYTES).zip(dst.chunks_exact_mut(QK)) {
        let d = f16_at(b, 0);
        for j in 0..16 {
            y[j] = ((b[2 + j] & 0x0F) as i32 - 8) as f32 * d;
            y[j + 16] = ((b[2 + j] >> 4) as i32 - 8) as f32 * d;
        }
    }
}

/// ggml's reference: d = (signed value of largest magnitude) / -8, q = min(15, trunc(x / d + 8.5)).
pub fn quantize(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(BLOCK_BYTES)) {
        let (mut amax, mut max) = (0.0f32, 0.0f32);
        for &v in x {
            if amax < v.abs() {
                amax = v.abs();
                max = v;
            }
        }
        let d = max / -8.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        put_f16(b, 0, d);
        for j in 0..16 {
            let q0 = ((x[j] * id + 8.5) as u8).min(15);
            let q1 = ((x[j + 16] * id + 8.5) as u8).min(15);
            b[2 + j] = q0 | (q1 << 4);
        }
    }
}

/// Scalar specification of Q4_0 x Q8_0: per block `d_w * d_a * sum((q_w - 8) * q_a)`.
pub fn vec_dot(w: &[u8], a: &[u8]) -> f32 {
    let mut sum = 0.0f32;
    for (bw, ba) in w
        .chunks_exact(BLOCK_BYTES)
        .zip(a.chunks_exact(super::q8_0::BLOCK_BYTES))
    {
        let mut sumi = 0i32;
        for j in 0..16 {
            let lo = (bw[2 + j] & 0x0F) as i32 - 8;
            let hi = (bw[2 + j] >> 4) as i32 - 8;
            sumi += lo * ba[2 + j] as i8 as i32 + hi * ba[2 + j + 16] as i8 as i32;
        }
        sum += sumi as f32 * (f16_at(bw, 0) * f16_at(ba, 0));
    }
    sum
}
