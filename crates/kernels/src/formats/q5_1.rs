//! Q5_1: 32 weights as 5-bit q with an f16 scale and f16 minimum; value = d * q + m. Pairs with Q8_1 activations.
//!
//! Block (24 bytes): `d: f16` at 0, `m: f16` at 2, `qh: u32 LE` at 4, `qs: [u8; 16]` at 8 (bits as in Q5_0).

use super::{f16_at, put_f16};

pub const QK: usize = 32;
pub const BLOCK_BYTES: usize = 24;

/// The 5-bit quant of element j (0..32).
#[inline(always)]
pub fn quant(b: &[u8], qh: u32, j: usize) -> i32 {
    let lo = if j < 16 {
        b[8 + j] & 0x0F
    } else {
        b[8 + j - 16] >> 4
    };
    (lo as u32 | (((qh >> j) & 1) << 4)) as i32
}

pub fn dequantize(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(BLOCK_BYTES).zip(dst.chunks_exact_mut(QK)) {
        let (d, m) = (f16_at(b, 0), f16_at(b, 2));
        let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
        for (j, v) in y.iter_mut().enumerate() {
            *v = quant(b, qh, j) as f32 * d + m;
        }
    }
}

/// ggml's reference: d = (max - min) / 31, q = min(31, trunc((x - min) / d + 0.5)).
pub fn quantize(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(BLOCK_BYTES)) {
        let min = x.iter().fold(f32::MAX, |m, &v| if v < m { v } else { m });
        let max = x.iter().fold(f32::MIN, |m, &v| if v > m { v } else { m });
        let d = (max - min) / 31.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        put_f16(b, 0, d);
        put_f16(b, 2, min);
        let mut qh = 0u32;
        for j in 0..16 {
            let q0 = (((x[j] - min) * id + 0.5) as u8).min(31);
            let q1 = (((x[j + 16] - min) * id + 0.5) as u8).min(31);
            b[8 + j] = (q0 & 0x0F) | ((q1 & 0x0F) << 4);
            qh |= ((q0 as u32 >> 4) << j) | ((q1 as u32 >> 4) << (j + 16));
        }
        b[4..8].copy_from_slice(&qh.to_le_bytes());
    }
}

/// Scalar specification of Q5_1 x Q8_1: per block `d_w * d_a * sum(q_w * q_a) + m_w * s_a`.
pub fn vec_dot(w: &[u8], a: &[u8]) -> f32 {
    let mut sum = 0.0f32;
    for (bw, ba) in w
        .chunks_exact(BLOCK_BYTES)
        .zip(a.chunks_exact(super::q8_1::BLOCK_BYTES))
    {
        let qh = u32::from_le_bytes([bw[4], bw[5], bw[6], bw[7]]);
        let sumi: i32 = (0..QK)
            .map(|j| quant(bw, qh, j) * ba[4 + j] as i8 as i32)
            .sum();
        sum += sumi as f32 * (f16_at(bw, 0) * f16_at(ba, 0)) + f16_at(bw, 2) * f16_at(ba, 2);
    }
    sum
}
