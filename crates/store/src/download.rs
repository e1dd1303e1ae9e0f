//! HTTP downloads: redirects followed by hand (the token only goes to the endpoint's origin), Range resume of an
//! interrupted transfer, sha256 verification, bounded retries.
//!
//! A resume appends the server's bytes to the ones already here, so it is only safe when the server proves it
//! still has the same file: with the expected sha256 (checked at the end), or with the validators ([`Validators`]:
//! a strong `ETag` or `Last-Modified`, and the size) that the first answer gave, which are kept beside the partial
//! file (`<part>.meta`) so a later `hearth pull` can resume too. They go out as `If-Range`, so a server whose file
//! changed answers with the whole new file; a 206 whose validators differ from ours is refused the same way. A
//! partial file without either proof is downloaded again from the start.

use crate::error::IoContext;
use crate::progress::{Progress, ProgressMode, Reporter};
use crate::StoreError;
use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

type Response = ureq::http::Response<ureq::Body>;

/// Redirect hops followed before giving up.
const MAX_REDIRECTS: usize = 10;
/// Failed attempts in a row that made no progress before a download gives up.
const MAX_STALLED_ATTEMPTS: u32 = 6;

/// An HTTP client that sends `Authorization: Bearer <token>` to one origin only.
pub struct Http {
    agent: ureq::Agent,
    token: Option<String>,
    /// `scheme://host:port` that receives the token.
    auth_origin: Option<String>,
    retry_delay: Duration,
}

impl Http {
    /// A client; `token` is sent only to URLs on `auth_origin`'s `scheme://host:port`.
    pub fn new(token: Option<String>, auth_origin: &str, read_timeout: Duration) -> Http {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .max_redirects(0)
            .http_status_as_error(false)
            .accept_encoding("identity")
            .user_agent(concat!("hearth/", env!("CARGO_PKG_VERSION")))
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_per_read(Some(read_timeout))
            .build()
            .into();
        Http {
            agent,
            token: token.filter(|t| !t.is_empty()),
            auth_origin: origin(auth_origin),
            retry_delay: Duration::from_millis(300),
        }
    }

    /// GET `url` (with `Range: bytes=<from>-` when `from > 0`), following redirects. Any status is returned as is.
    pub(crate) fn get(&self, url: &str, from: u64) -> Result<(Response, String), StoreError> {
        self.get_if_range(url, from, None)
    }

    /// [`Http::get`] with `If-Range: <if_range>` beside the range: the server sends the whole file (200) instead
    /// of the range when its validator no longer matches.
    fn get_if_range(
        &self,
        url: &str,
        from: u64,
        if_range: Option<&str>,
    ) -> Result<(Response, String), StoreError> {
        let mut url = url.to_string();
        for _ in 0..=MAX_REDIRECTS {
            let mut req = self.agent.get(&url);
            if from > 0 {
                req = req.header("Range", format!("bytes={from}-"));
                if let Some(v) = if_range {
                    req = req.header("If-Range", v);
                }
            }
            if let (Some(tok), Some(o)) = (&self.token, &self.auth_origin) {
                if origin(&url).as_ref() == Some(o) {
                    req = req.header("Authorization", format!("Bearer {tok}"));
                }
            }
            let resp = req.call().map_err(|e| StoreError::Http {
                url: url.clone(),
                why: e.to_string(),
            })?;
            if !resp.status().is_redirection() {
                return Ok((resp, url));
            }
            let loc = header(&resp, "location").ok_or_else(|| StoreError::Http {
                url: url.clone(),
                why: format!("redirect {} without a Location header", resp.status()),
            })?;
            url = join_url(&url, &loc).ok_or_else(|| StoreError::Http {
                url: url.clone(),
                why: format!("redirect to an unusable location {loc:?}"),
            })?;
        }
        Err(StoreError::Http {
            url,
            why: format!("more than {MAX_REDIRECTS} redirects"),
        })
    }

