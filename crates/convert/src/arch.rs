//! Per-architecture plan: llama.cpp's metadata keys and the GGUF tensors to write, each with where its data comes
//! from in the checkpoint (copied, permuted for adjacent-pair RoPE, experts stacked, MLA's kv_b split, computed).

use crate::config::{HfConfig, RopeScaling};
use crate::hf::Checkpoint;
use crate::ConvertError;
use hearth_gguf::MetaValue;

/// Where a GGUF tensor's f32 data comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// The checkpoint tensor as is.
    Copy(String),
    /// q/k rows reordered so llama.cpp's adjacent-pair RoPE equals HF's half-split RoPE (llama.cpp's `permute`).
    PermuteRope { name: String, n_head: usize },
    /// Expert matrices stacked into one 3-D tensor (n_expert, rows, cols).
    Stack(Vec<String>),
    /// MLA `kv_b_proj` (n_head * (nope + v), kv_lora): the key part per head, transposed: (n_head, kv_lora, nope).
    KvbKeys {
        name: String,
        n_head: usize,
        nope: usize,
        v: usize,
    },
    /// MLA `kv_b_proj`: the value part per head: (n_head, v, kv_lora).
    KvbValues {
        name: String,
        n_head: usize,
        nope: usize,
        v: usize,
    },
    /// Computed at conversion time (Llama-3 RoPE frequency factors).
    Data(Vec<f32>),
}

/// A GGUF tensor to write. `shape` is outermost first (PyTorch order); GGUF dims are its reverse.
#[derive(Debug, Clone)]
pub struct Planned {
    pub name: String,
    pub shape: Vec<usize>,
    pub source: Source,
}

pub struct Plan {
    pub meta: Vec<(String, MetaValue)>,
    pub tensors: Vec<Planned>,
}

struct Builder<'a> {
    ck: &'a Checkpoint,
    tensors: Vec<Planned>,
    used: Vec<String>,
}

impl Builder<'_> {
    /// Copies `hf` as `gguf`, checking its shape.
    fn copy(&mut self, hf: &str, gguf: &str, shape: &[usize]) -> Result<(), ConvertError> {
        self.ck.check_shape(hf, shape)?;
        self.used.push(hf.into());
        self.tensors.push(Planned {
            name: gguf.into(),
            shape: shape.to_vec(),
            source: Source::Copy(hf.into()),
        });
        Ok(())
    }

    /// Copies `hf` when the checkpoint has it.
    fn opt(&mut self, hf: &str, gguf: &str, shape: &[usize]) -> Result<(), ConvertError> {
        if self.ck.has(hf) {
            self.copy(hf, gguf, shape)?;
        }
        Ok(())
    }

    fn permuted(
        &mut self,
        hf: &str,
        gguf: &str,
        shape: &[usize],
        n_head: usize,
    ) -> Result<(), ConvertError> {
        self.ck.check_shape(hf, shape)?;
        self.used.push(hf.into());
        self.tensors.push(Planned {
            name: gguf.into(),
            shape: shape.to_vec(),
            source: Source::PermuteRope {
                name: hf.into(),
                n_head,
            },
        });
        Ok(())
    }

    fn stack(&mut self, hfs: Vec<String>, gguf: &str, shape: &[usize]) -> Result<(), ConvertError> {
        for h in &hfs {
            self.ck.check_shape(h, shape)?;
            self.used.push(h.clone());
        }
        let mut full = vec![hfs.len()];
        full.extend(shape);
        self.tensors.push(Planned {
            name: gguf.into(),
            shape: full,
            source: Source::Stack(hfs),
        });
        Ok(())
    }
}

fn u32v(x: usize) -> MetaValue {
    MetaValue::U32(x as u32)
}

fn f32v(x: f64) -> MetaValue {
    MetaValue::F32(x as f32)
}

