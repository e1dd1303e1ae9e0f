//! Q6_K: super-blocks of 256 weights in 16 groups of 16; 6-bit q, signed 8-bit scale per group;
//! value = d * sc * (q - 32). Pairs with Q8_K activations.
//!
//! Block (210 bytes): `ql: [u8; 128]` at 0, `qh: [u8; 64]` at 128, `scales: [i8; 16]` at 192, `d: f16` at 208.
//! Element `128c + 32k + l` (c < 2, k < 4, l < 32): low 4 bits = nibble k/2 of ql[64c + 32(k%2) + l],
//! high 2 bits = bits 2k..2k+2 of qh[32c + l]. Group = element / 16.

use super::{f16_at, on_neon, on_x86, put_f16, q8_k, Dot, Spec};
use crate::packed::{Format, RowScales};
use crate::DType;

pub const QK: usize = DType::Q6_K.block_size();
pub const BLOCK_BYTES: usize = DType::Q6_K.type_size();

/// Q6_K's row of the format registry.
pub(crate) const SPEC: Spec = Spec {
    dtype: DType::Q6_K,
    dequantize,
    quantize: Some(quantize),
    x86_quantize: None,
    dot: Some(Dot {
        act: DType::Q8_K,
        scalar: vec_dot,
        x86: on_x86!(crate::x86::Kernels::new::<x86::Avx2, x86::Avx2>()),
        neon: on_neon!(crate::neon::neon_kernels!(neon::vec_dot)),
    }),
    packed: Some(Format::with_offset(16, 6, 32, unpack_for_packing).in_super_blocks(16)),
};

/// The signed quant of element e (0..256), in -32..32.
#[inline(always)]
pub fn quant(b: &[u8], e: usize) -> i32 {
    let (c, k, l) = (e / 128, (e % 128) / 32, e % 32);
    let low = (b[64 * c + 32 * (k % 2) + l] >> (4 * (k / 2))) & 0x0F;
    let high = (b[128 + 32 * c + l] >> (2 * k)) & 3;
    (low | (high << 4)) as i32 - 32
}

pub fn dequantize(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(BLOCK_BYTES).zip(dst.chunks_exact_mut(QK)) {
        let d = f16_at(b, 208);
        for (e, v) in y.iter_mut().enumerate() {
            let sc = b[192 + e / 16] as i8 as f32;
            *v = (d * sc) * quant(b, e) as f32;
        }
    }
}

/// ggml's reference quantizer (`quantize_row_q6_K_ref`): each group of 16 gets a scale by ggml's
/// `make_qx_quants` search ([`super::fit_symmetric`]), the 16 scales are quantized to i8 against the largest, and
/// the weights are re-quantized to those.
pub fn quantize(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src.chunks_exact(QK).zip(dst.chunks_exact_mut(BLOCK_BYTES)) {
        let mut l = [0u8; QK];
        let mut scales = [0f32; 16];
        let (mut max_scale, mut max_abs) = (0f32, 0f32);
        for g in 0..16 {
            scales[g] = super::fit_symmetric(&x[16 * g..][..16], 32, &mut l[16 * g..][..16]);
            if scales[g].abs() > max_abs {
                max_abs = scales[g].abs();
                max_scale = scales[g];
            }
        }
        b.fill(0);
        if max_abs < super::GROUP_MAX_EPS {
            continue;
        }
        let iscale = -128.0 / max_scale;
        put_f16(b, 208, 1.0 / iscale);
        for g in 0..16 {
            b[192 + g] = super::nearest_int(iscale * scales[g]).min(127) as i8 as u8;
        }
        let d = f16_at(b, 208);
        for g in 0..16 {
            let dg = d * b[192 + g] as i8 as f32;
            if dg == 0.0 {
                continue; // the group keeps its fit's quants, as in ggml
            }
            for i in 16 * g..16 * g + 16 {
                l[i] = (super::nearest_int(x[i] / dg).clamp(-32, 31) + 32) as u8;
            }
        }
        for c in 0..2 {
            let (ql, lc) = (64 * c, &l[128 * c..][..128]);
            for i in 0..32 {
                b[ql + i] = (lc[i] & 0x0F) | ((lc[i + 64] & 0x0F) << 4);
                b[ql + 32 + i] = (lc[i + 32] & 0x0F) | ((lc[i + 96] & 0x0F) << 4);
                b[128 + 32 * c + i] = (lc[i] >> 4)
                    | ((lc[i + 32] >> 4) << 2)
                    | ((lc[i + 64] >> 4) << 4)
                    | ((lc[i + 96] >> 4) << 6);
            }
        }
    }
}

