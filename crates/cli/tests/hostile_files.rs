//! Every file of the hostile GGUF corpus (`tests/hostile/`) through the reader, `hearth inspect`, and loading plus
//! one decode step (`hearth run`): each must end in a correct run or a clear error. The CLI runs as a child process
//! under a 1 GiB address-space limit and a time limit, so an abort, a wild allocation or a hang is caught and named.
//!
//! `HEARTH_CORPUS_DIR=dir` also leaves the files in `dir` (seeds for `scripts/fuzz.sh`); `HEARTH_CORPUS_ONLY=text`
//! runs only the cases whose name contains `text`.

mod hostile;

use hearth_gguf::Gguf;
use hostile::{Case, Mode, Run};
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Address space a child may use: the tiny models need a few hundred MiB at most (thread stacks and allocator
/// arenas included); block_count 2e7 used to take 1.8 GB before failing.
const MEMORY_LIMIT_KIB: u64 = 1 << 20;
const TIME_LIMIT: Duration = Duration::from_secs(60);

struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `hearth args…` with the memory and time limits.
fn hearth(args: &[&str], env: &[(&str, &str)]) -> Outcome {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!(
            "ulimit -v {MEMORY_LIMIT_KIB} && exec \"$0\" \"$@\""
        ))
        .arg(env!("CARGO_BIN_EXE_hearth"))
        .args(args)
        // An empty store of its own, in cargo's scratch directory for integration tests (not the system's /tmp).
        .env(
            "HEARTH_HOME",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("hostile-home"),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawning hearth");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let t_out = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("waiting") {
            break Some(s);
        }
        if start.elapsed() > TIME_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let stdout = String::from_utf8_lossy(&t_out.join().expect("reader")).into_owned();
    let stderr = String::from_utf8_lossy(&t_err.join().expect("reader")).into_owned();
    Outcome {
        code: status.and_then(|s| s.code()),
        stdout,
        stderr: match status {
            None => format!("HUNG (killed after {TIME_LIMIT:?})\n{stderr}"),
            Some(s) if s.code().is_none() => format!("KILLED BY A SIGNAL ({s})\n{stderr}"),
            Some(_) => stderr,
        },
    }
}

/// A clean failure: exit status 1 and one `error:` line that says something, no panic, no abort.
fn clean_error(o: &Outcome) -> Result<(), String> {
    if o.code != Some(1) || !o.stderr.contains("error: ") || o.stderr.contains("panicked") {
        return Err(format!("not a clean error (status {:?})", o.code));
    }
    Ok(())
}

