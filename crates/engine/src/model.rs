//! The model: configuration + weights over the mapped GGUF, and the one configuration-driven forward pass.

use crate::attention::{attention, AttnShape, SeqAttn};
use crate::config::LayerConfig;
use crate::kv_cache::{KvLayout, KvType};
use crate::weights::{Attention, DenseFfn, Ffn, GqaWeights, Matrix, Weights};
use crate::{EngineError, KvCache, ModelConfig};
use hearth_gguf::Gguf;
use hearth_kernels::ops::{rms_norm, rms_norm_inplace};
use hearth_kernels::{matmul, matmul_packed, Isa, ThreadPool};
use std::path::Path;

/// One sequence's share of a forward pass: `tokens` are appended at the cache's next positions; logits are
/// returned for tokens `logits_from..` (use `tokens.len() - 1` for the last only, `tokens.len()` for none).
pub struct SeqBatch<'a> {
    pub cache: &'a mut KvCache,
    pub tokens: &'a [u32],
    pub logits_from: usize,
}

/// A loaded model. Matrices are read from the file mapping; nothing is copied but norms.
pub struct Model {
    pub config: ModelConfig,
    pub weights: Weights,
    pub gguf: Gguf,
}

impl Model {
    /// Opens, validates and maps a GGUF model.
    pub fn load(path: impl AsRef<Path>) -> Result<Model, EngineError> {
        Self::from_gguf(Gguf::open(path)?)
    }

    pub fn from_gguf(gguf: Gguf) -> Result<Model, EngineError> {
        let config = ModelConfig::from_gguf(&gguf)?;
        let weights = Weights::load(&gguf, &config)?;
        Ok(Model {
            config,
            weights,
            gguf,
        })
    }

    /// A fresh f16 KV cache for one sequence of at most `n_ctx` positions.
    pub fn new_cache(&self, n_ctx: usize) -> KvCache {
        // f16 has blocks of one element, so every head size fits.
        KvCache::new(self.kv_layout(KvType::F16), self.config.n_layer, n_ctx)
    }

    /// A fresh KV cache of `kv_type` elements; refused when the type's blocks do not fit the model's heads.
    pub fn new_cache_typed(&self, n_ctx: usize, kv_type: KvType) -> Result<KvCache, EngineError> {
        let layout = self.kv_layout(kv_type);
        layout.check()?;
        Ok(KvCache::new(layout, self.config.n_layer, n_ctx))
    }

    fn kv_layout(&self, kv_type: KvType) -> KvLayout {
        KvLayout::for_model(&self.config, kv_type)
    }

    /// `y (n, w.rows) = x (n, w.cols) · wᵀ`.
    pub(crate) fn mm(
        &self,
        pool: &ThreadPool,
        w: &Matrix,
        x: &[f32],
        n: usize,
        y: &mut [f32],
    ) -> Result<(), EngineError> {
        match &w.packed {
            Some(p) => Ok(matmul_packed(pool, p, x, n, y)?),
            None => Ok(matmul(pool, &w.view(self.gguf.bytes()), x, n, y)?),
        }
    }

