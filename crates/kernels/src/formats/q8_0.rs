//! Q8_0: 32 values as i8 with one f16 scale; value = d * q. Both a weight format and the activation partner of
//! Q4_0, Q5_0 and Q8_0 weights.
//!
//! Block (34 bytes): `d: f16` at 0, `qs: [i8; 32]` at 2.

use super::{f16_at, put_f16};

pub const QK: usize = 32;
pub const BLOCK_BYTES: usize = 34;

pub fn dequantize(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(BLOCK_BYTES).zip(dst.chunks_exact_mut(QK)) {
        let d = f16_at(b, 0);
        for (j, v) in y.iter_mut().enumerate() {
            *v = b[2 + j] as i8 as f32 * d;
        }
    }
}

/// ggml's reference: d = max|x| / 127, q = round-half-away(x / d).
pub fn quantize(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(BLOCK_BYTES)) {
        let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        put_f16(b, 0, d);
        for (j, v) in x.iter().enumerate() {
            b[2 + j] = (v * id).round() as i8 as u8;
        }
    }
}

/// Scalar specification of Q8_0 x Q8_0: per block `d_w * d_a * sum(q_w * q_a)`.
pub fn vec_dot(w: &[u8], a: &[u8]) -> f32 {
    let mut sum = 0.0f32;
    for (bw, ba) in w.chunks_exact(BLOCK_BYTES).zip(a.chunks_exact(BLOCK_BYTES)) {
        let sumi: i32 = (0..QK)
            .map(|j| bw[2 + j] as i8 as i32 * ba[2 + j] as i8 as i32)
            .sum();
        sum += sumi as f32 * (f16_at(bw, 0) * f16_at(ba, 0));
    }
    sum
}
