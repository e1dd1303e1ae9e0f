//! Tool calls: the grammar that makes a model's calls valid, and the parser that reads them back out of its text.
//!
//! A call is written `<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>` (the format
//! Qwen2.5/Qwen3 and Hermes models are trained on, and hearth's fallback for chat templates that know nothing of
//! tools); parallel calls follow each other separated by a newline. With [`ToolChoice::Required`] or
//! [`ToolChoice::Named`] the answer is nothing but calls; with [`ToolChoice::Auto`] it is free text that contains no
//! `<tool_call>`, or text followed by calls: once the model writes `<tool_call>` the grammar takes over.
//! Each function's `arguments` follow its `parameters` schema (with its `$defs`).

use crate::{json_options, ConstraintError, Grammar};
use serde_json::{json, Map, Value};

/// A function the model may call.
#[derive(Debug, Clone, PartialEq)]
pub struct Tool {
    pub name: String,
    /// JSON Schema of the arguments object (None: any object).
    pub parameters: Option<Value>,
}

/// OpenAI's `tool_choice`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    /// Text, or text then calls.
    Auto,
    /// At least one call and nothing else.
    Required,
    /// Calls of this function only.
    Named(String),
}

/// The markers around one call.
pub const OPEN: &str = "<tool_call>";
pub const CLOSE: &str = "</tool_call>";
/// Between parallel calls.
const SEP: &str = "\n";

/// The grammar for calls of `tools` under `choice`; `parallel` allows several calls in one answer.
pub fn grammar(
    tools: &[Tool],
    choice: &ToolChoice,
    parallel: bool,
) -> Result<Grammar, ConstraintError> {
    let chosen: Vec<&Tool> = match choice {
        ToolChoice::Named(name) => {
            let t = tools.iter().find(|t| &t.name == name).ok_or_else(|| {
                ConstraintError::Compile(format!(
                    "tool_choice names {name:?}, which is not in tools"
                ))
            })?;
            vec![t]
        }
        _ => tools.iter().collect(),
    };
    if chosen.is_empty() {
        return Err(ConstraintError::Compile("tools is empty".into()));
    }
    let mut lark = String::new();
    let open = lark_str(OPEN);
    let close = lark_str(CLOSE);
    let more = if parallel {
        format!("({} call)*", lark_str(SEP))
    } else {
        String::new()
    };
    match choice {
        ToolChoice::Auto => {
            // Text without a call, or text up to the first `<tool_call>` (lazy: it ends there) and then calls.
            lark += &format!("start: TEXT | head body {close} {more}\n");
            lark += "TEXT: /(?s:.*)/ & ~/(?s:.*)<tool_call>(?s:.*)/\n";
            lark += "head[lazy]: /(?s:.*)<tool_call>/\n";
        }
        ToolChoice::Required | ToolChoice::Named(_) => {
            lark += &format!("start: call {more}\n");
        }
    }
    lark += &format!("call: {open} body {close}\n");
    let names: Vec<String> = (0..chosen.len()).map(|i| format!("fn_{i}")).collect();
    lark += &format!("body: {}\n", names.join(" | "));
    for (rule, tool) in names.iter().zip(&chosen) {
        let schema = call_schema(tool);
        lark += &format!("{rule}: %json {schema}\n");
    }
    Ok(Grammar::Lark(lark))
}

/// `{"name": <const>, "arguments": <parameters>}` as one schema; the parameters' `$defs`/`definitions` move to its
/// top so that their `#/$defs/…` references still resolve.
fn call_schema(tool: &Tool) -> Value {
    let mut params = tool
        .parameters
        .clone()
        .unwrap_or_else(|| json!({"type": "object"}));
    let mut top = Map::new();
    top.insert("type".into(), json!("object"));
    if let Some(obj) = params.as_object_mut() {
        for key in ["$defs", "definitions"] {
            if let Some(defs) = obj.remove(key) {
                top.insert(key.into(), defs);
            }
        }
        if obj.is_empty() {
            params = json!({"type": "object"});
        }
    }
    top.insert(
        "properties".into(),
        json!({"name": {"const": tool.name}, "arguments": params}),
    );
    top.insert("required".into(), json!(["name", "arguments"]));
    top.insert("additionalProperties".into(), json!(false));
    top.insert("x-guidance".into(), json_options());
    Value::Object(top)
}

