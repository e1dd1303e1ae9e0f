//! Prompt-lookup speculation: no draft model. A decoding sequence proposes the tokens that followed the latest
//! earlier occurrence of its last few tokens (an n-gram of its own prompt or output), the scheduler feeds them after
//! its pending token in the same forward pass, and samples every position in order, keeping proposals while the
//! sampled token equals the proposal (see `scheduler::sample_run`).
//!
//! Why the output does not change: a sequence's logits at a position depend only on its tokens up to that position
//! (the forward pass is exact per token whatever the batch, and the verify rows are ordinary rows of a
//! multi-token step), so row `j` is what sequential decoding would compute after accepting `j` proposals; the
//! sampler draws there exactly as it would sequentially (same RNG state, same history), and the first draw that
//! differs from the proposal is the token sequential decoding produces. Nothing rejected is ever sent, sampled or
//! consumed by a grammar: the KV of rejected positions is truncated.
//!
//! ```
//! use hearth_engine::batch::propose;
//! // "... 7 8 9 5 6" ends with "5 6", seen before followed by "7 8 9".
//! let ctx = [1, 5, 6, 7, 8, 9, 5, 6];
//! assert_eq!(propose(&ctx, 1..=3, 4), [7, 8, 9, 5]);
//! ```

use std::ops::RangeInclusive;

/// Most tokens a sequence feeds in a verify step (pending plus proposed): one block of the attention's queries
/// (`attention::BLOCK_Q`), so that a verify step splits the attention work exactly as a decode step does.
pub(super) const MAX_VERIFY: usize = 16;

/// How the engine speculates by prompt lookup ([`BatchConfig::lookup`](super::BatchConfig::lookup)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    /// Most tokens proposed per step (0: off). The cap adapts per sequence: it halves after a proposal is rejected
    /// at its first token and doubles back after one is accepted whole.
    pub max_draft: usize,
    /// Lengths of the n-gram looked up, longest tried first.
    pub ngram: RangeInclusive<usize>,
}

impl Lookup {
    /// Speculation off.
    pub const OFF: Lookup = Lookup {
        max_draft: 0,
        ngram: 2..=4,
    };

    /// `max_draft` tokens per step at most, matching n-grams of 2 to 4 tokens.
    pub fn with_max_draft(max_draft: usize) -> Lookup {
        Lookup {
            max_draft,
            ..Lookup::OFF
        }
    }

    pub fn enabled(&self) -> bool {
        self.max_draft > 0
    }
}

/// On, up to 8 tokens per step: on copy-heavy prompts 1.3 to 2.5 times the tokens per second of plain decoding, and
/// no slower where nothing is copied (proposals come only from a recurring n-gram, and the cap adapts) — see
/// `docs/bench.md`.
impl Default for Lookup {
    fn default() -> Self {
        Lookup::with_max_draft(8)
    }
}

/// Up to `max` tokens continuing `ctx`: for the longest `n` in `ngram` whose last `n` tokens occurred earlier in
/// `ctx`, the tokens that followed their latest earlier occurrence. Empty when no n-gram recurs (or `max` is 0).
pub fn propose(ctx: &[u32], ngram: RangeInclusive<usize>, max: usize) -> Vec<u32> {
    if max == 0 {
        return Vec::new();
    }
    let len = ctx.len();
    for n in ngram.rev().filter(|&n| n > 0 && n < len) {
        let key = &ctx[len - n..];
        // Latest start i < len - n (an occurrence ending before the key's own end).
        if let Some(i) = (0..len - n).rev().find(|&i| &ctx[i..i + n] == key) {
            let from = i + n;
            return ctx[from..len.min(from + max)].to_vec();
        }
    }
    Vec::new()
}

/// A sequence's draft cap after a verify pass of `proposed` tokens of which `accepted` were kept.
pub(super) fn next_cap(cap: usize, max_draft: usize, proposed: usize, accepted: usize) -> usize {
    if proposed == 0 {
        cap
    } else if accepted == proposed {
        (cap * 2).clamp(1, max_draft)
    } else if accepted == 0 {
        (cap / 2).max(1)
    } else {
        cap
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proposes_what_followed_the_latest_occurrence() {
        // "3 4" occurs at 1 (followed by 5) and at 5 (followed by 9): the latest wins.
        let ctx = [2, 3, 4, 5, 0, 3, 4, 9, 8, 3, 4];
        assert_eq!(propose(&ctx, 1..=2, 3), [9, 8, 3]);
        assert_eq!(propose(&ctx, 1..=2, 1), [9]);
    }

    #[test]
    fn longer_ngrams_win_over_later_shorter_ones() {
        // "1 2 3" occurred once (followed by 7); "2 3" alone occurred later (followed by 8).
        let ctx = [1, 2, 3, 7, 2, 3, 8, 1, 2, 3];
        assert_eq!(propose(&ctx, 2..=3, 2), [7, 2]);
        assert_eq!(propose(&ctx, 2..=2, 2), [8, 1]);
    }

    #[test]
    fn stops_at_the_end_of_the_context() {
        // The latest "5 5" starts one before the key: only one token follows it.
        assert_eq!(propose(&[5, 5, 5], 2..=2, 4), [5]);
        assert_eq!(propose(&[1, 2, 1], 1..=1, 8), [2, 1]);
    }

    #[test]
    fn nothing_without_a_recurring_ngram() {
        assert!(propose(&[1, 2, 3, 4], 1..=3, 4).is_empty());
        assert!(propose(&[1, 2, 1, 2], 1..=2, 0).is_empty());
        assert!(propose(&[], 1..=2, 4).is_empty());
        assert!(propose(&[7], 1..=2, 4).is_empty());
        // n-grams as long as the context itself cannot recur.
        assert!(propose(&[1, 1], 2..=2, 4).is_empty());
        // n = 0 is ignored, not a match everywhere.
        assert!(propose(&[1, 2, 3], 0..=0, 4).is_empty());
    }

    #[test]
    fn the_cap_adapts_to_acceptance() {
        assert_eq!(next_cap(2, 8, 2, 2), 4);
        assert_eq!(next_cap(8, 8, 8, 8), 8);
        assert_eq!(next_cap(8, 8, 8, 0), 4);
        assert_eq!(next_cap(1, 8, 1, 0), 1);
        assert_eq!(next_cap(8, 8, 8, 3), 8);
        assert_eq!(next_cap(4, 8, 0, 0), 4);
    }
}
