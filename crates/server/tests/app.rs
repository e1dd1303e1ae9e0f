//! `app()` driven without a socket (tower's `oneshot`): routing, validation, OpenAI error JSON, auth, the queue
//! limit, greedy output equal to the plain greedy reference loop, and usage from the engine. Needs SmolLM2.

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
        (
            json!({"messages": msgs, "logprobs": true, "top_logprobs": 21}),
            "top_logprobs",
        ),
        (
            json!({"messages": msgs, "max_completion_tokens": 0}),
            "max_completion_tokens",
        ),
        (json!({"messages": msgs, "max_tokens": 0}), "max_tokens"),
        (json!({"messages": msgs, "n": 0}), "n"),
        (json!({"messages": msgs, "seed": 1.5}), "seed"),
        (json!({"messages": msgs, "stop": [1]}), "stop"),
        (
            json!({"messages": msgs, "presence_penalty": -2.5}),
            "presence_penalty",
        ),
        (
            json!({"messages": msgs, "frequency_penalty": 2.5}),
            "frequency_penalty",
        ),
        (json!({"messages": msgs, "top_p": 1.5}), "top_p"),
        // OpenAI refuses stream_options on a request that does not stream.
        (
            json!({"messages": msgs, "stream_options": {"include_usage": true}}),
            "stream_options",
        ),
        (
            json!({"messages": msgs, "stream": false, "stream_options": {"include_usage": true}}),
            "stream_options",
        ),
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

/// llama.cpp's log-probabilities for SmolLM2 (../shared/reference/smollm2-135m-q4_1/greedy.json, prompt "capital").
fn reference_steps() -> Vec<Value> {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/reference/smollm2-135m-q4_1/greedy.json");
    let all: Value = serde_json::from_slice(&std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}: the reference data must sit beside the repository",
            path.display()
        )
    }))
    .expect("greedy.json");
    let capital = all
        .as_array()
        .and_then(|a| a.iter().find(|x| x["id"] == "capital"))
        .expect("the capital prompt");
    capital["steps"].as_array().expect("steps").clone()
}

/// One generated token's log-probabilities: (token, logprob, [(token, logprob)] of the most likely).
type Row = (String, f64, Vec<(String, f64)>);

/// The rows of either endpoint's logprobs object.
fn logprob_rows(v: &Value) -> Vec<Row> {
    if let Some(content) = v["content"].as_array() {
        return content
            .iter()
            .map(|e| {
                let top = e["top_logprobs"].as_array().expect("top_logprobs");
                (
                    e["token"].as_str().expect("token").to_string(),
                    e["logprob"].as_f64().expect("logprob"),
                    top.iter()
                        .map(|t| {
                            (
                                t["token"].as_str().expect("token").to_string(),
                                t["logprob"].as_f64().expect("lp"),
                            )
                        })
                        .collect(),
                )
            })
            .collect();
    }
    let tokens = v["tokens"].as_array().expect("tokens");
    (0..tokens.len())
        .map(|i| {
            let top = v["top_logprobs"][i].as_object().expect("top map");
            (
                tokens[i].as_str().expect("token").to_string(),
                v["token_logprobs"][i].as_f64().expect("logprob"),
                top.iter()
                    .map(|(k, lp)| (k.clone(), lp.as_f64().expect("lp")))
                    .collect(),
            )
        })
        .collect()
}

/// Our rows against llama.cpp's for the first `rows.len()` steps: the same token, log-probabilities within 0.2
/// (Q4_1 kernels differ in rounding; a log-probability taken after temperature or top-k would be far off).
fn assert_logprobs_match_llamacpp(rows: &[Row], k: usize) {
    let steps = reference_steps();
    for (i, (tok, lp, top)) in rows.iter().enumerate() {
        let r = &steps[i];
        assert_eq!(tok, r["token"].as_str().expect("token"), "step {i}");
        let want = r["logprob"].as_f64().expect("logprob");
        assert!(
            (lp - want).abs() < 0.2,
            "step {i}: logprob {lp} vs llama.cpp {want}"
        );
        assert_eq!(top.len(), k, "step {i}: {top:?}");
        for (t, lp) in top {
            if let Some(x) = r["top"]
                .as_array()
                .expect("top")
                .iter()
                .find(|x| x["token"] == t.as_str())
            {
                let want = x["logprob"].as_f64().expect("lp");
                assert!(
                    (lp - want).abs() < 0.2,
                    "step {i} {t:?}: {lp} vs llama.cpp {want}"
                );
            }
        }
    }
}