fn check_case(case: &Case, dir: &Path) -> Result<(), String> {
    let path = dir.join(format!("{}.gguf", case.name));
    std::fs::write(&path, &case.bytes).map_err(|e| e.to_string())?;
    let p = path.to_str().expect("a UTF-8 temp path");

    // The reader, in process.
    let read = Gguf::open(&path);
    if read.is_ok() != case.reader_ok {
        return Err(match read {
            Ok(_) => "the reader accepted it".into(),
            Err(e) => format!("the reader refused it: {e}"),
        });
    }

    // `inspect`: the whole summary, every key and every tensor.
    let o = hearth(&["inspect", p, "--metadata", "--tensors"], &[]);
    let inspect_ok = o.code == Some(0);
    if case.reader_ok != inspect_ok {
        return Err(format!(
            "inspect: status {:?}, expected {}\n{}",
            o.code,
            if case.reader_ok {
                "success"
            } else {
                "an error"
            },
            tail(&o.stderr)
        ));
    }
    if !inspect_ok {
        clean_error(&o).map_err(|e| format!("inspect: {e}\n{}", tail(&o.stderr)))?;
    }
    // Nothing from the file may reach the terminal as a control sequence (issue item 10).
    for s in [&o.stdout, &o.stderr] {
        if s.contains(['\u{1b}', '\u{7}', '\u{9b}', '\u{202e}']) {
            return Err(format!("inspect printed a control character: {}", tail(s)));
        }
    }
    if o.stdout.len() + o.stderr.len() > 1 << 20 {
        return Err(format!(
            "inspect printed {} bytes",
            o.stdout.len() + o.stderr.len()
        ));
    }

    // `show` estimates memory from the metadata alone (`block_count` 2^40 used to abort it): it may refuse the
    // file, cleanly.
    let o = hearth(&["show", p, "--metadata"], &[]);
    if o.code != Some(0) {
        clean_error(&o).map_err(|e| format!("show: {e}\n{}", tail(&o.stderr)))?;
    }
    if o.stdout.contains(['\u{1b}', '\u{7}', '\u{9b}'])
        || o.stderr.contains(['\u{1b}', '\u{7}', '\u{9b}'])
    {
        return Err(format!(
            "show printed a control character: {}",
            tail(&o.stdout)
        ));
    }

    // Loading and one decode step.
    let mut args = vec!["run", p];
    match case.mode {
        Mode::Chat => args.push("hello"),
        Mode::Raw | Mode::Packed => args.extend(["--raw", "hello", "--json"]),
    }
    args.extend([
        "-n",
        "2",
        "--temp",
        "0",
        "-t",
        "1",
        "-c",
        "64",
        "--no-mem-check",
    ]);
    let o = hearth(&args, &[]);
    for s in [&o.stdout, &o.stderr] {
        if s.contains(['\u{1b}', '\u{7}', '\u{9b}']) {
            return Err(format!("run printed a control character: {}", tail(s)));
        }
    }
    if o.stderr.len() > 64 << 10 {
        return Err(format!("run printed {} bytes to stderr", o.stderr.len()));
    }
    match &case.run {
        Run::Ok => {
            if o.code != Some(0) {
                return Err(format!(
                    "run failed (status {:?})\n{}",
                    o.code,
                    tail(&o.stderr)
                ));
            }
        }
        Run::Err(why) => {
            clean_error(&o).map_err(|e| format!("run: {e}\n{}", tail(&o.stderr)))?;
            if !o.stderr.to_lowercase().contains(&why.to_lowercase()) {
                return Err(format!(
                    "run: the error does not mention {why:?}\n{}",
                    tail(&o.stderr)
                ));
            }
        }
    }
    if case.mode == Mode::Packed {
        // The packed kernels must give the ids of the plain ones (the packer once wrote past its buffer).
        let plain = hearth(&args, &[("HEARTH_REPACK", "0")]);
        if plain.code != Some(0) {
            return Err(format!(
                "run without packing failed\n{}",
                tail(&plain.stderr)
            ));
        }
        if ids(&plain.stdout) != ids(&o.stdout) || ids(&o.stdout).is_empty() {
            return Err(format!(
                "packed and plain runs differ:\n{}\n{}",
                o.stdout.trim(),
                plain.stdout.trim()
            ));
        }
    }
    Ok(())
}

/// The generated ids of a `run --raw --json` output.
fn ids(stdout: &str) -> Vec<u64> {
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap_or_default();
    v["steps"]
        .as_array()
        .map(|s| s.iter().filter_map(|x| x["id"].as_u64()).collect())
        .unwrap_or_default()
}

fn tail(s: &str) -> String {
    let cut = s.len().saturating_sub(600);
    let cut = (cut..=s.len())
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(s.len());
    s[cut..].to_string()
}

