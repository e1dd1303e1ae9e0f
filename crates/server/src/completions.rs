//! The two generation endpoints: parse and validate, build the prompt ids, submit to the engine, then either
//! collect the events into one response or stream them as SSE chunks.

use crate::api::{self, ChatBody, Common, CompletionBody, MaxDefault, MaxTokens, Prompt};
use crate::error::ApiError;
use crate::render::{self, End, Head, Kind, Piece};
use crate::structured::{self, Structured};
use crate::text::{Out, TextSink, TokenInfo};
use crate::{AppState, Lease, Served};
use axum::body::Bytes;
use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hearth_constraint::tools::{Call, CallParser, Piece as CallPiece};
use hearth_constraint::Grammar;
use hearth_engine::batch::{Request, SubmitError};
use hearth_engine::{Finish, SamplingParams};
use hearth_text::{ChatMessage, ChatTemplate, Delta, Reasoning, TextStream};
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

/// A validated generation request: what every API's request becomes before it reaches the engine.
pub(crate) struct Job {
    /// The model the job runs on, held (loaded) for as long as the job lives.
    pub served: Lease,
    pub head: Head,
    pub prompt: Vec<u32>,
    pub max_tokens: usize,
    pub sampling: SamplingParams,
    pub stops: Vec<String>,
    /// Whether `<think>…</think>` is split off as reasoning (chat only).
    pub reasoning: Reasoning,
    pub top_logprobs: Option<usize>,
    pub stream: bool,
    pub include_usage: bool,
    /// The grammar the output must follow, and the request field it came from.
    pub grammar: Option<(Grammar, String)>,
    /// Read the answer for tool calls.
    pub tools: bool,
}

pub async fn chat(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    state.metrics.chat_requests.fetch_add(1, Relaxed);
    let result = async {
        let (common, body): (Common, ChatBody) = api::parse(&body)?;
        let served = state.served(common.model.as_deref(), None).await?;
        chat_job(&served, common, body)
    }
    .await;
    run(state, result).await
}

/// A chat request as a job: the one translation of a conversation (messages, tools, constraints, template
/// variables) into prompt ids, used by every API that chats.
pub(crate) fn chat_job(
    served: &Lease,
    common: Common,
    mut body: ChatBody,
) -> Result<Job, ApiError> {
    let template = served.template.as_ref().map_err(|e| {
        ApiError::internal(format!("The model's chat template cannot be used: {e}"))
    })?;
    if body.messages.is_empty() {
        return Err(ApiError::invalid(
            "'messages' must not be empty",
            Some("messages"),
        ));
    }
    // A final assistant message to continue: the prompt is the conversation before it, the assistant's turn
    // opened, and its text.
    let prefill = match body.continue_final_message {
        Some(true) => {
            let i = body.messages.len() - 1;
            let last = &body.messages[i];
            if last.role != "assistant" || last.tool_calls.is_some() || i == 0 {
                return Err(ApiError::invalid(
                    "'continue_final_message' needs a conversation that ends with an assistant's text",
                    Some("continue_final_message"),
                ));
            }
            let text = last.text(i)?;
            body.messages.pop();
            Some(text)
        }
        _ => None,
    };
    let structured = structured::parse(&common, Some(&body))?;
    let texts = (0..body.messages.len())
        .map(|i| body.messages[i].text(i))
        .collect::<Result<Vec<_>, _>>()?;
    let has_tool_history = body
        .messages
        .iter()
        .any(|m| m.tool_calls.is_some() || m.role == "tool");
    let offered = body.tools.as_ref().filter(|t| !t.is_empty());
    let text = if template.knows_tools() && (offered.is_some() || has_tool_history) {
        // The template renders the tools and the calls itself.
        let mut kwargs = body.chat_template_kwargs.clone().unwrap_or_default();
        if let Some(t) = offered {
            kwargs.insert("tools".into(), Value::Array(t.clone()));
        }
        let messages = structured::tool_messages(&body.messages, texts);
        render_prompt(template, &messages, Some(&kwargs))?
    } else if structured.tools.is_some() || has_tool_history {
        let messages = structured::plain_messages(&body.messages, structured.tools.as_ref(), texts);
        render_prompt(template, &messages, body.chat_template_kwargs.as_ref())?
    } else {
        let messages: Vec<ChatMessage> = body
            .messages
            .iter()
            .zip(texts)
            .map(|(m, t)| {
                let role = if m.role == "developer" {
                    "system"
                } else {
                    m.role.as_str()
                };
                ChatMessage::new(role, t)
            })
            .collect();
        render_prompt(template, &messages, body.chat_template_kwargs.as_ref())?
    };
    let text = text + prefill.as_deref().unwrap_or("");
    // The template writes BOS itself when the model wants one, as `hearth run` relies on.
    let prompt = encode(served, &text, false)?;
    let top = match (body.logprobs, body.top_logprobs) {
        (_, Some(k)) if k > 20 => {
            return Err(ApiError::invalid(
                "'top_logprobs' must be at most 20",
                Some("top_logprobs"),
            ))
        }
        (Some(true), k) => Some(k.unwrap_or(0) as usize),
        (_, Some(_)) => {
            return Err(ApiError::invalid(
                "'top_logprobs' requires 'logprobs': true",
                Some("top_logprobs"),
            ))
        }
        _ => None,
    };
    let max = api::max_tokens(
        common.max_tokens,
        body.max_completion_tokens,
        MaxDefault::RestOfContext,
    )?;
    let mut job = job(served, Kind::Chat, common, prompt, max, top)?;
    job.reasoning = Reasoning::for_chat(&served.tok, &text);
    job.tools = structured.tools.is_some();
    job.grammar = structured.grammar;
    Ok(job)
}

