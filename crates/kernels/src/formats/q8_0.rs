//! Q8_0: 32 values as i8 with one f16 scale; value = d * q. Both a weight format and the activation partner of
//! Q4_0, Q5_0 and Q8_0 weights.
//!
//! Block (34 bytes): `d: f16` at 0, `qs: [i8; 32]` at 2.

use super::{f16_at, on_neon, on_x86, put_f16, Dot, Spec};
use crate::packed::{Format, RowScales};
use crate::DType;

pub const QK: usize = DType::Q8_0.block_size();
pub const BLOCK_BYTES: usize = DType::Q8_0.type_size();

/// Q8_0's row of the format registry.
pub(crate) const SPEC: Spec = Spec {
    dtype: DType::Q8_0,
    dequantize,
    quantize: Some(quantize),
    x86_quantize: on_x86!(x86_quant::quantize_avx2),
    dot: Some(Dot {
        act: DType::Q8_0,
        scalar: vec_dot,
        x86: on_x86!(crate::x86::Kernels::new::<x86::Avx2, x86::Vnni>().with_pair::<x86::Vnni512>()),
        neon: on_neon!(crate::neon::neon_kernels!(neon::vec_dot)),
    }),
    packed: Some(Format::with_offset(32, 8, 128, unpack_for_packing)),
};

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

/// Unpacks one row for packing (`crate::packed`): the quants as unsigned bytes (i8 + 128) and each block's scale.
fn unpack_for_packing(row: &[u8], q: &mut [u8], s: &mut RowScales) {
    for ((blk, qb), d) in row
        .chunks_exact(BLOCK_BYTES)
        .zip(q.chunks_exact_mut(QK))
        .zip(&mut s.wd)
    {
        *d = f16_at(blk, 0);
        for (x, &b) in qb.iter_mut().zip(&blk[2..34]) {
            *x = b ^ 0x80;
        }
    }
}

/// x86-64 kernels for Q8_0 x Q8_0: weights unpacked to signed bytes, then |w| . (a with w's sign); with VNNI also
/// two blocks per 512-bit step (rows of an even number of blocks).
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use crate::x86::*;

    block! {
        Avx2: avx2, Vnni: vnni;
        // ([d, 0, 0, 0], |w| as bytes, w as signed bytes)
        W = super::BLOCK_BYTES, A = super::BLOCK_BYTES, U = (__m128, __m256i, __m256i), Acc = __m256;
        unpack(w) {
            let q = load256(w.add(2));
            (f16x1(w), _mm256_sign_epi8(q, q), q)
        }
        dot(u, a, acc, bytes) {
            add_scaled_q8_0(u.0, a, bytes(u.1, _mm256_sign_epi8(load256(a.add(2)), u.2)), acc)
        }
    }

    block! {
        Vnni512: vnni;
        // ([d0, 0, d1, 0], |w|, mask of negative w)
        W = 2 * super::BLOCK_BYTES, A = 2 * super::BLOCK_BYTES, U = (__m128, __m512i, __mmask64), Acc = __m512;
        unpack(w) {
            let q = load2x256(w.add(2), w.add(36));
            (f16_pair(w, 34), _mm512_abs_epi8(q), _mm512_movepi8_mask(q))
        }
        dot(u, a, acc) {
            let da = f16_pair(a, 34);
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
    }
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
            let (d, q) = quantize32(x.as_ptr());
            b[0..2].copy_from_slice(&f32_to_f16(d).to_le_bytes());
            _mm256_storeu_si256(b.as_mut_ptr().add(2) as *mut __m256i, pack_i8(q));
        }
    }
}

/// aarch64 NEON dot product for Q8_0 x Q8_0.
#[cfg(target_arch = "aarch64")]
pub(crate) mod neon {
    use crate::neon::{add_block32, load_i8, I8Dot};
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
            let d = super::f16_at(bw, 0) * super::f16_at(ba, 0);
            sum = add_block32::<D>(sum, load_i8(pw.add(2)), load_i8(pw.add(18)), pa.add(2), d);
        }
        vaddvq_f32(sum)
    }
}
