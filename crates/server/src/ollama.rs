//! Ollama's generation endpoints, `POST /api/chat` and `POST /api/generate`, as thin translations: the request
//! becomes the OpenAI request types ([`crate::api`]) and goes through the same job builder, engine and text
//! stream ([`crate::completions`], [`crate::answer`]); only the shapes differ. Streaming (Ollama's default) is
//! NDJSON, one object per line, the last with `done: true`, `done_reason` and Ollama's counters (durations in ns).
//! Tool calls carry `arguments` as a JSON object. Errors are `{"error": "..."}` ([`crate::dialect`]).
//! `options` ([`options`]): the sampler settings hearth has are honoured, settings about hardware are accepted and
//! have no effect, sampler settings hearth lacks are refused unless neutral, unknown keys are refused.

use crate::answer::{self, Part};
use crate::api::{self, ChatBody, Common, CompletionBody, MaxDefault, Message, Stop};
use crate::completions::{self, Job};
use crate::dialect;
use crate::error::ApiError;
use crate::render::End;
use crate::{served, AppState, KeepAlive, Lease, Served};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

/// `POST /api/chat`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChatRequest {
    model: String,
    #[serde(default)]
    messages: Vec<OllamaMessage>,
    #[serde(default)]
    tools: Option<Vec<Value>>,
    #[serde(default)]
    format: Option<Value>,
    #[serde(default)]
    options: Option<Map<String, Value>>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    keep_alive: Option<Value>,
    #[serde(default)]
    think: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OllamaMessage {
    role: String,
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    images: Option<Vec<Value>>,
    /// `[{"function": {"name", "arguments": {…}}}]`.
    #[serde(default)]
    tool_calls: Option<Vec<Value>>,
    /// An earlier answer's thinking: not shown to the model again, as the templates drop it.
    #[serde(default)]
    #[allow(dead_code)]
    thinking: Option<String>,
    #[serde(default)]
    tool_name: Option<String>,
}

/// `POST /api/generate`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GenerateRequest {
    model: String,
    #[serde(default)]
    prompt: Option<String>,
    #[serde(default)]
    suffix: Option<String>,
    #[serde(default)]
    system: Option<String>,
    #[serde(default)]
    template: Option<String>,
    #[serde(default)]
    context: Option<Vec<Value>>,
    #[serde(default)]
    raw: Option<bool>,
    #[serde(default)]
    images: Option<Vec<Value>>,
    #[serde(default)]
    format: Option<Value>,
    #[serde(default)]
    options: Option<Map<String, Value>>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    keep_alive: Option<Value>,
    #[serde(default)]
    think: Option<Value>,
}

/// Which endpoint a response is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Chat,
    Generate,
}

/// What a request asks beyond the job: its name for the model, and streaming.
struct Asked {
    model: String,
    stream: bool,
}

pub async fn chat(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    let t0 = Instant::now();
    let prepared = async {
        let req: ChatRequest = parse(&body)?;
        let keep_alive = keep_alive(req.keep_alive.as_ref())?;
        let model = served::model(&state, &req.model, keep_alive).await?;
        let (mut common, extra) = options(req.options.as_ref())?;
        format(req.format.as_ref(), &mut common)?;
        let asked = Asked {
            model: req.model.clone(),
            stream: req.stream.unwrap_or(true),
        };
        if req.messages.is_empty() {
            return Ok(Err(loaded(
                &state,
                model,
                Endpoint::Chat,
                &asked.model,
                keep_alive,
            )));
        }
        let mut messages = Vec::with_capacity(req.messages.len());
        for (i, m) in req.messages.into_iter().enumerate() {
            messages.push(message(i, m)?);
        }
        let body = ChatBody {
            messages,
            max_completion_tokens: None,
            logprobs: None,
            top_logprobs: None,
            chat_template_kwargs: think(req.think.as_ref())?,
            tools: req.tools,
            tool_choice: None,
            parallel_tool_calls: None,
            continue_final_message: None,
        };
        let mut job = completions::chat_job(&model, common, body)?;
        extra.apply(&mut job, &model)?;
        Ok(Ok((state.clone(), job, asked)))
    }
    .await;
    respond(Endpoint::Chat, prepared, t0).await
}

