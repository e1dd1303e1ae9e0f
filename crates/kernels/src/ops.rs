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

/// Layer normalisation of one row (BERT): `out[i] = (x[i] - mean) / sqrt(var + eps) * w[i] + b[i]`, the mean and
/// the (biased) variance over the row, accumulated in f64 so a row of large equal values normalises exactly.
pub fn layer_norm(x: &[f32], w: &[f32], b: Option<&[f32]>, eps: f32, out: &mut [f32]) {
    debug_assert_eq!(x.len(), w.len());
    let n = x.len() as f64;
    let mean = x.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
    let scale = 1.0 / (var + eps as f64).sqrt();
    for (i, (o, &v)) in out.iter_mut().zip(x).enumerate() {
        let y = ((v as f64 - mean) * scale) as f32 * w[i];
        *o = match b {
            Some(b) => y + b[i],
            None => y,
        };
    }
}

/// In-place [`layer_norm`] of one row.
pub fn layer_norm_inplace(x: &mut [f32], w: &[f32], b: Option<&[f32]>, eps: f32) {
    let n = x.len() as f64;
    let mean = x.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
    let scale = 1.0 / (var + eps as f64).sqrt();
    for (i, v) in x.iter_mut().enumerate() {
        let y = ((*v as f64 - mean) * scale) as f32 * w[i];
        *v = match b {
            Some(b) => y + b[i],
            None => y,
        };
    }
}

/// The error function, W. J. Cody's rational approximations (|error| < 1e-15 relative in f64), so that [`gelu`]
/// is exact to f32 rounding.
#[allow(clippy::excessive_precision)] // the coefficients as published
pub fn erf(x: f64) -> f64 {
    let ax = x.abs();
    let r = if ax < 0.5 {
        // erf(x) = x P(x²)/Q(x²)
        const P: [f64; 5] = [
            3.209_377_589_138_469_4e3,
            3.774_852_376_853_020_2e2,
            1.138_641_541_510_501_6e2,
            3.161_123_743_870_565_6,
            1.857_777_061_846_031_5e-1,
        ];
        const Q: [f64; 5] = [
            2.844_236_833_439_170_6e3,
            1.282_616_526_077_372_3e3,
            2.440_246_379_344_441_7e2,
            2.360_129_095_234_412_1e1,
            1.0,
        ];
        let z = x * x;
        let p = (((P[4] * z + P[3]) * z + P[2]) * z + P[1]) * z + P[0];
        let q = (((Q[4] * z + Q[3]) * z + Q[2]) * z + Q[1]) * z + Q[0];
        return x * p / q;
    } else if ax < 4.0 {
        // erfc(x) = e^(-x²) P(x)/Q(x)
        const P: [f64; 9] = [
            1.230_339_354_797_997_2e3,
            2.051_078_377_826_071_5e3,
            1.712_047_612_634_070_6e3,
            8.819_522_212_417_690_9e2,
            2.986_351_381_974_001_3e2,
            6.611_919_063_714_163e1,
            8.883_149_794_388_376,
            5.641_884_969_886_701e-1,
            2.153_115_354_744_038_5e-8,
        ];
        const Q: [f64; 9] = [
            1.230_339_354_803_749_4e3,
            3.439_367_674_143_721_6e3,
            4.362_619_090_143_247e3,
            3.290_799_235_733_459_7e3,
            1.621_389_574_566_690_3e3,
            5.371_811_018_620_098_6e2,
            1.176_939_508_913_125e2,
            1.574_492_611_070_983_3e1,
            1.0,
        ];
        let mut p = P[8];
        let mut q = Q[8];
        for i in (0..8).rev() {
            p = p * ax + P[i];
            q = q * ax + Q[i];
        }
        1.0 - (-ax * ax).exp() * p / q
    } else {
        // erfc(x) = e^(-x²)/x (1/sqrt(pi) + P(1/x²)/Q(1/x²) / x²)
        const P: [f64; 6] = [
            -6.587_491_615_298_378e-4,
            -1.608_378_514_874_227_5e-2,
            -1.257_817_261_112_292_6e-1,
            -3.603_448_999_498_044_4e-1,
            -3.053_266_349_612_323_4e-1,
            -1.631_538_713_730_209_7e-2,
        ];
        const Q: [f64; 6] = [
            2.335_204_976_268_691_8e-3,
            6.051_834_131_244_132e-2,
            5.279_051_029_514_284e-1,
            1.872_952_849_923_460_4,
            2.568_520_192_289_822,
            1.0,
        ];
        let z = 1.0 / (ax * ax);
        let mut p = P[5];
        let mut q = Q[5];
        for i in (0..5).rev() {
            p = p * z + P[i];
            q = q * z + Q[i];
        }
        let frac_1_sqrt_pi = 0.564_189_583_547_756_3;
        1.0 - (-ax * ax).exp() / ax * (frac_1_sqrt_pi + z * p / q)
    };
    if x < 0.0 {
        -r
    } else {
        r
    }
}

