//! hearth-server: an OpenAI-compatible HTTP API over hearth's continuously batched engine.
//!
//! - [`app`] builds the axum [`Router`] (tests drive it without a socket): `POST /v1/chat/completions`,
//!   `POST /v1/completions`, `POST /v1/embeddings` and Ollama's `POST /api/embed` ([`embeddings`]), `GET /v1/models`,
//!   `GET /health`, `GET /metrics`, and the chat page at `/` ([`page`]).
//! - [`AppState`] holds the [`Engine`](hearth_engine::batch::Engine) (its own OS thread), the tokenizer and the
//!   chat template. Handlers turn requests into token ids, submit them, and map the engine's events to JSON or SSE
//!   chunks. The text (detokenizing, a reasoning model's `<think>` split as `reasoning_content`, stop strings) is
//!   hearth-text's `TextStream`, run on the engine thread by this crate's sink ([`text`]), so the engine ends the
//!   sequence at a stop string and reports the finish and usage itself.
//! - [`serve`] runs the router on a socket until SIGINT/SIGTERM, finishing the requests in flight, with the
//!   connection limits and timeouts of [`Limits`] ([`listen`]); when the engine fails it returns
//!   [`ServerError::Failed`] so the process can exit for its supervisor.
//! - The same port speaks Ollama's API (`/api/chat`, `/api/generate`, `/api/tags`, `/api/show`, `/api/ps`,
//!   `/api/version`, `/api/pull`, `/api/delete`) and Anthropic's Messages API (`/v1/messages`,
//!   `/v1/messages/count_tokens`): thin translations onto the same request types, job builder, engine and text
//!   stream, each with its own response and error shapes ([`dialect`]); docs/apis.md lists what each accepts.
//! - [`guard`] sits in front of every route: the `Host` check against DNS rebinding, `application/json` bodies,
//!   CORS only where configured, and OpenAI's error JSON for every error.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! let model = Arc::new(hearth_engine::Model::load("smollm2-135m.gguf")?);
//! let state = hearth_server::AppState::new(model, hearth_server::ServerConfig::new("smollm2-135m"))?;
//! hearth_server::serve(state, "127.0.0.1:8080".parse()?)?;
//! # Ok(()) }
//! ```

mod answer;
mod anthropic;
pub mod api;
mod completions;
pub mod dialect;
mod embeddings;
pub mod error;
pub mod guard;
pub mod listen;
pub mod metrics;
pub mod models;
mod ollama;
mod ollama_models;
pub mod page;
pub mod plan;
mod render;
mod served;
mod structured;
pub mod text;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use error::ApiError;
use hearth_engine::batch::{BatchConfig, Stats};
use hearth_engine::Model;
use std::net::SocketAddr;
use std::sync::Arc;

pub use listen::Limits;
pub use models::{KeepAlive, Lease, LoadedModel, Models, Served};

/// What the server is told at start.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The id clients name in `model` (and `/v1/models` lists).
    pub model_id: String,
    /// Other names the one model answers to (the source it was pulled as, the name on the command line).
    pub model_aliases: Vec<String>,
    /// When set, `/v1/*` and `/api/*` require `Authorization: Bearer <key>` or `x-api-key: <key>`.
    pub api_key: Option<String>,
    pub batch: BatchConfig,
    /// Host names served besides IP literals and `localhost` (`*`: any); see [`guard`].
    pub allowed_hosts: Vec<String>,
    /// Origins that get CORS headers (`*`: any); none by default.
    pub cors_origins: Vec<String>,
    pub limits: Limits,
    /// How long a model of the store stays loaded after its last request (a request's own `keep_alive` replaces
    /// it); a server of one model keeps it.
    pub keep_alive: KeepAlive,
    /// Bytes the models of the store may take together (see [`plan`]); None: the memory available at start.
    pub memory_budget: Option<u64>,
}

impl ServerConfig {
    pub fn new(model_id: impl Into<String>) -> ServerConfig {
        ServerConfig {
            model_id: model_id.into(),
            model_aliases: Vec::new(),
            api_key: None,
            batch: BatchConfig::default(),
            allowed_hosts: Vec::new(),
            cors_origins: Vec::new(),
            limits: Limits::default(),
            keep_alive: KeepAlive::DEFAULT,
            memory_budget: None,
        }
    }
}

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("reading the model's tokenizer: {0}")]
    Tokenizer(#[from] hearth_text::TextError),
    #[error("the context size {n_ctx} is larger than the model's training context {n_ctx_train}")]
    ContextTooLarge { n_ctx: usize, n_ctx_train: usize },
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The engine failed or the model file changed underneath it: the process should exit for its supervisor.
    #[error("{0}; stopping so that a supervisor can restart the server")]
    Failed(String),
}

