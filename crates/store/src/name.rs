//! Model names and relative paths that come from users or servers: checked before they touch the file system.

use crate::StoreError;

/// Longest model name accepted.
pub const MAX_NAME_LEN: usize = 100;

/// Checks a model name: ASCII letters, digits, `.`, `_`, `-`; starts with a letter or digit; no `..`.
/// Names become file names under `$HEARTH_HOME/manifests`, so separators and absolute paths are refused.
pub fn validate_name(name: &str) -> Result<(), StoreError> {
    let bad = |why| {
        Err(StoreError::BadName {
            name: name.to_string(),
            why,
        })
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() > MAX_NAME_LEN {
        return bad("it is longer than 100 characters");
    }
    if name.contains('/') || name.contains('\\') {
        return bad("it contains a path separator");
    }
    if name.contains("..") {
        return bad("it contains \"..\"");
    }
    if !name.as_bytes()[0].is_ascii_alphanumeric() {
        return bad("it must start with a letter or a digit");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return bad("only letters, digits, '.', '_' and '-' are allowed");
    }
    Ok(())
}

/// Turns a file or repository name into a valid model name (lower case, other characters replaced by `-`).
pub fn sanitize_name(raw: &str) -> String {
    let mut out = String::new();
    for c in raw.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    while out.contains("..") {
        out = out.replace("..", ".");
    }
    let out = out.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    let mut out: String = out.chars().take(MAX_NAME_LEN).collect();
    if out.is_empty() {
        out = "model".into();
    }
    out
}

/// Checks a relative path inside a repository or archive (`dir/file.gguf`): no absolute paths, no `..`, no empty or
/// `.` segments, no backslashes or control characters.
pub fn validate_rel_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("empty path".into());
    }
    if path.starts_with('/') || path.contains('\\') || path.contains(':') {
        return Err(format!("{path:?} is not a plain relative path"));
    }
    if path.chars().any(|c| c.is_control()) {
        return Err(format!("{path:?} contains control characters"));
    }
    for seg in path.split('/') {
        if seg.is_empty() || seg == "." || seg == ".." {
            return Err(format!("{path:?} has an empty, '.' or '..' segment"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["smollm2-135m", "gemma3-270m", "a", "Qwen3-0.6B_q4"] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "..",
            "../x",
            "a/b",
            "a\\b",
            "/etc/passwd",
            "a..b",
            ".hidden",
            "-rf",
            "a b",
            "a:b",
            "é",
        ] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sanitized_names_are_valid() {
        for raw in [
            "SmolLM2-135M-Instruct.Q4_1",
            "../../x",
            "..",
            "/abs/p",
            "a b  c",
            "---",
            "Ünïcode",
        ] {
            let s = sanitize_name(raw);
            assert!(validate_name(&s).is_ok(), "{raw} -> {s}");
        }
        assert_eq!(
            sanitize_name("SmolLM2-135M-Instruct.Q4_1"),
            "smollm2-135m-instruct.q4_1"
        );
    }

    #[test]
    fn rel_paths() {
        assert!(validate_rel_path("Q4_K_M/model-00001-of-00002.gguf").is_ok());
        for bad in ["", "/etc/x", "../x", "a/../b", "a//b", "./a", "a\\b", "C:x"] {
            assert!(validate_rel_path(bad).is_err(), "{bad}");
        }
    }
}
