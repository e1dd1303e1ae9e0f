//! The server's engine sink: it runs hearth-text's [`TextStream`] on the engine thread (so a stop string ends the
//! sequence in the engine, which reports the finish and the usage) and forwards text deltas, with the tokens'
//! log-probabilities when asked for, to the request's handler.

use hearth_engine::batch::{Event, Finish, Flow, Sink, Usage};
use hearth_engine::Step;
use hearth_text::{Delta, TextStream, Tokenizer};
use std::sync::Arc;
use tokio::sync::mpsc;

/// One generated token as the API reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenInfo {
    pub text: String,
    pub bytes: Vec<u8>,
    pub logprob: f32,
    /// The most likely tokens: (text, bytes, log-probability).
    pub top: Vec<(String, Vec<u8>, f32)>,
}

/// What the handler of one request receives.
#[derive(Debug)]
pub enum Out {
    /// One generated token: the text it made final (often empty) and, when asked for, its log-probabilities.
    Token {
        delta: Delta,
        info: Option<TokenInfo>,
    },
    /// The end, as the engine reports it: held-back text, the finish, the usage, the tokens spent thinking, and the
    /// stop string that ended the text (if one did).
    Done {
        rest: Delta,
        finish: Finish,
        usage: Usage,
        reasoning_tokens: usize,
        stop: Option<String>,
    },
    Failed(String),
}

/// Engine events through a [`TextStream`] into a tokio channel; the receiver dropping (client gone) cancels.
pub struct TextSink {
    text: TextStream<Arc<Tokenizer>>,
    tok: Arc<Tokenizer>,
    tx: mpsc::UnboundedSender<Out>,
}

impl TextSink {
    pub fn new(
        tok: Arc<Tokenizer>,
        text: TextStream<Arc<Tokenizer>>,
        tx: mpsc::UnboundedSender<Out>,
    ) -> TextSink {
        TextSink { text, tok, tx }
    }

    fn info(&self, step: &Step) -> Option<TokenInfo> {
        let piece = |id: u32| {
            let b = self.tok.token_bytes_ref(id).to_vec();
            (String::from_utf8_lossy(&b).into_owned(), b)
        };
        let logprob = step.logprob?;
        let (text, bytes) = piece(step.id);
        Some(TokenInfo {
            text,
            bytes,
            logprob,
            top: step
                .top
                .iter()
                .map(|&(t, lp)| {
                    let (s, b) = piece(t);
                    (s, b, lp)
                })
                .collect(),
        })
    }
}

impl Sink for TextSink {
    fn send(&mut self, event: Event) -> Flow {
        let out = match event {
            Event::Token(step) => Out::Token {
                delta: self.text.push(step.id),
                info: self.info(&step),
            },
            Event::Done { finish, usage, .. } => Out::Done {
                rest: self.text.finish(),
                finish,
                usage,
                reasoning_tokens: self.text.reasoning_tokens(),
                stop: self.text.stop_string().map(str::to_string),
            },
            Event::Failed(m) => Out::Failed(m),
        };
        match self.tx.send(out) {
            Err(_) => Flow::Gone,
            Ok(()) if self.text.stopped() => Flow::Stop,
            Ok(()) => Flow::Continue,
        }
    }

    fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}
