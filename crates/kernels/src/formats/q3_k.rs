//! Q3_K: super-blocks of 256 weights in 16 groups of 16; 3-bit q (2 low bits + a high-bit mask), signed 6-bit scale
//! per group; value = d * (sc - 32) * (q - 4), where q = low + 4 * hbit. Pairs with Q8_K activations.
//!
//! Block (110 bytes): `hmask: [u8; 32]` at 0, `qs: [u8; 64]` at 32, `scales: [u8; 12]` at 96, `d: f16` at 108.
//! Element `128c + 32j + l`: low bits 2j..2j+2 of qs[32c + l], high bit (4c + j) of hmask[l]. Scale k (0..16): low
//! nibble of scales[k] (k < 8) or high nibble of scales[k - 8], plus bits 2(k/4)..2(k/4)+2 of scales[8 + k % 4] << 4.

use super::{f16_at, on_neon, on_x86, q8_k, Dot, Spec};
use crate::DType;

pub const QK: usize = DType::Q3_K.block_size();
pub const BLOCK_BYTES: usize = DType::Q3_K.type_size();

/// Q3_K's row of the format registry.
pub(crate) const SPEC: Spec = Spec {
    dtype: DType::Q3_K,
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

/// The signed quant of element e (0..256), in -4..4.
#[inline(always)]
pub fn quant(b: &[u8], e: usize) -> i32 {
    let (c, j, l) = (e / 128, (e % 128) / 32, e % 32);
    let low = ((b[32 + 32 * c + l] >> (2 * j)) & 3) as i32;
    let hbit = ((b[l] >> (4 * c + j)) & 1) as i32;
    low - if hbit == 1 { 0 } else { 4 }
}

/// The 16 signed group scales (-32..32).
pub fn scales(b: &[u8]) -> [i32; 16] {
    let s = &b[96..108];
    let mut out = [0i32; 16];
    for (k, o) in out.iter_mut().enumerate() {
        let low = if k < 8 { s[k] & 0x0F } else { s[k - 8] >> 4 };
        let high = (s[8 + k % 4] >> (2 * (k / 4))) & 3;
        *o = (low | (high << 4)) as i32 - 32;
    }
    out
}

pub fn dequantize(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(BLOCK_BYTES).zip(dst.chunks_exact_mut(QK)) {
        let d = f16_at(b, 108);
        let sc = scales(b);
        for (e, v) in y.iter_mut().enumerate() {
            *v = (d * sc[e / 16] as f32) * quant(b, e) as f32;
        }
    }
}

/// Scalar specification of Q3_K x Q8_K: `d * d_a * sum_g sc_g * sum(q * q_a)`.
pub fn vec_dot(w: &[u8], a: &[u8]) -> f32 {
    let mut sum = 0.0f32;
    for (bw, ba) in w
        .chunks_exact(BLOCK_BYTES)
        .zip(a.chunks_exact(q8_k::BLOCK_BYTES))
    {
        let sc = scales(bw);
        let mut isum = 0i32;
        for (g, s) in sc.iter().enumerate() {
            let dot: i32 = (16 * g..16 * g + 16)
                .map(|e| quant(bw, e) * ba[q8_k::QS + e] as i8 as i32)
                .sum();
            isum += s * dot;
        }
        sum += f16_at(bw, 108) * super::f32_at(ba, 0) * isum as f32;
    }
    sum
}

/// x86-64 kernels for Q3_K x Q8_K: the quants are used unsigned (0..8) and the -4 offset is taken off once per
/// block through the activations' group sums.
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use crate::x86::*;

    /// A Q3_K block with its scales unpacked (the quants stay in memory).
    #[derive(Clone, Copy)]
    pub(crate) struct U {
        w: *const u8,
        d: __m128,
        /// For each 32-element chunk i: [scale 2i x 8 | scale 2i+1 x 8] as i16.
        sc: [__m256i; 8],
        /// The 16 scales as i16.
        sc16: __m256i,
    }

    block! {
        Avx2: avx2;
        W = super::BLOCK_BYTES, A = crate::formats::q8_k::BLOCK_BYTES, U = U, Acc = __m256;
        unpack(w) {
            let s = super::scales(std::slice::from_raw_parts(w, super::BLOCK_BYTES));
            let s16: [i16; 16] = std::array::from_fn(|i| s[i] as i16);
            U {
                w,
                d: f16x1(w.add(108)),
                sc: std::array::from_fn(|i| {
                    _mm256_set_m128i(_mm_set1_epi16(s16[2 * i + 1]), _mm_set1_epi16(s16[2 * i]))
                }),
                sc16: _mm256_loadu_si256(s16.as_ptr() as *const __m256i),
            }
        }
        dot(u, a, acc) {
            let m3 = _mm256_set1_epi8(3);
            let m4 = _mm256_set1_epi8(4);
            let aq = a.add(4);
            // Bit (4c + j) of hmask[l] is the high bit of chunk (c, j); shift one chunk down per step.
            let mut hb = load256(u.w);
            let mut sumi = _mm256_setzero_si256();
            for c in 0..2 {
                let mut q = load256(u.w.add(32 + 32 * c));
                for j in 0..4 {
                    let low = _mm256_and_si256(q, m3);
                    q = _mm256_srli_epi16::<2>(q);
                    let high = _mm256_and_si256(_mm256_slli_epi16::<2>(hb), m4);
                    hb = _mm256_srli_epi16::<1>(hb);
                    let p = _mm256_maddubs_epi16(
                        _mm256_or_si256(low, high),
                        load256(aq.add(128 * c + 32 * j)),
                    );
                    sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, u.sc[4 * c + j]));
                }
            }
            // sum (q - 4) a sc = sum q a sc - 4 sum_g sc_g bsum_g
            let corr = _mm256_madd_epi16(u.sc16, load256(a.add(260)));
            let sumi = _mm256_sub_epi32(sumi, _mm256_slli_epi32::<2>(corr));
            let d = _mm_mul_ss(u.d, _mm_load_ss(a as *const f32));
            _mm256_fmadd_ps(_mm256_broadcastss_ps(d), _mm256_cvtepi32_ps(sumi), acc)
        }
    }
}

