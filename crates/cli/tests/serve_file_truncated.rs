//! A user's model file truncated while `hearth serve` is answering from it (`cp other.gguf model.gguf` over the
//! served file does exactly this): the server must end with a clear message naming the file and a non-zero status a
//! supervisor understands — 74 (`EX_IOERR`) when a read faults on a page the file no longer has, or 1 when the
//! health watch notices the change first — and never die from a bare `SIGBUS`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[test]
fn a_served_file_truncated_mid_request_ends_the_server_with_a_clear_status() {
    let src = hearth_test_support::model_path("smollm2-135m");
    let model = hearth_test_support::TempPath::new("truncated", "user-model.gguf");
    std::fs::copy(&src, &model).expect("copy the model");

    let hearth_test_support::Spawned {
        mut child,
        addr,
        stderr: lines,
    } = hearth_test_support::spawn_server(Command::new(env!("CARGO_BIN_EXE_hearth")).args([
        "serve",
        model.to_str().expect("utf-8"),
        "--port",
        "0",
        "-t",
        "1",
        "-c",
        "512",
    ]));
    let (err_tx, err_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let rest: Vec<String> = lines.map_while(Result::ok).collect();
        let _ = err_tx.send(rest.join("\n"));
    });

    // A long streamed generation; once its first bytes arrive the weights are being read, then the file shrinks.
    let body = r#"{"prompt":"Once upon a time","max_tokens":400,"temperature":0,"stream":true}"#;
    let mut s = TcpStream::connect(&addr).expect("connect");
    write!(
        s,
        "POST /v1/completions HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write the request");
    let mut first = [0u8; 256];
    let n = s.read(&mut first).expect("the stream starts");
    assert!(
        String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&first[..n])
    );
    std::fs::OpenOptions::new()
        .write(true)
        .open(&model)
        .expect("open for writing")
        .set_len(4096)
        .expect("truncate");
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
    });

    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("hearth serve kept running for 60 s on a truncated model file");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = err_rx
        .recv_timeout(Duration::from_secs(10))
        .unwrap_or_default();
    assert_eq!(
        status.signal(),
        None,
        "killed by a signal: {status:?}\n{stderr}"
    );
    assert!(
        matches!(status.code(), Some(1) | Some(74)),
        "status {status:?}\n{stderr}"
    );
    assert!(
        stderr.contains("user-model.gguf"),
        "the message does not name the file:\n{stderr}"
    );
}
