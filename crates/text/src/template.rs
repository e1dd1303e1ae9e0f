//! [`ChatTemplate`]: renders a conversation into the prompt text a model was trained on.
//!
//! The GGUF file's `tokenizer.chat_template` (Jinja) runs on minijinja set up the way HF transformers runs
//! templates: `trim_blocks` and `lstrip_blocks`, loop controls, Python string/dict methods, `raise_exception`,
//! `strftime_now`, and a `tojson` that formats like Python's `json.dumps`. A template is untrusted input, so
//! rendering runs on a fuel budget and stops with an error instead of looping forever.
//!
//! A file without a template gets its family's known turn format (by `general.architecture`); an unknown family
//! is an error rather than a guess.

use crate::error::{Result, TextError};
use crate::pyjson::{self, DumpOptions};
use crate::Tokenizer;
use hearth_gguf::Gguf;
use minijinja::syntax::SyntaxConfig;
use minijinja::value::Kwargs;
use minijinja::{Environment, Error, ErrorKind, Value};
use serde::{Deserialize, Serialize};

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> ChatMessage {
        ChatMessage {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// Instructions one render may execute. DeepSeek-R1's template renders 202 messages with under 30,000; this
/// leaves a large margin and stops a hostile or broken template within about a second.
pub const DEFAULT_FUEL: u64 = 2_000_000;

/// The largest template source accepted. Real templates are a few kilobytes (the longest we know, with tool-call
/// formats, under 64 KiB); a 16 MB one took 12.8 s to tokenize before "context is full" was reported.
pub const MAX_TEMPLATE_BYTES: usize = 1 << 20;

/// The most text one render may produce: twice the server's 2 MB request limit, so any conversation a client can
/// send fits, while a template that loops on its output stops here instead of filling memory.
pub const MAX_RENDERED_BYTES: usize = 4 << 20;

/// ChatML (`<|im_start|>role\n…<|im_end|>\n`): SmolLM, Qwen.
const CHATML: &str = "{%- for message in messages -%}\
{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' -}}\
{%- endfor -%}\
{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}";

/// Gemma: `<start_of_turn>user\n…<end_of_turn>\n`, the assistant is `model`, there is no system turn: system text
/// (trimmed) goes in front of the next user turn, separated by a blank line. Message contents are trimmed.
const GEMMA: &str = "{%- set ns = namespace(system='') -%}\
{%- for message in messages -%}\
{%- if message['role'] == 'system' -%}\
{%- set ns.system = ns.system + message['content'] | trim -%}\
{%- else -%}\
{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}\
{{- '<start_of_turn>' + role + '\\n' -}}\
{%- if ns.system and role != 'model' -%}{{- ns.system + '\\n\\n' -}}{%- set ns.system = '' -%}{%- endif -%}\
{{- message['content'] | trim + '<end_of_turn>\\n' -}}\
{%- endif -%}\
{%- endfor -%}\
{%- if add_generation_prompt -%}{{- '<start_of_turn>model\\n' -}}{%- endif -%}";

/// Where a template came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateSource {
    /// `tokenizer.chat_template` in the file.
    File,
    /// hearth's built-in turn format for the architecture.
    BuiltIn,
}

/// A compiled chat template with the vocabulary's BOS/EOS texts.
pub struct ChatTemplate {
    env: Environment<'static>,
    source: TemplateSource,
    bos_token: String,
    eos_token: String,
    /// Strip a leading BOS text from the output: the tokenizer adds BOS itself.
    strip_bos: bool,
    /// Whether the template reads `tools` and renders `tool_calls` (Qwen2.5/Qwen3, Llama 3).
    knows_tools: bool,
}

impl ChatTemplate {
    /// The file's template, or the built-in format of its architecture.
    pub fn from_gguf(g: &Gguf) -> Result<ChatTemplate> {
        let tok_text = |key: &str| -> Result<String> {
            let Some(id) = g.get_uint(key)? else {
                return Ok(String::new());
            };
            let toks = g.get_array("tokenizer.ggml.tokens")?;
            Ok(toks
                .and_then(|a| a.strs())
                .and_then(|s| s.get(id as usize).map(|t| t.to_string()))
                .unwrap_or_default())
        };
        let bos = tok_text("tokenizer.ggml.bos_token_id")?;
        let eos = tok_text("tokenizer.ggml.eos_token_id")?;
        let add_bos = g
            .get_bool("tokenizer.ggml.add_bos_token")?
            .unwrap_or(g.get_str("tokenizer.ggml.model")? == Some("llama"));
        let (source, kind) = match g.get_str("tokenizer.chat_template")? {
            Some(t) => (t.to_string(), TemplateSource::File),
            None => {
                let arch = g.architecture()?;
                (builtin_for(arch)?.to_string(), TemplateSource::BuiltIn)
            }
        };
        let mut t = ChatTemplate::new(&source, &bos, &eos)?;
        t.source = kind;
        t.strip_bos = add_bos;
        Ok(t)
    }

    /// Like [`ChatTemplate::from_gguf`], with BOS/EOS texts and the BOS rule taken from a built tokenizer.
    pub fn from_gguf_with(g: &Gguf, tok: &Tokenizer) -> Result<ChatTemplate> {
        let mut t = ChatTemplate::from_gguf(g)?;
        let text = |id: Option<u32>| {
            id.and_then(|i| tok.token_text(i))
                .unwrap_or_default()
                .to_string()
        };
        t.bos_token = text(tok.bos());
        t.eos_token = text(tok.eos());
        t.strip_bos = tok.adds_bos();
        Ok(t)
    }

    /// Compiles `source`; `bos_token` and `eos_token` are the values the template sees. The output is returned
    /// as rendered (no BOS stripping).
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<ChatTemplate> {
        if source.len() > MAX_TEMPLATE_BYTES {
            return Err(TextError::Template(format!(
                "the template is {} bytes; at most {MAX_TEMPLATE_BYTES} are accepted",
                source.len()
            )));
        }
        let mut env = Environment::new();
        let syntax = SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()?;
        env.set_syntax(syntax);
        env.set_fuel(Some(DEFAULT_FUEL));
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_filter("tojson", tojson);
        env.add_template_owned("chat", source.to_string())?;
        Ok(ChatTemplate {
            env,
            source: TemplateSource::File,
            bos_token: bos_token.to_string(),
            eos_token: eos_token.to_string(),
            strip_bos: false,
            knows_tools: source.contains("tools") && source.contains("tool_calls"),
        })
    }

    /// Sets the fuel budget of one render (`None`: unlimited, only for trusted templates).
    pub fn set_fuel(&mut self, fuel: Option<u64>) {
        self.env.set_fuel(fuel);
    }

    pub fn source(&self) -> TemplateSource {
        self.source
    }

    /// Whether the template itself renders a `tools` list and assistant `tool_calls` (otherwise a caller has to
    /// describe tools and calls in plain messages).
    pub fn knows_tools(&self) -> bool {
        self.knows_tools
    }

    /// Renders `messages`; `add_generation_prompt` appends the header of the assistant's turn.
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        self.render_values(
            Value::from(minijinja::value::Serde(messages)),
            add_generation_prompt,
            Vec::new(),
        )
    }

    /// Renders arbitrary messages (content parts, tool calls: any JSON the template reads) with extra variables
    /// (`tools`, `enable_thinking`, …) next to `messages`, `add_generation_prompt`, `bos_token` and `eos_token`.
    pub fn render_with<M: serde::Serialize + ?Sized>(
        &self,
        messages: &M,
        add_generation_prompt: bool,
        extra: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<String> {
        let extra = extra
            .iter()
            .map(|(k, v)| (k.as_str(), Value::from(minijinja::value::Serde(v))))
            .collect();
        self.render_values(
            Value::from(minijinja::value::Serde(messages)),
            add_generation_prompt,
            extra,
        )
    }

    fn render_values(
        &self,
        messages: Value,
        add_generation_prompt: bool,
        extra: Vec<(&str, Value)>,
    ) -> Result<String> {
        let tmpl = self.env.get_template("chat")?;
        let mut ctx: Vec<(&str, Value)> = vec![
            ("messages", messages),
            ("add_generation_prompt", Value::from(add_generation_prompt)),
            ("bos_token", Value::from(self.bos_token.as_str())),
            ("eos_token", Value::from(self.eos_token.as_str())),
        ];
        ctx.extend(extra);
        let ctx = Value::from_pairs(ctx);
        let mut out = Bounded {
            buf: Vec::new(),
            full: false,
        };
        // A template is a program from the file: should it reach a formatting path of minijinja that panics (our
        // patched minijinja bounds the text of one value, and a few of its `to_string` calls panic past that bound
        // instead of failing), the render fails, not the process or the server's thread.
        let rendered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            tmpl.render_captured_to(ctx, &mut out).map(drop)
        }))
        .map_err(|_| {
            TextError::Template(
                "the template failed: a value is too large to turn into text".into(),
            )
        })?;
        if out.full {
            return Err(TextError::Template(format!(
                "the rendered prompt exceeds {MAX_RENDERED_BYTES} bytes"
            )));
        }
        rendered?;
        // Templates write whole strings, so the bytes are UTF-8 unless a cut fell inside a character.
        let out = String::from_utf8(out.buf)
            .map_err(|_| TextError::Template("the rendered prompt is not UTF-8".into()))?;
        Ok(match out.strip_prefix(self.bos_token.as_str()) {
            Some(rest) if self.strip_bos && !self.bos_token.is_empty() => rest.to_string(),
            _ => out,
        })
    }
}

