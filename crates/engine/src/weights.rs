//! The model's tensors: matrices stay in the GGUF mapping (zero-copy), small vectors (norms, biases) become f32.
//!
//! Optional tensors switch behaviour on by being present: q/k/v biases (qwen2), q/k norms (qwen3, gemma3),
//! post-attention and post-FFN norms (gemma3), a separate `output.weight` (else the embedding is tied), a router
//! `ffn_gate_inp` (routed experts, qwen3moe/deepseek2; `*_shexp` shared experts, `exp_probs_b` selection bias) and
//! a low-rank query `attn_q_a` (DeepSeek-V3's MLA), and for BERT encoders: biases on every projection, no
//! pre-norms but norms after each residual add (`attn_output_norm`, `layer_output_norm`), an FFN without a gate,
//! learned `position_embd` and `token_types` rows added to the token embedding and a `token_embd_norm` after it,
//! no `output_norm` or `output` (the model then makes embeddings only). Structurally different parts are enum variants:
//! [`Attention::{Gqa, Mla}`](Attention), [`Ffn::{Dense, Moe}`](Ffn).

use crate::config::{MlaConfig, MoeConfig};
use crate::{EngineError, ModelConfig};
use hearth_gguf::{DType, Gguf, TensorInfo};
use hearth_kernels::{PackedMatrix, WeightMatrix};
use std::ops::Range;
use std::sync::Arc;

/// A matrix in the file: `rows` rows of `cols` elements of `dtype`, at `range` of the file's bytes.
#[derive(Debug, Clone)]
pub struct Matrix {
    pub name: String,
    pub dtype: DType,
    pub rows: usize,
    pub cols: usize,
    range: Range<usize>,
    /// The matrix repacked for the packed kernels (see [`hearth_kernels::packed`]), when they cover its format
    /// and this CPU runs them.
    pub packed: Option<Arc<PackedMatrix>>,
}

impl Matrix {
    /// A view of the matrix over the file's bytes.
    pub fn view<'a>(&self, file: &'a [u8]) -> WeightMatrix<'a> {
        WeightMatrix {
            dtype: self.dtype,
            data: &file[self.range.clone()],
            rows: self.rows,
            cols: self.cols,
        }
    }
}

/// `n` matrices of `rows` × `cols` stacked in one 3-D tensor (GGUF dims `[cols, rows, n]`): experts, or MLA's
/// per-head `attn_k_b`/`attn_v_b`. Usually in the file; `owned` when computed at load time.
#[derive(Debug)]
pub struct MatrixStack {
    pub name: String,
    pub dtype: DType,
    pub n: usize,
    pub rows: usize,
    pub cols: usize,
    range: Range<usize>,
    owned: Option<Vec<u8>>,
    /// Each matrix repacked for the packed kernels (routed experts, when packing covers their format), else empty.
    pub packed: Vec<PackedMatrix>,
}

impl MatrixStack {
    /// A view of matrix `i` over the file's bytes (or its own).
    pub fn view<'a>(&'a self, file: &'a [u8], i: usize) -> WeightMatrix<'a> {
        let all = match &self.owned {
            Some(b) => &b[..],
            None => &file[self.range.clone()],
        };
        let bytes = all.len() / self.n;
        WeightMatrix {
            dtype: self.dtype,
            data: &all[i * bytes..][..bytes],
            rows: self.rows,
            cols: self.cols,
        }
    }

    /// `n` matrices (rows, cols) from f32 data, stored as `dtype` (F32 or F16).
    fn from_f32(
        name: String,
        dtype: DType,
        (n, rows, cols): (usize, usize, usize),
        data: &[f32],
    ) -> MatrixStack {
        let owned: Vec<u8> = match dtype {
            DType::F32 => data.iter().flat_map(|x| x.to_le_bytes()).collect(),
            _ => data
                .iter()
                .flat_map(|x| half::f16::from_f32(*x).to_le_bytes())
                .collect(),
        };
        MatrixStack {
            name,
            dtype: if dtype == DType::F32 {
                DType::F32
            } else {
                DType::F16
            },
            n,
            rows,
            cols,
            range: 0..0,
            owned: Some(owned),
            packed: Vec::new(),
        }
    }
}

