//! Ollama's model endpoints: `GET /api/tags` (the models a request may name), `POST /api/show` (one model's
//! details, metadata and template), `GET /api/ps` (the models loaded), `GET /api/version`, `POST /api/pull` (a
//! hearth source — `hf://…`, `pypi://…`, a built-in name — into the store, streaming Ollama's progress statuses),
//! `DELETE /api/delete`. Models are reached through [`crate::served`] only.

use crate::error::ApiError;
use crate::ollama::rfc3339;
use crate::{served, AppState};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hearth_engine::Model;
use hearth_gguf::Value as Meta;
use hearth_store::{ListEntry, ModelInfo, PullEvent, PullOptions, Reporter, StoreError};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::mpsc;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NameRequest {
    #[serde(alias = "name")]
    model: String,
    #[serde(default)]
    verbose: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PullRequest {
    #[serde(alias = "name")]
    model: String,
    #[serde(default)]
    insecure: Option<bool>,
    #[serde(default)]
    stream: Option<bool>,
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(format!("The body is not valid JSON: {e}"), None))?;
    crate::api::typed(&value)
}

/// What Ollama's lists say about one model: from its loaded weights when `model` is given, else from the store's
/// listing `listed`.
fn entry(state: &AppState, name: &str, model: Option<&Model>, listed: Option<&ListEntry>) -> Value {
    let info = model.and_then(|m| ModelInfo::from_parts(std::slice::from_ref(&m.gguf)).ok());
    let size = match (&info, listed) {
        (Some(i), _) => i.weight_bytes,
        (None, Some(l)) => l.size,
        (None, None) => 0,
    };
    let arch = model.map_or_else(
        || listed.map_or_else(String::new, |l| l.architecture.clone()),
        |m| m.config.arch.clone(),
    );
    let quant = info.as_ref().map_or_else(
        || listed.map_or_else(String::new, |l| l.quant.clone()),
        |i| i.quant.clone(),
    );
    let modified = listed.map_or(state.created, |l| l.modified);
    let digest = served::store(state)
        .ok()
        .and_then(|s| s.manifest(name).ok().flatten())
        .and_then(|m| m.files.first().map(|f| f.sha256.clone()))
        .unwrap_or_default();
    json!({
        "name": name,
        "model": name,
        "modified_at": rfc3339(SystemTime::UNIX_EPOCH + Duration::from_secs(modified)),
        "size": size,
        "digest": digest,
        "details": {
            "parent_model": "",
            "format": "gguf",
            "family": arch,
            "families": [arch],
            "parameter_size": info.as_ref().map_or(String::new(), |i| parameter_size(i.parameters)),
            "quantization_level": quant,
        },
    })
}

/// `135M`, `1.5B`: how Ollama writes a parameter count.
fn parameter_size(n: u64) -> String {
    if n >= 1_000_000_000 {
        format!("{:.1}B", n as f64 / 1e9)
    } else {
        format!("{:.0}M", n as f64 / 1e6)
    }
}

pub async fn tags(State(state): State<Arc<AppState>>) -> Json<Value> {
    let st = state.clone();
    let listing = tokio::task::spawn_blocking(move || st.listing())
        .await
        .unwrap_or_default();
    let loaded = state.models.each_loaded();
    let models: Vec<Value> = listing
        .iter()
        .map(|l| {
            let m = loaded.iter().find(|s| s.id == l.name);
            entry(&state, &l.name, m.map(|s| &*s.model), Some(l))
        })
        .collect();
    Json(json!({ "models": models }))
}

pub async fn ps(State(state): State<Arc<AppState>>) -> Json<Value> {
    let served = state.models.each_loaded();
    let models: Vec<Value> = served::loaded(&state)
        .iter()
        .map(|l| {
            let s = served.iter().find(|s| s.id == l.id);
            let mut e = entry(&state, &l.id, s.map(|s| &*s.model), None);
            // The memory planner's count where it counts (a server of the store); else the weights.
            if l.size > 0 {
                e["size"] = json!(l.size);
            }
            // Never unloaded (a server of one model, or a negative keep-alive): Ollama's far future.
            e["expires_at"] = json!(l
                .expires_at
                .map_or_else(|| "9999-12-31T23:59:59Z".to_string(), rfc3339));
            e["size_vram"] = json!(0);
            e["context_length"] = json!(s.map_or(0, |s| s.n_ctx()));
            e
        })
        .collect();
    Json(json!({ "models": models }))
}

pub async fn version() -> Json<Value> {
    Json(json!({ "version": env!("CARGO_PKG_VERSION") }))
}

pub async fn show(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    let result = async {
        let req: NameRequest = parse(&body)?;
        let m = served::model(&state, &req.model, None).await?;
        // `verbose` asks Ollama for the arrays (the vocabulary) too; hearth leaves them out (null) either way.
        let _ = req.verbose;
        let g = &m.model.gguf;
        let mut info = Map::new();
        for k in g.keys() {
            let v = g.get(k).map_or(Value::Null, |v| meta_json(&v));
            info.insert(k.to_string(), v);
        }
        let mut caps = vec!["completion", "tools"];
        if m.tok.token_id("<think>").is_some() {
            caps.push("thinking");
        }
        let e = entry(&state, &m.id, Some(&m.model), None);
        let template = g
            .get_str("tokenizer.chat_template")
            .ok()
            .flatten()
            .unwrap_or("");
        Ok(Json(json!({
            "modelfile": format!("# served by hearth\nFROM {}\n", req.model),
            "parameters": "",
            "template": template,
            "details": e["details"],
            "model_info": info,
            "capabilities": caps,
            "modified_at": e["modified_at"],
        }))
        .into_response())
    }
    .await;
    result.unwrap_or_else(ApiError::into_response)
}

