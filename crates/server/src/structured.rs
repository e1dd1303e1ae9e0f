//! Structured output on the API: `response_format` (`json_object`, `json_schema`), llama-server's `json_schema`
//! and `grammar` fields, and `tools` / `tool_choice` / `parallel_tool_calls`, turned into one grammar compiled off
//! the engine thread (a grammar that does not compile is a 400 naming the field and the cause); plus the tool
//! history of a conversation for templates that know nothing of tools.

use crate::api::{ChatBody, Common, Message};
use crate::error::ApiError;
use crate::Lease;
use hearth_constraint::tools::{self, Tool, ToolChoice};
use hearth_constraint::{ConstraintError, Grammar};
use hearth_engine::batch::Constraint;
use hearth_text::ChatMessage;
use serde_json::{json, Value};
use std::time::Duration;

/// How long a grammar may take to compile before the request is refused.
const COMPILE_DEADLINE: Duration = Duration::from_secs(10);

/// The tools a chat request offers and how the model may use them.
#[derive(Debug, Clone)]
pub struct ToolUse {
    pub tools: Vec<Tool>,
    pub choice: ToolChoice,
    pub parallel: bool,
}

/// What a request constrains: a grammar (and the field it came from), and whether the answer is read for calls.
#[derive(Debug, Default)]
pub struct Structured {
    pub grammar: Option<(Grammar, String)>,
    pub tools: Option<ToolUse>,
}

/// The constraint fields of either endpoint (`chat` holds the chat-only ones). At most one of them may constrain.
pub fn parse(common: &Common, chat: Option<&ChatBody>) -> Result<Structured, ApiError> {
    let mut out = Structured::default();
    let set = |g: Grammar, param: &str, out: &mut Structured| -> Result<(), ApiError> {
        if let Some((_, other)) = &out.grammar {
            return Err(ApiError::invalid(
                format!("'{param}' and '{other}' both constrain the output; send one"),
                Some(param),
            ));
        }
        out.grammar = Some((g, param.to_string()));
        Ok(())
    };
    if let Some(rf) = common.response_format.as_ref().filter(|v| !v.is_null()) {
        if let Some(g) = response_format(rf)? {
            set(g, "response_format", &mut out)?;
        }
    }
    if let Some(schema) = common.json_schema.as_ref().filter(|v| !v.is_null()) {
        set(Grammar::JsonSchema(schema.clone()), "json_schema", &mut out)?;
    }
    if let Some(src) = &common.grammar {
        set(Grammar::Lark(src.clone()), "grammar", &mut out)?;
    }
    if let Some(use_) = chat.map(tool_use).transpose()?.flatten() {
        let g = tools::grammar(&use_.tools, &use_.choice, use_.parallel)
            .map_err(|e| ApiError::invalid(e.to_string(), Some("tool_choice")))?;
        set(g, "tools", &mut out)?;
        out.tools = Some(use_);
    }
    Ok(out)
}

fn response_format(rf: &Value) -> Result<Option<Grammar>, ApiError> {
    let bad = |m: &str| ApiError::invalid(m, Some("response_format"));
    let kind = rf
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("'response_format' must be an object with a 'type'"))?;
    match kind {
        "text" => Ok(None),
        // llama-server also takes a schema here.
        "json_object" => Ok(Some(match rf.get("schema") {
            Some(s) if !s.is_null() => Grammar::JsonSchema(s.clone()),
            _ => Grammar::JsonObject,
        })),
        "json_schema" => {
            let schema = rf
                .get("json_schema")
                .and_then(|j| j.get("schema"))
                .or_else(|| rf.get("schema"))
                .filter(|s| !s.is_null())
                .ok_or_else(|| bad("'response_format.json_schema.schema' is required"))?;
            Ok(Some(Grammar::JsonSchema(schema.clone())))
        }
        other => Err(bad(&format!(
            "response_format type {other:?} is not one of \"text\", \"json_object\", \"json_schema\""
        ))),
    }
}

/// `tools`, `tool_choice` and `parallel_tool_calls`; None when no tool may be called.
fn tool_use(body: &ChatBody) -> Result<Option<ToolUse>, ApiError> {
    let defs = body.tools.as_deref().unwrap_or_default();
    let mut tools = Vec::with_capacity(defs.len());
    for (i, t) in defs.iter().enumerate() {
        let param = format!("tools[{i}]");
        let f = t
            .get("function")
            .filter(|_| t.get("type").and_then(Value::as_str).unwrap_or("function") == "function")
            .ok_or_else(|| {
                ApiError::invalid(
                    format!("{param} must be {{\"type\": \"function\", \"function\": {{…}}}}"),
                    Some("tools"),
                )
            })?;
        let name = f
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                ApiError::invalid(format!("{param}.function.name is required"), Some("tools"))
            })?;
        let parameters = match f.get("parameters") {
            None | Some(Value::Null) => None,
            Some(p @ Value::Object(_)) => Some(p.clone()),
            Some(_) => {
                return Err(ApiError::invalid(
                    format!("{param}.function.parameters must be a JSON Schema object"),
                    Some("tools"),
                ))
            }
        };
        tools.push(Tool {
            name: name.to_string(),
            parameters,
        });
    }
    let choice = match &body.tool_choice {
        None | Some(Value::Null) => ToolChoice::Auto,
        Some(Value::String(s)) => match s.as_str() {
            "auto" => ToolChoice::Auto,
            "required" => ToolChoice::Required,
            "none" => return Ok(None),
            other => {
                return Err(ApiError::invalid(
                    format!("tool_choice {other:?} is not \"auto\", \"none\", \"required\" or a function"),
                    Some("tool_choice"),
                ))
            }
        },
        Some(v) => match v.get("function").and_then(|f| f.get("name")).and_then(Value::as_str) {
            Some(name) => ToolChoice::Named(name.to_string()),
            None => {
                return Err(ApiError::invalid(
                    "tool_choice must be a string or {\"type\": \"function\", \"function\": {\"name\": …}}",
                    Some("tool_choice"),
                ))
            }
        },
    };
    if tools.is_empty() {
        return match choice {
            ToolChoice::Auto => Ok(None),
            _ => Err(ApiError::invalid(
                "tool_choice needs 'tools'",
                Some("tool_choice"),
            )),
        };
    }
    if let ToolChoice::Named(n) = &choice {
        if !tools.iter().any(|t| &t.name == n) {
            return Err(ApiError::invalid(
                format!("tool_choice names {n:?}, which is not in 'tools'"),
                Some("tool_choice"),
            ));
        }
    }
    Ok(Some(ToolUse {
        tools,
        choice,
        parallel: body.parallel_tool_calls.unwrap_or(true),
    }))
}

