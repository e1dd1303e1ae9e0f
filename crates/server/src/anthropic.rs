//! Anthropic's Messages API, `POST /v1/messages` and `POST /v1/messages/count_tokens`, as a thin translation:
//! the request becomes the OpenAI chat request ([`crate::api::ChatBody`]: the system prompt, content blocks as
//! text parts, `tool_use` blocks as tool calls, `tool_result` blocks as tool messages, `tools`/`tool_choice`,
//! `thinking` as the template's `enable_thinking`) and runs through the same job builder, engine and text stream.
//! The answer comes back as content blocks (`thinking`, `text`, `tool_use`), streamed as Anthropic's named SSE
//! events in its order: `message_start`, `ping`, then per block `content_block_start`, `content_block_delta`
//! (`thinking_delta`, `text_delta`, `input_json_delta`), `content_block_stop`, and `message_delta` (stop reason,
//! usage), `message_stop`. Errors are Anthropic's `{"type": "error", "error": {…}}` ([`crate::dialect`]).

use crate::answer::{self, Part};
use crate::api::{self, ChatBody, Common, Message, Stop};
use crate::completions::{self, fresh_seed, Job};
use crate::dialect;
use crate::error::ApiError;
use crate::render::End;
use crate::{served, AppState, Lease};
use axum::body::Bytes;
use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hearth_constraint::tools::Call;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;

/// `POST /v1/messages` (and, without `max_tokens`, `count_tokens`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MessagesRequest {
    model: String,
    #[serde(default)]
    max_tokens: Option<u32>,
    messages: Vec<AnthropicMessage>,
    #[serde(default)]
    system: Option<Value>,
    #[serde(default)]
    stop_sequences: Option<Vec<String>>,
    #[serde(default)]
    temperature: Option<f32>,
    #[serde(default)]
    top_p: Option<f32>,
    #[serde(default)]
    top_k: Option<u32>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    tools: Option<Vec<Value>>,
    #[serde(default)]
    tool_choice: Option<Value>,
    #[serde(default)]
    thinking: Option<Value>,
    /// `{"effort", "format": {"type": "json_schema", "schema"}}`: the schema constrains the answer; the effort
    /// changes nothing.
    #[serde(default)]
    output_config: Option<Value>,
    #[serde(default)]
    container: Option<Value>,
    /// About Anthropic's service (the user, the capacity, the region, speed, prompt caching, cache diagnostics):
    /// nothing hearth uses.
    #[serde(default)]
    #[allow(dead_code)]
    metadata: Option<Value>,
    #[serde(default)]
    #[allow(dead_code)]
    service_tier: Option<Value>,
    #[serde(default)]
    #[allow(dead_code)]
    inference_geo: Option<Value>,
    #[serde(default)]
    #[allow(dead_code)]
    speed: Option<Value>,
    #[serde(default)]
    #[allow(dead_code)]
    cache_control: Option<Value>,
    #[serde(default)]
    #[allow(dead_code)]
    diagnostics: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AnthropicMessage {
    role: String,
    content: Value,
}

