//! [`Constraint`]: the seam through which a grammar limits what a sequence may generate (hearth-constraint implements
//! it with llguidance), and how the scheduler applies its token mask to the logits.
//!
//! Each step the scheduler asks every constrained sequence for its [`Mask`] (on a helper thread, while the forward
//! pass runs: the mask depends only on the tokens already consumed), sets the logits of disallowed tokens to -inf
//! before sampling (greedy and sampled alike), allows the sequence's end-of-generation ids only where the grammar
//! accepts, then [`consume`](Constraint::consume)s the chosen token and feeds the tokens the grammar
//! [`forces`](Constraint::forced) next in the same forward pass as the chosen one.

/// The tokens a grammar allows next.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Mask {
    /// Bit `i % 32` of word `i / 32` is set when token `i` is allowed; ids past the end are disallowed.
    pub allowed: Vec<u32>,
    /// Whether the text so far is a complete match (so the end-of-generation ids may be produced).
    pub accepting: bool,
}

impl Mask {
    pub fn is_allowed(&self, id: u32) -> bool {
        self.allowed
            .get(id as usize / 32)
            .is_some_and(|w| w >> (id % 32) & 1 == 1)
    }

    /// Sets the logits (n_vocab) of disallowed tokens to -inf. `stop_ids` (the sequence's end-of-generation ids)
    /// keep their logits exactly when the grammar accepts, whatever the mask says of them. Returns whether any
    /// token is left to choose.
    pub fn apply(&self, logits: &mut [f32], stop_ids: &[u32]) -> bool {
        let n = logits.len();
        let stops: Vec<(usize, f32)> = stop_ids
            .iter()
            .filter(|&&id| (id as usize) < n)
            .map(|&id| (id as usize, logits[id as usize]))
            .collect();
        let mut n_allowed = 0;
        for (i, chunk) in logits.chunks_mut(32).enumerate() {
            // Bits past n (in the last word) are ignored.
            let w = self.allowed.get(i).copied().unwrap_or(0) & (u32::MAX >> (32 - chunk.len()));
            n_allowed += w.count_ones() as usize;
            if w == u32::MAX {
                continue;
            }
            for (b, l) in chunk.iter_mut().enumerate() {
                if w >> b & 1 == 0 {
                    *l = f32::NEG_INFINITY;
                }
            }
        }
        let mut seen = Vec::with_capacity(stops.len());
        for (id, l) in stops {
            if seen.contains(&id) {
                continue;
            }
            seen.push(id);
            n_allowed -= usize::from(self.is_allowed(id as u32));
            if self.accepting {
                logits[id] = l;
                n_allowed += 1;
            } else {
                logits[id] = f32::NEG_INFINITY;
            }
        }
        n_allowed > 0
    }
}

/// A grammar's state for one sequence. Errors are messages for the client (the sequence fails with them).
pub trait Constraint: Send {
    /// The tokens allowed next.
    fn mask(&mut self) -> Result<Mask, String>;
    /// Advances past `id` (a token the mask allowed, or a stop id while accepting).
    fn consume(&mut self, id: u32) -> Result<(), String>;
    /// The tokens the grammar forces next (the only way to go: a JSON key, a closing bracket), already consumed;
    /// empty when there is a choice.
    fn forced(&mut self) -> Vec<u32>;
    /// Whether the grammar allows nothing more (the sequence then ends as if it produced a stop id).
    fn is_finished(&self) -> bool;
    /// An independent copy in the same state.
    fn boxed_clone(&self) -> Box<dyn Constraint>;
}

impl Clone for Box<dyn Constraint> {
    fn clone(&self) -> Self {
        self.boxed_clone()
    }
}

impl std::fmt::Debug for dyn Constraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Constraint")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask(ids: &[u32], n: usize, accepting: bool) -> Mask {
        let mut allowed = vec![0u32; n.div_ceil(32)];
        for &i in ids {
            allowed[i as usize / 32] |= 1 << (i % 32);
        }
        Mask { allowed, accepting }
    }

    #[test]
    fn apply_keeps_only_allowed_tokens() {
        let mut logits: Vec<f32> = (0..70).map(|i| i as f32).collect();
        let m = mask(&[3, 40, 69], 70, false);
        assert!(m.apply(&mut logits, &[]));
        for (i, &l) in logits.iter().enumerate() {
            assert_eq!(l.is_finite(), [3, 40, 69].contains(&i), "token {i}");
        }
        assert_eq!(logits[40], 40.0);
    }

    #[test]
    fn stop_ids_follow_acceptance() {
        let m = mask(&[1, 5], 8, false);
        let mut logits = vec![0.5; 8];
        assert!(m.apply(&mut logits, &[5]));
        assert!(logits[5] == f32::NEG_INFINITY && logits[1] == 0.5);
        // Accepting: every stop id keeps its logit, whether the mask names it or not.
        let m = mask(&[1, 5], 8, true);
        let mut logits = vec![0.5; 8];
        assert!(m.apply(&mut logits, &[5, 6, 6]));
        assert!(logits[5] == 0.5 && logits[6] == 0.5 && logits[2] == f32::NEG_INFINITY);
        // Only a stop id allowed, but not accepting: nothing is left.
        let m = mask(&[5], 8, false);
        assert!(!m.apply(&mut [0.0; 8], &[5]));
        // Nothing allowed but accepting: the stop ids are left.
        let m = mask(&[], 8, true);
        let mut logits = vec![0.5; 8];
        assert!(m.apply(&mut logits, &[7]));
        assert_eq!(logits.iter().filter(|l| l.is_finite()).count(), 1);
    }

    #[test]
    fn ids_past_the_mask_are_disallowed() {
        let m = mask(&[0], 32, true);
        let mut logits = vec![1.0; 40];
        m.apply(&mut logits, &[]);
        assert!(logits[33..].iter().all(|&l| l == f32::NEG_INFINITY));
        assert!(!m.is_allowed(35));
    }
}
