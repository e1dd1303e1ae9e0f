//! f32 element-wise and row operations of the transformer: norms, activations, RoPE, softmax.
//!
//! Plain loops the compiler vectorises; they run on activations (n_tokens × n_embd), a small cost next to the
//! matrix products.

/// RMS normalisation of one row: `out[i] = x[i] / sqrt(mean(x²) + eps) * w[i]`.
pub fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    debug_assert_eq!(x.len(), w.len());
    let ss: f32 = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
    let scale = 1.0 / (ss + eps).sqrt();
    for ((o, &v), &g) in out.iter_mut().zip(x).zip(w) {
        *o = v * scale * g;
    }
}

/// In-place RMS normalisation of one row.
pub fn rms_norm_inplace(x: &mut [f32], w: &[f32], eps: f32) {
    let ss: f32 = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
    let scale = 1.0 / (ss + eps).sqrt();
    for (v, &g) in x.iter_mut().zip(w) {
        *v *= scale * g;
    }
}

/// SiLU: `x * sigmoid(x)`.
#[inline]
pub fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

const SQRT_2_OVER_PI: f32 = 0.797_884_6;

/// GELU, tanh approximation (Gemma's `gelu_pytorch_tanh`): `0.5 x (1 + tanh(u))`, computed as the equal
/// `x * sigmoid(2u)` (with `u = sqrt(2 / pi) (x + 0.044715 x³)`), which keeps its far negative tail where
/// `1 + tanh(u)` would cancel to 0.
#[inline]
pub fn gelu_tanh(x: f32) -> f32 {
    let z = 2.0 * SQRT_2_OVER_PI * (x + 0.044715 * x * x * x);
    x / (1.0 + (-z).exp())
}

/// The activation of a gated feed-forward. Both are `x * sigmoid(z)`: `z = x` for SiLU, and for the tanh GELU
/// `z = 2 * sqrt(2 / pi) * (x + 0.044715 x³)` (since `0.5 * (1 + tanh(u)) = sigmoid(2u)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatedAct {
    Silu,
    GeluTanh,
}

impl GatedAct {
    /// `z` of `x * sigmoid(z)`, in the AVX2 kernel's operations (`x * x * x`, then one fused multiply-add).
    #[inline]
    fn z(self, x: f32) -> f32 {
        match self {
            GatedAct::Silu => x,
            GatedAct::GeluTanh => 2.0 * SQRT_2_OVER_PI * 0.044715f32.mul_add(x * x * x, x),
        }
    }

    /// The definition (libm's exp): what [`gated`] approximates.
    pub fn scalar(self) -> fn(f32) -> f32 {
        match self {
            GatedAct::Silu => silu,
            GatedAct::GeluTanh => gelu_tanh,
        }
    }
}

/// `gate[i] = act(gate[i]) * up[i]`, with 8-lane AVX2 code where the selected ISA has it and the same arithmetic in
/// portable code otherwise (same bits on every ISA). Within a few ulps of the definitions [`silu`] and
/// [`gelu_tanh`], and several times faster than libm's `tanhf` and `expf`.
pub fn gated(gate: &mut [f32], up: &[f32], act: GatedAct) {
    gated_with_isa(
        gate,
        up,
        act,
        crate::selected_isa().unwrap_or(crate::Isa::Scalar),
    )
}

/// [`gated`] on `isa` (AVX2 code for the x86 SIMD ones, portable code for the others).
fn gated_with_isa(gate: &mut [f32], up: &[f32], act: GatedAct, isa: crate::Isa) {
    assert_eq!(gate.len(), up.len());
    #[cfg(target_arch = "x86_64")]
    let done = if isa >= crate::Isa::Avx2 && isa != crate::Isa::Neon && isa.is_available() {
        let n8 = gate.len() / 8 * 8;
        // SAFETY: the CPU has AVX2 and FMA (checked just above).
        unsafe { x86_gated(&mut gate[..n8], &up[..n8], act) };
        n8
    } else {
        0
    };
    #[cfg(not(target_arch = "x86_64"))]
    let done = {
        let _ = isa;
        0
    };
    for (g, &u) in gate[done..].iter_mut().zip(&up[done..]) {
        let x = *g;
        *g = x / (1.0 + crate::lanes::exp(0.0 - act.z(x))) * u;
    }
}