pub async fn messages(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    let t0 = Instant::now();
    let mut max_tokens = None;
    let prepared = async {
        let req: MessagesRequest = parse(&body)?;
        if req.max_tokens.is_none() {
            return Err(ApiError::invalid(
                "max_tokens: Field required",
                Some("max_tokens"),
            ));
        }
        let model = served::model(&state, &req.model, None).await?;
        let name = req.model.clone();
        let stream = req.stream.unwrap_or(false);
        max_tokens = req.max_tokens;
        let job = job(&model, req)?;
        Ok((state.clone(), job, name, stream))
    }
    .await;
    let (model, mut job, name, stream) = match prepared {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let id = format!("msg_{:016x}{:08x}", fresh_seed(), fresh_seed() as u32);
    if max_tokens == Some(0) {
        return nothing_generated(&id, &name, job.prompt.len(), stream);
    }
    let mut rx = match answer::start(&model, &mut job).await {
        Ok(rx) => rx,
        Err(e) => return e.into_response(),
    };
    if !stream {
        return match answer::collect(&model, &job, &mut rx, t0).await {
            Ok((parts, end)) => {
                let content: Vec<Value> = parts.iter().filter_map(block).collect();
                let mut m = message(&id, &name, Value::Array(content));
                let (reason, seq) = stop_reason(&end);
                m["stop_reason"] = json!(reason);
                m["stop_sequence"] = json!(seq);
                m["usage"] = usage(&end);
                Json(m).into_response()
            }
            Err(e) => e.into_response(),
        };
    }
    let (tx, out) = mpsc::unbounded_channel::<Result<SseEvent, Infallible>>();
    tokio::spawn(async move {
        let send = |name: &str, v: Value| {
            tx.send(Ok(SseEvent::default().event(name).data(v.to_string())))
                .is_ok()
        };
        let mut start = message(&id, &name, json!([]));
        start["usage"] = json!({"input_tokens": job.prompt.len(), "output_tokens": 0});
        if !send(
            "message_start",
            json!({"type": "message_start", "message": start}),
        ) || !send("ping", json!({"type": "ping"}))
        {
            return;
        }
        let mut blocks = Blocks::default();
        let drive = answer::drive(&model, &job, &mut rx, t0, |p| blocks.push(p, &send));
        let result = tokio::select! {
            r = drive => r,
            _ = tx.closed() => return,
        };
        match result {
            Ok(end) => {
                blocks.close(&send);
                let (reason, seq) = stop_reason(&end);
                send(
                    "message_delta",
                    json!({"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": seq},
                           "usage": usage(&end)}),
                );
                send("message_stop", json!({"type": "message_stop"}));
            }
            Err(e) => {
                send("error", dialect::anthropic_body(e.status, &e.message));
            }
        }
    });
    Sse::new(tokio_stream::wrappers::UnboundedReceiverStream::new(out))
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// The answer to `max_tokens: 0`: no content, `max_tokens` reached at once.
fn nothing_generated(id: &str, name: &str, prompt_tokens: usize, stream: bool) -> Response {
    let usage = json!({"input_tokens": prompt_tokens, "cache_read_input_tokens": 0,
                       "cache_creation_input_tokens": 0, "output_tokens": 0});
    if !stream {
        let mut m = message(id, name, json!([]));
        m["stop_reason"] = json!("max_tokens");
        m["usage"] = usage;
        return Json(m).into_response();
    }
    let mut start = message(id, name, json!([]));
    start["usage"] = json!({"input_tokens": prompt_tokens, "output_tokens": 0});
    let events = [
        (
            "message_start",
            json!({"type": "message_start", "message": start}),
        ),
        (
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": "max_tokens", "stop_sequence": null},
                   "usage": usage}),
        ),
        ("message_stop", json!({"type": "message_stop"})),
    ];
    let events =
        events.map(|(n, v)| Ok::<_, Infallible>(SseEvent::default().event(n).data(v.to_string())));
    Sse::new(futures_util::stream::iter(events)).into_response()
}

pub async fn count_tokens(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    let result = async {
        let req: MessagesRequest = parse(&body)?;
        if req.stream.is_some() {
            return Err(ApiError::invalid(
                "stream: Extra inputs are not permitted",
                Some("stream"),
            ));
        }
        let model = served::model(&state, &req.model, None).await?;
        let job = job(&model, req)?;
        Ok(Json(json!({"input_tokens": job.prompt.len()})).into_response())
    }
    .await;
    result.unwrap_or_else(ApiError::into_response)
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(format!("The body is not valid JSON: {e}"), None))?;
    if !value.is_object() {
        return Err(ApiError::invalid("The body must be a JSON object", None));
    }
    api::typed(&value)
}

