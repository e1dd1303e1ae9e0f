//! Concurrency benchmark: N streaming clients at once against the OpenAI API, each with its own prompt; reports
//! aggregate generated tokens/s and time to first token (median, p90) for each N.
//!
//! ```text
//! cargo run --release -p hearth-server --example serve_bench -- --model ~/.cache/hearth/models/smollm2-135m.gguf \
//!     --threads 2 --max-tokens 64 --clients 1,4,16,64
//! cargo run --release -p hearth-server --example serve_bench -- --url 127.0.0.1:8080 --clients 1,4,16
//! ```
//! With `--model` the server runs in this process on a loopback socket (`--parallel` sequences at once); with
//! `--url` it measures a running `hearth serve`. Requests are raw completions at temperature 0 with
//! `stream_options.include_usage`, so the token count is the server's own.

use hearth_engine::batch::BatchConfig;
use hearth_engine::Model;
use hearth_server::{AppState, ServerConfig};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Args {
    model: Option<String>,
    url: Option<String>,
    threads: usize,
    parallel: usize,
    max_tokens: usize,
    clients: Vec<usize>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        model: None,
        url: None,
        threads: 2,
        parallel: 64,
        max_tokens: 64,
        clients: vec![1, 4, 16, 64],
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        let num = |v: String| v.parse::<usize>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--model" => a.model = Some(value()?),
            "--url" => a.url = Some(value()?),
            "--threads" => a.threads = num(value()?)?,
            "--parallel" => a.parallel = num(value()?)?,
            "--max-tokens" => a.max_tokens = num(value()?)?,
            "--clients" => {
                a.clients = value()?
                    .split(',')
                    .map(|s| {
                        s.trim()
                            .parse::<usize>()
                            .map_err(|e| format!("--clients: {e}"))
                    })
                    .collect::<Result<_, _>>()?
            }
            _ => return Err(format!("unknown argument {flag}")),
        }
    }
    if a.model.is_none() == a.url.is_none() {
        return Err("give exactly one of --model PATH or --url HOST:PORT".into());
    }
    Ok(a)
}

/// What one streamed request measured.
struct Sample {
    ttft: Duration,
    total: Duration,
    tokens: usize,
}

fn prompt(i: usize) -> String {
    let topics = [
        "rivers", "bread", "the moon", "trains", "music", "winter", "bees", "glass",
    ];
    format!(
        "Note {i}. Here is a short story about {}, told by a {}-year-old:",
        topics[i % topics.len()],
        7 + i
    )
}

/// Streams one completion; time to first token is when the first `data:` event arrives.
async fn one(addr: SocketAddr, i: usize, max_tokens: usize) -> Result<Sample, String> {
    let body = json!({
        "prompt": prompt(i), "max_tokens": max_tokens, "temperature": 0,
        "stream": true, "stream_options": {"include_usage": true},
    })
    .to_string();
    let t0 = Instant::now();
    let mut s = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let req = format!(
        "POST /v1/completions HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    let mut ttft = None;
    loop {
        let n = s.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
        if ttft.is_none() && raw.windows(5).any(|w| w == b"data:") {
            ttft = Some(t0.elapsed());
        }
    }
    let total = t0.elapsed();
    let text = String::from_utf8_lossy(&raw);
    if !text.starts_with("HTTP/1.1 200") {
        return Err(format!(
            "request {i}: {}",
            text.lines().next().unwrap_or("no response")
        ));
    }
    // The usage chunk is the one with empty choices; chunk-size lines of the transfer encoding never start
    // with `data:`.
    let tokens = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
        .find_map(|v| v["usage"]["completion_tokens"].as_u64())
        .ok_or(format!("request {i}: no usage chunk"))?;
    Ok(Sample {
        ttft: ttft.ok_or(format!("request {i}: no data"))?,
        total,
        tokens: tokens as usize,
    })
}

/// The 1-minute load average (Linux), to judge how shared the machine was.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i]
}

async fn round(addr: SocketAddr, n: usize, max_tokens: usize, base: usize) -> Result<(), String> {
    let t0 = Instant::now();
    let tasks: Vec<_> = (0..n)
        .map(|i| tokio::spawn(one(addr, base + i, max_tokens)))
        .collect();
    let mut samples = Vec::with_capacity(n);
    for t in tasks {
        samples.push(t.await.map_err(|e| e.to_string())??);
    }
    let wall = t0.elapsed().as_secs_f64();
    let tokens: usize = samples.iter().map(|s| s.tokens).sum();
    let mut ttft: Vec<f64> = samples.iter().map(|s| s.ttft.as_secs_f64()).collect();
    ttft.sort_by(f64::total_cmp);
    let mut per: Vec<f64> = samples
        .iter()
        .map(|s| {
            let decode = (s.total - s.ttft).as_secs_f64();
            s.tokens.saturating_sub(1) as f64 / decode.max(1e-9)
        })
        .collect();
    per.sort_by(f64::total_cmp);
    println!(
        "| {n:>3} | {tokens:>6} | {wall:>7.2} | {:>8.1} | {:>8.3} | {:>8.3} | {:>8.1} | {:>5} |",
        tokens as f64 / wall,
        quantile(&ttft, 0.5),
        quantile(&ttft, 0.9),
        quantile(&per, 0.5),
        load_average(),
    );
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a = parse_args().map_err(|e| format!("serve_bench: {e}"))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let addr: SocketAddr = match (&a.model, &a.url) {
            (Some(path), _) => {
                let model = Arc::new(Model::load(path)?);
                let config = ServerConfig {
                    batch: BatchConfig {
                        n_threads: a.threads,
                        n_ctx: 512,
                        max_running: a.parallel,
                        max_queued: 1024,
                        ..BatchConfig::default()
                    },
                    ..ServerConfig::new("bench")
                };
                let state = AppState::new(model, config)?;
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                let addr = listener.local_addr()?;
                tokio::spawn(async move { axum::serve(listener, hearth_server::app(state)).await });
                addr
            }
            (None, Some(url)) => tokio::net::lookup_host(url.trim_start_matches("http://"))
                .await?
                .next()
                .ok_or("no address")?,
            (None, None) => unreachable!("checked in parse_args"),
        };
        one(addr, 100_000, 4).await?; // warm-up
        println!("load average before: {}", load_average());
        println!(
            "| clients | tokens | wall s | tok/s | TTFT p50 s | TTFT p90 s | per-stream tok/s p50 | load after |"
        );
        println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
        let mut base = 0;
        for &n in &a.clients {
            round(addr, n, a.max_tokens, base).await?;
            base += n;
        }
        Ok(())
    })
}
