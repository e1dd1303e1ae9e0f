//! OpenAI response shapes: whole responses, stream chunks, usage and log-probabilities for both endpoints.

use crate::text::TokenInfo;
use hearth_engine::batch::Usage;
use serde_json::{json, Value};

/// Which endpoint a response is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Chat,
    Completion,
}

impl Kind {
    /// The field that holds the prompt, named by errors about it.
    pub fn prompt_param(self) -> &'static str {
        match self {
            Kind::Chat => "messages",
            Kind::Completion => "prompt",
        }
    }
}

/// Identity shared by every chunk of one response.
pub struct Head {
    pub kind: Kind,
    pub id: String,
    pub created: u64,
    pub model: String,
}

/// What one stream chunk carries: answer text (`None` only on the last chunk of a chat stream) and reasoning.
#[derive(Debug, Default, Clone, Copy)]
pub struct Piece<'a> {
    pub content: Option<&'a str>,
    pub reasoning: &'a str,
}

impl<'a> Piece<'a> {
    pub fn text(content: &'a str) -> Piece<'a> {
        Piece {
            content: Some(content),
            reasoning: "",
        }
    }
}

/// A chat chunk's `delta`: `role` on the first chunk, `reasoning_content` only when there is reasoning, `content`
/// unless the chunk carries reasoning alone.
pub fn chat_delta(piece: Piece<'_>, role: bool) -> serde_json::Map<String, Value> {
    let mut delta = serde_json::Map::new();
    if role {
        delta.insert("role".into(), json!("assistant"));
    }
    if !piece.reasoning.is_empty() {
        delta.insert("reasoning_content".into(), json!(piece.reasoning));
    }
    if let Some(t) = piece.content {
        if !t.is_empty() || piece.reasoning.is_empty() {
            delta.insert("content".into(), json!(t));
        }
    }
    delta
}

/// One tool call as `message.tool_calls[i]` (`streamed`: as a `delta.tool_calls[i]`, with its `index`).
pub fn tool_call(
    index: usize,
    id: &str,
    call: &hearth_constraint::tools::Call,
    streamed: bool,
) -> Value {
    let mut v = json!({
        "id": id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments},
    });
    if streamed {
        v["index"] = json!(index);
    }
    v
}

/// How a request ended: its finish reason and what `usage` reports.
pub struct End {
    pub finish: &'static str,
    pub usage: Usage,
    /// Of the completion tokens, those spent thinking (reasoning models; 0 otherwise).
    pub reasoning_tokens: usize,
    /// The stop string that ended the answer, if one did.
    pub stop: Option<String>,
    /// When the first token came (none when none did).
    pub first_token: Option<std::time::Instant>,
}

pub fn usage(end: &End) -> Value {
    let u = &end.usage;
    json!({
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.prompt_tokens + u.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": end.reasoning_tokens},
    })
}

/// Log-probabilities of `tokens` in the endpoint's format; `offset` is the text offset of the first token
/// (completions only).
pub fn logprobs(kind: Kind, tokens: &[TokenInfo], offset: &mut usize) -> Value {
    match kind {
        Kind::Chat => {
            let entry = |text: &str, bytes: &[u8], lp: f32| json!({"token": text, "logprob": lp, "bytes": bytes});
            json!({"content": tokens.iter().map(|t| {
                let mut e = entry(&t.text, &t.bytes, t.logprob);
                e["top_logprobs"] = t.top.iter().map(|(s, b, lp)| entry(s, b, *lp)).collect();
                e
            }).collect::<Vec<_>>()})
        }
        Kind::Completion => {
            let mut offsets = Vec::new();
            for t in tokens {
                offsets.push(*offset);
                *offset += t.text.len();
            }
            json!({
                "tokens": tokens.iter().map(|t| t.text.clone()).collect::<Vec<_>>(),
                "token_logprobs": tokens.iter().map(|t| t.logprob).collect::<Vec<_>>(),
                "top_logprobs": tokens.iter().map(|t| {
                    t.top.iter().map(|(s, _, lp)| (s.clone(), json!(lp))).collect::<serde_json::Map<_, _>>()
                }).collect::<Vec<_>>(),
                "text_offset": offsets,
            })
        }
    }
}

impl Head {
    /// A whole (non-streamed) response; `reasoning` (chat only) is left out when empty.
    pub fn response(&self, text: String, reasoning: &str, logprobs: Value, end: &End) -> Value {
        let finish = end.finish;
        let choice = match self.kind {
            Kind::Chat => {
                let mut message = json!({"role": "assistant", "content": text});
                if !reasoning.is_empty() {
                    message["reasoning_content"] = json!(reasoning);
                }
                json!({
                    "index": 0,
                    "message": message,
                    "logprobs": logprobs,
                    "finish_reason": finish,
                })
            }
            Kind::Completion => json!({
                "index": 0,
                "text": text,
                "logprobs": logprobs,
                "finish_reason": finish,
            }),
        };
        json!({
            "id": self.id,
            "object": match self.kind { Kind::Chat => "chat.completion", Kind::Completion => "text_completion" },
            "created": self.created,
            "model": self.model,
            "system_fingerprint": "hearth",
            "choices": [choice],
            "usage": usage(end),
        })
    }

    /// One stream chunk with `piece` (the chat delta also carries `role` on the first chunk).
    pub fn chunk(
        &self,
        piece: Piece<'_>,
        role: bool,
        logprobs: Value,
        finish: Option<&str>,
        usage_null: bool,
    ) -> Value {
        let choice = match self.kind {
            Kind::Chat => {
                let delta = chat_delta(piece, role);
                json!({"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish})
            }
            Kind::Completion => json!({
                "index": 0,
                "text": piece.content.unwrap_or(""),
                "logprobs": logprobs,
                "finish_reason": finish,
            }),
        };
        let mut c = json!({
            "id": self.id,
            "object": match self.kind { Kind::Chat => "chat.completion.chunk", Kind::Completion => "text_completion" },
            "created": self.created,
            "model": self.model,
            "system_fingerprint": "hearth",
            "choices": [choice],
        });
        if usage_null {
            c["usage"] = Value::Null;
        }
        c
    }

    /// The final usage chunk of `stream_options.include_usage`: no choices.
    pub fn usage_chunk(&self, end: &End) -> Value {
        let mut c = self.chunk(Piece::default(), false, Value::Null, None, false);
        c["choices"] = json!([]);
        c["usage"] = usage(end);
        c
    }
}
