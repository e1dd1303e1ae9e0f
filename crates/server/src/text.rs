//! The text layer over engine events: incremental detokenization, a reasoning model's thinking split from its
//! answer, and stop strings (matched across token boundaries, on the answer only, and never sent).

use hearth_engine::Step;
use hearth_text::{Detokenizer, ReasoningPart, ReasoningSplitter, Tokenizer};

/// Holds back text that could be the start of a stop string until it is clear either way.
#[derive(Debug, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    held: String,
}

impl StopMatcher {
    pub fn new(stops: Vec<String>) -> StopMatcher {
        StopMatcher {
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            held: String::new(),
        }
    }

    /// Adds `text`; returns the text that is safe to send and whether a stop string was found (the text from it on
    /// is dropped).
    pub fn push(&mut self, text: &str) -> (String, bool) {
        self.held.push_str(text);
        // Earlier pushes held no whole stop string, so the earliest match is the right cut.
        if let Some(at) = self
            .stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()))
            .min()
        {
            let out = self.held[..at].to_string();
            self.held.clear();
            return (out, true);
        }
        // Keep the longest tail that some stop string starts with.
        let keep = self
            .held
            .char_indices()
            .map(|(i, _)| i)
            .find(|&i| {
                let tail = &self.held[i..];
                self.stops.iter().any(|s| s.starts_with(tail))
            })
            .unwrap_or(self.held.len());
        let out = self.held[..keep].to_string();
        self.held.drain(..keep);
        (out, false)
    }

    /// The held text, when generation ended without a stop string.
    pub fn flush(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

/// One generated token as the API reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenInfo {
    pub text: String,
    pub bytes: Vec<u8>,
    pub logprob: f32,
    /// The most likely tokens: (text, bytes, log-probability).
    pub top: Vec<(String, Vec<u8>, f32)>,
}

/// Text produced by some tokens.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Delta {
    /// The answer (what `content` carries).
    pub text: String,
    /// A reasoning model's thinking (`reasoning_content`), when reasoning is split off.
    pub reasoning: String,
    /// Filled when log-probabilities were asked for.
    pub tokens: Vec<TokenInfo>,
}

impl Delta {
    pub fn is_empty(&self) -> bool {
        self.text.is_empty() && self.reasoning.is_empty() && self.tokens.is_empty()
    }
}

/// Text to answer and reasoning: the reasoning splitter (when the model thinks) first, then stop strings on the
/// answer only, so a stop string inside the thinking does not end the generation.
#[derive(Debug, Default)]
pub struct TextSplit {
    reasoning: Option<ReasoningSplitter>,
    stop: StopMatcher,
    /// A stop string was found: nothing more is sent.
    pub stopped: bool,
}

impl TextSplit {
    /// `reasoning`: split off `<think>…</think>`; `Some(true)` when the prompt already opened the tag.
    pub fn new(stops: Vec<String>, reasoning: Option<bool>) -> TextSplit {
        TextSplit {
            reasoning: reasoning.map(ReasoningSplitter::new),
            stop: StopMatcher::new(stops),
            stopped: false,
        }
    }

    /// Adds a piece of generated text to `out`.
    pub fn push(&mut self, piece: &str, out: &mut Delta) {
        let parts = match &mut self.reasoning {
            Some(s) => s.push(piece),
            None => vec![ReasoningPart {
                reasoning: false,
                text: piece.to_string(),
            }],
        };
        self.take(parts, out);
    }

    /// Whether the text so far ends inside the reasoning.
    pub fn thinking(&self) -> bool {
        self.reasoning.as_ref().is_some_and(|s| s.thinking())
    }

    /// The end of the text: whatever was held back goes to `out`.
    pub fn finish(&mut self, out: &mut Delta) {
        if let Some(s) = &mut self.reasoning {
            let parts = s.finish();
            self.take(parts, out);
        }
        if !self.stopped {
            out.text.push_str(&self.stop.flush());
        }
    }

    fn take(&mut self, parts: Vec<ReasoningPart>, out: &mut Delta) {
        for p in parts {
            if self.stopped {
                return;
            }
            if p.reasoning {
                out.reasoning.push_str(&p.text);
            } else {
                let (text, hit) = self.stop.push(&p.text);
                out.text.push_str(&text);
                self.stopped = hit;
            }
        }
    }
}

