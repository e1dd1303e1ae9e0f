//! The model: configuration + weights over the mapped GGUF, and the one configuration-driven forward pass.

use crate::attention::{attention, AttnShape, SeqAttn};
use crate::config::{LayerConfig, NormKind, Pooling};
use crate::kv_cache::{KvLayout, KvType};
use crate::weights::{Attention, DenseFfn, Ffn, GqaWeights, Matrix, Norm, Weights};
use crate::{EngineError, KvCache, ModelConfig};
use hearth_gguf::Gguf;
use hearth_kernels::ops::{layer_norm, layer_norm_inplace, rms_norm, rms_norm_inplace};
use hearth_kernels::{matmul, matmul_packed, Isa, ThreadPool};
use std::path::Path;

/// One sequence's share of a forward pass: `tokens` are appended at the cache's next positions; logits are
/// returned for tokens `logits_from..` (use `tokens.len() - 1` for the last only, `tokens.len()` for none).
pub struct SeqBatch<'a> {
    pub cache: &'a mut KvCache,
    pub tokens: &'a [u32],
    pub logits_from: usize,
}

/// What [`Model::forward_pooled`] returns.
#[derive(Debug, Default)]
pub struct ForwardOut {
    /// The requested logits, (n_out, n_vocab) in batch order.
    pub logits: Vec<f32>,
    /// One L2-normalised embedding (n_embd) per batch entry that asked for one, in batch order.
    pub pooled: Vec<Vec<f32>>,
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
        for t in (0..n).filter(|_| c.spec.rope) {
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
            causal: c.causal,
        };
        let mut att = vec![0f32; n * c.n_head * hdv]; // (n, n_head * head_dim_v)
        attend_batch(pool, &shape, il, batch, tok, &q, &mut att)?;
        self.mm(pool, &lw.wo, &att, n, out)?;
        add_bias(out, lw.bo.as_deref());
        Ok(())
    }

    /// The feed-forward: gated, `out (n, n_embd) = down(act(gate xb) * up xb)`, or without a gate (BERT)
    /// `down(act(up xb + up_b)) + down_b`.
    pub(crate) fn dense_ffn(
        &self,
        pool: &ThreadPool,
        f: &DenseFfn,
        xb: &[f32],
        n: usize,
        out: &mut [f32],
    ) -> Result<(), EngineError> {
        let act = self.config.spec.activation;
        let mut up = vec![0f32; n * f.up.rows]; // (n, n_ff)
        self.mm(pool, &f.up, xb, n, &mut up)?;
        add_bias(&mut up, f.up_b.as_deref());
        let hidden = match &f.gate {
            Some(g) => {
                let mut gate = vec![0f32; n * g.rows]; // (n, n_ff)
                self.mm(pool, g, xb, n, &mut gate)?;
                match act.gated() {
                    Some(ga) => hearth_kernels::ops::gated(&mut gate, &up, ga),
                    None => gate
                        .iter_mut()
                        .zip(&up)
                        .for_each(|(g, u)| *g = act.scalar()(*g) * u),
                }
                gate
            }
            None => {
                up.iter_mut().for_each(|v| *v = act.scalar()(*v));
                up
            }
        };
        self.mm(pool, &f.down, &hidden, n, out)?;
        add_bias(out, f.down_b.as_deref());
        Ok(())
    }

    /// Normalises each row of `x` (rows of n_embd) into `out` with the model's kind of norm.
    fn norm_rows(&self, x: &[f32], n: &Norm, out: &mut [f32]) {
        let (e, eps) = (self.config.n_embd, self.config.rms_eps);
        for (xr, or) in x.chunks_exact(e).zip(out.chunks_exact_mut(e)) {
            match self.config.spec.norm {
                NormKind::Rms => rms_norm(xr, &n.w, eps, or),
                NormKind::Layer => layer_norm(xr, &n.w, n.b.as_deref(), eps, or),
            }
        }
    }

    /// [`Model::norm_rows`] in place.
    fn norm_rows_inplace(&self, x: &mut [f32], n: &Norm) {
        let (e, eps) = (self.config.n_embd, self.config.rms_eps);
        for r in x.chunks_exact_mut(e) {
            match self.config.spec.norm {
                NormKind::Rms => rms_norm_inplace(r, &n.w, eps),
                NormKind::Layer => layer_norm_inplace(r, &n.w, n.b.as_deref(), eps),
            }
        }
    }

    /// Runs every sequence's new tokens through the model. Returns the requested logits, (n_out, n_vocab), in batch
    /// order. On error no cache has changed.
    pub fn forward(
        &self,
        pool: &ThreadPool,
        batch: &mut [SeqBatch<'_>],
    ) -> Result<Vec<f32>, EngineError> {
        Ok(self.forward_pooled(pool, batch, &[])?.logits)
    }

    /// [`Model::forward`], and for each batch entry `i` with `pooled[i]` (missing entries: false) its embedding:
    /// the final hidden states (after `output_norm` where the model has one) of its tokens pooled as
    /// [`ModelConfig::pooling`](crate::ModelConfig) says, then L2-normalised. A pooled entry must hold its whole
    /// sequence (its cache starts empty).
    pub fn forward_pooled(
        &self,
        pool: &ThreadPool,
        batch: &mut [SeqBatch<'_>],
        pooled: &[bool],
    ) -> Result<ForwardOut, EngineError> {
        let result = self.forward_inner(pool, batch, pooled);
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
        pooled: &[bool],
    ) -> Result<ForwardOut, EngineError> {
        let c = &self.config;
        let e = c.n_embd;
        let is_pooled = |i: usize| pooled.get(i).copied().unwrap_or(false);
        for (i, b) in batch.iter().enumerate() {
            if !b.cache.is_empty() && !b.tokens.is_empty() {
                if !c.causal {
                    return Err(EngineError::NotWhole("this model attends both ways"));
                }
                if is_pooled(i) {
                    return Err(EngineError::NotWhole("an embedding"));
                }
            }
            if b.logits_from < b.tokens.len() && self.weights.output.is_none() {
                return Err(EngineError::EmbeddingOnly);
            }
        }

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
            return Ok(ForwardOut::default());
        }

        // Embeddings: x (n, n_embd). A token embedding that is also the logits matrix is read from its packed copy
        // (the same bits): packing released the file's pages of it, and each row read from the file would bring
        // back the pages around it (64 KiB per fault), megabytes of resident memory over a long prompt.
        let mut x = vec![0f32; n * e];
        let embd = self.weights.token_embd.view(self.gguf.bytes());
        let tied = (self.weights.output.as_ref())
            .filter(|o| o.name == self.weights.token_embd.name)
            .and_then(|o| o.packed.as_deref());
        let row_bytes = embd.data.len() / embd.rows;
        let ids: Vec<u32> = batch
            .iter()
            .flat_map(|b| b.tokens.iter().copied())
            .collect();
        for (t, &id) in ids.iter().enumerate() {
            let xt = &mut x[t * e..][..e];
            match tied {
                Some(packed) => packed.dequantize_row(id as usize, xt)?,
                None => {
                    let row = &embd.data[id as usize * row_bytes..][..row_bytes];
                    hearth_kernels::dequantize_row(embd.dtype, row, xt)?;
                }
            }
        }
        if c.spec.scale_embeddings {
            let s = (e as f32).sqrt();
            x.iter_mut().for_each(|v| *v *= s);
        }
        // Learned absolute positions and the token type (all tokens are of type 0) (BERT).
        let mut row = vec![0f32; e];
        if let Some(p) = &self.weights.position_embd {
            let v = p.view(self.gguf.bytes());
            let rb = v.data.len() / v.rows;
            for (t, &pos) in pos_of.iter().enumerate() {
                if pos >= v.rows {
                    return Err(EngineError::ContextFull {
                        needed: pos + 1,
                        n_ctx: v.rows,
                    });
                }
                hearth_kernels::dequantize_row(v.dtype, &v.data[pos * rb..][..rb], &mut row)?;
                x[t * e..][..e]
                    .iter_mut()
                    .zip(&row)
                    .for_each(|(a, b)| *a += b);
            }
        }
        if let Some(tt) = &self.weights.token_types {
            let v = tt.view(self.gguf.bytes());
            hearth_kernels::dequantize_row(v.dtype, &v.data[..v.data.len() / v.rows], &mut row)?;
            add_bias(&mut x, Some(&row));
        }
        if let Some(nw) = &self.weights.token_embd_norm {
            self.norm_rows_inplace(&mut x, nw);
        }

        let tok = Tokens {
            pos_of: &pos_of,
            isa,
        };
        let mut xb = vec![0f32; n * e]; // (n, n_embd) normalised input of a sub-block
        let mut o = vec![0f32; n * e]; // (n, n_embd) sub-block output

        for (il, (lw, lc)) in self.weights.layers.iter().zip(&c.layers).enumerate() {
            // Attention: pre-norm, or (BERT) the stream itself and a norm after the residual add.
            match &lw.attn_norm {
                Some(nw) => self.norm_rows(&x, nw, &mut xb),
                None => xb.copy_from_slice(&x),
            }
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
            if let Some(nw) = &lw.attn_out_norm {
                self.norm_rows_inplace(&mut x, nw);
            }

            // Feed-forward.
            match &lw.ffn_norm {
                Some(nw) => self.norm_rows(&x, nw, &mut xb),
                None => xb.copy_from_slice(&x),
            }
            match &lw.ffn {
                Ffn::Dense(f) => self.dense_ffn(pool, f, &xb, n, &mut o)?,
                Ffn::Moe(m) => crate::moe::forward(self, pool, m, &xb, n, &mut o)?,
            }
            if let Some(w) = &lw.post_ffn_norm {
                o.chunks_exact_mut(e)
                    .for_each(|r| rms_norm_inplace(r, w, c.rms_eps));
            }
            x.iter_mut().zip(&o).for_each(|(a, b)| *a += b);
            if let Some(nw) = &lw.layer_out_norm {
                self.norm_rows_inplace(&mut x, nw);
            }
        }

        // Embeddings of the pooled entries, from the final hidden states (after the output norm, if any).
        let mut embeddings = Vec::new();
        let mut t0 = 0;
        for (i, b) in batch.iter().enumerate() {
            let len = b.tokens.len();
            if is_pooled(i) && len > 0 {
                embeddings.push(self.pool_rows(&x[t0 * e..(t0 + len) * e])?);
            }
            t0 += len;
        }
        // Logits for the requested tokens: (n_out, n_vocab).
        let mut t0 = 0;
        let mut rows = Vec::new();
        for b in batch.iter() {
            rows.extend(t0 + b.logits_from.min(b.tokens.len())..t0 + b.tokens.len());
            t0 += b.tokens.len();
        }
        let mut xo = vec![0f32; rows.len() * e];
        if let (false, Some(on)) = (rows.is_empty(), &self.weights.output_norm) {
            for (j, &t) in rows.iter().enumerate() {
                rms_norm(&x[t * e..][..e], on, c.rms_eps, &mut xo[j * e..][..e]);
            }
        }
        // NaN or infinite weights (or an overflow) poison every later step: stop with an error instead of sampling
        // garbage. The final hidden state is checked too, since quantizing activations for the output matrix turns
        // NaN into zeros (uniform, finite logits). A pass over n_embd + n_vocab floats per output row.
        check_finite("hidden state", &xo)?;
        let mut logits = vec![0f32; rows.len() * c.n_vocab];
        if let (false, Some(out)) = (rows.is_empty(), &self.weights.output) {
            self.mm(pool, out, &xo, rows.len(), &mut logits)?;
        }
        if let Some(cap) = c.final_logit_softcap {
            logits.iter_mut().for_each(|l| *l = (*l / cap).tanh() * cap);
        }
        check_finite("logit", &logits)?;
        // Only now that nothing can fail do the caches take the new positions (on error none has changed).
        for b in batch.iter_mut() {
            b.cache.advance(b.tokens.len());
        }
        Ok(ForwardOut {
            logits,
            pooled: embeddings,
        })
    }

    /// One sequence's final hidden states `h` (len, n_embd) → its L2-normalised embedding (n_embd): the output
    /// norm where the model has one (a generative model's final norm, as llama.cpp takes its embeddings), then the
    /// model's pooling, summed in f64 in token order (the same bits in any batch).
    fn pool_rows(&self, h: &[f32]) -> Result<Vec<f32>, EngineError> {
        let c = &self.config;
        let e = c.n_embd;
        let len = h.len() / e;
        let picked: Vec<usize> = match c.pooling {
            Pooling::Mean => (0..len).collect(),
            Pooling::Cls => vec![0],
            Pooling::Last => vec![len - 1],
        };
        let mut sum = vec![0f64; e];
        let mut row = vec![0f32; e];
        for t in &picked {
            let r = &h[t * e..][..e];
            let r = match &self.weights.output_norm {
                Some(on) => {
                    rms_norm(r, on, c.rms_eps, &mut row);
                    &row[..]
                }
                None => r,
            };
            sum.iter_mut().zip(r).for_each(|(s, &v)| *s += v as f64);
        }
        let norm = sum.iter().map(|v| v * v).sum::<f64>().sqrt();
        let v: Vec<f32> = sum
            .iter()
            .map(|s| if norm > 0.0 { (s / norm) as f32 } else { 0.0 })
            .collect();
        check_finite("embedding", &v)?;
        Ok(v)
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

fn add_bias(y: &mut [f32], bias: Option<&[f32]>) {
    if let Some(b) = bias {
        for row in y.chunks_exact_mut(b.len()) {
            row.iter_mut().zip(b).for_each(|(a, b)| *a += b);
        }
    }
}
