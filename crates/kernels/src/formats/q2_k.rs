//! Q2_K: super-blocks of 256 weights in 16 groups of 16; 2-bit q, 4-bit scale and min per group;
//! value = d * sc * q - dmin * m. Pairs with Q8_K activations.
//!
//! Block (84 bytes): `scales: [u8; 16]` at 0 (low nibble sc, high nibble m), `qs: [u8; 64]` at 16, `d: f16` at 80,
//! `dmin: f16` at 82. Element `128c + 32j + l` (c < 2, j < 4, l < 32) is bits 2j..2j+2 of qs[32c + l]; its group is
//! element / 16.

use super::{f16_at, on_neon, on_x86, q8_k, Dot, Spec};
use crate::DType;

pub const QK: usize = DType::Q2_K.block_size();
pub const BLOCK_BYTES: usize = DType::Q2_K.type_size();

/// Q2_K's row of the format registry.
pub(crate) const SPEC: Spec = Spec {
    dtype: DType::Q2_K,
    dequantize,
    quantize: None,
    x86_quantize: None,
    dot: Some(Dot {
        act: DType::Q8_K,
        scalar: vec_dot,
        x86: on_x86!(crate::x86::Kernels::new::<x86::Avx2, x86::Avx2>()),
        neon: on_neon!(crate::neon::neon_kernels!(neon::vec_dot)),
    }),
    packed: None,
};

/// The 2-bit quant of element e (0..256).
#[inline(always)]
pub fn quant(b: &[u8], e: usize) -> i32 {
    let (c, j, l) = (e / 128, (e % 128) / 32, e % 32);
    ((b[16 + 32 * c + l] >> (2 * j)) & 3) as i32
}

pub fn dequantize(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(BLOCK_BYTES).zip(dst.chunks_exact_mut(QK)) {
        let (d, dmin) = (f16_at(b, 80), f16_at(b, 82));
        for (e, v) in y.iter_mut().enumerate() {
            let sc = b[e / 16];
            let dl = d * (sc & 0x0F) as f32;
            let ml = dmin * (sc >> 4) as f32;
            *v = dl * quant(b, e) as f32 - ml;
        }
    }
}

/// Scalar specification of Q2_K x Q8_K: `d_a * (d * sum_g sc_g * sum(q * q_a) - dmin * sum_g m_g * bsum_g)`.
pub fn vec_dot(w: &[u8], a: &[u8]) -> f32 {
    let mut sum = 0.0f32;
    for (bw, ba) in w
        .chunks_exact(BLOCK_BYTES)
        .zip(a.chunks_exact(q8_k::BLOCK_BYTES))
    {
        let mut isum = 0i32;
        let mut summs = 0i32;
        for g in 0..16 {
            let sc = bw[g];
            summs += (sc >> 4) as i32 * q8_k::bsum(ba, g);
            let s: i32 = (16 * g..16 * g + 16)
                .map(|e| quant(bw, e) * ba[q8_k::QS + e] as i8 as i32)
                .sum();
            isum += (sc & 0x0F) as i32 * s;
        }
        let da = super::f32_at(ba, 0);
        sum += da * f16_at(bw, 80) * isum as f32 - da * f16_at(bw, 82) * summs as f32;
    }
    sum
}