/// A Lark string literal.
fn lark_str(s: &str) -> String {
    Value::String(s.into()).to_string()
}

/// One call read back from the text.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub name: String,
    /// The arguments object as compact JSON text (OpenAI's `function.arguments`).
    pub arguments: String,
}

/// What [`CallParser`] makes of the text so far.
#[derive(Debug, Clone, PartialEq)]
pub enum Piece {
    /// Text outside any call.
    Text(String),
    /// A complete call (the `index`-th of the answer).
    Call { index: usize, call: Call },
}

/// Splits a streamed answer into text and calls: text is passed on as soon as it cannot be the start of
/// `<tool_call>`; a call is passed on whole when its `</tool_call>` arrives.
#[derive(Debug, Default)]
pub struct CallParser {
    buf: String,
    in_call: bool,
    calls: usize,
    /// Whitespace right after a call (the separator between parallel calls) is not text.
    after_call: bool,
}

impl CallParser {
    pub fn new() -> CallParser {
        CallParser::default()
    }

    /// Feeds the next piece of text; returns what became definite.
    pub fn push(&mut self, text: &str) -> Vec<Piece> {
        self.buf.push_str(text);
        let mut out = Vec::new();
        loop {
            if self.in_call {
                let Some(end) = self.buf.find(CLOSE) else {
                    break;
                };
                let body: String = self.buf[..end].to_string();
                self.buf.drain(..end + CLOSE.len());
                self.in_call = false;
                match parse_call(&body) {
                    Some(call) => {
                        out.push(Piece::Call {
                            index: self.calls,
                            call,
                        });
                        self.calls += 1;
                    }
                    // Not a call after all (unconstrained output): keep it as text.
                    None => out.push(Piece::Text(format!("{OPEN}{body}{CLOSE}"))),
                }
                self.after_call = true;
            } else if self.after_call {
                let ws = self.buf.len() - self.buf.trim_start().len();
                self.buf.drain(..ws);
                if self.buf.is_empty() {
                    break;
                }
                self.after_call = false;
            } else if let Some(start) = self.buf.find(OPEN) {
                if start > 0 {
                    out.push(Piece::Text(self.buf[..start].to_string()));
                }
                self.buf.drain(..start + OPEN.len());
                self.in_call = true;
            } else {
                // Hold back a tail that could begin `<tool_call>`.
                let keep = partial_suffix(&self.buf, OPEN);
                let cut = self.buf.len() - keep;
                if cut > 0 {
                    out.push(Piece::Text(self.buf[..cut].to_string()));
                    self.buf.drain(..cut);
                }
                break;
            }
        }
        out
    }

    /// The end of the answer: whatever is held back is text (an unfinished call included).
    pub fn finish(&mut self) -> Vec<Piece> {
        let mut rest = std::mem::take(&mut self.buf);
        if self.in_call {
            rest.insert_str(0, OPEN);
            self.in_call = false;
        }
        if rest.is_empty() || (self.calls > 0 && rest.trim().is_empty()) {
            Vec::new()
        } else {
            vec![Piece::Text(rest)]
        }
    }

    /// Calls read so far.
    pub fn calls(&self) -> usize {
        self.calls
    }
}

/// The longest suffix of `s` that is a proper prefix of `pat` (in bytes, on a character boundary).
fn partial_suffix(s: &str, pat: &str) -> usize {
    (1..pat.len().min(s.len() + 1))
        .rev()
        .find(|&n| s.is_char_boundary(s.len() - n) && pat.starts_with(&s[s.len() - n..]))
        .unwrap_or(0)
}

