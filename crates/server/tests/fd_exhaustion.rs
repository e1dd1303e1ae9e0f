//! File descriptors used up (issue 12, item 5): while the process has none left the server cannot accept, but it
//! must keep trying rather than stop, and answer the clients that waited once descriptors are free again. The test
//! lowers this process's descriptor limit, so it is the only test in its binary. Uses the tiny Qwen3 fixture.

mod tiny;

use hearth_server::{serve_on, Limits, ServerConfig};
use std::fs::File;
use std::time::Duration;
use tiny::{tiny_config, tiny_state};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{sleep, timeout};

fn open_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64)
}

/// Sends a health request on `s` and reads the answer's status.
async fn health(mut s: TcpStream) -> u16 {
    s.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out)
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_descriptors_run_out_the_server_waits_and_then_serves_again() {
    let state = tiny_state(ServerConfig {
        limits: Limits {
            // Far above what the descriptor limit allows: the limit, not the connection cap, is what runs out.
            max_connections: 10_000,
            ..Limits::default()
        },
        ..tiny_config()
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(serve_on(listener, state, std::future::pending()));
    assert_eq!(
        health(TcpStream::connect(addr).await.expect("connect")).await,
        200
    );

    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write one valid `rlimit`.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        lim.rlim_cur = open_fds() + 64;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
    }
    // Use every descriptor left, then free one for a client's socket: the server has none to accept it with.
    // Hog twice: the first request's connection may still be closing on the server's side (its socket is shut
    // for writing before the task drops it), and a descriptor it frees after the first round would let the server
    // accept (seen once on a loaded machine).
    let mut hogs = Vec::new();
    for round in 0..2 {
        while let Ok(f) = File::open("/dev/null") {
            hogs.push(f);
            assert!(hogs.len() < 100_000, "the descriptor limit did not take");
        }
        if round == 0 {
            sleep(Duration::from_millis(300)).await;
        }
    }
    hogs.pop();
    let waiting = TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect with the last descriptor: {e}"));
    let waiting = tokio::spawn(health(waiting));
    sleep(Duration::from_millis(500)).await;
    assert!(
        !waiting.is_finished(),
        "answered without a descriptor to accept with"
    );

    drop(hogs);
    let status = timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the waiting client is answered once descriptors are free")
        .expect("join");
    assert_eq!(status, 200);
    let status = timeout(
        Duration::from_secs(10),
        health(TcpStream::connect(addr).await.expect("connect")),
    )
    .await
    .expect("a new client is answered");
    assert_eq!(status, 200);
}
