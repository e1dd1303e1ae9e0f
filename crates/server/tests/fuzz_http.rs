//! Fuzzing the HTTP surface (issue 12): requests built from fuzzer bytes go through `app()` without a socket — the
//! router, the guard, the JSON bodies into the server's request types, the chat template and the engine (the tiny
//! Qwen3 fixture) — and every answer must be well-formed: an error is OpenAI's error JSON, a success is JSON or SSE
//! of JSON chunks, and nothing panics. The bytes mostly become JSON objects with the API's own keys and hostile
//! values (huge and negative numbers, wrong types, nesting, special tokens), which random bytes would rarely reach.
//! Also fuzzed: the `Host` check and the rewriting of hyper's own error answers.
//!
//! `cargo test` runs each target for a few seconds of random inputs (and replays any saved crash under
//! `tests/__fuzz__/`); `scripts/fuzz-server.sh` runs them for as long as you like.

mod common;
mod tiny;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use hearth_server::{app, ServerConfig};
use serde_json::{json, Map, Value};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;
use tiny::{tiny_config, tiny_state};
use tower::ServiceExt;

/// Seconds of random inputs per target in `cargo test` (a CI run); `BOLERO_RANDOM_TEST_TIME`-style overrides come
/// from the script.
fn test_time() -> Duration {
    let secs = std::env::var("HEARTH_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    Duration::from_secs(secs)
}

/// Reads choices from the fuzzer's bytes (zeros once they run out).
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }

    fn pick<'t, T>(&mut self, items: &'t [T]) -> &'t T {
        &items[self.byte() as usize % items.len()]
    }

    /// A short string: mostly printable, sometimes special tokens, escapes and multi-byte characters.
    fn string(&mut self) -> String {
        let n = self.byte() % 24;
        let mut s = String::new();
        for _ in 0..n {
            match self.byte() % 8 {
                0 => s.push_str(self.pick::<&str>(&[
                    "<|im_start|>",
                    "<|im_end|>",
                    "<think>",
                    "</think>",
                    "\u{fffd}",
                ])),
                1 => s.push(char::from_u32(self.byte() as u32 * 257).unwrap_or('?')),
                2 => {
                    s.push_str(self.pick::<&str>(&["{{", "}}", "{%", "%}", "\\", "\"", "\n", "\0"]))
                }
                _ => s.push((b' ' + self.byte() % 95) as char),
            }
        }
        s
    }

    fn number(&mut self) -> Value {
        match self.byte() % 10 {
            0 => json!(0),
            1 => json!(-1),
            2 => json!(i64::MIN),
            3 => json!(u64::MAX),
            4 => json!(1e300),
            5 => json!(-0.5),
            6 => json!(2.5),
            7 => json!(u32::MAX as u64 + 1),
            _ => json!(self.byte() as i64 - 16),
        }
    }

    fn value(&mut self, depth: u32) -> Value {
        let kind = self.byte() % if depth == 0 { 5 } else { 8 };
        match kind {
            0 => Value::Null,
            1 => json!(self.byte().is_multiple_of(2)),
            2 | 3 => self.number(),
            4 => json!(self.string()),
            5 => Value::Array(
                (0..self.byte() % 4)
                    .map(|_| self.value(depth - 1))
                    .collect(),
            ),
            6 => self.messages(depth - 1),
            _ => Value::Object(self.object(depth - 1)),
        }
    }

    fn message(&mut self, depth: u32) -> Value {
        let role = *self.pick(&[
            "user",
            "system",
            "assistant",
            "developer",
            "tool",
            "",
            "bogus",
        ]);
        let content = match self.byte() % 5 {
            0 => json!([{"type": "text", "text": self.string()}]),
            1 => json!([{"type": "image_url", "image_url": {"url": self.string()}}]),
            2 if depth > 0 => self.value(depth),
            _ => json!(self.string()),
        };
        let mut m = json!({"role": role, "content": content});
        if self.byte().is_multiple_of(8) {
            m["name"] = self.value(0);
        }
        m
    }

    fn messages(&mut self, depth: u32) -> Value {
        Value::Array((0..self.byte() % 4).map(|_| self.message(depth)).collect())
    }

    /// An object whose keys are mostly the API's own.
    fn object(&mut self, depth: u32) -> Map<String, Value> {
        const KEYS: &[&str] = &[
            "model",
            "messages",
            "prompt",
            "max_tokens",
            "max_completion_tokens",
            "temperature",
            "top_p",
            "top_k",
            "min_p",
            "n",
            "stream",
            "stream_options",
            "stop",
            "seed",
            "logprobs",
            "top_logprobs",
            "presence_penalty",
            "frequency_penalty",
            "repeat_penalty",
            "chat_template_kwargs",
            "echo",
            "response_format",
            "tools",
            "tool_choice",
            "user",
            "logit_bias",
            "include_usage",
            "suffix",
        ];
        let mut m = Map::new();
        for _ in 0..self.byte() % 8 {
            let key = if self.byte().is_multiple_of(6) {
                self.string()
            } else {
                self.pick(KEYS).to_string()
            };
            // Mostly a value of the key's own type (so requests get past the type checks to the engine),
            // sometimes anything at all.
            let v = if self.byte().is_multiple_of(4) {
                self.value(depth)
            } else {
                self.typed(&key, depth)
            };
            m.insert(key, v);
        }
        m
    }

    /// A plausible value for one of the API's keys: the right type, with edge values.
    fn typed(&mut self, key: &str, depth: u32) -> Value {
        match key {
            "messages" => self.messages(depth),
            "prompt" => match self.byte() % 3 {
                0 => json!([self.byte() as u32, 1u32 << 31, u32::MAX]),
                1 => json!([self.string(), self.string()]),
                _ => json!(self.string()),
            },
            // Generation stays short: the engine runs for real.
            "max_tokens" | "max_completion_tokens" | "top_k" | "n" | "top_logprobs" => {
                json!(self.byte() % 8)
            }
            "temperature" | "top_p" | "min_p" | "presence_penalty" | "frequency_penalty"
            | "repeat_penalty" => json!(*self.pick(&[0.0, 0.5, 1.0, 2.0, -1.0, 1e9, 1e-30])),
            "stream" | "echo" | "include_usage" => json!(self.byte().is_multiple_of(2)),
            "logprobs" if self.byte().is_multiple_of(2) => json!(self.byte() % 8),
            "logprobs" => json!(self.byte().is_multiple_of(2)),
            "stream_options" => json!({"include_usage": self.byte().is_multiple_of(2)}),
            "stop" if self.byte().is_multiple_of(2) => json!(self.string()),
            "stop" => Value::Array((0..self.byte() % 6).map(|_| json!(self.string())).collect()),
            "seed" => self.number(),
            "model" => json!(*self.pick(&["tiny", "gpt-4", ""])),
            "chat_template_kwargs" => {
                json!({"enable_thinking": self.byte().is_multiple_of(2), "x": self.value(depth.min(1))})
            }
            _ => self.value(depth),
        }
    }

    /// The request the bytes describe.
    fn request(&mut self) -> Request<Body> {
        let (method, path) = *self.pick(&[
            ("POST", "/v1/chat/completions"),
            ("POST", "/v1/chat/completions"),
            ("POST", "/v1/completions"),
            ("POST", "/v1/completions"),
            ("GET", "/v1/models"),
            ("GET", "/v1/models/tiny"),
            ("GET", "/health"),
            ("GET", "/metrics"),
            ("PUT", "/v1/completions"),
            ("OPTIONS", "/v1/chat/completions"),
            ("POST", "/v1/models/%00"),
        ]);
        let content_type = *self.pick(&[
            "application/json",
            "application/json",
            "application/json",
            "application/json; charset=utf-8",
            "text/plain",
        ]);
        let host = *self.pick(&["localhost:8080", "127.0.0.1", "[::1]:1", "evil.example"]);
        let body = match self.byte() % 8 {
            0 => self.0.to_vec(),
            1 => self.value(3).to_string().into_bytes(),
            2 => Value::Object(self.object(3)).to_string().into_bytes(),
            // The route's required field first, then whatever else.
            _ => {
                let mut m = Map::new();
                if path.ends_with("chat/completions") {
                    m.insert("messages".into(), self.messages(2));
                } else {
                    m.insert("prompt".into(), self.typed("prompt", 2));
                }
                m.insert("max_tokens".into(), json!(self.byte() % 6));
                // Half of these stay otherwise valid, so that they reach the template and the engine.
                if self.byte().is_multiple_of(2) {
                    m.extend(self.object(2));
                }
                Value::Object(m).to_string().into_bytes()
            }
        };
        Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, host)
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(body))
            .expect("a valid request")
    }
}

