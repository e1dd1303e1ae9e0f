//! The HTTP layer's own rules, in front of every route ([`guard`]): what a browser page may make the server do, how
//! long a client may take to send its body, and that every error a client sees is OpenAI's error JSON.
//!
//! - **Host** ([`host_allowed`]): a DNS-rebinding page reaches `127.0.0.1` under its own name (`Host: evil.example`)
//!   and may then read the answers, so only names that cannot be rebound are served: IP literals, `localhost` and
//!   `*.localhost`, plus the names given with `--allowed-host` (`*` turns the check off).
//! - **Content type**: a POST must say `application/json`. A page can send `text/plain` (or a form) to any origin
//!   without a CORS preflight; requiring JSON means it cannot make the server generate without the server's consent.
//! - **CORS**: headers only for the origins given with `--cors-origin` (none by default; the chat page is served
//!   from the same origin and needs none).
//! - **Body**: read whole, at most [`MAX_BODY_BYTES`], within the body-read timeout (408 for a client that
//!   trickles it), before any handler runs.
//! - **Errors**: any error response that is not JSON yet (axum's 405 with an empty body, a rejection's plain text)
//!   becomes `{"error": {…}}` with the same status. Hyper's own answers to unparsable requests are rewritten in
//!   [`crate::listen`].

use crate::error::ApiError;
use crate::AppState;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

/// The largest request body read (2 MiB, axum's default limit for the handlers' extractors).
pub const MAX_BODY_BYTES: usize = 2 << 20;

/// The middleware: see the module documentation for the rules, in the order they are applied.
pub(crate) async fn guard(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let cors = cors_origin(&state.config.cors_origins, req.headers());
    let res = match check(&state, req, cors.is_some()).await {
        Ok(Checked::Run(req)) => next.run(*req).await,
        Ok(Checked::Preflight) => preflight(),
        Err(e) => e.into_response(),
    };
    let mut res = as_json_error(res, &method, &path);
    if let Some(origin) = cors {
        let h = res.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.append(header::VARY, HeaderValue::from_static("origin"));
    }
    res
}

enum Checked {
    Run(Box<Request>),
    Preflight,
}

async fn check(state: &AppState, req: Request, cors: bool) -> Result<Checked, ApiError> {
    let host = req
        .uri()
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| header_str(req.headers(), header::HOST).map(str::to_string));
    if let Some(host) = host {
        if !host_allowed(&host, &state.config.allowed_hosts) {
            return Err(ApiError::status(
                StatusCode::FORBIDDEN,
                format!(
                    "The Host '{}' is not served here (a guard against DNS rebinding); start the server with \
                     --allowed-host NAME to allow a name",
                    host.chars().take(100).collect::<String>()
                ),
            ));
        }
    }
    if cors
        && req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    {
        return Ok(Checked::Preflight);
    }
    if req.method() == Method::POST && !is_json(req.headers()) {
        let got = header_str(req.headers(), header::CONTENT_TYPE).unwrap_or("none");
        return Err(ApiError::status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "The request body must be JSON sent with 'Content-Type: application/json' (got '{}')",
                got.chars().take(100).collect::<String>()
            ),
        ));
    }
    let timeout = state.config.limits.body_read_timeout;
    let (parts, body) = req.into_parts();
    let bytes =
        match tokio::time::timeout(timeout, axum::body::to_bytes(body, MAX_BODY_BYTES)).await {
            Ok(Ok(b)) => b,
            Ok(Err(e)) if is_length_limit(&e) => return Err(too_large()),
            Ok(Err(e)) => {
                return Err(ApiError::invalid(
                    format!("The request body could not be read: {e}"),
                    None,
                ))
            }
            Err(_) => {
                return Err(ApiError::status(
                    StatusCode::REQUEST_TIMEOUT,
                    format!(
                        "The request body did not arrive within {} s",
                        timeout.as_secs_f64()
                    ),
                ))
            }
        };
    Ok(Checked::Run(Box::new(Request::from_parts(
        parts,
        Body::from(bytes),
    ))))
}

