//! OpenAI request bodies: lenient about shapes clients really send (content-part arrays, a string or a list for
//! `stop`), strict about fields: a wrong type is a 400 naming the field, an unknown or unsupported one is refused
//! (as OpenAI refuses unrecognised arguments), so a client never silently gets behaviour it did not ask for.
//! Extensions beyond OpenAI's fields: `top_k`, `min_p`, `repeat_penalty` (llama.cpp's samplers), `json_schema` and
//! `grammar` (llama-server's constraints; the grammar in llguidance's Lark syntax) and, on chat,
//! `chat_template_kwargs` and `continue_final_message` (vLLM's).

use crate::error::ApiError;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};

/// Fields both endpoints take.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Common {
    pub model: Option<String>,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<u32>,
    pub min_p: Option<f32>,
    pub repeat_penalty: Option<f32>,
    pub seed: Option<i64>,
    pub stop: Option<Stop>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub n: Option<u32>,
    pub stream: Option<bool>,
    pub stream_options: Option<StreamOptions>,
    /// `{"type": "text" | "json_object" | "json_schema", ...}` (see `structured`).
    pub response_format: Option<Value>,
    /// llama-server's: a JSON Schema the output must follow.
    pub json_schema: Option<Value>,
    /// llama-server's: a grammar the output must follow (llguidance Lark syntax).
    pub grammar: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct StreamOptions {
    pub include_usage: bool,
}

/// `POST /v1/chat/completions`.
#[derive(Debug, Deserialize)]
pub struct ChatBody {
    pub messages: Vec<Message>,
    #[serde(default)]
    pub max_completion_tokens: Option<u32>,
    #[serde(default)]
    pub logprobs: Option<bool>,
    #[serde(default)]
    pub top_logprobs: Option<u32>,
    /// Extra variables for the chat template (vLLM's extension), e.g. Qwen3's `{"enable_thinking": false}`.
    #[serde(default)]
    pub chat_template_kwargs: Option<Map<String, Value>>,
    /// `[{"type": "function", "function": {"name", "description", "parameters"}}]`.
    #[serde(default)]
    pub tools: Option<Vec<Value>>,
    #[serde(default)]
    pub tool_choice: Option<Value>,
    #[serde(default)]
    pub parallel_tool_calls: Option<bool>,
    /// vLLM's: the last message (an assistant's) is the start of the answer, continued rather than closed.
    #[serde(default)]
    pub continue_final_message: Option<bool>,
}

#[derive(Debug, Deserialize)]
pub struct Message {
    pub role: String,
    #[serde(default)]
    pub content: Value,
    /// An assistant's calls: `[{"id", "type": "function", "function": {"name", "arguments": "<json>"}}]`.
    #[serde(default)]
    pub tool_calls: Option<Vec<Value>>,
    /// A `role: "tool"` message's answer to this call.
    #[serde(default)]
    pub tool_call_id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
}

/// `POST /v1/completions`.
#[derive(Debug, Deserialize)]
pub struct CompletionBody {
    pub prompt: Value,
    #[serde(default)]
    pub logprobs: Option<u32>,
}

/// Keys accepted and ignored (they change nothing hearth does). Every other accepted key is a field of [`Common`]
/// or of the endpoint's body type: the list is read from the types ([`fields`]), so adding a field accepts it.
const IGNORED: &[&str] = &["user", "metadata", "store", "service_tier"];

/// OpenAI fields hearth does not implement, refused when set to anything but their neutral value.
const UNSUPPORTED: &[(&str, &str)] = &[
    ("functions", "function calling is not supported (use tools)"),
    (
        "function_call",
        "function calling is not supported (use tool_choice)",
    ),
    ("logit_bias", "logit_bias is not supported"),
    ("echo", "echo is not supported"),
    ("suffix", "suffix is not supported"),
    ("best_of", "best_of > 1 is not supported"),
];

fn neutral(key: &str, v: &Value) -> bool {
    match key {
        "best_of" => v.is_null() || v.as_u64() == Some(1),
        "echo" => v.is_null() || v == &Value::Bool(false),
        "logit_bias" => v.is_null() || v.as_object().is_some_and(Map::is_empty),
        "functions" => v.is_null() || v.as_array().is_some_and(Vec::is_empty),
        "function_call" => v.is_null() || v.as_str() == Some("none"),
        _ => v.is_null(),
    }
}

/// Parses a JSON body once into the common fields and the endpoint's own (`T`): unsupported keys set to anything
/// but their neutral value and keys that are no field of either type are refused, naming the key.
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<(Common, T), ApiError> {
    let keys = accepted::<T>();
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(format!("The body is not valid JSON: {e}"), None))?;
    let Value::Object(obj) = &value else {
        return Err(ApiError::invalid("The body must be a JSON object", None));
    };
    for (k, v) in obj {
        if let Some((_, why)) = UNSUPPORTED.iter().find(|(u, _)| u == k) {
            if !neutral(k, v) {
                return Err(ApiError::invalid(format!("{k}: {why}"), Some(k)));
            }
        } else if !keys.contains(&k.as_str()) {
            return Err(ApiError::invalid(
                format!("Unrecognized request argument supplied: {k}"),
                Some(k),
            ));
        }
    }
    Ok((typed(&value)?, typed(&value)?))
}

