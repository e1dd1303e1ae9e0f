//! Python's `json.dumps` formatting for template values: what HF transformers' `tojson` filter produces.
//!
//! Differences from minijinja's built-in `tojson`: no HTML escaping of `<>&'`, `", "` and `": "` separators, key
//! order kept, floats written like Python's `repr`, and `ensure_ascii`, `indent`, `sort_keys`, `separators`.

use minijinja::value::ValueKind;
use minijinja::{Error, ErrorKind, Value};

/// Options of `json.dumps` that templates use.
pub(crate) struct DumpOptions {
    pub indent: Option<String>,
    pub ensure_ascii: bool,
    pub sort_keys: bool,
    pub item_sep: String,
    pub key_sep: String,
}

impl DumpOptions {
    /// transformers' defaults: `ensure_ascii=False`; separators `(", ", ": ")`, or `(",", ": ")` with an indent.
    pub fn new(indent: Option<String>) -> DumpOptions {
        let item_sep = if indent.is_some() { "," } else { ", " };
        DumpOptions {
            indent,
            ensure_ascii: false,
            sort_keys: false,
            item_sep: item_sep.to_string(),
            key_sep: ": ".to_string(),
        }
    }
}

/// Nesting deeper than this is refused (templates are untrusted input).
const MAX_DEPTH: usize = 256;

/// The JSON text being written, refused once it passes `limit` bytes. A template can build a list that holds
/// the same list twice, sixty times over (`{% set ns.l = [ns.l, ns.l] %}` in a loop): a few hundred bytes of
/// values whose JSON is 2^60 bytes. Every byte is written through [`Out::push_str`], so the walk stops at the
/// limit, and since each value visited writes at least one byte, so does the time spent.
struct Out {
    buf: String,
    limit: usize,
}

impl Out {
    fn push_str(&mut self, s: &str) -> Result<(), Error> {
        if self.buf.len().saturating_add(s.len()) > self.limit {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("tojson: the JSON text exceeds {} bytes", self.limit),
            ));
        }
        self.buf.push_str(s);
        Ok(())
    }

    fn push(&mut self, c: char) -> Result<(), Error> {
        self.push_str(c.encode_utf8(&mut [0; 4]))
    }
}

/// `json.dumps(v)` with `opts`; an error if nesting passes [`MAX_DEPTH`] or the text passes `limit` bytes.
pub(crate) fn dumps(v: &Value, opts: &DumpOptions, limit: usize) -> Result<String, Error> {
    let mut out = Out {
        buf: String::new(),
        limit,
    };
    write_value(&mut out, v, opts, 0)?;
    Ok(out.buf)
}

fn write_value(out: &mut Out, v: &Value, opts: &DumpOptions, depth: usize) -> Result<(), Error> {
    if depth > MAX_DEPTH {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            "tojson: value nested too deeply",
        ));
    }
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null")?,
        ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" })?,
        ValueKind::Number => write_number(out, v)?,
        ValueKind::String => write_str(out, v.as_str().unwrap_or_default(), opts.ensure_ascii)?,
        ValueKind::Bytes => {
            let b = v.as_bytes().unwrap_or_default();
            write_str(out, &String::from_utf8_lossy(b), opts.ensure_ascii)?
        }
        ValueKind::Map => {
            let mut keys: Vec<Value> = v.try_iter()?.collect();
            if opts.sort_keys {
                keys.sort();
            }
            out.push('{')?;
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push_str(&opts.item_sep)?;
                }
                newline(out, opts, depth + 1)?;
                // Python converts non-string keys with str(); strings are quoted as usual.
                match k.as_str() {
                    Some(s) => write_str(out, s, opts.ensure_ascii)?,
                    None => write_str(out, &k.to_string(), opts.ensure_ascii)?,
                }
                out.push_str(&opts.key_sep)?;
                let item = v.get_item(k)?;
                write_value(out, &item, opts, depth + 1)?;
            }
            if !keys.is_empty() {
                newline(out, opts, depth)?;
            }
            out.push('}')?;
        }
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = v.try_iter()?.collect();
            out.push('[')?;
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(&opts.item_sep)?;
                }
                newline(out, opts, depth + 1)?;
                write_value(out, item, opts, depth + 1)?;
            }
            if !items.is_empty() {
                newline(out, opts, depth)?;
            }
            out.push(']')?;
        }
        // Objects without a JSON form (macros, callables): their string form, like a lenient json.dumps default.
        _ => write_str(out, &v.to_string(), opts.ensure_ascii)?,
    }
    Ok(())
}