/// Grouped-query attention (multi-head and multi-query included).
#[derive(Debug)]
pub struct GqaWeights {
    pub wq: Matrix,               // (n_head * head_dim, n_embd)
    pub wk: Matrix,               // (n_head_kv * head_dim, n_embd)
    pub wv: Matrix,               // (n_head_kv * head_dim_v, n_embd)
    pub wo: Matrix,               // (n_embd, n_head * head_dim_v)
    pub bq: Option<Vec<f32>>,     // (n_head * head_dim)
    pub bk: Option<Vec<f32>>,     // (n_head_kv * head_dim)
    pub bv: Option<Vec<f32>>,     // (n_head_kv * head_dim_v)
    pub q_norm: Option<Vec<f32>>, // (head_dim), shared by all heads
    pub k_norm: Option<Vec<f32>>, // (head_dim)
    pub bo: Option<Vec<f32>>,     // (n_embd)
}

/// The query projection of latent attention: direct (DeepSeek-V2-Lite) or through a normalised low-rank bottleneck.
#[derive(Debug)]
pub enum MlaQuery {
    Direct(Matrix), // (n_head * (n_nope + n_rot), n_embd)
    LowRank {
        a: Matrix,        // (q_lora_rank, n_embd)
        a_norm: Vec<f32>, // (q_lora_rank)
        b: Matrix,        // (n_head * (n_nope + n_rot), q_lora_rank)
    },
}

/// Multi-head latent attention (DeepSeek-V2/V3), in llama.cpp's absorbed layout.
#[derive(Debug)]
pub struct MlaWeights {
    pub q: MlaQuery,
    pub kv_a: Matrix, // (kv_lora_rank + n_rot, n_embd): latent ++ shared roped key
    pub kv_a_norm: Vec<f32>, // (kv_lora_rank)
    pub k_b: MatrixStack, // n_head × (kv_lora_rank, n_nope): takes q_nope into latent space
    pub v_b: MatrixStack, // n_head × (head_dim_v, kv_lora_rank): latent → value
    pub wo: Matrix,   // (n_embd, n_head * head_dim_v)
}

#[derive(Debug)]
pub enum Attention {
    Gqa(GqaWeights),
    Mla(MlaWeights),
}

/// A feed-forward network: gated (`down(act(gate x) * up x)`) or, without `gate`, `down(act(up x + up_b)) + down_b`.
#[derive(Debug)]
pub struct DenseFfn {
    pub gate: Option<Matrix>,     // (n_ff, n_embd)
    pub up: Matrix,               // (n_ff, n_embd)
    pub down: Matrix,             // (n_embd, n_ff)
    pub up_b: Option<Vec<f32>>,   // (n_ff)
    pub down_b: Option<Vec<f32>>, // (n_embd)
}

/// A norm's scale and, for a LayerNorm with bias (BERT), its shift.
#[derive(Debug)]
pub struct Norm {
    pub w: Vec<f32>,         // (n_embd)
    pub b: Option<Vec<f32>>, // (n_embd)
}

/// Routed experts, plus always-on shared experts (DeepSeek).
#[derive(Debug)]
pub struct MoeWeights {
    pub router: Matrix,                // (n_expert, n_embd)
    pub select_bias: Option<Vec<f32>>, // (n_expert): added for choosing only (DeepSeek-V3 e_score_correction)
    pub gate: MatrixStack,             // n_expert × (n_ff_exp, n_embd)
    pub up: MatrixStack,               // n_expert × (n_ff_exp, n_embd)
    pub down: MatrixStack,             // n_expert × (n_embd, n_ff_exp)
    pub shared: Option<DenseFfn>,      // n_ff = n_shared * n_ff_exp
}

#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // one per layer: the size does not matter, the indirection would
pub enum Ffn {
    Dense(DenseFfn),
    Moe(Box<MoeWeights>),
}

/// One transformer block's weights. Shapes in (rows, cols) = (out, in).
#[derive(Debug)]
pub struct LayerWeights {
    /// Before attention (pre-norm models); BERT has none.
    pub attn_norm: Option<Norm>,
    pub attn: Attention,
    pub post_attn_norm: Option<Vec<f32>>, // (n_embd), on the attention's output (Gemma)
    /// On the residual stream after the attention is added (BERT's post-norm).
    pub attn_out_norm: Option<Norm>,
    pub ffn_norm: Option<Norm>,
    pub ffn: Ffn,
    pub post_ffn_norm: Option<Vec<f32>>, // (n_embd)
    /// On the residual stream after the feed-forward is added (BERT).
    pub layer_out_norm: Option<Norm>,
}