#[test]
fn every_hostile_file_ends_in_a_clear_error_or_a_correct_run() {
    let corpus = hostile::corpus();
    assert!(corpus.len() >= 100, "the corpus has {} files", corpus.len());
    let tmp = tempfile::tempdir().expect("temp dir");
    if let Some(d) = std::env::var_os("HEARTH_CORPUS_DIR") {
        std::fs::create_dir_all(&d).expect("HEARTH_CORPUS_DIR");
        for c in &corpus {
            std::fs::write(Path::new(&d).join(format!("{}.gguf", c.name)), &c.bytes)
                .expect("writing the corpus");
        }
    }
    // `HEARTH_CORPUS_ONLY=text` runs only the cases whose name contains it (to check one family quickly).
    let only = std::env::var("HEARTH_CORPUS_ONLY").ok();
    let corpus: Vec<_> = corpus
        .into_iter()
        .filter(|c| only.as_deref().is_none_or(|o| c.name.contains(o)))
        .collect();
    assert!(!corpus.is_empty(), "no case matches HEARTH_CORPUS_ONLY");
    // Two workers: each case is a few short child processes.
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failures = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(c) = corpus.get(i) else { break };
                if let Err(e) = check_case(c, tmp.path()) {
                    failures
                        .lock()
                        .expect("lock")
                        .push(format!("{}: {e}", c.name));
                }
            });
        }
    });
    let failures = failures.into_inner().expect("lock");
    assert!(
        failures.is_empty(),
        "{} of {} files failed:\n{}",
        failures.len(),
        corpus.len(),
        failures.join("\n\n")
    );
}

#[test]
fn the_corpus_is_the_same_every_run() {
    let a: Vec<_> = hostile::corpus()
        .into_iter()
        .map(|c| (c.name, c.bytes))
        .collect();
    let b: Vec<_> = hostile::corpus()
        .into_iter()
        .map(|c| (c.name, c.bytes))
        .collect();
    assert!(a == b);
    let mut names: Vec<_> = a.iter().map(|(n, _)| n.clone()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), a.len(), "case names are unique");
}

/// Item 13: a directory or a FIFO as the model is named for what it is, and opening a FIFO does not block.
#[test]
fn a_directory_or_fifo_is_not_called_missing() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let d = tmp.path().to_str().expect("utf-8");
    let o = hearth(&["inspect", d], &[]);
    assert!(
        o.stderr.contains("is a directory, not a GGUF file"),
        "{}",
        o.stderr
    );
    let fifo = tmp.path().join("model.gguf");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    let f = fifo.to_str().expect("utf-8");
    for args in [vec!["inspect", f], vec!["run", f, "--raw", "x"]] {
        let o = hearth(&args, &[]);
        assert!(
            o.stderr.contains("is a FIFO (named pipe), not a GGUF file"),
            "{}",
            o.stderr
        );
    }
    // A cause that an error's message already shows is not printed again.
    let model = tmp.path().join("tiny.gguf");
    std::fs::write(&model, hostile::models::base("llama").bytes()).expect("writing");
    let m = model.to_str().expect("utf-8");
    let o = hearth(&["quantize", m, "/nonexistent/out.gguf", "q8_0"], &[]);
    clean_error(&o).expect("an error");
    assert_eq!(o.stderr.matches("No such file").count(), 1, "{}", o.stderr);
}

/// Items 11 and 14: thread counts and sampling settings are checked before anything is loaded.
#[test]
fn bad_settings_are_refused_clearly() {
    let n_cpu = std::thread::available_parallelism().map_or(1, |n| n.get());
    let over = (n_cpu + 1).to_string();
    for (args, why) in [
        (vec!["-t", "100000"], "thread count"),
        (vec!["-t", over.as_str()], "thread count"),
        (vec!["-t", "0"], "thread count"),
        (vec!["--temp", "NaN"], "temperature"),
        (vec!["--temp=-1"], "temperature"),
        (vec!["--min-p", "2"], "min_p"),
        (vec!["--top-p", "inf"], "top_p"),
        (vec!["--repeat-penalty", "0"], "repeat_penalty"),
        (vec!["-c", "0"], "context size"),
    ] {
        let mut a = vec!["run", "/nonexistent.gguf", "--raw", "x"];
        a.extend(args.iter().copied());
        let o = hearth(&a, &[]);
        assert!(o.code.is_some_and(|c| c != 0), "{args:?} was accepted");
        assert!(!o.stderr.contains("panicked"), "{}", o.stderr);
        assert!(o.stderr.contains(why), "{args:?}: {}", o.stderr);
    }
    let o = hearth(&["serve", "/nonexistent.gguf", "-c", "0"], &[]);
    assert!(o.stderr.contains("context size"), "{}", o.stderr);
}
