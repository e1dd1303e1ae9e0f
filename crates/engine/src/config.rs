//! Model hyperparameters from GGUF metadata, and the per-architecture spec for what the weights cannot say.
//!
//! Adding an architecture costs an entry in [`ArchSpec::for_arch`]: optional weights (biases, q/k norms, post norms,
//! a separate output matrix) switch behaviour on by being present, see `weights.rs`.

use crate::EngineError;
use hearth_gguf::Gguf;
use hearth_kernels::ops::{Rope, RopeStyle};

/// The gated feed-forward's activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Silu,
    GeluTanh,
}

impl Activation {
    pub fn f(self) -> fn(f32) -> f32 {
        match self {
            Activation::Silu => hearth_kernels::ops::silu,
            Activation::GeluTanh => hearth_kernels::ops::gelu_tanh,
        }
    }
}

/// What an architecture does that its weights do not reveal.
#[derive(Debug, Clone)]
pub struct ArchSpec {
    pub rope_style: RopeStyle,
    pub activation: Activation,
    /// Multiply token embeddings by sqrt(n_embd) (Gemma).
    pub scale_embeddings: bool,
    /// Sliding-window layers: every `period`-th layer (1-based) is global, the others see `sliding_window` tokens
    /// and use `local_rope_base` (Gemma 3: period 6, base 10 000).
    pub swa: Option<SwaSpec>,
}

#[derive(Debug, Clone, Copy)]
pub struct SwaSpec {
    pub period: usize,
    pub local_rope_base: f32,
}

/// Architectures the engine runs.
pub const SUPPORTED: &[&str] = &["llama", "gemma3", "qwen2", "qwen3"];

impl ArchSpec {
    pub fn for_arch(arch: &str) -> Result<ArchSpec, EngineError> {
        Ok(match arch {
            "llama" => ArchSpec {
                rope_style: RopeStyle::Adjacent,
                activation: Activation::Silu,
                scale_embeddings: false,
                swa: None,
            },
            // q/k/v biases (qwen2) and q/k norms (qwen3) switch on by presence in weights.rs.
            "qwen2" | "qwen3" => ArchSpec {
                rope_style: RopeStyle::HalfSplit,
                activation: Activation::Silu,
                scale_embeddings: false,
                swa: None,
            },
            "gemma3" => ArchSpec {
                rope_style: RopeStyle::HalfSplit,
                activation: Activation::GeluTanh,
                scale_embeddings: true,
                swa: Some(SwaSpec {
                    period: 6,
                    local_rope_base: 10_000.0,
                }),
            },
            _ => {
                return Err(EngineError::UnknownArchitecture {
                    arch: arch.to_string(),
                    supported: SUPPORTED.join(", "),
                })
            }
        })
    }
}

/// Per-layer settings that vary along the stack.
#[derive(Debug, Clone)]
pub struct LayerConfig {
    /// `Some(window)`: this layer attends to the last `window` positions only.
    pub sliding_window: Option<usize>,
    pub rope: Rope,
}

/// The model's hyperparameters, read from `{arch}.*` metadata keys.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    pub arch: String,
    pub spec: ArchSpec,
    pub n_vocab: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    /// Per-head dimension of queries and keys.
    pub head_dim: usize,
    /// Per-head dimension of values.
    pub head_dim_v: usize,
    pub n_ff: usize,
    pub n_ctx_train: usize,
    pub rms_eps: f32,
    /// Scale applied to q·k (1/sqrt(head_dim) unless the file says otherwise).
    pub attn_scale: f32,
    /// `tanh` soft-capping of the final logits, when the file sets it.
    pub final_logit_softcap: Option<f32>,
    pub layers: Vec<LayerConfig>,
}

fn req(g: &Gguf, key: String, what: &'static str) -> Result<usize, EngineError> {
    match g.get_uint(&key)? {
        Some(v) => Ok(v as usize),
        None => Err(EngineError::MissingKey { key, what }),
    }
}

