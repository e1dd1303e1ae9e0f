//! `config.json` → the hyperparameters the converter needs, for transformers 4.x (`rope_theta` + `rope_scaling`)
//! and 5.x (`rope_parameters`) spellings alike.

use crate::hf::JsonFile;
use crate::ConvertError;

/// The llama.cpp architectures this converter writes, with the Hugging Face names that map to them.
pub const SUPPORTED: &[(&str, &str)] = &[
    ("LlamaForCausalLM", "llama"),
    ("Qwen2ForCausalLM", "qwen2"),
    ("Qwen3ForCausalLM", "qwen3"),
    ("Qwen3MoeForCausalLM", "qwen3moe"),
    ("DeepseekV2ForCausalLM", "deepseek2"),
    ("DeepseekV3ForCausalLM", "deepseek2"),
];

/// RoPE scaling as the checkpoint declares it.
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    None,
    Linear {
        factor: f64,
    },
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_ctx: usize,
    },
    Yarn {
        factor: f64,
        original_ctx: usize,
        beta_fast: Option<f64>,
        beta_slow: Option<f64>,
        mscale_all_dim: Option<f64>,
    },
}

/// Multi-head latent attention sizes (DeepSeek-V2/V3).
#[derive(Debug, Clone)]
pub struct Mla {
    pub q_lora_rank: Option<usize>,
    pub kv_lora_rank: usize,
    pub qk_nope_head_dim: usize,
    pub qk_rope_head_dim: usize,
    pub v_head_dim: usize,
}

