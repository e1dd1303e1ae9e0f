//! BF16: the top 16 bits of an f32 (block size 1). Activations are rounded to bf16 too, as ggml does.

use super::{on_x86, Dot, Spec};
use crate::DType;

/// BF16's row of the format registry.
pub(crate) const SPEC: Spec = Spec {
    dtype: DType::BF16,
    dequantize,
    quantize: Some(quantize),
    x86_quantize: None,
    dot: Some(Dot {
        act: DType::BF16,
        scalar: vec_dot,
        x86: on_x86!(crate::x86::Kernels::new::<x86::Avx2, x86::Avx2>().cols_multiple_of(8)),
        neon: None,
    }),
    packed: None,
};

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

    pub(crate) type Avx2 = Floats<BF16>;

    /// 8 bf16 values for [`Floats`].
    pub(crate) struct BF16;

    impl Widen for BF16 {
        const BYTES: usize = 16;

        #[target_feature(enable = "avx2,fma,f16c")]
        #[inline]
        unsafe fn load8(p: *const u8) -> __m256 {
            _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(
                _mm_loadu_si128(p as *const __m128i),
            )))
        }
    }
}
