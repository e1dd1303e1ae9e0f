//! BF16: the top 16 bits of an f32 (block size 1). Activations are rounded to bf16 too, as ggml does.

#[inline(always)]
fn bf16_at(b: &[u8], off: usize) -> f32 {
    f32::from_bits((u16::from_le_bytes([b[off], b[off + 1]]) as u32) << 16)
}

/// ggml's f32 -> bf16: NaN forced quiet, otherwise round to nearest even.
#[inline(always)]
pub fn from_f32(v: f32) -> u16 {
    let u = v.to_bits();
    if (u & 0x7fff_ffff) > 0x7f80_0000 {
        return ((u >> 16) | 64) as u16;
    }
    ((u as u64 + 0x7fff + ((u >> 16) & 1) as u64) >> 16) as u16
}

pub fn dequantize(src: &[u8], dst: &mut [f32]) {
    for (i, d) in dst.iter_mut().enumerate() {
        *d = bf16_at(src, 2 * i);
    }
}

pub fn quantize(src: &[f32], dst: &mut [u8]) {
    for (s, d) in src.iter().zip(dst.chunks_exact_mut(2)) {
        d.copy_from_slice(&from_f32(*s).to_le_bytes());
    }
}

/// Scalar specification: `sum_i w[i] * a[i]` over bf16 values widened to f32.
pub fn vec_dot(w: &[u8], a: &[u8]) -> f32 {
    let n = w.len() / 2;
    (0..n).map(|i| bf16_at(w, 2 * i) * bf16_at(a, 2 * i)).sum()
}

/// x86-64 kernels for BF16 weights x BF16 activations, 8 elements per step (rows must be a multiple of 8).
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use crate::x86::*;

    /// 8 elements at `p` widened to f32.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    unsafe fn load8(p: *const u8) -> __m256 {
        _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(
            _mm_loadu_si128(p as *const __m128i),
        )))
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
