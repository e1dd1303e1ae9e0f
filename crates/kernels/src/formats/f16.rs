//! F16: IEEE half floats (block size 1). Activations are rounded to f16 too, as ggml does, and products summed in f32.

use super::f16_at;
use super::{on_x86, Dot, Spec};
use crate::DType;

/// F16's row of the format registry.
pub(crate) const SPEC: Spec = Spec {
    dtype: DType::F16,
    dequantize,
    quantize: Some(quantize),
    x86_quantize: None,
    dot: Some(Dot {
        act: DType::F16,
        scalar: vec_dot,
        x86: on_x86!(crate::x86::Kernels::new::<x86::Avx2, x86::Avx2>().cols_multiple_of(8)),
        neon: None,
    }),
    packed: None,
};

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

/// x86-64 kernels for F16 weights x F16 activations, 8 elements per step (rows must be a multiple of 8).
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use crate::x86::*;

    pub(crate) type Avx2 = Floats<F16>;

    /// 8 f16 values for [`Floats`].
    pub(crate) struct F16;

    impl Widen for F16 {
        const BYTES: usize = 16;

        #[target_feature(enable = "avx2,fma,f16c")]
        #[inline]
        unsafe fn load8(p: *const u8) -> __m256 {
            _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i))
        }
    }
}
