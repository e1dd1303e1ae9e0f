//! Q8_1: Q8_0 plus the block's sum; the activation partner of Q4_1 and Q5_1 weights (their minimum needs the sum).
//!
//! Block (36 bytes): `d: f16` at 0, `s: f16 = d * sum(qs)` at 2, `qs: [i8; 32]` at 4.

use super::{f16_at, put_f16};

pub const QK: usize = 32;
pub const BLOCK_BYTES: usize = 36;

pub fn dequantize(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(BLOCK_BYTES).zip(dst.chunks_exact_mut(QK)) {
        let d = f16_at(b, 0);
        for (j, v) in y.iter_mut().enumerate() {
            *v = b[4 + j] as i8 as f32 * d;
        }
    }
}

/// ggml's reference: as Q8_0, plus `s = d * sum(q)`.
pub fn quantize(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(BLOCK_BYTES)) {
        let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut sum = 0i32;
        for (j, v) in x.iter().enumerate() {
            let q = (v * id).round() as i8;
            sum += q as i32;
            b[4 + j] = q as u8;
        }
        put_f16(b, 0, d);
        put_f16(b, 2, sum as f32 * d);
    }
}