/// Compiles `grammar` on a blocking thread (never on the engine's), within [`COMPILE_DEADLINE`].
pub async fn compile(
    served: &Lease,
    grammar: Grammar,
    param: &str,
) -> Result<Box<dyn Constraint>, ApiError> {
    let st = served.clone();
    let r = tokio::task::spawn_blocking(move || -> Result<_, ConstraintError> {
        let guide = st.guide().map_err(ConstraintError::Vocab)?;
        guide.compile_bounded(grammar, COMPILE_DEADLINE)
    })
    .await
    .map_err(|e| ApiError::internal(format!("compiling the grammar: {e}")))?;
    match r {
        Ok(c) => Ok(Box::new(c)),
        Err(e @ ConstraintError::Vocab(_)) => Err(ApiError::internal(e.to_string())),
        Err(e) => Err(ApiError::invalid(format!("'{param}': {e}"), Some(param))),
    }
}

/// The conversation as plain messages for a template that knows nothing of tools: the tool list (and the call
/// format) goes into the system message, an assistant's calls become `<tool_call>…</tool_call>` text, and tool
/// results become user messages wrapped in `<tool_response>` (consecutive ones merged, so roles still alternate).
pub fn plain_messages(
    messages: &[Message],
    tools: Option<&ToolUse>,
    texts: Vec<String>,
) -> Vec<ChatMessage> {
    let mut out: Vec<ChatMessage> = Vec::with_capacity(messages.len() + 1);
    if let Some(t) = tools {
        let list: Vec<Value> = t
            .tools
            .iter()
            .map(|t| json!({"name": t.name, "parameters": t.parameters.clone().unwrap_or(json!({"type": "object"}))}))
            .collect();
        let intro = format!(
            "You can call these functions:\n{}\nTo call one, answer with {}{{\"name\": <function name>, \"arguments\": <arguments object>}}{}.",
            Value::Array(list),
            tools::OPEN,
            tools::CLOSE
        );
        match messages
            .first()
            .filter(|m| m.role == "system" || m.role == "developer")
        {
            Some(_) => out.push(ChatMessage::new(
                "system",
                format!("{}\n\n{intro}", texts[0]),
            )),
            None => out.push(ChatMessage::new("system", intro)),
        }
    }
    for (i, (m, text)) in messages.iter().zip(texts).enumerate() {
        if i == 0 && tools.is_some() && (m.role == "system" || m.role == "developer") {
            continue;
        }
        let role = match m.role.as_str() {
            "developer" => "system",
            "tool" => "user",
            r => r,
        };
        let mut content = text;
        if m.role == "tool" {
            content = format!("<tool_response>\n{content}\n</tool_response>");
        }
        for call in m.tool_calls.iter().flatten() {
            let f = &call["function"];
            let args = f["arguments"]
                .as_str()
                .and_then(|s| serde_json::from_str::<Value>(s).ok())
                .unwrap_or_else(|| f["arguments"].clone());
            let body = json!({"name": f["name"], "arguments": args});
            if !content.is_empty() {
                content.push('\n');
            }
            content.push_str(&format!("{}{body}{}", tools::OPEN, tools::CLOSE));
        }
        match out.last_mut() {
            Some(prev)
                if m.role == "tool"
                    && prev.role == "user"
                    && prev.content.ends_with("</tool_response>") =>
            {
                prev.content.push('\n');
                prev.content.push_str(&content);
            }
            _ => out.push(ChatMessage::new(role, content)),
        }
    }
    out
}

/// The conversation as the template's own tool support reads it (`tool_calls` with `arguments` as an object, as
/// Hugging Face templates expect), with the text of each message.
pub fn tool_messages(messages: &[Message], texts: Vec<String>) -> Value {
    Value::Array(
        messages
            .iter()
            .zip(texts)
            .map(|(m, text)| {
                let role = if m.role == "developer" {
                    "system"
                } else {
                    m.role.as_str()
                };
                let mut v = json!({"role": role, "content": text});
                if let Some(calls) = &m.tool_calls {
                    let calls: Vec<Value> = calls
                        .iter()
                        .map(|c| {
                            let mut c = c.clone();
                            if let Some(a) = c["function"]["arguments"].as_str() {
                                if let Ok(obj) = serde_json::from_str::<Value>(a) {
                                    c["function"]["arguments"] = obj;
                                }
                            }
                            c
                        })
                        .collect();
                    v["tool_calls"] = Value::Array(calls);
                }
                if let Some(id) = &m.tool_call_id {
                    v["tool_call_id"] = json!(id);
                }
                if let Some(n) = &m.name {
                    v["name"] = json!(n);
                }
                v
            })
            .collect(),
    )
}
