//! F32: plain little-endian floats (block size 1). Activations stay f32 for F32 weights.

use super::f32_at;
use super::{on_x86, Dot, Spec};
use crate::DType;

/// F32's row of the format registry.
pub(crate) const SPEC: Spec = Spec {
    dtype: DType::F32,
    dequantize,
    quantize: Some(quantize),
    x86_quantize: None,
    dot: Some(Dot {
        act: DType::F32,
        scalar: vec_dot,
        x86: on_x86!(crate::x86::Kernels::new::<x86::Avx2, x86::Avx2>().cols_multiple_of(8)),
        neon: None,
    }),
    packed: None,
};

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

/// x86-64 kernels for F32 weights x F32 activations, 8 elements per step (rows must be a multiple of 8).
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use crate::x86::*;

    pub(crate) type Avx2 = Floats<F32>;

    /// 8 f32 values for [`Floats`].
    pub(crate) struct F32;

    impl Widen for F32 {
        const BYTES: usize = 32;

        #[target_feature(enable = "avx2,fma,f16c")]
        #[inline]
        unsafe fn load8(p: *const u8) -> __m256 {
            _mm256_loadu_ps(p as *const f32)
        }
    }
}
