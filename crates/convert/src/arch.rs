//! The architectures this converter writes, one row each in [`ARCHS`], as the engine's `ArchSpec` table: llama.cpp's
//! name, the kind of attention, the few facts its config.json and weights do not say, and the one thing that is
//! really its own, how its router reads config.json ([`Moe`]). Everything else (metadata keys, tensor names, weight
//! rewrites) is the same for all and lives in `plan.rs`.
//!
//! Each routing reader follows transformers' modeling code for that class, field by field, rather than inferring a
//! model generation from which weights exist: what transformers does not read, the GGUF does not claim, and a field
//! that says what transformers would not do is refused.

use crate::hf::JsonFile;
use crate::ConvertError;

/// What a Hugging Face architecture is, beyond what its config.json and weights say.
#[derive(Debug)]
pub struct ArchSpec {
    /// Hugging Face's class name (`architectures[0]` in config.json).
    pub hf: &'static str,
    /// llama.cpp's architecture name (`general.architecture`).
    pub arch: &'static str,
    pub attention: AttentionKind,
    /// q/k rows are permuted so llama.cpp's adjacent-pair RoPE for this architecture equals HF's half-split one.
    pub permute_qk: bool,
    /// q/k/v biases may be present (llama.cpp's graph for the architecture adds them).
    pub qkv_bias: bool,
    /// Routed experts: how this class's router reads config.json. `None`: a dense model.
    pub moe: Option<MoeReader>,
    /// YaRN's `mscale_all_dim` scales q·k (DeepSeek's attention), written as `rope.scaling.yarn_log_multiplier`.
    pub yarn_mscale_in_attn: bool,
    /// How the checkpoint's tensors are laid out and named.
    pub body: Body,
}

/// The two checkpoint layouts: a decoder (`model.layers.N.self_attn.*`, pre-norm, RoPE, byte-level BPE), or a
/// BERT encoder (`encoder.layer.N.attention.*`, learned positions and token types, post-LayerNorm with biases,
/// WordPiece, a sentence-transformers pooling config) whose plan, keys and vocabulary are in `bert.rs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    Decoder,
    Bert,
}

/// Reads an architecture's routed experts from config.json, given the layer count.
pub type MoeReader = fn(&JsonFile, usize) -> Result<Moe, ConvertError>;

/// How a layer attends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttentionKind {
    /// Grouped-query attention: q/k/v/o projections, `head_dim` from config.json or n_embd / n_head.
    Gqa,
    /// Multi-head latent attention (DeepSeek-V2/V3): config.json's `head_dim` is the RoPE width, not the head's.
    Mla,
}

/// The common case the rows start from: a dense model with grouped-query attention.
const DENSE: ArchSpec = ArchSpec {
    hf: "",
    arch: "",
    attention: AttentionKind::Gqa,
    permute_qk: false,
    qkv_bias: true,
    moe: None,
    yarn_mscale_in_attn: false,
    body: Body::Decoder,
};

/// The architectures this converter writes.
pub const ARCHS: &[ArchSpec] = &[
    ArchSpec {
        hf: "LlamaForCausalLM",
        arch: "llama",
        permute_qk: true,
        qkv_bias: false,
        ..DENSE
    },
    ArchSpec {
        hf: "Qwen2ForCausalLM",
        arch: "qwen2",
        ..DENSE
    },
    ArchSpec {
        hf: "Qwen3ForCausalLM",
        arch: "qwen3",
        ..DENSE
    },
    ArchSpec {
        hf: "Qwen3MoeForCausalLM",
        arch: "qwen3moe",
        moe: Some(qwen3_moe),
        ..DENSE
    },
    ArchSpec {
        hf: "BertModel",
        arch: "bert",
        body: Body::Bert,
        ..DENSE
    },
    ArchSpec {
        hf: "DeepseekV2ForCausalLM",
        arch: "deepseek2",
        attention: AttentionKind::Mla,
        moe: Some(deepseek_v2_moe),
        yarn_mscale_in_attn: true,
        ..DENSE
    },
    ArchSpec {
        hf: "DeepseekV3ForCausalLM",
        arch: "deepseek2",
        attention: AttentionKind::Mla,
        moe: Some(deepseek_v3_moe),
        yarn_mscale_in_attn: true,
        ..DENSE
    },
];

impl ArchSpec {
    pub fn for_hf(f: &JsonFile, hf: &str) -> Result<&'static ArchSpec, ConvertError> {
        ARCHS
            .iter()
            .find(|s| s.hf == hf)
            .ok_or_else(|| ConvertError::UnsupportedArchitecture {
                path: f.path.clone(),
                arch: hf.into(),
                supported: ARCHS.iter().map(|s| s.hf).collect::<Vec<_>>().join(", "),
            })
    }
}

