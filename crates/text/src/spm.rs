//! SentencePiece vocabularies (`tokenizer.ggml.model = "llama"`, e.g. Gemma) encoded the way llama.cpp does:
//! start from the characters of the text, repeatedly merge the adjacent pair whose concatenation is the
//! highest-scoring normal token (the leftmost pair on ties), then emit each remaining piece as its token, or as
//! `<0xXX>` byte tokens when it is not one.
//!
//! No merge table is built: a pair is looked up in the vocabulary when it becomes adjacent. (Deriving a BPE merge
//! list from the scores instead costs Gemma 3's 262k-token vocabulary about half a million merges, a second and a
//! half to build and over a hundred MiB to hold.)

use crate::vocab::TokenType;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

pub(crate) struct Spm {
    /// Token ids sorted by piece text, for lookups by binary search.
    by_text: Vec<u32>,
    scores: Vec<f32>,
    /// Whether a token may be formed by merging (normal tokens only, as SentencePiece does).
    mergeable: Vec<bool>,
    /// `<0xXX>` token per byte.
    byte_token: Vec<Option<u32>>,
    unk: Option<u32>,
}

/// A candidate merge of symbols `left` and `right` (adjacent), `len` bytes long.
#[derive(PartialEq)]
struct Bigram {
    score: f32,
    left: usize,
    right: usize,
    len: usize,
}

impl Eq for Bigram {}

impl Ord for Bigram {
    /// Higher score first, then the leftmost.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then(other.left.cmp(&self.left))
    }
}

impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A piece of the text being merged: bytes `start..start + len`, linked to its neighbours.
#[derive(Clone, Copy)]
struct Symbol {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

impl Spm {
    pub(crate) fn new(
        pieces: &[String],
        types: &[TokenType],
        scores: &[f32],
        unk: Option<u32>,
    ) -> Spm {
        let mut by_text: Vec<u32> = (0..pieces.len() as u32).collect();
        by_text.sort_unstable_by(|&a, &b| pieces[a as usize].cmp(&pieces[b as usize]));
        let mut byte_token = vec![None; 256];
        for (i, p) in pieces.iter().enumerate() {
            if types[i] == TokenType::Byte {
                if let Some(b) = p
                    .strip_prefix("<0x")
                    .and_then(|h| h.strip_suffix('>'))
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    byte_token[b as usize] = Some(i as u32);
                }
            }
        }
        Spm {
            by_text,
            scores: scores.to_vec(),
            mergeable: types.iter().map(|t| *t == TokenType::Normal).collect(),
            byte_token,
            unk,
        }
    }

    /// The id of the token spelled `text`.
    pub(crate) fn find(&self, pieces: &[String], text: &str) -> Option<u32> {
        self.by_text
            .binary_search_by(|&id| pieces[id as usize].as_str().cmp(text))
            .ok()
            .map(|i| self.by_text[i])
    }

    /// Appends the ids of `text` (spaces already replaced by `▁`) to `out`.
    pub(crate) fn encode(&self, pieces: &[String], text: &str, out: &mut Vec<u32>) {
        let mut symbols: Vec<Symbol> = text
            .char_indices()
            .enumerate()
            .map(|(i, (start, c))| Symbol {
                start,
                len: c.len_utf8(),
                prev: i.checked_sub(1),
                next: None,
            })
            .collect();
        let n = symbols.len();
        for (i, s) in symbols.iter_mut().enumerate() {
            s.next = (i + 1 < n).then_some(i + 1);
        }
        let mut queue = BinaryHeap::new();
        let try_pair = |symbols: &[Symbol],
                        queue: &mut BinaryHeap<Bigram>,
                        l: Option<usize>,
                        r: Option<usize>| {
            let (Some(l), Some(r)) = (l, r) else { return };
            let (a, b) = (symbols[l], symbols[r]);
            let piece = &text[a.start..b.start + b.len];
            if let Some(id) = self
                .find(pieces, piece)
                .filter(|&id| self.mergeable[id as usize])
            {
                queue.push(Bigram {
                    score: self.scores.get(id as usize).copied().unwrap_or(0.0),
                    left: l,
                    right: r,
                    len: piece.len(),
                });
            }
        };
        for i in 1..n {
            try_pair(&symbols, &mut queue, Some(i - 1), Some(i));
        }
        while let Some(bg) = queue.pop() {
            let (l, r) = (symbols[bg.left], symbols[bg.right]);
            // Stale: one side was merged into something else since this pair was queued.
            if l.len == 0 || r.len == 0 || l.len + r.len != bg.len || l.next != Some(bg.right) {
                continue;
            }
            symbols[bg.left].len += r.len;
            symbols[bg.right].len = 0;
            symbols[bg.left].next = r.next;
            if let Some(nx) = r.next {
                symbols[nx].prev = Some(bg.left);
            }
            try_pair(&symbols, &mut queue, symbols[bg.left].prev, Some(bg.left));
            try_pair(&symbols, &mut queue, Some(bg.left), symbols[bg.left].next);
        }
        let mut at = (n > 0).then_some(0);
        while let Some(i) = at {
            let s = symbols[i];
            let piece = &text[s.start..s.start + s.len];
            match self.find(pieces, piece) {
                Some(id) => out.push(id),
                None => out.extend(
                    piece
                        .bytes()
                        .filter_map(|b| self.byte_token[b as usize].or(self.unk)),
                ),
            }
            at = s.next;
        }
    }
}