/// Scalar specification of Q6_K x Q8_K: `d * d_a * sum_g sc_g * sum(q * q_a)`.
pub fn vec_dot(w: &[u8], a: &[u8]) -> f32 {
    let mut sum = 0.0f32;
    for (bw, ba) in w
        .chunks_exact(BLOCK_BYTES)
        .zip(a.chunks_exact(q8_k::BLOCK_BYTES))
    {
        let mut isum = 0i32;
        for g in 0..16 {
            let dot: i32 = (16 * g..16 * g + 16)
                .map(|e| quant(bw, e) * ba[q8_k::QS + e] as i8 as i32)
                .sum();
            isum += bw[192 + g] as i8 as i32 * dot;
        }
        sum += f16_at(bw, 208) * super::f32_at(ba, 0) * isum as f32;
    }
    sum
}

/// Unpacks one row for packing (`crate::packed`): per 128 elements `c`, element `128c + 32k + l` has its low 4
/// bits in byte `64c + 32(k % 2) + l` (nibble `k / 2`) and its high 2 bits at bit `2k` of byte `128 + 32c + l`;
/// stored unsigned (quant + 32). `wd = d` per block, and the i8 scale of each group of 16.
fn unpack_for_packing(row: &[u8], q: &mut [u8], s: &mut RowScales) {
    for (b, (blk, qb)) in row
        .chunks_exact(BLOCK_BYTES)
        .zip(q.chunks_exact_mut(QK))
        .enumerate()
    {
        s.wd[b] = f16_at(blk, 208);
        for g in 0..16 {
            s.sc[16 * b + g] = blk[192 + g] as i8;
        }
        for (c, qc) in qb.chunks_exact_mut(128).enumerate() {
            for (k, qk) in qc.chunks_exact_mut(32).enumerate() {
                let low = &blk[64 * c + 32 * (k % 2)..][..32];
                let high = &blk[128 + 32 * c..][..32];
                for ((x, &lo), &hi) in qk.iter_mut().zip(low).zip(high) {
                    *x = ((lo >> (4 * (k / 2))) & 0x0F) | (((hi >> (2 * k)) & 3) << 4);
                }
            }
        }
    }
}