/// How a router turns its logits into expert probabilities (llama.cpp's `expert_gating_func`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gating {
    Softmax = 1,
    Sigmoid = 2,
}

/// Routed experts as llama.cpp's keys describe them.
#[derive(Debug, Clone)]
pub struct Moe {
    pub n_expert: usize,
    pub n_expert_used: usize,
    pub n_ff_exp: usize,
    /// Always-on shared experts, one FFN of width `n_shared * n_ff_exp` (`mlp.shared_experts`).
    pub n_shared: usize,
    pub gating: Gating,
    /// The chosen experts' weights are normalised to sum 1 (before `weights_scale`).
    pub norm_weights: bool,
    pub weights_scale: f64,
    /// Group-limited routing: (groups, groups kept).
    pub groups: Option<(usize, usize)>,
    /// Layers with a dense feed-forward instead of experts.
    pub dense_layers: Vec<usize>,
}

/// Refuses `scoring_func` unless it names the gating the class's router applies regardless.
fn check_scoring(f: &JsonFile, gating: Gating) -> Result<(), ConvertError> {
    let want = match gating {
        Gating::Softmax => "softmax",
        Gating::Sigmoid => "sigmoid",
    };
    match f.opt_str("scoring_func")? {
        Some(s) if s != want => Err(ConvertError::Unsupported {
            path: f.path.clone(),
            what: format!("scoring_func {s:?}: this architecture's router always uses {want}"),
        }),
        _ => Ok(()),
    }
}

/// DeepSeek's experts: `first_k_dense_replace` dense layers, then routed plus `n_shared_experts` shared ones.
/// `defaults`: the class's (n_shared_experts, first_k_dense_replace) when config.json omits them.
fn deepseek_moe(
    f: &JsonFile,
    n_layer: usize,
    gating: Gating,
    defaults: (usize, usize),
) -> Result<Moe, ConvertError> {
    check_scoring(f, gating)?;
    let leading = f.opt_usize("first_k_dense_replace")?.unwrap_or(defaults.1);
    Ok(Moe {
        n_expert: f.usize("n_routed_experts")?,
        n_expert_used: f.usize("num_experts_per_tok")?,
        n_ff_exp: f.usize("moe_intermediate_size")?,
        n_shared: f.opt_usize("n_shared_experts")?.unwrap_or(defaults.0),
        gating,
        norm_weights: false,
        weights_scale: f.opt_f64("routed_scaling_factor")?.unwrap_or(1.0),
        groups: None,
        dense_layers: (0..leading.min(n_layer)).collect(),
    })
}

/// transformers' `DeepseekV2TopkRouter`: softmax; `topk_method` greedy (n_group/topk_group unread) or
/// group_limited_greedy (a group scores its best expert); the weights are the chosen probabilities times
/// `routed_scaling_factor`, never normalised: the router does not read `norm_topk_prob` (DeepSeek's own modeling
/// code would, and would then skip the scaling; no released V2 sets it).
fn deepseek_v2_moe(f: &JsonFile, n_layer: usize) -> Result<Moe, ConvertError> {
    let mut m = deepseek_moe(f, n_layer, Gating::Softmax, (2, 0))?;
    m.groups = match f.opt_str("topk_method")?.unwrap_or("greedy") {
        "greedy" => None,
        "group_limited_greedy" => Some((f.usize("n_group")?, f.usize("topk_group")?)),
        other => {
            return Err(ConvertError::Unsupported {
                path: f.path.clone(),
                what: format!(
                    "topk_method {other:?} (DeepseekV2 routes greedy or group_limited_greedy)"
                ),
            })
        }
    };
    Ok(m)
}

/// transformers' `DeepseekV3TopkRouter`: sigmoid, choice biased by `e_score_correction_bias`, always grouped (a
/// group scores the sum of its two best), normalised if `norm_topk_prob`, times `routed_scaling_factor`.
/// `topk_method` is not read.
fn deepseek_v3_moe(f: &JsonFile, n_layer: usize) -> Result<Moe, ConvertError> {
    let mut m = deepseek_moe(f, n_layer, Gating::Sigmoid, (1, 3))?;
    m.groups = Some((
        f.opt_usize("n_group")?.unwrap_or(8),
        f.opt_usize("topk_group")?.unwrap_or(4),
    ));
    m.norm_weights = f.opt_bool("norm_topk_prob")?.unwrap_or(true);
    m.weights_scale = f.opt_f64("routed_scaling_factor")?.unwrap_or(2.5);
    Ok(m)
}

