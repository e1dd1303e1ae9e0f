//! aarch64 NEON glue: the per-format NEON dot products as the registry holds them, and small vector helpers.
//!
//! NEON kernels compute one (row, token) dot product at a time; `matmul` loops over the tile. Every quantized weight
//! format has one, generic over how 16 signed byte pairs are multiplied ([`I8Dot`]): with the dot-product extension's
//! `sdot` where the CPU has it (detected at run time), else with baseline ARMv8.0 NEON, which every aarch64 CPU runs.

use std::arch::aarch64::*;

/// A NEON dot product of one weight row with one activation row, both whole blocks.
///
/// # Safety
/// The CPU must have NEON (and what the byte product it was built with uses); both rows hold whole blocks.
pub(crate) type NeonDot = unsafe fn(w: &[u8], a: &[u8]) -> f32;

/// A weight format's NEON dot product, built with each byte product; a row of the format registry
/// (`crate::formats`) holds one (see [`neon_kernels!`]).
#[derive(Clone, Copy)]
pub(crate) struct Kernels {
    pub base: NeonDot,
    pub dotprod: NeonDot,
}

/// `neon_kernels!(path::vec_dot)`: the [`Kernels`] of a format's `vec_dot::<D: I8Dot>`.
macro_rules! neon_kernels {
    ($($f:ident)::+) => {
        $crate::neon::Kernels {
            base: $($f)::+::<$crate::neon::Base>,
            dotprod: $($f)::+::<$crate::neon::DotProd>,
        }
    };
}
pub(crate) use neon_kernels;

impl Kernels {
    /// The dot product for this CPU: with `sdot` where it has the extension.
    pub(crate) fn dot(&self) -> NeonDot {
        if has_dotprod() {
            self.dotprod
        } else {
            self.base
        }
    }
}

/// Whether this CPU has the dot-product extension (`sdot`); detected once by std.
pub(crate) fn has_dotprod() -> bool {
    std::arch::is_aarch64_feature_detected!("dotprod")
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

/// `sum + d * (lo . a[0..16] + hi . a[16..32])`: one block of 32 signed weight bytes (`lo`, `hi`) against the 32
/// activation quants at `a`, scaled by `d` (the product of both blocks' scales).
///
/// # Safety
/// `a` must point to 32 readable bytes; the CPU must have what `D` uses.
#[inline(always)]
pub(crate) unsafe fn add_block32<D: I8Dot>(
    sum: float32x4_t,
    lo: int8x16_t,
    hi: int8x16_t,
    a: *const u8,
    d: f32,
) -> float32x4_t {
    // SAFETY: the caller guarantees 32 readable bytes at `a` (both 16-byte loads) and, for `D`, the dot-product
    // extension (see `I8Dot`); NEON itself is baseline on aarch64.
    unsafe {
        let acc = D::dot(vdupq_n_s32(0), lo, load_i8(a));
        let acc = D::dot(acc, hi, load_i8(a.add(16)));
        vmlaq_n_f32(sum, vcvtq_f32_s32(acc), d)
    }
}

/// The 32 five-bit quants of a Q5_0 / Q5_1 block as bytes (elements 0..16, 16..32): the nibbles `q` (elements j and
/// j + 16 in byte j) with the fifth bits `qh` (bit j for element j).
#[target_feature(enable = "neon")]
#[inline]
pub(crate) fn five_bits(q: uint8x16_t, qh: u32) -> (uint8x16_t, uint8x16_t) {
    let (m4, m10) = (vdupq_n_u8(0x0F), vdupq_n_u8(0x10));
    let lo = vorrq_u8(vandq_u8(q, m4), vandq_u8(bit_mask16(qh as u16), m10));
    let hi = vorrq_u8(
        vshrq_n_u8::<4>(q),
        vandq_u8(bit_mask16((qh >> 16) as u16), m10),
    );
    (lo, hi)
}

#[cfg(test)]
mod tests {

    /// The SIMD tests fall back to scalar silently where a format has no NEON kernel; this keeps the registry
    /// complete: every quantized weight format has one.
    #[test]
    fn every_quantized_weight_format_has_a_neon_kernel() {
        let mut n = 0;
        for dtype in crate::formats::weight_formats() {
            let dot = crate::formats::spec(dtype).unwrap().dot.as_ref().unwrap();
            if dtype.block_size() > 1 {
                assert!(dot.neon.is_some(), "{dtype}: no NEON dot");
                n += 1;
            }
        }
        assert_eq!(n, 10);
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
