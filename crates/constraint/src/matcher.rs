//! [`GrammarConstraint`]: one sequence's llguidance `Matcher` behind the engine's [`Constraint`] seam.

use crate::ConstraintError;
use hearth_engine::batch::{Constraint, Mask};
use llguidance::Matcher;

/// A compiled grammar at some point of one sequence.
#[derive(Clone)]
pub struct GrammarConstraint {
    matcher: Matcher,
    /// The first mask, computed while compiling (off the engine thread: it is the slowest one).
    first: Option<Mask>,
}

impl GrammarConstraint {
    /// Wraps a fresh matcher and computes its first mask, so a grammar that cannot even start fails here.
    pub(crate) fn start(matcher: Matcher) -> Result<GrammarConstraint, ConstraintError> {
        let mut c = GrammarConstraint {
            matcher,
            first: None,
        };
        let m = c.compute().map_err(ConstraintError::Compile)?;
        c.first = Some(m);
        Ok(c)
    }

    fn compute(&mut self) -> Result<Mask, String> {
        if self.matcher.is_stopped() {
            // Nothing more may come: only the end of generation.
            return match self.matcher.get_error() {
                Some(e) => Err(e),
                None => Ok(Mask {
                    allowed: Vec::new(),
                    accepting: true,
                }),
            };
        }
        let allowed = self.matcher.compute_mask().map_err(|e| e.to_string())?;
        let accepting = self.matcher.is_accepting().map_err(|e| e.to_string())?;
        Ok(Mask {
            allowed: allowed.into(),
            accepting,
        })
    }

    /// Why the grammar failed, if it did.
    pub fn error(&self) -> Option<String> {
        self.matcher.get_error()
    }
}

impl Constraint for GrammarConstraint {
    fn mask(&mut self) -> Result<Mask, String> {
        match self.first.take() {
            Some(m) => Ok(m),
            None => self.compute(),
        }
    }

    fn consume(&mut self, id: u32) -> Result<(), String> {
        self.first = None;
        self.matcher
            .consume_token(id)
            .map_err(|e| format!("token {id} does not fit the grammar: {e}"))
    }

    fn forced(&mut self) -> Vec<u32> {
        if self.matcher.is_stopped() {
            return Vec::new();
        }
        let forced = self.matcher.consume_ff_tokens();
        if !forced.is_empty() {
            self.first = None;
        }
        forced
    }

    fn is_finished(&self) -> bool {
        // A failed matcher is stopped too, but that is not a finish: its next mask reports the error.
        self.matcher.is_stopped() && self.matcher.get_error().is_none()
    }

    fn boxed_clone(&self) -> Box<dyn Constraint> {
        Box::new(self.clone())
    }
}
