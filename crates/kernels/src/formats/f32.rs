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

/// x86-64 kernels for F32 weights x F32 activations, 8 elements per step (rows must be a multiple of 8).
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use crate::x86::*;

    /// 8 elements at `p` widened to f32.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn load8(p: *const u8) -> __m256 {
        _mm256_loadu_ps(p as *const f32)
    }

    pub(crate) struct Avx2;

    impl Block for Avx2 {
        const W: usize = 32;
        const A: usize = 32;
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
