//! `hearth serve [MODEL]`: the OpenAI-compatible HTTP API (hearth-server) on a socket until SIGINT/SIGTERM. With a
//! model, that one, loaded at start (pulled first when it is a source not installed yet); without, every model of
//! the store, each loaded when a request names it and unloaded when idle for `--keep-alive`.

use crate::common::{Loaded, ModelArgs};
use anyhow::{Context, Result};
use hearth_engine::batch::BatchConfig;
use hearth_server::{AppState, KeepAlive, ServerConfig};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A model name, a source it was pulled as (hf://ORG/REPO:QUANT, pulled first if need be) or a .gguf path.
    /// Without one, every model of the store is served, each loaded when a request names it.
    model: Option<String>,
    /// Compute threads, 1 to the number of logical CPUs (default: all of them).
    #[arg(short = 't', long, value_parser = crate::common::parse_threads)]
    threads: Option<usize>,
    /// KV cache element type: f16, f32 (exact, twice the memory) or q8_0 (about half of f16).
    #[arg(long = "kv-type", default_value = "f16")]
    kv_type: hearth_engine::KvType,
    #[command(flatten)]
    lookup: crate::common::LookupArgs,
    /// Load even when the estimated memory (weights + KV cache + scratch) exceeds what is available.
    #[arg(long)]
    no_mem_check: bool,
    /// Serving the store: how long a model stays loaded after its last request (`5m`, `1h`, `30s`, `0` to unload
    /// at once, negative to keep it). A request's own `keep_alive` (Ollama's API) replaces it for that model.
    #[arg(long, default_value = "5m")]
    keep_alive: KeepAlive,
    /// Serving the store: the bytes all loaded models may take together (`8G`, `512M`; default: the memory
    /// available at start). A model counts its weights, every parallel sequence's KV cache at full context, the
    /// prefix cache and scratch; when a new one does not fit, idle models are unloaded, least recently used first.
    #[arg(long, value_parser = parse_bytes)]
    memory_budget: Option<u64>,
    /// Address to listen on (use 0.0.0.0 to accept other machines).
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port to listen on (0 picks a free one; the address is printed on stderr).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Require `Authorization: Bearer KEY` on /v1/*.
    #[arg(long, env = "HEARTH_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Context size of each sequence (prompt plus generated tokens), capped at the model's training context.
    #[arg(short = 'c', long = "ctx-size", alias = "ctx", default_value_t = 4096, value_parser = crate::common::parse_ctx_size)]
    ctx_size: usize,
    /// Sequences generated at once; more requests wait in the queue.
    #[arg(long, default_value_t = 16)]
    parallel: usize,
    /// Requests waiting beyond which new ones get 429.
    #[arg(long, default_value_t = 256)]
    max_queued: usize,
    /// The id clients send as `model` (default: the name given on the command line, or the file's stem).
    #[arg(long)]
    model_id: Option<String>,
    /// A host name clients may use besides IP addresses and localhost (repeatable; `*` allows any). Other names
    /// are refused, so a web page cannot reach the server through DNS rebinding.
    #[arg(long = "allowed-host", value_name = "NAME")]
    allowed_hosts: Vec<String>,
    /// A web origin (`https://app.example`) whose pages may call the API: CORS headers are sent to it (repeatable;
    /// `*` for any). None by default.
    #[arg(long = "cors-origin", value_name = "ORIGIN")]
    cors_origins: Vec<String>,
    /// Connections served at once (more wait until one ends; default: 512, fewer under a low descriptor limit).
    #[arg(long)]
    max_connections: Option<usize>,
}

/// `8G`, `512M`, `1.5GB`, `1000000` (bytes); K, M, G, T are powers of 1000 (as sizes are printed).
fn parse_bytes(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim().trim_end_matches(['B', 'b']);
    let (num, mult) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m = match c.to_ascii_uppercase() {
                'K' => 1e3,
                'M' => 1e6,
                'G' => 1e9,
                'T' => 1e12,
                _ => return Err(format!("{s:?}: unknown unit (use K, M, G or T)")),
            };
            (&t[..i], m)
        }
        _ => (t, 1.0),
    };
    match num.trim().parse::<f64>() {
        Ok(n) if n.is_finite() && n > 0.0 && n * mult < u64::MAX as f64 => Ok((n * mult) as u64),
        _ => Err(format!("{s:?} is not a size like 8G or 512M")),
    }
}

pub fn run(a: Args) -> Result<ExitCode> {
    let parallel = a.parallel.max(1);
    let n_threads = a.threads.unwrap_or_else(ModelArgs::default_threads).max(1);
    let mut config = ServerConfig {
        model_id: String::new(),
        model_aliases: Vec::new(),
        api_key: a.api_key.clone().filter(|k| !k.is_empty()),
        batch: BatchConfig {
            n_threads,
            n_ctx: a.ctx_size,
            max_running: parallel,
            max_queued: a.max_queued,
            kv_type: a.kv_type,
            lookup: a.lookup.lookup(),
            ..BatchConfig::default()
        },
        allowed_hosts: a.allowed_hosts.clone(),
        cors_origins: a.cors_origins.clone(),
        limits: hearth_server::Limits {
            max_connections: a
                .max_connections
                .unwrap_or_else(|| hearth_server::Limits::default().max_connections)
                .max(1),
            ..hearth_server::Limits::default()
        },
        keep_alive: a.keep_alive,
        memory_budget: a.memory_budget,
    };
    let addr = SocketAddr::new(a.host, a.port);
    let Some(name) = &a.model else {
        let store = hearth_store::Store::open_default()?;
        let (models, _) = store.list()?;
        let state = AppState::store(store, config);
        let (budget, _) = state.models.memory();
        eprintln!(
            "serving the store ({} models); context {} per sequence, {parallel} in parallel, {n_threads} threads; \
             idle models unload after {}; memory budget {}",
            models.len(),
            a.ctx_size,
            a.keep_alive,
            hearth_store::format_bytes(budget)
        );
        hearth_server::serve(state, addr).context("serving")?;
        return Ok(ExitCode::SUCCESS);
    };
    let args = ModelArgs {
        model: name.clone(),
        threads: a.threads,
        kv_type: a.kv_type,
        no_mem_check: a.no_mem_check,
    };
    let loaded = Loaded::open_or_pull(name)?;
    let n_ctx = loaded.n_ctx(a.ctx_size);
    loaded.check_memory(n_ctx, &args)?;
    // Refuse a KV type that does not fit the model here rather than falling back silently.
    loaded.model.new_cache_typed(1, a.kv_type)?;
    config.model_id = a.model_id.clone().unwrap_or_else(|| {
        let p = Path::new(name);
        if p.extension().is_some_and(|e| e == "gguf") {
            p.file_stem()
                .map_or_else(|| name.clone(), |s| s.to_string_lossy().into())
        } else {
            loaded.name.clone()
        }
    });
    config.batch.n_ctx = n_ctx;
    // The name on the command line (a source it was pulled as) answers too.
    if name != &config.model_id {
        config.model_aliases.push(name.clone());
    }
    eprintln!(
        "loaded {} ({}, {} layers); context {n_ctx} per sequence, {parallel} in parallel, {n_threads} threads",
        loaded.path.display(),
        loaded.model.config.arch,
        loaded.model.config.n_layer,
    );
    let state = AppState::new(Arc::new(loaded.model), config)?;
    hearth_server::serve(state, addr).context("serving")?;
    Ok(ExitCode::SUCCESS)
}
