//! Ollama's and Anthropic's APIs driven through `app()` (tower's `oneshot`): wire shapes (NDJSON with Ollama's
//! counters, Anthropic's named SSE events in order), greedy text equal to the plain greedy reference loop (and so to
//! the OpenAI endpoints), tools, stop sequences, `count_tokens`, auth and each API's error shape. Needs SmolLM2.

mod common;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use common::{config, greedy_chat, greedy_completion, state, tokenizer, MODEL_ID};
use hearth_server::{app, AppState, ServerConfig};
use serde_json::{json, Value};
use std::sync::{Arc, OnceLock};
use tower::ServiceExt;

const USER: &str = "What is the capital of France?";

fn shared() -> Arc<AppState> {
    static S: OnceLock<Arc<AppState>> = OnceLock::new();
    S.get_or_init(|| state(config())).clone()
}

fn router() -> Router {
    app(shared())
}

/// Status, content type and body text.
async fn send(router: Router, req: Request<Body>) -> (StatusCode, String, String) {
    let res = router.oneshot(req).await.expect("infallible");
    let (status, ctype, bytes) = common::response_parts(res).await;
    (status, ctype, String::from_utf8(bytes).expect("utf-8"))
}

fn post(path: &str, v: &Value) -> Request<Body> {
    Request::post(path)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(v.to_string()))
        .expect("request")
}

async fn post_json(path: &str, v: Value) -> (StatusCode, Value) {
    let (s, _, body) = send(router(), post(path, &v)).await;
    let v = serde_json::from_str(&body).unwrap_or_else(|_| panic!("not JSON: {body}"));
    (s, v)
}

async fn get_json(path: &str) -> (StatusCode, Value) {
    let req = Request::get(path).body(Body::empty()).expect("request");
    let (s, _, body) = send(router(), req).await;
    (s, serde_json::from_str(&body).expect("json"))
}

/// Ollama's error shape: `{"error": "<message>"}` and nothing else.
fn assert_ollama_error(got: &(StatusCode, Value), status: StatusCode) {
    assert_eq!(got.0, status, "{}", got.1);
    let o = got.1.as_object().expect("an object");
    assert!(o.len() == 1 && o["error"].is_string(), "{}", got.1);
}

/// Anthropic's error shape with `kind`.
fn assert_anthropic_error(got: &(StatusCode, Value), status: StatusCode, kind: &str) {
    assert_eq!(got.0, status, "{}", got.1);
    assert_eq!(got.1["type"], "error", "{}", got.1);
    assert_eq!(got.1["error"]["type"], kind, "{}", got.1);
    assert!(got.1["error"]["message"].is_string(), "{}", got.1);
}

fn greedy_options(n: usize) -> Value {
    json!({"temperature": 0, "num_predict": n})
}

/// The NDJSON lines of a body.
fn lines(body: &str) -> Vec<Value> {
    assert!(body.ends_with('\n'), "{body:?}");
    body.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect()
}

/// Ollama's last object: `done`, `done_reason`, counts, durations in ns (integers).
fn assert_final(v: &Value, reason: &str, eval_count: usize) {
    assert_eq!(v["done"], true, "{v}");
    assert_eq!(v["done_reason"], reason, "{v}");
    assert_eq!(v["eval_count"], eval_count, "{v}");
    assert!(
        v["prompt_eval_count"].as_u64().is_some_and(|n| n > 2),
        "{v}"
    );
    for k in [
        "total_duration",
        "load_duration",
        "prompt_eval_duration",
        "eval_duration",
    ] {
        assert!(v[k].is_u64(), "{k}: {v}");
    }
    assert!(v["total_duration"].as_u64() > Some(0), "{v}");
    assert!(
        v["created_at"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{v}"
    );
}

#[tokio::test]
async fn ollama_chat_greedy_equals_the_reference_streamed_or_not() {
    let (want, n) = greedy_chat(USER, 12);
    let body = json!({"model": MODEL_ID, "messages": [{"role": "user", "content": USER}],
                      "options": greedy_options(12), "stream": false});
    let (s, v) = post_json("/api/chat", body.clone()).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["message"]["content"], want.as_str(), "{v}");
    assert_eq!(v["message"]["role"], "assistant");
    assert_eq!(v["model"], MODEL_ID);
    assert_final(&v, if n == 12 { "length" } else { "stop" }, n);
    // Streamed (Ollama's default): one object per line, `done: false` until the last.
    let mut body = body;
    body.as_object_mut().expect("object").remove("stream");
    body["model"] = json!(format!("{MODEL_ID}:latest"));
    let (s, ctype, text) = send(router(), post("/api/chat", &body)).await;
    assert_eq!(s, StatusCode::OK, "{text}");
    assert_eq!(ctype, "application/x-ndjson");
    let ls = lines(&text);
    let (last, chunks) = ls.split_last().expect("lines");
    assert!(chunks.len() > 1, "{text}");
    assert!(chunks.iter().all(|c| c["done"] == false), "{text}");
    let joined: String = chunks
        .iter()
        .map(|c| c["message"]["content"].as_str().expect("content"))
        .collect();
    assert_eq!(joined, want);
    assert_eq!(last["message"]["content"], "");
    assert_final(last, if n == 12 { "length" } else { "stop" }, n);
}