    /// GET a small JSON document (at most 64 MiB).
    pub(crate) fn get_json(&self, url: &str) -> Result<(serde_json::Value, Response), StoreError> {
        let (mut resp, final_url) = self.get(url, 0)?;
        if !resp.status().is_success() {
            return Err(status_error(&final_url, resp));
        }
        let body = resp
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_vec()
            .map_err(|e| StoreError::Http {
                url: final_url.clone(),
                why: e.to_string(),
            })?;
        let v = serde_json::from_slice(&body).map_err(|e| StoreError::Http {
            url: final_url,
            why: format!("the answer is not JSON: {e}"),
        })?;
        Ok((v, resp))
    }

    /// For tests: how long to wait before retrying a failed transfer.
    pub fn set_retry_delay(&mut self, d: Duration) {
        self.retry_delay = d;
    }
}

/// What a downloaded file must be.
#[derive(Debug, Clone, Default)]
pub(crate) struct Expect {
    pub sha256: Option<String>,
    pub size: Option<u64>,
}

/// Downloads `url` into `part`, resuming from the bytes already there, and returns the content's sha256 (hex).
/// A sha256 mismatch deletes `part`. `part` is left in place on every other failure so the next attempt resumes.
pub(crate) fn download(
    http: &Http,
    url: &str,
    part: &Path,
    expect: &Expect,
    mode: ProgressMode,
    label: &str,
    report: Option<&Reporter>,
) -> Result<String, StoreError> {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(part)
        .at(part)?;
    let mut hasher = Sha256::new();
    let mut pos = hash_prefix(&mut file, &mut hasher).at(part)?;
    if expect.size.is_some_and(|s| pos > s) {
        restart(&file, &mut hasher, &mut pos).at(part)?;
    }
    let meta = sidecar(part);
    let mut known = if pos > 0 {
        Validators::load(&meta)
    } else {
        None
    };
    let mut total = expect.size;
    let report = report.map(|r| (r.clone(), expect.sha256.clone()));
    let mut progress = Progress::new(mode, label, total, pos, report);
    let mut stalled = 0u32;
    let mut buf = vec![0u8; 256 << 10];
    loop {
        if total.is_some_and(|t| pos == t) {
            break;
        }
        let before = pos;
        let mut to = Target {
            file: &file,
            meta: &meta,
            hasher: &mut hasher,
            pos: &mut pos,
            total: &mut total,
            known: &mut known,
            verified_at_end: expect.sha256.is_some(),
        };
        match fetch_from(http, url, &mut to, &mut progress, &mut buf) {
            Ok(()) if total.is_none_or(|t| pos == t) => break,
            Ok(()) => progress.note(&format!(
                "the transfer ended early at {} bytes; resuming",
                pos
            )),
            Err(Fetch::Fatal(e)) => return Err(e),
            Err(Fetch::Retry(why)) => {
                progress.note(&format!("{why}; resuming at byte {pos}"));
            }
        }
        stalled = if pos > before { 0 } else { stalled + 1 };
        if stalled >= MAX_STALLED_ATTEMPTS {
            return Err(StoreError::Http {
                url: url.to_string(),
                why: format!(
                    "no progress after {MAX_STALLED_ATTEMPTS} attempts; run the same pull again to resume from byte {pos}"
                ),
            });
        }
        std::thread::sleep(http.retry_delay * stalled.max(1));
    }
    progress.finish();
    file.sync_all().at(part)?;
    let _ = std::fs::remove_file(&meta);
    let got = hex(&hasher.finalize());
    if let Some(want) = &expect.sha256 {
        if !got.eq_ignore_ascii_case(want) {
            drop(file);
            let _ = std::fs::remove_file(part);
            return Err(StoreError::ShaMismatch {
                what: label.to_string(),
                expected: want.clone(),
                got,
            });
        }
    }
    Ok(got)
}