pub async fn completions(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    state.metrics.completion_requests.fetch_add(1, Relaxed);
    let result = async {
        let (common, body): (Common, CompletionBody) = api::parse(&body)?;
        // A bad grammar field is refused before the model is looked up (or loaded).
        structured::parse(&common, None)?;
        let served = state.served(common.model.as_deref(), None).await?;
        completion_job(&served, common, body, MaxDefault::Sixteen)
    }
    .await;
    run(state, result).await
}

/// A raw completion request as a job (`default`: the limit when the request sets none).
pub(crate) fn completion_job(
    served: &Lease,
    common: Common,
    body: CompletionBody,
    default: MaxDefault,
) -> Result<Job, ApiError> {
    let Structured { grammar, .. } = structured::parse(&common, None)?;
    let prompt = match body.prompt()? {
        Prompt::Text(t) => encode(served, &t, true)?,
        Prompt::Tokens(ids) => ids,
    };
    if let Some(k) = body.logprobs {
        if k > 5 {
            return Err(ApiError::invalid(
                "'logprobs' must be at most 5",
                Some("logprobs"),
            ));
        }
    }
    let max = api::max_tokens(common.max_tokens, None, default)?;
    let mut job = job(
        served,
        Kind::Completion,
        common,
        prompt,
        max,
        body.logprobs.map(|k| k as usize),
    )?;
    job.grammar = grammar;
    Ok(job)
}

/// The chat template over `messages`, with the assistant's turn opened and the request's extra template variables.
fn render_prompt<M: serde::Serialize + ?Sized>(
    template: &ChatTemplate,
    messages: &M,
    kwargs: Option<&serde_json::Map<String, Value>>,
) -> Result<String, ApiError> {
    template
        .render_with(messages, true, kwargs.unwrap_or(&serde_json::Map::new()))
        .map_err(|e| ApiError::invalid(format!("The chat template failed: {e}"), Some("messages")))
}

/// Prompt text to ids, as `hearth run` does: special tokens parsed, BOS (when the model wants one) if `add_bos`.
fn encode(served: &Lease, text: &str, add_bos: bool) -> Result<Vec<u32>, ApiError> {
    served.tok.encode(text, add_bos, true).map_err(|e| {
        ApiError::invalid(
            format!("The prompt cannot be tokenized: {e}"),
            Some("prompt"),
        )
    })
}

