//! Errors in each API's own shape. Handlers, the guard and the middleware all fail with [`ApiError`] (OpenAI's
//! `{"error": {"message", "type", …}}`); [`reshape`], outermost, rewrites an error response under `/api/` into
//! Ollama's `{"error": "message"}` and one under `/v1/messages` into Anthropic's
//! `{"type": "error", "error": {"type", "message"}}`, keeping the status. A stream that fails after it started
//! sends the same shapes as its last line or event ([`ollama_body`], [`anthropic_body`]).

use crate::error::ApiError;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

/// Which API a path belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    OpenAi,
    Ollama,
    Anthropic,
}

impl Dialect {
    pub fn of(path: &str) -> Dialect {
        if path.starts_with("/api/") {
            Dialect::Ollama
        } else if path == "/v1/messages" || path.starts_with("/v1/messages/") {
            Dialect::Anthropic
        } else {
            Dialect::OpenAi
        }
    }
}

/// Ollama's error body.
pub fn ollama_body(message: &str) -> Value {
    json!({ "error": message })
}

/// Anthropic's error body; the type follows the status as Anthropic's API documents it.
pub fn anthropic_body(status: StatusCode, message: &str) -> Value {
    let kind = match status.as_u16() {
        400 | 405 | 408 | 415 | 421 | 422 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        s if s >= 500 => "api_error",
        _ => "invalid_request_error",
    };
    json!({"type": "error", "error": {"type": kind, "message": message}})
}

/// The body `e` has in `dialect`.
pub fn body(dialect: Dialect, e: &ApiError) -> Value {
    match dialect {
        Dialect::OpenAi => e.body(),
        Dialect::Ollama => ollama_body(&e.message),
        Dialect::Anthropic => anthropic_body(e.status, &e.message),
    }
}

/// The middleware: see the module documentation.
pub async fn reshape(req: Request, next: Next) -> Response {
    let dialect = Dialect::of(req.uri().path());
    let res = next.run(req).await;
    let status = res.status();
    if dialect == Dialect::OpenAi || !(status.is_client_error() || status.is_server_error()) {
        return res;
    }
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !is_json {
        return res;
    }
    let (parts, old) = res.into_parts();
    // Error bodies are ours and small; anything unexpected passes through unchanged.
    let Ok(bytes) = axum::body::to_bytes(old, 1 << 20).await else {
        return (status, "").into_response();
    };
    let message = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_string));
    let Some(message) = message else {
        return Response::from_parts(parts, Body::from(bytes));
    };
    let e = ApiError::status(status, message);
    let mut out = (status, Json(body(dialect, &e))).into_response();
    for name in [
        header::ALLOW,
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        header::VARY,
    ] {
        for v in parts.headers.get_all(&name) {
            out.headers_mut().append(name.clone(), v.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_shapes() {
        assert_eq!(Dialect::of("/api/chat"), Dialect::Ollama);
        assert_eq!(Dialect::of("/v1/messages"), Dialect::Anthropic);
        assert_eq!(Dialect::of("/v1/messages/count_tokens"), Dialect::Anthropic);
        assert_eq!(Dialect::of("/v1/messagesx"), Dialect::OpenAi);
        assert_eq!(Dialect::of("/v1/chat/completions"), Dialect::OpenAi);
        let b = anthropic_body(StatusCode::UNAUTHORIZED, "no");
        assert_eq!(b["error"]["type"], "authentication_error");
        assert_eq!(b["type"], "error");
        assert_eq!(
            anthropic_body(StatusCode::SERVICE_UNAVAILABLE, "x")["error"]["type"],
            "overloaded_error"
        );
        assert_eq!(ollama_body("m"), json!({"error": "m"}));
    }
}