pub async fn generate(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    let t0 = Instant::now();
    let prepared = async {
        let req: GenerateRequest = parse(&body)?;
        refuse_nonempty_str("suffix", req.suffix.as_deref(), "fill-in-the-middle (suffix) is not supported")?;
        refuse_nonempty_str("template", req.template.as_deref(), "a per-request template is not supported; hearth uses the model's own chat template (or send raw: true with the prompt already formatted)")?;
        if req.context.as_ref().is_some_and(|c| !c.is_empty()) {
            return Err(ApiError::invalid(
                "'context' (deprecated in Ollama) is not supported: send the conversation to /api/chat",
                Some("context"),
            ));
        }
        refuse_images(req.images.as_deref(), "images")?;
        let keep_alive = keep_alive(req.keep_alive.as_ref())?;
        let model = served::model(&state, &req.model, keep_alive).await?;
        let (mut common, extra) = options(req.options.as_ref())?;
        format(req.format.as_ref(), &mut common)?;
        let asked = Asked {
            model: req.model.clone(),
            stream: req.stream.unwrap_or(true),
        };
        let prompt = req.prompt.unwrap_or_default();
        if prompt.is_empty() {
            return Ok(Err(loaded(&state, model, Endpoint::Generate, &asked.model, keep_alive)));
        }
        let mut job = if req.raw.unwrap_or(false) {
            if req.system.as_deref().is_some_and(|s| !s.is_empty()) {
                return Err(ApiError::invalid(
                    "'system' has no effect with raw: true (the prompt is sent as is); put it in the prompt",
                    Some("system"),
                ));
            }
            let body = CompletionBody {
                prompt: Value::String(prompt),
                logprobs: None,
            };
            completions::completion_job(&model, common, body, MaxDefault::RestOfContext)?
        } else {
            let mut messages = Vec::new();
            if let Some(s) = req.system.filter(|s| !s.is_empty()) {
                messages.push(text_message("system", s));
            }
            messages.push(text_message("user", prompt));
            let body = ChatBody {
                messages,
                max_completion_tokens: None,
                logprobs: None,
                top_logprobs: None,
                chat_template_kwargs: think(req.think.as_ref())?,
                tools: None,
                tool_choice: None,
                parallel_tool_calls: None,
                continue_final_message: None,
            };
            completions::chat_job(&model, common, body)?
        };
        extra.apply(&mut job, &model)?;
        Ok(Ok((state.clone(), job, asked)))
    }
    .await;
    respond(Endpoint::Generate, prepared, t0).await
}

type Prepared = Result<Result<(Arc<AppState>, Job, Asked), Response>, ApiError>;

async fn respond(endpoint: Endpoint, prepared: Prepared, t0: Instant) -> Response {
    let (model, mut job, asked) = match prepared {
        Ok(Ok(p)) => p,
        Ok(Err(loaded)) => return loaded,
        Err(e) => return e.into_response(),
    };
    let mut rx = match answer::start(&model, &mut job).await {
        Ok(rx) => rx,
        Err(e) => return e.into_response(),
    };
    if !asked.stream {
        return match answer::collect(&model, &job, &mut rx, t0).await {
            Ok((parts, end)) => {
                let mut v = head(&asked.model);
                let mut text = String::new();
                let mut thinking = String::new();
                let mut calls = Vec::new();
                for p in parts {
                    match p {
                        Part::Text(t) => text.push_str(&t),
                        Part::Reasoning(r) => thinking.push_str(&r),
                        Part::Call(c) => calls.push(c),
                    }
                }
                fill(endpoint, &mut v, &text, &thinking, &calls);
                finish(&mut v, &end, t0);
                Json(v).into_response()
            }
            Err(e) => e.into_response(),
        };
    }
    let (tx, out) = mpsc::unbounded_channel::<Result<Bytes, Infallible>>();
    tokio::spawn(async move {
        let line = |v: &Value| Ok(Bytes::from(format!("{v}\n")));
        let drive = answer::drive(&model, &job, &mut rx, t0, |p| {
            let mut v = head(&asked.model);
            v["done"] = json!(false);
            match p {
                Part::Text(t) => fill(endpoint, &mut v, &t, "", &[]),
                Part::Reasoning(r) => fill(endpoint, &mut v, "", &r, &[]),
                Part::Call(c) => fill(endpoint, &mut v, "", "", &[c]),
            }
            tx.send(line(&v)).is_ok()
        });
        // The client hanging up shows as the body's receiver closing: stop (and so cancel the sequence) then.
        let result = tokio::select! {
            r = drive => r,
            _ = tx.closed() => return,
        };
        let v = match result {
            Ok(end) => {
                let mut v = head(&asked.model);
                fill(endpoint, &mut v, "", "", &[]);
                finish(&mut v, &end, t0);
                v
            }
            Err(e) => dialect::ollama_body(&e.message),
        };
        let _ = tx.send(line(&v));
    });
    let stream = tokio_stream::wrappers::UnboundedReceiverStream::new(out);
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response()
}

