//! `hf://ORG/REPO[:QUANT]` and `hf://ORG/REPO/FILE.gguf`: list a Hugging Face Hub repository through its API
//! (`/api/models/{repo}/tree/{revision}`), choose the GGUF file(s), and map the Hub's errors to clear messages.

use crate::download::{encode_path, header, Http};
use crate::info::{quant_in_file_name, QUANT_PREFERENCE};
use crate::name::validate_rel_path;
use crate::StoreError;
use std::time::Duration;

/// Where the Hub is and who we are to it.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Base URL, `https://huggingface.co` unless `HF_ENDPOINT` says otherwise (a mirror, or a test server).
    pub endpoint: String,
    /// `HF_TOKEN`, sent only to the endpoint's origin.
    pub token: Option<String>,
    /// A read that waits longer than this counts as a lost connection (and is retried).
    pub read_timeout: Duration,
}

impl HubConfig {
    /// From `HF_ENDPOINT` and `HF_TOKEN` (or the older `HUGGING_FACE_HUB_TOKEN`).
    pub fn from_env() -> HubConfig {
        let endpoint = std::env::var("HF_ENDPOINT")
            .ok()
            .filter(|e| !e.is_empty())
            .unwrap_or_else(|| "https://huggingface.co".into());
        let token = std::env::var("HF_TOKEN")
            .or_else(|_| std::env::var("HUGGING_FACE_HUB_TOKEN"))
            .ok()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty());
        HubConfig::new(&endpoint, token)
    }

    pub fn new(endpoint: &str, token: Option<String>) -> HubConfig {
        HubConfig {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            token,
            read_timeout: Duration::from_secs(60),
        }
    }
}

/// A parsed `hf://` source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HfSource {
    /// `org/repo`
    pub repo: String,
    pub revision: String,
    pub quant: Option<String>,
    pub file: Option<String>,
}

/// Parses what follows `hf://`: `ORG/REPO[@REV][:QUANT]` or `ORG/REPO[@REV]/PATH/FILE.gguf`.
pub(crate) fn parse(s: &str) -> Result<HfSource, StoreError> {
    let bad = |why: &str| StoreError::BadSource {
        source_str: format!("hf://{s}"),
        why: why.to_string(),
    };
    let mut it = s.splitn(3, '/');
    let org = it.next().unwrap_or("");
    let mut repo = it.next().unwrap_or("").to_string();
    let file = it.next().map(str::to_string);
    let mut quant = None;
    if file.is_none() {
        if let Some((r, q)) = repo.split_once(':') {
            quant = Some(q.to_ascii_uppercase());
            repo = r.to_string();
        }
    }
    let (repo, revision) = match repo.split_once('@') {
        Some((r, rev)) => (r.to_string(), rev.to_string()),
        None => (repo, "main".to_string()),
    };
    let ident_ok = |x: &str| {
        !x.is_empty()
            && !x.contains("..")
            && x.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    };
    if !ident_ok(org) || !ident_ok(&repo) {
        return Err(bad(
            "expected hf://ORG/REPO[:QUANT] or hf://ORG/REPO/FILE.gguf",
        ));
    }
    if !ident_ok(&revision) {
        return Err(bad(
            "the revision after '@' must be a branch, tag or commit",
        ));
    }
    if quant.as_deref().is_some_and(|q| !ident_ok(q)) {
        return Err(bad("the quantization after ':' must look like Q4_K_M"));
    }
    if let Some(f) = &file {
        validate_rel_path(f).map_err(|e| bad(&e))?;
        if !f.to_ascii_lowercase().ends_with(".gguf") {
            return Err(bad("the file must be a .gguf"));
        }
    }
    Ok(HfSource {
        repo: format!("{org}/{repo}"),
        revision,
        quant,
        file,
    })
}

/// Accepts the ways people paste a Hub location and returns what follows `hf://`, or `None` if it is not one:
/// `hf://org/repo`, `hf.co/org/repo:Q8_0` (Ollama's form), `https://huggingface.co/org/repo/blob/main/f.gguf`.
pub(crate) fn normalize(source: &str) -> Option<String> {
    let rest = [
        "hf://",
        "https://huggingface.co/",
        "https://hf.co/",
        "huggingface.co/",
        "hf.co/",
    ]
    .iter()
    .find_map(|p| source.strip_prefix(p))?;
    let rest = rest.split(['?', '#']).next().unwrap_or(rest);
    let parts: Vec<&str> = rest.splitn(5, '/').collect();
    if let [org, repo, kind, rev, file] = parts[..] {
        if kind == "blob" || kind == "resolve" {
            return Some(format!("{org}/{repo}@{rev}/{file}"));
        }
    }
    Some(rest.trim_end_matches('/').to_string())
}

