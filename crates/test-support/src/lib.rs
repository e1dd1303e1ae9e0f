//! Helpers shared by hearth's tests (a dev-dependency only, never published): where the installed models, the
//! shared reference data and the repository's examples are; temporary directories and files that remove themselves;
//! id lists in reference JSON. A missing input fails the test with what to run, never a silent skip.
//!
//! It depends on no hearth crate, so every crate (the kernels and the GGUF reader included) can use it without a
//! second copy of itself in its tests.

use serde_json::Value;
use std::io::{BufRead, BufReader, Lines};
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Stdio};

pub use tempfile::TempDir;

/// `$HEARTH_HOME`, by default `~/.cache/hearth`.
pub fn hearth_home() -> PathBuf {
    std::env::var_os("HEARTH_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/hearth")
        })
}

/// An installed test model, `$HEARTH_HOME/models/<name>.gguf`; fails loudly when it is missing.
pub fn model_path(name: &str) -> PathBuf {
    let p = hearth_home().join("models").join(format!("{name}.gguf"));
    assert!(
        p.is_file(),
        "{} is missing: run scripts/fetch-models.sh {name}",
        p.display()
    );
    p
}

/// An installed Hugging Face checkpoint directory, `$HEARTH_HOME/checkpoints/<name>`, holding `file`.
pub fn checkpoint(name: &str, file: &str) -> PathBuf {
    let p = hearth_home().join("checkpoints").join(name);
    assert!(
        p.join(file).exists(),
        "{} is missing: run scripts/fetch-models.sh {name}",
        p.join(file).display()
    );
    p
}

/// The repository's root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `examples/<rel>` in the repository.
pub fn example(rel: &str) -> PathBuf {
    repo_root().join("examples").join(rel)
}

/// The tiny random-weight checkpoint `tests/fixtures/tiny/<arch>`.
pub fn tiny_fixture(arch: &str) -> PathBuf {
    repo_root().join("tests/fixtures/tiny").join(arch)
}

/// A copy of the tiny checkpoint `arch` whose chat template is `template`, in a temporary directory of its own (to
/// convert from; the conversion may be written into it too).
pub fn tiny_with_template(arch: &str, template: &str) -> TempDir {
    let src = tiny_fixture(arch);
    let dir = temp_dir(&format!("tiny-{arch}"));
    let entries = std::fs::read_dir(&src).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
    for e in entries {
        let e = e.expect("a fixture's directory entry");
        std::fs::copy(e.path(), dir.path().join(e.file_name())).expect("copying the fixture");
    }
    std::fs::write(dir.path().join("chat_template.jinja"), template).expect("writing the template");
    dir
}

/// A file of the shared reference data: under `$HEARTH_SHARED/reference`, else the first `shared/reference` found
/// beside the repository or one of its parents.
pub fn reference(rel: &str) -> PathBuf {
    let base = match std::env::var_os("HEARTH_SHARED") {
        Some(s) => PathBuf::from(s).join("reference"),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .ancestors()
            .map(|a| a.join("shared/reference"))
            .find(|p| p.is_dir())
            .expect("shared/reference not found beside the repository (set HEARTH_SHARED)"),
    };
    let p = base.join(rel);
    assert!(
        p.exists(),
        "reference file {} is missing: the reference data must sit beside the repository",
        p.display()
    );
    p
}

/// Compute threads for a test that runs alone: all the machine has.
pub fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A JSON array of token ids.
pub fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array of ids: {v}"))
        .iter()
        .map(|x| {
            x.as_u64()
                .and_then(|x| u32::try_from(x).ok())
                .unwrap_or_else(|| panic!("not a token id: {x}"))
        })
        .collect()
}

/// A JSON file, parsed.
pub fn read_json(path: impl AsRef<Path>) -> Value {
    let path = path.as_ref();
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

/// A new temporary directory `hearth-<tag>-XXXXXX`, removed with everything in it when dropped.
pub fn temp_dir(tag: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(&format!("hearth-{tag}-"))
        .tempdir()
        .expect("creating a temporary directory")
}

/// A path named `file` in a temporary directory of its own, removed (with anything written beside it) when
/// dropped. A model mapped from it stays readable after that: the mapping keeps the file's data alive.
pub struct TempPath {
    dir: TempDir,
    path: PathBuf,
}

impl TempPath {
    pub fn new(tag: &str, file: &str) -> TempPath {
        let dir = temp_dir(tag);
        let path = dir.path().join(file);
        TempPath { dir, path }
    }

    /// The directory it stands in (gone with it).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Deref for TempPath {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.path
    }
}

impl AsRef<Path> for TempPath {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

impl AsRef<std::ffi::OsStr> for TempPath {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.path.as_os_str()
    }
}

/// A server child process that printed its address, and the rest of its stderr.
pub struct Spawned {
    pub child: Child,
    /// `host:port`.
    pub addr: String,
    /// Its stderr lines after the one naming the address.
    pub stderr: Lines<BufReader<ChildStderr>>,
}

/// Starts `cmd` (a server that prints `http://host:port` on stderr, as `hearth serve --port 0` does) with stderr
/// piped, and waits for that line.
pub fn spawn_server(cmd: &mut Command) -> Spawned {
    let mut child = cmd
        .stderr(Stdio::piped())
        .spawn()
        .expect("the server starts");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let addr = loop {
        let line = stderr
            .next()
            .expect("the server printed its address before exiting")
            .expect("a stderr line");
        if let Some(at) = line.find("http://") {
            break line[at + 7..].trim().to_string();
        }
    };
    Spawned {
        child,
        addr,
        stderr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_files_go_with_their_guard() {
        let p = TempPath::new("support", "a.bin");
        std::fs::write(&*p, b"x").unwrap();
        std::fs::write(p.dir().join("beside"), b"y").unwrap();
        let dir = p.dir().to_path_buf();
        assert!(dir
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("hearth-support-"));
        drop(p);
        assert!(!dir.exists());
    }

    #[test]
    fn ids_are_read_and_bad_ones_refused() {
        assert_eq!(ids(&serde_json::json!([1, 2, 70000])), [1, 2, 70000]);
        assert!(std::panic::catch_unwind(|| ids(&serde_json::json!([1u64 << 40]))).is_err());
    }
}