/// Answers seen by status class (2xx, 4xx, 5xx, other), printed after a run to show how deep the inputs reach.
static SEEN: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];
/// Successful POSTs: requests that went through the template and the engine.
static GENERATED: AtomicU64 = AtomicU64::new(0);

/// Sends one request and checks the shape of the answer.
async fn check_one(router: Router, req: Request<Body>) {
    let generated = req.method() == axum::http::Method::POST;
    let res = router.oneshot(req).await.expect("infallible");
    let status = res.status();
    let class = match status.as_u16() / 100 {
        2 => 0,
        4 => 1,
        5 => 2,
        _ => 3,
    };
    SEEN[class].fetch_add(1, Relaxed);
    if generated && class == 0 {
        GENERATED.fetch_add(1, Relaxed);
    }
    let (_, ct, bytes) = common::response_parts(res).await;
    let text = String::from_utf8_lossy(&bytes);
    if status.is_client_error() || status.is_server_error() {
        assert!(
            ct.starts_with("application/json"),
            "{status} with {ct}: {text}"
        );
        let v: Value =
            serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{status}: {e}: {text}"));
        assert!(v["error"]["message"].is_string(), "{status}: {v}");
        assert!(v["error"]["type"].is_string(), "{status}: {v}");
        assert_ne!(status, StatusCode::INTERNAL_SERVER_ERROR, "{v}");
    } else if ct.starts_with("text/event-stream") {
        for line in text.lines() {
            if let Some(d) = line.strip_prefix("data:").map(str::trim) {
                assert!(
                    d == "[DONE]" || serde_json::from_str::<Value>(d).is_ok(),
                    "{d}"
                );
            }
        }
    } else if ct.starts_with("application/json") {
        serde_json::from_slice::<Value>(&bytes).unwrap_or_else(|e| panic!("{e}: {text}"));
    }
}

