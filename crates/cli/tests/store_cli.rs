//! `hearth pull/list/show/rm/import` as a user runs them, against the loopback Hub test server of hearth-store.

#[path = "../../store/tests/common/mod.rs"]
mod common;

use common::{make_gguf, sha256_hex, Behaviour, RepoFile, TestHub};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

fn hearth(home: &Path, hub: &TestHub) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hearth"));
    c.env("HEARTH_HOME", home)
        .env("HF_ENDPOINT", hub.endpoint())
        .env_remove("HF_TOKEN")
        .env_remove("HUGGING_FACE_HUB_TOKEN")
        .stdin(Stdio::null());
    c
}

fn run(c: &mut Command) -> (bool, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = c.output().expect("run hearth");
    (
        status.success(),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

fn repo(bytes: &[u8]) -> Behaviour {
    let mut b = Behaviour::default();
    b.repos.insert(
        "org/Tiny-GGUF".into(),
        vec![RepoFile {
            path: "tiny-Q4_K_M.gguf".into(),
            bytes: Arc::new(bytes.to_vec()),
        }],
    );
    b
}

fn part_size(home: &Path) -> u64 {
    std::fs::read_dir(home.join("tmp"))
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".part"))
                .map(|e| e.metadata().map_or(0, |m| m.len()))
                .sum()
        })
        .unwrap_or(0)
}

#[test]
fn killing_pull_leaves_the_store_usable_and_the_next_pull_resumes() {
    let model = make_gguf(1, 256 << 10); // ~1 MiB, sent in 16 KiB pieces 50 ms apart: ~3 s
    let mut b = repo(&model);
    b.throttle = Some(Duration::from_millis(50));
    b.redirect = true;
    let hub = TestHub::start(b);
    let home = tempfile::tempdir().unwrap();
    let mut child = hearth(home.path(), &hub)
        .args(["pull", "hf://org/Tiny-GGUF"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut seen = 0;
    for _ in 0..400 {
        seen = part_size(home.path());
        if seen >= 200_000 {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(seen >= 200_000, "the pull never got going ({seen} bytes)");
    let at_kill = part_size(home.path());
    assert!(
        at_kill < model.len() as u64,
        "the pull finished before it was killed"
    );

    // The store is usable: list works and the half-downloaded model is not installed.
    let (ok, out, err) = run(hearth(home.path(), &hub).arg("list"));
    assert!(ok, "{err}");
    assert!(!out.contains("tiny"), "{out}");
    assert!(err.contains("1 interrupted download(s)"), "{err}");
    let (ok, _, err) = run(hearth(home.path(), &hub).args(["show", "tiny-q4_k_m"]));
    assert!(!ok && err.contains("hearth pull"), "{err}");

    // The next pull resumes from the byte the killed one reached.
    hub.state.lock().unwrap().throttle = None;
    let before = hub.log().len();
    let (ok, out, err) = run(hearth(home.path(), &hub).args(["pull", "hf://org/Tiny-GGUF"]));
    assert!(ok, "{err}");
    assert!(out.contains("tiny-q4_k_m"), "{out}");
    let ranges: Vec<_> = hub.log()[before..]
        .iter()
        .filter(|l| l.port == hub.cdn_port)
        .filter_map(|l| l.range.clone())
        .collect();
    assert_eq!(ranges, [format!("bytes={at_kill}-")]);
    let blob = home
        .path()
        .join(format!("blobs/sha256-{}", sha256_hex(&model)));
    assert_eq!(std::fs::read(blob).unwrap(), model);
    assert_eq!(part_size(home.path()), 0);
}

#[test]
fn import_list_show_rm_round_trip() {
    let hub = TestHub::start(Behaviour::default());
    let home = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    let file = src.path().join("Tiny.F32.gguf");
    std::fs::write(&file, make_gguf(2, 1024)).unwrap();
    let (ok, out, err) =
        run(hearth(home.path(), &hub).args(["import", file.to_str().unwrap(), "--name", "tiny"]));
    assert!(ok, "{err}");
    assert!(out.starts_with("tiny: llama F32"), "{out}");
    let (ok, out, _) = run(hearth(home.path(), &hub).arg("list"));
    assert!(ok);
    let row = out
        .lines()
        .find(|l| l.starts_with("tiny "))
        .unwrap_or_default();
    assert!(row.contains("F32") && row.contains("llama"), "{out}");
    let (ok, out, err) = run(hearth(home.path(), &hub).args(["show", "tiny", "--ctx", "100"]));
    assert!(ok, "{err}");
    assert!(out.contains("context       256 tokens"), "{out}");
    assert!(out.contains("KV cache 3.2 KB at n_ctx 100"), "{out}");
    assert!(out.contains("chat template:\n  {{ messages }}"), "{out}");
    let (ok, out, err) = run(hearth(home.path(), &hub).args(["rm", "tiny"]));
    assert!(ok, "{err}");
    assert!(out.contains("removed tiny"), "{out}");
    let (ok, _, err) =
        run(hearth(home.path(), &hub).args(["import", file.to_str().unwrap(), "--name", "../x"]));
    assert!(!ok && err.contains("invalid model name"), "{err}");
}

#[test]
fn gated_pull_needs_hf_token() {
    let model = make_gguf(3, 1024);
    let mut b = repo(&model);
    b.gated.insert("org/Tiny-GGUF".into(), "tok".into());
    let hub = TestHub::start(b);
    let home = tempfile::tempdir().unwrap();
    let (ok, _, err) = run(hearth(home.path(), &hub).args(["pull", "hf://org/Tiny-GGUF"]));
    assert!(
        !ok && err.contains("401") && err.contains("HF_TOKEN"),
        "{err}"
    );
    let (ok, _, err) = run(hearth(home.path(), &hub)
        .args(["pull", "-q", "hf://org/Tiny-GGUF"])
        .env("HF_TOKEN", "tok"));
    assert!(ok, "{err}");
}
