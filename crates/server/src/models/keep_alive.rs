//! [`KeepAlive`]: how long an idle model stays loaded, written as Ollama writes it (`"5m"`, `"1h30m"`, `"0"`, `-1`,
//! a number of seconds).

use std::time::Duration;

/// How long a model stays loaded after its last request ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepAlive {
    /// Unloaded this long after it was last used (zero: as soon as no request uses it).
    For(Duration),
    /// Never unloaded (a negative keep-alive, as in Ollama).
    Forever,
}

impl KeepAlive {
    /// Ollama's default: five minutes.
    pub const DEFAULT: KeepAlive = KeepAlive::For(Duration::from_secs(300));

    /// A JSON `keep_alive` value as Ollama takes it: a number of seconds or a duration string; negative is forever.
    pub fn from_json(v: &serde_json::Value) -> Result<KeepAlive, String> {
        match v {
            serde_json::Value::Number(n) => match n.as_f64() {
                Some(s) => KeepAlive::from_secs(s),
                None => Err(format!("{n} is not a number of seconds")),
            },
            serde_json::Value::String(s) => s.parse(),
            other => Err(format!(
                "expected a duration like \"5m\" or a number of seconds, not {other}"
            )),
        }
    }

    fn from_secs(s: f64) -> Result<KeepAlive, String> {
        if s.is_nan() {
            return Err("a keep-alive must be a number".into());
        }
        if s < 0.0 {
            return Ok(KeepAlive::Forever);
        }
        Duration::try_from_secs_f64(s)
            .map(KeepAlive::For)
            .map_err(|_| format!("{s} seconds is too long a keep-alive"))
    }
}

/// `"300"` (seconds), `"5m"`, `"1h30m"`, `"2.5s"`, `"500ms"`, `"0"`; a leading `-` means forever.
impl std::str::FromStr for KeepAlive {
    type Err = String;
    fn from_str(text: &str) -> Result<KeepAlive, String> {
        let s = text.trim();
        let bad = || {
            format!("{text:?} is not a duration: use seconds or a number with a unit (ms, s, m, h), e.g. 5m or 1h30m; negative keeps the model loaded")
        };
        if s.is_empty() {
            return Err(bad());
        }
        if let Ok(secs) = s.parse::<f64>() {
            return KeepAlive::from_secs(secs).map_err(|_| bad());
        }
        let (negative, mut rest) = match s.strip_prefix('-') {
            Some(r) => (true, r),
            None => (false, s.strip_prefix('+').unwrap_or(s)),
        };
        let mut total = 0f64;
        while !rest.is_empty() {
            let n_end = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .ok_or_else(bad)?;
            let n: f64 = rest[..n_end].parse().map_err(|_| bad())?;
            rest = &rest[n_end..];
            let u_end = rest
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .unwrap_or(rest.len());
            let unit = match &rest[..u_end] {
                "ns" => 1e-9,
                "us" | "µs" => 1e-6,
                "ms" => 1e-3,
                "s" => 1.0,
                "m" => 60.0,
                "h" => 3600.0,
                _ => return Err(bad()),
            };
            rest = &rest[u_end..];
            total += n * unit;
        }
        if negative {
            return Ok(KeepAlive::Forever);
        }
        KeepAlive::from_secs(total).map_err(|_| bad())
    }
}

impl std::fmt::Display for KeepAlive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeepAlive::Forever => write!(f, "forever"),
            KeepAlive::For(d) => write!(f, "{}s", d.as_secs_f64()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> KeepAlive {
        KeepAlive::For(Duration::from_secs_f64(s))
    }

    #[test]
    fn parses_as_ollama_does() {
        for (text, want) in [
            ("300", secs(300.0)),
            ("0", secs(0.0)),
            ("5m", secs(300.0)),
            ("1h30m", secs(5400.0)),
            ("2.5s", secs(2.5)),
            ("500ms", secs(0.5)),
            ("-1", KeepAlive::Forever),
            ("-1m", KeepAlive::Forever),
        ] {
            assert_eq!(text.parse::<KeepAlive>(), Ok(want), "{text}");
        }
        for bad in ["", "5 minutes", "m", "5x", "1e999", "NaN", "--1"] {
            assert!(bad.parse::<KeepAlive>().is_err(), "{bad}");
        }
        assert_eq!(
            KeepAlive::from_json(&serde_json::json!(-1)),
            Ok(KeepAlive::Forever)
        );
        assert_eq!(KeepAlive::from_json(&serde_json::json!(2)), Ok(secs(2.0)));
        assert_eq!(
            KeepAlive::from_json(&serde_json::json!("10m")),
            Ok(secs(600.0))
        );
        assert!(KeepAlive::from_json(&serde_json::json!(true)).is_err());
    }
}