/// GELU, the exact form (BERT's `gelu`): `x Φ(x) = 0.5 x (1 + erf(x / sqrt 2))`.
#[inline]
pub fn gelu(x: f32) -> f32 {
    let x = x as f64;
    (0.5 * x * (1.0 + erf(x * std::f64::consts::FRAC_1_SQRT_2))) as f32
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
        // SAFETY: both chunks hold exactly 8 f32 (chunks_exact), so each 32-byte unaligned load stays inside.
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
        // SAFETY: `g` is a chunk of exactly 8 f32, so the 32-byte unaligned store stays inside it.
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
        // Every head turns its pairs by the same angles: each angle's sine and cosine once per call (they were once
        // computed per head, a large share of a batch of decoding steps), a chunk of pairs at a time on the stack.
        const CHUNK: usize = 64;
        for (c, freqs) in self.inv_freq.chunks(CHUNK).enumerate() {
            let (mut sin, mut cos) = ([0f32; CHUNK], [0f32; CHUNK]);
            for (j, &f) in freqs.iter().enumerate() {
                let (s, co) = (p * f).sin_cos();
                (sin[j], cos[j]) = (s * self.mscale, co * self.mscale);
            }
            for head in x.chunks_exact_mut(head_dim) {
                for (j, (&sin, &cos)) in sin.iter().zip(&cos).take(freqs.len()).enumerate() {
                    let i = c * CHUNK + j;
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

    /// Values from Python's `math.erf` (the C library's), an independent implementation.
    #[test]
    #[allow(clippy::excessive_precision)]
    fn erf_matches_libm() {
        let want = [
            (0.1, 0.1124629160182849),
            (0.3, 0.3286267594591274),
            (0.49, 0.511668261188523),
            (0.5, 0.5204998778130465),
            (0.7, 0.6778011938374184),
            (1.0, 0.8427007929497149),
            (1.5, 0.9661051464753108),
            (2.0, 0.9953222650189527),
            (3.0, 0.9999779095030014),
            (3.9, 0.9999999652077514),
            (4.0, 0.9999999845827421),
            (4.5, 0.9999999998033839),
            (6.0, 1.0),
            (-0.2, -0.22270258921047847),
            (-1.2, -0.9103139782296353),
            (-5.0, -0.9999999999984626),
        ];
        for (x, e) in want {
            assert!((erf(x) - e).abs() < 1e-14, "erf({x}) = {} vs {e}", erf(x));
        }
        assert_eq!(gelu(0.0), 0.0);
        assert!((gelu(1.0) - 0.841_344_75).abs() < 1e-7);
        assert!((gelu(-3.0) + 0.004_049_69).abs() < 1e-8);
    }

    #[test]
    fn layer_norm_centres_and_scales() {
        let x = [1.0, -2.0, 3.0, 0.5];
        let (w, b) = ([1.0, 2.0, 0.5, 1.0], [0.1, 0.0, -0.1, 0.2]);
        let mut out = [0.0; 4];
        layer_norm(&x, &w, Some(&b), 1e-12, &mut out);
        let mean = 2.5 / 4.0;
        let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / 4.0;
        for i in 0..4 {
            let want = (x[i] - mean) / var.sqrt() * w[i] + b[i];
            assert!((out[i] - want).abs() < 1e-6, "{i}: {} vs {want}", out[i]);
        }
        let mut y = x;
        layer_norm_inplace(&mut y, &w, Some(&b), 1e-12);
        assert_eq!(y, out);
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