/// transformers' Qwen3-MoE: softmax, top-k normalised if `norm_topk_prob`; layers in `mlp_only_layers` or off the
/// `decoder_sparse_step` are dense.
fn qwen3_moe(f: &JsonFile, n_layer: usize) -> Result<Moe, ConvertError> {
    check_scoring(f, Gating::Softmax)?;
    let step = f.opt_usize("decoder_sparse_step")?.unwrap_or(1).max(1);
    let only: Vec<usize> = f
        .get("mlp_only_layers")
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_u64().map(|x| x as usize))
                .collect()
        })
        .unwrap_or_default();
    Ok(Moe {
        // transformers 4.x and the Hub say num_experts; 5.x writes num_local_experts.
        n_expert: match f.opt_usize("num_experts")? {
            Some(n) => n,
            None => f.usize("num_local_experts")?,
        },
        n_expert_used: f.usize("num_experts_per_tok")?,
        n_ff_exp: f.usize("moe_intermediate_size")?,
        n_shared: 0,
        gating: Gating::Softmax,
        norm_weights: f.opt_bool("norm_topk_prob")?.unwrap_or(false),
        weights_scale: 1.0,
        groups: None,
        dense_layers: (0..n_layer)
            .filter(|il| only.contains(il) || (il + 1) % step != 0)
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(extra: serde_json::Value) -> JsonFile {
        let mut root = serde_json::json!({
            "n_routed_experts": 8, "num_experts_per_tok": 2, "moe_intermediate_size": 32,
            "first_k_dense_replace": 1, "n_shared_experts": 1, "routed_scaling_factor": 2.0,
        });
        for (k, v) in extra.as_object().unwrap() {
            root[k] = v.clone();
        }
        JsonFile {
            path: "config.json".into(),
            root,
        }
    }

    #[test]
    fn deepseek_v2_reads_topk_method_and_ignores_norm_topk_prob() {
        let greedy = cfg(serde_json::json!({
            "topk_method": "greedy", "n_group": 4, "topk_group": 2, "norm_topk_prob": true,
        }));
        let m = deepseek_v2_moe(&greedy, 3).unwrap();
        assert_eq!(
            m.groups, None,
            "greedy routing does not read n_group/topk_group"
        );
        assert!(
            !m.norm_weights,
            "DeepseekV2's router does not read norm_topk_prob"
        );
        assert_eq!((m.gating, m.weights_scale), (Gating::Softmax, 2.0));
        assert_eq!(m.dense_layers, vec![0]);

        let grouped = cfg(serde_json::json!({
            "topk_method": "group_limited_greedy", "n_group": 4, "topk_group": 2,
        }));
        assert_eq!(deepseek_v2_moe(&grouped, 3).unwrap().groups, Some((4, 2)));

        let other = cfg(serde_json::json!({"topk_method": "noaux_tc"}));
        let e = deepseek_v2_moe(&other, 3).unwrap_err().to_string();
        assert!(e.contains("noaux_tc"), "{e}");
    }

    #[test]
    fn deepseek_v3_reads_norm_topk_prob_and_always_groups() {
        let c = cfg(serde_json::json!({
            "topk_method": "greedy", "n_group": 4, "topk_group": 2, "norm_topk_prob": false,
        }));
        let m = deepseek_v3_moe(&c, 3).unwrap();
        assert_eq!(
            m.groups,
            Some((4, 2)),
            "DeepseekV3's router does not read topk_method"
        );
        assert!(!m.norm_weights);
        assert_eq!(m.gating, Gating::Sigmoid);
        let c = cfg(serde_json::json!({"n_group": 4, "topk_group": 2}));
        assert!(
            deepseek_v3_moe(&c, 3).unwrap().norm_weights,
            "transformers' default"
        );
    }

    #[test]
    fn scoring_func_the_router_does_not_apply_is_refused() {
        let c = cfg(serde_json::json!({"scoring_func": "sigmoid"}));
        let e = deepseek_v2_moe(&c, 3).unwrap_err().to_string();
        assert!(e.contains("scoring_func") && e.contains("softmax"), "{e}");
        let c = cfg(serde_json::json!({"scoring_func": "softmax", "n_group": 4, "topk_group": 2}));
        assert!(deepseek_v3_moe(&c, 3).is_err());
        let c = cfg(serde_json::json!({"scoring_func": "sigmoid", "n_group": 4, "topk_group": 2}));
        assert!(deepseek_v3_moe(&c, 3).is_ok());
    }

    #[test]
    fn every_row_names_a_distinct_hf_class() {
        let mut names: Vec<&str> = ARCHS.iter().map(|s| s.hf).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), ARCHS.len());
        assert!(ARCHS.iter().all(|s| !s.arch.is_empty()));
    }
}