fn job(
    served: &Lease,
    kind: Kind,
    common: Common,
    prompt: Vec<u32>,
    max_tokens: MaxTokens,
    top_logprobs: Option<usize>,
) -> Result<Job, ApiError> {
    common.validate()?;
    let max_tokens = max_tokens.resolve(prompt.len(), served.n_ctx());
    let seed = match common.seed {
        Some(s) => s as u64,
        None => fresh_seed(),
    };
    let sampling = SamplingParams {
        temperature: common
            .temperature
            .unwrap_or(SamplingParams::API_TEMPERATURE),
        top_k: common.top_k.unwrap_or(0) as usize,
        top_p: common.top_p.unwrap_or(1.0),
        min_p: common.min_p.unwrap_or(0.0),
        repeat_penalty: common.repeat_penalty.unwrap_or(1.0),
        presence_penalty: common.presence_penalty.unwrap_or(0.0),
        frequency_penalty: common.frequency_penalty.unwrap_or(0.0),
        seed,
        ..Default::default()
    };
    let prefix = if kind == Kind::Chat {
        "chatcmpl"
    } else {
        "cmpl"
    };
    Ok(Job {
        served: served.clone(),
        head: Head {
            kind,
            id: format!("{prefix}-{:016x}", fresh_seed()),
            created: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            model: served.id.clone(),
        },
        prompt,
        max_tokens,
        sampling,
        stops: common.stops(),
        reasoning: Reasoning::Off,
        top_logprobs,
        stream: common.stream.unwrap_or(false),
        include_usage: common.stream_options.is_some_and(|o| o.include_usage),
        grammar: None,
        tools: false,
    })
}

/// A fresh id for a tool call.
pub(crate) fn call_id() -> String {
    format!("call_{:016x}", fresh_seed())
}

/// A seed nobody asked for: different for every request.
pub(crate) fn fresh_seed() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    (t ^ COUNTER
        .fetch_add(1, Relaxed)
        .wrapping_mul(0x9e37_79b9_7f4a_7c15))
    .rotate_left(17)
}

async fn run(state: Arc<AppState>, job: Result<Job, ApiError>) -> Response {
    let result = match job {
        Ok(job) => start(&state, job).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(r) => r,
        Err(e) => {
            state.metrics.errors.fetch_add(1, Relaxed);
            e.into_response()
        }
    }
}

async fn start(state: &Arc<AppState>, mut job: Job) -> Result<Response, ApiError> {
    let t0 = Instant::now();
    let rx = submit(state, &mut job).await?;
    if job.stream {
        let (out_tx, out_rx) = mpsc::unbounded_channel();
        tokio::spawn(stream_task(state.clone(), job, rx, out_tx, t0));
        let stream = tokio_stream::wrappers::UnboundedReceiverStream::new(out_rx);
        Ok(Sse::new(stream)
            .keep_alive(KeepAlive::default())
            .into_response())
    } else {
        collect(state, job, rx, t0).await
    }
}

/// Compiles the job's grammar and hands the job to the engine: the one way into the scheduler. The receiver gets
/// the text deltas and the end ([`follow`] reads them).
pub(crate) async fn submit(
    state: &Arc<AppState>,
    job: &mut Job,
) -> Result<mpsc::UnboundedReceiver<Out>, ApiError> {
    let constraint = match job.grammar.take() {
        Some((g, param)) => Some(structured::compile(&job.served, g, &param).await?),
        None => None,
    };
    let served = &job.served;
    let (tx, rx) = mpsc::unbounded_channel();
    let req = Request {
        prompt: job.prompt.clone(),
        max_tokens: job.max_tokens,
        sampling: job.sampling.clone(),
        stop_ids: served.tok.eog_ids().to_vec(),
        top_logprobs: job.top_logprobs,
        constraint,
        embed: false,
    };
    let text = TextStream::new(served.tok.clone(), job.stops.clone(), job.reasoning);
    served
        .engine
        .submit(req, Box::new(TextSink::new(served.tok.clone(), text, tx)))
        .map_err(|e| match e {
            SubmitError::QueueFull { max_queued } => {
                state.metrics.rejected_queue_full.fetch_add(1, Relaxed);
                ApiError::queue_full(max_queued)
            }
            SubmitError::Stopped => ApiError::unavailable("The server is shutting down"),
            SubmitError::TooLong {
                prompt_tokens,
                max_tokens,
                n_ctx,
            } => ApiError::invalid(
                format!(
                    "This model's maximum context length is {n_ctx} tokens. However, you requested {} tokens \
                     ({prompt_tokens} in the prompt, {max_tokens} for the completion). Please reduce the prompt \
                     or max_tokens.",
                    prompt_tokens + max_tokens
                ),
                Some(job.head.kind.prompt_param()),
            ),
            SubmitError::EmbeddingOnly => ApiError::invalid(
                format!(
                    "The model {} makes embeddings only; use /v1/embeddings",
                    served.id
                ),
                Some("model"),
            ),
            e @ (SubmitError::EmptyPrompt | SubmitError::BadToken { .. }) => ApiError::invalid(
                format!("Invalid prompt: {e}"),
                Some(job.head.kind.prompt_param()),
            ),
        })?;
    Ok(rx)
}

