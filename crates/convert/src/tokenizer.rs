//! Tokenizer metadata from tokenizer.json / tokenizer_config.json / chat_template.jinja, as llama.cpp writes it
//! for byte-level BPE models (`tokenizer.ggml.model = "gpt2"`).

use crate::hf::JsonFile;
use crate::ConvertError;
use hearth_gguf::{MetaArray, MetaValue};
use serde_json::Value;
use std::path::Path;

/// The pre-tokenizer regexes of the families we know, as their tokenizer.json files spell them, and llama.cpp's
/// `tokenizer.ggml.pre` name for each.
const KNOWN_PRE: &[(&str, &[&str])] = &[
    (
        "qwen2",
        &[
            r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
        ],
    ),
    (
        "llama-bpe",
        &[
            r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
        ],
    ),
    (
        "deepseek-v3",
        &[
            r"\p{N}{1,3}",
            r"[一-龥぀-ゟ゠-ヿ]+",
            r##"[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"##,
        ],
    ),
    ("gpt-2", &["<gpt2 byte-level>"]),
];

/// The split regexes of a pre-tokenizer, in order; ByteLevel with `use_regex` counts as GPT-2's.
fn pre_regexes(v: &Value, out: &mut Vec<String>) {
    match v.get("type").and_then(|t| t.as_str()) {
        Some("Sequence") => {
            for p in v
                .get("pretokenizers")
                .and_then(|p| p.as_array())
                .into_iter()
                .flatten()
            {
                pre_regexes(p, out);
            }
        }
        Some("Split") => {
            let pat = v.get("pattern");
            if let Some(r) = pat
                .and_then(|p| p.get("Regex").or_else(|| p.get("String")))
                .and_then(|r| r.as_str())
            {
                out.push(r.to_string());
            }
        }
        Some("ByteLevel") if v.get("use_regex").and_then(|u| u.as_bool()).unwrap_or(true) => {
            out.push("<gpt2 byte-level>".into())
        }
        _ => {}
    }
}

