//! [`TextStream`]: the one text layer between generated token ids and what a front-end shows — incremental
//! detokenizing, a reasoning model's thinking split from its answer, and stop strings matched across token
//! boundaries. `hearth run` and the server both feed it the engine's tokens (inside their engine sinks, so a stop
//! string ends the sequence in the engine, which then reports the finish and the usage).
//!
//! ```no_run
//! # fn demo(tok: &hearth_text::Tokenizer, ids: &[u32]) {
//! use hearth_text::{Reasoning, TextStream};
//! let mut s = TextStream::new(tok, vec!["\n\n".into()], Reasoning::Off);
//! let mut answer = String::new();
//! for &id in ids {
//!     answer += &s.push(id).text;
//!     if s.stopped() {
//!         break; // tell the engine: the sequence is complete
//!     }
//! }
//! answer += &s.finish().text;
//! # }
//! ```

use crate::{Detokenizer, ReasoningPart, ReasoningSplitter, Tokenizer};
use std::borrow::Borrow;

/// Whether (and how) a reasoning model's `<think>…</think>` is split off from the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reasoning {
    /// No split: the tags are plain text (completions, models without a `<think>` token).
    Off,
    /// Split; the output starts in the answer (a `<think>` it opens starts the reasoning).
    Split,
    /// Split; the prompt already opened `<think>`, so the output starts inside the reasoning.
    Inside,
}

impl Reasoning {
    /// The rule for a chat answer: split only when the vocabulary has `<think>`, starting inside the reasoning
    /// when the rendered prompt leaves it open.
    pub fn for_chat(tok: &Tokenizer, rendered_prompt: &str) -> Reasoning {
        match tok.token_id("<think>") {
            None => Reasoning::Off,
            Some(_) if ReasoningSplitter::prompt_opens_reasoning(rendered_prompt) => {
                Reasoning::Inside
            }
            Some(_) => Reasoning::Split,
        }
    }
}

/// Text produced by some tokens.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Delta {
    /// The answer (what the API's `content` carries, what `hearth run` prints on stdout).
    pub text: String,
    /// A reasoning model's thinking, when reasoning is split off.
    pub reasoning: String,
}

impl Delta {
    pub fn is_empty(&self) -> bool {
        self.text.is_empty() && self.reasoning.is_empty()
    }

    /// Appends `other`.
    pub fn extend(&mut self, other: Delta) {
        self.text.push_str(&other.text);
        self.reasoning.push_str(&other.reasoning);
    }
}

/// Turns one sequence's generated token ids into text deltas. End-of-generation tokens produce no text, control
/// tokens (`<|im_start|>`, `<start_of_turn>`) neither, except `<think>` and `</think>` when reasoning is split off.
/// Once a stop string is found in the answer, [`TextStream::stopped`] is true and later tokens are ignored.
pub struct TextStream<T> {
    detok: Detokenizer<T>,
    split: TextSplit,
    /// `<think>` and `</think>` with their ids, when reasoning is split off: written as text even where the
    /// vocabulary marks them as control tokens (which the detokenizer leaves out).
    tags: Vec<(u32, &'static str)>,
    reasoning_tokens: usize,
}

impl<T: Borrow<Tokenizer>> TextStream<T> {
    /// A stream over `tok` (any handle: `&Tokenizer`, `Arc<Tokenizer>`); empty `stops` are ignored.
    pub fn new(tok: T, stops: Vec<String>, reasoning: Reasoning) -> TextStream<T> {
        let tags = match reasoning {
            Reasoning::Off => Vec::new(),
            Reasoning::Split | Reasoning::Inside => ["<think>", "</think>"]
                .into_iter()
                .filter_map(|t| tok.borrow().token_id(t).map(|id| (id, t)))
                .collect(),
        };
        TextStream {
            detok: Detokenizer::new(tok).skip_special(true),
            split: TextSplit::new(stops, reasoning),
            tags,
            reasoning_tokens: 0,
        }
    }

    /// Adds one generated token; returns the text that is now final.
    pub fn push(&mut self, id: u32) -> Delta {
        let mut d = Delta::default();
        if self.split.stopped || self.detok.tokenizer().is_eog(id) {
            return d;
        }
        let piece = match self.tags.iter().find(|(t, _)| *t == id) {
            Some((_, tag)) => self.detok.flush() + tag,
            None => self.detok.push(id),
        };
        let was_thinking = self.split.thinking();
        self.split.push(&piece, &mut d);
        if was_thinking || self.split.thinking() {
            self.reasoning_tokens += 1;
        }
        d
    }

    /// Whether a stop string was found: the sequence is complete, nothing more is sent.
    pub fn stopped(&self) -> bool {
        self.split.stopped
    }

    /// The stop string that ended the text, once [`TextStream::stopped`].
    pub fn stop_string(&self) -> Option<&str> {
        self.split.stop.matched.as_deref()
    }

    /// Whatever was held back, at the end of generation (nothing after a stop string).
    pub fn finish(&mut self) -> Delta {
        let mut d = Delta::default();
        if !self.split.stopped {
            let rest = self.detok.flush();
            self.split.push(&rest, &mut d);
            self.split.finish(&mut d);
        }
        d
    }