/// Follows one request's events until the engine's `Done`: text deltas (with their tokens' log-probabilities) go
/// to `on_delta` (which returns false when its client went away); returns how it ended, as the engine reports it.
pub(crate) async fn follow(
    state: &AppState,
    served: &Served,
    rx: &mut mpsc::UnboundedReceiver<Out>,
    t0: Instant,
    mut on_delta: impl FnMut(Delta, Vec<TokenInfo>) -> bool,
) -> Result<End, ApiError> {
    let mut n = 0;
    let mut first: Option<Instant> = None;
    let end = loop {
        let Some(ev) = rx.recv().await else {
            return Err(served.failure().map_or_else(
                || ApiError::internal("The engine dropped the request"),
                ApiError::unavailable,
            ));
        };
        match ev {
            Out::Token { delta, info } => {
                n += 1;
                if first.is_none() {
                    first = Some(Instant::now());
                    state.metrics.ttft.observe(t0.elapsed().as_secs_f64());
                }
                if (!delta.is_empty() || info.is_some())
                    && !on_delta(delta, info.into_iter().collect())
                {
                    return Err(ApiError::internal("The client went away"));
                }
            }
            Out::Done {
                rest,
                finish,
                usage,
                reasoning_tokens,
                stop,
            } => {
                if !rest.is_empty() {
                    on_delta(rest, Vec::new());
                }
                break End {
                    finish: match finish {
                        Finish::Stop => "stop",
                        Finish::Length => "length",
                    },
                    usage,
                    reasoning_tokens,
                    stop,
                    first_token: first,
                };
            }
            Out::Failed(m) => return Err(ApiError::internal(m)),
        }
    };
    let m = &state.metrics;
    m.prompt_tokens
        .fetch_add(end.usage.prompt_tokens as u64, Relaxed);
    m.completion_tokens
        .fetch_add(end.usage.completion_tokens as u64, Relaxed);
    if let Some(f) = first {
        let secs = f.elapsed().as_secs_f64();
        if n > 1 && secs > 0.0 {
            m.tokens_per_second.observe((n - 1) as f64 / secs);
        }
    }
    Ok(end)
}

async fn collect(
    state: &AppState,
    job: Job,
    mut rx: mpsc::UnboundedReceiver<Out>,
    t0: Instant,
) -> Result<Response, ApiError> {
    let mut all = Delta::default();
    let mut tokens = Vec::new();
    let end = follow(state, &job.served, &mut rx, t0, |d, t| {
        all.extend(d);
        tokens.extend(t);
        true
    })
    .await?;
    let logprobs = match job.top_logprobs {
        Some(_) => render::logprobs(job.head.kind, &tokens, &mut 0),
        None => Value::Null,
    };
    if !job.tools {
        let body = job.head.response(all.text, &all.reasoning, logprobs, &end);
        return Ok(Json(body).into_response());
    }
    let (text, calls) = split_calls(&all.text);
    let calls: Vec<Value> = calls
        .iter()
        .enumerate()
        .map(|(i, c)| render::tool_call(i, &call_id(), c, false))
        .collect();
    let mut end = end;
    if !calls.is_empty() && end.finish == "stop" {
        end.finish = "tool_calls";
    }
    let mut body = job
        .head
        .response(text.clone(), &all.reasoning, logprobs, &end);
    if !calls.is_empty() {
        let message = &mut body["choices"][0]["message"];
        message["tool_calls"] = Value::Array(calls);
        if text.trim().is_empty() {
            message["content"] = Value::Null;
        }
    }
    Ok(Json(body).into_response())
}

