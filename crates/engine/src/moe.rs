//! Mixture-of-experts feed-forward: a router picks each token's top-k experts (softmax or sigmoid gating, optional
//! grouped routing and selection bias, normalised and scaled weights), tokens are grouped by expert so each
//! expert's matrices run once over its token group (its weights read once per batch, and only the active experts'),
//! and always-on shared experts are added (DeepSeek). All experts' gate and up products share one pass over the
//! thread pool, and all their down products another ([`matmul_packed_many`], or [`matmul_many`] for formats without
//! a packed form), instead of three passes per expert.

use crate::config::{Gating, MoeConfig};
use crate::model::Model;
use crate::weights::{MatrixStack, MoeWeights};
use crate::EngineError;
use hearth_kernels::ops::{axpy, gated, softmax};
use hearth_kernels::{matmul_many, matmul_packed_many, MatmulJob, PackedJob, ThreadPool};

/// `out (n, n_embd)` = the experts' weighted sum for the normalised tokens `xb (n, n_embd)`.
pub(crate) fn forward(
    model: &Model,
    pool: &ThreadPool,
    m: &MoeWeights,
    xb: &[f32],
    n: usize,
    out: &mut [f32],
) -> Result<(), EngineError> {
    let c = &model.config;
    let mc = c
        .moe
        .as_ref()
        .ok_or_else(|| EngineError::BadConfig("expert tensors without expert_count".into()))?;
    let (e, f, x) = (c.n_embd, mc.n_ff_exp, mc.n_expert);
    if n == 0 {
        return Ok(());
    }

    // Router logits (n, n_expert), then each expert's (token, weight) group.
    let mut logits = vec![0f32; n * x];
    model.mm(pool, &m.router, xb, n, &mut logits)?;
    let mut groups: Vec<Vec<(usize, f32)>> = vec![Vec::new(); x];
    for (t, row) in logits.chunks_exact(x).enumerate() {
        for (ex, w) in route(mc, row, m.select_bias.as_deref()) {
            groups[ex].push((t, w));
        }
    }

    // The active experts in ascending order, and where each one's tokens start in the gathered rows.
    let active: Vec<(usize, &[(usize, f32)])> = groups
        .iter()
        .enumerate()
        .filter(|(_, g)| !g.is_empty())
        .map(|(ex, g)| (ex, &g[..]))
        .collect();
    let mut at = Vec::with_capacity(active.len() + 1);
    at.push(0);
    for (_, g) in &active {
        at.push(at[at.len() - 1] + g.len());
    }
    let rows = at[active.len()]; // n * n_expert_used
                                 // Each expert's tokens, gathered: (rows, n_embd). An expert that takes every token (always so in decode) reads
                                 // `xb` itself, so its activations are quantized once for all such experts.
    let mut xs = Vec::new();
    for (_, g) in active.iter().filter(|(_, g)| g.len() < n) {
        g.iter()
            .for_each(|&(t, _)| xs.extend_from_slice(&xb[t * e..][..e]));
    }
    // Experts are gated SiLU/GELU-tanh in every MoE architecture; the exact GELU has no gated kernel.
    let act = c.spec.activation.gated().ok_or_else(|| {
        EngineError::BadConfig("routed experts need a SiLU or tanh-GELU gate".into())
    })?;
    let mut gate = vec![0f32; rows * f]; // (rows, n_ff_exp)
    let mut up = vec![0f32; rows * f]; // (rows, n_ff_exp)
    let mut y = vec![0f32; rows * e]; // (rows, n_embd)
    {
        // Gate and up of every active expert, one pass over the pool.
        let mut jobs = Vec::with_capacity(2 * active.len());
        let (mut g_rest, mut u_rest) = (&mut gate[..], &mut up[..]);
        let mut x_at = 0;
        for (ex, g) in &active {
            let k = g.len();
            let x = if k < n {
                x_at += k * e;
                &xs[x_at - k * e..x_at]
            } else {
                xb
            };
            let (gi, gr) = std::mem::take(&mut g_rest).split_at_mut(k * f);
            let (ui, ur) = std::mem::take(&mut u_rest).split_at_mut(k * f);
            (g_rest, u_rest) = (gr, ur);
            jobs.push(ExpertJob(&m.gate, *ex, x, k, gi));
            jobs.push(ExpertJob(&m.up, *ex, x, k, ui));
        }
        run_experts(model, pool, jobs)?;
    }
    gated(&mut gate, &up, act);
    {
        // Down of every active expert, one pass over the pool.
        let mut jobs = Vec::with_capacity(active.len());
        let mut y_rest = &mut y[..];
        for (i, (ex, g)) in active.iter().enumerate() {
            let k = g.len();
            let (yi, yr) = std::mem::take(&mut y_rest).split_at_mut(k * e);
            y_rest = yr;
            jobs.push(ExpertJob(&m.down, *ex, &gate[at[i] * f..][..k * f], k, yi));
        }
        run_experts(model, pool, jobs)?;
    }
    // The weighted sum, expert by expert in ascending order.
    out.fill(0.0);
    for (i, (_, g)) in active.iter().enumerate() {
        for (j, &(t, w)) in g.iter().enumerate() {
            axpy(w, &y[(at[i] + j) * e..][..e], &mut out[t * e..][..e]);
        }
    }

    if let Some(s) = &m.shared {
        let mut so = vec![0f32; n * e]; // (n, n_embd)
        model.dense_ffn(pool, s, xb, n, &mut so)?;
        out.iter_mut().zip(&so).for_each(|(a, b)| *a += b);
    }
    Ok(())
}

