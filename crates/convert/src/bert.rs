//! BERT encoders (`BertModel`, e.g. sentence-transformers' all-MiniLM-L6-v2) as llama.cpp's `bert` GGUF: the tensor
//! plan, the keys an encoder needs beyond the common ones (non-causal attention, LayerNorm epsilon, pooling), and
//! the WordPiece vocabulary in llama.cpp's "phantom space" form (a word-initial piece gets a leading `▁`, a
//! `##continuation` loses its `##`, `[CLS]`-style specials stay as they are).
//!
//! Pooling comes from sentence-transformers' `modules.json` → `1_Pooling/config.json` (mean or CLS); a checkpoint
//! without one is written with mean pooling, as llama.cpp's converter does.

use crate::config::HfConfig;
use crate::hf::{Checkpoint, JsonFile};
use crate::meta::metadata;
use crate::plan::{Builder, Plan};
use crate::ConvertError;
use hearth_gguf::{MetaArray, MetaValue};
use std::path::Path;

/// llama.cpp's `LLAMA_POOLING_TYPE_*`.
const POOLING_MEAN: u32 = 1;
const POOLING_CLS: u32 = 2;

/// The tensors of a BERT encoder, with llama.cpp's names.
pub fn plan(c: &HfConfig, ck: &Checkpoint) -> Result<Plan, ConvertError> {
    let cfg = JsonFile::read(&Path::new(&ck.dir).join("config.json"))?;
    // What the engine's encoder computes; anything else would convert into a model that silently differs.
    let act = cfg.opt_str("hidden_act")?.unwrap_or("gelu");
    let pos = cfg
        .opt_str("position_embedding_type")?
        .unwrap_or("absolute");
    if act != "gelu" || pos != "absolute" {
        return Err(ConvertError::Unsupported {
            path: cfg.path.clone(),
            what: format!(
                "hidden_act {act:?} with position_embedding_type {pos:?} (only gelu and absolute are supported)"
            ),
        });
    }
    let mut b = Builder::new(ck);
    let (e, f) = (c.n_embd, c.n_ff);
    b.copy(
        "embeddings.word_embeddings.weight",
        "token_embd.weight",
        &[c.n_vocab, e],
    )?;
    b.copy(
        "embeddings.position_embeddings.weight",
        "position_embd.weight",
        &[c.n_ctx, e],
    )?;
    if c.n_token_types > 0 {
        b.copy(
            "embeddings.token_type_embeddings.weight",
            "token_types.weight",
            &[c.n_token_types, e],
        )?;
    }
    b.copy(
        "embeddings.LayerNorm.weight",
        "token_embd_norm.weight",
        &[e],
    )?;
    b.copy("embeddings.LayerNorm.bias", "token_embd_norm.bias", &[e])?;
    for il in 0..c.n_layer {
        // (HF suffix, GGUF name, shape) of each weight; every one has a bias of its first dimension.
        let parts: [(&str, &str, [usize; 2]); 6] = [
            ("attention.self.query", "attn_q", [e, e]),
            ("attention.self.key", "attn_k", [e, e]),
            ("attention.self.value", "attn_v", [e, e]),
            ("attention.output.dense", "attn_output", [e, e]),
            ("intermediate.dense", "ffn_up", [f, e]),
            ("output.dense", "ffn_down", [e, f]),
        ];
        let h = |s: &str| format!("encoder.layer.{il}.{s}");
        let g = |s: &str| format!("blk.{il}.{s}");
        for (hf, gguf, shape) in parts {
            b.copy(
                &h(&format!("{hf}.weight")),
                &g(&format!("{gguf}.weight")),
                &shape,
            )?;
            b.copy(
                &h(&format!("{hf}.bias")),
                &g(&format!("{gguf}.bias")),
                &shape[..1],
            )?;
        }
        for (hf, gguf) in [
            ("attention.output.LayerNorm", "attn_output_norm"),
            ("output.LayerNorm", "layer_output_norm"),
        ] {
            b.copy(
                &h(&format!("{hf}.weight")),
                &g(&format!("{gguf}.weight")),
                &[e],
            )?;
            b.copy(&h(&format!("{hf}.bias")), &g(&format!("{gguf}.bias")), &[e])?;
        }
    }
    let meta = encoder_metadata(c, &ck.dir)?;
    b.finish(c, meta)
}

