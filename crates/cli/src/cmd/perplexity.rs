//! `hearth perplexity MODEL FILE --ctx N`: llama-perplexity's method; the last stdout line is `PPL = <value>`.

use crate::common::{Loaded, ModelArgs};
use anyhow::{Context, Result};
use std::process::ExitCode;
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// The text file to score.
    file: std::path::PathBuf,
    /// Tokens per chunk.
    #[arg(short = 'c', long = "ctx", default_value_t = 512, value_parser = crate::common::parse_ctx_size)]
    ctx: usize,
}

pub fn run(a: Args) -> Result<ExitCode> {
    let text = std::fs::read_to_string(&a.file)
        .with_context(|| format!("cannot read {}", a.file.display()))?;
    let loaded = Loaded::open(&a.model.model)?;
    let pool = a.model.pool()?;
    // BOS in front of the text (and of every chunk) only when the model's metadata asks for it.
    let tokens = loaded.tokenizer.encode(&text, true, false)?;
    let bos = if loaded.tokenizer.adds_bos() {
        loaded.tokenizer.bos()
    } else {
        None
    };
    let t0 = Instant::now();
    let p = hearth_engine::perplexity::perplexity(
        &loaded.model,
        &pool,
        &tokens,
        a.ctx,
        bos,
        a.model.kv_type,
        |i, n, ppl| {
            eprintln!(
                "chunk {}/{n}: running PPL {ppl:.4} ({:.1}s)",
                i + 1,
                t0.elapsed().as_secs_f64()
            );
        },
    )?;
    println!(
        "{} tokens, {} chunks of {}, {} scored",
        tokens.len(),
        p.n_chunks,
        a.ctx,
        p.n_scored
    );
    println!("PPL = {:.4}", p.ppl);
    Ok(ExitCode::SUCCESS)
}
