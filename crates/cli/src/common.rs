//! What several subcommands share: finding a model by name or path, loading it with its tokenizer, threads.

use anyhow::{bail, Context, Result};
use hearth_engine::{KvType, Model, ThreadPool};
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
    /// KV cache element type: f16, f32 (exact, twice the memory) or q8_0 (about half of f16).
    #[arg(long = "kv-type", default_value = "f16")]
    pub kv_type: KvType,
    /// Load even when the estimated memory (weights + KV cache + scratch) exceeds what is available.
    #[arg(long)]
    pub no_mem_check: bool,
}

impl ModelArgs {
    pub fn pool(&self) -> ThreadPool {
        ThreadPool::new(self.n_threads())
    }

    /// The compute threads asked for, or one per core.
    pub fn n_threads(&self) -> usize {
        self.threads.unwrap_or_else(Self::default_threads).max(1)
    }

    /// One thread per core.
    pub fn default_threads() -> usize {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }
}

/// A path to an existing file, or the file installed in the store under a name.
pub fn resolve_model(name: &str) -> Result<PathBuf> {
    let store = hearth_store::Store::open_default()?;
    let resolved = store.resolve(name)?;
    match resolved.paths.as_slice() {
        [one] => Ok(one.clone()),
        parts => bail!(
            "model {name:?} is split into {} files; the engine loads single-file GGUFs so far (merge the parts first)",
            parts.len()
        ),
    }
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
        ChatTemplate::from_gguf_with(&self.model.gguf, &self.tokenizer)
            .context("cannot set up the chat template")
    }

    /// Refuses a context whose memory would exceed what the machine has, unless told not to check.
    pub fn check_memory(&self, n_ctx: usize, args: &ModelArgs) -> Result<()> {
        if !args.no_mem_check {
            // Bytes per cached element, rounded up (q8_0 is 34 bytes per 32).
            let kv_bytes = if args.kv_type == KvType::F32 { 4 } else { 2 };
            hearth_store::memory::estimate(&self.model.gguf, n_ctx as u64, kv_bytes)?.check()?;
        }
        Ok(())
    }

    /// The context size to use: the request, capped at what the model was trained for.
    pub fn n_ctx(&self, requested: usize) -> usize {
        requested.min(self.model.config.n_ctx_train).max(1)
    }
}