    /// Grouped-query attention of the batch's tokens `xb` (n, n_embd) into `out` (n, n_embd); appends the new keys
    /// and values to each sequence's cache.
    #[allow(clippy::too_many_arguments)]
    fn gqa(
        &self,
        pool: &ThreadPool,
        lw: &GqaWeights,
        lc: &LayerConfig,
        il: usize,
        batch: &mut [SeqBatch<'_>],
        tok: &Tokens<'_>,
        xb: &[f32],
        out: &mut [f32],
    ) -> Result<(), EngineError> {
        let c = &self.config;
        let n = tok.len();
        let (hd, hdv) = (c.head_dim, c.head_dim_v);
        let (q_dim, kv_dim, v_dim) = (c.n_head * hd, c.n_head_kv * hd, c.n_head_kv * hdv);
        let mut q = vec![0f32; n * q_dim]; // (n, n_head * head_dim)
        let mut k = vec![0f32; n * kv_dim]; // (n, n_head_kv * head_dim)
        let mut v = vec![0f32; n * v_dim]; // (n, n_head_kv * head_dim_v)
        self.mm(pool, &lw.wq, xb, n, &mut q)?;
        self.mm(pool, &lw.wk, xb, n, &mut k)?;
        self.mm(pool, &lw.wv, xb, n, &mut v)?;
        add_bias(&mut q, lw.bq.as_deref());
        add_bias(&mut k, lw.bk.as_deref());
        add_bias(&mut v, lw.bv.as_deref());
        if let Some(w) = &lw.q_norm {
            q.chunks_exact_mut(hd)
                .for_each(|h| rms_norm_inplace(h, w, c.rms_eps));
        }
        if let Some(w) = &lw.k_norm {
            k.chunks_exact_mut(hd)
                .for_each(|h| rms_norm_inplace(h, w, c.rms_eps));
        }
        for t in 0..n {
            lc.rope
                .apply(&mut q[t * q_dim..][..q_dim], hd, tok.pos_of[t]);
            lc.rope
                .apply(&mut k[t * kv_dim..][..kv_dim], hd, tok.pos_of[t]);
        }
        let mut t0 = 0;
        for b in batch.iter_mut() {
            let t1 = t0 + b.tokens.len();
            b.cache
                .append(il, &k[t0 * kv_dim..t1 * kv_dim], &v[t0 * v_dim..t1 * v_dim])?;
            t0 = t1;
        }
        let shape = AttnShape {
            n_head: c.n_head,
            n_head_kv: c.n_head_kv,
            head_dim: hd,
            head_dim_v: hdv,
            scale: c.attn_scale,
            window: lc.sliding_window,
        };
        let mut att = vec![0f32; n * c.n_head * hdv]; // (n, n_head * head_dim_v)
        attend_batch(pool, &shape, il, batch, tok, &q, &mut att)?;
        self.mm(pool, &lw.wo, &att, n, out)
    }

    /// The gated feed-forward: `out (n, n_embd) = down(act(gate xb) * up xb)`.
    pub(crate) fn dense_ffn(
        &self,
        pool: &ThreadPool,
        f: &DenseFfn,
        xb: &[f32],
        n: usize,
        out: &mut [f32],
    ) -> Result<(), EngineError> {
        let mut gate = vec![0f32; n * f.gate.rows]; // (n, n_ff)
        let mut up = vec![0f32; n * f.up.rows]; // (n, n_ff)
        self.mm(pool, &f.gate, xb, n, &mut gate)?;
        self.mm(pool, &f.up, xb, n, &mut up)?;
        hearth_kernels::ops::gated(&mut gate, &up, self.config.spec.activation.gated());
        self.mm(pool, &f.down, &gate, n, out)
    }

    /// Runs every sequence's new tokens through the model. Returns the requested logits, (n_out, n_vocab), in batch
    /// order. On error no cache has changed.
    pub fn forward(
        &self,
        pool: &ThreadPool,
        batch: &mut [SeqBatch<'_>],
    ) -> Result<Vec<f32>, EngineError> {
        let result = self.forward_inner(pool, batch);
        if result.is_err() {
            for b in batch.iter_mut() {
                let len = b.cache.len();
                b.cache.truncate(len);
            }
        }
        result
    }

    fn forward_inner(
        &self,
        pool: &ThreadPool,
        batch: &mut [SeqBatch<'_>],
    ) -> Result<Vec<f32>, EngineError> {
        let c = &self.config;
        let e = c.n_embd;

        let isa = hearth_kernels::selected_isa().map_err(hearth_kernels::MatmulError::from)?;
        // Which position each token of the flattened batch belongs to.
        let mut pos_of = Vec::new(); // (n)
        for b in batch.iter() {
            b.cache.reserve(b.tokens.len())?;
            for (i, &id) in b.tokens.iter().enumerate() {
                if id as usize >= c.n_vocab {
                    return Err(EngineError::BadToken {
                        id,
                        n_vocab: c.n_vocab,
                    });
                }
                pos_of.push(b.cache.len() + i);
            }
        }
        let n = pos_of.len();
        if n == 0 {
            return Ok(Vec::new());
        }

        // Embeddings: x (n, n_embd).
        let mut x = vec![0f32; n * e];
        let embd = self.weights.token_embd.view(self.gguf.bytes());
        let row_bytes = embd.data.len() / embd.rows;
        let ids: Vec<u32> = batch
            .iter()
            .flat_map(|b| b.tokens.iter().copied())
            .collect();
        for (t, &id) in ids.iter().enumerate() {
            let row = &embd.data[id as usize * row_bytes..][..row_bytes];
            hearth_kernels::dequantize_row(embd.dtype, row, &mut x[t * e..][..e])?;
        }
        if c.spec.scale_embeddings {
            let s = (e as f32).sqrt();
            x.iter_mut().for_each(|v| *v *= s);
        }

        let tok = Tokens {
            pos_of: &pos_of,
            isa,
        };
        let mut xb = vec![0f32; n * e]; // (n, n_embd) normalised input of a sub-block
        let mut o = vec![0f32; n * e]; // (n, n_embd) sub-block output

        for (il, (lw, lc)) in self.weights.layers.iter().zip(&c.layers).enumerate() {
            // Attention.
            norm_rows(&x, &lw.attn_norm, c.rms_eps, &mut xb, e);
            match &lw.attn {
                Attention::Gqa(a) => self.gqa(pool, a, lc, il, batch, &tok, &xb, &mut o)?,
                Attention::Mla(a) => {
                    crate::mla::attention(self, pool, a, lc, il, batch, &tok, &xb, &mut o)?
                }
            }
            if let Some(w) = &lw.post_attn_norm {
                o.chunks_exact_mut(e)
                    .for_each(|r| rms_norm_inplace(r, w, c.rms_eps));
            }
            x.iter_mut().zip(&o).for_each(|(a, b)| *a += b);

            // Feed-forward.
            norm_rows(&x, &lw.ffn_norm, c.rms_eps, &mut xb, e);
            match &lw.ffn {
                Ffn::Dense(f) => self.dense_ffn(pool, f, &xb, n, &mut o)?,
                Ffn::Moe(m) => crate::moe::forward(self, pool, m, &xb, n, &mut o)?,
            }
            if let Some(w) = &lw.post_ffn_norm {
                o.chunks_exact_mut(e)
                    .for_each(|r| rms_norm_inplace(r, w, c.rms_eps));
            }
            x.iter_mut().zip(&o).for_each(|(a, b)| *a += b);
        }

        // Logits for the requested tokens: (n_out, n_vocab).
        let mut t0 = 0;
        let mut rows = Vec::new();
        for b in batch.iter() {
            rows.extend(t0 + b.logits_from.min(b.tokens.len())..t0 + b.tokens.len());
            t0 += b.tokens.len();
        }
        let mut xo = vec![0f32; rows.len() * e];
        for (j, &t) in rows.iter().enumerate() {
            rms_norm(
                &x[t * e..][..e],
                &self.weights.output_norm,
                c.rms_eps,
                &mut xo[j * e..][..e],
            );
        }
        // NaN or infinite weights (or an overflow) poison every later step: stop with an error instead of sampling
        // garbage. The final hidden state is checked too, since quantizing activations for the output matrix turns
        // NaN into zeros (uniform, finite logits). A pass over n_embd + n_vocab floats per output row.
        check_finite("hidden state", &xo)?;
        let mut logits = vec![0f32; rows.len() * c.n_vocab];
        if !rows.is_empty() {
            self.mm(pool, &self.weights.output, &xo, rows.len(), &mut logits)?;
        }
        if let Some(cap) = c.final_logit_softcap {
            logits.iter_mut().for_each(|l| *l = (*l / cap).tanh() * cap);
        }
        check_finite("logit", &logits)?;
        // Only now that nothing can fail do the caches take the new positions (on error none has changed).
        for b in batch.iter_mut() {
            b.cache.advance(b.tokens.len());
        }
        Ok(logits)
    }
}

/// Where each token of the flattened batch sits, and the kernels' ISA for this call.
pub(crate) struct Tokens<'a> {
    pub pos_of: &'a [usize], // (n)
    pub isa: Isa,
}

impl Tokens<'_> {
    pub fn len(&self) -> usize {
        self.pos_of.len()
    }
}

/// Attention of every token's query heads over its sequence's layer-`il` cache (whose new rows are appended
/// already): `q` (n, n_head * head_dim) → `att` (n, n_head * head_dim_v).
pub(crate) fn attend_batch(
    pool: &ThreadPool,
    shape: &AttnShape,
    il: usize,
    batch: &[SeqBatch<'_>],
    tok: &Tokens<'_>,
    q: &[f32],
    att: &mut [f32],
) -> Result<(), EngineError> {
    let mut row0 = 0;
    let seqs: Vec<SeqAttn> = batch
        .iter()
        .map(|b| {
            let sq = SeqAttn {
                kv: &b.cache.layers[il],
                layout: &b.cache.layout,
                pos0: b.cache.len(),
                row0,
                n: b.tokens.len(),
            };
            row0 += b.tokens.len();
            sq
        })
        .collect();
    attention(pool, tok.isa, shape, &seqs, q, att)
}

/// Refuses NaN and infinities in a model output.
fn check_finite(what: &'static str, x: &[f32]) -> Result<(), EngineError> {
    match x.iter().find(|v| !v.is_finite()) {
        Some(&value) => Err(EngineError::NonFinite { what, value }),
        None => Ok(()),
    }
}

/// RMS-normalises each row of `x` (rows of `e`) into `out`.
fn norm_rows(x: &[f32], w: &[f32], eps: f32, out: &mut [f32], e: usize) {
    for (xr, or) in x.chunks_exact(e).zip(out.chunks_exact_mut(e)) {
        rms_norm(xr, w, eps, or);
    }
}

fn add_bias(y: &mut [f32], bias: Option<&[f32]>) {
    if let Some(b) = bias {
        for row in y.chunks_exact_mut(b.len()) {
            row.iter_mut().zip(b).for_each(|(a, b)| *a += b);
        }
    }
}