/// `{"model", "created_at"}`.
fn head(model: &str) -> Value {
    json!({"model": model, "created_at": rfc3339(SystemTime::now())})
}

/// The answer fields: chat's `message` or generate's `response` (with `thinking` and `tool_calls` when there are).
fn fill(
    endpoint: Endpoint,
    v: &mut Value,
    text: &str,
    thinking: &str,
    calls: &[hearth_constraint::tools::Call],
) {
    match endpoint {
        Endpoint::Chat => {
            let mut m = json!({"role": "assistant", "content": text});
            if !thinking.is_empty() {
                m["thinking"] = json!(thinking);
            }
            if !calls.is_empty() {
                m["tool_calls"] = calls
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        json!({"function": {"index": i, "name": c.name, "arguments": answer::arguments(c)}})
                    })
                    .collect();
            }
            v["message"] = m;
        }
        Endpoint::Generate => {
            v["response"] = json!(text);
            if !thinking.is_empty() {
                v["thinking"] = json!(thinking);
            }
        }
    }
}

/// The last object's fields: `done`, `done_reason` and the counters (durations in nanoseconds).
fn finish(v: &mut Value, end: &End, t0: Instant) {
    let now = Instant::now();
    let first = end.first_token.unwrap_or(now);
    let ns = |d: Duration| d.as_nanos().min(u64::MAX as u128) as u64;
    v["done"] = json!(true);
    v["done_reason"] = json!(if end.finish == "length" {
        "length"
    } else {
        "stop"
    });
    v["total_duration"] = json!(ns(now - t0));
    v["load_duration"] = json!(0);
    v["prompt_eval_count"] = json!(end.usage.prompt_tokens);
    v["prompt_eval_duration"] = json!(ns(first.saturating_duration_since(t0)));
    v["eval_count"] = json!(end.usage.completion_tokens);
    v["eval_duration"] = json!(ns(now.saturating_duration_since(first)));
}

/// The answer to a request with nothing to generate: Ollama's way to load (or, with `keep_alive: 0`, unload) a
/// model.
fn loaded(
    state: &AppState,
    lease: Lease,
    endpoint: Endpoint,
    model: &str,
    keep_alive: Option<KeepAlive>,
) -> Response {
    let unload = keep_alive == Some(KeepAlive::For(Duration::ZERO));
    if unload {
        let id = lease.id.clone();
        drop(lease);
        state.models.unload(&id);
    }
    let mut v = head(model);
    fill(endpoint, &mut v, "", "", &[]);
    v["done"] = json!(true);
    v["done_reason"] = json!(if unload { "unload" } else { "load" });
    Json(v).into_response()
}

/// A body as `T`, a bad field named in the error.
fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(format!("The body is not valid JSON: {e}"), None))?;
    if !value.is_object() {
        return Err(ApiError::invalid("The body must be a JSON object", None));
    }
    api::typed(&value)
}