/// Builds the metadata (architecture part) and the tensor plan for `c` over checkpoint `ck`.
pub fn plan(c: &HfConfig, ck: &Checkpoint) -> Result<Plan, ConvertError> {
    let a = c.arch;
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
    if let Some(m) = &c.mla {
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
    } else {
        kv("attention.head_count_kv", u32v(c.n_head_kv));
        if c.explicit_head_dim {
            kv("attention.key_length", u32v(c.head_dim));
            kv("attention.value_length", u32v(c.head_dim));
        }
        kv("rope.dimension_count", u32v(c.head_dim));
    }
    if let Some(m) = &c.moe {
        kv("expert_count", u32v(m.n_expert));
        kv("expert_used_count", u32v(m.n_expert_used));
        kv("expert_feed_forward_length", u32v(m.n_ff_exp));
        // llama.cpp always normalises qwen3moe's chosen weights; say so when the checkpoint does not.
        if a == "qwen3moe" && !m.norm_topk_prob {
            kv("expert_weights_norm", MetaValue::Bool(false));
        }
        if a == "deepseek2" {
            kv("leading_dense_block_count", u32v(m.leading_dense));
            kv("expert_shared_count", u32v(m.n_shared));
            kv("expert_weights_scale", f32v(m.weights_scale.unwrap_or(1.0)));
            kv("expert_weights_norm", MetaValue::Bool(m.norm_topk_prob));
            if let Some(g) = m.gating_func {
                kv("expert_gating_func", MetaValue::U32(g));
            }
            if let Some(g) = m.n_group {
                kv("expert_group_count", u32v(g));
            }
            if let Some(g) = m.topk_group {
                kv("expert_group_used_count", u32v(g));
            }
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
            mscale_all_dim,
        } => {
            kv("rope.scaling.type", MetaValue::Str("yarn".into()));
            kv("rope.scaling.factor", f32v(*factor));
            kv("rope.scaling.original_context_length", u32v(*original_ctx));
            if a == "deepseek2" {
                kv(
                    "rope.scaling.yarn_log_multiplier",
                    f32v(0.1 * mscale_all_dim.unwrap_or(0.0)),
                );
            }
            if let Some(b) = beta_fast {
                kv("rope.scaling.yarn_beta_fast", f32v(*b));
            }
            if let Some(b) = beta_slow {
                kv("rope.scaling.yarn_beta_slow", f32v(*b));
            }
        }
    }

    let mut b = Builder {
        ck,
        tensors: Vec::new(),
        used: Vec::new(),
    };
    let (e, hd) = (c.n_embd, c.head_dim);
    b.copy(
        "model.embed_tokens.weight",
        "token_embd.weight",
        &[c.n_vocab, e],
    )?;
    if let RopeScaling::Llama3 {
        factor,
        low_freq_factor,
        high_freq_factor,
        original_ctx,
    } = c.rope_scaling
    {
        b.tensors.push(Planned {
            name: "rope_freqs.weight".into(),
            shape: vec![hd / 2],
            source: Source::Data(llama3_rope_factors(
                c.rope_theta,
                hd,
                factor,
                low_freq_factor,
                high_freq_factor,
                original_ctx,
            )),
        });
    }
    for il in 0..c.n_layer {
        let h = |s: &str| format!("model.layers.{il}.{s}");
        let g = |s: &str| format!("blk.{il}.{s}");
        b.copy(&h("input_layernorm.weight"), &g("attn_norm.weight"), &[e])?;
        b.copy(
            &h("post_attention_layernorm.weight"),
            &g("ffn_norm.weight"),
            &[e],
        )?;
        match &c.mla {
            None => {
                let (q, k) = (c.n_head * hd, c.n_head_kv * hd);
                if a == "llama" {
                    b.permuted(
                        &h("self_attn.q_proj.weight"),
                        &g("attn_q.weight"),
                        &[q, e],
                        c.n_head,
                    )?;
                    b.permuted(
                        &h("self_attn.k_proj.weight"),
                        &g("attn_k.weight"),
                        &[k, e],
                        c.n_head_kv,
                    )?;
                } else {
                    b.copy(&h("self_attn.q_proj.weight"), &g("attn_q.weight"), &[q, e])?;
                    b.copy(&h("self_attn.k_proj.weight"), &g("attn_k.weight"), &[k, e])?;
                }
                b.copy(&h("self_attn.v_proj.weight"), &g("attn_v.weight"), &[k, e])?;
                b.copy(
                    &h("self_attn.o_proj.weight"),
                    &g("attn_output.weight"),
                    &[e, q],
                )?;
                if a == "llama" && b.ck.has(&h("self_attn.q_proj.bias")) {
                    return Err(ConvertError::Unsupported {
                        path: c.path.clone(),
                        what: "llama with attention_bias is not supported".into(),
                    });
                }
                b.opt(&h("self_attn.q_proj.bias"), &g("attn_q.bias"), &[q])?;
                b.opt(&h("self_attn.k_proj.bias"), &g("attn_k.bias"), &[k])?;
                b.opt(&h("self_attn.v_proj.bias"), &g("attn_v.bias"), &[k])?;
                b.opt(
                    &h("self_attn.q_norm.weight"),
                    &g("attn_q_norm.weight"),
                    &[hd],
                )?;
                b.opt(
                    &h("self_attn.k_norm.weight"),
                    &g("attn_k_norm.weight"),
                    &[hd],
                )?;
            }
            Some(m) => {
                let qk = m.qk_nope_head_dim + m.qk_rope_head_dim;
                match m.q_lora_rank {
                    Some(r) => {
                        b.copy(
                            &h("self_attn.q_a_proj.weight"),
                            &g("attn_q_a.weight"),
                            &[r, e],
                        )?;
                        b.copy(
                            &h("self_attn.q_a_layernorm.weight"),
                            &g("attn_q_a_norm.weight"),
                            &[r],
                        )?;
                        b.copy(
                            &h("self_attn.q_b_proj.weight"),
                            &g("attn_q_b.weight"),
                            &[c.n_head * qk, r],
                        )?;
                    }
                    None => b.copy(
                        &h("self_attn.q_proj.weight"),
                        &g("attn_q.weight"),
                        &[c.n_head * qk, e],
                    )?,
                }
                let kvr = m.kv_lora_rank;
                b.copy(
                    &h("self_attn.kv_a_proj_with_mqa.weight"),
                    &g("attn_kv_a_mqa.weight"),
                    &[kvr + m.qk_rope_head_dim, e],
                )?;
                b.copy(
                    &h("self_attn.kv_a_layernorm.weight"),
                    &g("attn_kv_a_norm.weight"),
                    &[kvr],
                )?;
                let kvb = h("self_attn.kv_b_proj.weight");
                let (nope, v) = (m.qk_nope_head_dim, m.v_head_dim);
                b.ck.check_shape(&kvb, &[c.n_head * (nope + v), kvr])?;
                b.used.push(kvb.clone());
                b.tensors.push(Planned {
                    name: g("attn_k_b.weight"),
                    shape: vec![c.n_head, kvr, nope],
                    source: Source::KvbKeys {
                        name: kvb.clone(),
                        n_head: c.n_head,
                        nope,
                        v,
                    },
                });
                b.tensors.push(Planned {
                    name: g("attn_v_b.weight"),
                    shape: vec![c.n_head, v, kvr],
                    source: Source::KvbValues {
                        name: kvb,
                        n_head: c.n_head,
                        nope,
                        v,
                    },
                });
                b.copy(
                    &h("self_attn.o_proj.weight"),
                    &g("attn_output.weight"),
                    &[e, c.n_head * v],
                )?;
            }
        }
        let dense = match &c.moe {
            None => true,
            Some(m) => il < m.leading_dense || m.dense_layers.contains(&il),
        };
        if dense {
            let f = c.n_ff;
            b.copy(&h("mlp.gate_proj.weight"), &g("ffn_gate.weight"), &[f, e])?;
            b.copy(&h("mlp.up_proj.weight"), &g("ffn_up.weight"), &[f, e])?;
            b.copy(&h("mlp.down_proj.weight"), &g("ffn_down.weight"), &[e, f])?;
        } else if let Some(m) = &c.moe {
            let f = m.n_ff_exp;
            b.copy(
                &h("mlp.gate.weight"),
                &g("ffn_gate_inp.weight"),
                &[m.n_expert, e],
            )?;
            let ex = |p: &str| {
                (0..m.n_expert)
                    .map(|x| h(&format!("mlp.experts.{x}.{p}.weight")))
                    .collect()
            };
            b.stack(ex("gate_proj"), &g("ffn_gate_exps.weight"), &[f, e])?;
            b.stack(ex("down_proj"), &g("ffn_down_exps.weight"), &[e, f])?;
            b.stack(ex("up_proj"), &g("ffn_up_exps.weight"), &[f, e])?;
            b.opt(
                &h("mlp.gate.e_score_correction_bias"),
                &g("exp_probs_b.bias"),
                &[m.n_expert],
            )?;
            if m.n_shared > 0 {
                let s = f * m.n_shared;
                b.copy(
                    &h("mlp.shared_experts.gate_proj.weight"),
                    &g("ffn_gate_shexp.weight"),
                    &[s, e],
                )?;
                b.copy(
                    &h("mlp.shared_experts.down_proj.weight"),
                    &g("ffn_down_shexp.weight"),
                    &[e, s],
                )?;
                b.copy(
                    &h("mlp.shared_experts.up_proj.weight"),
                    &g("ffn_up_shexp.weight"),
                    &[s, e],
                )?;
            }
        }
    }
    b.copy("model.norm.weight", "output_norm.weight", &[e])?;
    if !c.tie_embeddings || b.ck.has("lm_head.weight") {
        b.copy("lm_head.weight", "output.weight", &[c.n_vocab, e])?;
    }

    // Anything left over means a checkpoint we would silently misconvert.
    let used: std::collections::HashSet<&str> = b.used.iter().map(String::as_str).collect();
    let mut unused: Vec<&str> = ck
        .tensors
        .keys()
        .map(String::as_str)
        .filter(|n| !used.contains(n) && !ignorable(n, c.n_layer))
        .collect();
    if !unused.is_empty() {
        unused.sort();
        unused.truncate(8);
        return Err(ConvertError::UnusedTensors {
            dir: ck.dir.clone(),
            names: unused.join(", "),
        });
    }
    Ok(Plan {
        meta,
        tensors: b.tensors,
    })
}

