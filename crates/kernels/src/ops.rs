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

/// GELU, tanh approximation (Gemma's `gelu_pytorch_tanh`).
#[inline]
pub fn gelu_tanh(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * (1.0 + 0.044715 * x * x)).tanh())
}

/// The gated feed-forward's middle: `gate[i] = act(gate[i]) * up[i]`.
pub fn gated_activation(gate: &mut [f32], up: &[f32], act: fn(f32) -> f32) {
    for (g, &u) in gate.iter_mut().zip(up) {
        *g = act(*g) * u;
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
/// (`freq_scale` multiplies positions, as llama.cpp's `rope_freq_scale`).
#[derive(Debug, Clone)]
pub struct Rope {
    pub style: RopeStyle,
    /// Number of leading dimensions of each head that are rotated (`rope.dimension_count`).
    pub n_rot: usize,
    pub inv_freq: Vec<f32>,
    pub freq_scale: f32,
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
        }
    }

    /// Rotates every head of `x` (n_heads × head_dim, row-major) for position `pos`.
    pub fn apply(&self, x: &mut [f32], head_dim: usize, pos: usize) {
        let p = pos as f32 * self.freq_scale;
        let half = self.n_rot / 2;
        for head in x.chunks_exact_mut(head_dim) {
            for (i, &f) in self.inv_freq.iter().enumerate() {
                let (sin, cos) = (p * f).sin_cos();
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

/// Dot product of two f32 slices.
#[inline]
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    // Eight independent accumulators let the compiler vectorise without reassociation flags.
    let mut acc = [0f32; 8];
    let chunks = a.len() / 8;
    for c in 0..chunks {
        for l in 0..8 {
            acc[l] += a[c * 8 + l] * b[c * 8 + l];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for i in chunks * 8..a.len() {
        s += a[i] * b[i];
    }
    s
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
    fn activations_known_values() {
        assert!((silu(1.0) - 0.731_058_6).abs() < 1e-6);
        assert!((gelu_tanh(1.0) - 0.841_192).abs() < 1e-5);
        assert_eq!(gelu_tanh(0.0), 0.0);
    }

    #[test]
    fn dot_handles_remainders() {
        for n in 0..20 {
            let a: Vec<f32> = (0..n).map(|i| i as f32).collect();
            let want: f32 = a.iter().map(|v| v * v).sum();
            assert_eq!(dot_f32(&a, &a), want);
        }
    }
}
