//! What several subcommands share: finding a model by name or path, loading it with its tokenizer, threads.

use anyhow::{bail, Context, Result};
use hearth_engine::{Model, ThreadPool};
use hearth_text::{ChatTemplate, Tokenizer};
use std::path::PathBuf;

/// Options every command that runs a model takes.
#[derive(clap::Args, Debug, Clone)]
pub struct ModelArgs {
    /// A model name (e.g. smollm2-135m) or a path to a .gguf file.
    pub model: String,
    /// Compute threads (default: all cores).
    #[arg(short = 't', long)]
    pub threads: Option<usize>,
}

impl ModelArgs {
    pub fn pool(&self) -> ThreadPool {
        let n = self
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        ThreadPool::new(n.max(1))
    }
}

/// `$HEARTH_HOME`, by default `~/.cache/hearth`.
pub fn hearth_home() -> PathBuf {
    if let Some(h) = std::env::var_os("HEARTH_HOME") {
        return PathBuf::from(h);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache").join("hearth")
}

/// A path to an existing file, or the file installed under a short name.
pub fn resolve_model(name: &str) -> Result<PathBuf> {
    let p = PathBuf::from(name);
    if p.is_file() {
        return Ok(p);
    }
    if name.ends_with(".gguf") || name.contains('/') {
        bail!("no such model file: {name}");
    }
    let installed = hearth_home().join("models").join(format!("{name}.gguf"));
    if installed.is_file() {
        return Ok(installed);
    }
    bail!("model {name:?} is not installed; install it with `scripts/fetch-models.sh {name}` or give a path to a .gguf file")
}

/// A model ready to use: weights, tokenizer and chat template.
pub struct Loaded {
    pub model: Model,
    pub tokenizer: Tokenizer,
    pub path: PathBuf,
}

impl Loaded {
    pub fn open(name: &str) -> Result<Loaded> {
        let path = resolve_model(name)?;
        let model =
            Model::load(&path).with_context(|| format!("cannot load {}", path.display()))?;
        let tokenizer = Tokenizer::from_gguf(&model.gguf)
            .context("cannot build the tokenizer from the model file")?;
        Ok(Loaded {
            model,
            tokenizer,
            path,
        })
    }

    pub fn chat_template(&self) -> Result<ChatTemplate> {
        ChatTemplate::from_gguf(&self.model.gguf).context("cannot set up the chat template")
    }

    /// The context size to use: the request, capped at what the model was trained for.
    pub fn n_ctx(&self, requested: usize) -> usize {
        requested.min(self.model.config.n_ctx_train).max(1)
    }
}