/// The request as the chat job every API shares.
fn job(model: &Lease, req: MessagesRequest) -> Result<Job, ApiError> {
    if req.container.as_ref().is_some_and(|c| !c.is_null()) {
        return Err(ApiError::invalid(
            "container: code execution containers are not supported",
            Some("container"),
        ));
    }
    let mut common = Common {
        // 0 warms Anthropic's prompt cache without an answer: no tokens are generated then (see `messages`).
        max_tokens: req.max_tokens.filter(|&n| n > 0),
        temperature: req.temperature,
        top_p: req.top_p,
        top_k: req.top_k,
        stop: req.stop_sequences.map(Stop::Many),
        ..Common::default()
    };
    if let Some(oc) = req.output_config.as_ref().filter(|v| !v.is_null()) {
        match oc.get("format").filter(|f| !f.is_null()) {
            Some(f) if f["type"] == "json_schema" && f["schema"].is_object() => {
                common.json_schema = Some(f["schema"].clone());
            }
            Some(_) => {
                return Err(ApiError::invalid(
                    "output_config.format: expected {\"type\": \"json_schema\", \"schema\": {…}}",
                    Some("output_config"),
                ))
            }
            None => {}
        }
    }
    let mut messages = Vec::with_capacity(req.messages.len() + 1);
    if let Some(system) = req.system.filter(|s| !s.is_null()) {
        messages.push(plain("system", text_parts(&system, "system")?));
    }
    for (i, m) in req.messages.iter().enumerate() {
        translate(i, m, &mut messages)?;
    }
    // A final assistant message is the start of the answer (Anthropic's prefill).
    let prefill = messages.len() > 1
        && messages
            .last()
            .is_some_and(|m| m.role == "assistant" && m.tool_calls.is_none());
    let (tools, tool_choice, parallel) = tools(req.tools, req.tool_choice)?;
    let mut kwargs = Map::new();
    kwargs.insert(
        "enable_thinking".into(),
        Value::Bool(thinking(req.thinking.as_ref())?),
    );
    let body = ChatBody {
        messages,
        max_completion_tokens: None,
        logprobs: None,
        top_logprobs: None,
        chat_template_kwargs: Some(kwargs),
        tools,
        tool_choice,
        parallel_tool_calls: parallel,
        continue_final_message: Some(prefill),
    };
    completions::chat_job(model, common, body)
}

fn plain(role: &str, content: Value) -> Message {
    Message {
        role: role.into(),
        content,
        tool_calls: None,
        tool_call_id: None,
        name: None,
    }
}