/// x86-64 kernels for Q2_K x Q8_K.
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use crate::x86::*;

    /// A Q2_K block with its scales unpacked (the quants stay in memory).
    #[derive(Clone, Copy)]
    pub(crate) struct U {
        w: *const u8,
        /// [d, dmin, 0, 0]
        dd: __m128,
        /// For each 32-element chunk i: [scale 2i x 8 | scale 2i+1 x 8] as i16.
        sc: [__m256i; 8],
        /// The 16 mins as i16.
        mins: __m256i,
    }

    block! {
        Avx2: avx2;
        W = super::BLOCK_BYTES, A = crate::formats::q8_k::BLOCK_BYTES, U = U, Acc = __m256;
        unpack(w) {
            let s = _mm_loadu_si128(w as *const __m128i);
            U {
                w,
                dd: f16x2(w.add(80)),
                sc: std::array::from_fn(|i| {
                    _mm256_set_m128i(
                        _mm_set1_epi16((*w.add(2 * i + 1) & 0x0F) as i16),
                        _mm_set1_epi16((*w.add(2 * i) & 0x0F) as i16),
                    )
                }),
                mins: _mm256_cvtepu8_epi16(_mm_and_si128(
                    _mm_srli_epi16::<4>(s),
                    _mm_set1_epi8(0x0F),
                )),
            }
        }
        dot(u, a, acc) {
            let m3 = _mm256_set1_epi8(3);
            let aq = a.add(4);
            let mut sumi = _mm256_setzero_si256();
            for c in 0..2 {
                let mut q = load256(u.w.add(16 + 32 * c));
                for j in 0..4 {
                    let v = _mm256_and_si256(q, m3);
                    q = _mm256_srli_epi16::<2>(q);
                    let p = _mm256_maddubs_epi16(v, load256(aq.add(128 * c + 32 * j)));
                    sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, u.sc[4 * c + j]));
                }
            }
            let summ = _mm256_cvtepi32_ps(_mm256_madd_epi16(u.mins, load256(a.add(260))));
            let dd = _mm_mul_ps(u.dd, _mm_set1_ps((a as *const f32).read_unaligned()));
            let acc = _mm256_fmadd_ps(_mm256_broadcastss_ps(dd), _mm256_cvtepi32_ps(sumi), acc);
            let dmin = _mm256_broadcastss_ps(_mm_movehdup_ps(dd));
            _mm256_fnmadd_ps(dmin, summ, acc)
        }
    }
}

/// aarch64 NEON dot product for Q2_K x Q8_K: one 4-lane sum per group of 16 scaled into a vector accumulator; the
/// mins through the activations' group sums.
#[cfg(target_arch = "aarch64")]
pub(crate) mod neon {
    use crate::neon::{load_i8, I8Dot};
    use std::arch::aarch64::*;

    /// [`super::vec_dot`] with NEON.
    ///
    /// # Safety
    /// The CPU must have NEON; `w` and `a` must hold the same number of whole blocks.
    #[target_feature(enable = "neon")]
    pub(crate) unsafe fn vec_dot<D: I8Dot>(w: &[u8], a: &[u8]) -> f32 {
        use crate::formats::q8_k;
        let m3 = vdupq_n_u8(3);
        let mut sum = 0.0f32;
        for (bw, ba) in w
            .chunks_exact(super::BLOCK_BYTES)
            .zip(a.chunks_exact(q8_k::BLOCK_BYTES))
        {
            let (pw, pa) = (bw.as_ptr(), ba.as_ptr().add(q8_k::QS));
            let mut isum = vdupq_n_s32(0);
            // Element 128c + 32j + 16h + i (i < 16) of group 8c + 2j + h.
            for c in 0..2 {
                for h in 0..2 {
                    let mut q = vld1q_u8(pw.add(16 + 32 * c + 16 * h));
                    for j in 0..4 {
                        let v = vreinterpretq_s8_u8(vandq_u8(q, m3));
                        q = vshrq_n_u8::<2>(q);
                        let dot = D::dot(
                            vdupq_n_s32(0),
                            v,
                            load_i8(pa.add(128 * c + 32 * j + 16 * h)),
                        );
                        isum = vmlaq_n_s32(isum, dot, (bw[8 * c + 2 * j + h] & 0x0F) as i32);
                    }
                }
            }
            let summs: i32 = (0..16)
                .map(|g| (bw[g] >> 4) as i32 * q8_k::bsum(ba, g))
                .sum();
            let da = super::super::f32_at(ba, 0);
            sum += da * super::f16_at(bw, 80) * vaddvq_s32(isum) as f32
                - da * super::f16_at(bw, 82) * summs as f32;
        }
        sum
    }
}