/// The render's output, refusing to grow past [`MAX_RENDERED_BYTES`].
struct Bounded {
    buf: Vec<u8>,
    full: bool,
}

impl std::io::Write for Bounded {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + b.len() > MAX_RENDERED_BYTES {
            self.full = true;
            return Err(std::io::Error::other("the rendered prompt is too long"));
        }
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn builtin_for(arch: &str) -> Result<&'static str> {
    match arch {
        "gemma3" | "gemma2" | "gemma" => Ok(GEMMA),
        "llama" | "qwen2" | "qwen3" | "qwen3moe" => Ok(CHATML),
        _ => Err(TextError::NoChatTemplate {
            arch: arch.to_string(),
        }),
    }
}

fn raise_exception(msg: String) -> std::result::Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, msg))
}

fn tojson(value: Value, kwargs: Kwargs) -> std::result::Result<Value, Error> {
    let indent: Option<Value> = kwargs.get("indent")?;
    let indent = match indent {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => match v.as_i64() {
            Some(n) => Some(" ".repeat(n.clamp(0, 64) as usize)),
            None => Some(v.to_string()),
        },
    };
    let mut opts = DumpOptions::new(indent);
    if let Some(a) = kwargs.get::<Option<bool>>("ensure_ascii")? {
        opts.ensure_ascii = a;
    }
    if let Some(s) = kwargs.get::<Option<bool>>("sort_keys")? {
        opts.sort_keys = s;
    }
    if let Some(seps) = kwargs.get::<Option<Value>>("separators")? {
        if !seps.is_none() {
            let items: Vec<Value> = seps.try_iter()?.collect();
            if let [a, b] = items.as_slice() {
                opts.item_sep = a.as_str().unwrap_or(",").to_string();
                opts.key_sep = b.as_str().unwrap_or(":").to_string();
            }
        }
    }
    kwargs.assert_all_used()?;
    // Bounded by the prompt limit: JSON longer than the whole rendered prompt may be cannot be used.
    Ok(Value::from_safe_string(pyjson::dumps(
        &value,
        &opts,
        MAX_RENDERED_BYTES,
    )?))
}

