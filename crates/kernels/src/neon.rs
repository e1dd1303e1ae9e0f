//! aarch64 NEON glue: the tile driver over per-format NEON dot products, and small vector helpers.
//!
//! NEON kernels compute one (row, token) dot product at a time; the driver loops over the tile. Only the baseline
//! NEON instruction set is used (no dot-product extension), so every aarch64 CPU runs them.

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
        DType::Q4_1 => crate::formats::q4_1::neon::vec_dot,
        DType::Q8_0 => crate::formats::q8_0::neon::vec_dot,
        DType::Q4_K => crate::formats::q4_k::neon::vec_dot,
        _ => return None,
    })
}

/// The NEON tile function for `weight`, if there is one.
pub(crate) fn tile_fn(weight: DType, _cols: usize) -> Option<TileFn> {
    Some(match weight {
        DType::Q4_1 => tile::<{ DType::Q4_1 as u32 }>,
        DType::Q8_0 => tile::<{ DType::Q8_0 as u32 }>,
        DType::Q4_K => tile::<{ DType::Q4_K as u32 }>,
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
