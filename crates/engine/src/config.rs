//! Model hyperparameters from GGUF metadata, and the per-architecture spec for what the weights cannot say.
//!
//! Adding an architecture costs an entry in [`ArchSpec::for_arch`]: optional weights (biases, q/k norms, post norms,
//! a separate output matrix) switch behaviour on by being present, see `weights.rs`.

use crate::EngineError;
use hearth_gguf::Gguf;
use hearth_kernels::ops::{Rope, RopeStyle, Yarn};
use std::sync::Arc;

/// The feed-forward's activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Silu,
    GeluTanh,
    /// The exact GELU, `x Φ(x)` (BERT).
    Gelu,
}

impl Activation {
    /// The fast gated kernel's form of this activation, where it has one.
    pub fn gated(self) -> Option<hearth_kernels::ops::GatedAct> {
        match self {
            Activation::Silu => Some(hearth_kernels::ops::GatedAct::Silu),
            Activation::GeluTanh => Some(hearth_kernels::ops::GatedAct::GeluTanh),
            Activation::Gelu => None,
        }
    }

    /// The activation of one value.
    pub fn scalar(self) -> fn(f32) -> f32 {
        match self {
            Activation::Silu => hearth_kernels::ops::silu,
            Activation::GeluTanh => hearth_kernels::ops::gelu_tanh,
            Activation::Gelu => hearth_kernels::ops::gelu,
        }
    }
}

/// Which normalisation the model's norms are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NormKind {
    /// `x / rms(x) * w`.
    Rms,
    /// `(x - mean) / std * w + b` (BERT).
    Layer,
}

/// How a sequence's final hidden states become one embedding (llama.cpp's `pooling_type`); the vector is then
/// L2-normalised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// The mean over the sequence's tokens (sentence-transformers' mean pooling; for generative models, llama.cpp's
    /// choice with `--pooling mean`).
    Mean,
    /// The first token's state (`[CLS]`).
    Cls,
    /// The last token's state.
    Last,
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
    /// MoE: whether the chosen experts' weights are normalised to sum 1 when the file has no
    /// `expert_weights_norm` key (llama.cpp: always for qwen3moe, off by default for deepseek2).
    pub expert_weights_norm: bool,
    /// YaRN's magnitude correction goes into the attention scale, squared and with
    /// `rope.scaling.yarn_log_multiplier`, rather than into sin/cos (DeepSeek-V2/V3, as llama.cpp applies it).
    pub yarn_in_attn_scale: bool,
    pub norm: NormKind,
    /// Positions are rotated into q and k (RoPE); off for BERT, whose learned `position_embd` rows say where.
    pub rope: bool,
    /// A token attends only to earlier ones (decoders); BERT attends both ways, so a sequence must be read in one
    /// forward pass. `{arch}.attention.causal` overrides it.
    pub causal: bool,
    /// An encoder (BERT): its FFN has no gate and it may have no output head (it then makes embeddings only). A
    /// decoder file without `ffn_gate` or `output_norm` is broken, not an encoder, and is refused.
    pub encoder: bool,
}

#[derive(Debug, Clone, Copy)]
pub struct SwaSpec {
    pub period: usize,
    pub local_rope_base: f32,
}

/// Architectures the engine runs.
pub const SUPPORTED: &[&str] = &[
    "llama",
    "gemma3",
    "qwen2",
    "qwen3",
    "qwen3moe",
    "deepseek2",
    "bert",
];

