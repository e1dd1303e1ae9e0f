//! Q5_K: as Q4_K with a fifth bit per weight; value = d * sc * q - dmin * m, q in 0..32. Pairs with Q8_K activations.
//!
//! Block (176 bytes): `d: f16` at 0, `dmin: f16` at 2, `scales: [u8; 12]` at 4 (as Q4_K), `qh: [u8; 32]` at 16,
//! `qs: [u8; 128]` at 48. Element `64c + 32h + l`: nibble h of qs[32c + l], fifth bit = bit (2c + h) of qh[l].

use super::{f16_at, on_neon, on_x86, q4_k::scale_min, q8_k, Dot, Spec};
use crate::packed::{Format, RowScales};
use crate::DType;

pub const QK: usize = DType::Q5_K.block_size();
pub const BLOCK_BYTES: usize = DType::Q5_K.type_size();

/// Q5_K's row of the format registry.
pub(crate) const SPEC: Spec = Spec {
    dtype: DType::Q5_K,
    dequantize,
    quantize: None,
    x86_quantize: None,
    dot: Some(Dot {
        act: DType::Q8_K,
        scalar: vec_dot,
        x86: on_x86!(crate::x86::Kernels::new::<x86::Avx2, x86::Avx2>()),
        neon: on_neon!(crate::neon::neon_kernels!(neon::vec_dot)),
    }),
    packed: Some(Format::with_min(32, 5, unpack_for_packing).in_super_blocks(8)),
};

/// The 5-bit quant of element e (0..256).
#[inline(always)]
pub fn quant(b: &[u8], e: usize) -> i32 {
    let (c, h, l) = (e / 64, (e % 64) / 32, e % 32);
    let low = (b[48 + 32 * c + l] >> (4 * h)) & 0x0F;
    let high = (b[16 + l] >> (2 * c + h)) & 1;
    (low | (high << 4)) as i32
}

pub fn dequantize(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(BLOCK_BYTES).zip(dst.chunks_exact_mut(QK)) {
        let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
        let (sc, mn) = scale_min(&b[4..16]);
        for (e, v) in y.iter_mut().enumerate() {
            let g = e / 32;
            *v = (d * sc[g] as f32) * quant(b, e) as f32 - dmin * mn[g] as f32;
        }
    }
}

/// Scalar specification of Q5_K x Q8_K (same shape as Q4_K's).
pub fn vec_dot(w: &[u8], a: &[u8]) -> f32 {
    let mut sum = 0.0f32;
    for (bw, ba) in w
        .chunks_exact(BLOCK_BYTES)
        .zip(a.chunks_exact(q8_k::BLOCK_BYTES))
    {
        let (sc, mn) = scale_min(&bw[4..16]);
        let (mut isum, mut summs) = (0i32, 0i32);
        for g in 0..8 {
            let dot: i32 = (32 * g..32 * g + 32)
                .map(|e| quant(bw, e) * ba[q8_k::QS + e] as i8 as i32)
                .sum();
            isum += sc[g] as i32 * dot;
            summs += mn[g] as i32 * (q8_k::bsum(ba, 2 * g) + q8_k::bsum(ba, 2 * g + 1));
        }
        let da = super::f32_at(ba, 0);
        sum += da * f16_at(bw, 0) * isum as f32 - da * f16_at(bw, 2) * summs as f32;
    }
    sum
}

/// Unpacks one row for packing (`crate::packed`), as Q4_K plus the fifth bit of element `64c + 32h + l`: bit
/// `2c + h` of byte `16 + l`.
fn unpack_for_packing(row: &[u8], q: &mut [u8], s: &mut RowScales) {
    super::q4_k::unpack_with_mins(row, BLOCK_BYTES, 48, q, s, |blk, c, qc| {
        for (h, qh) in qc.chunks_exact_mut(32).enumerate() {
            for (x, &hb) in qh.iter_mut().zip(&blk[16..48]) {
                *x |= ((hb >> (2 * c + h)) & 1) << 4;
            }
        }
    });
}