#[tokio::test]
async fn completion_logprobs_match_llamacpp_streamed_or_not() {
    let body = json!({"prompt": "The capital of France is", "max_tokens": 4, "temperature": 0, "logprobs": 5});
    let (s, v) = send(router(), post_json("/v1/completions", body.clone())).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let lp = &v["choices"][0]["logprobs"];
    let rows = logprob_rows(lp);
    assert_eq!(rows.len(), 4, "{v}");
    assert_logprobs_match_llamacpp(&rows, 5);
    let text: String = rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(v["choices"][0]["text"], text.as_str());
    assert_eq!(lp["text_offset"], json!([0, 6, 7, 8]));
    // Streamed: the same rows spread over the chunks, offsets continuing from chunk to chunk.
    let mut stream_body = body;
    stream_body["stream"] = json!(true);
    let (s, v) = send(router(), post_json("/v1/completions", stream_body)).await;
    assert_eq!(s, StatusCode::OK);
    let mut streamed = Vec::new();
    let mut offsets = Vec::new();
    for c in sse_chunks(&v) {
        let lp = &c["choices"][0]["logprobs"];
        if !lp.is_null() {
            streamed.extend(logprob_rows(lp));
            offsets.extend(lp["text_offset"].as_array().expect("offsets").clone());
        }
    }
    assert_eq!(streamed, rows);
    assert_eq!(json!(offsets), json!([0, 6, 7, 8]));
}

#[tokio::test]
async fn chat_logprobs_in_responses_and_stream_chunks() {
    let body = json!({"messages": [{"role": "user", "content": "Name a fruit."}], "max_tokens": 6,
        "temperature": 0, "logprobs": true, "top_logprobs": 3});
    let (s, v) = send(router(), post_json("/v1/chat/completions", body.clone())).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let rows = logprob_rows(&v["choices"][0]["logprobs"]);
    assert_eq!(
        rows.len() as u64,
        v["usage"]["completion_tokens"].as_u64().expect("usage")
    );
    for (tok, lp, top) in &rows {
        // Greedy: the chosen token is the most likely one; log-probabilities are sorted and at most 0.
        assert_eq!((&top[0].0, top[0].1), (tok, *lp), "{top:?}");
        assert!(
            top.len() == 3 && top.windows(2).all(|w| w[0].1 >= w[1].1) && *lp <= 0.0,
            "{top:?}"
        );
    }
    let mut stream_body = body;
    stream_body["stream"] = json!(true);
    let (_, sv) = send(router(), post_json("/v1/chat/completions", stream_body)).await;
    let streamed: Vec<_> = sse_chunks(&sv)
        .iter()
        .filter(|c| !c["choices"][0]["logprobs"].is_null())
        .flat_map(|c| logprob_rows(&c["choices"][0]["logprobs"]))
        .collect();
    assert_eq!(streamed, rows);
    // Without logprobs, chunks and the response say null.
    let body = json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2});
    let (_, v) = send(router(), post_json("/v1/chat/completions", body)).await;
    assert_eq!(v["choices"][0]["logprobs"], Value::Null);
}

fn sse_chunks(v: &Value) -> Vec<Value> {
    v.as_str()
        .expect("an SSE body")
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).expect("chunk json"))
        .collect()
}