/// A string, or text blocks, as the OpenAI content (a string or text parts).
fn text_parts(v: &Value, param: &str) -> Result<Value, ApiError> {
    match v {
        Value::String(_) => Ok(v.clone()),
        Value::Array(blocks) => blocks
            .iter()
            .map(|b| match (b["type"].as_str(), &b["text"]) {
                (Some("text"), Value::String(t)) => Ok(json!({"type": "text", "text": t})),
                (kind, _) => Err(unsupported_block(kind, param)),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        _ => Err(ApiError::invalid(
            format!("{param}: expected a string or a list of content blocks"),
            Some(param),
        )),
    }
}

fn unsupported_block(kind: Option<&str>, param: &str) -> ApiError {
    ApiError::invalid(
        format!(
            "{param}: content blocks of type {:?} are not supported here (hearth runs text models: text, tool_use, \
             tool_result and thinking blocks)",
            kind.unwrap_or("(missing)")
        ),
        Some(param),
    )
}

/// One Anthropic message as chat messages: a user's `tool_result` blocks become tool messages (before its text), an
/// assistant's `tool_use` blocks become its tool calls; earlier thinking is dropped, as the templates drop it.
fn translate(i: usize, m: &AnthropicMessage, out: &mut Vec<Message>) -> Result<(), ApiError> {
    let param = format!("messages.{i}.content");
    if m.role != "user" && m.role != "assistant" {
        return Err(ApiError::invalid(
            format!("messages.{i}.role: Input should be 'user' or 'assistant'"),
            Some("messages"),
        ));
    }
    let blocks = match &m.content {
        Value::String(s) => {
            out.push(plain(&m.role, Value::String(s.clone())));
            return Ok(());
        }
        Value::Array(b) => b,
        _ => {
            return Err(ApiError::invalid(
                format!("{param}: expected a string or a list of content blocks"),
                Some(&param),
            ))
        }
    };
    let mut text = Vec::new();
    let mut calls = Vec::new();
    for b in blocks {
        match b["type"].as_str() {
            Some("text") => {
                text.push(json!({"type": "text", "text": b["text"].as_str().unwrap_or("")}))
            }
            Some("thinking" | "redacted_thinking") if m.role == "assistant" => {}
            Some("tool_use") if m.role == "assistant" => {
                let (Some(id), Some(name)) = (b["id"].as_str(), b["name"].as_str()) else {
                    return Err(ApiError::invalid(
                        format!("{param}: a tool_use block needs 'id' and 'name'"),
                        Some(&param),
                    ));
                };
                let input = if b["input"].is_object() {
                    b["input"].clone()
                } else {
                    json!({})
                };
                calls.push(json!({"id": id, "type": "function", "function": {"name": name, "arguments": input}}));
            }
            Some("tool_result") if m.role == "user" => {
                let Some(id) = b["tool_use_id"].as_str() else {
                    return Err(ApiError::invalid(
                        format!("{param}: a tool_result block needs 'tool_use_id'"),
                        Some(&param),
                    ));
                };
                let content = match &b["content"] {
                    Value::Null => Value::String(String::new()),
                    c => text_parts(c, &param)?,
                };
                out.push(Message {
                    role: "tool".into(),
                    content,
                    tool_calls: None,
                    tool_call_id: Some(id.to_string()),
                    name: None,
                });
            }
            kind => return Err(unsupported_block(kind, &param)),
        }
    }
    if !text.is_empty() || !calls.is_empty() {
        out.push(Message {
            role: m.role.clone(),
            content: Value::Array(text),
            tool_calls: (!calls.is_empty()).then_some(calls),
            tool_call_id: None,
            name: None,
        });
    }
    Ok(())
}

type ToolFields = (Option<Vec<Value>>, Option<Value>, Option<bool>);

/// `tools` (`{name, description, input_schema}`) and `tool_choice` (`auto`, `any`, `tool`, `none`) as OpenAI's.
fn tools(tools: Option<Vec<Value>>, choice: Option<Value>) -> Result<ToolFields, ApiError> {
    let mut out = Vec::new();
    for (i, t) in tools.unwrap_or_default().iter().enumerate() {
        if let Some(kind) = t["type"].as_str().filter(|k| *k != "custom") {
            return Err(ApiError::invalid(
                format!("tools.{i}: server tools ({kind}) are not supported; describe a tool with name and input_schema"),
                Some("tools"),
            ));
        }
        let Some(name) = t["name"].as_str() else {
            return Err(ApiError::invalid(
                format!("tools.{i}.name: Field required"),
                Some("tools"),
            ));
        };
        let mut f = json!({"name": name, "parameters": t.get("input_schema").cloned().unwrap_or(json!({"type": "object"}))});
        if let Some(d) = t["description"].as_str() {
            f["description"] = json!(d);
        }
        out.push(json!({"type": "function", "function": f}));
    }
    let (choice, parallel) = match choice {
        None | Some(Value::Null) => (None, None),
        Some(c) => {
            let parallel = c["disable_parallel_tool_use"].as_bool().map(|d| !d);
            let choice = match c["type"].as_str() {
                Some("auto") => json!("auto"),
                Some("any") => json!("required"),
                Some("none") => json!("none"),
                Some("tool") => match c["name"].as_str() {
                    Some(n) => json!({"type": "function", "function": {"name": n}}),
                    None => {
                        return Err(ApiError::invalid(
                            "tool_choice.name: Field required",
                            Some("tool_choice"),
                        ))
                    }
                },
                _ => {
                    return Err(ApiError::invalid(
                        "tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'",
                        Some("tool_choice"),
                    ))
                }
            };
            (Some(choice), parallel)
        }
    };
    Ok(((!out.is_empty()).then_some(out), choice, parallel))
}

/// `thinking`: `{"type": "enabled", "budget_tokens"}`, `adaptive` or `between_tools` turn a reasoning model's
/// thinking on (a budget is not enforced apart from `max_tokens`; `display` changes nothing); absent or
/// `{"type": "disabled"}`, off.
fn thinking(v: Option<&Value>) -> Result<bool, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(false),
        Some(t) => match t["type"].as_str() {
            Some("enabled") => match t["budget_tokens"].as_u64() {
                Some(_) => Ok(true),
                None => Err(ApiError::invalid(
                    "thinking.budget_tokens: Field required",
                    Some("thinking"),
                )),
            },
            Some("adaptive" | "between_tools") => Ok(true),
            Some("disabled") => Ok(false),
            _ => Err(ApiError::invalid(
                "thinking.type: Input should be 'enabled', 'adaptive', 'between_tools' or 'disabled'",
                Some("thinking"),
            )),
        },
    }
}

