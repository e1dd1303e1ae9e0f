//! The generation loop shared by `hearth run` and the server: a session that keeps its tokens and KV cache,
//! reuses the longest common prefix of a new prompt, and decodes token by token.

use crate::sampler::{log_probs, Sampler, SamplingParams};
use crate::{EngineError, KvCache, Model, SeqBatch};
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
            return Err(EngineError::BadConfig("the prompt is empty".into()));
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

/// How a generation should run.
#[derive(Debug, Clone, Default)]
pub struct GenerateOptions {
    pub max_tokens: usize,
    pub sampling: SamplingParams,
    /// End-of-generation ids: generation stops after producing one (it is reported, not fed back).
    pub stop_ids: Vec<u32>,
    /// Report the top `k` log-probabilities of every step.
    pub top_logprobs: Option<usize>,
}

/// One generated token.
#[derive(Debug, Clone)]
pub struct Step {
    pub id: u32,
    /// Log-probability of `id` and the top-k alternatives, over the full vocabulary before sampling
    /// (when asked for).
    pub logprob: Option<f32>,
    pub top: Vec<(u32, f32)>,
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// The model produced an end-of-generation token.
    Stop,
    /// `max_tokens` were generated, or the context filled up.
    Length,
    /// The caller's callback asked to stop.
    Cancelled,
}

/// Reads `prompt` into `session` and generates up to `opts.max_tokens` tokens, calling `on_step` for each;
/// `on_step` returns false to stop. Returns why it ended.
pub fn generate(
    model: &Model,
    pool: &ThreadPool,
    session: &mut Session,
    prompt: &[u32],
    opts: &GenerateOptions,
    mut on_step: impl FnMut(&Step) -> bool,
) -> Result<Finish, EngineError> {
    let mut sampler = Sampler::new(opts.sampling.clone());
    let mut logits = session.prefill(model, pool, prompt)?;
    for _ in 0..opts.max_tokens {
        let raw = opts.top_logprobs.map(|_| logits.clone());
        // Penalties look at everything the session holds: prompt and generated tokens.
        let id = sampler.sample(&mut logits, &session.tokens);
        let (logprob, top) = match (raw, opts.top_logprobs) {
            (Some(raw), Some(k)) => {
                let (lp, top) = log_probs(&raw, id, k);
                (Some(lp), top)
            }
            _ => (None, Vec::new()),
        };
        if !on_step(&Step { id, logprob, top }) {
            return Ok(Finish::Cancelled);
        }
        if opts.stop_ids.contains(&id) {
            return Ok(Finish::Stop);
        }
        if session.cache.len() >= session.cache.n_ctx() {
            return Ok(Finish::Length);
        }
        logits = session.feed(model, pool, &[id], 0)?;
    }
    Ok(Finish::Length)
}