/// Turns a request's token stream into text deltas.
pub struct TextStream<'a> {
    tok: &'a Tokenizer,
    detok: Detokenizer<'a>,
    split: TextSplit,
    stop_ids: Vec<u32>,
    /// `<think>` and `</think>` with their ids, when reasoning is split off: written as text even where the
    /// vocabulary marks them as control tokens (which the detokenizer leaves out).
    tags: Vec<(u32, &'static str)>,
    /// Whether a stop string or end-of-generation token ended the text.
    pub stopped: bool,
    /// Tokens generated while thinking: those that start inside the reasoning (the closing tag included) or open
    /// it (usage's `reasoning_tokens`).
    pub reasoning_tokens: usize,
}

impl<'a> TextStream<'a> {
    /// `reasoning` as in [`TextSplit::new`].
    pub fn new(tok: &'a Tokenizer, stops: Vec<String>, reasoning: Option<bool>) -> TextStream<'a> {
        let tags = match reasoning {
            Some(_) => ["<think>", "</think>"]
                .into_iter()
                .filter_map(|t| tok.token_id(t).map(|id| (id, t)))
                .collect(),
            None => Vec::new(),
        };
        TextStream {
            tok,
            detok: Detokenizer::new(tok).skip_special(true),
            split: TextSplit::new(stops, reasoning),
            stop_ids: tok.eog_ids().to_vec(),
            tags,
            stopped: false,
            reasoning_tokens: 0,
        }
    }

    /// Adds one generated token. Once `stopped`, later tokens are ignored.
    pub fn push(&mut self, step: &Step) -> Delta {
        if self.stopped {
            return Delta::default();
        }
        let mut d = Delta {
            tokens: match step.logprob {
                Some(lp) => vec![self.info(step.id, lp, &step.top)],
                None => Vec::new(),
            },
            ..Delta::default()
        };
        if self.stop_ids.contains(&step.id) {
            self.stopped = true;
            let rest = self.detok.flush();
            self.split.push(&rest, &mut d);
            self.split.finish(&mut d);
            return d;
        }
        let piece = match self.tags.iter().find(|(id, _)| *id == step.id) {
            Some((_, tag)) => self.detok.flush() + tag,
            None => self.detok.push(step.id),
        };
        let was_thinking = self.split.thinking();
        self.split.push(&piece, &mut d);
        if was_thinking || self.split.thinking() {
            self.reasoning_tokens += 1;
        }
        self.stopped = self.split.stopped;
        d
    }

    /// Whatever is held back, at the end of generation.
    pub fn finish(&mut self) -> Delta {
        let mut d = Delta::default();
        if self.stopped {
            return d;
        }
        let rest = self.detok.flush();
        self.split.push(&rest, &mut d);
        self.split.finish(&mut d);
        self.stopped = self.split.stopped;
        d
    }

    fn info(&self, id: u32, logprob: f32, top: &[(u32, f32)]) -> TokenInfo {
        let piece = |id: u32| {
            let b = self.tok.token_bytes_ref(id).to_vec();
            (String::from_utf8_lossy(&b).into_owned(), b)
        };
        let (text, bytes) = piece(id);
        TokenInfo {
            text,
            bytes,
            logprob,
            top: top
                .iter()
                .map(|&(t, lp)| {
                    let (s, b) = piece(t);
                    (s, b, lp)
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Delta, StopMatcher, TextSplit};
    use crate::render::{chat_delta, Piece};
    use serde_json::Value;

    /// Feeds pieces, returns (sent text, stopped).
    fn run(stops: &[&str], pieces: &[&str]) -> (String, bool) {
        let mut m = StopMatcher::new(stops.iter().map(|s| s.to_string()).collect());
        let mut out = String::new();
        for p in pieces {
            let (t, hit) = m.push(p);
            out += &t;
            if hit {
                return (out, true);
            }
        }
        (out + &m.flush(), false)
    }

    #[test]
    fn stop_string_split_over_pieces_is_not_sent() {
        assert_eq!(
            run(&["END"], &["abc E", "N", "D more"]),
            ("abc ".into(), true)
        );
        assert_eq!(run(&["\n\n"], &["one\n", "\ntwo"]), ("one".into(), true));
    }

    #[test]
    fn partial_match_that_fails_is_sent() {
        assert_eq!(run(&["END"], &["E", "N", "x"]), ("ENx".into(), false));
        assert_eq!(run(&["END"], &["abc EN"]), ("abc EN".into(), false));
    }

    #[test]
    fn earliest_of_several_stops_wins_and_unicode_is_safe() {
        assert_eq!(run(&["é!", "b"], &["aé", "!b"]), ("a".into(), true));
        assert_eq!(run(&["ωx"], &["ωω", "y"]), ("ωωy".into(), false));
    }

    #[test]
    fn held_text_is_not_sent_early() {
        let mut m = StopMatcher::new(vec!["STOP".into()]);
        assert_eq!(m.push("go ST"), ("go ".into(), false));
        assert_eq!(m.push("O"), ("".into(), false));
        assert_eq!(m.push("P"), ("".into(), true));
    }

    /// Feeds `text` in pieces of `n` characters through the split and the chat delta mapping; returns every
    /// delta's JSON (role chunk and finish chunk left out, as the route sends them separately).
    fn chat_deltas(text: &str, n: usize, stops: &[&str], inside: bool) -> Vec<Value> {
        let mut split = TextSplit::new(stops.iter().map(|s| s.to_string()).collect(), Some(inside));
        let chars: Vec<char> = text.chars().collect();
        let mut out = Vec::new();
        let mut emit = |d: &Delta| {
            if !d.is_empty() {
                let piece = Piece {
                    content: Some(&d.text),
                    reasoning: &d.reasoning,
                };
                out.push(Value::Object(chat_delta(piece, false)));
            }
        };
        for c in chars.chunks(n) {
            let mut d = Delta::default();
            split.push(&c.iter().collect::<String>(), &mut d);
            emit(&d);
            if split.stopped {
                return out;
            }
        }
        let mut d = Delta::default();
        split.finish(&mut d);
        emit(&d);
        out
    }

    fn joined(deltas: &[Value], key: &str) -> String {
        deltas.iter().filter_map(|d| d[key].as_str()).collect()
    }

    #[test]
    fn reasoning_deltas_with_tags_split_across_pieces() {
        let text = "<think>\nIs 2 < 3? STOP is fine here.</think>\n\nYes, 2 < 3. STOP not sent";
        for n in 1..=text.chars().count() {
            let deltas = chat_deltas(text, n, &["STOP"], false);
            assert_eq!(
                joined(&deltas, "reasoning_content"),
                "\nIs 2 < 3? STOP is fine here.",
                "pieces of {n}"
            );
            assert_eq!(joined(&deltas, "content"), "Yes, 2 < 3. ", "pieces of {n}");
            for d in &deltas {
                let s = d.to_string();
                assert!(!s.contains("think>") && !s.contains("STOP not"), "{s}");
                // A delta carrying reasoning alone has no `content`; an empty delta is never sent.
                match (d.get("reasoning_content"), d.get("content")) {
                    (Some(_), Some(c)) => assert_ne!(c, "", "{s}"),
                    (None, Some(c)) => assert_ne!(c, "", "{s}"),
                    (Some(_), None) => {}
                    (None, None) => panic!("empty delta {s}"),
                }
            }
        }
    }

    #[test]
    fn reasoning_opened_by_the_prompt_and_cut_by_the_length_limit() {
        for n in 1..=6 {
            let deltas = chat_deltas("ok so 1+1=2.</think>Two.", n, &[], true);
            assert_eq!(joined(&deltas, "reasoning_content"), "ok so 1+1=2.");
            assert_eq!(joined(&deltas, "content"), "Two.");
            // Cut off while thinking: all reasoning, a held-back partial tag included.
            let deltas = chat_deltas("still thinking </thi", n, &[], true);
            assert_eq!(joined(&deltas, "reasoning_content"), "still thinking </thi");
            assert_eq!(joined(&deltas, "content"), "");
        }
        // No reasoning split (completions, or a model without `<think>`): tags are plain text.
        let mut split = TextSplit::new(vec![], None);
        let mut d = Delta::default();
        split.push("<think>a</think>b", &mut d);
        split.finish(&mut d);
        assert_eq!(
            (d.text.as_str(), d.reasoning.as_str()),
            ("<think>a</think>b", "")
        );
    }
}