fn refuse_nonempty_str(field: &str, v: Option<&str>, why: &str) -> Result<(), ApiError> {
    match v {
        Some(s) if !s.is_empty() => {
            Err(ApiError::invalid(format!("'{field}': {why}"), Some(field)))
        }
        _ => Ok(()),
    }
}

fn refuse_images(images: Option<&[Value]>, field: &str) -> Result<(), ApiError> {
    match images {
        Some(i) if !i.is_empty() => Err(ApiError::invalid(
            format!("'{field}': images are not supported (hearth runs text models)"),
            Some(field),
        )),
        _ => Ok(()),
    }
}

fn text_message(role: &str, content: String) -> Message {
    Message {
        role: role.into(),
        content: Value::String(content),
        tool_calls: None,
        tool_call_id: None,
        name: None,
    }
}

/// One Ollama message as the chat request's: calls get ids and OpenAI's shape (arguments stay an object, which
/// the prompt builders take as is), a tool's answer keeps the tool's name.
fn message(i: usize, m: OllamaMessage) -> Result<Message, ApiError> {
    refuse_images(m.images.as_deref(), &format!("messages[{i}].images"))?;
    let tool_calls = match m.tool_calls {
        Some(calls) if !calls.is_empty() => {
            let mut out = Vec::with_capacity(calls.len());
            for (k, c) in calls.iter().enumerate() {
                let f = &c["function"];
                let Some(name) = f["name"].as_str() else {
                    return Err(ApiError::invalid(
                        format!("messages[{i}].tool_calls[{k}].function.name is required"),
                        Some("messages"),
                    ));
                };
                let args = match &f["arguments"] {
                    Value::Null => json!({}),
                    a => a.clone(),
                };
                out.push(json!({"id": format!("call_{i}_{k}"), "type": "function",
                                "function": {"name": name, "arguments": args}}));
            }
            Some(out)
        }
        _ => None,
    };
    Ok(Message {
        role: m.role,
        content: Value::String(m.content.unwrap_or_default()),
        tool_calls,
        tool_call_id: None,
        name: m.tool_name,
    })
}

/// `think`: `true`/`false` (or a level, `"low"`…`"high"`, taken as `true`) becomes the chat template's
/// `enable_thinking`; absent leaves the template's default.
fn think(v: Option<&Value>) -> Result<Option<Map<String, Value>>, ApiError> {
    let on = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) if ["low", "medium", "high"].contains(&s.as_str()) => true,
        Some(_) => {
            return Err(ApiError::invalid(
                "'think' must be true, false, \"low\", \"medium\" or \"high\"",
                Some("think"),
            ))
        }
    };
    let mut kwargs = Map::new();
    kwargs.insert("enable_thinking".into(), Value::Bool(on));
    Ok(Some(kwargs))
}

/// `format`: `"json"` (any JSON object) or a JSON Schema, as the OpenAI request's constraint fields.
fn format(v: Option<&Value>, common: &mut Common) -> Result<(), ApiError> {
    match v {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(s)) if s.is_empty() => Ok(()),
        Some(Value::String(s)) if s == "json" => {
            common.response_format = Some(json!({"type": "json_object"}));
            Ok(())
        }
        Some(schema @ Value::Object(_)) => {
            common.json_schema = Some(schema.clone());
            Ok(())
        }
        Some(_) => Err(ApiError::invalid(
            "'format' must be \"json\" or a JSON Schema object",
            Some("format"),
        )),
    }
}

/// `keep_alive`: seconds as a number, or a duration string (`"5m"`, `"1h30m"`, `"0"`); negative means forever
/// (parsed by [`KeepAlive::from_json`], the server's one reading of Ollama's durations).
pub fn keep_alive(v: Option<&Value>) -> Result<Option<KeepAlive>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => KeepAlive::from_json(v).map(Some).map_err(|e| {
            ApiError::invalid(
                format!("'keep_alive' must be a number of seconds or a duration such as \"5m\" (negative: forever): {e}"),
                Some("keep_alive"),
            )
        }),
    }
}

