//! The tensor formats: one module per format holding its block layout, (de)quantization, dot products and its row
//! of the registry (`Spec`), and the registry itself: the one table the rest of the crate looks formats up in.
//!
//! Each weight format's scalar `vec_dot` (against the activation format it pairs with, as in ggml) is the
//! specification; the SIMD versions beside it are tested against it.
//!
//! Adding a format: a module here with its `SPEC` (its block code, kernels and unpacker beside it), its `pub mod`
//! and a line in `FORMATS`, and its name in the list `registry_rows_are_consistent` checks (and in `packed`'s test
//! list when it packs). Its `DType` (ids, block size, bytes) is already in ggml's type table.

pub mod bf16;
pub mod f16;
pub mod f32;
pub mod q2_k;
pub mod q3_k;
pub mod q4_0;
pub mod q4_1;
pub mod q4_k;
pub mod q5_0;
pub mod q5_1;
pub mod q5_k;
pub mod q6_k;
pub mod q8_0;
pub mod q8_1;
pub mod q8_k;

use crate::matmul::{QuantizeFn, ScalarDotFn};
use crate::DType;

/// Every format with code in this crate, one row each.
const FORMATS: [&Spec; 15] = [
    &f32::SPEC,
    &f16::SPEC,
    &bf16::SPEC,
    &q4_0::SPEC,
    &q4_1::SPEC,
    &q5_0::SPEC,
    &q5_1::SPEC,
    &q8_0::SPEC,
    &q8_1::SPEC,
    &q2_k::SPEC,
    &q3_k::SPEC,
    &q4_k::SPEC,
    &q5_k::SPEC,
    &q6_k::SPEC,
    &q8_k::SPEC,
];

/// What one tensor format provides: block layout, conversions, and (as a weight format) its dot products per ISA and
/// its packed form.
pub(crate) struct Spec {
    /// The format (its block size and bytes are ggml's, in [`DType`]'s table).
    pub dtype: DType,
    pub dequantize: DequantizeFn,
    /// ggml's reference quantizer, where there is one here.
    pub quantize: Option<QuantizeRowFn>,
    /// The SIMD quantizer of an activation format on x86 (AVX2 and above), byte-identical to `quantize`.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub x86_quantize: Option<QuantizeFn>,
    /// As a weight format: its products with activations.
    pub dot: Option<Dot>,
    /// As a weight format: how it maps onto the packed layout (`crate::packed`), if it has one.
    pub packed: Option<crate::packed::Format>,
}

/// Converts whole blocks of a format to f32.
pub(crate) type DequantizeFn = fn(src: &[u8], dst: &mut [f32]);

/// Converts f32 to whole blocks of a format.
pub(crate) type QuantizeRowFn = fn(src: &[f32], dst: &mut [u8]);

/// A weight format's dot products: the activation format it pairs with, the scalar specification, and the SIMD
/// kernels per ISA (an ISA without them runs the scalar one).
pub(crate) struct Dot {
    pub act: DType,
    pub scalar: ScalarDotFn,
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub x86: Option<X86Kernels>,
    #[cfg_attr(not(target_arch = "aarch64"), allow(dead_code))]
    pub neon: Option<NeonKernels>,
}

#[cfg(target_arch = "x86_64")]
pub(crate) type X86Kernels = crate::x86::Kernels;
#[cfg(not(target_arch = "x86_64"))]
pub(crate) type X86Kernels = ();
#[cfg(target_arch = "aarch64")]
pub(crate) type NeonKernels = crate::neon::Kernels;
#[cfg(not(target_arch = "aarch64"))]
pub(crate) type NeonKernels = ();

/// `Some(expr)` on x86-64, `None` elsewhere (where `expr` is not compiled): a registry row's x86 kernels.
#[cfg(target_arch = "x86_64")]
macro_rules! on_x86 {
    ($e:expr) => {
        Some($e)
    };
}
#[cfg(not(target_arch = "x86_64"))]
macro_rules! on_x86 {
    ($e:expr) => {
        None
    };
}
pub(crate) use on_x86;

/// `Some(expr)` on aarch64, `None` elsewhere: a registry row's NEON kernels.
#[cfg(target_arch = "aarch64")]
macro_rules! on_neon {
    ($e:expr) => {
        Some($e)
    };
}
#[cfg(not(target_arch = "aarch64"))]
macro_rules! on_neon {
    ($e:expr) => {
        None
    };
}
pub(crate) use on_neon;

