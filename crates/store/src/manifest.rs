//! One manifest per model name: where the model came from and which content-addressed blobs make it up.

use crate::error::IoContext;
use crate::name::validate_name;
use crate::StoreError;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Current manifest schema.
pub const SCHEMA: u32 = 1;

/// A model installed in the store (`$HEARTH_HOME/manifests/<name>.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub schema: u32,
    pub name: String,
    /// Where it came from: `hf://org/repo/file.gguf`, `pypi://pkg==1.0`, `file:///path`.
    pub source: String,
    /// The model's files in load order (several for a split GGUF).
    pub files: Vec<ManifestFile>,
    pub architecture: String,
    pub quant: String,
    pub context_length: Option<u64>,
    pub parameters: u64,
    /// Total bytes of all files.
    pub size: u64,
    /// Install time, seconds since the Unix epoch.
    pub created: u64,
    /// The sources it was pulled as, written as [`crate::source_key`] writes them (`hf://acme/gemma-test:Q4_K_M`):
    /// each is a name the model answers to. Absent in manifests written before it existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pulled_as: Vec<String>,
}

/// One file of a model, stored as `blobs/sha256-<hex>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    /// Lower-case hex sha256 of the content.
    pub sha256: String,
    pub size: u64,
    /// The file's name at its source, for display.
    pub name: String,
}

impl Manifest {
    /// Reads and checks a manifest: a damaged or hand-edited one cannot point outside the store.
    pub fn load(path: &Path) -> Result<Manifest, StoreError> {
        let text = std::fs::read_to_string(path).at(path)?;
        let bad = |why: String| StoreError::BadManifest {
            path: path.to_path_buf(),
            why,
        };
        let m: Manifest = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        if m.schema != SCHEMA {
            return Err(bad(format!(
                "schema {} (this hearth reads {SCHEMA})",
                m.schema
            )));
        }
        validate_name(&m.name).map_err(|e| bad(e.to_string()))?;
        if m.files.is_empty() {
            return Err(bad("it lists no files".into()));
        }
        for f in &m.files {
            if !is_sha256_hex(&f.sha256) {
                return Err(bad(format!("{:?} is not a sha256", f.sha256)));
            }
        }
        Ok(m)
    }
}

/// 64 lower-case hex digits.
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Seconds since the Unix epoch.
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `YYYY-MM-DD HH:MM` (UTC) for a Unix time.
pub fn format_time(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    // Civil date from days since 1970-01-01 (proleptic Gregorian calendar).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}",
        secs / 3600,
        secs % 3600 / 60
    )
}

/// Bytes as a short human-readable size (`135.2 MB`).
pub fn format_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut x = n as f64;
    let mut u = 0;
    while x >= 1000.0 && u < UNITS.len() - 1 {
        x /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{x:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        // Reference values from `date -u -d @N '+%F %H:%M'`.
        assert_eq!(format_time(0), "1970-01-01 00:00");
        assert_eq!(format_time(951_782_400), "2000-02-29 00:00");
        assert_eq!(format_time(1_795_000_000), "2026-11-18 11:06");
    }

    #[test]
    fn sizes() {
        assert_eq!(format_bytes(999), "999 B");
        assert_eq!(format_bytes(135_200_000), "135.2 MB");
    }
}