/// The keys a byte-level BPE tokenizer contributes, in llama.cpp's order.
pub fn metadata(
    dir: &Path,
    n_vocab: usize,
    bos_fallback: Option<u32>,
    eos_fallback: Option<u32>,
    pre_override: Option<&str>,
) -> Result<Vec<(String, MetaValue)>, ConvertError> {
    let tj = JsonFile::read(&dir.join("tokenizer.json"))?;
    let tc_path = dir.join("tokenizer_config.json");
    let tc = if tc_path.exists() {
        Some(JsonFile::read(&tc_path)?)
    } else {
        None
    };
    let model = tj.get("model").ok_or_else(|| tj.missing("model"))?;
    let ty = model.get("type").and_then(|t| t.as_str()).unwrap_or("BPE");
    if ty != "BPE" {
        return Err(ConvertError::Unsupported {
            path: tj.path.clone(),
            what: format!("tokenizer model {ty:?}: only byte-level BPE tokenizers are converted"),
        });
    }
    let vocab = model
        .get("vocab")
        .and_then(|v| v.as_object())
        .ok_or_else(|| tj.missing("model.vocab"))?;

    let mut tokens: Vec<Option<String>> = vec![None; n_vocab];
    let mut types = vec![1i32; n_vocab]; // 1 normal
    let bad_id = |tok: &str, id: u64| ConvertError::BadKey {
        path: tj.path.clone(),
        key: format!("token {tok:?}"),
        expected: "an id below config.json's vocab_size",
        found: id.to_string(),
    };
    for (tok, id) in vocab {
        let id = id
            .as_u64()
            .ok_or_else(|| tj.missing(&format!("model.vocab.{tok}")))?;
        let slot = tokens.get_mut(id as usize).ok_or_else(|| bad_id(tok, id))?;
        *slot = Some(tok.clone());
    }
    for at in tj
        .get("added_tokens")
        .and_then(|a| a.as_array())
        .into_iter()
        .flatten()
    {
        let (Some(id), Some(content)) = (
            at.get("id").and_then(|v| v.as_u64()),
            at.get("content").and_then(|v| v.as_str()),
        ) else {
            continue;
        };
        let i = id as usize;
        *tokens.get_mut(i).ok_or_else(|| bad_id(content, id))? = Some(content.to_string());
        let special = at.get("special").and_then(|v| v.as_bool()).unwrap_or(false);
        types[i] = if special { 3 } else { 4 }; // control, user-defined
    }
    let tokens: Vec<String> = tokens
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            t.unwrap_or_else(|| {
                types[i] = 5; // unused
                format!("[PAD{i}]")
            })
        })
        .collect();

    let id_of = |s: &str| -> Option<u32> { tokens.iter().position(|t| t == s).map(|i| i as u32) };
    let merges: Vec<String> = model
        .get("merges")
        .and_then(|m| m.as_array())
        .ok_or_else(|| tj.missing("model.merges"))?
        .iter()
        .map(|m| match m {
            Value::String(s) => Some(s.clone()),
            Value::Array(p) if p.len() == 2 => {
                Some(format!("{} {}", p[0].as_str()?, p[1].as_str()?))
            }
            _ => None,
        })
        .collect::<Option<_>>()
        .ok_or_else(|| ConvertError::BadKey {
            path: tj.path.clone(),
            key: "model.merges".into(),
            expected: "a list of \"a b\" strings or [a, b] pairs",
            found: "something else".into(),
        })?;

    let pre = match pre_override {
        Some(p) => p.to_string(),
        None => {
            let mut res = Vec::new();
            if let Some(p) = tj.get("pre_tokenizer") {
                pre_regexes(p, &mut res);
            }
            KNOWN_PRE
                .iter()
                .find(|(_, r)| {
                    res.len() == r.len() && res.iter().zip(r.iter()).all(|(a, b)| a == b)
                })
                .map(|(n, _)| n.to_string())
                .ok_or_else(|| ConvertError::UnknownPreTokenizer {
                    path: tj.path.clone(),
                    detail: format!("split regexes {res:?}"),
                })?
        }
    };

    // Special tokens: tokenizer_config.json names them by content; config.json's ids are the fallback.
    let named = |key: &str| -> Option<u32> {
        let v = tc.as_ref()?.get(key)?;
        let s = v
            .as_str()
            .or_else(|| v.get("content").and_then(|c| c.as_str()))?;
        id_of(s)
    };
    let bos = named("bos_token").or(bos_fallback);
    let eos = named("eos_token").or(eos_fallback);
    let pad = named("pad_token");

    let mut m: Vec<(String, MetaValue)> = vec![
        ("tokenizer.ggml.model".into(), MetaValue::Str("gpt2".into())),
        ("tokenizer.ggml.pre".into(), MetaValue::Str(pre)),
        (
            "tokenizer.ggml.tokens".into(),
            MetaValue::Array(MetaArray::Str(tokens)),
        ),
        (
            "tokenizer.ggml.token_type".into(),
            MetaValue::Array(MetaArray::I32(types)),
        ),
        (
            "tokenizer.ggml.merges".into(),
            MetaValue::Array(MetaArray::Str(merges)),
        ),
    ];
    for (k, v) in [
        ("bos_token_id", bos),
        ("eos_token_id", eos),
        ("padding_token_id", pad),
    ] {
        if let Some(id) = v {
            m.push((format!("tokenizer.ggml.{k}"), MetaValue::U32(id)));
        }
    }
    if let Some(tc) = &tc {
        if let Some(b) = tc.opt_bool("add_bos_token")? {
            m.push(("tokenizer.ggml.add_bos_token".into(), MetaValue::Bool(b)));
        }
        if let Some(b) = tc.opt_bool("add_eos_token")? {
            m.push(("tokenizer.ggml.add_eos_token".into(), MetaValue::Bool(b)));
        }
    }
    if let Some(t) = chat_template(dir, tc.as_ref())? {
        m.push(("tokenizer.chat_template".into(), MetaValue::Str(t)));
    }
    Ok(m)
}

/// The default chat template: `chat_template.jinja` wins (transformers 4.47+ writes it there), else
/// tokenizer_config.json's `chat_template` (a string, or a list of named templates: the one called "default").
fn chat_template(dir: &Path, tc: Option<&JsonFile>) -> Result<Option<String>, ConvertError> {
    let jinja = dir.join("chat_template.jinja");
    if jinja.exists() {
        return std::fs::read_to_string(&jinja)
            .map(Some)
            .map_err(|source| ConvertError::Io {
                path: jinja.display().to_string(),
                source,
            });
    }
    let Some(v) = tc.and_then(|tc| tc.get("chat_template")) else {
        return Ok(None);
    };
    Ok(match v {
        Value::String(s) => Some(s.clone()),
        Value::Array(list) => list
            .iter()
            .find(|t| t.get("name").and_then(|n| n.as_str()) == Some("default"))
            .or_else(|| list.first())
            .and_then(|t| t.get("template"))
            .and_then(|t| t.as_str())
            .map(str::to_string),
        _ => None,
    })
}