/// The registry indexed by GGUF type id.
static BY_ID: [Option<&Spec>; 40] = {
    let mut table = [None; 40];
    let mut i = 0;
    while i < FORMATS.len() {
        table[FORMATS[i].dtype as usize] = Some(FORMATS[i]);
        i += 1;
    }
    table
};

/// The registry's row for `dtype`, if this crate has code for it.
pub(crate) fn spec(dtype: DType) -> Option<&'static Spec> {
    BY_ID.get(dtype as usize).copied().flatten()
}

/// The weight formats `matmul` takes (each with its scalar specification, and SIMD kernels where written).
pub fn weight_formats() -> impl Iterator<Item = DType> {
    FORMATS.iter().filter(|s| s.dot.is_some()).map(|s| s.dtype)
}

/// Why a quantization or dequantization was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantError {
    #[error("{op} is not implemented for {dtype} tensors")]
    Unsupported { dtype: DType, op: &'static str },
    #[error("{n} elements is not a whole number of {dtype} blocks of {block}")]
    NotWholeBlocks {
        dtype: DType,
        n: usize,
        block: usize,
    },
    #[error("{n} elements of {dtype} take {expected} bytes, got {got}")]
    ByteLength {
        dtype: DType,
        n: usize,
        expected: usize,
        got: usize,
    },
}

/// Reads the little-endian f16 at `b[off..off + 2]` as f32.
#[inline(always)]
pub(crate) fn f16_at(b: &[u8], off: usize) -> f32 {
    half::f16::from_le_bytes([b[off], b[off + 1]]).to_f32()
}

/// Writes `v` rounded to f16 at `b[off..off + 2]`.
#[inline(always)]
pub(crate) fn put_f16(b: &mut [u8], off: usize, v: f32) {
    b[off..off + 2].copy_from_slice(&half::f16::from_f32(v).to_le_bytes());
}

/// Below this a K-quant group counts as all zero (ggml's `GROUP_MAX_EPS`).
pub(crate) const GROUP_MAX_EPS: f32 = 1e-15;