/// Whether `host` (a `Host` header: name or IP literal, with or without a port) may be served.
pub fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let name = without_port(host.trim())
        .trim()
        .trim_end_matches('.')
        .to_ascii_lowercase();
    if allowed.iter().any(|a| {
        a == "*"
            || without_port(a)
                .trim_end_matches('.')
                .eq_ignore_ascii_case(&name)
    }) {
        return true;
    }
    let ip = name.parse::<Ipv4Addr>().is_ok()
        || name
            .strip_prefix('[')
            .and_then(|n| n.strip_suffix(']'))
            .is_some_and(|n| n.parse::<Ipv6Addr>().is_ok());
    // Browsers resolve `localhost` and `*.localhost` to the loopback address themselves (RFC 6761).
    ip || name == "localhost" || name.ends_with(".localhost")
}

/// `name:port` → `name`; `[v6]:port` → `[v6]`.
fn without_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |i| &host[..=i]);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

fn header_str(h: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// `application/json`, with parameters (`; charset=utf-8`) or not.
fn is_json(h: &HeaderMap) -> bool {
    header_str(h, header::CONTENT_TYPE).is_some_and(|v| {
        v.split(';')
            .next()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
    })
}

fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = s.source();
    }
    false
}

fn too_large() -> ApiError {
    ApiError::status(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "The request body is larger than {} MiB",
            MAX_BODY_BYTES >> 20
        ),
    )
}

/// The request's `Origin` when CORS is configured for it: what `Access-Control-Allow-Origin` then says.
fn cors_origin(allowed: &[String], h: &HeaderMap) -> Option<HeaderValue> {
    let origin = h.get(header::ORIGIN)?;
    let o = origin.to_str().ok()?.trim_end_matches('/');
    if allowed.iter().any(|a| a == "*") {
        return Some(HeaderValue::from_static("*"));
    }
    allowed
        .iter()
        .any(|a| a.trim_end_matches('/').eq_ignore_ascii_case(o))
        .then(|| origin.clone())
}

/// The answer to a CORS preflight from an allowed origin (the origin header is added by [`guard`]).
fn preflight() -> Response {
    (
        StatusCode::NO_CONTENT,
        [
            (
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("GET, POST, DELETE, OPTIONS"),
            ),
            (
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static(
                    "authorization, content-type, x-api-key, anthropic-version",
                ),
            ),
            (
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static("600"),
            ),
        ],
    )
        .into_response()
}

/// An error response whose body is not JSON becomes OpenAI's error JSON with the same status (and `Allow` kept).
fn as_json_error(res: Response, method: &Method, path: &str) -> Response {
    let status = res.status();
    let is_json = header_str(res.headers(), header::CONTENT_TYPE)
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return res;
    }
    let message = match status {
        StatusCode::METHOD_NOT_ALLOWED => format!("{method} is not allowed on {path}"),
        StatusCode::PAYLOAD_TOO_LARGE => too_large().message,
        s => s.canonical_reason().unwrap_or("Request failed").to_string(),
    };
    let allow = res.headers().get(header::ALLOW).cloned();
    let mut out = ApiError::status(status, message).into_response();
    if let Some(a) = allow {
        out.headers_mut().insert(header::ALLOW, a);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        let none: &[String] = &[];
        for ok in [
            "127.0.0.1:8080",
            "127.0.0.1",
            "[::1]:8080",
            "localhost:8080",
            "LOCALHOST",
            "app.localhost",
            "192.168.1.5:80",
            "localhost.",
        ] {
            assert!(host_allowed(ok, none), "{ok}");
        }
        for bad in [
            "evil.example:8080",
            "evil.example",
            "localhost.evil.example",
            "127.0.0.1.evil.example",
            "[::1.evil]",
            "",
        ] {
            assert!(!host_allowed(bad, none), "{bad}");
        }
        let allowed = ["box.lan".to_string()];
        assert!(host_allowed("box.lan:8080", &allowed));
        assert!(host_allowed("BOX.LAN", &allowed));
        assert!(!host_allowed("other.lan", &allowed));
        assert!(host_allowed("anything", &["*".to_string()]));
    }
}
