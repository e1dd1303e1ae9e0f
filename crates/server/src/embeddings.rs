//! The embedding endpoints, thin translations onto the engine's embed requests ([`Request::embed`]): OpenAI's
//! `POST /v1/embeddings` and Ollama's `POST /api/embed`. Each input is tokenized (with the model's special tokens:
//! `[CLS] … [SEP]` for BERT, BOS for a generative model), submitted as its own request so the batch engine reads
//! them side by side, and answered with the L2-normalised pooled vector from the request's `Done` event. An input
//! longer than the model's context is refused (OpenAI) or cut to fit, keeping the closing `[SEP]` (Ollama's
//! `truncate`, on by default).

use crate::error::ApiError;
use crate::models::{KeepAlive, Lease};
use crate::AppState;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use hearth_engine::batch::{Engine, Event, Flow, Request, Sink, SubmitError};
use hearth_text::Tokenizer;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;

/// Most inputs one request may embed (OpenAI's limit).
const MAX_INPUTS: usize = 2048;

/// The model an embedding request reaches, held (loaded) while the request runs. Every model access of this
/// module goes through [`target`].
struct Target {
    lease: Lease,
}

impl Target {
    fn id(&self) -> &str {
        &self.lease.id
    }
    fn engine(&self) -> &Engine {
        &self.lease.engine
    }
    fn tok(&self) -> &Tokenizer {
        &self.lease.tok
    }
}

/// The model named `name` (None: the server's default), loaded if need be, with Ollama's `keep_alive`.
async fn target(
    state: &AppState,
    name: Option<&str>,
    keep_alive: Option<&Value>,
) -> Result<Target, ApiError> {
    let keep_alive = keep_alive
        .map(|v| KeepAlive::from_json(v).map_err(|e| ApiError::invalid(e, Some("keep_alive"))))
        .transpose()?;
    Ok(Target {
        lease: state.models.get(name, keep_alive).await?,
    })
}

/// OpenAI's `input`: a string, strings, token ids, or lists of token ids.
#[derive(Deserialize)]
#[serde(untagged)]
enum Input {
    One(String),
    Many(Vec<String>),
    Ids(Vec<u32>),
    IdLists(Vec<Vec<u32>>),
}

#[derive(Deserialize)]
struct OpenAiBody {
    input: Input,
    model: Option<String>,
    encoding_format: Option<String>,
    dimensions: Option<usize>,
}

#[derive(Deserialize)]
struct OllamaBody {
    model: String,
    input: OllamaInput,
    truncate: Option<bool>,
    dimensions: Option<usize>,
    /// How long the model stays loaded after this request (Ollama's duration string or seconds).
    keep_alive: Option<Value>,
    #[serde(rename = "options")]
    _options: Option<Value>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OllamaInput {
    One(String),
    Many(Vec<String>),
}

/// Parses `body` as `T`, naming the field that is wrong.
fn parse<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        ApiError::invalid(
            format!("Invalid request body at '{path}': {}", e.inner()),
            Some(&path),
        )
    })
}

/// `POST /v1/embeddings`.
pub async fn openai(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    match openai_inner(&state, &body).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn openai_inner(state: &AppState, body: &Bytes) -> Result<Value, ApiError> {
    let b: OpenAiBody = parse(body)?;
    let t = target(state, b.model.as_deref(), None).await?;
    let base64 = match b.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::invalid(
                format!("encoding_format must be 'float' or 'base64', not '{other}'"),
                Some("encoding_format"),
            ))
        }
    };
    let prompts = match b.input {
        Input::One(s) => vec![encode(&t, &s)?],
        Input::Many(v) => v.iter().map(|s| encode(&t, s)).collect::<Result<_, _>>()?,
        Input::Ids(ids) => vec![ids],
        Input::IdLists(v) => v,
    };
    let (vectors, n_tokens) = embed_all(&t, prompts, false, b.dimensions, "input").await?;
    let data: Vec<Value> = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let embedding = if base64 {
                Value::String(base64_f32(v))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    Ok(json!({
        "object": "list",
        "data": data,
        "model": t.id(),
        "usage": {"prompt_tokens": n_tokens, "total_tokens": n_tokens},
    }))
}

/// `POST /api/embed`.
pub async fn ollama(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    let t0 = Instant::now();
    match ollama_inner(&state, &body, t0).await {
        Ok(v) => Json(v).into_response(),
        // Ollama's error shape: {"error": "..."}.
        Err(e) => (e.status, Json(json!({"error": e.message}))).into_response(),
    }
}

async fn ollama_inner(state: &AppState, body: &Bytes, t0: Instant) -> Result<Value, ApiError> {
    let b: OllamaBody = parse(body)?;
    let t = target(state, Some(&b.model), b.keep_alive.as_ref()).await?;
    let texts = match b.input {
        OllamaInput::One(s) => vec![s],
        OllamaInput::Many(v) => v,
    };
    let prompts = texts
        .iter()
        .map(|s| encode(&t, s))
        .collect::<Result<Vec<_>, _>>()?;
    let truncate = b.truncate.unwrap_or(true);
    let (vectors, n_tokens) = embed_all(&t, prompts, truncate, b.dimensions, "input").await?;
    let ns = t0.elapsed().as_nanos() as u64;
    Ok(json!({
        "model": b.model,
        "embeddings": vectors,
        "total_duration": ns,
        "load_duration": 0,
        "prompt_eval_count": n_tokens,
    }))
}