/// aarch64 NEON dot product for Q3_K x Q8_K: the quants as signed bytes (-4..4), one 4-lane sum per group of 16
/// scaled into a vector accumulator.
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
        let (m3, m4, four) = (vdupq_n_u8(3), vdupq_n_u8(4), vdupq_n_s8(4));
        let mut sum = 0.0f32;
        for (bw, ba) in w
            .chunks_exact(super::BLOCK_BYTES)
            .zip(a.chunks_exact(q8_k::BLOCK_BYTES))
        {
            let (pw, pa) = (bw.as_ptr(), ba.as_ptr().add(q8_k::QS));
            let sc = super::scales(bw);
            // Bit 4c + j of hmask[16h + i] is the high bit of element 128c + 32j + 16h + i (group 8c + 2j + h);
            // shifted down one bit per 32 elements.
            let mut hb = [vld1q_u8(pw), vld1q_u8(pw.add(16))];
            let mut isum = vdupq_n_s32(0);
            for c in 0..2 {
                let mut q = [vld1q_u8(pw.add(32 + 32 * c)), vld1q_u8(pw.add(48 + 32 * c))];
                for j in 0..4 {
                    for h in 0..2 {
                        let low = vandq_u8(q[h], m3);
                        let high = vandq_u8(vshlq_n_u8::<2>(hb[h]), m4);
                        q[h] = vshrq_n_u8::<2>(q[h]);
                        hb[h] = vshrq_n_u8::<1>(hb[h]);
                        let v = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(low, high)), four);
                        let dot = D::dot(
                            vdupq_n_s32(0),
                            v,
                            load_i8(pa.add(128 * c + 32 * j + 16 * h)),
                        );
                        isum = vmlaq_n_s32(isum, dot, sc[8 * c + 2 * j + h]);
                    }
                }
            }
            sum += super::f16_at(bw, 108) * super::super::f32_at(ba, 0) * vaddvq_s32(isum) as f32;
        }
        sum
    }
}