/// Everything the handlers share: the server's settings and counters, and the models it answers for. Handlers get
/// the model a request names with [`AppState::served`].
pub struct AppState {
    pub config: ServerConfig,
    pub metrics: metrics::Metrics,
    pub created: u64,
    pub models: Models,
}

impl AppState {
    /// Serves `model` alone as `config.model_id`: builds its tokenizer and chat template and starts its engine.
    pub fn new(model: Arc<Model>, config: ServerConfig) -> Result<Arc<AppState>, ServerError> {
        let models = Models::one(
            config.model_id.clone(),
            config.model_aliases.clone(),
            model,
            config.batch.clone(),
        )?;
        Ok(Arc::new(AppState {
            config,
            metrics: metrics::Metrics::default(),
            created: models::unix_now(),
            models,
        }))
    }

    /// Serves every model in `store`: each is loaded when a request first names it, and unloaded after
    /// `config.keep_alive` idle or when a model that does not fit otherwise needs its memory. `config.model_id` is
    /// not used.
    pub fn store(store: hearth_store::Store, config: ServerConfig) -> Arc<AppState> {
        let budget = config
            .memory_budget
            .or_else(hearth_store::memory::available_memory)
            .unwrap_or(u64::MAX);
        let plan = models::Plan {
            budget,
            keep_alive: config.keep_alive,
            batch: config.batch.clone(),
        };
        Arc::new(AppState {
            metrics: metrics::Metrics::default(),
            created: models::unix_now(),
            models: Models::store(store, plan),
            config,
        })
    }

    /// The models clients may name: the store's, or the one model served (what `/v1/models` and Ollama's
    /// `/api/tags` list). Damaged manifests are left out.
    pub fn listing(&self) -> Vec<hearth_store::ListEntry> {
        match self.models.source() {
            Some(store) => store.list().map(|(l, _)| l).unwrap_or_default(),
            None => self
                .models
                .each_loaded()
                .iter()
                .map(|s| {
                    let info =
                        hearth_store::ModelInfo::from_parts(std::slice::from_ref(&s.model.gguf));
                    hearth_store::ListEntry {
                        name: s.id.clone(),
                        size: s.model.gguf.bytes().len() as u64,
                        quant: info
                            .as_ref()
                            .map_or_else(|_| String::new(), |i| i.quant.clone()),
                        architecture: s.model.config.arch.clone(),
                        modified: self.created,
                        source: String::new(),
                    }
                })
                .collect(),
        }
    }

    /// The model a request names (`None`: the server's default), loaded if need be. The request holds it through
    /// the returned [`Lease`] (clone it into tasks that outlive the handler); once the last lease is dropped, the
    /// model's keep-alive starts: `keep_alive` (Ollama's per-request field) replaces the server's from then on.
    pub async fn served(
        &self,
        model: Option<&str>,
        keep_alive: Option<KeepAlive>,
    ) -> Result<Lease, ApiError> {
        self.models.get(model, keep_alive).await
    }

    /// Why this server can no longer answer correctly: an engine thread panicked, or a mapped model file was
    /// truncated or written in place. None while healthy. One `fstat` and one lock per loaded model.
    pub fn failure(&self) -> Option<String> {
        self.models.each_loaded().iter().find_map(|s| s.failure())
    }

    /// The engines' counters, summed over the loaded models.
    pub fn stats(&self) -> Stats {
        self.models
            .each_loaded()
            .iter()
            .map(|s| s.engine.stats())
            .fold(Stats::default(), metrics::add_stats)
    }
}

