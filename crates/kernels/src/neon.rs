//! aarch64 NEON glue: the tile driver over per-format NEON dot products, and small vector helpers.
//!
//! NEON kernels compute one (row, token) dot product at a time; the driver loops over the tile. Every quantized weight
//! format has one. Only the baseline NEON instruction set is used (no dot-product extension), so every aarch64 CPU
//! runs them.

use crate::matmul::{TileArgs, TileFn};
use crate::DType;
use std::arch::aarch64::*;

/// A NEON dot product of one weight row with one activation row, both whole blocks.
type NeonDot = unsafe fn(w: &[u8], a: &[u8]) -> f32;

/// Runs a NEON dot product over every (row, token) pair of a tile.
///
/// # Safety
/// The CPU must have NEON; `p` must describe valid memory of whole blocks.
unsafe fn tile<const F: u32>(p: TileArgs) {
    let Some(dot) = DType::from_id(F).and_then(neon_dot) else {
        return;
    };
    for r in 0..p.nr {
        // SAFETY: the caller guarantees nr rows of row_bytes bytes, w_stride apart.
        let w = unsafe { std::slice::from_raw_parts(p.w.add(r * p.w_stride), p.row_bytes) };
        for t in 0..p.nt {
            // SAFETY: as above for the activations; (r, t) is inside the output.
            unsafe {
                let a = std::slice::from_raw_parts(p.a.add(t * p.a_stride), p.act_bytes);
                *p.out.add(t * p.out_t + r) = dot(w, a);
            }
        }
    }
}

fn neon_dot(weight: DType) -> Option<NeonDot> {
    Some(match weight {
        DType::Q4_0 => crate::formats::q4_0::neon::vec_dot,
        DType::Q4_1 => crate::formats::q4_1::neon::vec_dot,
        DType::Q5_0 => crate::formats::q5_0::neon::vec_dot,
        DType::Q5_1 => crate::formats::q5_1::neon::vec_dot,
        DType::Q8_0 => crate::formats::q8_0::neon::vec_dot,
        DType::Q2_K => crate::formats::q2_k::neon::vec_dot,
        DType::Q3_K => crate::formats::q3_k::neon::vec_dot,
        DType::Q4_K => crate::formats::q4_k::neon::vec_dot,
        DType::Q5_K => crate::formats::q5_k::neon::vec_dot,
        DType::Q6_K => crate::formats::q6_k::neon::vec_dot,
        _ => return None,
    })
}

/// The NEON tile function for `weight`, if there is one.
pub(crate) fn tile_fn(weight: DType, _cols: usize) -> Option<TileFn> {
    Some(match weight {
        DType::Q4_0 => tile::<{ DType::Q4_0 as u32 }>,
        DType::Q4_1 => tile::<{ DType::Q4_1 as u32 }>,
        DType::Q5_0 => tile::<{ DType::Q5_0 as u32 }>,
        DType::Q5_1 => tile::<{ DType::Q5_1 as u32 }>,
        DType::Q8_0 => tile::<{ DType::Q8_0 as u32 }>,
        DType::Q2_K => tile::<{ DType::Q2_K as u32 }>,
        DType::Q3_K => tile::<{ DType::Q3_K as u32 }>,
        DType::Q4_K => tile::<{ DType::Q4_K as u32 }>,
        DType::Q5_K => tile::<{ DType::Q5_K as u32 }>,
        DType::Q6_K => tile::<{ DType::Q6_K as u32 }>,
        _ => return None,
    })
}

/// Sum of products of 16 + 16 signed bytes, widened without overflow, added to `acc` (4 x i32).
#[target_feature(enable = "neon")]
#[inline]
pub(crate) fn dot_i8x16(acc: int32x4_t, x: int8x16_t, y: int8x16_t) -> int32x4_t {
    let lo = vmull_s8(vget_low_s8(x), vget_low_s8(y));
    let hi = vmull_s8(vget_high_s8(x), vget_high_s8(y));
    vpadalq_s16(vpadalq_s16(acc, lo), hi)
}

/// 16 bytes at `p` as signed bytes.
///
/// # Safety
/// `p` must point to 16 readable bytes.
#[target_feature(enable = "neon")]
#[inline]
pub(crate) unsafe fn load_i8(p: *const u8) -> int8x16_t {
    vld1q_s8(p as *const i8)
}

/// Lane i (0..16) is 0xFF where bit i of `bits` is set, else 0 (the fifth bits of Q5_0 / Q5_1 as a byte mask).
#[target_feature(enable = "neon")]
#[inline]
pub(crate) fn bit_mask16(bits: u16) -> uint8x16_t {
    const LANE_BIT: [u8; 16] = [1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128];
    let b = vcombine_u8(vdup_n_u8(bits as u8), vdup_n_u8((bits >> 8) as u8));
    // SAFETY: LANE_BIT holds 16 bytes.
    vtstq_u8(b, unsafe { vld1q_u8(LANE_BIT.as_ptr()) })
}

#[cfg(test)]
mod tests {
    use crate::DType;

    /// The SIMD tests fall back to scalar silently where a format has no NEON kernel; this keeps the table complete.
    #[test]
    fn every_quantized_weight_format_has_a_neon_kernel() {
        for dtype in [
            DType::Q4_0,
            DType::Q4_1,
            DType::Q5_0,
            DType::Q5_1,
            DType::Q8_0,
            DType::Q2_K,
            DType::Q3_K,
            DType::Q4_K,
            DType::Q5_K,
            DType::Q6_K,
        ] {
            assert!(
                super::neon_dot(dtype).is_some(),
                "{dtype}: no NEON dot product"
            );
            assert!(
                super::tile_fn(dtype, 256).is_some(),
                "{dtype}: no NEON tile"
            );
        }
    }

    #[test]
    fn bit_mask16_sets_lane_of_each_bit() {
        for bits in [0u16, 1, 0x8000, 0xA5C3, 0xFFFF] {
            // SAFETY: NEON is part of the aarch64 baseline.
            let m: [u8; 16] = unsafe { std::mem::transmute(super::bit_mask16(bits)) };
            for (i, &b) in m.iter().enumerate() {
                assert_eq!(
                    b,
                    if bits >> i & 1 == 1 { 0xFF } else { 0 },
                    "bits {bits:#x} lane {i}"
                );
            }
        }
    }
}