/// `strftime_now(format)`: the current UTC time, formatted with the common strftime codes.
fn strftime_now(format: String) -> std::result::Result<String, Error> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    Ok(strftime(&format, secs))
}

/// Formats the UTC time `unix` seconds after the epoch.
pub(crate) fn strftime(format: &str, unix: i64) -> String {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    const DAYS: [&str; 7] = [
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
    ];
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let weekday = (days + 3).rem_euclid(7) as usize; // 1970-01-01 was a Thursday
    let (hh, mm, ss) = (secs / 3600, secs / 60 % 60, secs % 60);
    let yday = days - days_from_civil(y, 1, 1) + 1;
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('Y') => out.push_str(&y.to_string()),
            Some('y') => out.push_str(&format!("{:02}", y.rem_euclid(100))),
            Some('m') => out.push_str(&format!("{m:02}")),
            Some('d') => out.push_str(&format!("{d:02}")),
            Some('e') => out.push_str(&format!("{d:2}")),
            Some('B') => out.push_str(MONTHS[(m - 1) as usize]),
            Some('b') | Some('h') => out.push_str(&MONTHS[(m - 1) as usize][..3]),
            Some('A') => out.push_str(DAYS[weekday]),
            Some('a') => out.push_str(&DAYS[weekday][..3]),
            Some('H') => out.push_str(&format!("{hh:02}")),
            Some('I') => out.push_str(&format!("{:02}", (hh + 11) % 12 + 1)),
            Some('p') => out.push_str(if hh < 12 { "AM" } else { "PM" }),
            Some('M') => out.push_str(&format!("{mm:02}")),
            Some('S') => out.push_str(&format!("{ss:02}")),
            Some('j') => out.push_str(&format!("{yday:03}")),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

/// Days since 1970-01-01 → (year, month 1..=12, day 1..=31), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// (year, month, day) → days since 1970-01-01.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        // 2024-07-26 12:34:56 UTC = 1721997296 (`date -u -d @1721997296`).
        assert_eq!(
            strftime("%d %b %Y %H:%M:%S %A %j %B %y %I%p", 1_721_997_296),
            "26 Jul 2024 12:34:56 Friday 208 July 24 12PM"
        );
        assert_eq!(strftime("%Y-%m-%d", 0), "1970-01-01");
        assert_eq!(strftime("%Y-%m-%d %a", 951_782_400), "2000-02-29 Tue");
    }
}
