//! Q8_K: the activation partner of the K-quants: 256 values as i8 with an f32 scale and sums of each 16.
//!
//! Block (292 bytes): `d: f32` at 0, `qs: [i8; 256]` at 4, `bsums: [i16; 16]` at 260 (bsums[j] = sum of qs[16j..16j+16]).

use super::{f32_at, on_x86, Spec};
use crate::DType;

pub const QK: usize = DType::Q8_K.block_size();
pub const BLOCK_BYTES: usize = DType::Q8_K.type_size();

/// Q8_K's row of the format registry (an activation format only).
pub(crate) const SPEC: Spec = Spec {
    dtype: DType::Q8_K,
    dequantize,
    quantize: Some(quantize),
    x86_quantize: on_x86!(x86_quant::quantize_avx2),
    dot: None,
    packed: None,
};
pub const QS: usize = 4;
pub const BSUMS: usize = 260;

pub fn dequantize(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(BLOCK_BYTES).zip(dst.chunks_exact_mut(QK)) {
        let d = f32_at(b, 0);
        for (j, v) in y.iter_mut().enumerate() {
            *v = d * b[QS + j] as i8 as f32;
        }
    }
}

/// The sum of the 16 quants of group `j` (0..16) as stored in the block.
#[inline(always)]
pub fn bsum(b: &[u8], j: usize) -> i32 {
    i16::from_le_bytes([b[BSUMS + 2 * j], b[BSUMS + 2 * j + 1]]) as i32
}

/// ggml's reference: scale from the value of largest magnitude (`iscale = -127 / max`), round half to even,
/// clamp at 127, `d = 1 / iscale`.
pub fn quantize(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(BLOCK_BYTES)) {
        let (mut max, mut amax) = (0.0f32, 0.0f32);
        for &v in x {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        if amax == 0.0 {
            b.fill(0);
            continue;
        }
        let iscale = -127.0 / max;
        for (j, &v) in x.iter().enumerate() {
            let q = super::nearest_int(iscale * v).min(127);
            b[QS + j] = q as i8 as u8;
        }
        for j in 0..QK / 16 {
            let s: i32 = (0..16).map(|i| b[QS + 16 * j + i] as i8 as i32).sum();
            b[BSUMS + 2 * j..BSUMS + 2 * j + 2].copy_from_slice(&(s as i16).to_le_bytes());
        }
        b[0..4].copy_from_slice(&(1.0 / iscale).to_le_bytes());
    }
}

/// x86-64 versions of the Q8_K quantizer (bit-identical to the scalar one).
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86_quant {
    use crate::x86::*;

    /// [`super::quantize`] with AVX2.
    ///
    /// # Safety
    /// The CPU must support AVX2, FMA and F16C; `dst` must hold `src.len() / 256` blocks.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) unsafe fn quantize_avx2(src: &[f32], dst: &mut [u8]) {
        for (x, b) in src
            .chunks_exact(super::QK)
            .zip(dst.chunks_exact_mut(super::BLOCK_BYTES))
        {
            let p = x.as_ptr();
            let amax = (0..8).fold(0f32, |m, i| m.max(amax32(p.add(32 * i))));
            if amax == 0.0 || amax.is_nan() {
                // NaN or all zero: leave it to the scalar reference.
                super::quantize(x, b);
                continue;
            }
            // The first value of largest magnitude gives the sign of the scale.
            let max = *x.iter().find(|v| v.abs() == amax).unwrap_or(&amax);
            let iscale = -127.0 / max;
            let is = _mm256_set1_ps(iscale);
            let lim = _mm256_set1_epi32(127);
            let ones = _mm256_set1_epi8(1);
            for c in 0..8 {
                let q: [__m256i; 4] = std::array::from_fn(|i| {
                    let v = _mm256_mul_ps(is, _mm256_loadu_ps(p.add(32 * c + 8 * i)));
                    let r = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(v);
                    _mm256_min_epi32(_mm256_cvtps_epi32(r), lim)
                });
                let q8 = pack_i8(q);
                _mm256_storeu_si256(b.as_mut_ptr().add(super::QS + 32 * c) as *mut __m256i, q8);
                // Sums of 16: pairs (maddubs with ones), then fours, then each 128-bit half.
                let s4 = _mm256_madd_epi16(_mm256_maddubs_epi16(ones, q8), _mm256_set1_epi16(1));
                let lo = hsum_epi32_128(_mm256_castsi256_si128(s4)) as i16;
                let hi = hsum_epi32_128(_mm256_extracti128_si256::<1>(s4)) as i16;
                let o = super::BSUMS + 4 * c;
                b[o..o + 2].copy_from_slice(&lo.to_le_bytes());
                b[o + 2..o + 4].copy_from_slice(&hi.to_le_bytes());
            }
            b[0..4].copy_from_slice(&(1.0 / iscale).to_le_bytes());
        }
    }
}
