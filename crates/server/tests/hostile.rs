//! What a browser page or a broken client can make the server do (issue 12, items 8 and 12): `Host` names that a
//! DNS-rebinding page would send are refused, POST bodies must be declared JSON, CORS headers go only to configured
//! origins, and every error — the router's 404/405, the body limit's 413, hyper's own 400/431 — is OpenAI's error
//! JSON. Uses the tiny Qwen3 fixture.

mod common;
mod tiny;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use hearth_server::{app, ServerConfig};
use http_body_util::BodyExt;
use serde_json::Value;
use tiny::{tiny_config, tiny_state};
use tower::ServiceExt;

async fn send(router: Router, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Value) {
    let res = router.oneshot(req).await.expect("infallible");
    let (parts, body) = res.into_parts();
    let bytes = body.collect().await.expect("body").to_bytes();
    let v = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (parts.status, parts.headers, v)
}

/// Asserts OpenAI's error JSON with `status`.
fn assert_api_error(
    status: StatusCode,
    headers: &axum::http::HeaderMap,
    v: &Value,
    want: StatusCode,
) {
    assert_eq!(status, want, "{v}");
    assert!(
        headers
            .get(header::CONTENT_TYPE)
            .is_some_and(|c| c.to_str().unwrap_or("").starts_with("application/json")),
        "{headers:?}"
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{v}"
    );
    assert!(v["error"]["type"].is_string(), "{v}");
}

const BODY: &str = r#"{"prompt": "Hello", "max_tokens": 2, "temperature": 0}"#;

fn post(host: &str, content_type: Option<&str>, body: impl Into<Body>) -> Request<Body> {
    let mut r = Request::post("/v1/completions").header(header::HOST, host);
    if let Some(ct) = content_type {
        r = r.header(header::CONTENT_TYPE, ct);
    }
    r.body(body.into()).expect("request")
}

fn get(path: &str, host: &str) -> Request<Body> {
    Request::get(path)
        .header(header::HOST, host)
        .body(Body::empty())
        .expect("request")
}

#[tokio::test]
async fn names_a_rebinding_page_would_send_are_refused() {
    let router = app(tiny_state(tiny_config()));
    for host in [
        "evil.example:8080",
        "evil.example",
        "localhost.evil.example",
    ] {
        let (s, h, v) = send(router.clone(), post(host, Some("application/json"), BODY)).await;
        assert_api_error(s, &h, &v, StatusCode::FORBIDDEN);
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap_or("")
                .contains("--allowed-host"),
            "{v}"
        );
        let (s, _, _) = send(router.clone(), get("/health", host)).await;
        assert_eq!(s, StatusCode::FORBIDDEN);
    }
    for host in [
        "127.0.0.1:8080",
        "localhost:8080",
        "[::1]:8080",
        "192.168.1.20",
    ] {
        let (s, _, v) = send(router.clone(), post(host, Some("application/json"), BODY)).await;
        assert_eq!(s, StatusCode::OK, "{host}: {v}");
    }
    let router = app(tiny_state(ServerConfig {
        allowed_hosts: vec!["box.lan".into()],
        ..tiny_config()
    }));
    let (s, _, v) = send(router.clone(), get("/v1/models", "box.lan:8080")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, _, _) = send(router, get("/v1/models", "other.lan:8080")).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn post_bodies_must_be_declared_json() {
    let router = app(tiny_state(tiny_config()));
    // What a page can send cross-origin without a preflight, and what curl -d sends.
    for ct in [
        Some("text/plain"),
        Some("text/plain;charset=UTF-8"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        None,
    ] {
        let (s, h, v) = send(router.clone(), post("localhost", ct, BODY)).await;
        assert_api_error(s, &h, &v, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }
    let (s, _, v) = send(
        router,
        post("localhost", Some("Application/JSON; charset=utf-8"), BODY),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

#[tokio::test]
async fn cors_headers_go_only_to_configured_origins() {
    let preflight = |origin: &str| {
        Request::options("/v1/chat/completions")
            .header(header::HOST, "localhost")
            .header(header::ORIGIN, origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "content-type")
            .body(Body::empty())
            .expect("request")
    };
    let with_origin = |origin: &str| {
        let mut r = post("localhost", Some("application/json"), BODY);
        r.headers_mut()
            .insert(header::ORIGIN, origin.parse().expect("origin"));
        r
    };
    // None configured (the default): no CORS headers at all, and a preflight is refused.
    let router = app(tiny_state(tiny_config()));
    let (s, h, v) = send(router.clone(), preflight("https://evil.example")).await;
    assert_api_error(s, &h, &v, StatusCode::METHOD_NOT_ALLOWED);
    assert!(
        !h.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN),
        "{h:?}"
    );
    let (s, h, _) = send(router, with_origin("https://evil.example")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        !h.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN),
        "{h:?}"
    );

    let router = app(tiny_state(ServerConfig {
        cors_origins: vec!["https://app.example".into()],
        ..tiny_config()
    }));
    let (s, h, _) = send(router.clone(), preflight("https://app.example")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(
        h[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "https://app.example"
    );
    assert!(h[header::ACCESS_CONTROL_ALLOW_HEADERS]
        .to_str()
        .unwrap_or("")
        .contains("content-type"));
    let (s, h, _) = send(router.clone(), with_origin("https://app.example")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        h[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "https://app.example"
    );
    let (_, h, _) = send(router, with_origin("https://evil.example")).await;
    assert!(
        !h.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN),
        "{h:?}"
    );
}

#[tokio::test]
async fn the_routers_own_errors_are_openai_json() {
    let router = app(tiny_state(tiny_config()));
    let (s, h, v) = send(router.clone(), get("/v1/chat/completions", "localhost")).await;
    assert_api_error(s, &h, &v, StatusCode::METHOD_NOT_ALLOWED);
    assert!(h.contains_key(header::ALLOW), "{h:?}");
    let (s, h, v) = send(router.clone(), get("/nothing/here", "localhost")).await;
    assert_api_error(s, &h, &v, StatusCode::NOT_FOUND);
    let big = format!(r#"{{"prompt": "{}"}}"#, "a".repeat(3 << 20));
    let (s, h, v) = send(
        router.clone(),
        post("localhost", Some("application/json"), big),
    )
    .await;
    assert_api_error(s, &h, &v, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("2 MiB"),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hypers_own_answers_to_unparsable_requests_are_openai_json() {
    let state = tiny_state(tiny_config());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(hearth_server::serve_on(
        listener,
        state,
        std::future::pending(),
    ));
    // More header fields than hyper takes (100): a 431, with every byte read (no reset loses the answer).
    let huge_header = format!(
        "GET /health HTTP/1.1\r\nHost: localhost\r\n{}\r\n",
        "X-A: b\r\n".repeat(200)
    );
    for (req, want) in [
        (b"GARBAGE\r\n\r\n".to_vec(), 400),
        (
            b"GET /health HTTP/1.1\r\nHost: localhost\r\nBad Header\r\n\r\n".to_vec(),
            400,
        ),
        (huge_header.into_bytes(), 431),
    ] {
        let (status, head, body) = common::raw_exchange(addr, &req).await;
        assert_eq!(status, want, "{head}\n{body}");
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: application/json"),
            "{head}"
        );
        let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body:?}"));
        assert!(v["error"]["message"].is_string(), "{v}");
    }
    // And the server still answers properly afterwards.
    let (status, _, body) = common::raw_exchange(
        addr,
        b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200, "{body}");
}
