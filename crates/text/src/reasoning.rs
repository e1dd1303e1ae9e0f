//! Separating a reasoning model's thinking (`<think>…</think>`, DeepSeek-R1 and Qwen3) from its answer, as text
//! streams in: the tags may arrive split across pieces, and the chat template may already have opened `<think>` in
//! the prompt, so the output starts inside the reasoning.
//!
//! ```
//! use hearth_text::ReasoningSplitter;
//! let mut s = ReasoningSplitter::new(false);
//! let mut parts = s.push("<thi");
//! parts.extend(s.push("nk>Let me see.</th"));
//! parts.extend(s.push("ink>\n\nParis."));
//! parts.extend(s.finish());
//! let reasoning: String = parts.iter().filter(|p| p.reasoning).map(|p| p.text.as_str()).collect();
//! let answer: String = parts.iter().filter(|p| !p.reasoning).map(|p| p.text.as_str()).collect();
//! assert_eq!((reasoning.as_str(), answer.as_str()), ("Let me see.", "Paris."));
//! ```

const OPEN: &str = "<think>";
const CLOSE: &str = "</think>";

/// A run of text that is reasoning or answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReasoningPart {
    pub reasoning: bool,
    pub text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing but whitespace seen: an opening tag may still come.
    Start,
    Reasoning,
    /// Just after `</think>`: whitespace here is dropped.
    AfterClose,
    Answer,
}

/// Splits streamed text into reasoning and answer.
#[derive(Debug, Clone)]
pub struct ReasoningSplitter {
    state: State,
    /// Text held back: it may be the start of a tag.
    held: String,
}

impl ReasoningSplitter {
    /// `inside`: the prompt already opened `<think>` (the template ends with it), so output starts as reasoning.
    pub fn new(inside: bool) -> ReasoningSplitter {
        ReasoningSplitter {
            state: if inside {
                State::Reasoning
            } else {
                State::Start
            },
            held: String::new(),
        }
    }

    /// Whether the text so far ends inside the reasoning (an opened `<think>` not yet closed).
    pub fn thinking(&self) -> bool {
        self.state == State::Reasoning
    }

    /// Whether a rendered prompt leaves the model inside an open `<think>`.
    pub fn prompt_opens_reasoning(prompt: &str) -> bool {
        let p = prompt.trim_end();
        p.ends_with(OPEN) && p.rfind(OPEN) > p.rfind(CLOSE)
    }

    /// Feeds the next piece of text; returns what is now certain.
    pub fn push(&mut self, text: &str) -> Vec<ReasoningPart> {
        self.held.push_str(text);
        let mut out = Vec::new();
        loop {
            match self.state {
                State::Start => {
                    let t = self.held.trim_start();
                    if let Some(rest) = t.strip_prefix(OPEN) {
                        self.held = rest.to_string();
                        self.state = State::Reasoning;
                    } else if OPEN.starts_with(t) {
                        return out; // whitespace, or part of the tag: wait
                    } else {
                        self.state = State::Answer;
                    }
                }
                State::Reasoning => match self.held.find(CLOSE) {
                    Some(i) => {
                        emit(&mut out, true, &self.held[..i]);
                        self.held = self.held[i + CLOSE.len()..].to_string();
                        self.state = State::AfterClose;
                    }
                    None => {
                        // Keep back the longest tail that could begin `</think>`.
                        let keep = (1..CLOSE.len())
                            .rev()
                            .find(|&n| self.held.ends_with(&CLOSE[..n]))
                            .unwrap_or(0);
                        let cut = self.held.len() - keep;
                        emit(&mut out, true, &self.held[..cut]);
                        self.held.drain(..cut);
                        return out;
                    }
                },
                State::AfterClose => {
                    let t = self.held.trim_start();
                    if t.is_empty() {
                        self.held.clear();
                        return out;
                    }
                    self.held = t.to_string();
                    self.state = State::Answer;
                }
                State::Answer => {
                    emit(&mut out, false, &self.held);
                    self.held.clear();
                    return out;
                }
            }
        }
    }

    /// The end of the stream: whatever was held back comes out as what it was part of.
    pub fn finish(&mut self) -> Vec<ReasoningPart> {
        let held = std::mem::take(&mut self.held);
        let mut out = Vec::new();
        match self.state {
            State::Reasoning => emit(&mut out, true, &held),
            State::Start | State::Answer => emit(&mut out, false, &held),
            State::AfterClose => {}
        }
        out
    }
}

fn emit(out: &mut Vec<ReasoningPart>, reasoning: bool, text: &str) {
    if !text.is_empty() {
        out.push(ReasoningPart {
            reasoning,
            text: text.to_string(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `text` in pieces of `n` characters; returns (reasoning, answer).
    fn split(text: &str, n: usize, inside: bool) -> (String, String) {
        let mut s = ReasoningSplitter::new(inside);
        let chars: Vec<char> = text.chars().collect();
        let mut parts = Vec::new();
        for c in chars.chunks(n) {
            parts.extend(s.push(&c.iter().collect::<String>()));
        }
        parts.extend(s.finish());
        let pick = |r: bool| {
            parts
                .iter()
                .filter(|p| p.reasoning == r)
                .map(|p| p.text.as_str())
                .collect()
        };
        (pick(true), pick(false))
    }

    #[test]
    fn tags_split_anywhere_are_found() {
        let text = "<think>\nFirst, 2 < 3 and </thin is not a tag.\n</think>\n\nThe answer is 5.";
        for n in 1..=text.len() {
            let (r, a) = split(text, n, false);
            assert_eq!(
                r, "\nFirst, 2 < 3 and </thin is not a tag.\n",
                "pieces of {n}"
            );
            assert_eq!(a, "The answer is 5.", "pieces of {n}");
        }
    }

    #[test]
    fn template_opened_reasoning_and_no_reasoning() {
        assert_eq!(
            split("ok so 1+1=2.</think>Two.", 3, true),
            ("ok so 1+1=2.".into(), "Two.".into())
        );
        assert_eq!(
            split("  Hello <think> there", 2, false),
            (String::new(), "  Hello <think> there".into())
        );
        assert_eq!(split("<thi", 2, false), (String::new(), "<thi".into()));
        // Cut off while thinking: all of it is reasoning, none is lost.
        assert_eq!(
            split("<think>abc </thi", 1, false),
            ("abc </thi".into(), String::new())
        );
    }

    #[test]
    fn prompt_detection() {
        assert!(ReasoningSplitter::prompt_opens_reasoning(
            "<|Assistant|><think>\n"
        ));
        assert!(!ReasoningSplitter::prompt_opens_reasoning(
            "<think>a</think>\nHi"
        ));
        assert!(!ReasoningSplitter::prompt_opens_reasoning(
            "<|im_start|>assistant\n"
        ));
    }
}