/// The message object (`content` given; stop reason and usage filled in later).
fn message(id: &str, model: &str, content: Value) -> Value {
    json!({
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": null,
        "stop_sequence": null,
    })
}

/// A part as a whole content block (empty text left out).
fn block(p: &Part) -> Option<Value> {
    match p {
        Part::Reasoning(r) => Some(json!({"type": "thinking", "thinking": r, "signature": ""})),
        Part::Text(t) if t.is_empty() => None,
        Part::Text(t) => Some(json!({"type": "text", "text": t})),
        Part::Call(c) => Some(tool_use(c)),
    }
}

fn tool_use(c: &Call) -> Value {
    json!({"type": "tool_use", "id": format!("toolu_{:016x}", fresh_seed()), "name": c.name, "input": answer::arguments(c)})
}

/// `stop_reason` and `stop_sequence`.
fn stop_reason(end: &End) -> (&'static str, Option<String>) {
    match (end.finish, &end.stop) {
        ("length", _) => ("max_tokens", None),
        ("tool_calls", _) => ("tool_use", None),
        (_, Some(s)) => ("stop_sequence", Some(s.clone())),
        _ => ("end_turn", None),
    }
}

/// Anthropic's usage: input tokens computed, input tokens read from the prefix cache, output tokens.
fn usage(end: &End) -> Value {
    let u = &end.usage;
    json!({
        "input_tokens": u.prompt_tokens.saturating_sub(u.cached_tokens),
        "cache_read_input_tokens": u.cached_tokens,
        "cache_creation_input_tokens": 0,
        "output_tokens": u.completion_tokens,
    })
}

/// The open content block of a stream, and how many were opened.
#[derive(Default)]
struct Blocks {
    count: usize,
    /// The open block's kind (`thinking` or `text`); tool_use blocks open and close at once.
    open: Option<&'static str>,
}

impl Blocks {
    /// Streams one part: a delta into the open block of its kind, after opening it (and closing another) if needed.
    fn push(&mut self, p: Part, send: &impl Fn(&str, Value) -> bool) -> bool {
        let (kind, delta) = match p {
            Part::Reasoning(r) => ("thinking", json!({"type": "thinking_delta", "thinking": r})),
            Part::Text(t) => ("text", json!({"type": "text_delta", "text": t})),
            Part::Call(c) => {
                let mut ok = self.close(send);
                let mut start = tool_use(&c);
                start["input"] = json!({});
                let i = self.count;
                self.count += 1;
                ok &= send(
                    "content_block_start",
                    json!({"type": "content_block_start", "index": i, "content_block": start}),
                );
                ok &= send(
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": i,
                           "delta": {"type": "input_json_delta", "partial_json": c.arguments}}),
                );
                ok &= send(
                    "content_block_stop",
                    json!({"type": "content_block_stop", "index": i}),
                );
                return ok;
            }
        };
        let mut ok = true;
        if self.open != Some(kind) {
            ok &= self.close(send);
            let block = match kind {
                "thinking" => json!({"type": "thinking", "thinking": "", "signature": ""}),
                _ => json!({"type": "text", "text": ""}),
            };
            ok &= send(
                "content_block_start",
                json!({"type": "content_block_start", "index": self.count, "content_block": block}),
            );
            self.open = Some(kind);
            self.count += 1;
        }
        ok && send(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": self.count - 1, "delta": delta}),
        )
    }

    /// Closes the open block, if any.
    fn close(&mut self, send: &impl Fn(&str, Value) -> bool) -> bool {
        match self.open.take() {
            Some(_) => send(
                "content_block_stop",
                json!({"type": "content_block_stop", "index": self.count - 1}),
            ),
            None => true,
        }
    }
}