/// One expert's product: `y (n_tokens, rows) = x (n_tokens, cols)` times expert `.1` of the stack.
struct ExpertJob<'a>(&'a MatrixStack, usize, &'a [f32], usize, &'a mut [f32]);

/// Experts' products in one pass over the pool: packed experts through the packed kernels, the others (formats
/// without a packed form, or packing off) through the per-token ones; a file can mix formats across its stacks.
fn run_experts(
    model: &Model,
    pool: &ThreadPool,
    jobs: Vec<ExpertJob<'_>>,
) -> Result<(), EngineError> {
    let bytes = model.gguf.bytes();
    let (mut packed, mut plain) = (Vec::new(), Vec::new());
    for ExpertJob(s, ex, x, n_tokens, y) in jobs {
        match s.packed.get(ex) {
            Some(w) => packed.push(PackedJob { w, x, n_tokens, y }),
            None => plain.push(MatmulJob {
                w: s.view(bytes, ex),
                x,
                n_tokens,
                y,
            }),
        }
    }
    if !packed.is_empty() {
        matmul_packed_many(pool, &mut packed)?;
    }
    if !plain.is_empty() {
        matmul_many(pool, &mut plain)?;
    }
    Ok(())
}

/// One token's experts and their weights from its router logits `(n_expert)`.
///
/// Probabilities are the softmax or sigmoid of the logits; experts are chosen by probability plus `bias` (DeepSeek-V3's
/// `e_score_correction`), within the best `n_group_used` groups when grouped (a group scores the sum of its two best
/// experts with sigmoid gating as DeepSeek-V3 does, its best expert with softmax as DeepSeek-V2 does); the weights are
/// the chosen probabilities, normalised to sum 1 if asked, times `weights_scale`.
pub(crate) fn route(mc: &MoeConfig, logits: &[f32], bias: Option<&[f32]>) -> Vec<(usize, f32)> {
    let mut probs = logits.to_vec();
    match mc.gating {
        Gating::Softmax => softmax(&mut probs),
        Gating::Sigmoid => probs
            .iter_mut()
            .for_each(|p| *p = 1.0 / (1.0 + (-*p).exp())),
    }
    let mut choice = probs.clone();
    if let Some(b) = bias {
        choice.iter_mut().zip(b).for_each(|(c, b)| *c += b);
    }
    if mc.n_group > 1 && mc.n_group_used < mc.n_group {
        let per = mc.n_expert / mc.n_group;
        let score = |g: &[f32]| -> f32 {
            let mut s = g.to_vec();
            s.sort_by(|a, b| b.total_cmp(a));
            match mc.gating {
                Gating::Sigmoid => s.iter().take(2).sum(),
                Gating::Softmax => s[0],
            }
        };
        let scores: Vec<f32> = choice.chunks_exact(per).map(score).collect();
        let kept = top_k(&scores, mc.n_group_used);
        for (g, grp) in choice.chunks_exact_mut(per).enumerate() {
            if !kept.contains(&g) {
                grp.fill(f32::NEG_INFINITY);
            }
        }
    }
    let chosen = top_k(&choice, mc.n_expert_used);
    let mut out: Vec<(usize, f32)> = chosen.iter().map(|&i| (i, probs[i])).collect();
    if mc.norm_weights {
        let sum: f32 = out.iter().map(|p| p.1).sum();
        if sum > 0.0 {
            out.iter_mut().for_each(|p| p.1 /= sum);
        }
    }
    out.iter_mut().for_each(|p| p.1 *= mc.weights_scale);
    out
}

