//! Multi-head latent attention (DeepSeek-V2/V3) in its absorbed form: the cache holds one compressed row per
//! position, the normalised KV latent (kv_lora_rank) ++ the shared roped key part (n_rot); queries are taken into
//! latent space through `attn_k_b`, attention runs as a single shared KV head over those rows, and each head's
//! latent output goes back to value space through `attn_v_b`.
//!
//! Per head h, with latent c and decoupled RoPE parts q_r, k_r:
//! `q·k = q_nope[h]·(W_kb[h] c) + q_r[h]·k_r = (W_kbᵀ[h] q_nope[h])·c + q_r[h]·k_r` and
//! `out[h] = Σ p · (W_vb[h] c) = W_vb[h] (Σ p · c)`, so neither keys nor values are ever decompressed.

use crate::config::LayerConfig;
use crate::model::{attend_batch, Model, SeqBatch, Tokens};
use crate::weights::{MlaQuery, MlaWeights};
use crate::EngineError;
use hearth_kernels::ops::rms_norm_inplace;
use hearth_kernels::{matmul, ThreadPool};

/// Latent attention of the batch's tokens `xb` (n, n_embd) into `out` (n, n_embd); appends each token's
/// compressed row to its sequence's cache.
#[allow(clippy::too_many_arguments)]
pub(crate) fn attention(
    model: &Model,
    pool: &ThreadPool,
    a: &MlaWeights,
    lc: &LayerConfig,
    il: usize,
    batch: &mut [SeqBatch<'_>],
    tok: &Tokens<'_>,
    xb: &[f32],
    out: &mut [f32],
) -> Result<(), EngineError> {
    let c = &model.config;
    let m = c.mla.ok_or_else(|| {
        EngineError::BadConfig("MLA tensors without attention.kv_lora_rank".into())
    })?;
    let n = tok.len();
    let (nh, r, nope, rot, hv) = (c.n_head, m.kv_lora_rank, m.n_nope, m.n_rot, m.head_dim_v);
    let (qk, row) = (nope + rot, r + rot);
    let bytes = model.gguf.bytes();

    // Queries (n, n_head * (n_nope + n_rot)), each head [nope | rope].
    let mut q = vec![0f32; n * nh * qk];
    match &a.q {
        MlaQuery::Direct(w) => model.mm(pool, w, xb, n, &mut q)?,
        MlaQuery::LowRank { a: wa, a_norm, b } => {
            let mut ql = vec![0f32; n * wa.rows]; // (n, q_lora_rank)
            model.mm(pool, wa, xb, n, &mut ql)?;
            ql.chunks_exact_mut(wa.rows)
                .for_each(|x| rms_norm_inplace(x, a_norm, c.rms_eps));
            model.mm(pool, b, &ql, n, &mut q)?;
        }
    }

    // Compressed rows (n, kv_lora_rank + n_rot): normalised latent ++ roped key part, exactly as cached.
    let mut kv = vec![0f32; n * row];
    model.mm(pool, &a.kv_a, xb, n, &mut kv)?;
    for t in 0..n {
        let pos = tok.pos_of[t];
        let kr = &mut kv[t * row..][..row];
        rms_norm_inplace(&mut kr[..r], &a.kv_a_norm, c.rms_eps);
        lc.rope.apply(&mut kr[r..], rot, pos);
        for h in 0..nh {
            lc.rope
                .apply(&mut q[(t * nh + h) * qk + nope..][..rot], rot, pos);
        }
    }

    // Absorbed queries (n, n_head, kv_lora_rank + n_rot): (W_kbᵀ[h] q_nope[h]) ++ q_rope[h].
    let mut qa = vec![0f32; n * nh * row];
    let mut qn = vec![0f32; n * nope]; // (n, n_nope) one head's q_nope
    let mut ql = vec![0f32; n * r]; // (n, kv_lora_rank)
    for h in 0..nh {
        for t in 0..n {
            qn[t * nope..][..nope].copy_from_slice(&q[(t * nh + h) * qk..][..nope]);
        }
        matmul(pool, &a.k_b.view(bytes, h), &qn, n, &mut ql)?;
        for t in 0..n {
            let dst = &mut qa[(t * nh + h) * row..][..row];
            dst[..r].copy_from_slice(&ql[t * r..][..r]);
            dst[r..].copy_from_slice(&q[(t * nh + h) * qk + nope..][..rot]);
        }
    }

    // Cache: one compressed row per position; the values are its first kv_lora_rank elements.
    let mut t0 = 0;
    for b in batch.iter_mut() {
        let t1 = t0 + b.tokens.len();
        b.cache.append(il, &kv[t0 * row..t1 * row], &[])?;
        t0 = t1;
    }
    let shape = crate::attention::AttnShape {
        n_head: nh,
        n_head_kv: 1,
        head_dim: row,
        head_dim_v: r,
        scale: c.attn_scale,
        window: None,
        causal: true,
    };
    let mut att_l = vec![0f32; n * nh * r]; // (n, n_head, kv_lora_rank)
    attend_batch(pool, &shape, il, batch, tok, &qa, &mut att_l)?;

    // Back to value space per head: (n, n_head * head_dim_v).
    let mut att = vec![0f32; n * nh * hv];
    let mut av = vec![0f32; n * hv]; // (n, head_dim_v)
    for h in 0..nh {
        for t in 0..n {
            ql[t * r..][..r].copy_from_slice(&att_l[(t * nh + h) * r..][..r]);
        }
        matmul(pool, &a.v_b.view(bytes, h), &ql, n, &mut av)?;
        for t in 0..n {
            att[(t * nh + h) * hv..][..hv].copy_from_slice(&av[t * hv..][..hv]);
        }
    }
    model.mm(pool, &a.wo, &att, n, out)
}
