//! HTTP downloads: redirects followed by hand (the token only goes to the endpoint's origin), Range resume of an
//! interrupted transfer, sha256 verification, bounded retries.

use crate::error::IoContext;
use crate::progress::{Progress, ProgressMode};
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
        let mut url = url.to_string();
        for _ in 0..=MAX_REDIRECTS {
            let mut req = self.agent.get(&url);
            if from > 0 {
                req = req.header("Range", format!("bytes={from}-"));
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
    let mut total = expect.size;
    let mut progress = Progress::new(mode, label, total, pos);
    let mut stalled = 0u32;
    let mut buf = vec![0u8; 256 << 10];
    loop {
        if total.is_some_and(|t| pos == t) {
            break;
        }
        let before = pos;
        match fetch_from(
            http,
            url,
            &file,
            &mut hasher,
            &mut pos,
            &mut total,
            &mut progress,
            &mut buf,
        ) {
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

/// One request from byte `pos`, appending what arrives.
#[allow(clippy::too_many_arguments)]
fn fetch_from(
    http: &Http,
    url: &str,
    mut file: &File,
    hasher: &mut Sha256,
    pos: &mut u64,
    total: &mut Option<u64>,
    progress: &mut Progress,
    buf: &mut [u8],
) -> Result<(), Fetch> {
    let (resp, final_url) = http
        .get(url, *pos)
        .map_err(|e| Fetch::Retry(e.to_string()))?;
    let status = resp.status().as_u16();
    let io = |e: std::io::Error| {
        Fetch::Fatal(StoreError::Io {
            path: "download file".into(),
            source: e,
        })
    };
    match status {
        206 => {
            let (start, len) = header(&resp, "content-range")
                .and_then(|v| parse_content_range(&v))
                .ok_or_else(|| {
                    Fetch::Retry("a 206 answer without a usable Content-Range".into())
                })?;
            if start != *pos {
                restart(file, hasher, pos).map_err(io)?;
                progress.reset(0);
                return Err(Fetch::Retry(format!("the server resumed at byte {start}")));
            }
            if let (Some(t), Some(l)) = (*total, len) {
                if t != l {
                    return Err(Fetch::Fatal(StoreError::SizeMismatch {
                        what: final_url,
                        expected: t,
                        got: l,
                    }));
                }
            }
            *total = total.or(len);
        }
        200 => {
            if *pos > 0 {
                progress.note("the server does not resume transfers; starting over");
                restart(file, hasher, pos).map_err(io)?;
                progress.reset(0);
            }
            if let Some(len) = resp.body().content_length() {
                *total = total.or(Some(len));
            }
        }
        416 if total.is_some_and(|t| *pos >= t) => return Ok(()),
        416 => {
            restart(file, hasher, pos).map_err(io)?;
            progress.reset(0);
            return Err(Fetch::Retry("the server refused the byte range".into()));
        }
        408 | 429 | 500..=599 => {
            return Err(Fetch::Retry(format!("HTTP {status} from {final_url}")))
        }
        _ => return Err(Fetch::Fatal(status_error(&final_url, resp))),
    }
    let mut reader = resp.into_body().into_reader();
    loop {
        let n = match reader.read(buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Fetch::Retry(format!("connection lost ({e})"))),
        };
        if total.is_some_and(|t| *pos + n as u64 > t) {
            return Err(Fetch::Fatal(StoreError::SizeMismatch {
                what: final_url,
                expected: total.unwrap_or_default(),
                got: *pos + n as u64,
            }));
        }
        file.write_all(&buf[..n]).map_err(io)?;
        hasher.update(&buf[..n]);
        *pos += n as u64;
        progress.set(*pos);
    }
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