/// The keys a body for `T` may carry: the fields of [`Common`] and `T`, and the ignored ones.
pub fn accepted<T: DeserializeOwned>() -> Vec<&'static str> {
    let mut keys = fields::<Common>().to_vec();
    keys.extend(fields::<T>());
    keys.extend(IGNORED);
    keys
}

/// The JSON field names of a struct that derives `Deserialize` (no `flatten`): serde hands them to the
/// deserializer's `deserialize_struct`, which this one records and then refuses.
pub fn fields<T: DeserializeOwned>() -> &'static [&'static str] {
    struct Names(Option<&'static [&'static str]>);
    impl<'de> serde::Deserializer<'de> for &mut Names {
        type Error = serde::de::value::Error;
        fn deserialize_any<V: serde::de::Visitor<'de>>(
            self,
            _: V,
        ) -> Result<V::Value, Self::Error> {
            Err(serde::de::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: serde::de::Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            self.0 = Some(fields);
            Err(serde::de::Error::custom("names recorded"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
            unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
        }
    }
    let mut names = Names(None);
    let _ = T::deserialize(&mut names);
    names.0.unwrap_or(&[])
}

/// Deserializes with the path of the first bad field in the error.
pub(crate) fn typed<T: DeserializeOwned>(v: &Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            ApiError::invalid(format!("Invalid request: {inner}"), None)
        } else {
            ApiError::invalid(format!("Invalid value for '{path}': {inner}"), Some(&path))
        }
    })
}

impl Message {
    /// The text of the message: a string, or the text parts of a content array.
    pub fn text(&self, index: usize) -> Result<String, ApiError> {
        let param = format!("messages[{index}].content");
        match &self.content {
            Value::String(s) => Ok(s.clone()),
            Value::Null => Ok(String::new()),
            Value::Array(parts) => {
                let mut out = String::new();
                for p in parts {
                    match (p.get("type").and_then(Value::as_str), p.get("text")) {
                        (Some("text"), Some(Value::String(t))) => out.push_str(t),
                        (kind, _) => {
                            return Err(ApiError::invalid(
                                format!(
                                    "Only text content parts are supported, got type {:?}",
                                    kind.unwrap_or("(missing)")
                                ),
                                Some(&param),
                            ))
                        }
                    }
                }
                Ok(out)
            }
            _ => Err(ApiError::invalid(
                format!(
                    "Invalid value for '{param}': expected a string or an array of content parts"
                ),
                Some(&param),
            )),
        }
    }
}

/// What a completion prompt is: text, or token ids.
pub enum Prompt {
    Text(String),
    Tokens(Vec<u32>),
}

impl CompletionBody {
    pub fn prompt(&self) -> Result<Prompt, ApiError> {
        let bad = |m: &str| ApiError::invalid(m, Some("prompt"));
        match &self.prompt {
            Value::String(s) => Ok(Prompt::Text(s.clone())),
            Value::Array(a) if a.len() == 1 && a[0].is_string() => {
                Ok(Prompt::Text(a[0].as_str().unwrap_or_default().to_string()))
            }
            Value::Array(a) if !a.is_empty() && a.iter().all(Value::is_u64) => Ok(Prompt::Tokens(
                a.iter()
                    .map(|v| v.as_u64().and_then(|x| u32::try_from(x).ok()))
                    .collect::<Option<_>>()
                    .ok_or_else(|| bad("Token ids must fit in 32 bits"))?,
            )),
            Value::Array(a) if a.len() > 1 => Err(bad(
                "Several prompts in one request are not supported; send one request per prompt",
            )),
            _ => Err(bad("'prompt' must be a string or an array of token ids")),
        }
    }
}

impl Common {
    pub fn stops(&self) -> Vec<String> {
        match &self.stop {
            None => Vec::new(),
            Some(Stop::One(s)) => vec![s.clone()],
            Some(Stop::Many(v)) => v.clone(),
        }
    }