#[derive(Debug)]
pub struct Weights {
    pub token_embd: Matrix, // (n_vocab, n_embd)
    /// Learned absolute positions (BERT), added to the token embedding.
    pub position_embd: Option<Matrix>, // (n_ctx_train, n_embd)
    /// Token-type (segment) rows (BERT); every token is of type 0.
    pub token_types: Option<Matrix>, // (n_types, n_embd)
    pub token_embd_norm: Option<Norm>,
    pub output_norm: Option<Vec<f32>>, // (n_embd)
    /// The logits matrix: `output.weight`, or the embedding when the model ties them; `None` for an encoder
    /// (no `output_norm`: it makes embeddings only).
    pub output: Option<Matrix>, // (n_vocab, n_embd)
    pub layers: Vec<LayerWeights>,
}

struct Loader<'a> {
    g: &'a Gguf,
    /// Repack matrices for the packed kernels.
    pack: bool,
}

impl Loader<'_> {
    fn info(&self, name: &str) -> Option<&TensorInfo> {
        self.g.tensor(name)
    }

    fn check_shape(&self, t: &TensorInfo, expected: &[u64]) -> Result<(), EngineError> {
        if t.dims != expected {
            return Err(EngineError::BadTensorShape {
                name: t.name.clone(),
                expected: expected.to_vec(),
                found: t.dims.clone(),
            });
        }
        Ok(())
    }

    /// A matrix of `rows` × `cols` (GGUF dims `[cols, rows]`) for matrix products: repacked when packing is on.
    fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<Matrix, EngineError> {
        self.packed(self.matrix_dims(name, &[cols as u64, rows as u64])?)
    }

    /// `m` with its packed form when packing is on and covers its format. The file's pages of a packed matrix are
    /// released: the packed copy is what the kernels read.
    fn packed(&self, mut m: Matrix) -> Result<Matrix, EngineError> {
        if self.pack && PackedMatrix::supports(m.dtype) {
            m.packed = self
                .pack_releasing(&m.view(self.g.bytes()), m.range.start)?
                .map(Arc::new);
        }
        Ok(m)
    }

    /// `w`, which starts at byte `start` of the file, repacked; the file's pages are released as it is packed.
    fn pack_releasing(
        &self,
        w: &WeightMatrix,
        start: usize,
    ) -> Result<Option<PackedMatrix>, EngineError> {
        Ok(PackedMatrix::new_releasing(w, |done| {
            self.g.release_pages(start + done.start..start + done.end)
        })?)
    }

    /// A tensor of GGUF dims `dims` that the matrix kernels can read, as one matrix of its first dim's rows.
    fn matrix_dims(&self, name: &str, dims: &[u64]) -> Result<Matrix, EngineError> {
        let t = self
            .info(name)
            .ok_or_else(|| EngineError::MissingTensor { name: name.into() })?;
        self.check_shape(t, dims)?;
        let (cols, rows) = (dims[0] as usize, dims[1..].iter().product::<u64>() as usize);
        if hearth_kernels::matmul::activation_dtype(t.dtype).is_none() {
            return Err(EngineError::UnsupportedTensorType {
                name: name.into(),
                dtype: t.dtype,
            });
        }
        let start = (self.g.data_offset() + t.offset) as usize;
        Ok(Matrix {
            name: name.into(),
            dtype: t.dtype,
            rows,
            cols,
            range: start..start + t.n_bytes as usize,
            packed: None,
        })
    }

    /// `n` matrices of `rows` × `cols` in one tensor (GGUF dims `[cols, rows, n]`).
    fn stack(
        &self,
        name: &str,
        n: usize,
        rows: usize,
        cols: usize,
    ) -> Result<MatrixStack, EngineError> {
        let m = self.matrix_dims(name, &[cols as u64, rows as u64, n as u64])?;
        Ok(MatrixStack {
            name: m.name,
            dtype: m.dtype,
            n,
            rows,
            cols,
            range: m.range,
            owned: None,
            packed: Vec::new(),
        })
    }

    /// `s` with its matrices repacked when packing is on and covers the format (as [`Loader::packed`] for one
    /// matrix): the whole tensor at once (large pages, every thread), then split into its matrices; each on its own
    /// when their rows are not whole panels.
    fn packed_stack(&self, mut s: MatrixStack) -> Result<MatrixStack, EngineError> {
        if !self.pack || !PackedMatrix::supports(s.dtype) {
            return Ok(s);
        }
        let (n, rows) = (s.n, s.rows);
        let all = WeightMatrix {
            dtype: s.dtype,
            data: &self.g.bytes()[s.range.clone()],
            rows: n * rows,
            cols: s.cols,
        };
        if rows.is_multiple_of(hearth_kernels::packed::PANEL) {
            if let Some(p) = self.pack_releasing(&all, s.range.start)? {
                s.packed = p.split(n).unwrap_or_default();
            }
        } else {
            let per = (s.range.end - s.range.start) / n;
            for i in 0..n {
                let w = s.view(self.g.bytes(), i);
                s.packed
                    .extend(self.pack_releasing(&w, s.range.start + i * per)?);
            }
        }
        Ok(s)
    }

    /// Older MLA files (before llama.cpp split it) hold `attn_kv_b` (n_head * (n_nope + head_dim_v),
    /// kv_lora_rank); the absorbed form needs its key part per head transposed, (kv_lora_rank, n_nope), and its
    /// value part per head, (head_dim_v, kv_lora_rank). Both are made here, f32 from an f32 file, else f16.
    fn split_kv_b(
        &self,
        name: &str,
        h: usize,
        m: &MlaConfig,
    ) -> Result<(MatrixStack, MatrixStack), EngineError> {
        let (r, nope, v) = (m.kv_lora_rank, m.n_nope, m.head_dim_v);
        let kv = self.matrix(name, h * (nope + v), r)?;
        let mut w = vec![0f32; h * (nope + v) * r]; // (n_head * (n_nope + v), kv_lora_rank)
        hearth_kernels::dequantize_row(kv.dtype, &self.g.bytes()[kv.range.clone()], &mut w)
            .map_err(|_| EngineError::UnsupportedTensorType {
                name: name.into(),
                dtype: kv.dtype,
            })?;
        let mut kb = vec![0f32; h * r * nope]; // (n_head, kv_lora_rank, n_nope)
        let mut vb = Vec::with_capacity(h * v * r); // (n_head, v, kv_lora_rank)
        for hh in 0..h {
            for j in 0..nope {
                let row = &w[(hh * (nope + v) + j) * r..][..r];
                for (c, &x) in row.iter().enumerate() {
                    kb[(hh * r + c) * nope + j] = x;
                }
            }
            vb.extend_from_slice(&w[(hh * (nope + v) + nope) * r..][..v * r]);
        }
        Ok((
            MatrixStack::from_f32(name.replace("kv_b", "k_b"), kv.dtype, (h, r, nope), &kb),
            MatrixStack::from_f32(name.replace("kv_b", "v_b"), kv.dtype, (h, v, r), &vb),
        ))
    }

    fn opt_vector(&self, name: &str, n: usize) -> Result<Option<Vec<f32>>, EngineError> {
        let Some(t) = self.info(name) else {
            return Ok(None);
        };
        self.check_shape(t, &[n as u64])?;
        let mut out = vec![0f32; n];
        hearth_kernels::dequantize_row(t.dtype, self.g.tensor_data(t), &mut out).map_err(|_| {
            EngineError::UnsupportedTensorType {
                name: name.into(),
                dtype: t.dtype,
            }
        })?;
        Ok(Some(out))
    }

    fn vector(&self, name: &str, n: usize) -> Result<Vec<f32>, EngineError> {
        self.opt_vector(name, n)?
            .ok_or_else(|| EngineError::MissingTensor { name: name.into() })
    }

    /// The norm `{base}.weight` with its `{base}.bias` when the file has one.
    fn opt_norm(&self, base: &str, n: usize) -> Result<Option<Norm>, EngineError> {
        let Some(w) = self.opt_vector(&format!("{base}.weight"), n)? else {
            return Ok(None);
        };
        Ok(Some(Norm {
            w,
            b: self.opt_vector(&format!("{base}.bias"), n)?,
        }))
    }

    /// A table read by rows (GGUF dims `[cols, rows]`, any row count), when the file has it.
    fn opt_rows(&self, name: &str, cols: usize) -> Result<Option<Matrix>, EngineError> {
        let Some(t) = self.info(name) else {
            return Ok(None);
        };
        let rows = match t.dims.as_slice() {
            [c, r] if *c == cols as u64 && *r > 0 => *r,
            _ => {
                return Err(EngineError::BadTensorShape {
                    name: name.into(),
                    expected: vec![cols as u64, t.dims.get(1).copied().unwrap_or(1)],
                    found: t.dims.clone(),
                })
            }
        };
        self.matrix_dims(name, &[cols as u64, rows]).map(Some)
    }
}