impl ModelConfig {
    pub fn from_gguf(g: &Gguf) -> Result<ModelConfig, EngineError> {
        let arch = g.architecture()?.to_string();
        let spec = ArchSpec::for_arch(&arch)?;
        let k = |s: &str| format!("{arch}.{s}");
        let n_embd = req(g, k("embedding_length"), "embedding width")?;
        let n_layer = req(g, k("block_count"), "layer count")?;
        let n_head = req(g, k("attention.head_count"), "attention heads")?;
        let n_head_kv = g
            .get_uint(&k("attention.head_count_kv"))?
            .map_or(n_head, |v| v as usize);
        let n_ff = req(g, k("feed_forward_length"), "feed-forward width")?;
        if n_head == 0 || n_head_kv == 0 || n_head % n_head_kv != 0 || n_embd == 0 || n_layer == 0 {
            return Err(EngineError::BadConfig(format!(
                "n_embd {n_embd}, n_layer {n_layer}, n_head {n_head}, n_head_kv {n_head_kv}"
            )));
        }
        let head_dim = g
            .get_uint(&k("attention.key_length"))?
            .map_or(n_embd / n_head, |v| v as usize);
        let head_dim_v = g
            .get_uint(&k("attention.value_length"))?
            .map_or(head_dim, |v| v as usize);
        let n_rot = g
            .get_uint(&k("rope.dimension_count"))?
            .map_or(head_dim, |v| v as usize);
        if n_rot > head_dim || n_rot % 2 != 0 {
            return Err(EngineError::BadConfig(format!(
                "rope.dimension_count {n_rot} with head size {head_dim}"
            )));
        }
        let rms_eps = g
            .get_f32(&k("attention.layer_norm_rms_epsilon"))?
            .unwrap_or(1e-5);
        let rope_base = g.get_f32(&k("rope.freq_base"))?.unwrap_or(10_000.0);
        let freq_scale = match g.get_str(&k("rope.scaling.type"))? {
            Some("linear") => 1.0 / g.get_f32(&k("rope.scaling.factor"))?.unwrap_or(1.0),
            Some("none") | None => 1.0,
            Some(other) => {
                return Err(EngineError::BadConfig(format!(
                    "RoPE scaling {other:?} is not supported yet"
                )))
            }
        };
        let n_ctx_train = g
            .get_uint(&k("context_length"))?
            .map_or(4096, |v| v as usize);
        let window = g
            .get_uint(&k("attention.sliding_window"))?
            .map(|v| v as usize);
        let layers: Vec<LayerConfig> = (0..n_layer)
            .map(|il| {
                let swa = spec.swa.filter(|s| (il + 1) % s.period != 0).zip(window);
                match swa {
                    Some((s, w)) => LayerConfig {
                        sliding_window: Some(w),
                        rope: Rope::new(spec.rope_style, n_rot, s.local_rope_base, 1.0),
                    },
                    None => LayerConfig {
                        sliding_window: None,
                        rope: Rope::new(spec.rope_style, n_rot, rope_base, freq_scale),
                    },
                }
            })
            .collect();
        // Llama 3 RoPE scaling: llama.cpp's converter stores per-frequency divisors as `rope_freqs.weight`.
        let mut layers: Vec<LayerConfig> = layers;
        if let Some(t) = g.tensor("rope_freqs.weight") {
            let n = n_rot / 2;
            let mut factors = vec![0f32; n];
            if t.dims != [n as u64]
                || hearth_kernels::dequantize_row(t.dtype, g.tensor_data(t), &mut factors).is_err()
            {
                return Err(EngineError::BadTensorShape {
                    name: t.name.clone(),
                    expected: vec![n as u64],
                    found: t.dims.clone(),
                });
            }
            for l in &mut layers {
                l.rope
                    .inv_freq
                    .iter_mut()
                    .zip(&factors)
                    .for_each(|(f, d)| *f /= d);
            }
        }
        let n_vocab = match g.get_uint(&k("vocab_size"))? {
            Some(v) => v as usize,
            None => g.get_array("tokenizer.ggml.tokens")?.map_or(0, |a| a.len()),
        };
        Ok(ModelConfig {
            attn_scale: 1.0 / (head_dim as f32).sqrt(),
            final_logit_softcap: g.get_f32(&k("final_logit_softcapping"))?,
            spec,
            arch,
            n_vocab,
            n_embd,
            n_layer,
            n_head,
            n_head_kv,
            head_dim,
            head_dim_v,
            n_ff,
            n_ctx_train,
            rms_eps,
            layers,
        })
    }
}