/// `{"name": …, "arguments": {…}}` → a call; None when the body is not that shape.
fn parse_call(body: &str) -> Option<Call> {
    let v: Value = serde_json::from_str(body.trim()).ok()?;
    let name = v.get("name")?.as_str()?.to_string();
    let arguments = match v.get("arguments") {
        Some(a @ Value::Object(_)) => a.to_string(),
        // Some models write the arguments as a JSON string already.
        Some(Value::String(s)) if serde_json::from_str::<Value>(s).is_ok_and(|a| a.is_object()) => {
            s.clone()
        }
        None => "{}".to_string(),
        _ => return None,
    };
    Some(Call { name, arguments })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(chunks: &[&str]) -> Vec<Piece> {
        let mut p = CallParser::new();
        let mut out: Vec<Piece> = chunks.iter().flat_map(|c| p.push(c)).collect();
        out.extend(p.finish());
        // Merge adjacent text for comparison.
        let mut merged: Vec<Piece> = Vec::new();
        for piece in out {
            match (merged.last_mut(), piece) {
                (Some(Piece::Text(a)), Piece::Text(b)) => a.push_str(&b),
                (_, p) => merged.push(p),
            }
        }
        merged
    }

    #[test]
    fn calls_are_read_whatever_the_chunking() {
        let text = "Let me look.<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": 1}}</tool_call>\n<tool_call>{\"name\": \"g\", \"arguments\": {}}</tool_call>";
        let want = vec![
            Piece::Text("Let me look.".into()),
            Piece::Call {
                index: 0,
                call: Call {
                    name: "f".into(),
                    arguments: "{\"a\":1}".into(),
                },
            },
            Piece::Call {
                index: 1,
                call: Call {
                    name: "g".into(),
                    arguments: "{}".into(),
                },
            },
        ];
        for size in 1..text.len() {
            let chunks: Vec<String> = text
                .as_bytes()
                .chunks(size)
                .map(|c| String::from_utf8(c.to_vec()).unwrap())
                .collect();
            let refs: Vec<&str> = chunks.iter().map(String::as_str).collect();
            assert_eq!(feed(&refs), want, "chunks of {size}");
        }
    }

    #[test]
    fn text_that_only_looks_like_a_call_stays_text() {
        assert_eq!(
            feed(&["a <tool_", "x> b"]),
            vec![Piece::Text("a <tool_x> b".into())]
        );
        assert_eq!(
            feed(&["<tool_call>not json</tool_call>"]),
            vec![Piece::Text("<tool_call>not json</tool_call>".into())]
        );
        assert_eq!(
            feed(&["x<tool_call>{\"name\""]),
            vec![Piece::Text("x<tool_call>{\"name\"".into())]
        );
    }

    #[test]
    fn the_call_schema_hoists_defs() {
        let t = Tool {
            name: "f".into(),
            parameters: Some(json!({
                "type": "object",
                "properties": {"p": {"$ref": "#/$defs/P"}},
                "$defs": {"P": {"type": "integer"}}
            })),
        };
        let s = call_schema(&t);
        assert_eq!(s["$defs"], json!({"P": {"type": "integer"}}));
        assert!(s["properties"]["arguments"].get("$defs").is_none());
        assert_eq!(s["properties"]["name"], json!({"const": "f"}));
    }

    #[test]
    fn a_named_tool_must_exist() {
        let tools = [Tool {
            name: "f".into(),
            parameters: None,
        }];
        assert!(grammar(&tools, &ToolChoice::Named("g".into()), false).is_err());
        assert!(grammar(&[], &ToolChoice::Required, false).is_err());
        let Grammar::Lark(src) = grammar(&tools, &ToolChoice::Auto, true).unwrap() else {
            panic!("not lark");
        };
        assert!(src.contains("head[lazy]") && src.contains("(\"\\n\" call)*"));
    }
}