async fn completion_text(extra: Value) -> String {
    let mut body = json!({"prompt": "Count: one, two, three,", "max_tokens": 16});
    body.as_object_mut()
        .expect("object")
        .extend(extra.as_object().expect("object").clone());
    let (s, v) = send(router(), post_json("/v1/completions", body)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["choices"][0]["text"].as_str().expect("text").to_string()
}

#[tokio::test]
async fn seed_temperature_top_p_and_penalties_act() {
    // The same seed gives the same sample; other seeds give other samples.
    let a = completion_text(json!({"temperature": 1.0, "seed": 7})).await;
    assert_eq!(
        a,
        completion_text(json!({"temperature": 1.0, "seed": 7})).await
    );
    let mut others = Vec::new();
    for seed in [8, 9, 10] {
        others.push(completion_text(json!({"temperature": 1.0, "seed": seed})).await);
    }
    assert!(others.iter().any(|o| *o != a), "{a:?} {others:?}");
    // Greedy ignores the seed; top_p near 0 keeps only the best token, so it is greedy too.
    let greedy = completion_text(json!({"temperature": 0})).await;
    assert_eq!(
        greedy,
        completion_text(json!({"temperature": 0, "seed": 3})).await
    );
    assert_eq!(
        greedy,
        completion_text(json!({"temperature": 1.0, "top_p": 0.01, "seed": 3})).await
    );
    // Penalties on tokens seen so far move greedy text off its course (a negative presence penalty favours
    // them; a positive frequency penalty grows with each repeat of ',').
    for (p, x) in [("presence_penalty", -2.0), ("frequency_penalty", 2.0)] {
        let penalised = completion_text(json!({"temperature": 0, p: x})).await;
        assert_ne!(penalised, greedy, "{p} had no effect");
    }
}

#[tokio::test]
async fn stream_stop_strings_are_never_sent() {
    let prompt = "The capital of France is";
    let (full, _) = greedy_completion(prompt, 24);
    let words: Vec<&str> = full.split_inclusive(' ').collect();
    assert!(words.len() > 3, "greedy text too short: {full:?}");
    let stop = format!("{}{}", words[2], words[3].trim_end());
    let at = full.find(&stop).expect("stop inside the text");
    let body =
        json!({"prompt": prompt, "max_tokens": 24, "temperature": 0, "stop": stop, "stream": true});
    let (s, v) = send(router(), post_json("/v1/completions", body)).await;
    assert_eq!(s, StatusCode::OK);
    let chunks = sse_chunks(&v);
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["text"].as_str())
        .collect();
    assert_eq!(text, &full[..at]);
    assert_eq!(
        chunks.last().expect("chunks")["choices"][0]["finish_reason"],
        "stop"
    );
}

/// `usage.prompt_tokens_details.cached_tokens` is the engine's count however the request ends: at the model's
/// end of turn, at a stop string, or at `max_tokens` (the server once built the usage itself at `stop` and
/// reported 0 cached tokens).
#[tokio::test]
async fn cached_tokens_are_reported_for_every_ending() {
    let router = app(state(config()));
    let user = "Hi!";
    let (full, n) = greedy_chat(user, 64);
    assert!(
        n < 64,
        "the test needs an answer that ends its turn: {full:?}"
    );
    let chat = |extra: Value| {
        let mut body = json!({"messages": [{"role": "user", "content": user}], "temperature": 0});
        body.as_object_mut()
            .expect("object")
            .extend(extra.as_object().expect("object").clone());
        send(router.clone(), post_json("/v1/chat/completions", body))
    };
    // The first request fills the prefix cache; every later one reads all but the last prompt token from it.
    let (s, first) = chat(json!({"max_tokens": 64})).await;
    assert_eq!(s, StatusCode::OK, "{first}");
    assert_eq!(first["choices"][0]["finish_reason"], "stop", "{first}");
    let prompt_tokens = first["usage"]["prompt_tokens"].as_u64().expect("usage");
    let stop = full
        .split_whitespace()
        .nth(1)
        .expect("an answer of two words at least");
    for (extra, finish) in [
        (json!({"max_tokens": 64}), "stop"),
        (json!({"max_tokens": 64, "stop": [stop]}), "stop"),
        (json!({"max_tokens": 2}), "length"),
        (
            json!({"max_tokens": 64, "stream": true, "stream_options": {"include_usage": true}}),
            "stop",
        ),
    ] {
        let (s, v) = chat(extra.clone()).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let (finish_got, usage) = match v.as_str() {
            // A stream: the finish chunk and the usage chunk.
            Some(sse) => {
                let chunks: Vec<Value> = common::sse_data(sse)
                    .iter()
                    .filter(|d| *d != "[DONE]")
                    .map(|d| serde_json::from_str(d).expect("chunk"))
                    .collect();
                let finish = chunks
                    .iter()
                    .find_map(|c| c["choices"][0]["finish_reason"].as_str().map(String::from));
                let usage = chunks.last().expect("chunks")["usage"].clone();
                (finish.expect("a finish chunk"), usage)
            }
            None => (
                v["choices"][0]["finish_reason"]
                    .as_str()
                    .expect("finish")
                    .to_string(),
                v["usage"].clone(),
            ),
        };
        assert_eq!(finish_got, finish, "{extra}: {v}");
        assert_eq!(
            usage["prompt_tokens_details"]["cached_tokens"],
            prompt_tokens - 1,
            "{extra}: {usage}"
        );
    }
}
