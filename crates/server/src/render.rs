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

/// Identity shared by every chunk of one response.
pub struct Head {
    pub kind: Kind,
    pub id: String,
    pub created: u64,
    pub model: String,
}

pub fn usage(u: &Usage) -> Value {
    json!({
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.prompt_tokens + u.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cached_tokens},
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
    /// A whole (non-streamed) response.
    pub fn response(&self, text: String, logprobs: Value, finish: &str, u: &Usage) -> Value {
        let choice = match self.kind {
            Kind::Chat => json!({
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": logprobs,
                "finish_reason": finish,
            }),
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
            "usage": usage(u),
        })
    }

    /// One stream chunk with `text` (the chat delta also carries `role` on the first chunk).
    pub fn chunk(
        &self,
        text: Option<&str>,
        role: bool,
        logprobs: Value,
        finish: Option<&str>,
        usage_null: bool,
    ) -> Value {
        let choice = match self.kind {
            Kind::Chat => {
                let mut delta = serde_json::Map::new();
                if role {
                    delta.insert("role".into(), json!("assistant"));
                }
                if let Some(t) = text {
                    delta.insert("content".into(), json!(t));
                }
                json!({"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish})
            }
            Kind::Completion => json!({
                "index": 0,
                "text": text.unwrap_or(""),
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
    pub fn usage_chunk(&self, u: &Usage) -> Value {
        let mut c = self.chunk(None, false, Value::Null, None, false);
        c["choices"] = json!([]);
        c["usage"] = usage(u);
        c
    }
}