enum Fetch {
    /// Worth another attempt (connection lost, server error).
    Retry(String),
    Fatal(StoreError),
}

/// Where one request's bytes go, and what is known about the file.
struct Target<'a> {
    file: &'a File,
    /// The sidecar file that keeps `known` for a later run.
    meta: &'a Path,
    hasher: &'a mut Sha256,
    pos: &'a mut u64,
    total: &'a mut Option<u64>,
    /// The validators of the file whose bytes are in `file` (None: not known).
    known: &'a mut Option<Validators>,
    /// The expected sha256 is checked at the end, so any resume is safe.
    verified_at_end: bool,
}

impl Target<'_> {
    fn restart(&mut self) -> std::io::Result<()> {
        *self.known = None;
        let _ = std::fs::remove_file(self.meta);
        restart(self.file, self.hasher, self.pos)
    }
}

/// One request from byte `pos`, appending what arrives.
fn fetch_from(
    http: &Http,
    url: &str,
    to: &mut Target<'_>,
    progress: &mut Progress,
    buf: &mut [u8],
) -> Result<(), Fetch> {
    let io = |e: std::io::Error| {
        Fetch::Fatal(StoreError::Io {
            path: "download file".into(),
            source: e,
        })
    };
    let if_range = to.known.as_ref().and_then(Validators::if_range);
    if *to.pos > 0 && !to.verified_at_end && if_range.is_none() {
        // Nothing can tell us that the server's file is the one these bytes came from: never splice two files.
        progress
            .note("the server cannot prove its file is the one already partly here; starting over");
        to.restart().map_err(io)?;
        progress.reset(0);
    }
    let (resp, final_url) = http
        .get_if_range(url, *to.pos, if_range.as_deref())
        .map_err(|e| Fetch::Retry(e.to_string()))?;
    let status = resp.status().as_u16();
    match status {
        206 => {
            let (start, len) = header(&resp, "content-range")
                .and_then(|v| parse_content_range(&v))
                .ok_or_else(|| {
                    Fetch::Retry("a 206 answer without a usable Content-Range".into())
                })?;
            if start != *to.pos {
                to.restart().map_err(io)?;
                progress.reset(0);
                return Err(Fetch::Retry(format!("the server resumed at byte {start}")));
            }
            if let Some(k) = to.known.as_ref() {
                if !k.same_file(&Validators::of(&resp, len)) {
                    // The server ignored If-Range and sent a range of another file.
                    to.restart().map_err(io)?;
                    progress.reset(0);
                    return Err(Fetch::Retry("the file changed on the server".into()));
                }
            }
            if let (Some(t), Some(l)) = (*to.total, len) {
                if t != l {
                    return Err(Fetch::Fatal(StoreError::SizeMismatch {
                        what: final_url,
                        expected: t,
                        got: l,
                    }));
                }
            }
            *to.total = to.total.or(len);
        }
        200 => {
            if *to.pos > 0 {
                progress.note("the server sent the whole file (it changed, or it does not resume); starting over");
                to.restart().map_err(io)?;
                progress.reset(0);
            }
            let len = resp.body().content_length();
            if let Some(len) = len {
                *to.total = to.total.or(Some(len));
            }
            let v = Validators::of(&resp, len);
            // Best effort: without the sidecar a later run starts over, which is safe.
            let _ = v.save(to.meta);
            *to.known = Some(v);
        }
        416 if to.total.is_some_and(|t| *to.pos >= t) => return Ok(()),
        416 => {
            to.restart().map_err(io)?;
            progress.reset(0);
            return Err(Fetch::Retry("the server refused the byte range".into()));
        }
        408 | 429 | 500..=599 => {
            return Err(Fetch::Retry(format!("HTTP {status} from {final_url}")))
        }
        _ => return Err(Fetch::Fatal(status_error(&final_url, resp))),
    }
    let mut reader = resp.into_body().into_reader();
    let mut file = to.file;
    loop {
        let n = match reader.read(buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Fetch::Retry(format!("connection lost ({e})"))),
        };
        if to.total.is_some_and(|t| *to.pos + n as u64 > t) {
            return Err(Fetch::Fatal(StoreError::SizeMismatch {
                what: final_url,
                expected: to.total.unwrap_or_default(),
                got: *to.pos + n as u64,
            }));
        }
        file.write_all(&buf[..n]).map_err(io)?;
        to.hasher.update(&buf[..n]);
        *to.pos += n as u64;
        progress.set(*to.pos);
    }
}

