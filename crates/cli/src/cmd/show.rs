//! `hearth show NAME|FILE [--ctx N]`: metadata, chat template, context length and the memory needed at a context size.

use crate::common::escape_for_terminal as esc;
use anyhow::Context;
use hearth_gguf::Gguf;
use hearth_store::{format_bytes, format_time, memory, ModelInfo, Store};

#[derive(clap::Args)]
pub struct Args {
    /// Model name or path to a .gguf file.
    pub model: String,
    /// Context size for the memory estimate (default: the model's, at most 4096).
    #[arg(long)]
    pub ctx: Option<u64>,
    /// Print every metadata key (long arrays abbreviated).
    #[arg(long)]
    pub metadata: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let store = Store::open_default()?;
    let model = store.resolve(&args.model)?;
    let parts = model
        .paths
        .iter()
        .map(|p| Gguf::open(p).with_context(|| format!("reading {}", p.display())))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let info = ModelInfo::from_parts(&parts)?;
    let g = &parts[0];
    let row = |k: &str, v: &str| println!("{k:14}{v}");
    row("name", &model.name);
    if let Some(n) = g.get_str("general.name")? {
        row("model", &esc(n, 200));
    }
    if let Some(m) = &model.manifest {
        row("source", &m.source);
        row("installed", &format_time(m.created));
    }
    for p in &model.paths {
        let size = p.metadata().map(|m| m.len()).unwrap_or(0);
        row("file", &format!("{} ({})", p.display(), format_bytes(size)));
    }
    row("architecture", &esc(&info.architecture, 200));
    row("quant", &info.quant);
    row(
        "parameters",
        &format!("{:.1}M", info.parameters as f64 / 1e6),
    );
    let ctx_len = info.context_length;
    row(
        "context",
        &ctx_len.map_or("unknown".to_string(), |c| format!("{c} tokens")),
    );
    let n_ctx = args
        .ctx
        .unwrap_or_else(|| ctx_len.unwrap_or(4096).min(4096));
    if ctx_len.is_some_and(|c| n_ctx > c) {
        eprintln!(
            "warning: --ctx {n_ctx} is beyond the model's trained context of {} tokens",
            ctx_len.unwrap_or(0)
        );
    }
    let shape = hearth_server::plan::shape_of_files(&parts, hearth_engine::KvType::F16);
    match shape.map(|s| memory::estimate(&s, n_ctx, 1)) {
        Ok(e) => row(
            "memory",
            &format!(
                "{} at n_ctx {n_ctx} ({}; f16 KV cache)",
                format_bytes(e.total),
                e.breakdown()
            ),
        ),
        Err(e) => row("memory", &format!("cannot estimate: {e}")),
    }
    if let Some(avail) = memory::available_memory() {
        row("available", &format_bytes(avail));
    }
    if args.metadata {
        println!("metadata:");
        for k in g.keys() {
            if let Some(v) = g.get(k) {
                println!("  {} = {}", esc(k, 200), esc(&v.to_string(), 200));
            }
        }
    }
    match g.get_str("tokenizer.chat_template")? {
        Some(t) => {
            println!("chat template:");
            for line in esc(t, 64 * 1024).lines() {
                println!("  {line}");
            }
        }
        None => row(
            "chat template",
            "none in the file (hearth uses the family's known turn format)",
        ),
    }
    Ok(())
}