/// x86-64 kernels for Q6_K x Q8_K: the quants are used unsigned (0..64) and the -32 offset is taken off once per
/// block through the activations' group sums.
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use crate::x86::*;

    /// A Q6_K block with its scales unpacked (the quants stay in memory).
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
            let s = w.add(192) as *const i8;
            U {
                w,
                d: f16x1(w.add(208)),
                sc: std::array::from_fn(|i| {
                    _mm256_set_m128i(
                        _mm_set1_epi16(*s.add(2 * i + 1) as i16),
                        _mm_set1_epi16(*s.add(2 * i) as i16),
                    )
                }),
                sc16: _mm256_cvtepi8_epi16(_mm_loadu_si128(s as *const __m128i)),
            }
        }
        dot(u, a, acc) {
            let m4 = _mm256_set1_epi8(0x0F);
            let m30 = _mm256_set1_epi8(0x30);
            let aq = a.add(4);
            let mut sumi = _mm256_setzero_si256();
            for c in 0..2 {
                let ql0 = load256(u.w.add(64 * c));
                let ql1 = load256(u.w.add(64 * c + 32));
                let qh = load256(u.w.add(128 + 32 * c));
                let q = [
                    _mm256_or_si256(
                        _mm256_and_si256(ql0, m4),
                        _mm256_and_si256(_mm256_slli_epi16::<4>(qh), m30),
                    ),
                    _mm256_or_si256(
                        _mm256_and_si256(ql1, m4),
                        _mm256_and_si256(_mm256_slli_epi16::<2>(qh), m30),
                    ),
                    _mm256_or_si256(
                        _mm256_and_si256(_mm256_srli_epi16::<4>(ql0), m4),
                        _mm256_and_si256(qh, m30),
                    ),
                    _mm256_or_si256(
                        _mm256_and_si256(_mm256_srli_epi16::<4>(ql1), m4),
                        _mm256_and_si256(_mm256_srli_epi16::<2>(qh), m30),
                    ),
                ];
                for (k, qk) in q.iter().enumerate() {
                    let p = _mm256_maddubs_epi16(*qk, load256(aq.add(128 * c + 32 * k)));
                    sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, u.sc[4 * c + k]));
                }
            }
            // sum (q - 32) a sc = sum q a sc - 32 sum_g sc_g bsum_g
            let corr = _mm256_madd_epi16(u.sc16, load256(a.add(260)));
            let sumi = _mm256_sub_epi32(sumi, _mm256_slli_epi32::<5>(corr));
            let d = _mm_mul_ss(u.d, _mm_load_ss(a as *const f32));
            _mm256_fmadd_ps(_mm256_broadcastss_ps(d), _mm256_cvtepi32_ps(sumi), acc)
        }
    }
}

/// aarch64 NEON dot product for Q6_K x Q8_K: the quants offset to signed bytes (-32..32), one 4-lane sum per group of
/// 16 scaled into a vector accumulator.
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
        let (m4, m30, off) = (vdupq_n_u8(0x0F), vdupq_n_u8(0x30), vdupq_n_s8(32));
        let mut sum = 0.0f32;
        for (bw, ba) in w
            .chunks_exact(super::BLOCK_BYTES)
            .zip(a.chunks_exact(q8_k::BLOCK_BYTES))
        {
            let (pw, pa) = (bw.as_ptr(), ba.as_ptr().add(q8_k::QS));
            let mut isum = vdupq_n_s32(0);
            // Element 128c + 32k + 16h + i (i < 16) of group 8c + 2k + h.
            for c in 0..2 {
                for h in 0..2 {
                    let ql0 = vld1q_u8(pw.add(64 * c + 16 * h));
                    let ql1 = vld1q_u8(pw.add(64 * c + 32 + 16 * h));
                    let qh = vld1q_u8(pw.add(128 + 32 * c + 16 * h));
                    let q = [
                        vorrq_u8(vandq_u8(ql0, m4), vandq_u8(vshlq_n_u8::<4>(qh), m30)),
                        vorrq_u8(vandq_u8(ql1, m4), vandq_u8(vshlq_n_u8::<2>(qh), m30)),
                        vorrq_u8(vshrq_n_u8::<4>(ql0), vandq_u8(qh, m30)),
                        vorrq_u8(vshrq_n_u8::<4>(ql1), vandq_u8(vshrq_n_u8::<2>(qh), m30)),
                    ];
                    for (k, qk) in q.into_iter().enumerate() {
                        let v = vsubq_s8(vreinterpretq_s8_u8(qk), off);
                        let dot = D::dot(
                            vdupq_n_s32(0),
                            v,
                            load_i8(pa.add(128 * c + 32 * k + 16 * h)),
                        );
                        isum = vmlaq_n_s32(isum, dot, bw[192 + 8 * c + 2 * k + h] as i8 as i32);
                    }
                }
            }
            sum += super::f16_at(bw, 208) * super::super::f32_at(ba, 0) * vaddvq_s32(isum) as f32;
        }
        sum
    }
}