#[test]
fn fuzz_requests_through_the_router() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let router = app(tiny_state(ServerConfig {
        api_key: None,
        ..tiny_config()
    }));
    // A panic fails the test either way; bolero only needs to catch it to report the input.
    let (rt, router) = (AssertUnwindSafe(rt), AssertUnwindSafe(router));
    bolero::check!()
        .with_test_time(test_time())
        .with_max_len(2048)
        .for_each(move |bytes: &[u8]| {
            let req = Bytes(bytes).request();
            rt.block_on(check_one(Router::clone(&router), req));
        });
    let n = |i: usize| SEEN[i].load(Relaxed);
    eprintln!(
        "answers: {} 2xx ({} generations), {} 4xx, {} 5xx, {} other",
        n(0),
        GENERATED.load(Relaxed),
        n(1),
        n(2),
        n(3)
    );
}

#[test]
fn fuzz_host_check_and_hyper_error_rewriting() {
    bolero::check!()
        .with_test_time(test_time() / 4)
        .for_each(|bytes: &[u8]| {
            let s = String::from_utf8_lossy(bytes);
            let allowed = vec!["box.lan".to_string()];
            // A name that is allowed stays allowed with a port after it.
            if hearth_server::guard::host_allowed(&s, &allowed) && !s.contains(':') && !s.is_empty()
            {
                assert!(
                    hearth_server::guard::host_allowed(&format!("{s}:80"), &allowed),
                    "{s:?}"
                );
            }
            let head = [b"HTTP/1.1 4".as_slice(), bytes].concat();
            if let Some(out) = hearth_server::listen::rewrite_hyper_error(&head) {
                let out = String::from_utf8(out).expect("utf-8");
                let (_, body) = out.split_once("\r\n\r\n").expect("a head");
                let v: Value = serde_json::from_str(body).expect("JSON");
                assert!(v["error"]["message"].is_string());
            }
        });
}
