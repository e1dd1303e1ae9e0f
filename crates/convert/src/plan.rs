//! The plan of a conversion, the same for every architecture: the metadata (`meta.rs`) and the GGUF tensors to
//! write, layer by layer, each with its [`Source`] in the checkpoint. What differs between architectures is data in
//! `arch.rs`.

use crate::arch::{Body, Moe};
use crate::config::{Attention, HfConfig, Mla, RopeScaling};
use crate::hf::Checkpoint;
use crate::meta::metadata;
use crate::source::{llama3_rope_factors, Source};
use crate::ConvertError;
use hearth_gguf::MetaValue;

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

pub(crate) struct Builder<'a> {
    pub ck: &'a Checkpoint,
    pub tensors: Vec<Planned>,
    used: Vec<String>,
}

impl<'a> Builder<'a> {
    pub fn new(ck: &'a Checkpoint) -> Builder<'a> {
        Builder {
            ck,
            tensors: Vec::new(),
            used: Vec::new(),
        }
    }

    /// Plans `gguf` from the checkpoint tensor `hf` (checked to be `shape`) through `source`.
    fn add(
        &mut self,
        hf: &str,
        gguf: &str,
        shape: &[usize],
        source: Source,
    ) -> Result<(), ConvertError> {
        self.ck.check_shape(hf, shape)?;
        self.used.push(hf.into());
        self.tensors.push(Planned {
            name: gguf.into(),
            shape: shape.to_vec(),
            source,
        });
        Ok(())
    }

    /// Copies `hf` as `gguf`, checking its shape.
    pub fn copy(&mut self, hf: &str, gguf: &str, shape: &[usize]) -> Result<(), ConvertError> {
        self.add(hf, gguf, shape, Source::Copy(hf.into()))
    }

    /// Copies `hf` when the checkpoint has it.
    pub fn opt(&mut self, hf: &str, gguf: &str, shape: &[usize]) -> Result<(), ConvertError> {
        if self.ck.has(hf) {
            self.copy(hf, gguf, shape)?;
        }
        Ok(())
    }

    /// Copies `hf` with each head's q/k rows permuted for adjacent-pair RoPE.
    fn permuted(
        &mut self,
        hf: &str,
        gguf: &str,
        shape: &[usize],
        n_head: usize,
    ) -> Result<(), ConvertError> {
        let source = Source::PermuteRope {
            name: hf.into(),
            n_head,
        };
        self.add(hf, gguf, shape, source)
    }

    /// Copies `hf` as `gguf`, rows `from..period` of every `period` times `factor` (a plain copy at factor 1).
    fn scaled(
        &mut self,
        hf: &str,
        gguf: &str,
        shape: &[usize],
        (period, from, factor): (usize, usize, f32),
    ) -> Result<(), ConvertError> {
        if factor == 1.0 {
            return self.copy(hf, gguf, shape);
        }
        let source = Source::ScaleRows {
            name: hf.into(),
            period,
            from,
            factor,
        };
        self.add(hf, gguf, shape, source)
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

/// Builds the metadata (architecture part) and the tensor plan for `c` over checkpoint `ck`.
pub fn plan(c: &HfConfig, ck: &Checkpoint) -> Result<Plan, ConvertError> {
    if c.spec.body == Body::Bert {
        return crate::bert::plan(c, ck);
    }
    let mut b = Builder::new(ck);
    let e = c.n_embd;
    b.copy(
        "model.embed_tokens.weight",
        "token_embd.weight",
        &[c.n_vocab, e],
    )?;
    if let (
        RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_ctx,
        },
        Attention::Gqa { head_dim, .. },
    ) = (&c.rope_scaling, &c.attention)
    {
        b.tensors.push(Planned {
            name: "rope_freqs.weight".into(),
            shape: vec![head_dim / 2],
            source: Source::Data(llama3_rope_factors(
                c.rope_theta,
                *head_dim,
                *factor,
                *low_freq_factor,
                *high_freq_factor,
                *original_ctx,
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
        match &c.attention {
            Attention::Gqa {
                n_head_kv,
                head_dim,
                ..
            } => gqa_tensors(&mut b, c, &h, &g, *n_head_kv, *head_dim)?,
            Attention::Mla(m) => mla_tensors(&mut b, c, &h, &g, m)?,
        }
        match &c.moe {
            Some(m) if !m.dense_layers.contains(&il) => moe_tensors(&mut b, e, &h, &g, m)?,
            _ => {
                let f = c.n_ff;
                b.copy(&h("mlp.gate_proj.weight"), &g("ffn_gate.weight"), &[f, e])?;
                b.copy(&h("mlp.up_proj.weight"), &g("ffn_up.weight"), &[f, e])?;
                b.copy(&h("mlp.down_proj.weight"), &g("ffn_down.weight"), &[e, f])?;
            }
        }
    }
    b.copy("model.norm.weight", "output_norm.weight", &[e])?;
    if !c.tie_embeddings || b.ck.has("lm_head.weight") {
        b.copy("lm_head.weight", "output.weight", &[c.n_vocab, e])?;
    }
    b.finish(c, metadata(c))
}

impl Builder<'_> {
    /// The plan, refused when the checkpoint holds tensors it does not use.
    pub fn finish(
        self,
        c: &HfConfig,
        meta: Vec<(String, MetaValue)>,
    ) -> Result<Plan, ConvertError> {
        // Anything left over means a checkpoint we would silently misconvert.
        let ck = self.ck;
        let used: std::collections::HashSet<&str> = self.used.iter().map(String::as_str).collect();
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
            tensors: self.tensors,
        })
    }
}

/// Grouped-query attention's projections, biases and q/k norms of layer `h`/`g`.
fn gqa_tensors(
    b: &mut Builder,
    c: &HfConfig,
    h: &dyn Fn(&str) -> String,
    g: &dyn Fn(&str) -> String,
    n_head_kv: usize,
    hd: usize,
) -> Result<(), ConvertError> {
    let e = c.n_embd;
    let (q, k) = (c.n_head * hd, n_head_kv * hd);
    if c.spec.permute_qk {
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
            n_head_kv,
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
    if !c.spec.qkv_bias && b.ck.has(&h("self_attn.q_proj.bias")) {
        return Err(ConvertError::Unsupported {
            path: c.path.clone(),
            what: format!("{} with attention_bias is not supported", c.spec.hf),
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
    )
}

/// Latent attention's tensors of layer `h`/`g`, `kv_b_proj` split as llama.cpp stores it.
fn mla_tensors(
    b: &mut Builder,
    c: &HfConfig,
    h: &dyn Fn(&str) -> String,
    g: &dyn Fn(&str) -> String,
    m: &Mla,
) -> Result<(), ConvertError> {
    let e = c.n_embd;
    let (nope, rot, v, kvr) = (
        m.qk_nope_head_dim,
        m.qk_rope_head_dim,
        m.v_head_dim,
        m.kv_lora_rank,
    );
    let qk = nope + rot;
    // transformers' sin/cos factor, which scales the RoPE parts of q and k only (see `metadata`).
    let rope_scale = match c.rope_scaling {
        RopeScaling::Yarn {
            attention_factor, ..
        } => attention_factor as f32,
        _ => 1.0,
    };
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
            b.scaled(
                &h("self_attn.q_b_proj.weight"),
                &g("attn_q_b.weight"),
                &[c.n_head * qk, r],
                (qk, nope, rope_scale),
            )?;
        }
        None => b.scaled(
            &h("self_attn.q_proj.weight"),
            &g("attn_q.weight"),
            &[c.n_head * qk, e],
            (qk, nope, rope_scale),
        )?,
    }
    b.scaled(
        &h("self_attn.kv_a_proj_with_mqa.weight"),
        &g("attn_kv_a_mqa.weight"),
        &[kvr + rot, e],
        (kvr + rot, kvr, rope_scale),
    )?;
    b.copy(
        &h("self_attn.kv_a_layernorm.weight"),
        &g("attn_kv_a_norm.weight"),
        &[kvr],
    )?;
    let kvb = h("self_attn.kv_b_proj.weight");
    b.ck.check_shape(&kvb, &[c.n_head * (nope + v), kvr])?;
    b.used.push(kvb.clone());
    let n_head = c.n_head;
    b.tensors.push(Planned {
        name: g("attn_k_b.weight"),
        shape: vec![n_head, kvr, nope],
        source: Source::KvbKeys {
            name: kvb.clone(),
            n_head,
            nope,
            v,
        },
    });
    b.tensors.push(Planned {
        name: g("attn_v_b.weight"),
        shape: vec![n_head, v, kvr],
        source: Source::KvbValues {
            name: kvb,
            n_head,
            nope,
            v,
        },
    });
    b.copy(
        &h("self_attn.o_proj.weight"),
        &g("attn_output.weight"),
        &[e, n_head * v],
    )
}

/// Router, stacked experts, selection bias and shared experts of layer `h`/`g`.
fn moe_tensors(
    b: &mut Builder,
    e: usize,
    h: &dyn Fn(&str) -> String,
    g: &dyn Fn(&str) -> String,
    m: &Moe,
) -> Result<(), ConvertError> {
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
    Ok(())
}

/// Tensors llama.cpp's converter also drops: cached RoPE tables, DeepSeek's multi-token-prediction layers, BERT's
/// position-id buffer and its pooler (sentence embeddings pool the hidden states instead).
fn ignorable(name: &str, n_layer: usize) -> bool {
    if name.ends_with("rotary_emb.inv_freq")
        || name == "embeddings.position_ids"
        || name.starts_with("pooler.")
    {
        return true;
    }
    name.strip_prefix("model.layers.")
        .and_then(|r| r.split('.').next())
        .and_then(|i| i.parse::<usize>().ok())
        .is_some_and(|i| i >= n_layer)
}
