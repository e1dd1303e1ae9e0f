//! aarch64 NEON glue: the tile driver over per-format NEON dot products, and small vector helpers.
//!
//! NEON kernels compute one (row, token) dot product at a time; the driver loops over the tile. Every quantized weight
//! format has one, generic over how 16 signed byte pairs are multiplied ([`I8Dot`]): with the dot-product extension's
//! `sdot` where the CPU has it (detected at run time), else with baseline ARMv8.0 NEON, which every aarch64 CPU runs.

use crate::matmul::{TileArgs, TileFn};
use crate::DType;
use std::arch::aarch64::*;

/// A NEON dot product of one weight row with one activation row, both whole blocks.
type NeonDot = unsafe fn(w: &[u8], a: &[u8]) -> f32;

/// Runs a NEON dot product over every (row, token) pair of a tile.
///
/// # Safety
/// The CPU must have NEON; `p` must describe valid memory of whole blocks.
unsafe fn tile<const F: u32, D: I8Dot>(p: TileArgs) {
    let Some(dot) = DType::from_id(F).and_then(neon_dot::<D>) else {
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

fn neon_dot<D: I8Dot>(weight: DType) -> Option<NeonDot> {
    Some(match weight {
        DType::Q4_0 => crate::formats::q4_0::neon::vec_dot::<D>,
        DType::Q4_1 => crate::formats::q4_1::neon::vec_dot::<D>,
        DType::Q5_0 => crate::formats::q5_0::neon::vec_dot::<D>,
        DType::Q5_1 => crate::formats::q5_1::neon::vec_dot::<D>,
        DType::Q8_0 => crate::formats::q8_0::neon::vec_dot::<D>,
        DType::Q2_K => crate::formats::q2_k::neon::vec_dot::<D>,
        DType::Q3_K => crate::formats::q3_k::neon::vec_dot::<D>,
        DType::Q4_K => crate::formats::q4_k::neon::vec_dot::<D>,
        DType::Q5_K => crate::formats::q5_k::neon::vec_dot::<D>,
        DType::Q6_K => crate::formats::q6_k::neon::vec_dot::<D>,
        _ => return None,
    })
}

/// Whether this CPU has the dot-product extension (`sdot`); detected once by std.
pub(crate) fn has_dotprod() -> bool {
    std::arch::is_aarch64_feature_detected!("dotprod")
}

/// The NEON tile function for `weight`, if there is one: with `sdot` where the CPU has it.
pub(crate) fn tile_fn(weight: DType, _cols: usize) -> Option<TileFn> {
    if has_dotprod() {
        tile_fn_with::<DotProd>(weight)
    } else {
        tile_fn_with::<Base>(weight)
    }
}

/// The tile function for `weight` with byte products from `D`. The caller makes sure the CPU has what `D` uses.
fn tile_fn_with<D: I8Dot>(weight: DType) -> Option<TileFn> {
    Some(match weight {
        DType::Q4_0 => tile::<{ DType::Q4_0 as u32 }, D>,
        DType::Q4_1 => tile::<{ DType::Q4_1 as u32 }, D>,
        DType::Q5_0 => tile::<{ DType::Q5_0 as u32 }, D>,
        DType::Q5_1 => tile::<{ DType::Q5_1 as u32 }, D>,
        DType::Q8_0 => tile::<{ DType::Q8_0 as u32 }, D>,
        DType::Q2_K => tile::<{ DType::Q2_K as u32 }, D>,
        DType::Q3_K => tile::<{ DType::Q3_K as u32 }, D>,
        DType::Q4_K => tile::<{ DType::Q4_K as u32 }, D>,
        DType::Q5_K => tile::<{ DType::Q5_K as u32 }, D>,
        DType::Q6_K => tile::<{ DType::Q6_K as u32 }, D>,
        _ => return None,
    })
}

/// How a kernel multiplies 16 + 16 signed bytes and adds them to 4 x i32 lanes. Only the sum over the lanes is
/// specified (the two implementations group the products into lanes differently).
pub(crate) trait I8Dot: 'static {
    /// `acc` plus the 16 products of `x` and `y`, spread over its 4 lanes.
    ///
    /// # Safety
    /// The CPU must have what the implementation uses (NEON; `sdot` for [`DotProd`]).
    unsafe fn dot(acc: int32x4_t, x: int8x16_t, y: int8x16_t) -> int32x4_t;
}

/// Baseline ARMv8.0 NEON: widening multiplies and pairwise adds ([`dot_i8x16`]).
pub(crate) struct Base;

impl I8Dot for Base {
    /// # Safety
    /// NEON is part of every aarch64 CPU; registers only, no memory.
    #[inline(always)]
    unsafe fn dot(acc: int32x4_t, x: int8x16_t, y: int8x16_t) -> int32x4_t {
        dot_i8x16(acc, x, y)
    }
}

/// The ARMv8.2 dot-product extension: one `sdot` (lane i gets bytes 4i..4i+4). Written as `asm!` because its
/// intrinsic `vdotq_s32` is not stable Rust yet.
pub(crate) struct DotProd;

impl I8Dot for DotProd {
    /// # Safety
    /// The CPU has the dot-product extension ([`has_dotprod`]).
    #[inline(always)]
    unsafe fn dot(mut acc: int32x4_t, x: int8x16_t, y: int8x16_t) -> int32x4_t {
        // SAFETY: the caller checked the CPU has the extension ([`has_dotprod`]); registers only, no memory.
        unsafe {
            std::arch::asm!(
                ".arch_extension dotprod",
                "sdot {acc:v}.4s, {x:v}.16b, {y:v}.16b",
                acc = inout(vreg) acc,
                x = in(vreg) x,
                y = in(vreg) y,
                options(pure, nomem, nostack, preserves_flags),
            );
        }
        acc
    }
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
                super::neon_dot::<super::Base>(dtype).is_some(),
                "{dtype}: no NEON dot"
            );
            assert!(
                super::neon_dot::<super::DotProd>(dtype).is_some(),
                "{dtype}: no sdot dot"
            );
            assert!(
                super::tile_fn(dtype, 256).is_some(),
                "{dtype}: no NEON tile"
            );
        }
    }

    /// Both byte-product paths against plain integer sums, at the extremes of i8 (`sdot` only where the CPU has it;
    /// scripts/test-aarch64.sh runs the tests on an emulated CPU with and one without).
    #[test]
    fn byte_dots_match_integer_sums() {
        use super::{Base, DotProd, I8Dot};
        use std::arch::aarch64::*;
        let mut seed = 7u32;
        let mut byte = || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 24) as u8 as i8
        };
        let mut cases: Vec<([i8; 16], [i8; 16])> =
            vec![([-128; 16], [-128; 16]), ([127; 16], [-128; 16])];
        cases.extend((0..50).map(|_| {
            (
                std::array::from_fn(|_| byte()),
                std::array::from_fn(|_| byte()),
            )
        }));
        for (x, y) in cases {
            let want = 5 + x
                .iter()
                .zip(&y)
                .map(|(a, b)| *a as i32 * *b as i32)
                .sum::<i32>();
            // SAFETY: NEON is part of the aarch64 baseline; sdot only runs where detected.
            unsafe {
                let (vx, vy, acc) = (
                    vld1q_s8(x.as_ptr()),
                    vld1q_s8(y.as_ptr()),
                    vsetq_lane_s32::<2>(5, vdupq_n_s32(0)),
                );
                assert_eq!(
                    vaddvq_s32(Base::dot(acc, vx, vy)),
                    want,
                    "base {x:?} . {y:?}"
                );
                if super::has_dotprod() {
                    assert_eq!(
                        vaddvq_s32(DotProd::dot(acc, vx, vy)),
                        want,
                        "sdot {x:?} . {y:?}"
                    );
                }
            }
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