/// Tensors llama.cpp's converter also drops: cached RoPE tables and DeepSeek's multi-token-prediction layers.
fn ignorable(name: &str, n_layer: usize) -> bool {
    if name.ends_with("rotary_emb.inv_freq") {
        return true;
    }
    name.strip_prefix("model.layers.")
        .and_then(|r| r.split('.').next())
        .and_then(|i| i.parse::<usize>().ok())
        .is_some_and(|i| i >= n_layer)
}

/// Llama 3's RoPE scaling as per-frequency divisors of theta (llama.cpp's `rope_freqs.weight`): (head_dim / 2).
pub fn llama3_rope_factors(
    base: f64,
    head_dim: usize,
    factor: f64,
    low_freq_factor: f64,
    high_freq_factor: f64,
    original_ctx: usize,
) -> Vec<f32> {
    let old = original_ctx as f64;
    let low_wavelen = old / low_freq_factor;
    let high_wavelen = old / high_freq_factor;
    (0..head_dim / 2)
        .map(|i| {
            let freq = 1.0 / base.powf((2 * i) as f64 / head_dim as f64);
            let wavelen = 2.0 * std::f64::consts::PI / freq;
            let f = if wavelen < high_wavelen {
                1.0
            } else if wavelen > low_wavelen {
                factor
            } else {
                let smooth =
                    (old / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
                1.0 / ((1.0 - smooth) / factor + smooth)
            };
            f as f32
        })
        .collect()
}

/// Produces the f32 data of a planned tensor (row-major in `shape`).
pub fn materialize(ck: &Checkpoint, p: &Planned) -> Result<Vec<f32>, ConvertError> {
    Ok(match &p.source {
        Source::Copy(n) => ck.read_f32(n)?,
        Source::Data(d) => d.clone(),
        Source::PermuteRope { name, n_head } => {
            // Rows of each head are [first half | second half] in HF; llama.cpp wants them interleaved.
            let w = ck.read_f32(name)?;
            let cols = p.shape[1];
            let hd = p.shape[0] / n_head;
            let half = hd / 2;
            let mut out = vec![0f32; w.len()];
            for h in 0..*n_head {
                for i in 0..half {
                    for (j, src) in [i, half + i].into_iter().enumerate() {
                        let dst_row = h * hd + 2 * i + j;
                        let src_row = h * hd + src;
                        out[dst_row * cols..][..cols].copy_from_slice(&w[src_row * cols..][..cols]);
                    }
                }
            }
            out
        }
        Source::Stack(names) => {
            let mut out = Vec::new();
            for n in names {
                out.extend(ck.read_f32(n)?);
            }
            out
        }
        Source::KvbKeys {
            name,
            n_head,
            nope,
            v,
        } => {
            let w = ck.read_f32(name)?; // (n_head * (nope + v), kv_lora)
            let kvr = p.shape[1];
            let mut out = vec![0f32; n_head * kvr * nope]; // (n_head, kv_lora, nope)
            for h in 0..*n_head {
                for r in 0..*nope {
                    let row = &w[(h * (nope + v) + r) * kvr..][..kvr];
                    for (c, &x) in row.iter().enumerate() {
                        out[(h * kvr + c) * nope + r] = x;
                    }
                }
            }
            out
        }
        Source::KvbValues {
            name,
            n_head,
            nope,
            v,
        } => {
            let w = ck.read_f32(name)?;
            let kvr = p.shape[2];
            let mut out = Vec::with_capacity(n_head * v * kvr); // (n_head, v, kv_lora)
            for h in 0..*n_head {
                let start = (h * (nope + v) + nope) * kvr;
                out.extend_from_slice(&w[start..start + v * kvr]);
            }
            out
        }
    })
}