/// ggml's `make_qkx2_quants` with the Q4_K settings (search 21 scales from (nmax - 1) to (nmax + 1) over the
/// range): the weighted least-squares fit `x ≈ scale * q - min` with q in 0..=nmax and min ≥ 0. Writes the quants
/// to `l`; returns (scale, min).
pub(crate) fn fit_scale_min(x: &[f32], w: &[f32], nmax: i32, l: &mut [u8]) -> (f32, f32) {
    let (mut min, mut max) = (x[0], x[0]);
    let (mut sum_w, mut sum_x) = (w[0], w[0] * x[0]);
    for i in 1..x.len() {
        min = min.min(x[i]);
        max = max.max(x[i]);
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        l.fill(0);
        return (0.0, -min);
    }
    let nm = nmax as f32;
    let quant =
        |iscale: f32, v: f32, min: f32| nearest_int(iscale * (v - min)).clamp(0, nmax) as u8;
    let mut iscale = nm / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best = 0.0;
    for i in 0..x.len() {
        l[i] = quant(iscale, x[i], min);
        let diff = scale * l[i] as f32 + min - x[i];
        best += w[i] * (diff * diff);
    }
    let mut aux = [0u8; 32];
    let aux = &mut aux[..x.len()];
    for step in 0..=20 {
        iscale = (-1.0 + 0.1 * step as f32 + nm) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0f32, 0f32, 0f32);
        for i in 0..x.len() {
            // `min` is the best fit's so far, as in ggml.
            aux[i] = quant(iscale, x[i], min);
            let q = aux[i] as f32;
            sum_l += w[i] * q;
            sum_l2 += w[i] * q * q;
            sum_xl += w[i] * q * x[i];
        }
        let det = sum_w * sum_l2 - sum_l * sum_l;
        if det > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut err = 0.0;
            for i in 0..x.len() {
                let diff = this_scale * aux[i] as f32 + this_min - x[i];
                err += w[i] * (diff * diff);
            }
            if err < best {
                l.copy_from_slice(aux);
                best = err;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// ggml's `make_qx_quants` with weights x² (Q6_K's setting): the signed scale minimising the weighted error of
/// `x ≈ scale * (q - nmax)` with q in 0..2 nmax, searched over 19 candidates around `-nmax / (the extreme value)`.
/// Writes q to `l`; returns the scale.
pub(crate) fn fit_symmetric(x: &[f32], nmax: i32, l: &mut [u8]) -> f32 {
    let (mut max, mut amax) = (0f32, 0f32);
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    if amax < GROUP_MAX_EPS {
        l.fill(0);
        return 0.0;
    }
    let q = |iscale: f32, v: f32| nearest_int(iscale * v).clamp(-nmax, nmax - 1);
    let sums = |iscale: f32| {
        let (mut sumlx, mut suml2) = (0f32, 0f32);
        for &v in x {
            let qi = q(iscale, v) as f32;
            let w = v * v;
            sumlx += w * v * qi;
            suml2 += w * qi * qi;
        }
        (sumlx, suml2)
    };
    let mut iscale = -(nmax as f32) / max;
    for (li, &v) in l.iter_mut().zip(x) {
        *li = (q(iscale, v) + nmax) as u8;
    }
    let (sumlx, suml2) = sums(iscale);
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for step in (-9..=9).filter(|&s| s != 0) {
        iscale = -(nmax as f32 + 0.1 * step as f32) / max;
        let (sumlx, suml2) = sums(iscale);
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            for (li, &v) in l.iter_mut().zip(x) {
                *li = (q(iscale, v) + nmax) as u8;
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// Reads the little-endian f32 at `b[off..off + 4]`.
#[inline(always)]
pub(crate) fn f32_at(b: &[u8], off: usize) -> f32 {
    f32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

/// `roundf`: round half away from zero (without a libm call on baseline x86-64).
#[inline(always)]
pub(crate) fn round_half_away(x: f32) -> f32 {
    if x.is_nan() || x.abs() >= 8_388_608.0 {
        return x; // already integral, or NaN
    }
    let t = x as i32 as f32;
    if (x - t).abs() >= 0.5 {
        t + 1f32.copysign(x)
    } else {
        t
    }
}

/// ggml's `nearest_int`: round half to even through the float adder (valid for |x| < 2^22).
#[inline(always)]
pub(crate) fn nearest_int(x: f32) -> i32 {
    ((x + 12_582_912.0).to_bits() & 0x007f_ffff) as i32 - 0x0040_0000
}

/// Checks that `bytes` bytes of `dtype` hold exactly `n` elements.
fn check_lengths(dtype: DType, bytes: usize, n: usize) -> Result<(), QuantError> {
    let block = dtype.block_size();
    if !n.is_multiple_of(block) {
        return Err(QuantError::NotWholeBlocks { dtype, n, block });
    }
    let expected = n / block * dtype.type_size();
    if bytes != expected {
        return Err(QuantError::ByteLength {
            dtype,
            n,
            expected,
            got: bytes,
        });
    }
    Ok(())
}

/// Dequantizes `dst.len()` elements of `dtype` (a whole number of blocks) from `src` into `dst`.
pub fn dequantize_row(dtype: DType, src: &[u8], dst: &mut [f32]) -> Result<(), QuantError> {
    check_lengths(dtype, src.len(), dst.len())?;
    let spec = spec(dtype).ok_or(QuantError::Unsupported {
        dtype,
        op: "dequantize",
    })?;
    (spec.dequantize)(src, dst);
    Ok(())
}

/// Quantizes `src` (a whole number of blocks of `dtype`) into `dst`, which must be exactly the row's byte size.
///
/// Follows ggml's reference quantizers (`quantize_row_*_ref`), so results match llama.cpp and the `gguf` package.
pub fn quantize_row(dtype: DType, src: &[f32], dst: &mut [u8]) -> Result<(), QuantError> {
    check_lengths(dtype, dst.len(), src.len())?;
    let quantize = spec(dtype)
        .and_then(|s| s.quantize)
        .ok_or(QuantError::Unsupported {
            dtype,
            op: "quantize",
        })?;
    quantize(src, dst);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The registry holds what this crate promises: each format once, findable by its id, every weight format
    /// paired with an activation format that has a quantizer and compatible blocks.
    #[test]
    fn registry_rows_are_consistent() {
        for (i, s) in FORMATS.iter().enumerate() {
            assert!(
                FORMATS[..i].iter().all(|t| t.dtype != s.dtype),
                "{} twice",
                s.dtype
            );
            assert_eq!(spec(s.dtype).map(|t| t.dtype), Some(s.dtype));
            if let Some(d) = &s.dot {
                let act = spec(d.act).unwrap();
                assert!(act.quantize.is_some(), "{} pairs with {}", s.dtype, d.act);
                let (bw, ba) = (s.dtype.block_size(), d.act.block_size());
                assert_eq!(
                    bw.max(ba) % bw.min(ba),
                    0,
                    "{} blocks against {}",
                    s.dtype,
                    d.act
                );
            }
        }
        let weights: Vec<DType> = weight_formats().collect();
        use DType::*;
        assert_eq!(
            weights,
            [F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K]
        );
        assert_eq!(spec(IQ2_XXS).map(|s| s.dtype), None);
    }
}
