//! `hearth tokenize MODEL TEXT`: the token ids (no BOS/EOS added; special-token text is parsed) as a JSON array.

use crate::common::resolve_model;
use anyhow::{Context, Result};
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A model name or .gguf path.
    model: String,
    /// The text to tokenize.
    text: String,
    /// Add BOS/EOS as the model's metadata says.
    #[arg(long)]
    add_special: bool,
}

pub fn run(a: Args) -> Result<ExitCode> {
    // Only the vocabulary is needed: read metadata, skip the weights.
    let g = hearth_gguf::Gguf::open(resolve_model(&a.model)?)?;
    let tok = hearth_text::Tokenizer::from_gguf(&g).context("cannot build the tokenizer")?;
    let ids = tok.encode(&a.text, a.add_special, true)?;
    println!("{}", serde_json::to_string(&ids)?);
    Ok(ExitCode::SUCCESS)
}
