//! Shared by the server's integration tests: the SmolLM2 model, app states, the engine's greedy reference, and a
//! minimal HTTP/1.1 client over a TCP socket (requests with `Connection: close`, SSE read line by line).

#![allow(dead_code, unused_imports)]

use hearth_engine::batch::BatchConfig;
use hearth_engine::{greedy_reference as engine_greedy, Model, ThreadPool};
use hearth_server::{AppState, ServerConfig};
use hearth_text::{ChatMessage, Detokenizer, Tokenizer};
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const MODEL_ID: &str = "smollm2-135m";

pub use hearth_test_support::model_path;

pub fn model() -> Arc<Model> {
    static M: OnceLock<Arc<Model>> = OnceLock::new();
    M.get_or_init(|| Arc::new(Model::load(model_path(MODEL_ID)).expect("loading SmolLM2")))
        .clone()
}

pub fn tokenizer() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| Tokenizer::from_gguf(&model().gguf).expect("SmolLM2's tokenizer"))
}

/// A small, quick configuration: 512 positions, one compute thread (tests run side by side).
pub fn config() -> ServerConfig {
    ServerConfig {
        batch: BatchConfig {
            n_threads: 1,
            n_ctx: 512,
            max_running: 8,
            max_queued: 64,
            ..BatchConfig::default()
        },
        ..ServerConfig::new(MODEL_ID)
    }
}

pub fn state(config: ServerConfig) -> Arc<AppState> {
    AppState::new(model(), config).expect("starting the server state")
}

/// The text the plain greedy loop (`hearth_engine::greedy_reference`, no batching) produces for `ids`, stopping at
/// an end-of-generation token, control tokens left out (what `hearth run --raw --temp 0` prints); and the number of
/// tokens generated.
pub fn greedy_reference(ids: &[u32], max_tokens: usize) -> (String, usize) {
    let model = model();
    let tok = tokenizer();
    let pool = ThreadPool::new(1);
    let steps = engine_greedy(&model, &pool, ids, max_tokens, 0).expect("greedy reference");
    let n = steps
        .iter()
        .position(|s| tok.is_eog(s.id))
        .map_or(steps.len(), |i| i + 1);
    let mut detok = Detokenizer::new(tok).skip_special(true);
    let mut text: String = steps[..n].iter().map(|s| detok.push(s.id)).collect();
    text.push_str(&detok.flush());
    (text, n)
}

/// Greedy reference for a raw completion prompt (BOS as the tokenizer wants, as `hearth run --raw` encodes it).
pub fn greedy_completion(prompt: &str, max_tokens: usize) -> (String, usize) {
    let ids = tokenizer().encode(prompt, true, true).expect("encode");
    greedy_reference(&ids, max_tokens)
}

/// Greedy reference for one user message through the chat template (as `hearth run PROMPT` encodes it).
pub fn greedy_chat(user: &str, max_tokens: usize) -> (String, usize) {
    let tok = tokenizer();
    let template = hearth_text::ChatTemplate::from_gguf_with(&model().gguf, tok).expect("template");
    let text = template
        .render(&[ChatMessage::new("user", user)], true)
        .expect("render");
    let ids = tok.encode(&text, false, true).expect("encode");
    greedy_reference(&ids, max_tokens)
}

/// Serves `app(state)` on 127.0.0.1:0 in the current runtime; returns the address.
pub async fn spawn_server(state: Arc<AppState>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        axum::serve(listener, hearth_server::app(state))
            .await
            .expect("serve");
    });
    addr
}

/// Sends a POST with a JSON body; returns the open socket (the response not yet read).
pub async fn post(addr: SocketAddr, path: &str, body: &Value) -> TcpStream {
    let body = body.to_string();
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.expect("write");
    s
}

/// A whole response: status, head and body (chunked transfer encoding undone).
pub async fn read_response(mut s: TcpStream) -> (u16, String, String) {
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.expect("read");
    let raw = String::from_utf8(raw).expect("utf-8 response");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a head");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("a status");
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, head.to_string(), body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).expect("chunk size");
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

/// The `data:` payloads of an SSE body, in order.
pub fn sse_data(body: &str) -> Vec<String> {
    body.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| d.trim_start().to_string())
        .collect()
}

/// Sends raw bytes on a fresh connection and reads until the server closes it: status (0 without a status line),
/// head and body, read leniently (a hostile request gets whatever the server answers).
pub async fn raw_exchange(addr: SocketAddr, bytes: &[u8]) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(bytes).await.expect("write");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, head.to_string(), body.to_string())
}

/// A router's response: status, content type and body bytes.
pub async fn response_parts(
    res: axum::response::Response,
) -> (axum::http::StatusCode, String, Vec<u8>) {
    use http_body_util::BodyExt;
    let status = res.status();
    let ctype = res
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let bytes = res.into_body().collect().await.expect("body").to_bytes();
    (status, ctype, bytes.to_vec())
}
