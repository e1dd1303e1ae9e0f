//! Q8_1: Q8_0 plus the block's sum; the activation partner of Q4_1 and Q5_1 weights (their minimum needs the sum).
//!
//! Block (36 bytes): `d: f16` at 0, `s: f16 = d * sum(qs)` at 2, `qs: [i8; 32]` at 4.

use super::{f16_at, on_x86, put_f16, Spec};
use crate::DType;

pub const QK: usize = DType::Q8_1.block_size();
pub const BLOCK_BYTES: usize = DType::Q8_1.type_size();

/// Q8_1's row of the format registry (an activation format only).
pub(crate) const SPEC: Spec = Spec {
    dtype: DType::Q8_1,
    dequantize,
    quantize: Some(quantize),
    x86_quantize: on_x86!(x86_quant::quantize_avx2),
    dot: None,
    packed: None,
};

pub fn dequantize(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(BLOCK_BYTES).zip(dst.chunks_exact_mut(QK)) {
        let d = f16_at(b, 0);
        for (j, v) in y.iter_mut().enumerate() {
            *v = b[4 + j] as i8 as f32 * d;
        }
    }
}

/// ggml's reference: as Q8_0, plus `s = d * sum(q)`.
pub fn quantize(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(BLOCK_BYTES)) {
        let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut sum = 0i32;
        for (j, v) in x.iter().enumerate() {
            let q = super::round_half_away(v * id) as i8;
            sum += q as i32;
            b[4 + j] = q as u8;
        }
        put_f16(b, 0, d);
        put_f16(b, 2, sum as f32 * d);
    }
}

/// x86-64 versions of the Q8_1 quantizer (bit-identical to the scalar one).
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86_quant {
    use crate::x86::*;

    /// [`super::quantize`] with AVX2.
    ///
    /// # Safety
    /// The CPU must support AVX2, FMA and F16C; `dst` must hold `src.len() / 32` blocks.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) unsafe fn quantize_avx2(src: &[f32], dst: &mut [u8]) {
        for (x, b) in src
            .chunks_exact(super::QK)
            .zip(dst.chunks_exact_mut(super::BLOCK_BYTES))
        {
            let (d, q) = quantize32(x.as_ptr());
            let s = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
            let s = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256::<1>(s));
            let sum = hsum_epi32_128(s);
            b[0..2].copy_from_slice(&f32_to_f16(d).to_le_bytes());
            b[2..4].copy_from_slice(&f32_to_f16(sum as f32 * d).to_le_bytes());
            _mm256_storeu_si256(b.as_mut_ptr().add(4) as *mut __m256i, pack_i8(q));
        }
    }
}
