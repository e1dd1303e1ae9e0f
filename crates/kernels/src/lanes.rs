//! The AVX2 kernels' 8-lane arithmetic written as portable code: the same IEEE operations (fused where the SIMD
//! code fuses, summed in the same tree), so the portable paths of attention and of the gated activations give the
//! same bits as the SIMD ones. A model's output then does not depend on the machine's ISA: `HEARTH_ISA=scalar`, a
//! CPU without AVX2 and the default VNNI path choose the same tokens.
//!
//! `f32::mul_add` is one correctly rounded fused multiply-add on every target (an instruction where the CPU has
//! one, libm's `fmaf` otherwise), exactly what `_mm256_fmadd_ps` computes per lane.

/// e^x: one lane of `x86::exp256` (Cody–Waite reduction, degree-6 Taylor polynomial, scaling by 2^n through the
/// exponent; x is clamped to [-87, 88] and anything at or below -87 gives 0). Relative error about 2e-7.
#[inline]
pub(crate) fn exp(x: f32) -> f32 {
    // max(x, -87) takes -87 for NaN, like `_mm256_max_ps(x, c)`.
    let x = if x > -87.0 { x } else { -87.0 }.min(88.0);
    let n = (x * std::f32::consts::LOG2_E).round_ties_even();
    let r = (-n).mul_add(0.693_145_75, x);
    let r = (-n).mul_add(1.428_606_8e-6, r);
    let mut p = 1.0f32 / 720.0;
    for c in [1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
        p = p.mul_add(r, c);
    }
    // n is in [-126, 127], so n + 127 is a normal exponent.
    let e = p * f32::from_bits(((n as i32 + 127) as u32) << 23);
    if x <= -87.0 {
        0.0
    } else {
        e
    }
}

/// Sum of 8 lanes in `x86::hsum256`'s order: halves, then pairs, then the last two.
#[inline]
pub(crate) fn sum8(v: &[f32; 8]) -> f32 {
    let s = [v[0] + v[4], v[1] + v[5], v[2] + v[6], v[3] + v[7]];
    (s[0] + s[2]) + (s[1] + s[3])
}

/// `a · b` in the AVX2 attention dot's order: two 8-lane FMA accumulators over 16 elements at a time (a last 8
/// into the first), added lane-wise, then [`sum8`]. Lengths not a multiple of 8 add their tail in order.
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let (mut s0, mut s1) = ([0f32; 8], [0f32; 8]);
    let n8 = a.len() / 8 * 8;
    let mut i = 0;
    while i + 16 <= n8 {
        for l in 0..8 {
            s0[l] = a[i + l].mul_add(b[i + l], s0[l]);
            s1[l] = a[i + 8 + l].mul_add(b[i + 8 + l], s1[l]);
        }
        i += 16;
    }
    if i < n8 {
        for l in 0..8 {
            s0[l] = a[i + l].mul_add(b[i + l], s0[l]);
        }
    }
    let mut s = sum8(&std::array::from_fn(|l| s0[l] + s1[l]));
    for k in n8..a.len() {
        s = a[k].mul_add(b[k], s);
    }
    s
}

#[cfg(test)]
mod portable_tests {
    #[test]
    fn dot_handles_remainders() {
        // Squares of small integers sum exactly in f32, in any order.
        for n in 0..40 {
            let a: Vec<f32> = (0..n).map(|i| i as f32).collect();
            let want: f32 = a.iter().map(|v| v * v).sum();
            assert_eq!(super::dot(&a, &a), want, "n = {n}");
        }
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use std::arch::x86_64::*;

    fn simd_available() -> bool {
        crate::Isa::Avx2.is_available()
    }

    #[test]
    fn exp_equals_the_avx2_lanes() {
        if !simd_available() {
            eprintln!("NOTE: no AVX2 on this CPU: nothing to compare against");
            return;
        }
        // Every 997th f32 bit pattern in [-100, 100], and the edges.
        let mut xs: Vec<f32> = (0..u32::MAX / 997)
            .map(|i| f32::from_bits(i * 997))
            .filter(|x| x.abs() <= 100.0)
            .flat_map(|x| [x, -x])
            .collect();
        xs.extend([
            -87.0,
            -87.000_01,
            -86.999_99,
            88.0,
            88.5,
            0.0,
            -0.0,
            f32::NAN,
            f32::INFINITY,
        ]);
        for chunk in xs.chunks_exact(8) {
            // SAFETY: AVX2 is available; the chunk holds 8 f32.
            let simd: [f32; 8] =
                unsafe { std::mem::transmute(crate::x86::exp256(_mm256_loadu_ps(chunk.as_ptr()))) };
            for (l, &x) in chunk.iter().enumerate() {
                assert_eq!(super::exp(x).to_bits(), simd[l].to_bits(), "exp({x})");
            }
        }
    }

    #[test]
    fn sum8_equals_hsum256() {
        if !simd_available() {
            eprintln!("NOTE: no AVX2 on this CPU: nothing to compare against");
            return;
        }
        // Magnitudes far apart make every order of summation round differently.
        let v = [1e8f32, 3.0, -1e8, 0.7, 1.1e-3, 5e7, -2.5, 1.0 / 3.0];
        for shift in 0..8 {
            let w: [f32; 8] = std::array::from_fn(|l| v[(l + shift) % 8]);
            // SAFETY: AVX2 is available (checked at the top of the test) and `w` is 8 f32 for the 32-byte load.
            let simd = unsafe { crate::x86::hsum256(_mm256_loadu_ps(w.as_ptr())) };
            assert_eq!(super::sum8(&w).to_bits(), simd.to_bits(), "{w:?}");
        }
    }
}
