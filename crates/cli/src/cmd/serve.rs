//! `hearth serve MODEL`: the OpenAI-compatible HTTP API (hearth-server) on a socket until SIGINT/SIGTERM.

use crate::common::{Loaded, ModelArgs};
use anyhow::{Context, Result};
use hearth_engine::batch::BatchConfig;
use hearth_server::{AppState, ServerConfig};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
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

pub fn run(a: Args) -> Result<ExitCode> {
    let loaded = Loaded::open(&a.model.model)?;
    let n_ctx = loaded.n_ctx(a.ctx_size);
    loaded.check_memory(n_ctx, &a.model)?;
    // Refuse a KV type that does not fit the model here rather than falling back silently.
    loaded.model.new_cache_typed(1, a.model.kv_type)?;
    let model_id = a.model_id.clone().unwrap_or_else(|| {
        let p = Path::new(&a.model.model);
        if p.extension().is_some_and(|e| e == "gguf") {
            p.file_stem()
                .map_or_else(|| a.model.model.clone(), |s| s.to_string_lossy().into())
        } else {
            a.model.model.clone()
        }
    });
    let parallel = a.parallel.max(1);
    let config = ServerConfig {
        model_id,
        api_key: a.api_key.clone().filter(|k| !k.is_empty()),
        batch: BatchConfig {
            n_threads: a.model.n_threads(),
            n_ctx,
            max_running: parallel,
            max_queued: a.max_queued,
            kv_type: a.model.kv_type,
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
    };
    eprintln!(
        "loaded {} ({}, {} layers); context {n_ctx} per sequence, {parallel} in parallel, {} threads",
        loaded.path.display(),
        loaded.model.config.arch,
        loaded.model.config.n_layer,
        config.batch.n_threads,
    );
    let state = AppState::new(Arc::new(loaded.model), config)?;
    hearth_server::serve(state, SocketAddr::new(a.host, a.port)).context("serving")?;
    Ok(ExitCode::SUCCESS)
}