/// What identifies one version of a file on the server: a strong `ETag`, `Last-Modified`, and its size.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Validators {
    etag: Option<String>,
    last_modified: Option<String>,
    size: Option<u64>,
}

impl Validators {
    /// From an answer (`size`: the whole file's, from Content-Length or Content-Range). A weak `ETag` (`W/"…"`)
    /// does not identify bytes, so it is left out.
    fn of(resp: &Response, size: Option<u64>) -> Validators {
        Validators {
            etag: header(resp, "etag").filter(|e| e.starts_with('"')),
            last_modified: header(resp, "last-modified"),
            size,
        }
    }

    /// What to send as `If-Range` (None: nothing proves a resumed range belongs to the same file).
    fn if_range(&self) -> Option<String> {
        self.etag.clone().or_else(|| self.last_modified.clone())
    }

    /// Whether `other` (a 206's) can be the same file: every validator both have agrees.
    fn same_file(&self, other: &Validators) -> bool {
        fn agree<T: PartialEq>(a: &Option<T>, b: &Option<T>) -> bool {
            a.is_none() || b.is_none() || a == b
        }
        agree(&self.etag, &other.etag)
            && agree(&self.last_modified, &other.last_modified)
            && agree(&self.size, &other.size)
    }

    fn load(path: &Path) -> Option<Validators> {
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
        let s = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
        Some(Validators {
            etag: s("etag"),
            last_modified: s("last_modified"),
            size: v.get("size").and_then(|x| x.as_u64()),
        })
    }

    fn save(&self, path: &Path) -> std::io::Result<()> {
        let v = serde_json::json!({"etag": self.etag, "last_modified": self.last_modified, "size": self.size});
        let tmp = path.with_extension("meta.tmp");
        std::fs::write(&tmp, v.to_string())?;
        std::fs::rename(&tmp, path)
    }
}

/// The file beside a partial download that keeps its [`Validators`].
pub(crate) fn sidecar(part: &Path) -> std::path::PathBuf {
    let mut name = part.file_name().unwrap_or_default().to_os_string();
    name.push(".meta");
    part.with_file_name(name)
}

/// Hashes the bytes already in a partial file; returns its length.
fn hash_prefix(file: &mut File, hasher: &mut Sha256) -> std::io::Result<u64> {
    let mut buf = vec![0u8; 1 << 20];
    let mut n_total = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(n_total);
        }
        hasher.update(&buf[..n]);
        n_total += n as u64;
    }
}

fn restart(file: &File, hasher: &mut Sha256, pos: &mut u64) -> std::io::Result<()> {
    file.set_len(0)?;
    *hasher = Sha256::new();
    *pos = 0;
    Ok(())
}

/// `bytes START-END/TOTAL` → (START, TOTAL if known).
fn parse_content_range(v: &str) -> Option<(u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (start, _end) = range.split_once('-')?;
    Some((start.trim().parse().ok()?, total.trim().parse().ok()))
}

