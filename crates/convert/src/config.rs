//! `config.json` → the hyperparameters the converter needs, for transformers 4.x (`rope_theta` + `rope_scaling`)
//! and 5.x (`rope_parameters`) spellings alike.

use crate::arch::{ArchSpec, AttentionKind, Moe};
use crate::hf::JsonFile;
use crate::ConvertError;

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
        /// What transformers multiplies sin and cos by: `attention_factor`, else mscale(factor, mscale) /
        /// mscale(factor, mscale_all_dim) when both are set, else mscale(factor, 1) ([`yarn_mscale`]).
        attention_factor: f64,
        /// Set and non-zero: DeepSeek's attention also scales q·k by yarn_mscale(factor, mscale_all_dim)².
        mscale_all_dim: Option<f64>,
    },
}

/// transformers' `get_mscale`: YaRN's magnitude correction, 1 for factors up to 1.
pub fn yarn_mscale(factor: f64, mscale: f64) -> f64 {
    if factor <= 1.0 {
        1.0
    } else {
        0.1 * mscale * factor.ln() + 1.0
    }
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

/// How a layer attends, with its sizes.
#[derive(Debug, Clone)]
pub enum Attention {
    Gqa {
        n_head_kv: usize,
        head_dim: usize,
        /// Set when config.json gives `head_dim` explicitly.
        explicit_head_dim: bool,
    },
    Mla(Mla),
}

#[derive(Debug, Clone)]
pub struct HfConfig {
    pub path: String,
    pub spec: &'static ArchSpec,
    pub n_vocab: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub attention: Attention,
    pub n_ff: usize,
    pub n_ctx: usize,
    pub rms_eps: f64,
    pub rope_theta: f64,
    pub rope_scaling: RopeScaling,
    pub tie_embeddings: bool,
    pub bos_token_id: Option<u32>,
    pub eos_token_id: Option<u32>,
    pub moe: Option<Moe>,
    /// BERT: rows of the token-type embedding (`type_vocab_size`).
    pub n_token_types: usize,
}

impl HfConfig {
    pub fn parse(f: &JsonFile) -> Result<HfConfig, ConvertError> {
        let hf_arch = match f.get("architectures").and_then(|a| a.get(0)) {
            Some(v) => v
                .as_str()
                .ok_or_else(|| f.bad("architectures", "a list of strings", v))?,
            None => f
                .opt_str("model_type")?
                .ok_or_else(|| f.missing("architectures"))?,
        };
        let spec = ArchSpec::for_hf(f, hf_arch)?;
        let n_embd = f.usize("hidden_size")?;
        let n_head = f.usize("num_attention_heads")?;
        let n_layer = f.usize("num_hidden_layers")?;
        let n_ctx = f.opt_usize("max_position_embeddings")?.unwrap_or(4096);
        let (rope_theta, rope_scaling) = rope(f, n_ctx)?;
        let token_id = |key: &str| -> Result<Option<u32>, ConvertError> {
            // eos_token_id may be a list (Llama 3.1): the first is the one GGUF records.
            match f.get(key) {
                Some(serde_json::Value::Array(a)) => {
                    Ok(a.first().and_then(|v| v.as_u64()).map(|v| v as u32))
                }
                _ => Ok(f.opt_usize(key)?.map(|v| v as u32)),
            }
        };
        let attention = match spec.attention {
            AttentionKind::Gqa => gqa(f, n_embd, n_head)?,
            AttentionKind::Mla => Attention::Mla(mla(f)?),
        };
        Ok(HfConfig {
            path: f.path.clone(),
            spec,
            n_vocab: f.usize("vocab_size")?,
            n_embd,
            n_layer,
            n_head,
            attention,
            n_ff: f.usize("intermediate_size")?,
            n_ctx,
            // BERT names its (layer) norm's epsilon differently.
            rms_eps: match f.opt_f64("rms_norm_eps")? {
                Some(e) => e,
                None => f.opt_f64("layer_norm_eps")?.unwrap_or(1e-6),
            },
            rope_theta,
            rope_scaling,
            tie_embeddings: f.opt_bool("tie_word_embeddings")?.unwrap_or(false),
            bos_token_id: token_id("bos_token_id")?,
            eos_token_id: token_id("eos_token_id")?,
            moe: spec.moe.map(|read| read(f, n_layer)).transpose()?,
            n_token_types: f.opt_usize("type_vocab_size")?.unwrap_or(0),
        })
    }
}

/// Grouped-query attention's sizes: `head_dim` if given, else n_embd / n_head.
fn gqa(f: &JsonFile, n_embd: usize, n_head: usize) -> Result<Attention, ConvertError> {
    let n_head_kv = f.opt_usize("num_key_value_heads")?.unwrap_or(n_head);
    let explicit = f.opt_usize("head_dim")?;
    let head_dim = match explicit {
        Some(h) => h,
        None => {
            if n_head == 0 || !n_embd.is_multiple_of(n_head) {
                return Err(f.bad("num_attention_heads", "a divisor of hidden_size", &n_head));
            }
            n_embd / n_head
        }
    };
    if n_head_kv == 0 || !n_head.is_multiple_of(n_head_kv) {
        return Err(f.bad(
            "num_key_value_heads",
            "a divisor of num_attention_heads",
            &n_head_kv,
        ));
    }
    Ok(Attention::Gqa {
        n_head_kv,
        head_dim,
        explicit_head_dim: explicit.is_some(),
    })
}

/// Latent attention's sizes. `q_lora_rank` absent or null: queries come straight from `q_proj`.
fn mla(f: &JsonFile) -> Result<Mla, ConvertError> {
    // transformers' DeepseekV3 rotates half-split pairs when `rope_interleave` is false; llama.cpp's deepseek2
    // (and the engine) rotate adjacent pairs.
    if f.opt_bool("rope_interleave")? == Some(false) {
        return Err(ConvertError::Unsupported {
            path: f.path.clone(),
            what: "rope_interleave false (half-split RoPE in latent attention) is not supported"
                .into(),
        });
    }
    Ok(Mla {
        q_lora_rank: f.opt_usize("q_lora_rank")?,
        kv_lora_rank: f.usize("kv_lora_rank")?,
        qk_nope_head_dim: f.usize("qk_nope_head_dim")?,
        qk_rope_head_dim: f.usize("qk_rope_head_dim")?,
        v_head_dim: f.usize("v_head_dim")?,
    })
}

/// `rope_theta` and the scaling, from `rope_scaling` (4.x) or `rope_parameters` (5.x, which also holds the theta).
fn rope(f: &JsonFile, n_ctx: usize) -> Result<(f64, RopeScaling), ConvertError> {
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
        "yarn" => {
            let original_ctx = orig("original_max_position_embeddings")?;
            // As transformers' `_compute_yarn_parameters` reads them: no factor means the context ratio, a zero
            // beta the default, and mscale only counts beside a non-zero mscale_all_dim.
            let factor = match num("factor")? {
                Some(x) => x,
                None if original_ctx > 0 => n_ctx as f64 / original_ctx as f64,
                None => return Err(f.missing(&format!("{outer}.factor"))),
            };
            if obj.get("truncate").and_then(|v| v.as_bool()) == Some(false) {
                return Err(ConvertError::Unsupported {
                    path: f.path.clone(),
                    what: format!("{outer}.truncate false is not supported"),
                });
            }
            let nonzero = |k: &str| -> Result<Option<f64>, ConvertError> {
                Ok(num(k)?.filter(|x| *x != 0.0))
            };
            let mscale_all_dim = nonzero("mscale_all_dim")?;
            let attention_factor =
                match (num("attention_factor")?, nonzero("mscale")?, mscale_all_dim) {
                    (Some(a), _, _) => a,
                    (None, Some(m), Some(d)) => yarn_mscale(factor, m) / yarn_mscale(factor, d),
                    _ => yarn_mscale(factor, 1.0),
                };
            RopeScaling::Yarn {
                factor,
                original_ctx,
                beta_fast: nonzero("beta_fast")?,
                beta_slow: nonzero("beta_slow")?,
                attention_factor,
                mscale_all_dim,
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn yarn(params: serde_json::Value) -> Result<RopeScaling, ConvertError> {
        let mut p =
            serde_json::json!({"rope_type": "yarn", "original_max_position_embeddings": 32});
        for (k, v) in params.as_object().unwrap() {
            p[k] = v.clone();
        }
        let f = JsonFile {
            path: "config.json".into(),
            root: serde_json::json!({"rope_theta": 10000.0, "rope_scaling": p}),
        };
        rope(&f, 128).map(|r| r.1)
    }

    fn attention_factor(r: RopeScaling) -> f64 {
        match r {
            RopeScaling::Yarn {
                attention_factor, ..
            } => attention_factor,
            other => panic!("{other:?}"),
        }
    }

    /// transformers' `_compute_yarn_parameters`, case by case (values computed by hand from its formulas).
    #[test]
    fn yarn_sin_cos_factor_as_transformers_computes_it() {
        let l4 = 4f64.ln();
        let close = |a: f64, b: f64| assert!((a - b).abs() < 1e-12, "{a} vs {b}");
        // mscale and mscale_all_dim both set: their ratio.
        let r = yarn(serde_json::json!({"factor": 4.0, "mscale": 1.0, "mscale_all_dim": 0.707}))
            .unwrap();
        close(attention_factor(r), (1.0 + 0.1 * l4) / (1.0 + 0.0707 * l4));
        // Equal: 1 (DeepSeek's released configs).
        let r = yarn(serde_json::json!({"factor": 4.0, "mscale": 0.707, "mscale_all_dim": 0.707}))
            .unwrap();
        close(attention_factor(r), 1.0);
        // mscale without mscale_all_dim does not count: mscale(factor, 1).
        let r = yarn(serde_json::json!({"factor": 4.0, "mscale": 0.5})).unwrap();
        close(attention_factor(r), 1.0 + 0.1 * l4);
        // An explicit attention_factor wins; no factor means the context ratio (128 / 32).
        let r = yarn(serde_json::json!({"attention_factor": 0.9})).unwrap();
        close(attention_factor(r.clone()), 0.9);
        assert!(matches!(r, RopeScaling::Yarn { factor, .. } if factor == 4.0));
        // truncate false is refused, not ignored.
        let e = yarn(serde_json::json!({"factor": 4.0, "truncate": false})).unwrap_err();
        assert!(e.to_string().contains("truncate"), "{e}");
    }

    #[test]
    fn half_split_rope_in_latent_attention_is_refused() {
        let mut root = serde_json::json!({
            "kv_lora_rank": 32, "qk_nope_head_dim": 16, "qk_rope_head_dim": 8, "v_head_dim": 16,
        });
        let f = |root: &serde_json::Value| JsonFile {
            path: "config.json".into(),
            root: root.clone(),
        };
        assert_eq!(mla(&f(&root)).unwrap().q_lora_rank, None);
        root["rope_interleave"] = true.into();
        assert!(mla(&f(&root)).is_ok());
        root["rope_interleave"] = false.into();
        let e = mla(&f(&root)).unwrap_err().to_string();
        assert!(e.contains("rope_interleave"), "{e}");
    }
}
