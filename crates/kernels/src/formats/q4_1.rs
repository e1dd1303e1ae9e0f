//! Q4_1: 32 weights as 4-bit q with an f16 scale and f16 minimum; value = d * q + m. Pairs with Q8_1 activations.
//!
//! Block (20 bytes): `d: f16` at 0, `m: f16` at 2, `qs: [u8; 16]` at 4 (nibble order as in Q4_0).

use super::{f16_at, put_f16};

pub const QK: usize = 32;
pub const BLOCK_BYTES: usize = 20;

pub fn dequantize(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(BLOCK_BYTES).zip(dst.chunks_exact_mut(QK)) {
        let (d, m) = (f16_at(b, 0), f16_at(b, 2));
        for j in 0..16 {
            y[j] = (b[4 + j] & 0x0F) as f32 * d + m;
            y[j + 16] = (b[4 + j] >> 4) as f32 * d + m;
        }
    }
}

/// ggml's reference: d = (max - min) / 15, q = min(15, trunc((x - min) / d + 0.5)).
pub fn quantize(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(BLOCK_BYTES)) {
        let min = x.iter().fold(f32::MAX, |m, &v| if v < m { v } else { m });
        let max = x.iter().fold(f32::MIN, |m, &v| if v > m { v } else { m });
        let d = (max - min) / 15.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        put_f16(b, 0, d);
        put_f16(b, 2, min);
        for j in 0..16 {
            let q0 = (((x[j] - min) * id + 0.5) as u8).min(15);
            let q1 = (((x[j + 16] - min) * id + 0.5) as u8).min(15);
            b[4 + j] = q0 | (q1 << 4);
        }
    }
}

/// Scalar specification of Q4_1 x Q8_1: per block `d_w * d_a * sum(q_w * q_a) + m_w * s_a`.
pub fn vec_dot(w: &[u8], a: &[u8]) -> f32 {
    let mut sum = 0.0f32;
    for (bw, ba) in w
        .chunks_exact(BLOCK_BYTES)
        .zip(a.chunks_exact(super::q8_1::BLOCK_BYTES))
    {
        let mut sumi = 0i32;
        for j in 0..16 {
            sumi += (bw[4 + j] & 0x0F) as i32 * ba[4 + j] as i8 as i32
                + (bw[4 + j] >> 4) as i32 * ba[4 + j + 16] as i8 as i32;
        }
        sum += sumi as f32 * (f16_at(bw, 0) * f16_at(ba, 0)) + f16_at(bw, 2) * f16_at(ba, 2);
    }
    sum
}

/// x86-64 kernels for Q4_1 x Q8_1.
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use crate::x86::*;

    macro_rules! kernel {
        ($name:ident, $features:literal, $dot:ident) => {
            pub(crate) struct $name;

            impl Block for $name {
                const W: usize = super::BLOCK_BYTES;
                const A: usize = crate::formats::q8_1::BLOCK_BYTES;
                /// ([d, m, 0, 0], the 32 quants as bytes)
                type U = (__m128, __m256i);
                type Acc = __m256;

                #[target_feature(enable = $features)]
                #[inline]
                unsafe fn zero() -> __m256 {
                    _mm256_setzero_ps()
                }

                #[target_feature(enable = $features)]
                #[inline]
                unsafe fn unpack(w: *const u8) -> Self::U {
                    (f16x2(w), nibbles32(w.add(4)))
                }

                #[target_feature(enable = $features)]
                #[inline]
                unsafe fn dot(u: &Self::U, a: *const u8, acc: __m256) -> __m256 {
                    // [d_w * d_a, m_w * s_a, 0, 0]
                    let p = _mm_mul_ps(u.0, f16x2(a));
                    let s = _mm256_cvtepi32_ps($dot(u.1, load256(a.add(4))));
                    let acc = _mm256_fmadd_ps(_mm256_broadcastss_ps(p), s, acc);
                    _mm256_add_ps(
                        acc,
                        _mm256_zextps128_ps256(_mm_blend_ps::<0b0010>(_mm_setzero_ps(), p)),
                    )
                }

                #[target_feature(enable = $features)]
                #[inline]
                unsafe fn reduce(acc: __m256) -> f32 {
                    hsum256(acc)
                }
            }
        };
    }

    kernel!(Avx2, "avx2,fma,f16c", dot_u8i8);
    kernel!(
        Vnni,
        "avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni",
        dot_u8i8_vnni
    );
}

/// aarch64 NEON dot product for Q4_1 x Q8_1.
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
        let mut sum = vdupq_n_f32(0.0);
        let mut sum_m = 0.0f32;
        for (bw, ba) in w
            .chunks_exact(super::BLOCK_BYTES)
            .zip(a.chunks_exact(crate::formats::q8_1::BLOCK_BYTES))
        {
            let (pw, pa) = (bw.as_ptr(), ba.as_ptr());
            let q = vld1q_u8(pw.add(4));
            let lo = vreinterpretq_s8_u8(vandq_u8(q, vdupq_n_u8(0x0F)));
            let hi = vreinterpretq_s8_u8(vshrq_n_u8::<4>(q));
            let acc = D::dot(vdupq_n_s32(0), lo, load_i8(pa.add(4)));
            let acc = D::dot(acc, hi, load_i8(pa.add(20)));
            let d = super::f16_at(bw, 0) * super::f16_at(ba, 0);
            sum = vmlaq_n_f32(sum, vcvtq_f32_s32(acc), d);
            sum_m += super::f16_at(bw, 2) * super::f16_at(ba, 2);
        }
        vaddvq_f32(sum) + sum_m
    }
}

/// 512-bit AVX512-VNNI kernel for Q4_1 x Q8_1, two blocks per step (rows of an even number of blocks).
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86_512 {
    use crate::x86::*;

    pub(crate) struct Vnni512;

    impl Block for Vnni512 {
        const W: usize = 2 * super::BLOCK_BYTES;
        const A: usize = 2 * crate::formats::q8_1::BLOCK_BYTES;
        /// ([d0, m0, d1, m1], quants as bytes)
        type U = (__m128, __m512i);
        type Acc = __m512;

        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")]
        #[inline]
        unsafe fn zero() -> __m512 {
            _mm512_setzero_ps()
        }

        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")]
        #[inline]
        unsafe fn unpack(w: *const u8) -> Self::U {
            let q = _mm512_inserti64x4::<1>(
                _mm512_castsi256_si512(nibbles32(w.add(4))),
                nibbles32(w.add(24)),
            );
            (f16x2x2(w, w.add(20)), q)
        }

        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")]
        #[inline]
        unsafe fn dot(u: &Self::U, a: *const u8, acc: __m512) -> __m512 {
            // [d0 da0, m0 s0, d1 da1, m1 s1]
            let p = _mm_mul_ps(u.0, f16x2x2(a, a.add(36)));
            let s =
                _mm512_dpbusd_epi32(_mm512_setzero_si512(), u.1, load2x256(a.add(4), a.add(40)));
            let acc = _mm512_fmadd_ps(spread2::<0, 2>(p), _mm512_cvtepi32_ps(s), acc);
            _mm512_add_ps(
                acc,
                _mm512_zextps128_ps512(_mm_blend_ps::<0b1010>(_mm_setzero_ps(), p)),
            )
        }

        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")]
        #[inline]
        unsafe fn reduce(acc: __m512) -> f32 {
            hsum512(acc)
        }
    }
}
