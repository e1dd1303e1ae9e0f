//! Q4_K: super-blocks of 256 weights in 8 groups of 32; 4-bit q, 6-bit scale and min per group;
//! value = d * sc * q - dmin * m. Pairs with Q8_K activations.
//!
//! Block (144 bytes): `d: f16` at 0, `dmin: f16` at 2, `scales: [u8; 12]` at 4 (packed, see [`scale_min`]),
//! `qs: [u8; 128]` at 16. Element `64c + 32h + l` (c < 4, h < 2, l < 32) is nibble h of qs[32c + l], group 2c + h.

use super::{f16_at, on_neon, on_x86, put_f16, q8_k, Dot, Spec};
use crate::packed::{Format, RowScales};
use crate::DType;

pub const QK: usize = DType::Q4_K.block_size();
pub const BLOCK_BYTES: usize = DType::Q4_K.type_size();

/// Q4_K's row of the format registry.
pub(crate) const SPEC: Spec = Spec {
    dtype: DType::Q4_K,
    dequantize,
    quantize: Some(quantize),
    x86_quantize: None,
    dot: Some(Dot {
        act: DType::Q8_K,
        scalar: vec_dot,
        x86: on_x86!(crate::x86::Kernels::new::<x86::Avx2, x86::Avx2>()),
        neon: on_neon!(crate::neon::neon_kernels!(neon::vec_dot)),
    }),
    packed: Some(Format::with_min(32, 4, unpack_for_packing).in_super_blocks(8)),
};

/// Unpacks the 8 six-bit (scale, min) pairs shared by Q4_K and Q5_K from their 12 bytes: groups 0..4 take the low 6
/// bits of bytes 0..4 (scale) and 4..8 (min); groups 4..8 take a nibble of bytes 8..12 plus the top 2 bits of
/// bytes 0..4 (scale) or 4..8 (min).
pub fn scale_min(s: &[u8]) -> ([u8; 8], [u8; 8]) {
    let (mut sc, mut mn) = ([0u8; 8], [0u8; 8]);
    for j in 0..4 {
        sc[j] = s[j] & 0x3F;
        mn[j] = s[4 + j] & 0x3F;
        sc[4 + j] = (s[8 + j] & 0x0F) | ((s[j] >> 2) & 0x30);
        mn[4 + j] = (s[8 + j] >> 4) | ((s[4 + j] >> 2) & 0x30);
    }
    (sc, mn)
}

/// The 4-bit quant of element e (0..256).
#[inline(always)]
pub fn quant(b: &[u8], e: usize) -> i32 {
    let (c, h, l) = (e / 64, (e % 64) / 32, e % 32);
    ((b[16 + 32 * c + l] >> (4 * h)) & 0x0F) as i32
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

/// ggml's reference quantizer (`quantize_row_q4_K_ref`, what llama-quantize does without an importance matrix):
/// each group of 32 gets a weighted least-squares (scale, min) fit ([`super::fit_scale_min`]), the 8 scales and
/// mins are quantized to 6 bits against the block's largest, and the weights are re-quantized to those.
pub fn quantize(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(BLOCK_BYTES)) {
        let mut l = [0u8; QK];
        let (mut scales, mut mins) = ([0f32; 8], [0f32; 8]);
        let (mut max_scale, mut max_min) = (0f32, 0f32);
        for g in 0..8 {
            let xg = &x[32 * g..][..32];
            let av = (xg.iter().map(|v| v * v).sum::<f32>() / 32.0).sqrt();
            let mut w = [0f32; 32];
            w.iter_mut().zip(xg).for_each(|(w, v)| *w = av + v.abs());
            (scales[g], mins[g]) = super::fit_scale_min(xg, &w, 15, &mut l[32 * g..][..32]);
            if scales[g] > max_scale {
                max_scale = scales[g];
            }
            if mins[g] > max_min {
                max_min = mins[g];
            }
        }
        let inv_scale = if max_scale > 0.0 {
            63.0 / max_scale
        } else {
            0.0
        };
        let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
        let s = &mut b[4..16];
        s.fill(0);
        for g in 0..8 {
            // As ggml: the rounded value is truncated to a byte, then capped at 63.
            let ls = (super::nearest_int(inv_scale * scales[g]) as u8).min(63);
            let lm = (super::nearest_int(inv_min * mins[g]) as u8).min(63);
            if g < 4 {
                s[g] = ls;
                s[g + 4] = lm;
            } else {
                s[g + 4] = (ls & 0x0F) | ((lm & 0x0F) << 4);
                s[g - 4] |= (ls >> 4) << 6;
                s[g] |= (lm >> 4) << 6;
            }
        }
        put_f16(b, 0, max_scale / 63.0);
        put_f16(b, 2, max_min / 63.0);
        let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
        let (sc, mn) = scale_min(&b[4..16]);
        for g in 0..8 {
            let dg = d * sc[g] as f32;
            if dg == 0.0 {
                continue; // the group keeps its fit's quants, as in ggml
            }
            let dm = dmin * mn[g] as f32;
            for i in 32 * g..32 * g + 32 {
                l[i] = super::nearest_int((x[i] + dm) / dg).clamp(0, 15) as u8;
            }
        }
        for c in 0..4 {
            for i in 0..32 {
                b[16 + 32 * c + i] = l[64 * c + i] | (l[64 * c + 32 + i] << 4);
            }
        }
    }
}

/// Scalar specification of Q4_K x Q8_K:
/// `d_a * (d * sum_g sc_g * sum(q * q_a) - dmin * sum_g m_g * (bsum_2g + bsum_2g+1))`.
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