/// Mixture-of-experts sizes and routing.
#[derive(Debug, Clone)]
pub struct Moe {
    pub n_expert: usize,
    pub n_expert_used: usize,
    pub n_ff_exp: usize,
    pub n_shared: usize,
    pub norm_topk_prob: bool,
    /// DeepSeek: layers before this one are dense.
    pub leading_dense: usize,
    /// Qwen-MoE: layers listed here (or not on the sparse step) are dense.
    pub dense_layers: Vec<usize>,
    pub weights_scale: Option<f64>,
    /// 1 = softmax, 2 = sigmoid (llama.cpp's `expert_gating_func`).
    pub gating_func: Option<u32>,
    pub n_group: Option<usize>,
    pub topk_group: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct HfConfig {
    pub path: String,
    /// llama.cpp's architecture name.
    pub arch: &'static str,
    pub hf_arch: String,
    pub n_vocab: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    /// Set when config.json gives `head_dim` explicitly.
    pub explicit_head_dim: bool,
    pub n_ff: usize,
    pub n_ctx: usize,
    pub rms_eps: f64,
    pub rope_theta: f64,
    pub rope_scaling: RopeScaling,
    pub tie_embeddings: bool,
    pub bos_token_id: Option<u32>,
    pub eos_token_id: Option<u32>,
    pub moe: Option<Moe>,
    pub mla: Option<Mla>,
}

impl HfConfig {
    pub fn parse(f: &JsonFile) -> Result<HfConfig, ConvertError> {
        let hf_arch = match f.get("architectures").and_then(|a| a.get(0)) {
            Some(v) => v
                .as_str()
                .ok_or_else(|| ConvertError::BadKey {
                    path: f.path.clone(),
                    key: "architectures".into(),
                    expected: "a list of strings",
                    found: v.to_string(),
                })?
                .to_string(),
            None => f
                .opt_str("model_type")?
                .ok_or_else(|| f.missing("architectures"))?
                .to_string(),
        };
        let arch = SUPPORTED
            .iter()
            .find(|(hf, _)| *hf == hf_arch)
            .map(|(_, a)| *a)
            .ok_or_else(|| ConvertError::UnsupportedArchitecture {
                path: f.path.clone(),
                arch: hf_arch.clone(),
                supported: SUPPORTED
                    .iter()
                    .map(|(h, _)| *h)
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        let n_embd = f.usize("hidden_size")?;
        let n_head = f.usize("num_attention_heads")?;
        let n_head_kv = f.opt_usize("num_key_value_heads")?.unwrap_or(n_head);
        let explicit_head_dim = f.get("head_dim").is_some() && arch != "deepseek2";
        let head_dim = match f.opt_usize("head_dim")? {
            Some(h) if arch != "deepseek2" => h,
            _ => {
                if n_head == 0 || n_embd % n_head != 0 {
                    return Err(ConvertError::BadKey {
                        path: f.path.clone(),
                        key: "num_attention_heads".into(),
                        expected: "a divisor of hidden_size",
                        found: n_head.to_string(),
                    });
                }
                n_embd / n_head
            }
        };
        if n_head_kv == 0 || n_head % n_head_kv != 0 {
            return Err(ConvertError::BadKey {
                path: f.path.clone(),
                key: "num_key_value_heads".into(),
                expected: "a divisor of num_attention_heads",
                found: n_head_kv.to_string(),
            });
        }
        let n_layer = f.usize("num_hidden_layers")?;
        let (rope_theta, rope_scaling) = rope(f)?;
        let token_id = |key: &str| -> Result<Option<u32>, ConvertError> {
            // eos_token_id may be a list (Llama 3.1): the first is the one GGUF records.
            match f.get(key) {
                Some(serde_json::Value::Array(a)) => {
                    Ok(a.first().and_then(|v| v.as_u64()).map(|v| v as u32))
                }
                _ => Ok(f.opt_usize(key)?.map(|v| v as u32)),
            }
        };
        let moe = match arch {
            "qwen3moe" => {
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
                Some(Moe {
                    // transformers 4.x and the Hub say num_experts; 5.x writes num_local_experts.
                    n_expert: match f.opt_usize("num_experts")? {
                        Some(n) => n,
                        None => f.usize("num_local_experts")?,
                    },
                    n_expert_used: f.usize("num_experts_per_tok")?,
                    n_ff_exp: f.usize("moe_intermediate_size")?,
                    n_shared: 0,
                    norm_topk_prob: f.opt_bool("norm_topk_prob")?.unwrap_or(false),
                    leading_dense: 0,
                    dense_layers: (0..n_layer)
                        .filter(|il| only.contains(il) || (il + 1) % step != 0)
                        .collect(),
                    weights_scale: None,
                    gating_func: None,
                    n_group: None,
                    topk_group: None,
                })
            }
            "deepseek2" => Some(Moe {
                n_expert: f.usize("n_routed_experts")?,
                n_expert_used: f.usize("num_experts_per_tok")?,
                n_ff_exp: f.usize("moe_intermediate_size")?,
                n_shared: f.opt_usize("n_shared_experts")?.unwrap_or(0),
                norm_topk_prob: f.opt_bool("norm_topk_prob")?.unwrap_or(false),
                leading_dense: f.opt_usize("first_k_dense_replace")?.unwrap_or(0),
                dense_layers: Vec::new(),
                weights_scale: f.opt_f64("routed_scaling_factor")?,
                gating_func: Some(match f.opt_str("scoring_func")? {
                    Some("softmax") => 1,
                    Some("sigmoid") => 2,
                    None if hf_arch == "DeepseekV2ForCausalLM" => 1,
                    None => 2,
                    Some(other) => {
                        return Err(ConvertError::BadKey {
                            path: f.path.clone(),
                            key: "scoring_func".into(),
                            expected: "\"softmax\" or \"sigmoid\"",
                            found: other.into(),
                        })
                    }
                }),
                // DeepSeek-V2's `topk_method: greedy` ignores any group settings.
                n_group: match f.opt_str("topk_method")? {
                    Some("greedy") => None,
                    _ => f.opt_usize("n_group")?,
                },
                topk_group: f.opt_usize("topk_group")?,
            }),
            _ => None,
        };
        let mla = match arch {
            "deepseek2" => Some(Mla {
                q_lora_rank: f.opt_usize("q_lora_rank")?,
                kv_lora_rank: f.usize("kv_lora_rank")?,
                qk_nope_head_dim: f.usize("qk_nope_head_dim")?,
                qk_rope_head_dim: f.usize("qk_rope_head_dim")?,
                v_head_dim: f.usize("v_head_dim")?,
            }),
            _ => None,
        };
        Ok(HfConfig {
            path: f.path.clone(),
            arch,
            hf_arch,
            n_vocab: f.usize("vocab_size")?,
            n_embd,
            n_layer,
            n_head,
            n_head_kv,
            head_dim,
            explicit_head_dim,
            n_ff: f.usize("intermediate_size")?,
            n_ctx: f.opt_usize("max_position_embeddings")?.unwrap_or(4096),
            rms_eps: f.opt_f64("rms_norm_eps")?.unwrap_or(1e-6),
            rope_theta,
            rope_scaling,
            tie_embeddings: f.opt_bool("tie_word_embeddings")?.unwrap_or(false),
            bos_token_id: token_id("bos_token_id")?,
            eos_token_id: token_id("eos_token_id")?,
            moe,
            mla,
        })
    }
}

/// `rope_theta` and the scaling, from `rope_scaling` (4.x) or `rope_parameters` (5.x, which also holds the theta).
fn rope(f: &JsonFile) -> Result<(f64, RopeScaling), ConvertError> {
    let (obj, outer) = match (f.get("rope_parameters"), f.get("rope_scaling")) {
        (Some(p), _) => (Some(p), "rope_parameters"),
        (None, Some(s)) => (Some(s), "rope_scaling"),
        (None, None) => (None, "rope_scaling"),
    };
    let mut theta = f.opt_f64("rope_theta")?;
    let Some(obj) = obj else {
        return Ok((theta.unwrap_or(10_000.0), RopeScaling::None));
    };
    if !obj.is_object() {
        return Err(ConvertError::BadKey {
            path: f.path.clone(),
            key: outer.into(),
            expected: "an object",
            found: obj.to_string(),
        });
    }
    if let Some(t) = f.nested_f64(obj, outer, "rope_theta")? {
        theta = Some(t);
    }
    let ty = obj
        .get("rope_type")
        .or_else(|| obj.get("type"))
        .and_then(|v| v.as_str())
        .unwrap_or("default");
    let num = |k: &str| f.nested_f64(obj, outer, k);
    let need = |k: &str| -> Result<f64, ConvertError> {
        num(k)?.ok_or_else(|| f.missing(&format!("{outer}.{k}")))
    };
    let orig = |k: &str| -> Result<usize, ConvertError> { Ok(need(k)? as usize) };
    let scaling = match ty {
        "default" | "none" => RopeScaling::None,
        "linear" => RopeScaling::Linear {
            factor: need("factor")?,
        },
        "llama3" => RopeScaling::Llama3 {
            factor: need("factor")?,
            low_freq_factor: need("low_freq_factor")?,
            high_freq_factor: need("high_freq_factor")?,
            original_ctx: orig("original_max_position_embeddings")?,
        },
        "yarn" => RopeScaling::Yarn {
            factor: need("factor")?,
            original_ctx: orig("original_max_position_embeddings")?,
            beta_fast: num("beta_fast")?,
            beta_slow: num("beta_slow")?,
            mscale_all_dim: num("mscale_all_dim")?,
        },
        other => {
            return Err(ConvertError::Unsupported {
                path: f.path.clone(),
                what: format!(
                "{outer}.rope_type {other:?} is not supported (default, linear, llama3, yarn are)"
            ),
            })
        }
    };
    Ok((theta.unwrap_or(10_000.0), scaling))
}
