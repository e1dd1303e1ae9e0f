//! Test helpers: a small valid GGUF writer and a Hugging Face Hub-compatible HTTP server on 127.0.0.1.
#![allow(dead_code)]

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub fn sha256_hex(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

fn put_str(b: &mut Vec<u8>, s: &str) {
    b.extend((s.len() as u64).to_le_bytes());
    b.extend(s.as_bytes());
}

fn kv_u32(b: &mut Vec<u8>, k: &str, v: u32) {
    put_str(b, k);
    b.extend(4u32.to_le_bytes());
    b.extend(v.to_le_bytes());
}

fn kv_str(b: &mut Vec<u8>, k: &str, v: &str) {
    put_str(b, k);
    b.extend(8u32.to_le_bytes());
    put_str(b, v);
}

/// A small llama-shaped GGUF v3 (F32 tensors, `n_floats` floats of weights in one matrix), `seed` varies the data.
/// Metadata: 2 layers, n_embd 8, 2 heads, 1 KV head, n_ff 16, context 256, 3 tokens, file type 0 (F32).
pub fn make_gguf(seed: u32, n_floats: usize) -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend(2u64.to_le_bytes()); // tensors
    b.extend(10u64.to_le_bytes()); // metadata entries
    kv_str(&mut b, "general.architecture", "llama");
    kv_u32(&mut b, "general.file_type", 0);
    kv_u32(&mut b, "llama.block_count", 2);
    kv_u32(&mut b, "llama.context_length", 256);
    kv_u32(&mut b, "llama.embedding_length", 8);
    kv_u32(&mut b, "llama.attention.head_count", 2);
    kv_u32(&mut b, "llama.attention.head_count_kv", 1);
    kv_u32(&mut b, "llama.feed_forward_length", 16);
    kv_str(&mut b, "tokenizer.chat_template", "{{ messages }}");
    put_str(&mut b, "tokenizer.ggml.tokens");
    b.extend(9u32.to_le_bytes()); // array
    b.extend(8u32.to_le_bytes()); // of strings
    b.extend(3u64.to_le_bytes());
    for t in ["a", "b", "c"] {
        put_str(&mut b, t);
    }
    // Tensor index: token_embd.weight (8 × 3) F32 at 0, blk.0.ffn_up.weight (8 × n_floats/8) F32 after it.
    let rows = (n_floats / 8).max(1) as u64;
    put_str(&mut b, "token_embd.weight");
    b.extend(2u32.to_le_bytes());
    b.extend(8u64.to_le_bytes());
    b.extend(3u64.to_le_bytes());
    b.extend(0u32.to_le_bytes());
    b.extend(0u64.to_le_bytes());
    put_str(&mut b, "blk.0.ffn_up.weight");
    b.extend(2u32.to_le_bytes());
    b.extend(8u64.to_le_bytes());
    b.extend(rows.to_le_bytes());
    b.extend(0u32.to_le_bytes());
    b.extend(96u64.to_le_bytes()); // 24 floats = 96 bytes, already a multiple of 32
    while !b.len().is_multiple_of(32) {
        b.push(0);
    }
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    for _ in 0..(24 + rows * 8) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        b.extend(((x % 2000) as f32 / 1000.0 - 1.0).to_le_bytes());
    }
    b
}

/// A file in a test repository.
#[derive(Clone)]
pub struct RepoFile {
    pub path: String,
    pub bytes: Arc<Vec<u8>>,
}

/// One logged request.
#[derive(Debug, Clone)]
pub struct Logged {
    /// Port of the listener that answered (the Hub or the "CDN").
    pub port: u16,
    pub path: String,
    pub range: Option<String>,
    pub auth: Option<String>,
    pub if_range: Option<String>,
}

#[derive(Default)]
pub struct Behaviour {
    /// `org/repo` → files.
    pub repos: HashMap<String, Vec<RepoFile>>,
    /// Repositories that need `Authorization: Bearer <token>` to download.
    pub gated: HashMap<String, String>,
    /// Answer `resolve` with a 302 to the second listener.
    pub redirect: bool,
    /// Cut the next N file transfers after this many bytes.
    pub cut_after: Option<u64>,
    pub cuts_left: u32,
    /// Flip one byte in the middle of every file served (the tree still reports the true sha256).
    pub corrupt: bool,
    /// Pause after each 16 KiB sent (makes a transfer slow enough to interrupt).
    pub throttle: Option<Duration>,
    /// Tree entries added verbatim (hostile names).
    pub extra_tree: Vec<serde_json::Value>,
    /// List files without their `lfs` block (no sha256 to verify against).
    pub no_lfs: bool,
    /// Send `ETag: "<sha256 of the content>"` and honour `If-Range` against it.
    pub etag: bool,
    /// Answer every file request with 503 (a server that went away mid-download).
    pub broken: bool,
    /// Become `broken` after the next cut (a download interrupted for good: what a killed pull leaves).
    pub break_after_cut: bool,
    pub log: Vec<Logged>,
}