/// [`gated`] on whole groups of 8.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
fn x86_gated(gate: &mut [f32], up: &[f32], act: GatedAct) {
    use std::arch::x86_64::*;
    for (g, u) in gate.chunks_exact_mut(8).zip(up.chunks_exact(8)) {
        // SAFETY: both chunks hold 8 f32.
        let (x, u) = unsafe { (_mm256_loadu_ps(g.as_ptr()), _mm256_loadu_ps(u.as_ptr())) };
        let z = match act {
            GatedAct::Silu => x,
            GatedAct::GeluTanh => {
                let x3 = _mm256_mul_ps(_mm256_mul_ps(x, x), x);
                let inner = _mm256_fmadd_ps(_mm256_set1_ps(0.044715), x3, x);
                _mm256_mul_ps(_mm256_set1_ps(2.0 * SQRT_2_OVER_PI), inner)
            }
        };
        let e = crate::x86::exp256(_mm256_sub_ps(_mm256_setzero_ps(), z));
        let y = _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0), e));
        // SAFETY: as above.
        unsafe { _mm256_storeu_ps(g.as_mut_ptr(), _mm256_mul_ps(y, u)) };
    }
}

/// In-place softmax of one row. Returns nothing; a row of all `-inf` becomes all zeros rather than NaN.
pub fn softmax(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        x.fill(0.0);
        return;
    }
    let mut sum = 0.0;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    let inv = 1.0 / sum;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

/// How RoPE pairs the dimensions of a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeStyle {
    /// Rotate adjacent pairs (x[2i], x[2i+1]): llama and deepseek2 as GGUF stores them.
    Adjacent,
    /// Rotate pairs half a head apart (x[i], x[i + d/2]): qwen2, qwen3, gemma3 ("NeoX").
    HalfSplit,
}

/// Precomputed inverse frequencies `base^(-2i/n_rot)` for i in 0..n_rot/2, with optional linear scaling
/// (`freq_scale` multiplies positions, as llama.cpp's `rope_freq_scale`) or YaRN ([`Rope::yarn`]).
#[derive(Debug, Clone)]
pub struct Rope {
    pub style: RopeStyle,
    /// Number of leading dimensions of each head that are rotated (`rope.dimension_count`).
    pub n_rot: usize,
    pub inv_freq: Vec<f32>,
    pub freq_scale: f32,
    /// Multiplies sin and cos (YaRN's magnitude correction); 1 otherwise.
    pub mscale: f32,
}

/// YaRN RoPE scaling parameters, as llama.cpp's `rope.scaling.*` keys give them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Yarn {
    /// Context extension factor (`rope.scaling.factor`; llama.cpp's `1 / freq_scale`).
    pub factor: f32,
    /// The pre-training context (`rope.scaling.original_context_length`).
    pub orig_ctx: usize,
    /// Rotations at which the blend starts and ends (`yarn_beta_fast` 32, `yarn_beta_slow` 1 by default).
    pub beta_fast: f32,
    pub beta_slow: f32,
    /// How much of the extrapolated frequencies to blend in (1 for YaRN).
    pub ext_factor: f32,
    /// Multiplies the magnitude correction `1 + 0.1 ln(factor)` (1 by default; DeepSeek-V2/V3 move the
    /// correction into the attention scale instead and pass `1 / (1 + 0.1 ln(factor))`).
    pub attn_factor: f32,
}

impl Rope {
    pub fn new(style: RopeStyle, n_rot: usize, base: f32, freq_scale: f32) -> Rope {
        let inv_freq = (0..n_rot / 2)
            .map(|i| base.powf(-2.0 * i as f32 / n_rot as f32))
            .collect();
        Rope {
            style,
            n_rot,
            inv_freq,
            freq_scale,
            mscale: 1.0,
        }
    }

