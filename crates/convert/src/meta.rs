//! llama.cpp's `{arch}.*` metadata keys for a checkpoint, the same rules for every architecture.

use crate::config::{Attention, HfConfig, RopeScaling};
use hearth_gguf::MetaValue;

fn u32v(x: usize) -> MetaValue {
    MetaValue::U32(x as u32)
}

fn f32v(x: f64) -> MetaValue {
    MetaValue::F32(x as f32)
}

/// llama.cpp's `{arch}.*` keys for `c`.
pub fn metadata(c: &HfConfig) -> Vec<(String, MetaValue)> {
    let a = c.spec.arch;
    let mut meta: Vec<(String, MetaValue)> = Vec::new();
    let mut kv = |k: &str, v: MetaValue| meta.push((format!("{a}.{k}"), v));
    kv("vocab_size", u32v(c.n_vocab));
    kv("context_length", u32v(c.n_ctx));
    kv("embedding_length", u32v(c.n_embd));
    kv("block_count", u32v(c.n_layer));
    kv("feed_forward_length", u32v(c.n_ff));
    kv("attention.head_count", u32v(c.n_head));
    kv("rope.freq_base", f32v(c.rope_theta));
    kv("attention.layer_norm_rms_epsilon", f32v(c.rms_eps));
    match &c.attention {
        Attention::Mla(m) => {
            // llama.cpp's absorbed layout: one shared "KV head" holding the latent (++ the RoPE part of the key).
            kv("attention.head_count_kv", u32v(1));
            if let Some(q) = m.q_lora_rank {
                kv("attention.q_lora_rank", u32v(q));
            }
            kv("attention.kv_lora_rank", u32v(m.kv_lora_rank));
            kv(
                "attention.key_length",
                u32v(m.kv_lora_rank + m.qk_rope_head_dim),
            );
            kv("attention.value_length", u32v(m.kv_lora_rank));
            kv(
                "attention.key_length_mla",
                u32v(m.qk_nope_head_dim + m.qk_rope_head_dim),
            );
            kv("attention.value_length_mla", u32v(m.v_head_dim));
            kv("rope.dimension_count", u32v(m.qk_rope_head_dim));
        }
        Attention::Gqa {
            n_head_kv,
            head_dim,
            explicit_head_dim,
        } => {
            kv("attention.head_count_kv", u32v(*n_head_kv));
            if *explicit_head_dim {
                kv("attention.key_length", u32v(*head_dim));
                kv("attention.value_length", u32v(*head_dim));
            }
            kv("rope.dimension_count", u32v(*head_dim));
        }
    }
    if let Some(m) = &c.moe {
        kv("expert_count", u32v(m.n_expert));
        kv("expert_used_count", u32v(m.n_expert_used));
        kv("expert_feed_forward_length", u32v(m.n_ff_exp));
        kv("expert_shared_count", u32v(m.n_shared));
        kv("expert_gating_func", MetaValue::U32(m.gating as u32));
        kv("expert_weights_norm", MetaValue::Bool(m.norm_weights));
        kv("expert_weights_scale", f32v(m.weights_scale));
        if let Some((n, used)) = m.groups {
            kv("expert_group_count", u32v(n));
            kv("expert_group_used_count", u32v(used));
        }
        let k = m.dense_layers.len();
        if m.dense_layers.iter().copied().eq(0..k) {
            kv("leading_dense_block_count", u32v(k));
        }
    }
    match &c.rope_scaling {
        RopeScaling::None | RopeScaling::Llama3 { .. } => {}
        RopeScaling::Linear { factor } => {
            kv("rope.scaling.type", MetaValue::Str("linear".into()));
            kv("rope.scaling.factor", f32v(*factor));
        }
        RopeScaling::Yarn {
            factor,
            original_ctx,
            beta_fast,
            beta_slow,
            attention_factor,
            mscale_all_dim,
        } => {
            kv("rope.scaling.type", MetaValue::Str("yarn".into()));
            kv("rope.scaling.factor", f32v(*factor));
            kv("rope.scaling.original_context_length", u32v(*original_ctx));
            if let Some(b) = beta_fast {
                kv("rope.scaling.yarn_beta_fast", f32v(*b));
            }
            if let Some(b) = beta_slow {
                kv("rope.scaling.yarn_beta_slow", f32v(*b));
            }
            if c.spec.yarn_mscale_in_attn {
                // llama.cpp's deepseek2 (and the engine) scale q·k by (1 + log_mul ln factor)² and leave sin/cos
                // at 1; transformers scales q·k by yarn_mscale(factor, mscale_all_dim)². Its sin/cos factor is
                // folded into the RoPE rows of the weights (`mla_tensors`).
                let log_mul = match mscale_all_dim {
                    Some(m) if *factor > 1.0 => 0.1 * m,
                    _ => 0.0,
                };
                kv("rope.scaling.yarn_log_multiplier", f32v(log_mul));
            } else {
                // llama.cpp multiplies sin/cos by attn_factor (1 + 0.1 ln factor).
                let af = attention_factor / (1.0 + 0.1 * factor.ln());
                if (af - 1.0).abs() > 1e-7 {
                    kv("rope.scaling.attn_factor", f32v(af));
                }
            }
        }
    }
    meta
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hf::JsonFile;

    fn keys(arch: &str, rope_scaling: serde_json::Value) -> Vec<(String, MetaValue)> {
        let root = serde_json::json!({
            "architectures": [arch], "vocab_size": 384, "hidden_size": 64, "intermediate_size": 128,
            "num_attention_heads": 4, "num_hidden_layers": 2, "max_position_embeddings": 128,
            "rope_theta": 10000.0, "rope_scaling": rope_scaling,
            "n_routed_experts": 8, "num_experts_per_tok": 2, "moe_intermediate_size": 32,
            "kv_lora_rank": 32, "qk_nope_head_dim": 16, "qk_rope_head_dim": 8, "v_head_dim": 16,
        });
        let f = JsonFile {
            path: "config.json".into(),
            root,
        };
        metadata(&HfConfig::parse(&f).unwrap())
    }

    fn f32_key(meta: &[(String, MetaValue)], key: &str) -> Option<f32> {
        meta.iter().find(|(k, _)| k == key).map(|(_, v)| match v {
            MetaValue::F32(x) => *x,
            other => panic!("{key}: {other:?}"),
        })
    }

    /// The engine (as llama.cpp) multiplies sin/cos by attn_factor (1 + 0.1 ln factor): the key makes the product
    /// transformers' factor, and is left out where that is already so.
    #[test]
    fn yarn_sin_cos_factor_becomes_attn_factor() {
        let yarn = |extra: serde_json::Value| {
            let mut y = serde_json::json!({"rope_type": "yarn", "factor": 4.0,
                "original_max_position_embeddings": 32});
            for (k, v) in extra.as_object().unwrap() {
                y[k] = v.clone();
            }
            y
        };
        let m = keys("Qwen2ForCausalLM", yarn(serde_json::json!({})));
        assert_eq!(f32_key(&m, "qwen2.rope.scaling.attn_factor"), None);
        let m = keys(
            "Qwen2ForCausalLM",
            yarn(serde_json::json!({"attention_factor": 1.0})),
        );
        let want = 1.0 / (1.0 + 0.1 * 4f64.ln());
        let got = f32_key(&m, "qwen2.rope.scaling.attn_factor").unwrap();
        assert!((got as f64 - want).abs() < 1e-6, "{got} vs {want}");
        // DeepSeek: q·k's scale from mscale_all_dim, no attn_factor (its sin/cos factor goes into the weights).
        let m = keys(
            "DeepseekV2ForCausalLM",
            yarn(serde_json::json!({"mscale": 1.0, "mscale_all_dim": 0.707})),
        );
        let got = f32_key(&m, "deepseek2.rope.scaling.yarn_log_multiplier").unwrap();
        assert!((got - 0.0707).abs() < 1e-7, "{got}");
        assert_eq!(f32_key(&m, "deepseek2.rope.scaling.attn_factor"), None);
    }
}
