//! hearth-server: an OpenAI-compatible HTTP API over hearth's continuously batched engine.
//!
//! - [`app`] builds the axum [`Router`] (tests drive it without a socket): `POST /v1/chat/completions`,
//!   `POST /v1/completions`, `GET /v1/models`, `GET /health`, `GET /metrics`, and the chat page at `/` ([`page`]).
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
pub mod error;
pub mod guard;
pub mod listen;
pub mod metrics;
mod ollama;
mod ollama_models;
pub mod page;
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
use hearth_constraint::Guide;
use hearth_engine::batch::{BatchConfig, Engine};
use hearth_engine::Model;
use hearth_text::{ChatTemplate, Tokenizer};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

pub use listen::Limits;

/// What the server is told at start.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The id clients name in `model` (and `/v1/models` lists).
    pub model_id: String,
    /// When set, `/v1/*` and `/api/*` require `Authorization: Bearer <key>` or `x-api-key: <key>`.
    pub api_key: Option<String>,
    pub batch: BatchConfig,
    /// Host names served besides IP literals and `localhost` (`*`: any); see [`guard`].
    pub allowed_hosts: Vec<String>,
    /// Origins that get CORS headers (`*`: any); none by default.
    pub cors_origins: Vec<String>,
    pub limits: Limits,
}

impl ServerConfig {
    pub fn new(model_id: impl Into<String>) -> ServerConfig {
        ServerConfig {
            model_id: model_id.into(),
            api_key: None,
            batch: BatchConfig::default(),
            allowed_hosts: Vec::new(),
            cors_origins: Vec::new(),
            limits: Limits::default(),
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

/// Everything the handlers share.
pub struct AppState {
    pub engine: Engine,
    /// The model the engine runs (kept to watch its file).
    pub model: Arc<Model>,
    pub tok: Arc<Tokenizer>,
    /// Compiles grammars for this vocabulary (structured output); built in the background at start.
    guide: Arc<OnceLock<Result<Arc<Guide>, String>>>,
    n_vocab: usize,
    /// None when the file's template does not compile: chat requests then fail with the reason.
    pub template: Result<ChatTemplate, String>,
    pub config: ServerConfig,
    pub metrics: metrics::Metrics,
    pub created: u64,
}

impl AppState {
    /// Builds the tokenizer and chat template from the model file and starts the engine thread.
    pub fn new(model: Arc<Model>, config: ServerConfig) -> Result<Arc<AppState>, ServerError> {
        let tok = Arc::new(Tokenizer::from_gguf(&model.gguf)?);
        let template = ChatTemplate::from_gguf_with(&model.gguf, &tok).map_err(|e| e.to_string());
        let n_ctx_train = model.config.n_ctx_train;
        if config.batch.n_ctx > n_ctx_train {
            return Err(ServerError::ContextTooLarge {
                n_ctx: config.batch.n_ctx,
                n_ctx_train,
            });
        }
        let n_vocab = model.config.n_vocab;
        let engine = Engine::start(model.clone(), config.batch.clone());
        let state = Arc::new(AppState {
            engine,
            model,
            tok,
            guide: Arc::new(OnceLock::new()),
            n_vocab,
            template,
            config,
            metrics: metrics::Metrics::default(),
            created: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        });
        // The vocabulary trie takes a few hundred milliseconds (seconds for a 262k vocabulary): build it now, so
        // that the first constrained request does not wait for it.
        let st = state.clone();
        let _ = std::thread::Builder::new()
            .name("hearth-guide".into())
            .spawn(move || {
                let _ = st.guide();
            });
        Ok(state)
    }

    /// The grammar compiler for this model's vocabulary (waits while it is being built).
    pub fn guide(&self) -> Result<Arc<Guide>, String> {
        self.guide
            .get_or_init(|| {
                Guide::new(self.tok.clone(), self.n_vocab)
                    .map(Arc::new)
                    .map_err(|e| e.to_string())
            })
            .clone()
    }
}

impl AppState {
    /// Why this server can no longer answer correctly: the engine thread panicked, or the mapped model file was
    /// truncated or written in place. None while healthy. One `fstat` and one lock.
    pub fn failure(&self) -> Option<String> {
        self.engine
            .failure()
            .or_else(|| self.model.gguf.changed_on_disk())
    }
}

/// The HTTP API. Authentication (when an API key is set) covers `/v1/*` and `/api/*`; `/health`, `/metrics` and
/// the page are open.
pub fn app(state: Arc<AppState>) -> Router {
    let v1 = Router::new()
        .route("/v1/chat/completions", post(completions::chat))
        .route("/v1/completions", post(completions::completions))
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

fn model_json(state: &AppState) -> serde_json::Value {
    serde_json::json!({
        "id": state.config.model_id,
        "object": "model",
        "created": state.created,
        "owned_by": "hearth",
    })
}

async fn models(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    Json(serde_json::json!({"object": "list", "data": [model_json(&state)]}))
}

async fn model(
    State(state): State<Arc<AppState>>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if id != state.config.model_id {
        return Err(ApiError::model_not_found(&id, &state.config.model_id));
    }
    Ok(Json(model_json(&state)))
}

async fn health(State(state): State<Arc<AppState>>) -> Response {
    if let Some(why) = state.failure() {
        let body =
            serde_json::json!({"status": "failed", "model": state.config.model_id, "error": why});
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    }
    let s = state.engine.stats();
    Json(serde_json::json!({
        "status": "ok",
        "model": state.config.model_id,
        "queued": s.queued,
        "running": s.running,
    }))
    .into_response()
}

async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(&state.engine.stats()),
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
        eprintln!(
            "hearth: serving {} on http://{}",
            state.config.model_id,
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