/// A Hub-compatible server (`/api/models/{repo}/tree/{rev}`, `/{repo}/resolve/{rev}/{path}`) and a second listener
/// on another port standing in for the file host that the Hub redirects to.
pub struct TestHub {
    pub state: Arc<Mutex<Behaviour>>,
    pub port: u16,
    pub cdn_port: u16,
}

impl TestHub {
    pub fn start(b: Behaviour) -> TestHub {
        let state = Arc::new(Mutex::new(b));
        let hub = TcpListener::bind("127.0.0.1:0").expect("bind");
        let cdn = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = hub.local_addr().unwrap().port();
        let cdn_port = cdn.local_addr().unwrap().port();
        for l in [hub, cdn] {
            let state = state.clone();
            std::thread::spawn(move || {
                let my_port = l.local_addr().unwrap().port();
                for conn in l.incoming().flatten() {
                    let state = state.clone();
                    std::thread::spawn(move || {
                        let _ = serve(conn, &state, my_port, cdn_port);
                    });
                }
            });
        }
        TestHub {
            state,
            port,
            cdn_port,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> Vec<Logged> {
        self.state.lock().unwrap().log.clone()
    }
}

fn respond(
    s: &mut TcpStream,
    status: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> std::io::Result<()> {
    let mut h = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        h += &format!("{k}: {v}\r\n");
    }
    h += "\r\n";
    s.write_all(h.as_bytes())?;
    s.write_all(body)?;
    s.flush()
}

fn serve(
    mut s: TcpStream,
    state: &Mutex<Behaviour>,
    my_port: u16,
    cdn_port: u16,
) -> std::io::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut r = BufReader::new(s.try_clone()?);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let target = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut headers = HashMap::new();
    for _ in 0..100 {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let (path, _query) = target.split_once('?').unwrap_or((&target, ""));
    let path = path.to_string();
    let range = headers.get("range").cloned();
    let auth = headers.get("authorization").cloned();
    let if_range = headers.get("if-range").cloned();
    let mut st = state.lock().unwrap();
    st.log.push(Logged {
        port: my_port,
        path: path.clone(),
        range: range.clone(),
        auth: auth.clone(),
        if_range: if_range.clone(),
    });
    let not_found = |code: &str| {
        vec![
            ("X-Error-Code", code.to_string()),
            ("X-Error-Message", code.to_string()),
        ]
    };

    if my_port == cdn_port {
        // /cdn/<org>/<repo>/<path>
        let Some(rest) = path.strip_prefix("/cdn/") else {
            drop(st);
            return respond(&mut s, "404 Not Found", &[], b"");
        };
        let mut it = rest.splitn(3, '/');
        let repo = format!("{}/{}", it.next().unwrap_or(""), it.next().unwrap_or(""));
        let file = it.next().unwrap_or("").to_string();
        return send_file(s, st, &repo, &file, range, if_range);
    }
    if let Some(rest) = path.strip_prefix("/api/models/") {
        // {org}/{repo}/tree/{rev}
        let parts: Vec<&str> = rest.split('/').collect();
        let repo = format!(
            "{}/{}",
            parts.first().unwrap_or(&""),
            parts.get(1).unwrap_or(&"")
        );
        let Some(files) = st.repos.get(&repo) else {
            drop(st);
            return respond(
                &mut s,
                "404 Not Found",
                &not_found("RepoNotFound"),
                b"{\"error\":\"Repository not found\"}",
            );
        };
        let no_lfs = st.no_lfs;
        let mut items: Vec<serde_json::Value> = files
            .iter()
            .map(|f| {
                let mut v = serde_json::json!({
                    "type": "file", "oid": "0123456789abcdef0123456789abcdef01234567", "size": f.bytes.len(),
                    "path": f.path,
                    "lfs": {"oid": sha256_hex(&f.bytes), "size": f.bytes.len(), "pointerSize": 134}
                });
                if no_lfs {
                    v.as_object_mut().unwrap().remove("lfs");
                }
                v
            })
            .collect();
        items.push(serde_json::json!({"type": "directory", "oid": "x", "size": 0, "path": "sub"}));
        items
            .push(serde_json::json!({"type": "file", "oid": "y", "size": 10, "path": "README.md"}));
        items.extend(st.extra_tree.iter().cloned());
        drop(st);
        let body = serde_json::to_vec(&items).unwrap();
        return respond(
            &mut s,
            "200 OK",
            &[("Content-Type", "application/json".into())],
            &body,
        );
    }
    // /{org}/{repo}/resolve/{rev}/{path}
    let parts: Vec<&str> = path.trim_start_matches('/').splitn(5, '/').collect();
    if parts.len() == 5 && parts[2] == "resolve" {
        let repo = format!("{}/{}", parts[0], parts[1]);
        let file = parts[4].to_string();
        if !st.repos.contains_key(&repo) {
            drop(st);
            return respond(&mut s, "404 Not Found", &not_found("RepoNotFound"), b"");
        }
        if let Some(tok) = st.gated.get(&repo) {
            if auth.as_deref() != Some(&format!("Bearer {tok}")) {
                drop(st);
                let h = vec![
                    ("X-Error-Code", "GatedRepo".to_string()),
                    ("X-Error-Message", format!("Access to model {repo} is restricted. You must have access to it and be authenticated to access it. Please log in.")),
                ];
                return respond(&mut s, "401 Unauthorized", &h, b"");
            }
        }
        if st.redirect {
            drop(st);
            let loc = format!("http://127.0.0.1:{cdn_port}/cdn/{repo}/{file}?X-Amz-Signature=abc");
            return respond(&mut s, "302 Found", &[("Location", loc)], b"");
        }
        return send_file(s, st, &repo, &file, range, if_range);
    }
    drop(st);
    respond(&mut s, "404 Not Found", &[], b"")
}

fn send_file(
    mut s: TcpStream,
    mut st: std::sync::MutexGuard<'_, Behaviour>,
    repo: &str,
    file: &str,
    range: Option<String>,
    if_range: Option<String>,
) -> std::io::Result<()> {
    if st.broken {
        drop(st);
        return respond(&mut s, "503 Service Unavailable", &[], b"");
    }
    let Some(f) = st
        .repos
        .get(repo)
        .and_then(|fs| fs.iter().find(|f| f.path == file))
        .cloned()
    else {
        drop(st);
        return respond(
            &mut s,
            "404 Not Found",
            &[("X-Error-Code", "EntryNotFound".into())],
            b"",
        );
    };
    let mut bytes = (*f.bytes).clone();
    if st.corrupt {
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x01;
    }
    let cut = if st.cuts_left > 0 {
        st.cuts_left -= 1;
        st.cut_after
    } else {
        None
    };
    let throttle = st.throttle;
    if cut.is_some() && st.break_after_cut {
        st.broken = true;
    }
    let etag = st.etag.then(|| format!("\"{}\"", sha256_hex(&bytes)));
    drop(st);
    // A range only when If-Range (if sent) still names this file; otherwise the whole file.
    let range = range.filter(|_| if_range.is_none() || if_range == etag);
    let etag_line = etag.map_or(String::new(), |e| format!("ETag: {e}\r\n"));
    let start: usize = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let total = bytes.len();
    let head = if range.is_some() {
        format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{}/{total}\r\n{etag_line}Connection: close\r\n\r\n",
            total - start,
            total - 1
        )
    } else {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {total}\r\n{etag_line}Connection: close\r\n\r\n"
        )
    };
    s.write_all(head.as_bytes())?;
    let body = &bytes[start..];
    let send_len = cut.map_or(body.len(), |c| (c as usize).min(body.len()));
    for chunk in body[..send_len].chunks(16 << 10) {
        s.write_all(chunk)?;
        if let Some(t) = throttle {
            std::thread::sleep(t);
        }
    }
    s.flush()?;
    // A cut: close mid-body (the client sees fewer bytes than Content-Length).
    let _ = s.shutdown(Shutdown::Both);
    let mut sink = [0u8; 1];
    let _ = s.read(&mut sink);
    Ok(())
}