/// Indices of the `k` largest values, largest first (the lower index wins a tie).
fn top_k(v: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[b].total_cmp(&v[a]).then(a.cmp(&b)));
    idx.truncate(k);
    idx
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(gating: Gating, norm: bool, n_group: usize, n_group_used: usize) -> MoeConfig {
        MoeConfig {
            n_expert: 8,
            n_expert_used: 2,
            n_ff_exp: 4,
            n_shared: 0,
            gating,
            norm_weights: norm,
            weights_scale: 2.5,
            n_group,
            n_group_used,
        }
    }

    #[test]
    fn softmax_top_k_normalised() {
        let logits = [0.1, 2.0, -1.0, 1.5, 0.0, 0.3, -0.2, 0.9];
        let r = route(&cfg(Gating::Softmax, true, 1, 1), &logits, None);
        assert_eq!(r.iter().map(|p| p.0).collect::<Vec<_>>(), [1, 3]);
        // Normalised softmax over the two chosen = softmax of their logits, then scaled.
        let w1 = 1.0 / (1.0 + (1.5f32 - 2.0).exp());
        assert!((r[0].1 - 2.5 * w1).abs() < 1e-6 && (r[1].1 - 2.5 * (1.0 - w1)).abs() < 1e-6);
    }

    #[test]
    fn sigmoid_bias_chooses_but_does_not_weigh() {
        let logits = [0.0; 8];
        let mut bias = [0.0; 8];
        bias[5] = 1.0;
        bias[6] = 0.5;
        let r = route(&cfg(Gating::Sigmoid, false, 1, 1), &logits, Some(&bias));
        assert_eq!(r, vec![(5, 2.5 * 0.5), (6, 2.5 * 0.5)]);
    }

    #[test]
    fn grouped_routing_keeps_best_groups() {
        // 4 groups of 2; group 0 has the single best expert, group 3 the best pair sum.
        let logits = [3.0, -3.0, 0.0, 0.0, 0.0, 0.0, 1.5, 1.5];
        let r = route(&cfg(Gating::Sigmoid, true, 4, 1), &logits, None);
        let mut ids: Vec<usize> = r.iter().map(|p| p.0).collect();
        ids.sort();
        assert_eq!(ids, [6, 7]);
        // With max scoring (softmax), group 0 wins.
        let r = route(&cfg(Gating::Softmax, true, 4, 1), &logits, None);
        let mut ids: Vec<usize> = r.iter().map(|p| p.0).collect();
        ids.sort();
        assert_eq!(ids, [0, 1]);
    }
}