/// A file in the repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TreeEntry {
    pub path: String,
    pub size: u64,
    /// sha256 of an LFS file's content, as the Hub reports it.
    pub lfs_sha256: Option<String>,
}

/// Lists every file of the repository (following the `Link: <…>; rel="next"` pages).
pub(crate) fn list_tree(
    http: &Http,
    hub: &HubConfig,
    src: &HfSource,
) -> Result<Vec<TreeEntry>, StoreError> {
    let mut url = format!(
        "{}/api/models/{}/tree/{}?recursive=true",
        hub.endpoint,
        src.repo,
        encode_path(&src.revision)
    );
    let mut out = Vec::new();
    for _page in 0..1000 {
        let (json, resp) = http
            .get_json(&url)
            .map_err(|e| hub_error(e, hub, src, None))?;
        let items = json.as_array().ok_or_else(|| StoreError::Http {
            url: url.clone(),
            why: "the tree listing is not a JSON array".into(),
        })?;
        for it in items {
            if it.get("type").and_then(|t| t.as_str()) != Some("file") {
                continue;
            }
            let Some(path) = it.get("path").and_then(|p| p.as_str()) else {
                continue;
            };
            if validate_rel_path(path).is_err() {
                continue; // a server that names files "../x" does not get to pick our paths
            }
            let lfs = it.get("lfs");
            let size = lfs
                .and_then(|l| l.get("size"))
                .or_else(|| it.get("size"))
                .and_then(|s| s.as_u64())
                .unwrap_or(0);
            let lfs_sha256 = lfs
                .and_then(|l| l.get("oid").or_else(|| l.get("sha256")))
                .and_then(|o| o.as_str())
                .map(|o| o.trim_start_matches("sha256:").to_ascii_lowercase())
                .filter(|o| crate::manifest::is_sha256_hex(o));
            out.push(TreeEntry {
                path: path.to_string(),
                size,
                lfs_sha256,
            });
        }
        match header(&resp, "link").and_then(|l| next_link(&l)) {
            Some(next) => url = crate::download::join_url(&url, &next).unwrap_or(next),
            None => return Ok(out),
        }
    }
    Err(StoreError::Http {
        url,
        why: "the tree listing has more than 1000 pages".into(),
    })
}

fn next_link(link: &str) -> Option<String> {
    link.split(',').find_map(|part| {
        let (u, params) = part.split_once(';')?;
        params.contains("rel=\"next\"").then(|| {
            u.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        })
    })
}

/// The chosen file(s): one GGUF, or all parts of a split GGUF in order.
#[derive(Debug, Clone)]
pub(crate) struct Selection {
    pub files: Vec<TreeEntry>,
    pub quant: Option<String>,
    /// Why these files, for the user when the choice was not exactly what they asked.
    pub note: Option<String>,
}

/// `model-00002-of-00003.gguf` → (`model`, 2, 3).
pub(crate) fn split_parts(path: &str) -> Option<(&str, u32, u32)> {
    let stem = path
        .strip_suffix(".gguf")
        .or_else(|| path.strip_suffix(".GGUF"))?;
    let (rest, total) = stem.rsplit_once("-of-")?;
    let (prefix, idx) = rest.rsplit_once('-')?;
    let digits = |s: &str| s.len() == 5 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(idx) || !digits(total) {
        return None;
    }
    let (i, n) = (idx.parse().ok()?, total.parse().ok()?);
    (i >= 1 && i <= n).then_some((prefix, i, n))
}

