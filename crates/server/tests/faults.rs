//! Fault tests on a real socket (issue 12, items 4, 5 and 7): an engine that panics, clients that never finish a
//! request or never send one, and a model file changed underneath the server. Each fault must be reported (and the
//! server stop for its supervisor when it cannot go on) or freed by a timeout, never leave the server wedged. Uses
//! the tiny Qwen3 fixture; every wait is bounded.

mod common;
mod tiny;

use axum::body::Body;
use axum::http::{header, Request as HttpRequest, StatusCode};
use hearth_engine::batch::{Event, Flow, Request, Sink};
use hearth_server::{app, serve_on, AppState, Limits, ServerConfig, ServerError};
use http_body_util::BodyExt;
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tiny::{tiny_config, tiny_gguf_in, tiny_state};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout};
use tower::ServiceExt;

/// Serves `state` on 127.0.0.1:0 until it fails.
async fn start(state: Arc<AppState>) -> (SocketAddr, JoinHandle<Result<(), ServerError>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    (
        addr,
        tokio::spawn(serve_on(listener, state, std::future::pending())),
    )
}

/// One request on a fresh connection (`Connection: close`): status and body.
async fn request(addr: SocketAddr, raw: &str) -> (u16, String) {
    let (status, _, body) = common::raw_exchange(addr, raw.as_bytes()).await;
    (status, body)
}

const HEALTH: &str = "GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";

async fn oneshot(state: &Arc<AppState>, req: HttpRequest<Body>) -> (StatusCode, Value) {
    let res = app(state.clone()).oneshot(req).await.expect("infallible");
    let status = res.status();
    let bytes = res.into_body().collect().await.expect("body").to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn health() -> HttpRequest<Body> {
    HttpRequest::get("/health")
        .body(Body::empty())
        .expect("request")
}

fn completion() -> HttpRequest<Body> {
    HttpRequest::post("/v1/completions")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(r#"{"prompt": "Hi", "max_tokens": 2}"#))
        .expect("request")
}

/// Checks that the state, its `/health` and a generation request all report `what`, and that the served loop
/// returns the same failure within a bounded time.
async fn assert_failed(
    state: &Arc<AppState>,
    server: JoinHandle<Result<(), ServerError>>,
    what: &str,
) {
    let mut why = None;
    for _ in 0..200 {
        why = state.failure();
        if why.is_some() {
            break;
        }
        sleep(Duration::from_millis(25)).await;
    }
    let why = why.expect("the failure is known");
    assert!(why.contains(what), "{why}");
    let (s, v) = oneshot(state, health()).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(v["status"], "failed", "{v}");
    assert!(v["error"].as_str().unwrap_or("").contains(what), "{v}");
    let (s, v) = oneshot(state, completion()).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap_or("").contains(what),
        "{v}"
    );
    match timeout(Duration::from_secs(20), server).await {
        Ok(Ok(Err(ServerError::Failed(m)))) => assert!(m.contains(what), "{m}"),
        Ok(other) => panic!("the server ended with {other:?}, not the failure"),
        Err(_) => panic!("the server is still running after the failure"),
    }
}

/// A sink whose first event panics the engine thread that delivers it.
struct Boom;

impl Sink for Boom {
    fn send(&mut self, _event: Event) -> Flow {
        panic!("a test sink exploded")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_panic_is_reported_and_the_server_stops_for_its_supervisor() {
    let state = tiny_state(tiny_config());
    let (addr, server) = start(state.clone()).await;
    let (s, body) = request(addr, HEALTH).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(state.failure(), None);
    state
        .served(None, None)
        .await
        .expect("the model")
        .engine
        .submit(
            Request {
                prompt: vec![1, 2, 3],
                max_tokens: 4,
                ..Default::default()
            },
            Box::new(Boom),
        )
        .expect("submit");
    assert_failed(&state, server, "a test sink exploded").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_file_changed_underneath_is_reported_and_the_server_stops() {
    let dir = hearth_test_support::temp_dir("changed");
    let path = tiny_gguf_in(dir.path());
    let model = Arc::new(hearth_engine::Model::load(&path).expect("load the copy"));
    let state = AppState::new(model, tiny_config()).expect("state");
    let (addr, server) = start(state.clone()).await;
    let (s, body) = request(addr, HEALTH).await;
    assert_eq!(s, 200, "{body}");
    // What `cp other.gguf model.gguf` does first: truncate the file we have mapped.
    let len = std::fs::metadata(&path).expect("metadata").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|f| f.set_len(len / 2))
        .expect("truncate");
    assert_failed(&state, server, "changed on disk").await;
}

fn tight_limits() -> ServerConfig {
    ServerConfig {
        limits: Limits {
            max_connections: 4,
            header_read_timeout: Duration::from_secs(1),
            body_read_timeout: Duration::from_secs(1),
            write_timeout: Duration::from_secs(2),
        },
        ..tiny_config()
    }
}

/// Reads until the server closes the connection; false if it is still open after `limit`.
async fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 4096];
    timeout(limit, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sockets_are_closed_and_the_clients_waiting_behind_them_get_in() {
    let (addr, _server) = start(tiny_state(tight_limits())).await;
    // Four sockets that never send a byte hold every connection slot.
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(TcpStream::connect(addr).await.expect("connect"));
    }
    sleep(Duration::from_millis(200)).await;
    // A real client waits behind them until the header-read timeout frees the slots.
    let (s, body) = timeout(Duration::from_secs(10), request(addr, HEALTH))
        .await
        .expect("answered once the idle sockets were cut");
    assert_eq!(s, 200, "{body}");
    for s in &mut idle {
        assert!(closed_within(s, Duration::from_secs(10)).await);
    }
    // A kept-alive connection that goes quiet after its request is closed too.
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("write");
    assert!(closed_within(&mut s, Duration::from_secs(10)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_head_and_a_trickled_body_are_cut_off() {
    let (addr, _server) = start(tiny_state(tight_limits())).await;
    // A head that never ends, one byte every 100 ms.
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        .await
        .expect("write");
    let (mut rd, mut wr) = s.into_split();
    let trickle = tokio::spawn(async move {
        for _ in 0..150 {
            if wr.write_all(b"a").await.is_err() {
                return;
            }
            sleep(Duration::from_millis(100)).await;
        }
    });
    let mut buf = [0u8; 256];
    let closed = timeout(Duration::from_secs(10), async {
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the slow head still holds its connection");
    trickle.abort();

    // A body promised but not sent: 408 with the error JSON.
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(
        b"POST /v1/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
          Content-Length: 100\r\n\r\n{\"prompt\":",
    )
    .await
    .expect("write");
    let mut out = Vec::new();
    let read = timeout(Duration::from_secs(10), async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    out.extend_from_slice(&buf[..n]);
                    if out.windows(4).any(|w| w == b"\r\n\r\n") && out.ends_with(b"}") {
                        return;
                    }
                }
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no answer to a body that never came");
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    assert!(v["error"]["message"].is_string(), "{text}");
}