    /// YaRN (llama.cpp's `rope_yarn`): dimensions that turn fewer than `beta_slow` times over the original context
    /// are interpolated (frequency / factor), those that turn more than `beta_fast` times keep their frequency, and
    /// a linear ramp blends the ones between; sin and cos are scaled by `attn_factor * (1 + 0.1 ln(factor))`.
    pub fn yarn(style: RopeStyle, n_rot: usize, base: f32, y: &Yarn) -> Rope {
        let mut r = Rope::new(style, n_rot, base, 1.0);
        // The dimension pair at which a frequency turns `n` times over the original context.
        let corr_dim = |n: f32| {
            n_rot as f32 * (y.orig_ctx as f32 / (n * 2.0 * std::f32::consts::PI)).ln()
                / (2.0 * base.ln())
        };
        let low = corr_dim(y.beta_fast).floor().max(0.0);
        let high = corr_dim(y.beta_slow).ceil().min(n_rot as f32 - 1.0);
        let freq_scale = 1.0 / y.factor;
        for (i, f) in r.inv_freq.iter_mut().enumerate() {
            let ramp = (i as f32 - low) / (high - low).max(0.001);
            let mix = (1.0 - ramp.clamp(0.0, 1.0)) * y.ext_factor;
            *f = *f * freq_scale * (1.0 - mix) + *f * mix;
        }
        r.mscale = y.attn_factor;
        if y.ext_factor != 0.0 {
            r.mscale *= 1.0 + 0.1 * y.factor.ln();
        }
        r
    }

    /// Rotates every head of `x` (n_heads × head_dim, row-major) for position `pos`.
    pub fn apply(&self, x: &mut [f32], head_dim: usize, pos: usize) {
        let p = pos as f32 * self.freq_scale;
        let half = self.n_rot / 2;
        for head in x.chunks_exact_mut(head_dim) {
            for (i, &f) in self.inv_freq.iter().enumerate() {
                let (sin, cos) = (p * f).sin_cos();
                let (sin, cos) = (sin * self.mscale, cos * self.mscale);
                let (a, b) = match self.style {
                    RopeStyle::Adjacent => (2 * i, 2 * i + 1),
                    RopeStyle::HalfSplit => (i, i + half),
                };
                let (x0, x1) = (head[a], head[b]);
                head[a] = x0 * cos - x1 * sin;
                head[b] = x0 * sin + x1 * cos;
            }
        }
    }
}

