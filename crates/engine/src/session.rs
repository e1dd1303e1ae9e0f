//! One sequence read with plain forward passes: a session that keeps its tokens and KV cache and reuses the longest
//! common prefix of a new prompt (teacher forcing, probes), and the greedy reference loop tests compare against.

use crate::sampler::{argmax, log_probs};
use crate::{EngineError, KvCache, Model, SeqBatch, Step};
use hearth_kernels::ThreadPool;

/// Tokens processed per forward pass while reading a prompt.
pub const DEFAULT_BATCH: usize = 256;

/// One sequence: its cache and the tokens the cache holds.
pub struct Session {
    pub cache: KvCache,
    pub tokens: Vec<u32>,
}

impl Session {
    pub fn new(model: &Model, n_ctx: usize) -> Session {
        Session::with_cache(model.new_cache(n_ctx))
    }

    /// A session over an empty cache made by the caller (e.g. of another [`crate::KvType`]).
    pub fn with_cache(cache: KvCache) -> Session {
        Session {
            cache,
            tokens: Vec::new(),
        }
    }

    /// Makes the session hold exactly `prompt`, recomputing only what differs from what it holds; returns the
    /// logits (n_vocab) after the last prompt token.
    pub fn prefill(
        &mut self,
        model: &Model,
        pool: &ThreadPool,
        prompt: &[u32],
    ) -> Result<Vec<f32>, EngineError> {
        if prompt.is_empty() {
            return Err(EngineError::EmptyPrompt);
        }
        if prompt.len() > self.cache.n_ctx() {
            return Err(EngineError::ContextFull {
                needed: prompt.len(),
                n_ctx: self.cache.n_ctx(),
            });
        }
        // Keep the common prefix, but always recompute at least the last prompt token to get its logits.
        let common = self
            .tokens
            .iter()
            .zip(prompt)
            .take_while(|(a, b)| a == b)
            .count()
            .min(prompt.len() - 1);
        self.cache.truncate(common);
        self.tokens.truncate(common);
        let mut logits = Vec::new();
        for chunk in prompt[common..].chunks(DEFAULT_BATCH) {
            logits = self.feed(model, pool, chunk, chunk.len() - 1)?;
        }
        Ok(logits)
    }

    /// Appends `tokens` and returns the logits of tokens `logits_from..`, (n_out, n_vocab).
    pub fn feed(
        &mut self,
        model: &Model,
        pool: &ThreadPool,
        tokens: &[u32],
        logits_from: usize,
    ) -> Result<Vec<f32>, EngineError> {
        let logits = model.forward(
            pool,
            &mut [SeqBatch {
                cache: &mut self.cache,
                tokens,
                logits_from,
            }],
        )?;
        self.tokens.extend_from_slice(tokens);
        Ok(logits)
    }
}

/// The plain greedy loop over one fresh [`Session`]: `n` steps, each the argmax of the logits, fed back. Every step
/// carries its log-probability and the top `top_k` alternatives. A reference for tests and fidelity probes (no
/// sampler, no batching, no end-of-generation ids: cut the result where you need); front-ends go through
/// [`batch::Engine`](crate::batch::Engine).
pub fn greedy_reference(
    model: &Model,
    pool: &ThreadPool,
    prompt: &[u32],
    n: usize,
    top_k: usize,
) -> Result<Vec<Step>, EngineError> {
    let mut session = Session::new(model, prompt.len() + n);
    let mut logits = session.prefill(model, pool, prompt)?;
    let mut steps = Vec::with_capacity(n);
    for i in 0..n {
        let id = argmax(&logits);
        let (logprob, top) = log_probs(&logits, id, top_k);
        steps.push(Step {
            id,
            logprob: Some(logprob),
            top,
        });
        if i + 1 < n {
            logits = session.feed(model, pool, &[id], 0)?;
        }
    }
    Ok(steps)
}