#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
/// The 8 scales and 8 mins of a Q4_K/Q5_K block packed as bytes of two u64 (scale/min g in byte g).
#[inline(always)]
pub(crate) fn scale_min_u64(s: &[u8]) -> (u64, u64) {
    let rd = |o: usize| u32::from_le_bytes([s[o], s[o + 1], s[o + 2], s[o + 3]]);
    let (u0, u1, u2) = (rd(0), rd(4), rd(8));
    let sc_lo = u0 & 0x3f3f_3f3f;
    let sc_hi = (u2 & 0x0f0f_0f0f) | (((u0 >> 6) & 0x0303_0303) << 4);
    let mn_lo = u1 & 0x3f3f_3f3f;
    let mn_hi = ((u2 >> 4) & 0x0f0f_0f0f) | (((u1 >> 6) & 0x0303_0303) << 4);
    (
        sc_lo as u64 | (sc_hi as u64) << 32,
        mn_lo as u64 | (mn_hi as u64) << 32,
    )
}

/// Unpacks one row for packing (`crate::packed`): the quants as unsigned bytes, per block `wd = d` and
/// `wm = -dmin`, per group of 32 its 6-bit scale and min.
fn unpack_for_packing(row: &[u8], q: &mut [u8], s: &mut RowScales) {
    unpack_with_mins(row, BLOCK_BYTES, 16, q, s, |_, _, _| {});
}

/// What Q4_K and Q5_K share of [`unpack_for_packing`]: blocks of `block_bytes` whose low 4 bits lie as 32 bytes of
/// nibbles per 64 elements from byte `nibbles`; `more(block, c, quants of elements 64c..64c + 64)` adds any higher
/// bits.
pub(crate) fn unpack_with_mins(
    row: &[u8],
    block_bytes: usize,
    nibbles: usize,
    q: &mut [u8],
    s: &mut RowScales,
    more: impl Fn(&[u8], usize, &mut [u8]),
) {
    for (b, (blk, qb)) in row
        .chunks_exact(block_bytes)
        .zip(q.chunks_exact_mut(QK))
        .enumerate()
    {
        (s.wd[b], s.wm[b]) = (f16_at(blk, 0), -f16_at(blk, 2));
        let (sc, mn) = scale_min(&blk[4..16]);
        for g in 0..8 {
            // 6-bit values: 0..=63.
            (s.sc[8 * b + g], s.mn[8 * b + g]) = (sc[g] as i8, mn[g] as i8);
        }
        for (c, qc) in qb.chunks_exact_mut(64).enumerate() {
            crate::packed::split_nibbles(&blk[nibbles + 32 * c..][..32], qc);
            more(blk, c, qc);
        }
    }
}

/// x86-64 kernels for Q4_K x Q8_K.
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use crate::x86::*;

    /// A Q4_K block with its scales unpacked (the quants stay in memory; they are re-read per token from L1).
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
            let (sc, mn) = super::scale_min_u64(std::slice::from_raw_parts(w.add(4), 12));
            U {
                w,
                dd: f16x2(w),
                sc: std::array::from_fn(|g| _mm256_set1_epi16(((sc >> (8 * g)) & 0xFF) as i16)),
                mins: _mm_cvtepu8_epi16(_mm_cvtsi64_si128(mn as i64)),
            }
        }
        dot(u, a, acc) {
            let m4 = _mm256_set1_epi8(0x0F);
            let aq = a.add(4);
            let mut sumi = _mm256_setzero_si256();
            for c in 0..4 {
                let q = load256(u.w.add(16 + 32 * c));
                let lo = _mm256_and_si256(q, m4);
                let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(q), m4);
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
            // Sums of the activations per group of 32, times the mins.
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

/// aarch64 NEON dot product for Q4_K x Q8_K.
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
        let mut sum = 0.0f32;
        for (bw, ba) in w
            .chunks_exact(super::BLOCK_BYTES)
            .zip(a.chunks_exact(q8_k::BLOCK_BYTES))
        {
            let (pw, pa) = (bw.as_ptr(), ba.as_ptr().add(q8_k::QS));
            let (sc, mn) = super::scale_min(&bw[4..16]);
            let m4 = vdupq_n_u8(0x0F);
            let mut isum = 0i32;
            for c in 0..4 {
                let q0 = vld1q_u8(pw.add(16 + 32 * c));
                let q1 = vld1q_u8(pw.add(16 + 32 * c + 16));
                let lo = D::dot(
                    D::dot(
                        vdupq_n_s32(0),
                        vreinterpretq_s8_u8(vandq_u8(q0, m4)),
                        load_i8(pa.add(64 * c)),
                    ),
                    vreinterpretq_s8_u8(vandq_u8(q1, m4)),
                    load_i8(pa.add(64 * c + 16)),
                );
                let hi = D::dot(
                    D::dot(
                        vdupq_n_s32(0),
                        vreinterpretq_s8_u8(vshrq_n_u8::<4>(q0)),
                        load_i8(pa.add(64 * c + 32)),
                    ),
                    vreinterpretq_s8_u8(vshrq_n_u8::<4>(q1)),
                    load_i8(pa.add(64 * c + 48)),
                );
                isum += sc[2 * c] as i32 * vaddvq_s32(lo) + sc[2 * c + 1] as i32 * vaddvq_s32(hi);
            }
            let summs: i32 = mn
                .iter()
                .enumerate()
                .map(|(g, m)| *m as i32 * (q8_k::bsum(ba, 2 * g) + q8_k::bsum(ba, 2 * g + 1)))
                .sum();
            let da = super::super::f32_at(ba, 0);
            sum +=
                da * super::f16_at(bw, 0) * isum as f32 - da * super::f16_at(bw, 2) * summs as f32;
        }
        sum
    }
}