/// The error for an unexpected status, with the Hub's `X-Error-Code`/`X-Error-Message` or the start of the body.
pub(crate) fn status_error(url: &str, mut resp: Response) -> StoreError {
    let status = resp.status().as_u16();
    let code = header(&resp, "x-error-code").unwrap_or_default();
    let mut message = header(&resp, "x-error-message").unwrap_or_default();
    if message.is_empty() {
        let body = resp
            .body_mut()
            .with_config()
            .limit(4096)
            .lossy_utf8(true)
            .read_to_string()
            .unwrap_or_default();
        message = body
            .trim()
            .chars()
            .take(300)
            .collect::<String>()
            .replace('\n', " ");
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&body) {
            if let Some(e) = v.get("error").and_then(|e| e.as_str()) {
                message = e.to_string();
            }
        }
    }
    StoreError::HttpStatus {
        url: url.to_string(),
        status,
        code,
        message,
    }
}

pub(crate) fn header(resp: &Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// `scheme://host:port` of an absolute http(s) URL, lower-cased, with the default port made explicit.
pub(crate) fn origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let authority = rest.split(['/', '?', '#']).next()?.to_ascii_lowercase();
    let authority = authority
        .rsplit_once('@')
        .map_or(authority.as_str(), |(_, h)| h);
    if authority.is_empty() {
        return None;
    }
    let has_port = authority.rsplit_once(':').is_some_and(|(_, p)| {
        !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && !authority.ends_with(']')
    });
    let port = match (has_port, scheme.as_str()) {
        (true, _) => String::new(),
        (false, "https") => ":443".into(),
        (false, "http") => ":80".into(),
        _ => return None,
    };
    Some(format!("{scheme}://{authority}{port}"))
}

/// Resolves a redirect `Location` against the URL that answered.
pub(crate) fn join_url(base: &str, loc: &str) -> Option<String> {
    let loc = loc.trim();
    if loc.starts_with("http://") || loc.starts_with("https://") {
        return Some(loc.to_string());
    }
    let (scheme, rest) = base.split_once("://")?;
    if let Some(r) = loc.strip_prefix("//") {
        return Some(format!("{scheme}://{r}"));
    }
    let authority = rest.split(['/', '?', '#']).next()?;
    if loc.starts_with('/') {
        return Some(format!("{scheme}://{authority}{loc}"));
    }
    let path = rest[authority.len()..]
        .split(['?', '#'])
        .next()
        .unwrap_or("");
    let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
    Some(format!("{scheme}://{authority}{dir}/{loc}"))
}

/// Percent-encodes a path for a URL, keeping `/` and unreserved characters.
pub(crate) fn encode_path(p: &str) -> String {
    let mut out = String::new();
    for b in p.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out += &format!("%{b:02X}");
        }
    }
    out
}

/// Lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        assert_eq!(
            origin("https://huggingface.co/a/b").as_deref(),
            Some("https://huggingface.co:443")
        );
        assert_eq!(
            origin("http://127.0.0.1:8080/x?y").as_deref(),
            Some("http://127.0.0.1:8080")
        );
        assert_eq!(
            origin("HTTP://Example.com").as_deref(),
            Some("http://example.com:80")
        );
        assert_ne!(origin("http://127.0.0.1:1/"), origin("http://127.0.0.1:2/"));
        assert_eq!(origin("ftp://x/"), None);
    }

    #[test]
    fn joins() {
        let b = "http://h:1/org/repo/resolve/main/f.gguf?x=1";
        assert_eq!(
            join_url(b, "https://cdn/x").as_deref(),
            Some("https://cdn/x")
        );
        assert_eq!(join_url(b, "/api/x").as_deref(), Some("http://h:1/api/x"));
        assert_eq!(join_url(b, "//cdn:2/y").as_deref(), Some("http://cdn:2/y"));
        assert_eq!(
            join_url(b, "g.gguf").as_deref(),
            Some("http://h:1/org/repo/resolve/main/g.gguf")
        );
    }

    #[test]
    fn content_range() {
        assert_eq!(
            parse_content_range("bytes 100-199/200"),
            Some((100, Some(200)))
        );
        assert_eq!(parse_content_range("bytes 0-9/*"), Some((0, None)));
        assert_eq!(parse_content_range("items 0-9/10"), None);
    }
}
