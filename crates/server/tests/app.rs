//! `app()` driven without a socket (tower's `oneshot`): routing, validation, OpenAI error JSON, auth, the queue
//! limit, and greedy output equal to the engine's single-sequence `generate` loop. Needs SmolLM2.

mod common;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use common::{config, greedy_chat, greedy_completion, state, MODEL_ID};
use hearth_server::app;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use std::sync::OnceLock;
use tower::ServiceExt;

/// One shared app with the default test configuration.
fn router() -> Router {
    static S: OnceLock<std::sync::Arc<hearth_server::AppState>> = OnceLock::new();
    app(S.get_or_init(|| state(config())).clone())
}

async fn send(router: Router, req: Request<Body>) -> (StatusCode, Value) {
    let res = router.oneshot(req).await.expect("infallible");
    let status = res.status();
    let bytes = res.into_body().collect().await.expect("body").to_bytes();
    let v = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, v)
}

fn post(path: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post(path)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.into())
        .expect("request")
}

fn post_json(path: &str, v: Value) -> Request<Body> {
    post(path, v.to_string())
}

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).expect("request")
}

/// Asserts an OpenAI error body with `status` and, when given, the `param` it names.
fn assert_error(got: &(StatusCode, Value), status: StatusCode, param: Option<&str>) {
    assert_eq!(got.0, status, "{}", got.1);
    let e = &got.1["error"];
    assert!(e["message"].is_string(), "no error message: {}", got.1);
    assert!(e["type"].is_string(), "no error type: {}", got.1);
    if let Some(p) = param {
        assert_eq!(e["param"], p, "{}", got.1);
    }
}

#[tokio::test]
async fn health_models_and_unknown_routes() {
    let (s, v) = send(router(), get("/health")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["status"], "ok");
    let (s, v) = send(router(), get("/v1/models")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"][0]["id"], MODEL_ID);
    assert_eq!(v["data"][0]["object"], "model");
    let (s, v) = send(router(), get(&format!("/v1/models/{MODEL_ID}"))).await;
    assert_eq!((s, &v["id"]), (StatusCode::OK, &json!(MODEL_ID)));
    let got = send(router(), get("/v1/models/gpt-4")).await;
    assert_error(&got, StatusCode::NOT_FOUND, Some("model"));
    assert_eq!(got.1["error"]["code"], "model_not_found");
    let got = send(router(), get("/v1/nothing")).await;
    assert_error(&got, StatusCode::NOT_FOUND, None);
}

#[tokio::test]
async fn malformed_and_mistyped_bodies_are_400_naming_the_field() {
    let got = send(router(), post("/v1/chat/completions", "{not json")).await;
    assert_error(&got, StatusCode::BAD_REQUEST, None);
    let got = send(router(), post("/v1/chat/completions", "[1, 2]")).await;
    assert_error(&got, StatusCode::BAD_REQUEST, None);
    let msgs = json!([{"role": "user", "content": "Hi"}]);
    let cases = [
        (json!({"messages": msgs, "max_tokens": "ten"}), "max_tokens"),
        (json!({"messages": msgs, "temperature": 3.5}), "temperature"),
        (json!({"messages": msgs, "top_p": "x"}), "top_p"),
        (json!({"messages": msgs, "n": 3}), "n"),
        (json!({"messages": msgs, "stream": "yes"}), "stream"),
        (
            json!({"messages": msgs, "tools": [{"type": "function"}]}),
            "tools",
        ),
        (json!({"messages": msgs, "frobnicate": 1}), "frobnicate"),
        (json!({"messages": "Hi"}), "messages"),
        (json!({"messages": []}), "messages"),
        (
            json!({"messages": [{"role": "user", "content": 5}]}),
            "messages[0].content",
        ),
        (json!({"messages": msgs, "top_logprobs": 3}), "top_logprobs"),
    ];
    for (body, param) in cases {
        let got = send(router(), post_json("/v1/chat/completions", body.clone())).await;
        assert_error(&got, StatusCode::BAD_REQUEST, Some(param));
    }
    let cases = [
        (json!({"prompt": 7}), "prompt"),
        (json!({"prompt": ["a", "b"]}), "prompt"),
        (json!({"prompt": "a", "logprobs": 9}), "logprobs"),
        (json!({"prompt": "a", "echo": true}), "echo"),
        (json!({"prompt": "a", "max_tokens": -1}), "max_tokens"),
    ];
    for (body, param) in cases {
        let got = send(router(), post_json("/v1/completions", body.clone())).await;
        assert_error(&got, StatusCode::BAD_REQUEST, Some(param));
    }
    // A missing required field is named in the message.
    let got = send(
        router(),
        post_json("/v1/chat/completions", json!({"model": MODEL_ID})),
    )
    .await;
    assert_error(&got, StatusCode::BAD_REQUEST, None);
    assert!(
        got.1["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("messages"),
        "{}",
        got.1
    );
}

#[tokio::test]
async fn unknown_model_is_404() {
    let body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}]});
    let got = send(router(), post_json("/v1/chat/completions", body)).await;
    assert_error(&got, StatusCode::NOT_FOUND, Some("model"));
    assert_eq!(got.1["error"]["code"], "model_not_found");
    let got = send(
        router(),
        post_json("/v1/completions", json!({"model": "x", "prompt": "a"})),
    )
    .await;
    assert_error(&got, StatusCode::NOT_FOUND, Some("model"));
}