impl Weights {
    pub fn load(g: &Gguf, c: &ModelConfig) -> Result<Weights, EngineError> {
        let l = Loader {
            g,
            pack: hearth_kernels::packed::packing_enabled(),
        };
        let e = c.n_embd;
        // Only rows are read from the embedding (no product), so it stays in the file.
        let token_embd = l.matrix_dims("token_embd.weight", &[e as u64, c.n_vocab as u64])?;
        let output_norm = match c.spec.encoder {
            true => l.opt_vector("output_norm.weight", e)?,
            false => Some(l.vector("output_norm.weight", e)?),
        };
        let output = match (l.info("output.weight"), &output_norm) {
            (Some(_), _) => Some(l.matrix("output.weight", c.n_vocab, e)?),
            (None, Some(_)) => Some(l.packed(token_embd.clone())?),
            // No output norm and no output matrix: an encoder (BERT), whose final hidden states are the output.
            (None, None) => None,
        };
        let layers = (0..c.n_layer)
            .map(|i| {
                let n = |s: &str| format!("blk.{i}.{s}.weight");
                let b = |s: &str| format!("blk.{i}.{s}");
                let (attn_norm, attn_out_norm) = (
                    l.opt_norm(&b("attn_norm"), e)?,
                    l.opt_norm(&b("attn_output_norm"), e)?,
                );
                let (ffn_norm, layer_out_norm) = (
                    l.opt_norm(&b("ffn_norm"), e)?,
                    l.opt_norm(&b("layer_output_norm"), e)?,
                );
                // A block normalises before or after each sub-block; a file with neither is not a model we know.
                if attn_norm.is_none() && attn_out_norm.is_none() {
                    return Err(EngineError::MissingTensor {
                        name: n("attn_norm"),
                    });
                }
                if ffn_norm.is_none() && layer_out_norm.is_none() {
                    return Err(EngineError::MissingTensor {
                        name: n("ffn_norm"),
                    });
                }
                Ok(LayerWeights {
                    attn_norm,
                    attn_out_norm,
                    ffn_norm,
                    layer_out_norm,
                    attn: match &c.mla {
                        None => Attention::Gqa(l.gqa(c, i)?),
                        Some(m) => Attention::Mla(l.mla(c, m, i)?),
                    },
                    post_attn_norm: l.opt_vector(&n("post_attention_norm"), e)?,
                    ffn: match (&c.moe, l.info(&n("ffn_gate_inp"))) {
                        (Some(m), Some(_)) => Ffn::Moe(Box::new(l.moe(c, m, i)?)),
                        _ => Ffn::Dense(l.dense(e, c.n_ff, !c.spec.encoder, |s| b(s))?),
                    },
                    post_ffn_norm: l.opt_vector(&n("post_ffw_norm"), e)?,
                })
            })
            .collect::<Result<_, EngineError>>()?;
        let position_embd = l.opt_rows("position_embd.weight", e)?;
        if let Some(p) = &position_embd {
            // Positions index its rows: the context cannot go past them (`ModelConfig::n_ctx_train` is checked
            // against this when sequences are made).
            if p.rows < c.n_ctx_train {
                return Err(EngineError::BadTensorShape {
                    name: p.name.clone(),
                    expected: vec![e as u64, c.n_ctx_train as u64],
                    found: vec![e as u64, p.rows as u64],
                });
            }
        }
        Ok(Weights {
            token_embd,
            position_embd,
            token_types: l.opt_rows("token_types.weight", e)?,
            token_embd_norm: l.opt_norm("token_embd_norm", e)?,
            output_norm,
            output,
            layers,
        })
    }
}

