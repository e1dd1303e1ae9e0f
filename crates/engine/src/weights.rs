//! The model's tensors: matrices stay in the GGUF mapping (zero-copy), small vectors (norms, biases) become f32.
//!
//! Optional tensors switch behaviour on by being present: q/k/v biases (qwen2), q/k norms (qwen3, gemma3),
//! post-attention and post-FFN norms (gemma3), and a separate `output.weight` (else the embedding is tied).

use crate::{EngineError, ModelConfig};
use hearth_gguf::{DType, Gguf, TensorInfo};
use hearth_kernels::WeightMatrix;
use std::ops::Range;

/// A matrix in the file: `rows` rows of `cols` elements of `dtype`, at `range` of the file's bytes.
#[derive(Debug, Clone)]
pub struct Matrix {
    pub name: String,
    pub dtype: DType,
    pub rows: usize,
    pub cols: usize,
    range: Range<usize>,
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

/// One transformer block's weights. Shapes in (rows, cols) = (out, in).
#[derive(Debug)]
pub struct LayerWeights {
    pub attn_norm: Vec<f32>,              // (n_embd)
    pub wq: Matrix,                       // (n_head * head_dim, n_embd)
    pub wk: Matrix,                       // (n_head_kv * head_dim, n_embd)
    pub wv: Matrix,                       // (n_head_kv * head_dim_v, n_embd)
    pub wo: Matrix,                       // (n_embd, n_head * head_dim_v)
    pub bq: Option<Vec<f32>>,             // (n_head * head_dim)
    pub bk: Option<Vec<f32>>,             // (n_head_kv * head_dim)
    pub bv: Option<Vec<f32>>,             // (n_head_kv * head_dim_v)
    pub q_norm: Option<Vec<f32>>,         // (head_dim), shared by all heads
    pub k_norm: Option<Vec<f32>>,         // (head_dim)
    pub post_attn_norm: Option<Vec<f32>>, // (n_embd)
    pub ffn_norm: Vec<f32>,               // (n_embd)
    pub gate: Matrix,                     // (n_ff, n_embd)
    pub up: Matrix,                       // (n_ff, n_embd)
    pub down: Matrix,                     // (n_embd, n_ff)
    pub post_ffn_norm: Option<Vec<f32>>,  // (n_embd)
}

#[derive(Debug)]
pub struct Weights {
    pub token_embd: Matrix,    // (n_vocab, n_embd)
    pub output_norm: Vec<f32>, // (n_embd)
    /// The logits matrix: `output.weight`, or the embedding when the model ties them.
    pub output: Matrix, // (n_vocab, n_embd)
    pub layers: Vec<LayerWeights>,
}

struct Loader<'a> {
    g: &'a Gguf,
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

    /// A matrix of `rows` × `cols` (GGUF dims `[cols, rows]`).
    fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<Matrix, EngineError> {
        let t = self
            .info(name)
            .ok_or_else(|| EngineError::MissingTensor { name: name.into() })?;
        self.check_shape(t, &[cols as u64, rows as u64])?;
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
        })
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
}

impl Weights {
    pub fn load(g: &Gguf, c: &ModelConfig) -> Result<Weights, EngineError> {
        let l = Loader { g };
        let (e, q_dim, kv_dim, v_dim) = (
            c.n_embd,
            c.n_head * c.head_dim,
            c.n_head_kv * c.head_dim,
            c.n_head_kv * c.head_dim_v,
        );
        let token_embd = l.matrix("token_embd.weight", c.n_vocab, e)?;
        let output = match l.info("output.weight") {
            Some(_) => l.matrix("output.weight", c.n_vocab, e)?,
            None => token_embd.clone(),
        };
        let layers = (0..c.n_layer)
            .map(|i| {
                let n = |s: &str| format!("blk.{i}.{s}.weight");
                let b = |s: &str| format!("blk.{i}.{s}.bias");
                Ok(LayerWeights {
                    attn_norm: l.vector(&n("attn_norm"), e)?,
                    wq: l.matrix(&n("attn_q"), q_dim, e)?,
                    wk: l.matrix(&n("attn_k"), kv_dim, e)?,
                    wv: l.matrix(&n("attn_v"), v_dim, e)?,
                    wo: l.matrix(&n("attn_output"), e, c.n_head * c.head_dim_v)?,
                    bq: l.opt_vector(&b("attn_q"), q_dim)?,
                    bk: l.opt_vector(&b("attn_k"), kv_dim)?,
                    bv: l.opt_vector(&b("attn_v"), v_dim)?,
                    q_norm: l.opt_vector(&n("attn_q_norm"), c.head_dim)?,
                    k_norm: l.opt_vector(&n("attn_k_norm"), c.head_dim)?,
                    post_attn_norm: l.opt_vector(&n("post_attention_norm"), e)?,
                    ffn_norm: l.vector(&n("ffn_norm"), e)?,
                    gate: l.matrix(&n("ffn_gate"), c.n_ff, e)?,
                    up: l.matrix(&n("ffn_up"), c.n_ff, e)?,
                    down: l.matrix(&n("ffn_down"), e, c.n_ff)?,
                    post_ffn_norm: l.opt_vector(&n("post_ffw_norm"), e)?,
                })
            })
            .collect::<Result<_, EngineError>>()?;
        Ok(Weights {
            token_embd,
            output_norm: l.vector("output_norm.weight", e)?,
            output,
            layers,
        })
    }
}
