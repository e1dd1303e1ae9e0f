//! `hearth inspect FILE.gguf`: what a model file holds, without loading the weights.

use anyhow::{Context, Result};
use hearth_gguf::{Gguf, Value};
use std::collections::BTreeMap;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A .gguf file or an installed model name.
    file: String,
    /// Also list every tensor.
    #[arg(long)]
    tensors: bool,
    /// Also print every metadata key.
    #[arg(long)]
    metadata: bool,
}

pub fn run(a: Args) -> Result<ExitCode> {
    let path = crate::common::resolve_model(&a.file)?;
    let g = Gguf::open(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let arch = g.architecture()?;
    let n_params: u64 = g.tensors().iter().map(|t| t.n_elements()).sum();
    let n_bytes: u64 = g.tensors().iter().map(|t| t.n_bytes).sum();
    println!("file          {}", path.display());
    println!("GGUF version  {}", g.version());
    println!("architecture  {}", esc(arch));
    if let Some(name) = g.get("general.name") {
        println!("name          {}", esc(&text(&name)));
    }
    println!("parameters    {} ({n_params})", human_count(n_params));
    println!(
        "weights       {:.1} MiB, {:.2} bits per weight",
        n_bytes as f64 / (1 << 20) as f64,
        n_bytes as f64 * 8.0 / n_params.max(1) as f64
    );
    // Values are shown as the file has them: a key of the wrong type is for loading to refuse, not inspect.
    if let Some(ctx) = g.get(&format!("{arch}.context_length")) {
        let ctx = esc(&text(&ctx));
        println!("context       {ctx} tokens (trained)");
    }
    for (label, key) in [
        ("layers", "block_count"),
        ("embedding", "embedding_length"),
        ("heads", "attention.head_count"),
        ("kv heads", "attention.head_count_kv"),
    ] {
        if let Some(v) = g.get(&format!("{arch}.{key}")) {
            println!("{label:<14}{}", esc(&text(&v)));
        }
    }
    let mut mix: BTreeMap<&str, (usize, u64)> = BTreeMap::new();
    for t in g.tensors() {
        let e = mix.entry(t.dtype.name()).or_default();
        e.0 += 1;
        e.1 += t.n_bytes;
    }
    let mix: Vec<String> = mix
        .iter()
        .map(|(k, (n, b))| format!("{k} ×{n} ({:.1} MiB)", *b as f64 / (1 << 20) as f64))
        .collect();
    println!("quant mix     {}", mix.join(", "));
    if let Some(tokens) = g.get_array("tokenizer.ggml.tokens")?.and_then(|a| a.strs()) {
        println!(
            "vocabulary    {} tokens ({})",
            tokens.len(),
            esc(g
                .get_str("tokenizer.ggml.model")
                .ok()
                .flatten()
                .unwrap_or("?"))
        );
        for (label, key) in [
            ("bos", "bos_token_id"),
            ("eos", "eos_token_id"),
            ("eot", "eot_token_id"),
            ("unk", "unknown_token_id"),
            ("pad", "padding_token_id"),
        ] {
            if let Some(id) = g.get_uint(&format!("tokenizer.ggml.{key}")).ok().flatten() {
                let text = tokens.get(id as usize).copied().unwrap_or("<out of range>");
                println!("  {label:<12}{id} {}", esc(&format!("{text:?}")));
            }
        }
    }
    println!(
        "chat template {}",
        if g.get("tokenizer.chat_template").is_some() {
            "yes"
        } else {
            "none in file"
        }
    );
    if a.metadata {
        println!("\nmetadata:");
        for k in g.keys() {
            if let Some(v) = g.get(k) {
                println!("  {} = {}", esc(k), esc(&v.to_string()));
            }
        }
    }
    println!(
        "\n{} tensors{}",
        g.tensors().len(),
        if a.tensors {
            ":"
        } else {
            " (--tensors lists them)"
        }
    );
    if a.tensors {
        for t in g.tensors() {
            println!("  {:<40} {:<6} {:?}", esc(&t.name), t.dtype.name(), t.dims);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A value as text: strings as they are (escaped by the caller), anything else rendered.
fn text(v: &Value<'_>) -> String {
    match v {
        Value::Str(s) => s.to_string(),
        v => v.to_string(),
    }
}

/// Text from the file, escaped and bounded for the terminal (names, keys and values are the file's to choose).
fn esc(s: &str) -> String {
    crate::common::escape_for_terminal(s, 200)
}

fn human_count(n: u64) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.2}B", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.1}M", n as f64 / 1e6),
        n => format!("{:.1}K", n as f64 / 1e3),
    }
}
