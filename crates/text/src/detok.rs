//! [`Detokenizer`]: streaming token ids to text without ever emitting half a UTF-8 character.

use crate::Tokenizer;
use std::borrow::Borrow;

/// Turns a stream of token ids into text. A character whose bytes are spread over several tokens (emoji and CJK
/// through byte tokens) is held back until it is complete; bytes that can never become valid UTF-8 come out as
/// U+FFFD. It holds the tokenizer by any handle that borrows one (`&Tokenizer`, `Arc<Tokenizer>`).
///
/// ```no_run
/// # fn demo(tok: &hearth_text::Tokenizer, ids: &[u32]) {
/// let mut d = hearth_text::Detokenizer::new(tok);
/// let mut text = String::new();
/// for &id in ids {
///     text += &d.push(id);
/// }
/// text += &d.flush();
/// # }
/// ```
pub struct Detokenizer<T> {
    tok: T,
    pending: Vec<u8>,
    skip_special: bool,
}

impl<T: Borrow<Tokenizer>> Detokenizer<T> {
    /// A detokenizer that renders special tokens as their text.
    pub fn new(tok: T) -> Detokenizer<T> {
        Detokenizer {
            tok,
            pending: Vec::new(),
            skip_special: false,
        }
    }

    /// Whether control and unknown tokens (`<|im_end|>`, `<eos>`) are left out of the text.
    pub fn skip_special(mut self, skip: bool) -> Self {
        self.skip_special = skip;
        self
    }

    /// Adds one token; returns the text that is now complete (possibly empty).
    pub fn push(&mut self, id: u32) -> String {
        let tok = self.tok.borrow();
        if self.skip_special && tok.is_control_like(id) {
            return String::new();
        }
        self.pending.extend_from_slice(tok.token_bytes_ref(id));
        drain_utf8(&mut self.pending, false)
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        self.tok.borrow()
    }

    /// Returns whatever is held back, with incomplete characters as U+FFFD, and resets.
    pub fn flush(&mut self) -> String {
        drain_utf8(&mut self.pending, true)
    }
}

/// Emits the longest prefix of `pending` that is final: valid characters, and invalid sequences (as U+FFFD) that no
/// further byte can repair. An incomplete character at the end stays in `pending` unless `all`.
fn drain_utf8(pending: &mut Vec<u8>, all: bool) -> String {
    let mut out = String::new();
    let mut rest: &[u8] = pending;
    loop {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                out.push_str(s);
                rest = &[];
                break;
            }
            Err(e) => {
                let (good, bad) = rest.split_at(e.valid_up_to());
                out.push_str(&String::from_utf8_lossy(good));
                match e.error_len() {
                    Some(n) => {
                        out.push(char::REPLACEMENT_CHARACTER);
                        rest = &bad[n..];
                    }
                    None if all => {
                        out.push(char::REPLACEMENT_CHARACTER);
                        rest = &[];
                        break;
                    }
                    None => {
                        rest = bad;
                        break;
                    }
                }
            }
        }
    }
    let consumed = pending.len() - rest.len();
    pending.drain(..consumed);
    out
}

#[cfg(test)]
mod tests {
    use super::drain_utf8;

    fn feed(chunks: &[&[u8]]) -> Vec<String> {
        let mut pending = Vec::new();
        let mut outs: Vec<String> = chunks
            .iter()
            .map(|c| {
                pending.extend_from_slice(c);
                drain_utf8(&mut pending, false)
            })
            .collect();
        outs.push(drain_utf8(&mut pending, true));
        outs
    }

    #[test]
    fn partial_characters_wait() {
        let rocket = "🚀".as_bytes();
        assert_eq!(
            feed(&[b"a", &rocket[..1], &rocket[1..3], &rocket[3..], b"b"]),
            ["a", "", "", "🚀", "b", ""]
        );
    }

    #[test]
    fn hopeless_bytes_become_replacement_at_once() {
        // 0xFF is never valid; 0xE4 0x41 is a broken 3-byte start followed by 'A'.
        assert_eq!(
            feed(&[b"x\xFFy", b"\xE4A"]),
            ["x\u{FFFD}y", "\u{FFFD}A", ""]
        );
    }

    #[test]
    fn flush_reports_an_unfinished_character() {
        assert_eq!(feed(&[b"ok\xE4\xB8"]), ["ok", "\u{FFFD}"]);
    }
}