    /// Range checks, as OpenAI documents them.
    pub fn validate(&self) -> Result<(), ApiError> {
        // The engine's one table of sampling ranges (the CLI checks the same).
        let range = |name: &str, v: Option<f32>| match v {
            Some(x) => hearth_engine::sampler::check_setting(name, x).map_err(|e| {
                ApiError::invalid(
                    format!("Invalid '{name}': {x} is outside {}", e.range),
                    Some(name),
                )
            }),
            None => Ok(()),
        };
        range("temperature", self.temperature)?;
        range("top_p", self.top_p)?;
        range("min_p", self.min_p)?;
        range("presence_penalty", self.presence_penalty)?;
        range("frequency_penalty", self.frequency_penalty)?;
        range("repeat_penalty", self.repeat_penalty)?;
        if let Some(n) = self.n {
            if n != 1 {
                return Err(ApiError::invalid(
                    format!("n = {n} is not supported: hearth returns one choice per request; send n requests"),
                    Some("n"),
                ));
            }
        }
        if self.stream_options.is_some() && self.stream != Some(true) {
            return Err(ApiError::invalid(
                "The 'stream_options' parameter is only allowed when 'stream' is true",
                Some("stream_options"),
            ));
        }
        if self.stops().len() > 16 {
            return Err(ApiError::invalid("At most 16 stop sequences", Some("stop")));
        }
        Ok(())
    }
}

/// How many tokens a request may generate: the one place for these rules.
/// - `max_completion_tokens` (chat; OpenAI's newer name) wins over `max_tokens`; the one given must be at least 1.
/// - Neither given: 16 for completions (OpenAI's documented default), the rest of the context for chat (OpenAI's
///   chat has no limit but the context).
/// - The prompt plus this must fit the context: the engine checks that when the request is submitted, and its
///   refusal becomes [`ApiError::context_overflow`] (one check, one message).
pub fn max_tokens(
    max_tokens: Option<u32>,
    max_completion_tokens: Option<u32>,
    default: MaxDefault,
) -> Result<MaxTokens, ApiError> {
    let asked = match (max_completion_tokens, max_tokens) {
        (Some(n), _) => Some(("max_completion_tokens", n)),
        (None, Some(n)) => Some(("max_tokens", n)),
        (None, None) => None,
    };
    match (asked, default) {
        (Some((name, 0)), _) => Err(ApiError::invalid(
            format!("'{name}' must be at least 1"),
            Some(name),
        )),
        (Some((_, n)), _) => Ok(MaxTokens::Asked(n as usize)),
        (None, MaxDefault::Sixteen) => Ok(MaxTokens::Asked(16)),
        (None, MaxDefault::RestOfContext) => Ok(MaxTokens::RestOfContext),
    }
}

/// What a request gets when it sets no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxDefault {
    Sixteen,
    RestOfContext,
}

/// A request's limit on generated tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxTokens {
    Asked(usize),
    /// Until the context is full (at least one token).
    RestOfContext,
}

impl MaxTokens {
    pub fn resolve(self, prompt_tokens: usize, n_ctx: usize) -> usize {
        match self {
            MaxTokens::Asked(n) => n,
            MaxTokens::RestOfContext => n_ctx.saturating_sub(prompt_tokens).max(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_keys_are_the_types_fields() {
        let chat = accepted::<ChatBody>();
        let completion = accepted::<CompletionBody>();
        for k in [
            "messages",
            "max_completion_tokens",
            "chat_template_kwargs",
            "stream_options",
        ] {
            assert!(chat.contains(&k), "{k}");
        }
        for k in ["prompt", "logprobs", "temperature", "user"] {
            assert!(completion.contains(&k), "{k}");
        }
        assert!(!completion.contains(&"messages"));
        // A key is either a field or refused as unsupported, never both (a new field must leave UNSUPPORTED).
        for (k, _) in UNSUPPORTED {
            assert!(!chat.contains(k) && !completion.contains(k), "{k}");
        }
        // Every field parses by its name: a body naming each (null) is accepted.
        let mut body = serde_json::Map::new();
        for k in fields::<Common>().iter().chain(fields::<ChatBody>()) {
            body.insert(k.to_string(), Value::Null);
        }
        body.insert("messages".into(), serde_json::json!([]));
        let bytes = Value::Object(body).to_string();
        assert!(parse::<ChatBody>(bytes.as_bytes()).is_ok());
        assert!(parse::<ChatBody>(br#"{"messages": [], "foo": 1}"#).is_err());
    }

    #[test]
    fn max_tokens_rules() {
        use MaxDefault::*;
        assert_eq!(
            max_tokens(None, None, Sixteen).ok(),
            Some(MaxTokens::Asked(16))
        );
        assert_eq!(
            max_tokens(Some(5), Some(7), RestOfContext).ok(),
            Some(MaxTokens::Asked(7))
        );
        assert_eq!(MaxTokens::RestOfContext.resolve(500, 512), 12);
        assert_eq!(MaxTokens::RestOfContext.resolve(600, 512), 1);
        let e = max_tokens(Some(3), Some(0), RestOfContext).unwrap_err();
        assert_eq!(e.body()["error"]["param"], "max_completion_tokens");
        let e = max_tokens(Some(0), None, Sixteen).unwrap_err();
        assert_eq!(e.body()["error"]["param"], "max_tokens");
    }
}
