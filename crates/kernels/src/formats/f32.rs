//! F32: plain little-endian floats (block size 1). Activations stay f32 for F32 weights.

use super::f32_at;

pub fn dequantize(src: &[u8], dst: &mut [f32]) {
    for (d, s) in dst.iter_mut().zip(src.chunks_exact(4)) {
        *d = f32::from_le_bytes([s[0], s[1], s[2], s[3]]);
    }
}

pub fn quantize(src: &[f32], dst: &mut [u8]) {
    for (s, d) in src.iter().zip(dst.chunks_exact_mut(4)) {
        d.copy_from_slice(&s.to_le_bytes());
    }
}

/// Scalar specification: `sum_i w[i] * a[i]`, both f32, accumulated in f32 in order.
pub fn vec_dot(w: &[u8], a: &[u8]) -> f32 {
    let n = w.len() / 4;
    (0..n).map(|i| f32_at(w, 4 * i) * f32_at(a, 4 * i)).sum()
}