/// Options that change how hearth runs, not what it samples: accepted, no effect.
const NO_EFFECT: &[&str] = &[
    "num_keep",
    "num_batch",
    "num_gpu",
    "main_gpu",
    "use_mmap",
    "use_mlock",
    "num_thread",
    "low_vram",
    "f16_kv",
    "vocab_only",
    "numa",
    "logits_all",
    "embedding_only",
    "penalize_newline",
    "mirostat_tau",
    "mirostat_eta",
];

/// Sampler options hearth does not have, accepted only at their neutral value.
const NEUTRAL: &[(&str, f64)] = &[("typical_p", 1.0), ("tfs_z", 1.0), ("mirostat", 0.0)];

/// What `options` set beyond the OpenAI request's fields.
#[derive(Debug, Default)]
struct Extra {
    num_ctx: Option<usize>,
    repeat_last_n: Option<i64>,
}

impl Extra {
    /// Applies `num_ctx` (a smaller context than the server's: prompt and answer must fit in it) and
    /// `repeat_last_n` (-1: the whole context) to the job.
    fn apply(&self, job: &mut Job, model: &Served) -> Result<(), ApiError> {
        let n_ctx = model.n_ctx();
        if let Some(n) = self.num_ctx.filter(|&n| n < n_ctx) {
            if job.prompt.len() >= n {
                return Err(ApiError::invalid(
                    format!(
                        "The prompt is {} tokens, which does not fit options.num_ctx = {n}",
                        job.prompt.len()
                    ),
                    Some("options.num_ctx"),
                ));
            }
            job.max_tokens = job.max_tokens.min(n - job.prompt.len());
        }
        match self.repeat_last_n {
            Some(-1) => job.sampling.repeat_last_n = n_ctx,
            Some(n) => job.sampling.repeat_last_n = usize::try_from(n).unwrap_or(0),
            None => {}
        }
        Ok(())
    }
}

/// `options` as the OpenAI request's sampler fields, from Ollama's defaults (temperature 0.8, top_k 40,
/// top_p 0.9; no repetition penalty unless asked).
fn options(opts: Option<&Map<String, Value>>) -> Result<(Common, Extra), ApiError> {
    let mut c = Common {
        temperature: Some(0.8),
        top_k: Some(40),
        top_p: Some(0.9),
        ..Common::default()
    };
    let mut extra = Extra::default();
    let Some(opts) = opts else {
        return Ok((c, extra));
    };
    for (k, v) in opts {
        let param = format!("options.{k}");
        let bad = |what: &str| {
            ApiError::invalid(
                format!("Invalid value for '{param}': expected {what}"),
                Some(&param),
            )
        };
        if v.is_null() {
            continue;
        }
        let num = || v.as_f64().ok_or_else(|| bad("a number"));
        let int = || v.as_i64().ok_or_else(|| bad("an integer"));
        match k.as_str() {
            "temperature" => c.temperature = Some(num()? as f32),
            "top_p" => c.top_p = Some(num()? as f32),
            "min_p" => c.min_p = Some(num()? as f32),
            "repeat_penalty" => c.repeat_penalty = Some(num()? as f32),
            "presence_penalty" => c.presence_penalty = Some(num()? as f32),
            "frequency_penalty" => c.frequency_penalty = Some(num()? as f32),
            "top_k" => {
                let n = int()?;
                // Ollama's 0 (and below) turns top-k off, as hearth's 0 does.
                c.top_k = Some(u32::try_from(n.max(0)).map_err(|_| bad("a smaller integer"))?);
            }
            "seed" => {
                let n = int()?;
                c.seed = (n >= 0).then_some(n);
            }
            "num_predict" => {
                c.max_tokens =
                    match int()? {
                        -1 | -2 => None,
                        n if n > 0 => Some(u32::try_from(n).unwrap_or(u32::MAX)),
                        _ => return Err(bad(
                            "a positive number of tokens, -1 (no limit) or -2 (fill the context)",
                        )),
                    };
            }
            "num_ctx" => {
                let n = int()?;
                extra.num_ctx = Some(
                    usize::try_from(n)
                        .ok()
                        .filter(|&n| n > 0)
                        .ok_or_else(|| bad("a positive integer"))?,
                );
            }
            "repeat_last_n" => {
                let n = int()?;
                if n < -1 {
                    return Err(bad("an integer of at least -1"));
                }
                extra.repeat_last_n = Some(n);
            }
            "stop" => {
                c.stop = Some(match v {
                    Value::String(s) => Stop::One(s.clone()),
                    Value::Array(a) => Stop::Many(
                        a.iter()
                            .map(|s| s.as_str().map(str::to_string))
                            .collect::<Option<_>>()
                            .ok_or_else(|| bad("a list of strings"))?,
                    ),
                    _ => return Err(bad("a list of strings")),
                });
            }
            k if NO_EFFECT.contains(&k) => {}
            k => match NEUTRAL.iter().find(|(n, _)| *n == k) {
                Some((_, neutral)) if v.as_f64() == Some(*neutral) => {}
                Some((_, neutral)) => {
                    return Err(ApiError::invalid(
                        format!(
                        "'{param}' is not supported by hearth (only its neutral value {neutral})"
                    ),
                        Some(&param),
                    ))
                }
                None => {
                    return Err(ApiError::invalid(
                        format!("Unknown option '{k}'"),
                        Some(&param),
                    ))
                }
            },
        }
    }
    Ok((c, extra))
}

