//! `hearth run` and `hearth serve` are one path: the same request gives the same text from both binaries — greedy
//! chat answers and raw completions on both test models (a raw prompt that makes SmolLM2 write control tokens
//! included), and a reasoning model's thinking and answer (the tiny Qwen3 fixture, whose template opens `<think>`:
//! `hearth run` shows the reasoning dimmed on stderr, the server as `reasoning_content`).

use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// A `hearth serve` child on a free port, killed when dropped.
struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(model: &str) -> Server {
        let s = hearth_test_support::spawn_server(
            Command::new(env!("CARGO_BIN_EXE_hearth"))
                .args(["serve", model, "--port", "0", "-t", "1", "-c", "512"])
                .args(["--parallel", "2"]),
        );
        // Keep draining stderr so the server never blocks on a full pipe.
        std::thread::spawn(move || s.stderr.for_each(drop));
        Server {
            child: s.child,
            addr: s.addr,
        }
    }

    /// POSTs `body` as JSON; returns the parsed response (asserting 200).
    fn post(&self, path: &str, body: &Value) -> Value {
        let body = body.to_string();
        let mut s = TcpStream::connect(&self.addr).expect("connect");
        write!(
            s,
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            self.addr,
            body.len()
        )
        .expect("write");
        let mut raw = String::new();
        s.read_to_string(&mut raw).expect("read");
        let (head, body) = raw.split_once("\r\n\r\n").expect("a head");
        assert!(head.starts_with("HTTP/1.1 200"), "{raw}");
        serde_json::from_str(body).expect("a JSON body")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `hearth run` with `args`: (stdout, the dimmed reasoning on stderr).
fn run(args: &[&str]) -> (String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .arg("run")
        .args(args)
        .args(["-t", "1", "-c", "512"])
        .stdin(Stdio::null())
        .output()
        .expect("hearth run");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    let reasoning = stderr
        .split("\x1b[2m")
        .skip(1)
        .filter_map(|s| s.split_once("\x1b[0m").map(|(r, _)| r))
        .collect();
    (String::from_utf8(out.stdout).expect("utf-8"), reasoning)
}

const CHATS: &[&str] = &[
    "What is the capital of France?",
    "Write a haiku about rust.",
    "List three prime numbers.",
];

/// A raw prompt that ends a turn and opens none: SmolLM2 continues with `<|im_start|>` (a control token) and a role.
const RAW: &[&str] = &[
    "The quick brown fox",
    "<|im_start|>user\nHi there<|im_end|>\n",
];

fn same_text_on(model: &str) {
    let server = Server::start(model);
    for prompt in CHATS {
        let (stdout, reasoning) = run(&[model, "--temp", "0", "-n", "24", prompt]);
        let v = server.post(
            "/v1/chat/completions",
            &json!({"messages": [{"role": "user", "content": prompt}], "temperature": 0, "max_tokens": 24}),
        );
        let content = v["choices"][0]["message"]["content"]
            .as_str()
            .expect("content");
        assert_eq!(stdout, format!("{content}\n"), "{model}: chat {prompt:?}");
        assert_eq!(reasoning, "", "{model}: no reasoning split without <think>");
        assert!(
            !content.is_empty(),
            "{model}: an empty answer proves nothing"
        );
    }
    for prompt in RAW {
        let (stdout, _) = run(&[model, "--raw", "--temp", "0", "-n", "24", prompt]);
        let v = server.post(
            "/v1/completions",
            &json!({"prompt": prompt, "temperature": 0, "max_tokens": 24}),
        );
        let text = v["choices"][0]["text"].as_str().expect("text");
        assert_eq!(stdout, text, "{model}: raw {prompt:?}");
    }
}

#[test]
fn smollm2_run_and_serve_give_the_same_text() {
    same_text_on("smollm2-135m");
}

#[test]
fn gemma3_run_and_serve_give_the_same_text() {
    same_text_on("gemma3-270m");
}

/// Qwen3's turn format with a generation prompt that opens the reasoning (as DeepSeek-R1's template does).
const THINK_TEMPLATE: &str = "{%- for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + \
    '<|im_end|>\n' }}{%- endfor %}{%- if add_generation_prompt %}{{ '<|im_start|>assistant\n<think>\n' }}\
    {%- endif %}";

/// The tiny random-weight Qwen3 fixture converted with `THINK_TEMPLATE`, in a directory removed with the guard.
fn thinking_model() -> (hearth_test_support::TempDir, PathBuf) {
    let dir = hearth_test_support::tiny_with_template("qwen3", THINK_TEMPLATE);
    let out = dir.path().join("qwen3-think.gguf");
    let status = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .arg("convert")
        .args([dir.path(), &out])
        .args(["--outtype", "f32"])
        .status()
        .expect("hearth convert");
    assert!(status.success());
    (dir, out)
}

#[test]
fn reasoning_split_is_the_same_in_run_and_serve() {
    let (_dir, model) = thinking_model();
    let model = model.to_str().expect("utf-8 path");
    let server = Server::start(model);
    // Seeds whose sampled continuation closes `</think>` and answers (greedy output of random weights never does).
    let mut both = 0;
    for seed in [412u64, 1, 2, 3] {
        let s = seed.to_string();
        let (stdout, reasoning) = run(&[
            model,
            "--temp",
            "1",
            "--top-k",
            "0",
            "--top-p",
            "1",
            "--min-p",
            "0",
            "--seed",
            &s,
            "-n",
            "48",
            "Why is the sky blue?",
        ]);
        let v = server.post(
            "/v1/chat/completions",
            &json!({"messages": [{"role": "user", "content": "Why is the sky blue?"}],
                    "temperature": 1, "seed": seed, "max_tokens": 48}),
        );
        let m = &v["choices"][0]["message"];
        let content = m["content"].as_str().expect("content");
        let r = m["reasoning_content"].as_str().unwrap_or("");
        assert_eq!(stdout, format!("{content}\n"), "seed {seed}: answer");
        assert_eq!(reasoning, r, "seed {seed}: reasoning");
        both += usize::from(!content.is_empty() && !r.is_empty());
    }
    assert!(both > 0, "no seed gave both reasoning and an answer");
}