/// The HTTP API. Authentication (when an API key is set) covers `/v1/*` and `/api/*`; `/health`, `/metrics` and
/// the page are open.
pub fn app(state: Arc<AppState>) -> Router {
    let v1 = Router::new()
        .route("/v1/chat/completions", post(completions::chat))
        .route("/v1/completions", post(completions::completions))
        .route("/v1/embeddings", post(embeddings::openai))
        .route("/api/embed", post(embeddings::ollama))
        .route("/v1/models", get(models))
        .route("/v1/models/{id}", get(model))
        .route("/v1/messages", post(anthropic::messages))
        .route("/v1/messages/count_tokens", post(anthropic::count_tokens))
        .route("/api/chat", post(ollama::chat))
        .route("/api/generate", post(ollama::generate))
        .route("/api/tags", get(ollama_models::tags))
        .route("/api/show", post(ollama_models::show))
        .route("/api/ps", get(ollama_models::ps))
        .route("/api/version", get(ollama_models::version))
        .route("/api/pull", post(ollama_models::pull))
        .route("/api/delete", delete(ollama_models::delete))
        .route_layer(middleware::from_fn_with_state(state.clone(), alive))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth));
    Router::new()
        .merge(v1)
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .merge(page::routes())
        .fallback(|req: Request| async move { ApiError::not_found(req.uri().path()) })
        .layer(middleware::from_fn_with_state(state.clone(), guard::guard))
        .layer(middleware::from_fn(dialect::reshape))
        .with_state(state)
}

/// A failed engine refuses work with its reason (503) instead of a 500 or "shutting down" for every request.
async fn alive(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    if let Some(why) = state.failure() {
        return ApiError::unavailable(why).into_response();
    }
    next.run(req).await
}

async fn auth(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    if let Some(key) = &state.config.api_key {
        // OpenAI's and Ollama's clients send a bearer token, Anthropic's an `x-api-key`.
        let h = req.headers();
        let given = h
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .or_else(|| h.get("x-api-key").and_then(|v| v.to_str().ok()));
        if !given.is_some_and(|g| constant_time_eq(g.trim().as_bytes(), key.as_bytes())) {
            return ApiError::unauthorized().into_response();
        }
    }
    next.run(req).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn model_json(e: &hearth_store::ListEntry) -> serde_json::Value {
    serde_json::json!({
        "id": e.name,
        "object": "model",
        "created": e.modified,
        "owned_by": "hearth",
    })
}

async fn models(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    let st = state.clone();
    let list = tokio::task::spawn_blocking(move || st.listing())
        .await
        .unwrap_or_default();
    let data: Vec<_> = list.iter().map(model_json).collect();
    Json(serde_json::json!({"object": "list", "data": data}))
}

async fn model(
    State(state): State<Arc<AppState>>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let st = state.clone();
    let list = tokio::task::spawn_blocking(move || st.listing())
        .await
        .unwrap_or_default();
    match list.iter().find(|e| e.name == id) {
        Some(e) => Ok(Json(model_json(e))),
        None if state.models.source().is_none() => {
            Err(ApiError::model_not_found(&id, &state.config.model_id))
        }
        None => Err(ApiError::no_such_model(
            &id,
            "no model of that name is installed (GET /v1/models lists them)",
        )),
    }
}

async fn health(State(state): State<Arc<AppState>>) -> Response {
    // A server of one model names it; a store's server lists the models loaded now.
    let model = match state.models.source() {
        None => serde_json::json!(state.config.model_id),
        Some(_) => serde_json::json!(state
            .models
            .loaded()
            .into_iter()
            .map(|m| m.id)
            .collect::<Vec<_>>()),
    };
    if let Some(why) = state.failure() {
        let body = serde_json::json!({"status": "failed", "model": model, "error": why});
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    }
    let s = state.stats();
    Json(serde_json::json!({
        "status": "ok",
        "model": model,
        "queued": s.queued,
        "running": s.running,
    }))
    .into_response()
}

async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(&state.stats()),
    )
}

/// Serves `app(state)` on `addr` until SIGINT or SIGTERM; requests in flight finish first. Blocks. Returns
/// [`ServerError::Failed`] when the engine fails (see [`listen`] for why the server stops rather than restarts it).
pub fn serve(state: Arc<AppState>, addr: SocketAddr) -> Result<(), ServerError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("hearth-http")
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let what = match state.models.source() {
            Some(store) => format!("the models of {}", store.root().display()),
            None => state.config.model_id.clone(),
        };
        eprintln!(
            "hearth: serving {what} on http://{}",
            listener.local_addr()?
        );
        serve_on(listener, state, shutdown_signal()).await?;
        eprintln!("hearth: stopped");
        Ok(())
    })
}

/// Serves `app(state)` on a bound `listener` in the current tokio runtime until `shutdown` completes (requests in
/// flight finish first), or until the engine fails: then [`ServerError::Failed`] after a short drain.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ServerError> {
    listen::serve(listener, state, shutdown)
        .await
        .map_err(ServerError::Failed)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    eprintln!("hearth: shutting down, finishing requests in flight");
}
