//! A bounded load test on loopback: 64 concurrent streaming clients, two greedy requests each over 16 different
//! prompts (12 new tokens each); a tenth of the clients hang up mid-stream on their first request. Every completed
//! response must be whole and equal to the same prompt generated alone (the plain greedy reference loop);
//! afterwards no sequence runs and the only KV left is the prefix cache's. Needs SmolLM2.

mod common;

use common::{config, greedy_completion, post, read_response, spawn_server, sse_data, state};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;

const CLIENTS: usize = 64;
const REQUESTS: usize = 2;
const PROMPTS: usize = 16;
const MAX_TOKENS: usize = 12;

fn prompt(i: usize) -> String {
    let topics = [
        "rivers", "bread", "the moon", "trains", "music", "winter", "bees", "glass",
    ];
    format!("{} A short note about {}:", i, topics[i % topics.len()])
}

/// The streamed text of a finished completion stream, its finish reason, and whether it ended with [DONE].
fn streamed(body: &str) -> (String, String, bool) {
    let data = sse_data(body);
    let done = data.last().map(String::as_str) == Some("[DONE]");
    let mut text = String::new();
    let mut finish = String::new();
    for d in data.iter().filter(|d| *d != "[DONE]") {
        let v: Value = serde_json::from_str(d).unwrap_or_else(|e| panic!("bad chunk {d:?}: {e}"));
        text.push_str(v["choices"][0]["text"].as_str().unwrap_or_default());
        if let Some(f) = v["choices"][0]["finish_reason"].as_str() {
            finish = f.to_string();
        }
    }
    (text, finish, done)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_streaming_clients_get_their_own_greedy_text() {
    let want: Vec<(String, usize)> = (0..PROMPTS)
        .map(|i| greedy_completion(&prompt(i), MAX_TOKENS))
        .collect();
    let mut c = config();
    c.batch.max_running = CLIENTS;
    c.batch.max_queued = 2 * CLIENTS;
    c.batch.n_threads = common_threads();
    let state = state(c);
    let addr = spawn_server(state.clone()).await;
    let base = state.stats();

    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..CLIENTS {
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for r in 0..REQUESTS {
                let p = (client * 7 + r * 3) % PROMPTS;
                let body = json!({"prompt": prompt(p), "max_tokens": MAX_TOKENS, "temperature": 0,
                                  "seed": client * 100 + r, "stream": true});
                let mut sock = post(addr, "/v1/completions", &body).await;
                if client % 10 == 5 && r == 0 {
                    // Hang up after the first event.
                    let mut buf = [0u8; 512];
                    let n = sock.read(&mut buf).await.expect("read");
                    assert!(n > 0);
                    drop(sock);
                    continue;
                }
                let (status, _, body) = read_response(sock).await;
                assert_eq!(status, 200, "{body}");
                out.push((p, streamed(&body)));
            }
            out
        }));
    }
    let mut done = 0;
    let mut tokens = 0;
    for t in tasks {
        let results = tokio::time::timeout(Duration::from_secs(300), t)
            .await
            .expect("the load test took over 300 s")
            .expect("a client panicked");
        for (p, (text, finish, ended)) in results {
            assert!(ended, "stream for prompt {p} did not end with [DONE]");
            let (want_text, n) = &want[p];
            assert_eq!(
                &text, want_text,
                "prompt {p}: batched text differs from alone"
            );
            assert_eq!(finish, if *n == MAX_TOKENS { "length" } else { "stop" });
            done += 1;
            tokens += n;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let hung_up = (0..CLIENTS).filter(|c| c % 10 == 5).count();
    assert_eq!(done, CLIENTS * REQUESTS - hung_up);
    eprintln!(
        "load: {done} streams ({hung_up} hung up) in {secs:.1} s, {:.1} generated tokens/s",
        tokens as f64 / secs
    );
    // Everything finished or cancelled: nothing runs or waits, and only the prefix cache holds KV.
    let t1 = Instant::now();
    loop {
        let s = state.stats();
        if s.running == 0 && s.queued == 0 && s.kv_bytes == s.prefix_bytes {
            assert!(s.kv_bytes <= state.config.batch.prefix_cache_bytes, "{s:?}");
            assert_eq!(base.running, 0);
            break;
        }
        assert!(
            t1.elapsed() < Duration::from_secs(10),
            "not back to baseline: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn common_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(4)
}