    /// Tokens generated while thinking: those that start inside the reasoning (the closing tag included) or open
    /// it (the API's `reasoning_tokens`).
    pub fn reasoning_tokens(&self) -> usize {
        self.reasoning_tokens
    }
}

/// Holds back text that could be the start of a stop string until it is clear either way.
#[derive(Debug, Default)]
struct StopMatcher {
    stops: Vec<String>,
    held: String,
    /// The stop string that was found.
    matched: Option<String>,
}

impl StopMatcher {
    fn new(stops: Vec<String>) -> StopMatcher {
        StopMatcher {
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            held: String::new(),
            matched: None,
        }
    }

    /// Adds `text`; returns the text that is safe to send and whether a stop string was found (the text from it on
    /// is dropped).
    fn push(&mut self, text: &str) -> (String, bool) {
        self.held.push_str(text);
        // Earlier pushes held no whole stop string, so the earliest match is the right cut.
        if let Some((at, stop)) = self
            .stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()).map(|at| (at, s)))
            .min_by_key(|&(at, _)| at)
        {
            self.matched = Some(stop.clone());
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
    fn flush(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

/// Text to answer and reasoning: the reasoning splitter (when the model thinks) first, then stop strings on the
/// answer only, so a stop string inside the thinking does not end the generation.
#[derive(Debug)]
struct TextSplit {
    reasoning: Option<ReasoningSplitter>,
    stop: StopMatcher,
    /// A stop string was found: nothing more is sent.
    stopped: bool,
}

impl TextSplit {
    fn new(stops: Vec<String>, reasoning: Reasoning) -> TextSplit {
        TextSplit {
            reasoning: match reasoning {
                Reasoning::Off => None,
                Reasoning::Split => Some(ReasoningSplitter::new(false)),
                Reasoning::Inside => Some(ReasoningSplitter::new(true)),
            },
            stop: StopMatcher::new(stops),
            stopped: false,
        }
    }

    /// Adds a piece of generated text to `out`.
    fn push(&mut self, piece: &str, out: &mut Delta) {
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
    fn thinking(&self) -> bool {
        self.reasoning.as_ref().is_some_and(|s| s.thinking())
    }

    /// The end of the text: whatever was held back goes to `out`.
    fn finish(&mut self, out: &mut Delta) {
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

#[cfg(test)]
mod tests {
    use super::{Delta, Reasoning, StopMatcher, TextSplit};

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
        // The stop string reported is the one found earliest in the text, not the first in the list.
        let mut m = StopMatcher::new(vec!["b".into(), "é!".into()]);
        assert_eq!(m.push("aé!b"), ("a".into(), true));
        assert_eq!(m.matched.as_deref(), Some("é!"));
    }

    #[test]
    fn held_text_is_not_sent_early() {
        let mut m = StopMatcher::new(vec!["STOP".into()]);
        assert_eq!(m.push("go ST"), ("go ".into(), false));
        assert_eq!(m.push("O"), ("".into(), false));
        assert_eq!(m.push("P"), ("".into(), true));
    }

    /// Feeds `text` in pieces of `n` characters through the split; returns every non-empty delta.
    fn deltas(text: &str, n: usize, stops: &[&str], reasoning: Reasoning) -> Vec<Delta> {
        let mut split = TextSplit::new(stops.iter().map(|s| s.to_string()).collect(), reasoning);
        let chars: Vec<char> = text.chars().collect();
        let mut out = Vec::new();
        for c in chars.chunks(n) {
            let mut d = Delta::default();
            split.push(&c.iter().collect::<String>(), &mut d);
            out.push(d);
            if split.stopped {
                break;
            }
        }
        let mut d = Delta::default();
        split.finish(&mut d);
        out.push(d);
        out.retain(|d| !d.is_empty());
        out
    }

    fn joined(deltas: &[Delta]) -> (String, String) {
        let mut all = Delta::default();
        deltas.iter().for_each(|d| all.extend(d.clone()));
        (all.reasoning, all.text)
    }

    #[test]
    fn reasoning_with_tags_split_across_pieces_and_a_stop_string_only_in_the_answer() {
        let text = "<think>\nIs 2 < 3? STOP is fine here.</think>\n\nYes, 2 < 3. STOP not sent";
        for n in 1..=text.chars().count() {
            let d = deltas(text, n, &["STOP"], Reasoning::Split);
            assert_eq!(
                joined(&d),
                (
                    "\nIs 2 < 3? STOP is fine here.".into(),
                    "Yes, 2 < 3. ".into()
                ),
                "pieces of {n}"
            );
            for d in &d {
                assert!(!format!("{d:?}").contains("think>"), "{d:?}");
            }
        }
    }

    #[test]
    fn reasoning_opened_by_the_prompt_and_cut_by_the_length_limit() {
        for n in 1..=6 {
            let d = deltas("ok so 1+1=2.</think>Two.", n, &[], Reasoning::Inside);
            assert_eq!(joined(&d), ("ok so 1+1=2.".into(), "Two.".into()));
            // Cut off while thinking: all reasoning, a held-back partial tag included.
            let d = deltas("still thinking </thi", n, &[], Reasoning::Inside);
            assert_eq!(joined(&d), ("still thinking </thi".into(), "".into()));
        }
        // No reasoning split (completions, or a model without `<think>`): tags are plain text.
        let d = deltas("<think>a</think>b", 3, &[], Reasoning::Off);
        assert_eq!(joined(&d), ("".into(), "<think>a</think>b".into()));
    }
}
