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

/// x86-64 kernels for F16 weights x F16 activations, 8 elements per step (rows must be a multiple of 8).
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use crate::x86::*;

    /// 8 elements at `p` widened to f32.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn load8(p: *const u8) -> __m256 {
        _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i))
    }

    pub(crate) struct Avx2;

    impl Block for Avx2 {
        const W: usize = 16;
        const A: usize = 16;
        type U = __m256;
        type Acc = __m256;

        #[target_feature(enable = "avx2,fma,f16c")]
        #[inline]
        unsafe fn zero() -> __m256 {
            _mm256_setzero_ps()
        }

        #[target_feature(enable = "avx2,fma,f16c")]
        #[inline]
        unsafe fn unpack(w: *const u8) -> __m256 {
            load8(w)
        }

        #[target_feature(enable = "avx2,fma,f16c")]
        #[inline]
        unsafe fn dot(u: &__m256, a: *const u8, acc: __m256) -> __m256 {
            _mm256_fmadd_ps(*u, load8(a), acc)
        }

        #[target_feature(enable = "avx2,fma,f16c")]
        #[inline]
        unsafe fn reduce(acc: __m256) -> f32 {
            hsum256(acc)
        }
    }
}
