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
    /// Most tokens proposed per step (0: off). The cap adapts per sequence (`Pace`): it halves after a proposal is
    /// rejected at its first token, doubles after one is accepted whole, and is one more than was kept after one is
    /// kept in part; once single-token proposals fail, the sequence proposes nothing for 1, 2, 4 … 16 steps.
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

/// On, up to 8 tokens per step: on copy-heavy prompts 1.2 to 2.1 times the tokens per second of plain decoding, and
/// no slower where nothing is copied (proposals come only from a recurring n-gram, and `Pace` backs off when they
/// fail) — `docs/bench.md`, "Prompt lookup".
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

/// Longest pause (in steps) after proposals keep failing.
const MAX_PAUSE: u32 = 16;

/// How much a sequence may propose: a cap that adapts to how many proposals were kept, and a pause once even
/// single-token proposals fail. A proposal costs a verify row in the step's forward pass; in text that copies
/// nothing, common n-grams recur and proposed one token a step, mostly rejected (SmolLM2 generated 12 % slower
/// with lookup on, `hearth bench --lookup`'s "no copy" prompt); pausing for 1, 2, 4 … 16 steps after each such
/// failure in a row makes that cost small, and one accepted proposal ends the pause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Pace {
    /// Most tokens to propose next.
    pub cap: usize,
    /// Steps left to propose nothing.
    pause: u32,
    /// The next pause's length (doubles up to [`MAX_PAUSE`] while single proposals keep failing).
    backoff: u32,
}

impl Pace {
    pub fn new(max_draft: usize) -> Pace {
        Pace {
            cap: max_draft,
            pause: 0,
            backoff: 1,
        }
    }

    /// Most tokens to propose this step (0 while paused; each call is one step).
    pub fn room(&mut self) -> usize {
        if self.pause > 0 {
            self.pause -= 1;
            return 0;
        }
        self.cap
    }

    /// After a verify pass of `proposed` tokens of which `accepted` were kept.
    pub fn after(&mut self, max_draft: usize, proposed: usize, accepted: usize) {
        if proposed == 0 {
            return;
        }
        if accepted == 0 && self.cap <= 1 {
            self.pause = self.backoff;
            self.backoff = (self.backoff * 2).min(MAX_PAUSE);
            return;
        }
        self.backoff = 1;
        self.cap = if accepted == proposed {
            (self.cap * 2).clamp(1, max_draft)
        } else if accepted == 0 {
            (self.cap / 2).max(1)
        } else {
            // Partly kept: propose about as far as this one held (one more than was kept).
            (accepted + 1).min(max_draft)
        };
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
        let mut p = Pace::new(8);
        assert_eq!(p.room(), 8);
        p.after(8, 8, 3); // partly kept: one more than was kept
        assert_eq!(p.room(), 4);
        p.after(8, 4, 0); // none kept: half
        assert_eq!(p.room(), 2);
        p.after(8, 2, 2); // all kept: double
        assert_eq!(p.room(), 4);
        p.after(8, 4, 4);
        assert_eq!(p.room(), 8);
        p.after(8, 8, 8); // at most max_draft
        assert_eq!(p.room(), 8);
        p.after(8, 0, 0); // nothing proposed: unchanged
        assert_eq!(p.room(), 8);
    }

    #[test]
    fn failing_single_proposals_pause_longer_each_time_until_one_is_kept() {
        let mut p = Pace::new(1);
        let mut seen = Vec::new();
        for _ in 0..7 {
            p.after(1, 1, 0);
            let mut n = 0;
            while p.room() == 0 {
                n += 1;
            }
            seen.push(n);
        }
        assert_eq!(seen, [1, 2, 4, 8, 16, 16, 16]);
        p.after(1, 1, 1); // kept: the pause is over, and the next failure pauses one step again
        p.after(1, 1, 0);
        let mut n = 0;
        while p.room() == 0 {
            n += 1;
        }
        assert_eq!(n, 1);
    }
}