impl ArchSpec {
    pub fn for_arch(arch: &str) -> Result<ArchSpec, EngineError> {
        Ok(match arch {
            "llama" => ArchSpec {
                rope_style: RopeStyle::Adjacent,
                ..ArchSpec::base()
            },
            // q/k/v biases (qwen2), q/k norms (qwen3) and routed experts (qwen3moe) switch on by presence in
            // weights.rs.
            "qwen2" | "qwen3" | "qwen3moe" => ArchSpec {
                rope_style: RopeStyle::HalfSplit,
                ..ArchSpec::base()
            },
            // Latent attention (`attention.kv_lora_rank`), shared + routed experts after the leading dense layers.
            "deepseek2" => ArchSpec {
                rope_style: RopeStyle::Adjacent,
                expert_weights_norm: false,
                yarn_in_attn_scale: true,
                ..ArchSpec::base()
            },
            "gemma3" => ArchSpec {
                rope_style: RopeStyle::HalfSplit,
                activation: Activation::GeluTanh,
                scale_embeddings: true,
                swa: Some(SwaSpec {
                    period: 6,
                    local_rope_base: 10_000.0,
                }),
                ..ArchSpec::base()
            },
            // An encoder: learned positions, post-LayerNorm with biases, exact GELU, bidirectional attention
            // (the block's shape switches by which norms and biases the file has, see weights.rs).
            "bert" => ArchSpec {
                activation: Activation::Gelu,
                norm: NormKind::Layer,
                rope: false,
                causal: false,
                encoder: true,
                ..ArchSpec::base()
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

impl ArchSpec {
    /// The common case the table entries start from.
    fn base() -> ArchSpec {
        ArchSpec {
            rope_style: RopeStyle::HalfSplit,
            activation: Activation::Silu,
            scale_embeddings: false,
            swa: None,
            expert_weights_norm: true,
            yarn_in_attn_scale: false,
            norm: NormKind::Rms,
            rope: true,
            causal: true,
            encoder: false,
        }
    }
}

/// How a MoE router turns its logits into expert probabilities (llama.cpp's `expert_gating_func`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gating {
    Softmax,
    Sigmoid,
}

/// Mixture-of-experts routing, from `{arch}.expert_*` keys.
#[derive(Debug, Clone)]
pub struct MoeConfig {
    pub n_expert: usize,
    /// Experts each token uses (top-k).
    pub n_expert_used: usize,
    /// Hidden width of one expert.
    pub n_ff_exp: usize,
    /// Always-on shared experts (DeepSeek), one FFN of width `n_shared * n_ff_exp`.
    pub n_shared: usize,
    pub gating: Gating,
    /// Normalise the chosen experts' weights to sum 1.
    pub norm_weights: bool,
    /// Multiplies the chosen experts' weights (DeepSeek's `routed_scaling_factor`).
    pub weights_scale: f32,
    /// Grouped routing (DeepSeek-V3): experts form `n_group` groups and each token picks among the best
    /// `n_group_used`; 1 means no grouping.
    pub n_group: usize,
    pub n_group_used: usize,
}

/// Multi-head latent attention sizes (DeepSeek-V2/V3), per head.
#[derive(Debug, Clone, Copy)]
pub struct MlaConfig {
    /// Width of the compressed KV latent that the cache holds.
    pub kv_lora_rank: usize,
    /// Query/key dimensions without RoPE (absorbed into the latent) and with RoPE (`rope.dimension_count`).
    pub n_nope: usize,
    pub n_rot: usize,
    /// Value width per head after `attn_v_b`.
    pub head_dim_v: usize,
}

/// Per-layer settings that vary along the stack.
#[derive(Debug, Clone)]
pub struct LayerConfig {
    /// `Some(window)`: this layer attends to the last `window` positions only.
    pub sliding_window: Option<usize>,
    /// Shared by every layer with the same RoPE: the per-layer table costs a pointer, whatever `block_count` says.
    pub rope: Arc<Rope>,
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
    /// The norms' epsilon (`layer_norm_rms_epsilon`, or `layer_norm_epsilon` for LayerNorm models).
    pub rms_eps: f32,
    /// Whether attention is causal (see [`ArchSpec::causal`]).
    pub causal: bool,
    /// How an embedding request pools this model's final hidden states (`{arch}.pooling_type`; mean when absent).
    pub pooling: Pooling,
    /// Scale applied to q·k (1/sqrt(head_dim) unless the file says otherwise).
    pub attn_scale: f32,
    /// `tanh` soft-capping of the final logits, when the file sets it.
    pub final_logit_softcap: Option<f32>,
    pub layers: Vec<LayerConfig>,
    /// Routed experts, when the file has them (layers with `ffn_gate_inp` use them).
    pub moe: Option<MoeConfig>,
    /// Latent attention. Then the cache holds one shared "KV head" per position: `head_dim` = kv_lora_rank +
    /// n_rot (normalised latent ++ roped key part), `head_dim_v` = kv_lora_rank (the latent again).
    pub mla: Option<MlaConfig>,
}

fn req(g: &Gguf, key: String, what: &'static str) -> Result<usize, EngineError> {
    match g.get_uint(&key)? {
        Some(v) => Ok(usize::try_from(v).unwrap_or(usize::MAX)),
        None => Err(EngineError::MissingKey { key, what }),
    }
}

/// An optional unsigned key as `usize` (values beyond `usize` saturate, and are refused by [`Bounds`]).
fn opt(g: &Gguf, key: &str) -> Result<Option<usize>, EngineError> {
    Ok(g.get_uint(key)?
        .map(|v| usize::try_from(v).unwrap_or(usize::MAX)))
}

/// What the file's tensors allow the metadata to claim. Metadata can say anything, but every width of the model
/// (embedding, heads × head size, feed-forward, vocabulary, experts) is a dimension of some tensor, and every
/// layer has tensors of its own: so nothing is sized from metadata beyond the largest tensor dimension, and
/// `block_count` cannot exceed the number of tensors. This caps what a hostile file can make us allocate before
/// `weights.rs` checks each tensor's exact shape.
struct Bounds {
    n_tensors: usize,
    max_dim: usize,
}

impl Bounds {
    fn of(g: &Gguf) -> Bounds {
        let max_dim = g
            .tensors()
            .iter()
            .flat_map(|t| t.dims.iter())
            .copied()
            .max();
        Bounds {
            n_tensors: g.tensors().len(),
            max_dim: max_dim.map_or(0, |d| usize::try_from(d).unwrap_or(usize::MAX)),
        }
    }

    /// A width from metadata: at least 1 and at most the largest tensor dimension.
    fn width(&self, what: &str, v: usize) -> Result<usize, EngineError> {
        if v == 0 || v > self.max_dim {
            return Err(EngineError::BadConfig(format!(
                "{what} is {v}, but the file's tensors have dimensions of 1 to {}",
                self.max_dim
            )));
        }
        Ok(v)
    }

    /// A product of widths (`n_head × head_dim`), checked for overflow and against the tensors like a width.
    fn product(&self, what: &str, a: usize, b: usize) -> Result<usize, EngineError> {
        let p = a
            .checked_mul(b)
            .ok_or_else(|| EngineError::BadConfig(format!("{what} = {a} × {b} overflows")))?;
        self.width(what, p)
    }
}

/// A float from metadata that must be finite (and, with `positive`, above zero).
fn finite(what: &str, v: f32, positive: bool) -> Result<f32, EngineError> {
    if !v.is_finite() || (positive && v <= 0.0) || v < 0.0 {
        return Err(EngineError::BadConfig(format!(
            "{what} is {v}; it must be a finite{} number",
            if positive {
                ", positive"
            } else {
                " non-negative"
            }
        )));
    }
    Ok(v)
}

impl ModelConfig {
    pub fn from_gguf(g: &Gguf) -> Result<ModelConfig, EngineError> {
        let arch = g.architecture()?.to_string();
        let spec = ArchSpec::for_arch(&arch)?;
        let k = |s: &str| format!("{arch}.{s}");
        let b = Bounds::of(g);
        let n_embd = b.width(
            "embedding_length",
            req(g, k("embedding_length"), "embedding width")?,
        )?;
        let n_layer = req(g, k("block_count"), "layer count")?;
        if n_layer == 0 || n_layer > b.n_tensors {
            return Err(EngineError::BadConfig(format!(
                "block_count is {n_layer}, but the file has {} tensors",
                b.n_tensors
            )));
        }
        let n_head = b.width(
            "attention.head_count",
            req(g, k("attention.head_count"), "attention heads")?,
        )?;
        let n_head_kv = b.width(
            "attention.head_count_kv",
            opt(g, &k("attention.head_count_kv"))?.unwrap_or(n_head),
        )?;
        let n_ff = b.width(
            "feed_forward_length",
            req(g, k("feed_forward_length"), "feed-forward width")?,
        )?;
        if !n_head.is_multiple_of(n_head_kv) {
            return Err(EngineError::BadConfig(format!(
                "n_head {n_head} is not a multiple of n_head_kv {n_head_kv}"
            )));
        }
        let mut head_dim = b.width(
            "attention.key_length",
            opt(g, &k("attention.key_length"))?.unwrap_or(n_embd / n_head),
        )?;
        let mut head_dim_v = b.width(
            "attention.value_length",
            opt(g, &k("attention.value_length"))?.unwrap_or(head_dim),
        )?;
        let n_rot = opt(g, &k("rope.dimension_count"))?.unwrap_or(head_dim);
        if n_rot > head_dim || n_rot % 2 != 0 {
            return Err(EngineError::BadConfig(format!(
                "rope.dimension_count {n_rot} with head size {head_dim}"
            )));
        }
        let mut n_head_kv = n_head_kv;
        // The scale's head size: q·k spans the full key (for MLA the decompressed one, not the cache row).
        let mut qk_dim = head_dim;
        let mla = match opt(g, &k("attention.kv_lora_rank"))? {
            None => {
                // Every product the forward pass sizes buffers with is the dimension of a projection.
                b.product("n_head × key_length", n_head, head_dim)?;
                b.product("n_head_kv × key_length", n_head_kv, head_dim)?;
                b.product("n_head_kv × value_length", n_head_kv, head_dim_v)?;
                b.product("n_head × value_length", n_head, head_dim_v)?;
                None
            }
            Some(kv_lora_rank) => {
                let kv_lora_rank = b.width("attention.kv_lora_rank", kv_lora_rank)?;
                // llama.cpp writes the absorbed shapes (key = latent ++ rope, value = latent) since it stores
                // `attn_k_b`/`attn_v_b`, and the per-head sizes under `*_mla`; older files only the per-head sizes.
                let (qk, v) = match opt(g, &k("attention.key_length_mla"))? {
                    Some(qk) => (
                        b.width("attention.key_length_mla", qk)?,
                        b.width(
                            "attention.value_length_mla",
                            req(g, k("attention.value_length_mla"), "MLA value width")?,
                        )?,
                    ),
                    None => (head_dim, head_dim_v),
                };
                if qk <= n_rot {
                    return Err(EngineError::BadConfig(format!(
                        "MLA key width {qk}, value width {v}, kv_lora_rank {kv_lora_rank}, rope dims {n_rot}"
                    )));
                }
                b.product("n_head × MLA key width", n_head, qk)?;
                b.product("n_head × MLA value width", n_head, v)?;
                b.width("kv_lora_rank + rope dims", kv_lora_rank + n_rot)?;
                b.product(
                    "n_head × (MLA key width - rope dims + value width)",
                    n_head,
                    qk - n_rot + v,
                )?;
                qk_dim = qk;
                head_dim = kv_lora_rank + n_rot;
                head_dim_v = kv_lora_rank;
                n_head_kv = 1;
                Some(MlaConfig {
                    kv_lora_rank,
                    n_nope: qk - n_rot,
                    n_rot,
                    head_dim_v: v,
                })
            }
        };
        let eps_key = match spec.norm {
            NormKind::Rms => "attention.layer_norm_rms_epsilon",
            NormKind::Layer => "attention.layer_norm_epsilon",
        };
        let rms_eps = finite(eps_key, g.get_f32(&k(eps_key))?.unwrap_or(1e-5), false)?;
        let causal = g.get_bool(&k("attention.causal"))?.unwrap_or(spec.causal);
        let pooling = match g.get_uint(&k("pooling_type"))? {
            // 0 (none: one vector per token) has no single vector to give; the mean is what llama.cpp's
            // `--pooling mean` gives a generative model.
            None | Some(0) | Some(1) => Pooling::Mean,
            Some(2) => Pooling::Cls,
            Some(3) => Pooling::Last,
            Some(other) => {
                return Err(EngineError::BadConfig(format!(
                    "pooling_type {other} (0-3 are mean, mean, CLS and last; rank pooling is not supported)"
                )))
            }
        };
        let rope_base = finite(
            "rope.freq_base",
            g.get_f32(&k("rope.freq_base"))?.unwrap_or(10_000.0),
            true,
        )?;
        let factor = finite(
            "rope.scaling.factor",
            g.get_f32(&k("rope.scaling.factor"))?.unwrap_or(1.0),
            true,
        )?;
        let mut attn_scale = 1.0 / (qk_dim as f32).sqrt();
        let n_ctx_train = opt(g, &k("context_length"))?.unwrap_or(4096);
        let (freq_scale, yarn) = match g.get_str(&k("rope.scaling.type"))? {
            Some("linear") => (1.0 / factor, None),
            Some("yarn") => {
                let mut y = Yarn {
                    factor,
                    orig_ctx: opt(g, &k("rope.scaling.original_context_length"))?
                        .unwrap_or(n_ctx_train),
                    beta_fast: g
                        .get_f32(&k("rope.scaling.yarn_beta_fast"))?
                        .unwrap_or(32.0),
                    beta_slow: g.get_f32(&k("rope.scaling.yarn_beta_slow"))?.unwrap_or(1.0),
                    ext_factor: g
                        .get_f32(&k("rope.scaling.yarn_ext_factor"))?
                        .unwrap_or(1.0),
                    attn_factor: g.get_f32(&k("rope.scaling.attn_factor"))?.unwrap_or(1.0),
                };
                if spec.yarn_in_attn_scale {
                    // llama.cpp's deepseek2: q·k scaled by mscale² with mscale = attn_factor (1 + log_mul ln
                    // factor), and RoPE's own correction cancelled.
                    let log_mul = g
                        .get_f32(&k("rope.scaling.yarn_log_multiplier"))?
                        .unwrap_or(0.0);
                    let mscale = y.attn_factor * (1.0 + log_mul * factor.ln());
                    attn_scale *= mscale * mscale;
                    y.attn_factor = 1.0 / (1.0 + 0.1 * factor.ln());
                }
                (1.0, Some(y))
            }
            Some("none") | None => (1.0, None),
            Some(other) => {
                return Err(EngineError::BadConfig(format!(
                    "RoPE scaling {other:?} is not supported yet"
                )))
            }
        };
        finite("the attention scale", attn_scale, true)?;
        let window = opt(g, &k("attention.sliding_window"))?;
        if spec.swa.is_some() && window == Some(0) {
            return Err(EngineError::BadConfig(
                "attention.sliding_window is 0; a window holds at least one position".into(),
            ));
        }
        let mut global = match &yarn {
            Some(y) => Rope::yarn(spec.rope_style, n_rot, rope_base, y),
            None => Rope::new(spec.rope_style, n_rot, rope_base, freq_scale),
        };
        let mut local = spec
            .swa
            .map(|s| Rope::new(spec.rope_style, n_rot, s.local_rope_base, 1.0));
        // Llama 3 RoPE scaling: llama.cpp's converter stores per-frequency divisors as `rope_freqs.weight`.
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
            for rope in std::iter::once(&mut global).chain(local.as_mut()) {
                rope.inv_freq
                    .iter_mut()
                    .zip(&factors)
                    .for_each(|(f, d)| *f /= d);
            }
        }
        let (global, local) = (Arc::new(global), local.map(Arc::new));
        let layers: Vec<LayerConfig> = (0..n_layer)
            .map(|il| {
                let swa = spec.swa.filter(|s| (il + 1) % s.period != 0).zip(window);
                match (swa, &local) {
                    (Some((_, w)), Some(local)) => LayerConfig {
                        sliding_window: Some(w),
                        rope: local.clone(),
                    },
                    _ => LayerConfig {
                        sliding_window: None,
                        rope: global.clone(),
                    },
                }
            })
            .collect();
        let n_vocab = match opt(g, &k("vocab_size"))? {
            Some(v) => v,
            None => g.get_array("tokenizer.ggml.tokens")?.map_or(0, |a| a.len()),
        };
        let n_vocab = b.width("the vocabulary size", n_vocab)?;
        let moe = match opt(g, &k("expert_count"))? {
            None | Some(0) => None,
            Some(n_expert) => Some(moe_config(g, &k, &spec, &b, n_expert)?),
        };
        let final_logit_softcap = match g.get_f32(&k("final_logit_softcapping"))? {
            Some(c) => Some(finite("final_logit_softcapping", c, true)?),
            None => None,
        };
        Ok(ModelConfig {
            attn_scale,
            moe,
            mla,
            final_logit_softcap,
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
            causal,
            pooling,
            layers,
        })
    }
}

fn moe_config(
    g: &Gguf,
    k: &dyn Fn(&str) -> String,
    spec: &ArchSpec,
    b: &Bounds,
    n_expert: usize,
) -> Result<MoeConfig, EngineError> {
    let n_expert = b.width("expert_count", n_expert)?;
    let n_expert_used = req(g, k("expert_used_count"), "experts used per token")?;
    let n_ff_exp = b.width(
        "expert_feed_forward_length",
        req(g, k("expert_feed_forward_length"), "expert width")?,
    )?;
    let gating = match g.get_uint(&k("expert_gating_func"))? {
        None | Some(1) => Gating::Softmax,
        Some(2) => Gating::Sigmoid,
        Some(other) => {
            return Err(EngineError::BadConfig(format!(
                "expert_gating_func {other} (1 = softmax and 2 = sigmoid are supported)"
            )))
        }
    };
    let n_group = opt(g, &k("expert_group_count"))?.unwrap_or(1).max(1);
    let n_group_used = opt(g, &k("expert_group_used_count"))?.unwrap_or(n_group);
    if n_expert_used == 0
        || n_expert_used > n_expert
        || !n_expert.is_multiple_of(n_group)
        || n_group_used == 0
        || n_group_used > n_group
        || n_group_used
            .checked_mul(n_expert / n_group)
            .is_none_or(|n| n_expert_used > n)
    {
        return Err(EngineError::BadConfig(format!(
            "{n_expert} experts, {n_expert_used} used, {n_group} groups with {n_group_used} used"
        )));
    }
    let n_shared = opt(g, &k("expert_shared_count"))?.unwrap_or(0);
    if n_shared > 0 {
        b.product("expert_shared_count × expert width", n_shared, n_ff_exp)?;
    }
    Ok(MoeConfig {
        n_expert,
        n_expert_used,
        n_ff_exp,
        n_shared,
        gating,
        norm_weights: g
            .get_bool(&k("expert_weights_norm"))?
            .unwrap_or(spec.expert_weights_norm),
        weights_scale: finite(
            "expert_weights_scale",
            g.get_f32(&k("expert_weights_scale"))?.unwrap_or(1.0),
            false,
        )?,
        n_group,
        n_group_used,
    })
}
