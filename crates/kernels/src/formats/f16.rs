//! F16: IEEE half floats (block size 1). Activations are rounded to f16 too, as ggml does, and products summed in f32.

use super::f16_at;

pub fn dequantize(src: &[u8], dst: &mut [f32]) {
    for (i, d) in dst.iter_mut().enumerate() {
        *d = f16_at(src, 2 * i);
    }
}

pub fn quantize(src: &[f32], dst: &mut [u8]) {
    for (i, s) in src.iter().enumerate() {
        super::put_f16(dst, 2 * i, *s);
    }
}

/// Scalar specification: `sum_i w[i] * a[i]` over f16 values widened to f32.
pub fn vec_dot(w: &[u8], a: &[u8]) -> f32 {
    let n = w.len() / 2;
    (0..n).map(|i| f16_at(w, 2 * i) * f16_at(a, 2 * i)).sum()
}