/// Groups the GGUF files into models (a split model is one) and picks one.
pub(crate) fn select(src: &HfSource, entries: &[TreeEntry]) -> Result<Selection, StoreError> {
    let ggufs: Vec<&TreeEntry> = entries
        .iter()
        .filter(|e| e.path.to_ascii_lowercase().ends_with(".gguf"))
        .collect();
    if let Some(file) = &src.file {
        let e =
            ggufs
                .iter()
                .find(|e| &e.path == file)
                .ok_or_else(|| StoreError::EntryNotFound {
                    repo: src.repo.clone(),
                    revision: src.revision.clone(),
                    file: file.clone(),
                })?;
        let files = whole_model(src, e, &ggufs)?;
        return Ok(Selection {
            quant: quant_in_file_name(file),
            files,
            note: None,
        });
    }
    // One candidate per model: a single file, or the first part of a split.
    let mut models: Vec<&TreeEntry> = ggufs
        .iter()
        .copied()
        .filter(|e| !e.path.to_ascii_lowercase().contains("mmproj"))
        .filter(|e| split_parts(&e.path).is_none_or(|(_, i, _)| i == 1))
        .collect();
    models.sort_by(|a, b| a.path.cmp(&b.path));
    if models.is_empty() {
        return Err(StoreError::NoGguf {
            repo: src.repo.clone(),
        });
    }
    let want = src.quant.clone().unwrap_or_else(|| "Q4_K_M".into());
    let with_quant = |q: &str| {
        models
            .iter()
            .copied()
            .find(|e| quant_in_file_name(&e.path).as_deref() == Some(q))
    };
    let (pick, note) = if let Some(e) = with_quant(&want) {
        (e, None)
    } else if src.quant.is_some() {
        let mut available: Vec<String> = models
            .iter()
            .filter_map(|e| quant_in_file_name(&e.path))
            .collect();
        available.dedup();
        if available.is_empty() {
            available = models.iter().map(|e| e.path.clone()).collect();
        }
        return Err(StoreError::QuantNotFound {
            repo: src.repo.clone(),
            quant: want,
            available,
        });
    } else if let Some((q, e)) = QUANT_PREFERENCE
        .iter()
        .find_map(|q| with_quant(q).map(|e| (q, e)))
    {
        (
            e,
            Some(format!(
                "no Q4_K_M file in {}; chose {q} ({})",
                src.repo, e.path
            )),
        )
    } else {
        let e = models[0];
        (
            e,
            Some(format!(
                "no file with a known quantization in {}; chose {}",
                src.repo, e.path
            )),
        )
    };
    Ok(Selection {
        quant: quant_in_file_name(&pick.path),
        files: whole_model(src, pick, &ggufs)?,
        note,
    })
}

/// The file itself, or every part of the split it belongs to (in order, all present).
fn whole_model(
    src: &HfSource,
    e: &TreeEntry,
    ggufs: &[&TreeEntry],
) -> Result<Vec<TreeEntry>, StoreError> {
    let Some((prefix, _, n)) = split_parts(&e.path) else {
        return Ok(vec![e.clone()]);
    };
    (1..=n)
        .map(|i| {
            let want = format!("{prefix}-{i:05}-of-{n:05}.gguf");
            ggufs
                .iter()
                .find(|g| g.path == want)
                .map(|g| (*g).clone())
                .ok_or_else(|| StoreError::EntryNotFound {
                    repo: src.repo.clone(),
                    revision: src.revision.clone(),
                    file: want,
                })
        })
        .collect()
}

/// The download URL of a file.
pub(crate) fn resolve_url(hub: &HubConfig, src: &HfSource, path: &str) -> String {
    format!(
        "{}/{}/resolve/{}/{}",
        hub.endpoint,
        src.repo,
        encode_path(&src.revision),
        encode_path(path)
    )
}

/// Turns the Hub's HTTP errors into messages that say what to do.
pub(crate) fn hub_error(
    e: StoreError,
    hub: &HubConfig,
    src: &HfSource,
    file: Option<&str>,
) -> StoreError {
    let StoreError::HttpStatus {
        status,
        code,
        message,
        ..
    } = &e
    else {
        return e;
    };
    let repo = src.repo.clone();
    let page = format!("{}/{}", hub.endpoint, src.repo);
    let gated = code == "GatedRepo" || message.to_ascii_lowercase().contains("gated");
    match (*status, code.as_str()) {
        (_, "RepoNotFound") | (404, "") if file.is_none() || code == "RepoNotFound" => StoreError::RepoNotFound {
            repo,
            endpoint: hub.endpoint.clone(),
        },
        (_, "RevisionNotFound") => StoreError::EntryNotFound {
            repo,
            revision: src.revision.clone(),
            file: format!("revision {}", src.revision),
        },
        (404, _) => StoreError::EntryNotFound {
            repo,
            revision: src.revision.clone(),
            file: file.unwrap_or("").to_string(),
        },
        (401, _) => {
            let why = match (&hub.token, gated) {
                (None, true) => format!(
                    "{repo} is a gated repository: accept its conditions at {page} while logged in, then set HF_TOKEN to an access token of that account"
                ),
                (None, false) => format!(
                    "{repo} needs authentication (private or gated): set HF_TOKEN to an access token that can read it"
                ),
                (Some(_), _) => format!(
                    "the token in HF_TOKEN was refused for {repo} (expired or mistyped?){}",
                    if message.is_empty() { String::new() } else { format!(": {message}") }
                ),
            };
            StoreError::Unauthorized { repo, why }
        }
        (403, _) => StoreError::Forbidden {
            why: format!(
                "the token in HF_TOKEN has no access to {repo}{}; for a gated repository accept its conditions at {page}",
                if message.is_empty() { String::new() } else { format!(" ({message})") }
            ),
            repo,
        },
        _ => e,
    }
}

