//! A real server on 127.0.0.1:0: SSE streaming for both endpoints (chunks, `include_usage`, `data: [DONE]`), the
//! streamed text equal to the engine's greedy output, and a client that hangs up mid-stream cancelling its
//! sequence and freeing its KV. Needs SmolLM2.

mod common;

use common::{
    config, greedy_chat, greedy_completion, post, read_response, spawn_server, sse_data, state,
};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;

/// The JSON chunks of a finished stream; asserts it ended with `data: [DONE]`.
fn chunks(body: &str) -> Vec<Value> {
    let data = sse_data(body);
    assert_eq!(
        data.last().map(String::as_str),
        Some("[DONE]"),
        "no [DONE] in:\n{body}"
    );
    data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap_or_else(|e| panic!("bad chunk {d:?}: {e}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_stream_with_usage_equals_the_greedy_reference() {
    let user = "Name three colors.";
    let (want, n) = greedy_chat(user, 30);
    let addr = spawn_server(state(config())).await;
    let body = json!({
        "messages": [{"role": "user", "content": user}],
        "max_tokens": 30,
        "temperature": 0,
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    let (status, head, body) = read_response(post(addr, "/v1/chat/completions", &body).await).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        head.to_ascii_lowercase().contains("text/event-stream"),
        "{head}"
    );
    let chunks = chunks(&body);
    assert!(chunks.len() >= 3, "{body}");
    for c in &chunks {
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["id"], chunks[0]["id"]);
    }
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, want);
    // The last choice chunk carries the finish reason; the usage chunk after it has no choices.
    let (usage, rest) = chunks.split_last().expect("chunks");
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["completion_tokens"], n);
    let finish = if n == 30 { "length" } else { "stop" };
    assert_eq!(
        rest.last().expect("a finish chunk")["choices"][0]["finish_reason"],
        finish
    );
    for c in rest {
        assert!(c["usage"].is_null(), "usage before the end: {c}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completion_stream_equals_the_greedy_reference() {
    let prompt = "Once upon a time";
    let (want, n) = greedy_completion(prompt, 20);
    let addr = spawn_server(state(config())).await;
    let body = json!({"prompt": prompt, "max_tokens": 20, "temperature": 0, "stream": true});
    let (status, _, body) = read_response(post(addr, "/v1/completions", &body).await).await;
    assert_eq!(status, 200, "{body}");
    let chunks = chunks(&body);
    let text: String = chunks
        .iter()
        .map(|c| {
            assert_eq!(c["object"], "text_completion");
            c["choices"][0]["text"].as_str().unwrap_or_default()
        })
        .collect();
    assert_eq!(text, want);
    let finish = if n == 20 { "length" } else { "stop" };
    assert_eq!(
        chunks.last().expect("chunks")["choices"][0]["finish_reason"],
        finish
    );
    assert!(
        !body.contains("\"usage\":{"),
        "usage without include_usage:\n{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_up_mid_stream_cancels_the_sequence() {
    let state = state(config());
    let addr = spawn_server(state.clone()).await;
    let body = json!({"prompt": "Count: one, two, three,", "max_tokens": 400, "temperature": 0, "stream": true,
                      "ignore_eos": null});
    // `ignore_eos` is not an OpenAI field: the request must be refused, naming it.
    let (status, _, refused) = read_response(post(addr, "/v1/completions", &body).await).await;
    assert_eq!(status, 400, "{refused}");
    assert!(refused.contains("ignore_eos"), "{refused}");

    let body = json!({"prompt": "Count: one, two, three,", "max_tokens": 400, "temperature": 0, "stream": true});
    let mut sock = post(addr, "/v1/completions", &body).await;
    let mut buf = vec![0u8; 4096];
    let mut got = String::new();
    // Read until two data events have arrived, then hang up.
    while got.matches("data:").count() < 2 {
        let n = tokio::time::timeout(Duration::from_secs(60), sock.read(&mut buf))
            .await
            .expect("no stream within 60 s")
            .expect("read");
        assert!(n > 0, "the stream ended early:\n{got}");
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(state.stats().running == 1, "{:?}", state.stats());
    drop(sock);
    let t0 = Instant::now();
    loop {
        let s = state.stats();
        if s.running == 0 && s.cancelled == 1 {
            // Only the prefix cache may hold KV now (the cancelled sequence's cache is freed, not kept).
            assert_eq!(s.kv_bytes, s.prefix_bytes, "{s:?}");
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "not cancelled after 10 s: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(s_tokens(&state) < 400);
}

fn s_tokens(state: &hearth_server::AppState) -> u64 {
    state.stats().tokens_processed
}
