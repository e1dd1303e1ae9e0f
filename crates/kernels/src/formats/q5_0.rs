//! Q5_0: 32 weights as 5-bit q with one f16 scale; value = d * (q - 16). Pairs with Q8_0 activations.
//!
//! Block (22 bytes): `d: f16` at 0, `qh: u32 LE` at 2 (bit j = fifth bit of element j), `qs: [u8; 16]` at 6
//! (low four bits, nibble order as in Q4_0).

use super::{f16_at, on_neon, on_x86, put_f16, Dot, Spec};
use crate::packed::{Format, RowScales};
use crate::DType;

pub const QK: usize = DType::Q5_0.block_size();
pub const BLOCK_BYTES: usize = DType::Q5_0.type_size();

/// Q5_0's row of the format registry.
pub(crate) const SPEC: Spec = Spec {
    dtype: DType::Q5_0,
    dequantize,
    quantize: Some(quantize),
    x86_quantize: None,
    dot: Some(Dot {
        act: DType::Q8_0,
        scalar: vec_dot,
        x86: on_x86!(crate::x86::Kernels::new::<x86::Avx2, x86::Vnni>().with_pair::<x86::Vnni512>()),
        neon: on_neon!(crate::neon::neon_kernels!(neon::vec_dot)),
    }),
    packed: Some(Format::with_offset(32, 5, 16, unpack_for_packing)),
};

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

/// Unpacks one row for packing (`crate::packed`): the quants as unsigned bytes and each block's scale.
fn unpack_for_packing(row: &[u8], q: &mut [u8], s: &mut RowScales) {
    for ((blk, qb), d) in row
        .chunks_exact(BLOCK_BYTES)
        .zip(q.chunks_exact_mut(QK))
        .zip(&mut s.wd)
    {
        *d = f16_at(blk, 0);
        crate::packed::split_nibbles(&blk[6..22], qb);
        crate::packed::add_fifth_bits(u32::from_le_bytes([blk[2], blk[3], blk[4], blk[5]]), qb);
    }
}

/// x86-64 kernels for Q5_0 x Q8_0: weights unpacked to signed bytes, then |w| . (a with w's sign); with VNNI also
/// two blocks per 512-bit step (rows of an even number of blocks).
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use crate::x86::*;

    block! {
        Avx2: avx2, Vnni: vnni;
        // ([d, 0, 0, 0], |w| as bytes, w as signed bytes)
        W = super::BLOCK_BYTES, A = crate::formats::q8_0::BLOCK_BYTES, U = (__m128, __m256i, __m256i), Acc = __m256;
        unpack(w) {
            let qh = (w.add(2) as *const u32).read_unaligned();
            let high = _mm256_and_si256(bits_to_bytes(qh), _mm256_set1_epi8(0x10));
            let q = _mm256_sub_epi8(
                _mm256_or_si256(nibbles32(w.add(6)), high),
                _mm256_set1_epi8(16),
            );
            (f16x1(w), _mm256_sign_epi8(q, q), q)
        }
        dot(u, a, acc, bytes) {
            add_scaled_q8_0(u.0, a, bytes(u.1, _mm256_sign_epi8(load256(a.add(2)), u.2)), acc)
        }
    }

    block! {
        Vnni512: vnni;
        // ([d0, 0, d1, 0], quants 0..32 of both blocks as bytes)
        W = 2 * super::BLOCK_BYTES, A = 2 * crate::formats::q8_0::BLOCK_BYTES, U = (__m128, __m512i), Acc = __m512;
        unpack(w) {
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
            (f16_pair(w, 22), q)
        }
        dot(u, a, acc) {
            add_offset_pair_q8_0(u.0, u.1, 16, a, acc)
        }
    }
}

/// aarch64 NEON dot product for Q5_0 x Q8_0: nibble | fifth bit, offset to signed bytes (-16..16).
#[cfg(target_arch = "aarch64")]
pub(crate) mod neon {
    use crate::neon::{add_block32, five_bits, I8Dot};
    use std::arch::aarch64::*;

    /// [`super::vec_dot`] with NEON.
    ///
    /// # Safety
    /// The CPU must have NEON; `w` and `a` must hold the same number of whole blocks.
    #[target_feature(enable = "neon")]
    pub(crate) unsafe fn vec_dot<D: I8Dot>(w: &[u8], a: &[u8]) -> f32 {
        let sixteen = vdupq_n_s8(16);
        let mut sum = vdupq_n_f32(0.0);
        for (bw, ba) in w
            .chunks_exact(super::BLOCK_BYTES)
            .zip(a.chunks_exact(crate::formats::q8_0::BLOCK_BYTES))
        {
            let (pw, pa) = (bw.as_ptr(), ba.as_ptr());
            let qh = u32::from_le_bytes([bw[2], bw[3], bw[4], bw[5]]);
            let (lo, hi) = five_bits(vld1q_u8(pw.add(6)), qh);
            let lo = vsubq_s8(vreinterpretq_s8_u8(lo), sixteen);
            let hi = vsubq_s8(vreinterpretq_s8_u8(hi), sixteen);
            let d = super::f16_at(bw, 0) * super::f16_at(ba, 0);
            sum = add_block32::<D>(sum, lo, hi, pa.add(2), d);
        }
        vaddvq_f32(sum)
    }
}