#[tokio::test]
async fn ollama_generate_raw_and_templated_equal_the_references() {
    let prompt = "The quick brown fox";
    let (want, n) = greedy_completion(prompt, 10);
    let (s, v) = post_json(
        "/api/generate",
        json!({"model": MODEL_ID, "prompt": prompt, "raw": true, "stream": false,
               "options": greedy_options(10)}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["response"], want.as_str(), "{v}");
    assert_final(&v, "length", n);
    let (want, n) = greedy_chat(USER, 10);
    let (s, ctype, text) = send(
        router(),
        post(
            "/api/generate",
            &json!({"model": MODEL_ID, "prompt": USER, "options": greedy_options(10)}),
        ),
    )
    .await;
    assert_eq!(
        (s, ctype.as_str()),
        (StatusCode::OK, "application/x-ndjson")
    );
    let ls = lines(&text);
    let joined: String = ls
        .iter()
        .map(|c| c["response"].as_str().expect("response"))
        .collect();
    assert_eq!(joined, want);
    let reason = if n == 10 { "length" } else { "stop" };
    assert_final(ls.last().expect("last"), reason, n);
    // Nothing to generate: Ollama's way of loading a model.
    let (s, v) = post_json("/api/generate", json!({"model": MODEL_ID})).await;
    assert_eq!((s, &v["done_reason"]), (StatusCode::OK, &json!("load")));
    let (s, v) = post_json("/api/chat", json!({"model": MODEL_ID, "messages": []})).await;
    assert_eq!((s, &v["done"]), (StatusCode::OK, &json!(true)));
}

#[tokio::test]
async fn ollama_format_schema_constrains_the_answer() {
    let schema = json!({"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}},
                        "required": ["city"], "additionalProperties": false});
    let (s, v) = post_json(
        "/api/chat",
        json!({"model": MODEL_ID, "messages": [{"role": "user", "content": USER}], "stream": false,
               "format": schema, "options": {"temperature": 0, "num_predict": 40}}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let content = v["message"]["content"].as_str().expect("content");
    let parsed: Value = serde_json::from_str(content).expect("the answer is JSON");
    assert!(parsed["city"].is_string(), "{parsed}");
    assert_eq!(parsed.as_object().map(|o| o.len()), Some(1), "{parsed}");
    let (s, v) = post_json(
        "/api/generate",
        json!({"model": MODEL_ID, "prompt": "List three colors as JSON.", "stream": false,
               "format": "json", "options": {"temperature": 0, "num_predict": 30}}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let text = v["response"].as_str().expect("response");
    assert!(text.trim_start().starts_with('{'), "{text}");
}

#[tokio::test]
async fn ollama_refusals_and_errors_have_ollama_shape() {
    let msgs = json!([{"role": "user", "content": "Hi"}]);
    let cases = [
        (
            "/api/chat",
            json!({"model": "llama3", "messages": msgs}),
            StatusCode::NOT_FOUND,
        ),
        (
            "/api/chat",
            json!({"messages": msgs}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/chat",
            json!({"model": MODEL_ID, "messages": msgs, "options": {"mirostat": 2}}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/chat",
            json!({"model": MODEL_ID, "messages": msgs, "options": {"warp": 9}}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/chat",
            json!({"model": MODEL_ID, "messages": msgs, "options": {"temperature": 9}}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/chat",
            json!({"model": MODEL_ID, "messages": msgs, "format": 5}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/chat",
            json!({"model": MODEL_ID, "messages": msgs, "keep_alive": "soon"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/chat",
            json!({"model": MODEL_ID, "messages": [{"role": "user", "content": "Hi", "images": ["aGk="]}]}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/chat",
            json!({"model": MODEL_ID, "messages": msgs, "frobnicate": 1}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/chat",
            json!({"model": MODEL_ID, "messages": msgs, "options": {"num_ctx": 4}}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/generate",
            json!({"model": MODEL_ID, "prompt": "def f(", "suffix": "return 1"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/generate",
            json!({"model": MODEL_ID, "prompt": "x", "template": "{{ .Prompt }}"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/generate",
            json!({"model": MODEL_ID, "prompt": "x", "context": [1, 2]}),
            StatusCode::BAD_REQUEST,
        ),
        ("/api/show", json!({"model": "nope"}), StatusCode::NOT_FOUND),
        (
            "/api/pull",
            json!({"model": "ftp://x"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/pull",
            json!({"model": "smollm2-135m", "insecure": true}),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (path, body, status) in cases {
        let got = post_json(path, body.clone()).await;
        assert_ollama_error(&got, status);
        if status == StatusCode::BAD_REQUEST && path == "/api/generate" {
            let field = ["suffix", "template", "context"]
                .into_iter()
                .find(|f| body.get(f).is_some())
                .expect("a refused field");
            assert!(
                got.1["error"].as_str().is_some_and(|m| m.contains(field)),
                "{}",
                got.1
            );
        }
    }
    // Errors from the HTTP layer too: malformed JSON, a wrong method, an unknown route, a wrong content type.
    let req = Request::post("/api/chat")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{nope"))
        .expect("request");
    let (s, _, body) = send(router(), req).await;
    assert_ollama_error(
        &(s, serde_json::from_str(&body).expect("json")),
        StatusCode::BAD_REQUEST,
    );
    let (s, v) = get_json("/api/chat").await;
    assert_ollama_error(&(s, v), StatusCode::METHOD_NOT_ALLOWED);
    let (s, v) = get_json("/api/nothing").await;
    assert_ollama_error(&(s, v), StatusCode::NOT_FOUND);
    let req = Request::post("/api/chat")
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from("{}"))
        .expect("request");
    let (s, _, body) = send(router(), req).await;
    assert_ollama_error(
        &(s, serde_json::from_str(&body).expect("json")),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
    );
    // The OpenAI routes keep OpenAI's shape.
    let (s, v) = post_json("/v1/chat/completions", json!({"messages": []})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(v["error"]["message"].is_string(), "{v}");
}

#[tokio::test]
async fn ollama_model_endpoints() {
    let (s, tags) = get_json("/api/tags").await;
    assert_eq!(s, StatusCode::OK);
    let m = &tags["models"][0];
    assert_eq!(m["name"], MODEL_ID);
    assert_eq!(m["details"]["family"], "llama");
    assert_eq!(m["details"]["format"], "gguf");
    assert!(m["size"].as_u64() > Some(50_000_000), "{m}");
    assert!(
        m["details"]["parameter_size"]
            .as_str()
            .is_some_and(|p| p.ends_with('M')),
        "{m}"
    );
    let (s, ps) = get_json("/api/ps").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(ps["models"][0]["name"], MODEL_ID);
    assert_eq!(ps["models"][0]["context_length"], 512);
    let (s, v) = get_json("/api/version").await;
    assert_eq!((s, v["version"].is_string()), (StatusCode::OK, true));
    let (s, show) = post_json("/api/show", json!({"model": MODEL_ID})).await;
    assert_eq!(s, StatusCode::OK, "{show}");
    assert_eq!(show["model_info"]["general.architecture"], "llama");
    assert_eq!(show["model_info"]["llama.block_count"], 30);
    assert!(show["model_info"]["tokenizer.ggml.tokens"].is_null());
    assert!(
        show["template"]
            .as_str()
            .is_some_and(|t| t.contains("im_start")),
        "{show}"
    );
    assert!(show["capabilities"]
        .as_array()
        .is_some_and(|c| c.contains(&json!("completion"))));
    // Deleting the model being served is refused, with Ollama's shape.
    let req = Request::delete("/api/delete")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(json!({"model": MODEL_ID}).to_string()))
        .expect("request");
    let (s, _, body) = send(router(), req).await;
    assert_ollama_error(
        &(s, serde_json::from_str(&body).expect("json")),
        StatusCode::BAD_REQUEST,
    );
}

/// The named events of an SSE body, in order, with their data.
fn events(body: &str) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let mut name = None;
    for l in body.lines() {
        if let Some(n) = l.strip_prefix("event:") {
            name = Some(n.trim().to_string());
        } else if let Some(d) = l.strip_prefix("data:") {
            let v: Value = serde_json::from_str(d.trim()).expect("json data");
            let n = name.take().expect("every data line follows an event line");
            assert_eq!(v["type"], n.as_str(), "the event name is the data's type");
            out.push((n, v));
        }
    }
    out
}

#[tokio::test]
async fn anthropic_messages_greedy_streamed_or_not_in_order() {
    let (want, n) = greedy_chat(USER, 12);
    let body = json!({"model": MODEL_ID, "max_tokens": 12, "temperature": 0,
                      "messages": [{"role": "user", "content": USER}]});
    let (s, v) = post_json("/v1/messages", body.clone()).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["type"], "message");
    assert_eq!(v["role"], "assistant");
    assert!(v["id"].as_str().is_some_and(|i| i.starts_with("msg_")));
    assert_eq!(v["content"], json!([{"type": "text", "text": want}]));
    assert_eq!(
        v["stop_reason"],
        if n == 12 { "max_tokens" } else { "end_turn" }
    );
    assert_eq!(v["usage"]["output_tokens"], n);
    let prompt_tokens = v["usage"]["input_tokens"].as_u64().expect("input")
        + v["usage"]["cache_read_input_tokens"]
            .as_u64()
            .expect("cached");
    let mut body = body;
    body["stream"] = json!(true);
    let (s, ctype, text) = send(router(), post("/v1/messages", &body)).await;
    assert_eq!(s, StatusCode::OK, "{text}");
    assert!(ctype.starts_with("text/event-stream"), "{ctype}");
    let evs = events(&text);
    let names: Vec<&str> = evs.iter().map(|(n, _)| n.as_str()).collect();
    let k = names.len();
    assert!(k >= 7, "{names:?}");
    assert_eq!(names[..3], ["message_start", "ping", "content_block_start"]);
    assert!(
        names[3..k - 3].iter().all(|n| *n == "content_block_delta"),
        "{names:?}"
    );
    assert_eq!(
        names[k - 3..],
        ["content_block_stop", "message_delta", "message_stop"]
    );
    assert_eq!(evs[0].1["message"]["usage"]["input_tokens"], prompt_tokens);
    assert_eq!(evs[0].1["message"]["content"], json!([]));
    assert_eq!(
        evs[2].1["content_block"],
        json!({"type": "text", "text": ""})
    );
    let joined: String = evs[3..k - 3]
        .iter()
        .map(|(_, v)| {
            assert_eq!(
                (v["index"].as_u64(), v["delta"]["type"].as_str()),
                (Some(0), Some("text_delta"))
            );
            v["delta"]["text"].as_str().expect("text").to_string()
        })
        .collect();
    assert_eq!(joined, want);
    let delta = &evs[k - 2].1;
    assert_eq!(delta["delta"]["stop_reason"], v["stop_reason"]);
    assert_eq!(delta["usage"]["output_tokens"], n);
}

#[tokio::test]
async fn anthropic_stop_sequence_is_reported() {
    let (want, _) = greedy_chat(USER, 12);
    let word = want
        .split_whitespace()
        .nth(2)
        .expect("a few words in the greedy answer")
        .to_string();
    let (s, v) = post_json(
        "/v1/messages",
        json!({"model": MODEL_ID, "max_tokens": 12, "temperature": 0, "stop_sequences": ["zzz", word],
               "messages": [{"role": "user", "content": [{"type": "text", "text": USER}]}]}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["stop_reason"], "stop_sequence", "{v}");
    assert_eq!(v["stop_sequence"], word.as_str());
    let cut = &want[..want.find(&word).expect("the word")];
    assert_eq!(v["content"][0]["text"], cut);
}

#[tokio::test]
async fn anthropic_forced_tool_use_and_a_round_trip() {
    let tools = json!([{"name": "get_weather", "description": "Weather in a city",
                        "input_schema": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 12}},
                                         "required": ["city"]}}]);
    let body = json!({"model": MODEL_ID, "max_tokens": 60, "temperature": 0, "tools": tools,
                      "tool_choice": {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": true},
                      "messages": [{"role": "user", "content": "What is the weather in Paris?"}]});
    let (s, v) = post_json("/v1/messages", body.clone()).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["stop_reason"], "tool_use", "{v}");
    let call = v["content"]
        .as_array()
        .and_then(|c| c.iter().find(|b| b["type"] == "tool_use"))
        .expect("a tool_use block");
    assert_eq!(call["name"], "get_weather");
    assert!(call["input"]["city"].is_string(), "{call}");
    assert!(call["id"].as_str().is_some_and(|i| i.starts_with("toolu_")));
    // Streamed: the input arrives as input_json_delta text that parses to the same object.
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let (_, _, text) = send(router(), post("/v1/messages", &streamed)).await;
    let evs = events(&text);
    let start = evs
        .iter()
        .find(|(n, v)| n == "content_block_start" && v["content_block"]["type"] == "tool_use")
        .expect("a tool_use block start");
    assert_eq!(start.1["content_block"]["input"], json!({}));
    let i = &start.1["index"];
    let partial: String = evs
        .iter()
        .filter(|(n, v)| n == "content_block_delta" && &v["index"] == i)
        .map(|(_, v)| {
            assert_eq!(v["delta"]["type"], "input_json_delta");
            v["delta"]["partial_json"]
                .as_str()
                .expect("partial json")
                .to_string()
        })
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&partial).expect("json"),
        call["input"]
    );
    let delta = evs
        .iter()
        .find(|(n, _)| n == "message_delta")
        .expect("message_delta");
    assert_eq!(delta.1["delta"]["stop_reason"], "tool_use");
    // The round trip: the call and its result go back; the model answers in text.
    let (s, v) = post_json(
        "/v1/messages",
        json!({"model": MODEL_ID, "max_tokens": 8, "temperature": 0, "tools": tools,
               "messages": [
                   {"role": "user", "content": "What is the weather in Paris?"},
                   {"role": "assistant", "content": [call]},
                   {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call["id"],
                                                 "content": "Sunny, 21 C"}]}]}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(v["content"].is_array(), "{v}");
}

#[tokio::test]
async fn anthropic_count_tokens_is_the_prompt_the_model_gets() {
    let (s, v) = post_json(
        "/v1/messages/count_tokens",
        json!({"model": MODEL_ID, "messages": [{"role": "user", "content": USER}]}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let tok = tokenizer();
    let template =
        hearth_text::ChatTemplate::from_gguf_with(&common::model().gguf, tok).expect("template");
    let text = template
        .render(&[hearth_text::ChatMessage::new("user", USER)], true)
        .expect("render");
    let n = tok.encode(&text, false, true).expect("encode").len();
    assert_eq!(v, json!({"input_tokens": n}));
    // The same count as a real request's input.
    let (_, m) = post_json(
        "/v1/messages",
        json!({"model": MODEL_ID, "max_tokens": 1, "messages": [{"role": "user", "content": USER}]}),
    )
    .await;
    let used = m["usage"]["input_tokens"].as_u64().expect("input")
        + m["usage"]["cache_read_input_tokens"]
            .as_u64()
            .expect("cached");
    assert_eq!(used as usize, n);
}

#[tokio::test]
async fn anthropic_errors_have_anthropic_shape() {
    let msgs = json!([{"role": "user", "content": "Hi"}]);
    let cases = [
        (
            json!({"model": MODEL_ID, "messages": msgs}),
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
        ),
        (
            json!({"model": "claude-3-opus", "max_tokens": 5, "messages": msgs}),
            StatusCode::NOT_FOUND,
            "not_found_error",
        ),
        (
            json!({"model": MODEL_ID, "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]}),
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
        ),
        (
            json!({"model": MODEL_ID, "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]}),
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
        ),
        (
            json!({"model": MODEL_ID, "max_tokens": 5, "messages": msgs, "tools": [{"type": "web_search_20250305", "name": "web_search"}]}),
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
        ),
        (
            json!({"model": MODEL_ID, "max_tokens": 5, "messages": msgs, "tool_choice": {"type": "maybe"}}),
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
        ),
        (
            json!({"model": MODEL_ID, "max_tokens": 5, "messages": msgs, "temperature": 7}),
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
        ),
        (
            json!({"model": MODEL_ID, "max_tokens": 5, "messages": msgs, "frobnicate": true}),
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
        ),
        (
            json!({"model": MODEL_ID, "max_tokens": 5000, "messages": msgs}),
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
        ),
    ];
    for (body, status, kind) in cases {
        let got = post_json("/v1/messages", body).await;
        assert_anthropic_error(&got, status, kind);
    }
    let req = Request::post("/v1/messages")
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from("{}"))
        .expect("request");
    let (s, _, body) = send(router(), req).await;
    assert_anthropic_error(
        &(s, serde_json::from_str(&body).expect("json")),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "invalid_request_error",
    );
}

#[tokio::test]
async fn api_key_guards_every_api_and_anthropic_sends_x_api_key() {
    static S: OnceLock<Arc<AppState>> = OnceLock::new();
    let state = S
        .get_or_init(|| {
            state(ServerConfig {
                api_key: Some("sesame".into()),
                ..config()
            })
        })
        .clone();
    let body = json!({"model": MODEL_ID, "max_tokens": 1, "messages": [{"role": "user", "content": "Hi"}]});
    let with = |path: &str, h: Option<(&str, &str)>| {
        let mut r = Request::post(path).header(header::CONTENT_TYPE, "application/json");
        if let Some((k, v)) = h {
            r = r.header(k, v);
        }
        r.body(Body::from(body.to_string())).expect("request")
    };
    let (s, _, text) = send(app(state.clone()), with("/v1/messages", None)).await;
    assert_anthropic_error(
        &(s, serde_json::from_str(&text).expect("json")),
        StatusCode::UNAUTHORIZED,
        "authentication_error",
    );
    let (s, _, text) = send(
        app(state.clone()),
        with("/v1/messages", Some(("x-api-key", "open"))),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{text}");
    let (s, _, text) = send(
        app(state.clone()),
        with("/v1/messages", Some(("x-api-key", "sesame"))),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{text}");
    let (s, _, text) = send(
        app(state.clone()),
        with("/v1/messages", Some(("authorization", "Bearer sesame"))),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{text}");
    let req = Request::get("/api/tags")
        .body(Body::empty())
        .expect("request");
    let (s, _, text) = send(app(state.clone()), req).await;
    assert_ollama_error(
        &(s, serde_json::from_str(&text).expect("json")),
        StatusCode::UNAUTHORIZED,
    );
    let req = Request::get("/api/tags")
        .header("authorization", "Bearer sesame")
        .body(Body::empty())
        .expect("request");
    let (s, _, _) = send(app(state), req).await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn anthropic_prefill_output_config_and_max_tokens_zero() {
    // Prefill: the answer continues the final assistant message; greedy, that is the reference one token on.
    let (want, _) = greedy_chat(USER, 12);
    let head = want.split(' ').next().expect("a first word").to_string();
    assert!(!head.is_empty() && head.len() < want.len(), "{want:?}");
    let (s, v) = post_json(
        "/v1/messages",
        json!({"model": MODEL_ID, "max_tokens": 12, "temperature": 0,
               "messages": [{"role": "user", "content": USER}, {"role": "assistant", "content": head}]}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let rest = v["content"][0]["text"].as_str().expect("text");
    assert!(
        format!("{head}{rest}").starts_with(&want),
        "{want:?} vs {head:?} + {rest:?}"
    );
    // The same through OpenAI's endpoint with vLLM's `continue_final_message`.
    let (s, o) = post_json(
        "/v1/chat/completions",
        json!({"max_tokens": 12, "temperature": 0, "continue_final_message": true,
               "messages": [{"role": "user", "content": USER}, {"role": "assistant", "content": head}]}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{o}");
    assert_eq!(o["choices"][0]["message"]["content"], rest);
    // max_tokens 0: nothing generated, the prompt counted.
    let (s, v) = post_json(
        "/v1/messages",
        json!({"model": MODEL_ID, "max_tokens": 0, "messages": [{"role": "user", "content": USER}]}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (&v["content"], &v["stop_reason"]),
        (&json!([]), &json!("max_tokens"))
    );
    assert_eq!(v["usage"]["output_tokens"], 0);
    let (_, n) = post_json(
        "/v1/messages/count_tokens",
        json!({"model": MODEL_ID, "messages": [{"role": "user", "content": USER}]}),
    )
    .await;
    assert_eq!(v["usage"]["input_tokens"], n["input_tokens"]);
    // output_config's schema constrains the answer.
    let schema = json!({"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}},
                        "required": ["city"], "additionalProperties": false});
    let (s, v) = post_json(
        "/v1/messages",
        json!({"model": MODEL_ID, "max_tokens": 40, "temperature": 0,
               "output_config": {"effort": "low", "format": {"type": "json_schema", "schema": schema}},
               "messages": [{"role": "user", "content": USER}]}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let answer: Value =
        serde_json::from_str(v["content"][0]["text"].as_str().expect("text")).expect("JSON");
    assert!(answer["city"].is_string(), "{answer}");
}