/// x86-64 kernels for Q5_K x Q8_K.
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use crate::x86::*;

    /// A Q5_K block with its scales unpacked (the quants stay in memory).
    #[derive(Clone, Copy)]
    pub(crate) struct U {
        w: *const u8,
        /// [d, dmin, 0, 0]
        dd: __m128,
        /// Scale g broadcast to 16 x i16.
        sc: [__m256i; 8],
        /// The 8 mins as i16.
        mins: __m128i,
    }

    block! {
        Avx2: avx2;
        W = super::BLOCK_BYTES, A = crate::formats::q8_k::BLOCK_BYTES, U = U, Acc = __m256;
        unpack(w) {
            let (sc, mn) =
                crate::formats::q4_k::scale_min_u64(std::slice::from_raw_parts(w.add(4), 12));
            U {
                w,
                dd: f16x2(w),
                sc: std::array::from_fn(|g| _mm256_set1_epi16(((sc >> (8 * g)) & 0xFF) as i16)),
                mins: _mm_cvtepu8_epi16(_mm_cvtsi64_si128(mn as i64)),
            }
        }
        dot(u, a, acc) {
            let m4 = _mm256_set1_epi8(0x0F);
            let m10 = _mm256_set1_epi8(0x10);
            let aq = a.add(4);
            // Bit g of each qh byte is the fifth bit of group g; shift one group down per step.
            let mut hb = load256(u.w.add(16));
            let mut sumi = _mm256_setzero_si256();
            for c in 0..4 {
                let q = load256(u.w.add(48 + 32 * c));
                let lo = _mm256_or_si256(
                    _mm256_and_si256(q, m4),
                    _mm256_and_si256(_mm256_slli_epi16::<4>(hb), m10),
                );
                hb = _mm256_srli_epi16::<1>(hb);
                let hi = _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16::<4>(q), m4),
                    _mm256_and_si256(_mm256_slli_epi16::<4>(hb), m10),
                );
                hb = _mm256_srli_epi16::<1>(hb);
                let p0 = _mm256_madd_epi16(
                    _mm256_maddubs_epi16(lo, load256(aq.add(64 * c))),
                    u.sc[2 * c],
                );
                let p1 = _mm256_madd_epi16(
                    _mm256_maddubs_epi16(hi, load256(aq.add(64 * c + 32))),
                    u.sc[2 * c + 1],
                );
                sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p0, p1));
            }
            let bs = a.add(260) as *const __m128i;
            let g8 = _mm_hadd_epi16(_mm_loadu_si128(bs), _mm_loadu_si128(bs.add(1)));
            let m = _mm_cvtepi32_ps(_mm_madd_epi16(g8, u.mins));
            let dd = _mm_mul_ps(u.dd, _mm_set1_ps((a as *const f32).read_unaligned()));
            let acc = _mm256_fmadd_ps(_mm256_broadcastss_ps(dd), _mm256_cvtepi32_ps(sumi), acc);
            let dmin = _mm_permute_ps::<0b01_01_01_01>(dd);
            _mm256_sub_ps(acc, _mm256_zextps128_ps256(_mm_mul_ps(m, dmin)))
        }
    }
}

/// aarch64 NEON dot product for Q5_K x Q8_K: the 5-bit quants (0..32) as signed bytes, one 4-lane sum per group of
/// 32 scaled into a vector accumulator.
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
        let (m4, m10) = (vdupq_n_u8(0x0F), vdupq_n_u8(0x10));
        let mut sum = 0.0f32;
        for (bw, ba) in w
            .chunks_exact(super::BLOCK_BYTES)
            .zip(a.chunks_exact(q8_k::BLOCK_BYTES))
        {
            let (pw, pa) = (bw.as_ptr(), ba.as_ptr().add(q8_k::QS));
            let (sc, mn) = super::scale_min(&bw[4..16]);
            // Elements l and 16 + l of each 32: bit 2c (group 2c) and 2c + 1 (group 2c + 1) of qh[l]; shifted down
            // two bits per chunk.
            let mut hb = [vld1q_u8(pw.add(16)), vld1q_u8(pw.add(32))];
            let mut isum = vdupq_n_s32(0);
            for c in 0..4 {
                let (mut lo, mut hi) = (vdupq_n_s32(0), vdupq_n_s32(0));
                for (h, hb) in hb.iter_mut().enumerate() {
                    let q = vld1q_u8(pw.add(48 + 32 * c + 16 * h));
                    let ql = vorrq_u8(vandq_u8(q, m4), vandq_u8(vshlq_n_u8::<4>(*hb), m10));
                    let qu = vorrq_u8(vshrq_n_u8::<4>(q), vandq_u8(vshlq_n_u8::<3>(*hb), m10));
                    *hb = vshrq_n_u8::<2>(*hb);
                    let e = 64 * c + 16 * h;
                    lo = D::dot(lo, vreinterpretq_s8_u8(ql), load_i8(pa.add(e)));
                    hi = D::dot(hi, vreinterpretq_s8_u8(qu), load_i8(pa.add(e + 32)));
                }
                isum = vmlaq_n_s32(isum, lo, sc[2 * c] as i32);
                isum = vmlaq_n_s32(isum, hi, sc[2 * c + 1] as i32);
            }
            let summs: i32 = mn
                .iter()
                .enumerate()
                .map(|(g, m)| *m as i32 * (q8_k::bsum(ba, 2 * g) + q8_k::bsum(ba, 2 * g + 1)))
                .sum();
            let da = super::super::f32_at(ba, 0);
            sum += da * super::f16_at(bw, 0) * vaddvq_s32(isum) as f32
                - da * super::f16_at(bw, 2) * summs as f32;
        }
        sum
    }
}
