//! A mapped file changed underneath the reader (issue 12, item 7): `changed_on_disk` notices a truncation or an
//! in-place write, and reading a page the file no longer has ends the process with a clear message and status 74
//! instead of a bare SIGBUS. The bus error is provoked in a child process (this test binary run again).

use hearth_gguf::{Gguf, EXIT_FILE_CHANGED};
use std::path::Path;
use std::process::Command;

/// A valid GGUF v3 of about 300 KB: no tensors, one long string value (so the mapping spans many pages).
fn write_gguf(path: &Path) {
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend(0u64.to_le_bytes());
    b.extend(1u64.to_le_bytes());
    b.extend(20u64.to_le_bytes());
    b.extend(b"general.architecture");
    b.extend(8u32.to_le_bytes());
    let value = "x".repeat(300_000);
    b.extend((value.len() as u64).to_le_bytes());
    b.extend(value.as_bytes());
    std::fs::write(path, b).expect("write the test file");
}

#[test]
fn truncation_and_in_place_writes_are_noticed() {
    let path = hearth_test_support::TempPath::new("gguf-watch", "model.gguf");
    write_gguf(&path);
    let g = Gguf::open(&path).expect("open");
    assert_eq!(g.changed_on_disk(), None);
    // An atomic replacement (new file renamed over the path) leaves the mapped file alone: nothing to report.
    let other = path.with_extension("new");
    write_gguf(&other);
    std::fs::rename(&other, &path).expect("rename");
    assert_eq!(g.changed_on_disk(), None);
    drop(g);

    let g = Gguf::open(&path).expect("open");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|f| f.set_len(1000))
        .expect("truncate");
    let why = g.changed_on_disk().expect("a truncation is noticed");
    assert!(
        why.contains("changed on disk") && why.contains("1000"),
        "{why}"
    );
    drop(g);

    write_gguf(&path);
    let g = Gguf::open(&path).expect("open");
    std::thread::sleep(std::time::Duration::from_millis(20));
    // Same length, new bytes (a `cp` of a same-sized file): the modification time gives it away.
    write_gguf(&path);
    let why = g.changed_on_disk().expect("an in-place write is noticed");
    assert!(why.contains("written to while in use"), "{why}");
}

/// The child's part: map the file, truncate it, read its last byte.
fn child(path: &Path) {
    let g = Gguf::open(path).expect("open");
    let n = g.bytes().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|f| f.set_len(0))
        .expect("truncate");
    // The address is inside the live mapping; the read faults because the file shrank.
    let last = std::hint::black_box(&g.bytes()[n - 1]);
    println!("read {last} from a truncated file without a fault");
    std::process::exit(0);
}

#[test]
fn a_bus_error_in_a_mapped_model_is_reported_and_exits_74() {
    if let Some(p) = std::env::var_os("HEARTH_SIGBUS_CHILD") {
        return child(Path::new(&p));
    }
    let path = hearth_test_support::TempPath::new("gguf-sigbus", "model.gguf");
    write_gguf(&path);
    let out = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "a_bus_error_in_a_mapped_model_is_reported_and_exits_74",
            "--nocapture",
        ])
        .env("HEARTH_SIGBUS_CHILD", &path)
        .output()
        .expect("run the child");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(EXIT_FILE_CHANGED),
        "status {:?}, stderr:\n{stderr}",
        out.status
    );
    assert!(
        stderr.contains("was truncated or overwritten while in use")
            && stderr.contains("model.gguf"),
        "{stderr}"
    );
}