/// The common keys without the RoPE ones, plus what an encoder needs.
fn encoder_metadata(c: &HfConfig, dir: &str) -> Result<Vec<(String, MetaValue)>, ConvertError> {
    let a = c.spec.arch;
    let mut meta: Vec<(String, MetaValue)> = metadata(c)
        .into_iter()
        .filter(|(k, _)| !k.contains(".rope.") && !k.ends_with("layer_norm_rms_epsilon"))
        .collect();
    let mut kv = |k: &str, v: MetaValue| meta.push((format!("{a}.{k}"), v));
    kv(
        "attention.layer_norm_epsilon",
        MetaValue::F32(c.rms_eps as f32),
    );
    kv("attention.causal", MetaValue::Bool(false));
    kv("pooling_type", MetaValue::U32(pooling(Path::new(dir))?));
    Ok(meta)
}

/// The pooling sentence-transformers applies: the `Pooling` module of `modules.json`, mean or CLS.
fn pooling(dir: &Path) -> Result<u32, ConvertError> {
    let modules = dir.join("modules.json");
    if !modules.exists() {
        return Ok(POOLING_MEAN);
    }
    let m = JsonFile::read(&modules)?;
    let pool_dir = m.root.as_array().and_then(|a| {
        a.iter().find_map(|x| {
            let ty = x.get("type")?.as_str()?;
            ty.ends_with(".Pooling")
                .then(|| x.get("path")?.as_str())
                .flatten()
        })
    });
    let Some(pool_dir) = pool_dir else {
        return Ok(POOLING_MEAN);
    };
    let p = JsonFile::read(&dir.join(pool_dir).join("config.json"))?;
    let on = |k: &str| p.opt_bool(k).map(|v| v.unwrap_or(false));
    match (
        on("pooling_mode_mean_tokens")?,
        on("pooling_mode_cls_token")?,
    ) {
        (true, false) => Ok(POOLING_MEAN),
        (false, true) => Ok(POOLING_CLS),
        _ => Err(ConvertError::Unsupported {
            path: p.path.clone(),
            what: "only mean or CLS pooling (one of them) is supported".into(),
        }),
    }
}