/// A whole answer read for tool calls: the text outside them, and the calls in order.
pub(crate) fn split_calls(answer: &str) -> (String, Vec<Call>) {
    let mut parser = CallParser::new();
    let mut pieces = parser.push(answer);
    pieces.extend(parser.finish());
    let mut text = String::new();
    let mut calls = Vec::new();
    for p in pieces {
        match p {
            CallPiece::Text(t) => text.push_str(&t),
            CallPiece::Call { call, .. } => calls.push(call),
        }
    }
    (text, calls)
}

type SseTx = mpsc::UnboundedSender<Result<SseEvent, Infallible>>;

/// Streams one request as SSE chunks; stops (and so cancels the engine sequence) when the client goes away.
async fn stream_task(
    state: Arc<AppState>,
    job: Job,
    mut rx: mpsc::UnboundedReceiver<Out>,
    out: SseTx,
    t0: Instant,
) {
    let send = |v: Value| {
        out.send(Ok(SseEvent::default().data(v.to_string())))
            .is_ok()
    };
    let usage_null = job.include_usage;
    let head = &job.head;
    let first = Piece::text("");
    if head.kind == Kind::Chat && !send(head.chunk(first, true, Value::Null, None, usage_null)) {
        return;
    }
    let mut offset = 0;
    let mut calls = job.tools.then(CallParser::new);
    // Text and calls of the answer as they become definite (all text when not reading calls).
    let send_pieces = |pieces: Vec<CallPiece>, reasoning: &str, lp: Value| -> bool {
        let mut lp = Some(lp);
        if pieces.is_empty() {
            let piece = Piece {
                content: Some(""),
                reasoning,
            };
            return send(head.chunk(
                piece,
                false,
                lp.take().unwrap_or_default(),
                None,
                usage_null,
            ));
        }
        let mut ok = true;
        for (k, p) in pieces.into_iter().enumerate() {
            let reasoning = if k == 0 { reasoning } else { "" };
            let lp = lp.take().unwrap_or_default();
            ok &= match p {
                CallPiece::Text(t) => {
                    let piece = Piece {
                        content: Some(&t),
                        reasoning,
                    };
                    send(head.chunk(piece, false, lp, None, usage_null))
                }
                CallPiece::Call { index, call } => {
                    let mut c = head.chunk(Piece::default(), false, lp, None, usage_null);
                    c["choices"][0]["delta"] =
                        json!({"tool_calls": [render::tool_call(index, &call_id(), &call, true)]});
                    send(c)
                }
            };
        }
        ok
    };
    let follow = follow(&state, &job.served, &mut rx, t0, |d, tokens| {
        let lp = match job.top_logprobs {
            Some(_) => render::logprobs(head.kind, &tokens, &mut offset),
            None => Value::Null,
        };
        let pieces = match calls.as_mut() {
            Some(p) => p.push(&d.text),
            None => vec![CallPiece::Text(d.text.clone())],
        };
        if calls.is_some() && pieces.is_empty() && d.reasoning.is_empty() && lp.is_null() {
            return true;
        }
        send_pieces(pieces, &d.reasoning, lp)
    });
    // The client hanging up shows as `out` closing: stop waiting for the engine then, even mid-prefill.
    let result = tokio::select! {
        r = follow => r,
        _ = out.closed() => return,
    };
    match result {
        Ok(mut end) => {
            if let Some(p) = calls.as_mut() {
                let called = p.calls() > 0;
                for piece in p.finish() {
                    if let CallPiece::Text(t) = piece {
                        if !send(head.chunk(Piece::text(&t), false, Value::Null, None, usage_null))
                        {
                            return;
                        }
                    }
                }
                if called && end.finish == "stop" {
                    end.finish = "tool_calls";
                }
            }
            let piece = Piece {
                content: (head.kind == Kind::Completion).then_some(""),
                reasoning: "",
            };
            send(head.chunk(piece, false, Value::Null, Some(end.finish), usage_null));
            if job.include_usage {
                send(head.usage_chunk(&end));
            }
            let _ = out.send(Ok(SseEvent::default().data("[DONE]")));
        }
        Err(e) => {
            state.metrics.errors.fetch_add(1, Relaxed);
            send(e.body());
        }
    }
}