fn meta_json(v: &Meta<'_>) -> Value {
    match *v {
        Meta::U8(x) => json!(x),
        Meta::I8(x) => json!(x),
        Meta::U16(x) => json!(x),
        Meta::I16(x) => json!(x),
        Meta::U32(x) => json!(x),
        Meta::I32(x) => json!(x),
        Meta::U64(x) => json!(x),
        Meta::I64(x) => json!(x),
        Meta::F32(x) => json!(x),
        Meta::F64(x) => json!(x),
        Meta::Bool(x) => json!(x),
        Meta::Str(s) => json!(s),
        Meta::Array(_) => Value::Null,
    }
}

pub async fn delete(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    let result = async {
        let req: NameRequest = parse(&body)?;
        let name = req.model.strip_suffix(":latest").unwrap_or(&req.model).to_string();
        if served::is_loaded(&state, &name) {
            return Err(ApiError::invalid(
                format!("The model '{name}' is loaded by this server; it cannot be deleted while served"),
                Some("model"),
            ));
        }
        let store = served::store(&state)?;
        tokio::task::spawn_blocking(move || store.remove(&name).map_err(store_error))
            .await
            .map_err(|e| ApiError::internal(format!("deleting: {e}")))??;
        Ok(StatusCode::OK.into_response())
    }
    .await;
    result.unwrap_or_else(ApiError::into_response)
}

/// A store failure as the status a client can act on.
fn store_error(e: StoreError) -> ApiError {
    let status = match &e {
        StoreError::NotInstalled(_)
        | StoreError::RepoNotFound { .. }
        | StoreError::EntryNotFound { .. } => StatusCode::NOT_FOUND,
        StoreError::BadName { .. }
        | StoreError::BadSource { .. }
        | StoreError::NoGguf { .. }
        | StoreError::QuantNotFound { .. } => StatusCode::BAD_REQUEST,
        StoreError::Unauthorized { .. }
        | StoreError::Forbidden { .. }
        | StoreError::Http { .. } => StatusCode::BAD_GATEWAY,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    ApiError::status(status, e.to_string())
}

/// The whole answer to a pull that is over.
fn done(r: Result<Result<hearth_store::Manifest, ApiError>, tokio::task::JoinError>) -> Response {
    match r
        .map_err(|e| ApiError::internal(format!("pulling: {e}")))
        .and_then(|r| r)
    {
        Ok(_) => Json(json!({"status": "success"})).into_response(),
        Err(e) => e.into_response(),
    }
}

/// One event as Ollama's progress line; None for a transfer update that comes too soon after the last line.
fn progress_line(e: PullEvent, last: &mut Option<(String, Instant)>) -> Option<Value> {
    match e {
        PullEvent::Status(s) => Some(json!({ "status": s })),
        PullEvent::Transfer {
            file,
            sha256,
            completed,
            total,
        } => {
            let done = total == Some(completed);
            let due = match last {
                Some((f, at)) => f != &file || at.elapsed() >= PROGRESS_EVERY,
                None => true,
            };
            if !(done || due) {
                return None;
            }
            *last = Some((file.clone(), Instant::now()));
            let mut v = json!({"status": format!("pulling {file}"), "completed": completed});
            if let Some(t) = total {
                v["total"] = json!(t);
            }
            if let Some(s) = sha256 {
                v["digest"] = json!(format!("sha256:{s}"));
            }
            Some(v)
        }
    }
}

/// How often a transfer's progress becomes a line (besides its first and last).
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

pub async fn pull(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    let req: PullRequest = match parse(&body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    if req.insecure == Some(true) {
        return ApiError::invalid(
            "'insecure' is not supported: hearth pulls over HTTPS from the Hub, or from the index pip is set to",
            Some("insecure"),
        )
        .into_response();
    }
    let store = match served::store(&state) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let (tx, mut events) = mpsc::unbounded_channel::<PullEvent>();
    let source = req.model.clone();
    let work = tokio::task::spawn_blocking(move || {
        let opts = PullOptions {
            progress: hearth_store::ProgressMode::Quiet,
            report: Some(Reporter(Arc::new(move |e| {
                let _ = tx.send(e);
            }))),
            ..PullOptions::default()
        };
        store.pull(&source, &opts).map_err(store_error)
    });
    if req.stream == Some(false) {
        return done(work.await);
    }
    // A source that cannot be pulled at all (a bad name, an unknown scheme) fails before its first step: answer
    // that with its status rather than a stream.
    let mut work = work;
    let first = tokio::select! {
        e = events.recv() => e,
        r = &mut work => return done(r),
    };
    if first.is_none() {
        // The reporter is gone: the pull ended without a step.
        return done(work.await);
    }
    let (out, rx) = mpsc::unbounded_channel::<Result<Bytes, Infallible>>();
    tokio::spawn(async move {
        let line = |v: Value| out.send(Ok(Bytes::from(format!("{v}\n")))).is_ok();
        let mut last: Option<(String, Instant)> = None;
        let mut next = first;
        while let Some(e) = next {
            // A client that went away does not stop the pull: it finishes into the store, as Ollama's does.
            if let Some(v) = progress_line(e, &mut last) {
                let _ = line(v);
            }
            next = events.recv().await;
        }
        let end = match work.await {
            Ok(Ok(_)) => json!({"status": "success"}),
            Ok(Err(e)) => json!({"error": e.message}),
            Err(e) => json!({"error": format!("pulling: {e}")}),
        };
        let _ = line(end);
    });
    let stream = tokio_stream::wrappers::UnboundedReceiverStream::new(rx);
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response()
}