impl Loader<'_> {
    fn gqa(&self, c: &ModelConfig, i: usize) -> Result<GqaWeights, EngineError> {
        let n = |s: &str| format!("blk.{i}.{s}.weight");
        let b = |s: &str| format!("blk.{i}.{s}.bias");
        let (e, q_dim, kv_dim, v_dim) = (
            c.n_embd,
            c.n_head * c.head_dim,
            c.n_head_kv * c.head_dim,
            c.n_head_kv * c.head_dim_v,
        );
        Ok(GqaWeights {
            wq: self.matrix(&n("attn_q"), q_dim, e)?,
            wk: self.matrix(&n("attn_k"), kv_dim, e)?,
            wv: self.matrix(&n("attn_v"), v_dim, e)?,
            wo: self.matrix(&n("attn_output"), e, c.n_head * c.head_dim_v)?,
            bq: self.opt_vector(&b("attn_q"), q_dim)?,
            bk: self.opt_vector(&b("attn_k"), kv_dim)?,
            bv: self.opt_vector(&b("attn_v"), v_dim)?,
            q_norm: self.opt_vector(&n("attn_q_norm"), c.head_dim)?,
            k_norm: self.opt_vector(&n("attn_k_norm"), c.head_dim)?,
            bo: self.opt_vector(&b("attn_output"), e)?,
        })
    }

    fn mla(&self, c: &ModelConfig, m: &MlaConfig, i: usize) -> Result<MlaWeights, EngineError> {
        let n = |s: &str| format!("blk.{i}.{s}.weight");
        let (e, h, r) = (c.n_embd, c.n_head, m.kv_lora_rank);
        let q_dim = h * (m.n_nope + m.n_rot);
        let q = match self.info(&n("attn_q_a")) {
            Some(t) => {
                let rank = t.dims.get(1).copied().unwrap_or(0) as usize;
                MlaQuery::LowRank {
                    a: self.matrix(&n("attn_q_a"), rank, e)?,
                    a_norm: self.vector(&n("attn_q_a_norm"), rank)?,
                    b: self.matrix(&n("attn_q_b"), q_dim, rank)?,
                }
            }
            None => MlaQuery::Direct(self.matrix(&n("attn_q"), q_dim, e)?),
        };
        let (k_b, v_b) = match self.info(&n("attn_k_b")) {
            None if self.info(&n("attn_kv_b")).is_some() => {
                self.split_kv_b(&n("attn_kv_b"), h, m)?
            }
            _ => (
                self.stack(&n("attn_k_b"), h, r, m.n_nope)?,
                self.stack(&n("attn_v_b"), h, m.head_dim_v, r)?,
            ),
        };
        Ok(MlaWeights {
            q,
            kv_a: self.matrix(&n("attn_kv_a_mqa"), r + m.n_rot, e)?,
            kv_a_norm: self.vector(&n("attn_kv_a_norm"), r)?,
            k_b,
            v_b,
            wo: self.matrix(&n("attn_output"), e, h * m.head_dim_v)?,
        })
    }

    /// The feed-forward whose tensors are `{base("ffn_up")}.weight` etc.; `gated`: it has `ffn_gate` (decoders).
    fn dense(
        &self,
        e: usize,
        n_ff: usize,
        gated: bool,
        base: impl Fn(&str) -> String,
    ) -> Result<DenseFfn, EngineError> {
        let w = |s: &str| format!("{}.weight", base(s));
        let b = |s: &str| format!("{}.bias", base(s));
        Ok(DenseFfn {
            // Decoders' FFNs are gated (a missing gate is a broken file); an encoder's is not.
            gate: match gated {
                true => Some(self.matrix(&w("ffn_gate"), n_ff, e)?),
                false => None,
            },
            up: self.matrix(&w("ffn_up"), n_ff, e)?,
            down: self.matrix(&w("ffn_down"), e, n_ff)?,
            up_b: self.opt_vector(&b("ffn_up"), n_ff)?,
            down_b: self.opt_vector(&b("ffn_down"), e)?,
        })
    }

    fn moe(&self, c: &ModelConfig, m: &MoeConfig, i: usize) -> Result<MoeWeights, EngineError> {
        let n = |s: &str| format!("blk.{i}.{s}.weight");
        let (e, x, f) = (c.n_embd, m.n_expert, m.n_ff_exp);
        let shared = match m.n_shared {
            0 => None,
            s => Some(self.dense(e, s * f, true, |t| format!("blk.{i}.{t}_shexp"))?),
        };
        Ok(MoeWeights {
            router: self.matrix(&n("ffn_gate_inp"), x, e)?,
            select_bias: self.opt_vector(&format!("blk.{i}.exp_probs_b.bias"), x)?,
            gate: self.packed_stack(self.stack(&n("ffn_gate_exps"), x, f, e)?)?,
            up: self.packed_stack(self.stack(&n("ffn_up_exps"), x, f, e)?)?,
            down: self.packed_stack(self.stack(&n("ffn_down_exps"), x, e, f)?)?,
            shared,
        })
    }
}
