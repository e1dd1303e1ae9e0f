//! Everything that can go wrong in the store, each with what a user needs to act on it.

use std::path::PathBuf;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot find the user's cache directory; set HEARTH_HOME to where hearth should keep its models")]
    NoHome,
    #[error("invalid model name {name:?}: {why}")]
    BadName { name: String, why: &'static str },
    #[error("{0}")]
    NotInstalled(String),
    #[error("{path} is not a usable GGUF file: {source}")]
    Gguf {
        path: PathBuf,
        source: hearth_gguf::GgufError,
    },
    #[error("manifest {path} is damaged ({why}); remove it with `hearth rm` or delete the file")]
    BadManifest { path: PathBuf, why: String },
    #[error("cannot understand source {source_str:?}: {why}")]
    BadSource { source_str: String, why: String },
    #[error("request to {url} failed: {why}")]
    Http { url: String, why: String },
    #[error("{url} answered HTTP {status}{}", message_suffix(.message))]
    HttpStatus {
        url: String,
        status: u16,
        /// The Hub's `X-Error-Code` header (`RepoNotFound`, `GatedRepo`, ...), empty if absent.
        code: String,
        message: String,
    },
    #[error("repository {repo} was not found on {endpoint} (check the spelling; a private repository also needs HF_TOKEN)")]
    RepoNotFound { repo: String, endpoint: String },
    #[error("{repo}: {file} was not found at revision {revision}")]
    EntryNotFound {
        repo: String,
        revision: String,
        file: String,
    },
    #[error("HTTP 401 from {repo}: {why}")]
    Unauthorized { repo: String, why: String },
    #[error("HTTP 403 from {repo}: {why}")]
    Forbidden { repo: String, why: String },
    #[error("repository {repo} has no .gguf files (hearth runs GGUF models; look for a repository with \"GGUF\" in its name)")]
    NoGguf { repo: String },
    #[error("repository {repo} has no {quant} file; available: {}", .available.join(", "))]
    QuantNotFound {
        repo: String,
        quant: String,
        available: Vec<String>,
    },
    #[error("{what}: sha256 is {got}, expected {expected}; the download is corrupt and was deleted, nothing was installed")]
    ShaMismatch {
        what: String,
        expected: String,
        got: String,
    },
    #[error("{what}: got {got} bytes, expected {expected}")]
    SizeMismatch {
        what: String,
        expected: u64,
        got: u64,
    },
    #[error("pip: {0}")]
    Pip(String),
    #[error("the model needs about {needed} but only {available} of memory is available ({detail}); use a smaller --ctx or a smaller quantization, or pass --no-mem-check to try anyway")]
    NotEnoughMemory {
        needed: String,
        available: String,
        detail: String,
    },
}

fn message_suffix(m: &str) -> String {
    if m.is_empty() {
        String::new()
    } else {
        format!(": {m}")
    }
}

/// Attaches a path to an I/O error.
pub(crate) trait IoContext<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T, StoreError>;
}

impl<T> IoContext<T> for Result<T, std::io::Error> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T, StoreError> {
        self.map_err(|source| StoreError::Io {
            path: path.into(),
            source,
        })
    }
}
