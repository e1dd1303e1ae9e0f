//! Q8_0: 32 values as i8 with one f16 scale; value = d * q. Both a weight format and the activation partner of
//! Q4_0, Q5_0 and Q8_0 weights.
//!
//! Block (34 bytes): `d: f16` at 0, `qs: [i8; 32]` at 2.

use super::{f16_at, put_f16};

pub const QK: usize = 32;
pub const BLOCK_BYTES: usize = 34;

pub fn dequantize(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(BLOCK_BYTES).zip(dst.chunks_exact_mut(QK)) {
        let d = f16_at(b, 0);
        for (j, v) in y.iter_mut().enumerate() {
            *v = b[2 + j] as i8 as f32 * d;
        }
    }
}

/// ggml's reference: d = max|x| / 127, q = round-half-away(x / d).
pub fn quantize(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(BLOCK_BYTES)) {
        let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        put_f16(b, 0, d);
        for (j, v) in x.iter().enumerate() {
            b[2 + j] = super::round_half_away(v * id) as i8 as u8;
        }
    }
}

/// Scalar specification of Q8_0 x Q8_0: per block `d_w * d_a * sum(q_w * q_a)`.
pub fn vec_dot(w: &[u8], a: &[u8]) -> f32 {
    let mut sum = 0.0f32;
    for (bw, ba) in w.chunks_exact(BLOCK_BYTES).zip(a.chunks_exact(BLOCK_BYTES)) {
        let sumi: i32 = (0..QK)
            .map(|j| bw[2 + j] as i8 as i32 * ba[2 + j] as i8 as i32)
            .sum();
        sum += sumi as f32 * (f16_at(bw, 0) * f16_at(ba, 0));
    }
    sum
}

/// x86-64 kernels for Q8_0 x Q8_0: weights unpacked to signed bytes, then |w| . (a with w's sign).
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use crate::x86::*;

    macro_rules! kernel {
        ($name:ident, $features:literal, $dot:ident) => {
            pub(crate) struct $name;

            impl Block for $name {
                const W: usize = super::BLOCK_BYTES;
                const A: usize = crate::formats::q8_0::BLOCK_BYTES;
                /// ([d, 0, 0, 0], |w| as bytes, w as signed bytes)
                type U = (__m128, __m256i, __m256i);
                type Acc = __m256;

                #[target_feature(enable = $features)]
                #[inline]
                unsafe fn zero() -> __m256 {
                    _mm256_setzero_ps()
                }

                #[target_feature(enable = $features)]
                #[inline]
                unsafe fn unpack(w: *const u8) -> Self::U {
                    let q = load256(w.add(2));
                    (f16x1(w), _mm256_sign_epi8(q, q), q)
                }

                #[target_feature(enable = $features)]
                #[inline]
                unsafe fn dot(u: &Self::U, a: *const u8, acc: __m256) -> __m256 {
                    let dd = _mm_mul_ss(u.0, f16x1(a));
                    let s = _mm256_cvtepi32_ps($dot(u.1, _mm256_sign_epi8(load256(a.add(2)), u.2)));
                    _mm256_fmadd_ps(_mm256_broadcastss_ps(dd), s, acc)
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

/// x86-64 versions of the Q8_0 quantizer (bit-identical to the scalar one).
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
            let p = x.as_ptr();
            let d = amax32(p) / 127.0;
            let id = _mm256_set1_ps(if d != 0.0 { 1.0 / d } else { 0.0 });
            let q: [__m256i; 4] = std::array::from_fn(|i| {
                _mm256_cvtps_epi32(round_half_away256(_mm256_mul_ps(
                    _mm256_loadu_ps(p.add(8 * i)),
                    id,
                )))
            });
            b[0..2].copy_from_slice(&f32_to_f16(d).to_le_bytes());
            _mm256_storeu_si256(b.as_mut_ptr().add(2) as *mut __m256i, pack_i8(q));
        }
    }
}

/// aarch64 NEON dot product for Q8_0 x Q8_0.
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
        for (bw, ba) in w
            .chunks_exact(super::BLOCK_BYTES)
            .zip(a.chunks_exact(super::BLOCK_BYTES))
        {
            let (pw, pa) = (bw.as_ptr(), ba.as_ptr());
            let acc = D::dot(vdupq_n_s32(0), load_i8(pw.add(2)), load_i8(pa.add(2)));
            let acc = D::dot(acc, load_i8(pw.add(18)), load_i8(pa.add(18)));
            let d = super::f16_at(bw, 0) * super::f16_at(ba, 0);
            sum = vmlaq_n_f32(sum, vcvtq_f32_s32(acc), d);
        }
        vaddvq_f32(sum)
    }
}

/// 512-bit AVX512-VNNI kernel for Q8_0 x Q8_0, two blocks per step (rows of an even number of blocks).
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86_512 {
    use crate::x86::*;

    pub(crate) struct Vnni512;

    impl Block for Vnni512 {
        const W: usize = 2 * super::BLOCK_BYTES;
        const A: usize = 2 * super::BLOCK_BYTES;
        /// ([d0, 0, d1, 0], |w|, mask of negative w)
        type U = (__m128, __m512i, __mmask64);
        type Acc = __m512;

        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")]
        #[inline]
        unsafe fn zero() -> __m512 {
            _mm512_setzero_ps()
        }

        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")]
        #[inline]
        unsafe fn unpack(w: *const u8) -> Self::U {
            let q = load2x256(w.add(2), w.add(36));
            let d = _mm_cvtph_ps(_mm_set_epi32(
                0,
                0,
                (w.add(34) as *const u16).read_unaligned() as i32,
                (w as *const u16).read_unaligned() as i32,
            ));
            (d, _mm512_abs_epi8(q), _mm512_movepi8_mask(q))
        }

        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")]
        #[inline]
        unsafe fn dot(u: &Self::U, a: *const u8, acc: __m512) -> __m512 {
            let da = _mm_cvtph_ps(_mm_set_epi32(
                0,
                0,
                (a.add(34) as *const u16).read_unaligned() as i32,
                (a as *const u16).read_unaligned() as i32,
            ));
            let qa = load2x256(a.add(2), a.add(36));
            // a with the sign of w, so that |w| (unsigned) times it is w * a.
            let sa = _mm512_mask_sub_epi8(qa, u.2, _mm512_setzero_si512(), qa);
            let s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u.1, sa);
            _mm512_fmadd_ps(
                spread2::<0, 2>(_mm_mul_ps(u.0, da)),
                _mm512_cvtepi32_ps(s),
                acc,
            )
        }

        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")]
        #[inline]
        unsafe fn reduce(acc: __m512) -> f32 {
            hsum512(acc)
        }
    }
}