/// `y += a * x`.
#[inline]
pub fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    for (yv, &xv) in y.iter_mut().zip(x) {
        *yv += a * xv;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rms_norm_matches_definition() {
        let x = [1.0, -2.0, 3.0, 0.5];
        let w = [1.0, 2.0, 0.5, 1.0];
        let mut out = [0.0; 4];
        rms_norm(&x, &w, 1e-6, &mut out);
        let rms = ((1.0 + 4.0 + 9.0 + 0.25) / 4.0f32 + 1e-6).sqrt();
        for i in 0..4 {
            assert!((out[i] - x[i] / rms * w[i]).abs() < 1e-6);
        }
    }

    #[test]
    fn softmax_sums_to_one_and_handles_masked_rows() {
        let mut x = [1.0, 2.0, f32::NEG_INFINITY, 0.0];
        softmax(&mut x);
        assert!((x.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert_eq!(x[2], 0.0);
        let mut m = [f32::NEG_INFINITY; 3];
        softmax(&mut m);
        assert_eq!(m, [0.0; 3]);
    }

    #[test]
    fn rope_styles_pair_different_dimensions() {
        // Position 1, base 1 → every pair rotates by 1 radian.
        let r = Rope::new(RopeStyle::Adjacent, 4, 1.0, 1.0);
        let mut x = [1.0, 0.0, 1.0, 0.0];
        r.apply(&mut x, 4, 1);
        let (s, c) = 1f32.sin_cos();
        assert!((x[0] - c).abs() < 1e-6 && (x[1] - s).abs() < 1e-6);
        let r = Rope::new(RopeStyle::HalfSplit, 4, 1.0, 1.0);
        let mut x = [1.0, 1.0, 0.0, 0.0];
        r.apply(&mut x, 4, 1);
        assert!((x[0] - c).abs() < 1e-6 && (x[2] - s).abs() < 1e-6);
        // Position 0 is the identity.
        let mut y = [0.3, -0.2, 0.9, 0.1];
        r.apply(&mut y, 4, 0);
        assert_eq!(y, [0.3, -0.2, 0.9, 0.1]);
    }

    #[test]
    fn yarn_matches_transformers() {
        // DeepSeek-V3's RoPE (64 rotated dims, base 10 000, factor 40 over 4096): inverse frequencies from
        // transformers 5.24 `ROPE_INIT_FUNCTIONS["yarn"]`.
        let want = [
            1.0,
            0.749_894_2,
            0.562_341_33,
            0.421_696_5,
            0.316_227_76,
            0.237_137_36,
            0.177_827_94,
            0.133_352_15,
            0.1,
            0.074_989_416,
            0.056_234_13,
            0.039_006_926,
            0.026_879_36,
            0.018_378_144,
            0.012_447_956,
            0.008_334_509,
            0.005_500_000_4,
            0.003_561_997_3,
            0.002_249_365_2,
            0.001_370_513_5,
            7.905_694e-4,
            4.149_904e-4,
            1.778_279_4e-4,
            3.333_803_4e-5,
            2.5e-5,
            1.874_735_4e-5,
            1.405_853_3e-5,
            1.054_241_2e-5,
            7.905_694_5e-6,
            5.928_434_3e-6,
            4.445_698_3e-6,
            3.333_803_5e-6,
        ];
        let y = Yarn {
            factor: 40.0,
            orig_ctx: 4096,
            beta_fast: 32.0,
            beta_slow: 1.0,
            ext_factor: 1.0,
            attn_factor: 1.0,
        };
        let r = Rope::yarn(RopeStyle::Adjacent, 64, 10_000.0, &y);
        for (i, (&got, &w)) in r.inv_freq.iter().zip(&want).enumerate() {
            assert!((got - w).abs() <= 2e-6 * w, "dim pair {i}: {got} vs {w}");
        }
        // Magnitude correction 0.1 ln(40) + 1 (transformers' `get_mscale`).
        assert!((r.mscale - (0.1 * 40f32.ln() + 1.0)).abs() < 1e-6);
        // The tiny fixture's RoPE (8 dims, factor 4 over 32 positions).
        let y = Yarn {
            factor: 4.0,
            orig_ctx: 32,
            ..y
        };
        let r = Rope::yarn(RopeStyle::Adjacent, 8, 10_000.0, &y);
        let want = [1.0, 0.025, 0.0025, 0.000_25];
        for (&got, &w) in r.inv_freq.iter().zip(&want) {
            assert!((got - w).abs() <= 1e-6 * w, "{got} vs {w}");
        }
    }

    #[test]
    fn activations_known_values() {
        assert!((silu(1.0) - 0.731_058_6).abs() < 1e-6);
        assert!((gelu_tanh(1.0) - 0.841_192).abs() < 1e-5);
        // The gated activations against their definition in f64, over the range activations take; every ISA
        // gives the portable code's bits.
        for act in [GatedAct::Silu, GatedAct::GeluTanh] {
            let x: Vec<f32> = (0..4003).map(|i| (i as f32 - 2001.0) * 0.013).collect();
            let up: Vec<f32> = (0..4003).map(|i| 1.0 + (i % 7) as f32 * 0.25).collect();
            let mut portable = x.clone();
            gated_with_isa(&mut portable, &up, act, crate::Isa::Scalar);
            for ((&f, &xi), &u) in portable.iter().zip(&x).zip(&up) {
                // Exact in f64.
                let (x64, s) = (xi as f64, (2.0 / std::f64::consts::PI).sqrt());
                let z = match act {
                    GatedAct::Silu => x64,
                    GatedAct::GeluTanh => 2.0 * s * (x64 + 0.044715 * x64 * x64 * x64),
                };
                let want = x64 / (1.0 + (-z).exp()) * u as f64;
                let libm = act.scalar()(xi) * u;
                assert!(
                    (f as f64 - want).abs() <= 1e-5 * want.abs() + 1e-20,
                    "{act:?}({xi}) = {f}, want {want}"
                );
                assert!(
                    (f - libm).abs() <= 2e-6 * libm.abs() + 1e-6,
                    "{act:?}({xi}) = {f}, with libm's exp {libm}"
                );
            }
            for isa in crate::Isa::available() {
                let mut y = x.clone();
                gated_with_isa(&mut y, &up, act, isa);
                for ((a, b), xi) in y.iter().zip(&portable).zip(&x) {
                    assert_eq!(
                        a.to_bits(),
                        b.to_bits(),
                        "{act:?}({xi}) on {isa}: {a} vs portable {b}"
                    );
                }
            }
        }
        assert_eq!(gelu_tanh(0.0), 0.0);
    }
}