fn newline(out: &mut Out, opts: &DumpOptions, depth: usize) -> Result<(), Error> {
    if let Some(ind) = &opts.indent {
        out.push('\n')?;
        for _ in 0..depth {
            out.push_str(ind)?;
        }
    }
    Ok(())
}

fn write_number(out: &mut Out, v: &Value) -> Result<(), Error> {
    if v.is_integer() {
        // Integers of any width print as their decimal digits.
        out.push_str(&v.to_string())
    } else {
        match f64::try_from(v.clone()) {
            Ok(f) => out.push_str(&python_float(f)),
            Err(_) => out.push_str(&v.to_string()),
        }
    }
}

/// `repr(float)` in Python: shortest round-trip digits, scientific notation below 1e-4 and from 1e16 up.
pub(crate) fn python_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        };
    }
    if f == 0.0 {
        return if f.is_sign_negative() {
            "-0.0".into()
        } else {
            "0.0".into()
        };
    }
    // `{:e}` gives the shortest round-trip digits: "-1.2345e-7".
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| c.is_ascii_digit()).collect();
    if (-4..16).contains(&exp) {
        let n = digits.len() as i32;
        let point = exp + 1; // digits before the decimal point
        let body = if point <= 0 {
            format!("0.{}{}", "0".repeat((-point) as usize), digits)
        } else if point >= n {
            format!("{}{}.0", digits, "0".repeat((point - n) as usize))
        } else {
            format!(
                "{}.{}",
                &digits[..point as usize],
                &digits[point as usize..]
            )
        };
        format!("{sign}{body}")
    } else {
        let (first, rest) = digits.split_at(1);
        let m = if rest.is_empty() {
            first.to_string()
        } else {
            format!("{first}.{rest}")
        };
        let es = if exp < 0 { "-" } else { "+" };
        format!("{sign}{m}e{es}{:02}", exp.abs())
    }
}

fn write_str(out: &mut Out, s: &str, ensure_ascii: bool) -> Result<(), Error> {
    out.push('"')?;
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\"")?,
            '\\' => out.push_str("\\\\")?,
            '\n' => out.push_str("\\n")?,
            '\r' => out.push_str("\\r")?,
            '\t' => out.push_str("\\t")?,
            '\u{08}' => out.push_str("\\b")?,
            '\u{0C}' => out.push_str("\\f")?,
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32))?,
            c if ensure_ascii && (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04x}"))?;
                }
            }
            c => out.push(c)?,
        }
    }
    out.push('"')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expected strings are what CPython 3.11 prints for `repr(x)` / `json.dumps(x)`.
    #[test]
    fn floats_like_python() {
        for (f, want) in [
            (1.0, "1.0"),
            (0.1, "0.1"),
            (-2.5, "-2.5"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (1e15, "1000000000000000.0"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (123.456, "123.456"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
        ] {
            assert_eq!(python_float(f), want, "{f}");
        }
    }

    fn out() -> Out {
        Out {
            buf: String::new(),
            limit: usize::MAX,
        }
    }

    #[test]
    fn strings_like_python() {
        let mut s = out();
        write_str(&mut s, "a\"b\\c\n<tag>&'é😀\u{1}", false).unwrap();
        assert_eq!(s.buf, r#""a\"b\\c\n<tag>&'é😀\u0001""#);
        let mut s = out();
        write_str(&mut s, "é😀\u{7f}", true).unwrap();
        assert_eq!(s.buf, r#""\u00e9\ud83d\ude00\u007f""#);
    }

    /// A list that holds the same list twice, 60 levels deep, is 2^60 bytes of JSON: refused at the limit, in
    /// about the limit's worth of work, and a text that fits is written whole.
    #[test]
    fn json_text_is_bounded() {
        let mut v = Value::from(vec![Value::from(1)]);
        for _ in 0..60 {
            v = Value::from(vec![v.clone(), v]);
        }
        let opts = DumpOptions::new(None);
        let err = dumps(&v, &opts, 1 << 20).unwrap_err();
        assert!(err.to_string().contains("exceeds 1048576 bytes"), "{err}");
        let big = Value::from("x".repeat(1000));
        assert_eq!(dumps(&big, &opts, 1002).unwrap().len(), 1002);
        assert!(dumps(&big, &opts, 1001).is_err());
        // The indent counts too: 200 levels of a 10 kB indent.
        let mut v = Value::from(vec![Value::from(1)]);
        for _ in 0..200 {
            v = Value::from(vec![v]);
        }
        let opts = DumpOptions::new(Some(" ".repeat(10_000)));
        assert!(dumps(&v, &opts, 1 << 20).is_err());
    }
}
