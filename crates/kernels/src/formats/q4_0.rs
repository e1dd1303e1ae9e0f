//! Q4_0: 32 weights as 4-bit q with one f16 scale; value = d * (q - 8). Pairs with Q8_0 activations.
//!
//! Block (18 bytes): `d: f16` at 0, `qs: [u8; 16]` at 2; element j (< 16) is the low nibble of qs[j], element
//! j + 16 the high nibble.

use super::{f16_at, on_neon, on_x86, put_f16, Dot, Spec};
use crate::packed::{Format, RowScales};
use crate::DType;

pub const QK: usize = DType::Q4_0.block_size();
pub const BLOCK_BYTES: usize = DType::Q4_0.type_size();

/// Q4_0's row of the format registry.
pub(crate) const SPEC: Spec = Spec {
    dtype: DType::Q4_0,
    dequantize,
    quantize: Some(quantize),
    x86_quantize: None,
    dot: Some(Dot {
        act: DType::Q8_0,
        scalar: vec_dot,
        x86: on_x86!(crate::x86::Kernels::new::<x86::Avx2, x86::Vnni>().with_pair::<x86::Vnni512>()),
        neon: on_neon!(crate::neon::neon_kernels!(neon::vec_dot)),
    }),
    packed: Some(Format::with_offset(32, 4, 8, unpack_for_packing)),
};

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

/// Unpacks one row for packing (`crate::packed`): the quants as unsigned bytes and each block's scale.
fn unpack_for_packing(row: &[u8], q: &mut [u8], s: &mut RowScales) {
    for ((blk, qb), d) in row
        .chunks_exact(BLOCK_BYTES)
        .zip(q.chunks_exact_mut(QK))
        .zip(&mut s.wd)
    {
        *d = f16_at(blk, 0);
        crate::packed::split_nibbles(&blk[2..18], qb);
    }
}

/// x86-64 kernels for Q4_0 x Q8_0: weights unpacked to signed bytes, then |w| . (a with w's sign); with VNNI also
/// two blocks per 512-bit step (rows of an even number of blocks).
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use crate::x86::*;

    block! {
        Avx2: avx2, Vnni: vnni;
        // ([d, 0, 0, 0], |w| as bytes, w as signed bytes)
        W = super::BLOCK_BYTES, A = crate::formats::q8_0::BLOCK_BYTES, U = (__m128, __m256i, __m256i), Acc = __m256;
        unpack(w) {
            let q = _mm256_sub_epi8(nibbles32(w.add(2)), _mm256_set1_epi8(8));
            (f16x1(w), _mm256_sign_epi8(q, q), q)
        }
        dot(u, a, acc, bytes) {
            add_scaled_q8_0(u.0, a, bytes(u.1, _mm256_sign_epi8(load256(a.add(2)), u.2)), acc)
        }
    }

    block! {
        Vnni512: vnni;
        // ([d0, 0, d1, 0], quants 0..16 of both blocks as bytes)
        W = 2 * super::BLOCK_BYTES, A = 2 * crate::formats::q8_0::BLOCK_BYTES, U = (__m128, __m512i), Acc = __m512;
        unpack(w) {
            let q = _mm512_inserti64x4::<1>(
                _mm512_castsi256_si512(nibbles32(w.add(2))),
                nibbles32(w.add(20)),
            );
            (f16_pair(w, 18), q)
        }
        dot(u, a, acc) {
            add_offset_pair_q8_0(u.0, u.1, 8, a, acc)
        }
    }
}

/// aarch64 NEON dot product for Q4_0 x Q8_0: the quants offset to signed bytes (-8..8), then signed byte products.
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
            let d = super::f16_at(bw, 0) * super::f16_at(ba, 0);
            sum = add_block32::<D>(sum, lo, hi, pa.add(2), d);
        }
        vaddvq_f32(sum)
    }
}