/// A WordPiece tokenizer.json as llama.cpp's `bert` vocabulary, with the special ids and the normaliser's
/// lowercasing and accent stripping (`tokenizer.bert.*`, which llama.cpp does not write: it always lowercases).
pub fn vocab_metadata(
    dir: &Path,
    n_vocab: usize,
) -> Result<Vec<(String, MetaValue)>, ConvertError> {
    let tj = JsonFile::read(&dir.join("tokenizer.json"))?;
    let model = tj.get("model").ok_or_else(|| tj.missing("model"))?;
    let ty = model.get("type").and_then(|t| t.as_str()).unwrap_or("");
    if ty != "WordPiece" {
        return Err(ConvertError::Unsupported {
            path: tj.path.clone(),
            what: format!("tokenizer model {ty:?}: a BERT checkpoint needs a WordPiece tokenizer"),
        });
    }
    let prefix = model
        .get("continuing_subword_prefix")
        .and_then(|p| p.as_str())
        .unwrap_or("##");
    let vocab = model
        .get("vocab")
        .and_then(|v| v.as_object())
        .ok_or_else(|| tj.missing("model.vocab"))?;
    let mut tokens: Vec<Option<String>> = vec![None; n_vocab];
    let mut types = vec![1i32; n_vocab];
    for (tok, id) in vocab {
        let slot = id
            .as_u64()
            .and_then(|i| tokens.get_mut(i as usize))
            .ok_or_else(|| tj.bad(&format!("model.vocab.{tok}"), "an id below vocab_size", id))?;
        *slot = Some(tok.clone());
    }
    let mut special = |content: &str| -> Option<u32> {
        let i = tokens.iter().position(|t| t.as_deref() == Some(content))?;
        types[i] = 3; // control
        Some(i as u32)
    };
    let mut ids = Vec::new();
    for at in tj
        .get("added_tokens")
        .and_then(|a| a.as_array())
        .into_iter()
        .flatten()
    {
        if let Some(c) = at.get("content").and_then(|c| c.as_str()) {
            if at.get("special").and_then(|s| s.as_bool()) == Some(true) {
                ids.push((c.to_string(), special(c)));
            }
        }
    }
    let id = |name: &str| ids.iter().find(|(c, _)| c == name).and_then(|(_, i)| *i);
    let (cls, sep, pad, unk, mask) = (
        id("[CLS]"),
        id("[SEP]"),
        id("[PAD]"),
        id("[UNK]"),
        id("[MASK]"),
    );
    if cls.is_none() || sep.is_none() {
        return Err(ConvertError::Unsupported {
            path: tj.path.clone(),
            what: "a BERT vocabulary needs [CLS] and [SEP] special tokens".into(),
        });
    }
    let tokens: Vec<String> = tokens
        .into_iter()
        .enumerate()
        .map(|(i, t)| match t {
            None => {
                types[i] = 5; // unused
                format!("[PAD{i}]")
            }
            // llama.cpp keeps `[...]` pieces (specials, `[unused0]`) as they are.
            Some(t) if types[i] == 3 || (t.starts_with('[') && t.ends_with(']')) => t,
            Some(t) => match t.strip_prefix(prefix) {
                Some(rest) => rest.to_string(),
                None => format!("\u{2581}{t}"),
            },
        })
        .collect();
    let norm = tj.get("normalizer");
    let flag = |k: &str| norm.and_then(|n| n.get(k)).and_then(|v| v.as_bool());
    let lowercase = flag("lowercase").unwrap_or(true);
    // BERT's rule: strip_accents null follows lowercase.
    let strip_accents = flag("strip_accents").unwrap_or(lowercase);

    let mut m: Vec<(String, MetaValue)> = vec![
        ("tokenizer.ggml.model".into(), MetaValue::Str("bert".into())),
        (
            "tokenizer.ggml.pre".into(),
            MetaValue::Str("default".into()),
        ),
        (
            "tokenizer.ggml.tokens".into(),
            MetaValue::Array(MetaArray::Str(tokens)),
        ),
        (
            "tokenizer.ggml.token_type".into(),
            MetaValue::Array(MetaArray::I32(types)),
        ),
        ("tokenizer.ggml.add_bos_token".into(), MetaValue::Bool(true)),
        ("tokenizer.ggml.add_eos_token".into(), MetaValue::Bool(true)),
        (
            "tokenizer.bert.lowercase".into(),
            MetaValue::Bool(lowercase),
        ),
        (
            "tokenizer.bert.strip_accents".into(),
            MetaValue::Bool(strip_accents),
        ),
    ];
    // llama.cpp's keys: [CLS] is also the BOS, [SEP] the end (`seperator` is llama.cpp's spelling).
    for (k, v) in [
        ("bos_token_id", cls),
        ("cls_token_id", cls),
        ("eos_token_id", sep),
        ("seperator_token_id", sep),
        ("padding_token_id", pad),
        ("unknown_token_id", unk),
        ("mask_token_id", mask),
    ] {
        if let Some(id) = v {
            m.push((format!("tokenizer.ggml.{k}"), MetaValue::U32(id)));
        }
    }
    if let Some(n) = tj_type_count(dir)? {
        m.push(("tokenizer.ggml.token_type_count".into(), MetaValue::U32(n)));
    }
    Ok(m)
}

/// config.json's `type_vocab_size`, which llama.cpp records with the vocabulary.
fn tj_type_count(dir: &Path) -> Result<Option<u32>, ConvertError> {
    let c = JsonFile::read(&dir.join("config.json"))?;
    Ok(c.opt_usize("type_vocab_size")?.map(|n| n as u32))
}