/// RFC 3339 in UTC with nanoseconds, as Ollama writes `created_at`.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_nanos()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_durations() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
        // 2024-02-29T12:34:56Z (a leap day) = 1709210096.
        let t = UNIX_EPOCH + Duration::new(1_709_210_096, 5);
        assert_eq!(rfc3339(t), "2024-02-29T12:34:56.000000005Z");
        let parse = |t: &str| t.parse::<KeepAlive>().ok();
        assert_eq!(parse("5m"), Some(KeepAlive::For(Duration::from_secs(300))));
        assert_eq!(
            parse("1h30m"),
            Some(KeepAlive::For(Duration::from_secs(5400)))
        );
        assert_eq!(parse("-1"), Some(KeepAlive::Forever));
        assert_eq!(
            parse("250ms"),
            Some(KeepAlive::For(Duration::from_millis(250)))
        );
        assert_eq!(parse("5x"), None);
        assert_eq!(parse("m"), None);
        assert_eq!(
            keep_alive(Some(&json!("0"))).ok(),
            Some(Some(KeepAlive::For(Duration::ZERO)))
        );
        assert_eq!(
            keep_alive(Some(&json!(-1))).ok(),
            Some(Some(KeepAlive::Forever))
        );
        assert!(keep_alive(Some(&json!(true))).is_err());
    }

    #[test]
    fn options_map_refuse_and_ignore() {
        let o = json!({"temperature": 0, "top_k": 5, "num_predict": 7, "seed": 3, "stop": ["x"], "num_gpu": 9});
        let (c, _) = options(o.as_object()).expect("options");
        assert_eq!(
            (c.temperature, c.top_k, c.max_tokens, c.seed),
            (Some(0.0), Some(5), Some(7), Some(3))
        );
        assert_eq!(c.stops(), vec!["x".to_string()]);
        let (c, _) = options(None).expect("defaults");
        assert_eq!(
            (c.temperature, c.top_k, c.top_p, c.repeat_penalty),
            (Some(0.8), Some(40), Some(0.9), None)
        );
        for bad in [
            json!({"mirostat": 2}),
            json!({"typical_p": 0.5}),
            json!({"warp": 1}),
            json!({"num_predict": 0}),
            json!({"top_p": "x"}),
        ] {
            let e = options(bad.as_object()).expect_err("refused");
            assert!(
                e.param
                    .as_deref()
                    .is_some_and(|p| p.starts_with("options.")),
                "{e:?}"
            );
        }
        assert!(options(json!({"mirostat": 0, "typical_p": 1.0}).as_object()).is_ok());
    }
}
