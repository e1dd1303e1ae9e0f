//! The text layer over engine events: incremental detokenization and stop strings (matched across token
//! boundaries and never sent).

use hearth_engine::Step;
use hearth_text::{Detokenizer, Tokenizer};

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
#[derive(Debug, Clone)]
pub struct TokenInfo {
    pub text: String,
    pub bytes: Vec<u8>,
    pub logprob: f32,
    /// The most likely tokens: (text, bytes, log-probability).
    pub top: Vec<(String, Vec<u8>, f32)>,
}

/// Text produced by some tokens.
#[derive(Debug, Default, Clone)]
pub struct Delta {
    pub text: String,
    /// Filled when log-probabilities were asked for.
    pub tokens: Vec<TokenInfo>,
}

/// Turns a request's token stream into text deltas.
pub struct TextStream<'a> {
    tok: &'a Tokenizer,
    detok: Detokenizer<'a>,
    stop: StopMatcher,
    stop_ids: Vec<u32>,
    /// Whether a stop string or end-of-generation token ended the text.
    pub stopped: bool,
}

impl<'a> TextStream<'a> {
    pub fn new(tok: &'a Tokenizer, stops: Vec<String>) -> TextStream<'a> {
        TextStream {
            tok,
            detok: Detokenizer::new(tok).skip_special(true),
            stop: StopMatcher::new(stops),
            stop_ids: tok.eog_ids().to_vec(),
            stopped: false,
        }
    }

    /// Adds one generated token. Once `stopped`, later tokens are ignored.
    pub fn push(&mut self, step: &Step) -> Delta {
        if self.stopped {
            return Delta::default();
        }
        let tokens = match step.logprob {
            Some(lp) => vec![self.info(step.id, lp, &step.top)],
            None => Vec::new(),
        };
        if self.stop_ids.contains(&step.id) {
            self.stopped = true;
            let mut text = self.detok.flush();
            text = self.stop.push(&text).0 + &self.stop.flush();
            return Delta { text, tokens };
        }
        let piece = self.detok.push(step.id);
        let (text, hit) = self.stop.push(&piece);
        self.stopped = hit;
        Delta { text, tokens }
    }

    /// Whatever is held back, at the end of generation.
    pub fn finish(&mut self) -> String {
        if self.stopped {
            return String::new();
        }
        let rest = self.detok.flush();
        let (text, hit) = self.stop.push(&rest);
        self.stopped = hit;
        if hit {
            text
        } else {
            text + &self.stop.flush()
        }
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
    use super::StopMatcher;

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
}