/// A model name for a Hub pull: the repository name without `-GGUF`, plus the quantization.
pub(crate) fn default_name(src: &HfSource, quant: Option<&str>) -> String {
    let repo = src.repo.rsplit('/').next().unwrap_or(&src.repo);
    let mut base = repo.to_string();
    for suffix in ["-GGUF", "-gguf", "_GGUF", "_gguf", ".GGUF", "-Gguf"] {
        if let Some(b) = base.strip_suffix(suffix) {
            base = b.to_string();
        }
    }
    if let Some(f) = &src.file {
        if split_parts(f).is_none() && quant.is_none() {
            let stem = f.rsplit('/').next().unwrap_or(f);
            base = stem.trim_end_matches(".gguf").to_string();
        }
    }
    let mut name = crate::name::sanitize_name(&base);
    if let Some(q) = quant {
        let q = q.to_ascii_lowercase();
        if !name.contains(&q) {
            name = crate::name::sanitize_name(&format!("{name}-{q}"));
        }
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(path: &str) -> TreeEntry {
        TreeEntry {
            path: path.into(),
            size: 1,
            lfs_sha256: None,
        }
    }

    #[test]
    fn sources() {
        let s = parse("bartowski/SmolLM2-135M-Instruct-GGUF:q8_0").unwrap();
        assert_eq!(s.repo, "bartowski/SmolLM2-135M-Instruct-GGUF");
        assert_eq!(s.quant.as_deref(), Some("Q8_0"));
        assert_eq!(s.revision, "main");
        let s = parse("org/repo@v1/sub/m.Q4_0.gguf").unwrap();
        assert_eq!(
            (s.revision.as_str(), s.file.as_deref()),
            ("v1", Some("sub/m.Q4_0.gguf"))
        );
        for bad in [
            "org",
            "org/",
            "/repo",
            "org/../x",
            "org/repo/../../etc/passwd.gguf",
            "org/repo/a.bin",
            "o g/r",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn pasted_locations() {
        let n = |s: &str| normalize(s);
        assert_eq!(n("hf://o/r:Q8_0").as_deref(), Some("o/r:Q8_0"));
        assert_eq!(n("hf.co/o/r:Q8_0").as_deref(), Some("o/r:Q8_0"));
        assert_eq!(n("https://huggingface.co/o/r/").as_deref(), Some("o/r"));
        assert_eq!(
            n("https://huggingface.co/o/r/blob/main/d/f.gguf").as_deref(),
            Some("o/r@main/d/f.gguf")
        );
        assert_eq!(
            n("https://hf.co/o/r/resolve/v1/f.gguf?download=true").as_deref(),
            Some("o/r@v1/f.gguf")
        );
        assert_eq!(n("pypi://x"), None);
        assert_eq!(
            next_link("<https://h/api/x?cursor=a>; rel=\"next\""),
            Some("https://h/api/x?cursor=a".into())
        );
        assert_eq!(next_link("<https://h/p>; rel=\"prev\""), None);
    }

    #[test]
    fn splits() {
        assert_eq!(
            split_parts("a/m-Q4_K_M-00002-of-00003.gguf"),
            Some(("a/m-Q4_K_M", 2, 3))
        );
        assert_eq!(split_parts("m-00004-of-00003.gguf"), None);
        assert_eq!(split_parts("m.gguf"), None);
    }

    #[test]
    fn selection() {
        let files = [
            e("README.md"),
            e("m-Q8_0.gguf"),
            e("m-Q4_K_M-00001-of-00002.gguf"),
            e("m-Q4_K_M-00002-of-00002.gguf"),
            e("mmproj-m-f16.gguf"),
            e("m-Q6_K.gguf"),
        ];
        let s = parse("o/r").unwrap();
        let sel = select(&s, &files).unwrap();
        assert_eq!(sel.files.len(), 2);
        assert!(sel.note.is_none());
        let sel = select(&parse("o/r:Q6_K").unwrap(), &files).unwrap();
        assert_eq!(sel.files[0].path, "m-Q6_K.gguf");
        let err = select(&parse("o/r:Q2_K").unwrap(), &files)
            .unwrap_err()
            .to_string();
        assert!(err.contains("Q8_0") && err.contains("Q4_K_M"), "{err}");
        // No Q4_K_M: the best available is chosen and said.
        let sel = select(&s, &files[..2]).unwrap();
        assert!(sel.note.unwrap().contains("Q8_0"));
        // A missing split part is an error, not a half model.
        assert!(select(&s, &files[2..3]).is_err());
    }

    #[test]
    fn names() {
        let s = parse("bartowski/SmolLM2-135M-Instruct-GGUF").unwrap();
        assert_eq!(
            default_name(&s, Some("Q4_K_M")),
            "smollm2-135m-instruct-q4_k_m"
        );
    }
}
