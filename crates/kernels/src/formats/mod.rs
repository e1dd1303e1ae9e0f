//! The tensor formats: one module per format holding its block layout, (de)quantization and dot products.
//!
//! Each weight format's scalar `vec_dot` (against the activation format it pairs with, as in ggml) is the
//! specification; the SIMD versions beside it are tested against it.

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

use crate::{DType, MatmulError};

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

/// Checks that `bytes` bytes of `dtype` hold exactly `n` elements; returns the number of blocks.
fn check_lengths(dtype: DType, bytes: usize, n: usize) -> Result<usize, MatmulError> {
    let block = dtype.block_size();
    if !n.is_multiple_of(block) {
        return Err(MatmulError::NotWholeBlocks { dtype, n, block });
    }
    let expected = n / block * dtype.type_size();
    if bytes != expected {
        return Err(MatmulError::ByteLength {
            dtype,
            n,
            expected,
            got: bytes,
        });
    }
    Ok(n / block)
}

/// Dequantizes `dst.len()` elements of `dtype` (a whole number of blocks) from `src` into `dst`.
pub fn dequantize_row(dtype: DType, src: &[u8], dst: &mut [f32]) -> Result<(), MatmulError> {
    check_lengths(dtype, src.len(), dst.len())?;
    match dtype {
        DType::F32 => f32::dequantize(src, dst),
        DType::F16 => f16::dequantize(src, dst),
        DType::BF16 => bf16::dequantize(src, dst),
        DType::Q4_0 => q4_0::dequantize(src, dst),
        DType::Q4_1 => q4_1::dequantize(src, dst),
        DType::Q5_0 => q5_0::dequantize(src, dst),
        DType::Q5_1 => q5_1::dequantize(src, dst),
        DType::Q8_0 => q8_0::dequantize(src, dst),
        DType::Q8_1 => q8_1::dequantize(src, dst),
        DType::Q2_K => q2_k::dequantize(src, dst),
        DType::Q3_K => q3_k::dequantize(src, dst),
        DType::Q4_K => q4_k::dequantize(src, dst),
        DType::Q5_K => q5_k::dequantize(src, dst),
        DType::Q6_K => q6_k::dequantize(src, dst),
        DType::Q8_K => q8_k::dequantize(src, dst),
        other => {
            return Err(MatmulError::Unsupported {
                dtype: other,
                op: "dequantize",
            })
        }
    }
    Ok(())
}

/// Quantizes `src` (a whole number of blocks of `dtype`) into `dst`, which must be exactly the row's byte size.
///
/// Follows ggml's reference quantizers (`quantize_row_*_ref`), so results match llama.cpp and the `gguf` package.
pub fn quantize_row(dtype: DType, src: &[f32], dst: &mut [u8]) -> Result<(), MatmulError> {
    check_lengths(dtype, dst.len(), src.len())?;
    match dtype {
        DType::F32 => f32::quantize(src, dst),
        DType::F16 => f16::quantize(src, dst),
        DType::BF16 => bf16::quantize(src, dst),
        DType::Q4_0 => q4_0::quantize(src, dst),
        DType::Q4_1 => q4_1::quantize(src, dst),
        DType::Q5_0 => q5_0::quantize(src, dst),
        DType::Q5_1 => q5_1::quantize(src, dst),
        DType::Q8_0 => q8_0::quantize(src, dst),
        DType::Q8_1 => q8_1::quantize(src, dst),
        DType::Q8_K => q8_k::quantize(src, dst),
        other => {
            return Err(MatmulError::Unsupported {
                dtype: other,
                op: "quantize",
            })
        }
    }
    Ok(())
}