#[tokio::test]
async fn context_overflow_is_400_with_the_numbers() {
    let body = json!({"prompt": "Hello there", "max_tokens": 600});
    let got = send(router(), post_json("/v1/completions", body)).await;
    assert_error(&got, StatusCode::BAD_REQUEST, Some("prompt"));
    let m = got.1["error"]["message"].as_str().unwrap_or("").to_string();
    assert!(m.contains("512") && m.contains("600"), "{m}");
    let long = "word ".repeat(700);
    let body = json!({"messages": [{"role": "user", "content": long}], "max_tokens": 4});
    let got = send(router(), post_json("/v1/chat/completions", body)).await;
    assert_error(&got, StatusCode::BAD_REQUEST, Some("messages"));
    assert!(
        got.1["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("512"),
        "{}",
        got.1
    );
}

#[tokio::test]
async fn api_key_guards_v1_only() {
    let router = app(state(hearth_server::ServerConfig {
        api_key: Some("sesame".into()),
        ..config()
    }));
    let got = send(router.clone(), get("/v1/models")).await;
    assert_error(&got, StatusCode::UNAUTHORIZED, None);
    assert_eq!(got.1["error"]["code"], "invalid_api_key");
    let wrong = Request::get("/v1/models")
        .header(header::AUTHORIZATION, "Bearer open")
        .body(Body::empty())
        .expect("request");
    assert_eq!(
        send(router.clone(), wrong).await.0,
        StatusCode::UNAUTHORIZED
    );
    let right = Request::get("/v1/models")
        .header(header::AUTHORIZATION, "Bearer sesame")
        .body(Body::empty())
        .expect("request");
    assert_eq!(send(router.clone(), right).await.0, StatusCode::OK);
    let chat = post_json(
        "/v1/chat/completions",
        json!({"messages": [{"role": "user", "content": "Hi"}]}),
    );
    assert_eq!(send(router.clone(), chat).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(send(router.clone(), get("/health")).await.0, StatusCode::OK);
    assert_eq!(send(router, get("/metrics")).await.0, StatusCode::OK);
}

#[tokio::test]
async fn full_queue_is_429() {
    let mut c = config();
    c.batch.max_queued = 0;
    let router = app(state(c));
    let got = send(
        router,
        post_json("/v1/completions", json!({"prompt": "a", "max_tokens": 2})),
    )
    .await;
    assert_error(&got, StatusCode::TOO_MANY_REQUESTS, None);
    assert_eq!(got.1["error"]["type"], "rate_limit_error");
}

#[tokio::test]
async fn greedy_completion_equals_generate() {
    let prompt = "The capital of France is";
    let (want, n) = greedy_completion(prompt, 24);
    let body = json!({"model": MODEL_ID, "prompt": prompt, "max_tokens": 24, "temperature": 0});
    let (s, v) = send(router(), post_json("/v1/completions", body)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["choices"][0]["text"], want.as_str(), "{v}");
    assert_eq!(v["usage"]["completion_tokens"], n);
    let want_finish = if n == 24 { "length" } else { "stop" };
    assert_eq!(v["choices"][0]["finish_reason"], want_finish);
    let prompt_tokens = common::tokenizer()
        .encode(prompt, true, true)
        .expect("encode")
        .len();
    assert_eq!(v["usage"]["prompt_tokens"], prompt_tokens);
    assert_eq!(v["usage"]["total_tokens"], prompt_tokens + n);
}

#[tokio::test]
async fn greedy_chat_equals_generate() {
    let user = "What is the tallest mountain on Earth?";
    let (want, n) = greedy_chat(user, 40);
    let body = json!({
        "model": MODEL_ID,
        "messages": [{"role": "user", "content": user}],
        "max_completion_tokens": 40,
        "temperature": 0,
    });
    let (s, v) = send(router(), post_json("/v1/chat/completions", body)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["choices"][0]["message"]["content"], want.as_str(), "{v}");
    assert_eq!(v["usage"]["completion_tokens"], n);
}

#[tokio::test]
async fn stop_strings_cut_the_text() {
    let prompt = "The capital of France is";
    let (full, _) = greedy_completion(prompt, 24);
    // Stop at a piece of the greedy text that spans tokens: everything before it comes back, nothing after.
    let words: Vec<&str> = full.split_inclusive(' ').collect();
    assert!(
        words.len() > 3,
        "greedy text too short to test stops: {full:?}"
    );
    let stop = format!("{}{}", words[2], words[3].trim_end());
    let at = full.find(&stop).expect("stop inside the text");
    let body = json!({"prompt": prompt, "max_tokens": 24, "temperature": 0, "stop": [stop]});
    let (s, v) = send(router(), post_json("/v1/completions", body)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["choices"][0]["text"], &full[..at]);
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
}

#[tokio::test]
async fn metrics_count_requests_and_tokens() {
    let body = json!({"prompt": "One, two,", "max_tokens": 3, "temperature": 0});
    assert_eq!(
        send(router(), post_json("/v1/completions", body)).await.0,
        StatusCode::OK
    );
    let (s, v) = send(router(), get("/metrics")).await;
    assert_eq!(s, StatusCode::OK);
    let text = v.as_str().expect("text").to_string();
    for name in [
        "hearth_requests_total{endpoint=\"completions\"}",
        "hearth_completion_tokens_total",
        "hearth_queue_depth",
        "hearth_kv_cache_bytes",
        "hearth_time_to_first_token_seconds_bucket",
        "hearth_tokens_per_second_count",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
}
