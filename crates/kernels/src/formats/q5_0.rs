//! Q5_0: 32 weights as 5-bit q with one f16 scale; value = d * (q - 16). Pairs with Q8_0 activations.
//!
//! Block (22 bytes): `d: f16` at 0, `qh: u32 LE` at 2 (bit j = fifth bit of element j), `qs: [u8; 16]` at 6
//! (low four bits, nibble order as in Q4_0).

use super::{f16_at, put_f16};

pub const QK: usize = 32;
pub const BLOCK_BYTES: usize = 22;

/// The 5-bit quant of element j (0..32), without the -16 offset.
#[inline(always)]
pub fn quant(b: &[u8], qh: u32, j: usize) -> i32 {
    let lo = if j < 16 {
        b[6 + j] & 0x0F
    } else {
        b[6 + j - 16] >> 4
    };
    (lo as u32 | (((qh >> j) & 1) << 4)) as i32
}

pub fn dequantize(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(BLOCK_BYTES).zip(dst.chunks_exact_mut(QK)) {
        let d = f16_at(b, 0);
        let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
        for (j, v) in y.iter_mut().enumerate() {
            *v = (quant(b, qh, j) - 16) as f32 * d;
        }
    }
}

/// ggml's reference: d = (signed value of largest magnitude) / -16, q = min(31, trunc(x / d + 16.5)).
pub fn quantize(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(BLOCK_BYTES)) {
        let (mut amax, mut max) = (0.0f32, 0.0f32);
        for &v in x {
            if amax < v.abs() {
                amax = v.abs();
                max = v;
            }
        }
        let d = max / -16.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        put_f16(b, 0, d);
        let mut qh = 0u32;
        for j in 0..16 {
            let q0 = ((x[j] * id + 16.5) as u8).min(31);
            let q1 = ((x[j + 16] * id + 16.5) as u8).min(31);
            b[6 + j] = (q0 & 0x0F) | ((q1 & 0x0F) << 4);
            qh |= ((q0 as u32 >> 4) << j) | ((q1 as u32 >> 4) << (j + 16));
        }
        b[2..6].copy_from_slice(&qh.to_le_bytes());
    }
}

/// Scalar specification of Q5_0 x Q8_0: per block `d_w * d_a * sum((q_w - 16) * q_a)`.
pub fn vec_dot(w: &[u8], a: &[u8]) -> f32 {
    let mut sum = 0.0f32;
    for (bw, ba) in w
        .chunks_exact(BLOCK_BYTES)
        .zip(a.chunks_exact(super::q8_0::BLOCK_BYTES))
    {
        let qh = u32::from_le_bytes([bw[2], bw[3], bw[4], bw[5]]);
        let sumi: i32 = (0..QK)
            .map(|j| (quant(bw, qh, j) - 16) * ba[2 + j] as i8 as i32)
            .sum();
        sum += sumi as f32 * (f16_at(bw, 0) * f16_at(ba, 0));
    }
    sum
}

/// x86-64 kernels for Q5_0 x Q8_0: weights unpacked to signed bytes, then |w| . (a with w's sign).
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
                    let q = {
                        let qh = (w.add(2) as *const u32).read_unaligned();
                        let high = _mm256_and_si256(bits_to_bytes(qh), _mm256_set1_epi8(0x10));
                        _mm256_sub_epi8(
                            _mm256_or_si256(nibbles32(w.add(6)), high),
                            _mm256_set1_epi8(16),
                        )
                    };
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

/// 512-bit AVX512-VNNI kernel for Q5_0 x Q8_0, two blocks per step (rows of an even number of blocks).
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86_512 {
    use crate::x86::*;

    pub(crate) struct Vnni512;

    impl Block for Vnni512 {
        const W: usize = 2 * super::BLOCK_BYTES;
        const A: usize = 2 * crate::formats::q8_0::BLOCK_BYTES;
        /// ([d0, 0, d1, 0], quants 0..32 as bytes)
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
            let low = _mm512_inserti64x4::<1>(
                _mm512_castsi256_si512(nibbles32(w.add(6))),
                nibbles32(w.add(28)),
            );
            let qh0 = (w.add(2) as *const u32).read_unaligned() as u64;
            let qh1 = (w.add(24) as *const u32).read_unaligned() as u64;
            let q = _mm512_or_si512(
                low,
                _mm512_maskz_mov_epi8(qh0 | (qh1 << 32), _mm512_set1_epi8(0x10)),
            );
            let d = _mm_cvtph_ps(_mm_set_epi32(
                0,
                0,
                (w.add(22) as *const u16).read_unaligned() as i32,
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
            // sum (q - 16) a = sum q a - 16 sum a
            let s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u.1, qa);
            let sa = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8(16), qa);
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

/// aarch64 NEON dot product for Q5_0 x Q8_0: nibble | fifth bit, offset to signed bytes (-16..16).
#[cfg(target_arch = "aarch64")]
pub(crate) mod neon {
    use crate::neon::{bit_mask16, load_i8, I8Dot};
    use std::arch::aarch64::*;

    /// [`super::vec_dot`] with NEON.
    ///
    /// # Safety
    /// The CPU must have NEON; `w` and `a` must hold the same number of whole blocks.
    #[target_feature(enable = "neon")]
    pub(crate) unsafe fn vec_dot<D: I8Dot>(w: &[u8], a: &[u8]) -> f32 {
        let (m4, m10, sixteen) = (vdupq_n_u8(0x0F), vdupq_n_u8(0x10), vdupq_n_s8(16));
        let mut sum = vdupq_n_f32(0.0);
        for (bw, ba) in w
            .chunks_exact(super::BLOCK_BYTES)
            .zip(a.chunks_exact(crate::formats::q8_0::BLOCK_BYTES))
        {
            let (pw, pa) = (bw.as_ptr(), ba.as_ptr());
            let qh = u32::from_le_bytes([bw[2], bw[3], bw[4], bw[5]]);
            let q = vld1q_u8(pw.add(6));
            let lo = vorrq_u8(vandq_u8(q, m4), vandq_u8(bit_mask16(qh as u16), m10));
            let hi = vorrq_u8(
                vshrq_n_u8::<4>(q),
                vandq_u8(bit_mask16((qh >> 16) as u16), m10),
            );
            let lo = vsubq_s8(vreinterpretq_s8_u8(lo), sixteen);
            let hi = vsubq_s8(vreinterpretq_s8_u8(hi), sixteen);
            let acc = D::dot(vdupq_n_s32(0), lo, load_i8(pa.add(2)));
            let acc = D::dot(acc, hi, load_i8(pa.add(18)));
            let d = super::f16_at(bw, 0) * super::f16_at(ba, 0);
            sum = vmlaq_n_f32(sum, vcvtq_f32_s32(acc), d);
        }
        vaddvq_f32(sum)
    }
}
