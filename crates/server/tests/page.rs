//! The chat page through `app()`: `/` and its files are served without the API key, with a strict
//! Content-Security-Policy and the right content types; the page says whether the API wants a key; the `Host`
//! guard covers the page too. The page's behaviour in a browser is tested in `tests/python/test_page.py`.

mod common;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use common::{config, state};
use hearth_server::{app, page::CSP, ServerConfig};
use http_body_util::BodyExt;
use tower::ServiceExt;

async fn fetch(router: Router, req: Request<Body>) -> (StatusCode, header::HeaderMap, String) {
    let res = router.oneshot(req).await.expect("infallible");
    let (parts, body) = res.into_parts();
    let bytes = body.collect().await.expect("body").to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8(bytes.to_vec()).expect("utf-8"),
    )
}

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).expect("request")
}

#[tokio::test]
async fn page_and_files_load_without_the_key_under_a_strict_policy() {
    let router = app(state(ServerConfig {
        api_key: Some("sesame".into()),
        ..config()
    }));
    for (path, kind, must_hold) in [
        (
            "/",
            "text/html; charset=utf-8",
            r#"<meta name="hearth-api-key" content="required">"#,
        ),
        (
            "/chat.js",
            "text/javascript; charset=utf-8",
            "/v1/chat/completions",
        ),
        ("/chat.css", "text/css; charset=utf-8", "@media"),
        ("/favicon.svg", "image/svg+xml", "<svg"),
    ] {
        let (status, h, body) = fetch(router.clone(), get(path)).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(h[header::CONTENT_TYPE], kind, "{path}");
        assert_eq!(h[header::CONTENT_SECURITY_POLICY], CSP, "{path}");
        assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff", "{path}");
        assert!(body.contains(must_hold), "{path} lacks {must_hold}");
    }
    for part in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(CSP.contains(part), "{part}");
    }
    assert!(!CSP.contains("unsafe"), "{CSP}");
    // The API itself still wants the key.
    let (status, _, _) = fetch(router.clone(), get("/v1/models")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // The DNS-rebinding guard covers the page as well.
    let rebound = Request::get("/")
        .header(header::HOST, "evil.example")
        .body(Body::empty())
        .expect("request");
    assert_eq!(fetch(router, rebound).await.0, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn page_says_no_key_is_needed_when_none_is_set() {
    let (status, _, body) = fetch(app(state(config())), get("/")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains(r#"<meta name="hearth-api-key" content="none">"#));
    assert!(!body.contains("{{"), "a placeholder left in the page");
}
