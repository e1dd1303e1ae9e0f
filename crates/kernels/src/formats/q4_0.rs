//! Q4_0: 32 weights as 4-bit q with one f16 scale; value = d * (q - 8). Pairs with Q8_0 activations.
//!
//! Block (18 bytes): `d: f16` at 0, `qs: [u8; 16]` at 2; element j (< 16) is the low nibble of qs[j], element
//! j + 16 the high nibble.

use super::{f16_at, put_f16};

pub const QK: usize = 32;
pub const BLOCK_BYTES: usize = 18;

pub fn dequantize(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(BLOCK_BYTES).zip(dst.chunks_exact_mut(QK)) {
        let d = f16_at(b, 0);
        for j in 0..16 {
            y[j] = ((b[2 + j] & 0x0F) as i32 - 8) as f32 * d;
            y[j + 16] = ((b[2 + j] >> 4) as i32 - 8) as f32 * d;
        }
    }
}

/// ggml's reference: d = (signed value of largest magnitude) / -8, q = min(15, trunc(x / d + 8.5)).
pub fn quantize(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(BLOCK_BYTES)) {
        let (mut amax, mut max) = (0.0f32, 0.0f32);
        for &v in x {
            if amax < v.abs() {
                amax = v.abs();
                max = v;
            }
        }
        let d = max / -8.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        put_f16(b, 0, d);
        for j in 0..16 {
            let q0 = ((x[j] * id + 8.5) as u8).min(15);
            let q1 = ((x[j + 16] * id + 8.5) as u8).min(15);
            b[2 + j] = q0 | (q1 << 4);
        }
    }
}

/// Scalar specification of Q4_0 x Q8_0: per block `d_w * d_a * sum((q_w - 8) * q_a)`.
pub fn vec_dot(w: &[u8], a: &[u8]) -> f32 {
    let mut sum = 0.0f32;
    for (bw, ba) in w
        .chunks_exact(BLOCK_BYTES)
        .zip(a.chunks_exact(super::q8_0::BLOCK_BYTES))
    {
        let mut sumi = 0i32;
        for j in 0..16 {
            let lo = (bw[2 + j] & 0x0F) as i32 - 8;
            let hi = (bw[2 + j] >> 4) as i32 - 8;
            sumi += lo * ba[2 + j] as i8 as i32 + hi * ba[2 + j + 16] as i8 as i32;
        }
        sum += sumi as f32 * (f16_at(bw, 0) * f16_at(ba, 0));
    }
    sum
}

/// x86-64 kernels for Q4_0 x Q8_0: weights unpacked to signed bytes, then |w| . (a with w's sign).
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
                    let q = _mm256_sub_epi8(nibbles32(w.add(2)), _mm256_set1_epi8(8));
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

/// 512-bit AVX512-VNNI kernel for Q4_0 x Q8_0, two blocks per step (rows of an even number of blocks).
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86_512 {
    use crate::x86::*;

    pub(crate) struct Vnni512;

    impl Block for Vnni512 {
        const W: usize = 2 * super::BLOCK_BYTES;
        const A: usize = 2 * crate::formats::q8_0::BLOCK_BYTES;
        /// ([d0, 0, d1, 0], quants 0..16 as bytes)
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
                _mm512_castsi256_si512(nibbles32(w.add(2))),
                nibbles32(w.add(20)),
            );
            let d = _mm_cvtph_ps(_mm_set_epi32(
                0,
                0,
                (w.add(18) as *const u16).read_unaligned() as i32,
                (w as *const u16).read_unaligned() as i32,
            ));
            (d, q)
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
            // sum (q - 8) a = sum q a - 8 sum a
            let s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u.1, qa);
            let sa = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8(8), qa);
            let s = _mm512_sub_epi32(s, sa);
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

/// aarch64 NEON dot product for Q4_0 x Q8_0: the quants offset to signed bytes (-8..8), then signed byte products.
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
        let (m4, eight) = (vdupq_n_u8(0x0F), vdupq_n_s8(8));
        let mut sum = vdupq_n_f32(0.0);
        for (bw, ba) in w
            .chunks_exact(super::BLOCK_BYTES)
            .zip(a.chunks_exact(crate::formats::q8_0::BLOCK_BYTES))
        {
            let (pw, pa) = (bw.as_ptr(), ba.as_ptr());
            let q = vld1q_u8(pw.add(2));
            let lo = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(q, m4)), eight);
            let hi = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8::<4>(q)), eight);
            let acc = D::dot(vdupq_n_s32(0), lo, load_i8(pa.add(2)));
            let acc = D::dot(acc, hi, load_i8(pa.add(18)));
            let d = super::f16_at(bw, 0) * super::f16_at(ba, 0);
            sum = vmlaq_n_f32(sum, vcvtq_f32_s32(acc), d);
        }
        vaddvq_f32(sum)
    }
}
