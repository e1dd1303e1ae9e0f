//! JSON Pointers (RFC 6901) into a world state, with one extension: a `*` segment matches every element of an
//! array, so `/objects/*/id` is the `id` of every object.
//!
//! A path that does not exist (a missing key, an index past the end, a step into a scalar) is an error that names
//! where it broke; an empty array under `*` is not an error, it yields no values.

use serde_json::Value;

/// A parsed pointer: its segments, unescaped (`~1` is `/`, `~0` is `~`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pointer {
    text: String,
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// A key of an object, or an index of an array when it is a number.
    Key(String),
    /// `*`: every element of an array.
    Every,
}

impl Pointer {
    /// Parses `text`: empty (the whole document) or `/`-separated segments, each starting with `/`.
    pub fn parse(text: &str) -> Result<Pointer, String> {
        if text.is_empty() {
            return Ok(Pointer {
                text: String::new(),
                segments: Vec::new(),
            });
        }
        let Some(rest) = text.strip_prefix('/') else {
            return Err(format!(
                "{text:?} is not a JSON Pointer (it must start with '/')"
            ));
        };
        let mut segments = Vec::new();
        for raw in rest.split('/') {
            if raw == "*" {
                segments.push(Segment::Every);
                continue;
            }
            let mut key = String::with_capacity(raw.len());
            let mut chars = raw.chars();
            while let Some(c) = chars.next() {
                if c != '~' {
                    key.push(c);
                    continue;
                }
                match chars.next() {
                    Some('0') => key.push('~'),
                    Some('1') => key.push('/'),
                    _ => {
                        return Err(format!(
                            "{text:?}: '~' must be followed by 0 or 1 (RFC 6901)"
                        ))
                    }
                }
            }
            segments.push(Segment::Key(key));
        }
        Ok(Pointer {
            text: text.to_string(),
            segments,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Every value the pointer reaches in `doc`, in document order. Errors name the path that is missing.
    pub fn resolve<'a>(&self, doc: &'a Value) -> Result<Vec<&'a Value>, String> {
        // (value, the concrete path to it) for every match so far.
        let mut here: Vec<(&Value, String)> = vec![(doc, String::new())];
        for seg in &self.segments {
            let mut next = Vec::with_capacity(here.len());
            for (v, path) in here {
                match (seg, v) {
                    (Segment::Every, Value::Array(items)) => {
                        next.extend(
                            items
                                .iter()
                                .enumerate()
                                .map(|(i, x)| (x, format!("{path}/{i}"))),
                        );
                    }
                    (Segment::Every, _) => {
                        return Err(format!(
                            "{}: '*' needs an array at {}, found {}",
                            self.shown(),
                            shown_path(&path),
                            kind(v)
                        ))
                    }
                    (Segment::Key(k), Value::Object(map)) => match map.get(k) {
                        Some(x) => next.push((x, format!("{path}/{}", escape(k)))),
                        None => {
                            return Err(format!(
                                "{}: no key {k:?} at {}",
                                self.shown(),
                                shown_path(&path)
                            ))
                        }
                    },
                    (Segment::Key(k), Value::Array(items)) => {
                        match k.parse::<usize>().ok().and_then(|i| items.get(i)) {
                            Some(x) => next.push((x, format!("{path}/{k}"))),
                            None => {
                                return Err(format!(
                                    "{}: no element {k:?} in the array of {} at {}",
                                    self.shown(),
                                    items.len(),
                                    shown_path(&path)
                                ))
                            }
                        }
                    }
                    (Segment::Key(k), _) => {
                        return Err(format!(
                            "{}: cannot look up {k:?} in {} at {}",
                            self.shown(),
                            kind(v),
                            shown_path(&path)
                        ))
                    }
                }
            }
            here = next;
        }
        Ok(here.into_iter().map(|(v, _)| v).collect())
    }

    fn shown(&self) -> String {
        format!("the world state has no path {:?}", self.text)
    }
}

fn shown_path(path: &str) -> String {
    if path.is_empty() {
        "the top level".into()
    } else {
        path.to_string()
    }
}

fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn star_matches_every_element_and_an_empty_array_matches_nothing() {
        let w = json!({"objects": [{"id": "a"}, {"id": "b"}], "bins": [], "g": {"a/b": {"~": 3}}});
        let p = Pointer::parse("/objects/*/id").unwrap();
        assert_eq!(p.resolve(&w).unwrap(), [&json!("a"), &json!("b")]);
        assert!(Pointer::parse("/bins/*/id")
            .unwrap()
            .resolve(&w)
            .unwrap()
            .is_empty());
        assert_eq!(
            Pointer::parse("/objects/1/id")
                .unwrap()
                .resolve(&w)
                .unwrap(),
            [&json!("b")]
        );
        assert_eq!(
            Pointer::parse("/g/a~1b/~0").unwrap().resolve(&w).unwrap(),
            [&json!(3)]
        );
        assert_eq!(Pointer::parse("").unwrap().resolve(&w).unwrap(), [&w]);
    }

    #[test]
    fn a_missing_path_is_an_error_naming_where_it_broke() {
        let w = json!({"objects": [{"id": "a"}, {"name": "b"}], "n": 3});
        let e = Pointer::parse("/objects/*/id")
            .unwrap()
            .resolve(&w)
            .unwrap_err();
        assert!(e.contains("no key \"id\" at /objects/1"), "{e}");
        let e = Pointer::parse("/things/*")
            .unwrap()
            .resolve(&w)
            .unwrap_err();
        assert!(e.contains("no key \"things\" at the top level"), "{e}");
        let e = Pointer::parse("/n/*").unwrap().resolve(&w).unwrap_err();
        assert!(
            e.contains("'*' needs an array at /n, found a number"),
            "{e}"
        );
        let e = Pointer::parse("/objects/5")
            .unwrap()
            .resolve(&w)
            .unwrap_err();
        assert!(e.contains("no element \"5\""), "{e}");
    }

    #[test]
    fn bad_pointers_are_refused() {
        assert!(Pointer::parse("objects").is_err());
        assert!(Pointer::parse("/a~2").is_err());
    }
}