/// A text's ids with the model's special tokens (`[CLS] … [SEP]`, or BOS where the model wants one).
fn encode(t: &Target, text: &str) -> Result<Vec<u32>, ApiError> {
    t.tok()
        .encode(text, true, false)
        .map_err(|e| ApiError::invalid(format!("Cannot tokenize the input: {e}"), Some("input")))
}

/// Embeds every prompt (cut to the model's limit when `truncate`), submitted together; returns the vectors in
/// order and the tokens read.
async fn embed_all(
    t: &Target,
    mut prompts: Vec<Vec<u32>>,
    truncate: bool,
    dimensions: Option<usize>,
    param: &str,
) -> Result<(Vec<Vec<f32>>, usize), ApiError> {
    if prompts.is_empty() || prompts.len() > MAX_INPUTS {
        return Err(ApiError::invalid(
            format!(
                "input must hold 1 to {MAX_INPUTS} items, not {}",
                prompts.len()
            ),
            Some(param),
        ));
    }
    let limit = t.engine().max_embed_tokens();
    for p in prompts.iter_mut().filter(|p| truncate && p.len() > limit) {
        // Keep the closing token the tokenizer added ([SEP]), as sentence-transformers' truncation does.
        let last = p.last().copied().filter(|_| t.tok().adds_eos());
        p.truncate(limit);
        if let (Some(l), Some(slot)) = (last, p.last_mut()) {
            *slot = l;
        }
    }
    let mut rxs = Vec::with_capacity(prompts.len());
    for p in &prompts {
        let (tx, rx) = mpsc::unbounded_channel();
        let req = Request {
            prompt: p.clone(),
            embed: true,
            ..Request::default()
        };
        t.engine()
            .submit(req, Box::new(ChannelSink(tx)))
            .map_err(|e| submit_error(e, t.id(), param))?;
        rxs.push(rx);
    }
    let mut out = Vec::with_capacity(rxs.len());
    for mut rx in rxs {
        loop {
            match rx.recv().await {
                Some(Event::Done {
                    embedding: Some(v), ..
                }) => {
                    out.push(v);
                    break;
                }
                Some(Event::Failed(m)) => return Err(ApiError::internal(m)),
                Some(_) => continue,
                None => return Err(ApiError::unavailable("The engine stopped")),
            }
        }
    }
    if let Some(d) = dimensions {
        let n = out.first().map_or(0, Vec::len);
        if d != n {
            return Err(ApiError::invalid(
                format!(
                    "This model's embeddings have {n} dimensions; dimensions {d} is not supported"
                ),
                Some("dimensions"),
            ));
        }
    }
    Ok((out, prompts.iter().map(Vec::len).sum()))
}

fn submit_error(e: SubmitError, model: &str, param: &str) -> ApiError {
    match e {
        SubmitError::QueueFull { max_queued } => ApiError::queue_full(max_queued),
        SubmitError::Stopped => ApiError::unavailable("The server is shutting down"),
        SubmitError::TooLong {
            prompt_tokens,
            n_ctx,
            ..
        } => ApiError::invalid(
            format!(
                "This model's maximum input length is {n_ctx} tokens, but an input has {prompt_tokens} tokens; \
                 shorten it (Ollama's truncate cuts it to fit)"
            ),
            Some(param),
        ),
        SubmitError::EmbeddingOnly => ApiError::internal(format!("{model}: {e}")),
        e @ (SubmitError::EmptyPrompt | SubmitError::BadToken { .. }) => {
            ApiError::invalid(format!("Invalid input: {e}"), Some(param))
        }
    }
}

/// The engine's events into a channel; a dropped receiver (the client went away) cancels the request.
struct ChannelSink(mpsc::UnboundedSender<Event>);

impl Sink for ChannelSink {
    fn send(&mut self, event: Event) -> Flow {
        match self.0.send(event) {
            Ok(()) => Flow::Continue,
            Err(_) => Flow::Gone,
        }
    }

    fn is_closed(&self) -> bool {
        self.0.is_closed()
    }
}

/// OpenAI's `encoding_format: "base64"`: the little-endian f32 bytes in standard base64.
fn base64_f32(v: &[f32]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    let mut s = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            s.push(if i <= c.len() {
                A[(n >> shift) as usize & 63] as char
            } else {
                '='
            });
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Python's `base64.b64encode(struct.pack('<3f', 1.0, -2.5, 0.1))`.
    #[test]
    fn base64_is_the_standard_alphabet_with_padding() {
        assert_eq!(base64_f32(&[1.0, -2.5, 0.1]), "AACAPwAAIMDNzMw9");
        assert_eq!(base64_f32(&[1.0]), "AACAPw==");
    }
}
