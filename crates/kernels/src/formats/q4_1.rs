//! Q4_1: 32 weights as 4-bit q with an f16 scale and f16 minimum; value = d * q + m. Pairs with Q8_1 activations.
//!
//! Block (20 bytes): `d: f16` at 0, `m: f16` at 2, `qs: [u8; 16]` at 4 (nibble order as in Q4_0).

use super::{f16_at, on_neon, on_x86, put_f16, Dot, Spec};
use crate::packed::{Format, RowScales};
use crate::DType;

pub const QK: usize = DType::Q4_1.block_size();
pub const BLOCK_BYTES: usize = DType::Q4_1.type_size();

/// Q4_1's row of the format registry.
pub(crate) const SPEC: Spec = Spec {
    dtype: DType::Q4_1,
    dequantize,
    quantize: Some(quantize),
    x86_quantize: None,
    dot: Some(Dot {
        act: DType::Q8_1,
        scalar: vec_dot,
        x86: on_x86!(crate::x86::Kernels::new::<x86::Avx2, x86::Vnni>().with_pair::<x86::Vnni512>()),
        neon: on_neon!(crate::neon::neon_kernels!(neon::vec_dot)),
    }),
    packed: Some(Format::with_min(32, 4, unpack_for_packing)),
};

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

/// Unpacks one row for packing (`crate::packed`): the quants as unsigned bytes, each block's scale and min.
fn unpack_for_packing(row: &[u8], q: &mut [u8], s: &mut RowScales) {
    let blocks = row.chunks_exact(BLOCK_BYTES).zip(q.chunks_exact_mut(QK));
    for ((blk, qb), (d, m)) in blocks.zip(s.wd.iter_mut().zip(&mut s.wm)) {
        (*d, *m) = (f16_at(blk, 0), f16_at(blk, 2));
        crate::packed::split_nibbles(&blk[4..20], qb);
    }
}

/// x86-64 kernels for Q4_1 x Q8_1; with VNNI also two blocks per 512-bit step (rows of an even number of blocks).
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use crate::x86::*;

    block! {
        Avx2: avx2, Vnni: vnni;
        // ([d, m, 0, 0], the 32 quants as bytes)
        W = super::BLOCK_BYTES, A = crate::formats::q8_1::BLOCK_BYTES, U = (__m128, __m256i), Acc = __m256;
        unpack(w) {
            (f16x2(w), nibbles32(w.add(4)))
        }
        dot(u, a, acc, bytes) {
            add_scaled_q8_1(u.0, f16x2(a), bytes(u.1, load256(a.add(4))), acc)
        }
    }

    block! {
        Vnni512: vnni;
        // ([d0, m0, d1, m1], the quants of both blocks as bytes)
        W = 2 * super::BLOCK_BYTES, A = 2 * crate::formats::q8_1::BLOCK_BYTES, U = (__m128, __m512i), Acc = __m512;
        unpack(w) {
            let q = _mm512_inserti64x4::<1>(
                _mm512_castsi256_si512(nibbles32(w.add(4))),
                nibbles32(w.add(24)),
            );
            (f16x2x2(w, w.add(20)), q)
        }
        dot(u, a, acc) {
            add_min_pair_q8_1(u.0, u.1, a, acc)
        }
    }
}

/// aarch64 NEON dot product for Q4_1 x Q8_1.
#[cfg(target_arch = "aarch64")]
pub(crate) mod neon {
    use crate::neon::{add_block32, I8Dot};
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
            let d = super::f16_at(bw, 0) * super::f16_at(ba, 0);
            sum = add_block32::<D>(sum, lo, hi, pa.add(4), d);
            sum_m += super::f16_at(bw, 2) * super::f16_at(ba, 2);
        }
        vaddvq_f32(sum) + sum_m
    }
}
