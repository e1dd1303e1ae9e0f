//! The engine thread's loop: take new requests, drop cancelled ones, admit from the queue, run one forward pass
//! over every live sequence (decodes plus a budget of prompt chunks), sample, and send the events.
//!
//! A constrained sequence's mask for the coming token is computed on a helper thread while the forward pass runs
//! (it depends only on tokens already consumed); the tokens its grammar then forces are fed with the sampled one
//! in the next forward pass.
//!
//! With [prompt lookup](super::Lookup) on, a decoding sequence also feeds the tokens its context proposes after
//! its pending one; `sample_run` samples the rows in order and keeps the proposals sampling agrees with.
//!
//! An embedding request reads its whole prompt in one step (it waits while other prompts hold the step's budget,
//! and takes more than the budget when it is alone) and ends in that step with its pooled vector.

use super::constraint::{Constraint, Mask};
use super::lookup::{propose, Pace, MAX_VERIFY};
use super::prefix::PrefixCache;
use super::{BatchConfig, Event, Finish, Flow, Msg, Request, Shared, Sink, Step, Usage};
use crate::sampler::log_probs;
use crate::{KvCache, Model, Sampler, SeqBatch};
use hearth_kernels::ThreadPool;
use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{mpsc, Arc};

/// A request waiting in the queue.
struct Waiting {
    req: Box<Request>,
    sink: Box<dyn Sink>,
}

/// A sequence in flight. Per-sequence behaviour (sampling, a grammar, the sink's text stream) hangs off `req` and
/// `sink`; `sample_and_send` is the one place a step's token is chosen, reported and judged.
struct Seq {
    req: Box<Request>,
    sink: Box<dyn Sink>,
    sampler: Sampler,
    cache: KvCache,
    /// The grammar limiting what this sequence may generate.
    constraint: Option<Box<dyn Constraint>>,
    /// The tokens the cache holds: prompt tokens read so far, then the generated tokens fed back.
    tokens: Vec<u32>,
    /// The request's prompt length (`req.prompt` also holds the tokens a grammar forces at the start, read with it).
    n_prompt: usize,
    /// What to feed next step: the last sampled token and the tokens its grammar forces after it (empty while the
    /// prompt is being read), then the `n_draft` tokens prompt lookup proposes after them.
    next: Vec<u32>,
    n_draft: usize,
    /// How much prompt lookup may propose next (adapts to how many were accepted).
    pace: Pace,
    generated: usize,
    cached_tokens: usize,
}

impl Seq {
    fn prefilling(&self) -> bool {
        self.next.is_empty()
    }
}

/// What one sequence contributes to a step: its index in `running` and how many tokens.
struct Part {
    seq: usize,
    n_tokens: usize,
    wants_logits: bool,
    /// Proposed tokens at the end (each wants its logits too).
    n_draft: usize,
    /// The sequence is an embedding, read whole this step.
    pooled: bool,
}

pub(super) struct Scheduler {
    model: Arc<Model>,
    config: BatchConfig,
    shared: Arc<Shared>,
    pool: ThreadPool,
    waiting: VecDeque<Waiting>,
    running: Vec<Seq>,
    prefix: PrefixCache,
    shutdown: bool,
}

impl Scheduler {
    /// Fails when the OS refuses a compute thread (too many threads, too little memory for their stacks).
    pub fn new(
        model: Arc<Model>,
        config: BatchConfig,
        shared: Arc<Shared>,
    ) -> Result<Scheduler, String> {
        let n = config.n_threads.max(1);
        let pool =
            ThreadPool::try_new(n).map_err(|e| format!("cannot start {n} compute threads: {e}"))?;
        Ok(Scheduler {
            pool,
            prefix: PrefixCache::new(config.prefix_cache_bytes),
            model,
            config,
            shared,
            waiting: VecDeque::new(),
            running: Vec::new(),
            shutdown: false,
        })
    }

    pub fn run(&mut self, rx: mpsc::Receiver<Msg>) {
        loop {
            if self.running.is_empty() && self.waiting.is_empty() {
                match rx.recv() {
                    Ok(m) => self.handle(m),
                    Err(_) => break,
                }
            }
            while let Ok(m) = rx.try_recv() {
                self.handle(m);
            }
            if self.shutdown {
                break;
            }
            self.drop_cancelled();
            self.admit();
            self.step();
            self.publish();
        }
        for w in self.waiting.drain(..) {
            let mut sink = w.sink;
            sink.send(Event::Failed("the engine is shutting down".into()));
            self.shared.queued.fetch_sub(1, Relaxed);
        }
        for mut s in self.running.drain(..) {
            s.sink
                .send(Event::Failed("the engine is shutting down".into()));
        }
        self.publish();
    }

    fn handle(&mut self, m: Msg) {
        match m {
            Msg::Submit(req, sink) => self.waiting.push_back(Waiting { req, sink }),
            Msg::Shutdown => self.shutdown = true,
        }
    }

    /// Drops sequences and queued requests whose receiver has gone; their KV is freed here (but for a prefix
    /// taken from the prefix cache, which goes back there).
    fn drop_cancelled(&mut self) {
        let before = self.running.len() + self.waiting.len();
        let queued_before = self.waiting.len();
        let mut i = 0;
        while i < self.running.len() {
            if self.running[i].sink.is_closed() {
                let s = self.running.remove(i);
                self.retire(s, false);
            } else {
                i += 1;
            }
        }
        self.waiting.retain(|w| !w.sink.is_closed());
        self.shared
            .queued
            .fetch_sub(queued_before - self.waiting.len(), Relaxed);
        let dropped = before - self.running.len() - self.waiting.len();
        self.shared.cancelled.fetch_add(dropped as u64, Relaxed);
    }

    /// Starts queued requests while there is room, each from the prefix cache when it shares a prefix.
    fn admit(&mut self) {
        while self.running.len() < self.config.max_running {
            let Some(Waiting { req, sink }) = self.waiting.pop_front() else {
                break;
            };
            self.shared.queued.fetch_sub(1, Relaxed);
            if req.embed {
                // A fresh cache of the prompt's size: the prefix cache holds causal KV for generations only.
                let n = req.prompt.len();
                let cache = self
                    .model
                    .new_cache_typed(n, self.config.kv_type)
                    .unwrap_or_else(|_| self.model.new_cache(n));
                self.running.push(Seq {
                    sampler: Sampler::new(req.sampling.clone()),
                    constraint: None,
                    tokens: Vec::new(),
                    n_prompt: n,
                    req,
                    sink,
                    cache,
                    next: Vec::new(),
                    n_draft: 0,
                    pace: Pace::new(0),
                    generated: 0,
                    cached_tokens: 0,
                });
                continue;
            }
            if req.max_tokens == 0 {
                let mut sink = sink;
                let usage = Usage {
                    prompt_tokens: req.prompt.len(),
                    ..Usage::default()
                };
                sink.send(Event::Done {
                    finish: Finish::Length,
                    usage,
                    embedding: None,
                });
                continue;
            }
            // Always compute the last prompt token: its logits give the first generated token.
            let reusable = req.prompt.len() - 1;
            let cache = self.prefix.take(&req.prompt, reusable).unwrap_or_else(|| {
                let n_ctx = self.config.n_ctx;
                self.model
                    .new_cache_typed(n_ctx, self.config.kv_type)
                    .unwrap_or_else(|_| self.model.new_cache(n_ctx))
            });
            let cached_tokens = cache.len();
            if cached_tokens > 0 {
                self.shared.prefix_hits.fetch_add(1, Relaxed);
                self.shared
                    .cached_tokens
                    .fetch_add(cached_tokens as u64, Relaxed);
            }
            let mut req = req;
            let mut seq = Seq {
                sampler: Sampler::new(req.sampling.clone()),
                constraint: req.constraint.take(),
                tokens: req.prompt[..cached_tokens].to_vec(),
                n_prompt: req.prompt.len(),
                req,
                sink,
                cache,
                next: Vec::new(),
                n_draft: 0,
                pace: Pace::new(self.config.lookup.max_draft),
                generated: 0,
                cached_tokens,
            };
            match force_start(&mut seq, &self.shared) {
                Outcome::Running => self.running.push(seq),
                end => self.end(seq, end),
            }
        }
    }

    /// Which tokens each sequence feeds this step: one for every decoding sequence, and prompt chunks (oldest
    /// request first) up to `prefill_chunk` tokens in all.
    fn plan(&self) -> Vec<Part> {
        let mut parts = Vec::new();
        let full = self.config.prefill_chunk.max(1);
        let mut budget = full;
        for (i, s) in self.running.iter().enumerate() {
            if s.req.embed {
                // Whole or not at all: alone it may exceed the budget, else it waits for room.
                let n = s.req.prompt.len();
                if n <= budget || budget == full {
                    budget = budget.saturating_sub(n);
                    parts.push(Part {
                        seq: i,
                        n_tokens: n,
                        wants_logits: false,
                        n_draft: 0,
                        pooled: true,
                    });
                }
            } else if !s.prefilling() {
                parts.push(Part {
                    seq: i,
                    n_tokens: s.next.len(),
                    wants_logits: true,
                    n_draft: s.n_draft,
                    pooled: false,
                });
            } else if budget > 0 {
                let left = s.req.prompt.len() - s.tokens.len();
                let n = left.min(budget);
                budget -= n;
                parts.push(Part {
                    seq: i,
                    n_tokens: n,
                    wants_logits: n == left,
                    n_draft: 0,
                    pooled: false,
                });
            }
        }
        parts
    }

    /// Appends to each decoding sequence's `next` the tokens prompt lookup proposes after it (when it is on), as
    /// many as its cap, the tokens left to generate after this step's first, the context and one attention block
    /// allow.
    fn propose(&mut self) {
        let lookup = &self.config.lookup;
        if !lookup.enabled() {
            return;
        }
        for s in self.running.iter_mut() {
            if s.req.embed || s.prefilling() {
                continue;
            }
            let fed = s.tokens.len() + s.next.len();
            let room = s
                .pace
                .room()
                .min(s.req.max_tokens.saturating_sub(s.generated + 1))
                .min(s.cache.n_ctx().saturating_sub(fed))
                .min(MAX_VERIFY.saturating_sub(s.next.len()));
            if room == 0 {
                continue;
            }
            let mut ctx = Vec::with_capacity(fed);
            ctx.extend_from_slice(&s.tokens);
            ctx.extend_from_slice(&s.next);
            let draft = propose(&ctx, lookup.ngram.clone(), room);
            s.n_draft = draft.len();
            s.next.extend(draft);
        }
    }

    fn step(&mut self) {
        self.propose();
        let parts = self.plan();
        if parts.is_empty() {
            return;
        }
        let n_tokens: usize = parts.iter().map(|p| p.n_tokens).sum();
        let (result, mut masks) = {
            let mut batch = Vec::with_capacity(parts.len());
            // The constrained sequences that sample this step, whose masks the helper thread computes.
            let mut constrained = Vec::new();
            let mut pi = parts.iter().peekable();
            for (i, s) in self.running.iter_mut().enumerate() {
                let Some(p) = pi.next_if(|p| p.seq == i) else {
                    continue;
                };
                let Seq {
                    cache,
                    tokens,
                    req,
                    next,
                    constraint,
                    ..
                } = s;
                if let (true, Some(c)) = (p.wants_logits, constraint) {
                    constrained.push((i, c));
                }
                let toks: &[u32] = if next.is_empty() {
                    &req.prompt[tokens.len()..tokens.len() + p.n_tokens]
                } else {
                    next
                };
                batch.push(SeqBatch {
                    cache,
                    tokens: toks,
                    logits_from: if p.wants_logits {
                        p.n_tokens - 1 - p.n_draft
                    } else {
                        p.n_tokens
                    },
                });
            }
            let (model, pool) = (&self.model, &self.pool);
            let pooled: Vec<bool> = parts.iter().map(|p| p.pooled).collect();
            if constrained.is_empty() {
                (model.forward_pooled(pool, &mut batch, &pooled), Vec::new())
            } else {
                std::thread::scope(|scope| {
                    let masker = scope.spawn(|| compute_masks(constrained));
                    let result = model.forward_pooled(pool, &mut batch, &pooled);
                    let masks = masker.join().unwrap_or_else(|_| Vec::new());
                    (result, masks)
                })
            }
        };
        for (_, _, took) in &masks {
            self.shared.masks.fetch_add(1, Relaxed);
            self.shared
                .mask_nanos
                .fetch_add(took.as_nanos() as u64, Relaxed);
        }
        self.shared.steps.fetch_add(1, Relaxed);
        self.shared
            .tokens_processed
            .fetch_add(n_tokens as u64, Relaxed);
        let (mut logits, mut embeddings) = match result {
            Ok(out) => (out.logits, out.pooled.into_iter()),
            Err(e) => {
                // Nothing changed in the caches, but the step cannot be retried as it is: fail its sequences.
                let msg = e.to_string();
                let failed: Vec<usize> = parts.iter().map(|p| p.seq).collect();
                for &i in failed.iter().rev() {
                    let s = self.running.remove(i);
                    self.end(s, Outcome::Failed(msg.clone()));
                }
                return;
            }
        };

        let n_vocab = self.model.config.n_vocab;
        let mut row = 0;
        let mut finished = Vec::new(); // (index, how it ended)
        for p in &parts {
            let s = &mut self.running[p.seq];
            let mut draft = Vec::new();
            if s.next.is_empty() {
                let at = s.tokens.len();
                s.tokens
                    .extend_from_slice(&s.req.prompt[at..at + p.n_tokens]);
            } else {
                draft = s.next.split_off(s.next.len() - p.n_draft);
                s.n_draft = 0;
                s.tokens.append(&mut s.next);
            }
            if p.pooled {
                let usage = Usage {
                    prompt_tokens: s.n_prompt,
                    ..Usage::default()
                };
                s.sink.send(Event::Done {
                    finish: Finish::Stop,
                    usage,
                    embedding: embeddings.next(),
                });
                finished.push((p.seq, Outcome::Embedded));
                continue;
            }
            if !p.wants_logits {
                continue;
            }
            let rows = &mut logits[row * n_vocab..(row + 1 + p.n_draft) * n_vocab];
            row += 1 + p.n_draft;
            let mask = match masks.iter().position(|m| m.0 == p.seq) {
                Some(k) => Some(masks.swap_remove(k).1),
                None if s.constraint.is_some() => Some(Err("the grammar's mask was lost".into())),
                None => None,
            };
            let max_draft = self.config.lookup.max_draft;
            match sample_run(s, rows, &draft, mask, max_draft, &self.shared) {
                Outcome::Running => {}
                end => finished.push((p.seq, end)),
            }
        }
        for (i, end) in finished.into_iter().rev() {
            let s = self.running.remove(i);
            self.end(s, end);
        }
    }

    /// Reports how a sequence taken out of `running` (or never put there) ended, and retires its KV.
    fn end(&mut self, mut s: Seq, end: Outcome) {
        match end {
            Outcome::Running | Outcome::Embedded => {}
            Outcome::Done => return self.retire(s, true),
            Outcome::Gone => {
                self.shared.cancelled.fetch_add(1, Relaxed);
            }
            Outcome::Failed(msg) => {
                s.sink.send(Event::Failed(msg));
            }
        }
        self.retire(s, false);
    }

    /// Where a sequence's KV goes: a finished generation's into the prefix cache whole (`tokens` are what it
    /// holds); otherwise the prefix it took from the prefix cache goes back there (it may have been taken over by
    /// move), and an embedding's (or a sequence's that took nothing) is freed.
    fn retire(&mut self, s: Seq, finished: bool) {
        if s.req.embed {
            return;
        }
        if finished {
            self.prefix.insert(s.tokens, s.cache);
        } else if s.cached_tokens > 0 {
            self.prefix
                .give_back(&s.req.prompt, s.cache, s.cached_tokens);
        }
    }

    fn publish(&self) {
        let running_kv: usize = self.running.iter().map(|s| s.cache.bytes()).sum();
        let sh = &self.shared;
        sh.running.store(self.running.len(), Relaxed);
        sh.prefix_bytes.store(self.prefix.bytes(), Relaxed);
        sh.prefix_entries.store(self.prefix.len(), Relaxed);
        sh.kv_bytes.store(running_kv + self.prefix.bytes(), Relaxed);
    }
}

/// Each constrained sequence's mask for its coming token, with the time it took: (index in `running`, mask).
fn compute_masks(
    seqs: Vec<(usize, &mut Box<dyn Constraint>)>,
) -> Vec<(usize, Result<Mask, String>, std::time::Duration)> {
    seqs.into_iter()
        .map(|(i, c)| {
            let t = std::time::Instant::now();
            let m = c.mask();
            (i, m, t.elapsed())
        })
        .collect()
}

/// Samples a decoding sequence's logits `rows` ((1 + draft.len()) × n_vocab) in order: row 0 follows its pending
/// tokens, row j its j-th proposal, which is only right while every earlier proposal was accepted. Each row is
/// sampled, sent and judged by `sample_and_send` exactly as a step of its own would be (the same sampler state, the
/// same history, the grammar's mask after the tokens accepted before it); the run goes on while the sampled token is
/// the proposal that was fed after it (and nothing ended the sequence or was forced after it), and stops at the
/// first that is not: that token is pending, as after a plain step. The KV of the rejected proposals is dropped.
fn sample_run(
    s: &mut Seq,
    rows: &mut [f32],
    draft: &[u32],
    mask: Option<Result<Mask, String>>,
    max_draft: usize,
    shared: &Shared,
) -> Outcome {
    let n_vocab = rows.len() / (draft.len() + 1);
    let mut mask = mask;
    let mut accepted = 0;
    let mut outcome = Outcome::Running;
    for (j, l) in rows.chunks_exact_mut(n_vocab).enumerate() {
        if j > 0 {
            if let Some(c) = s.constraint.as_mut() {
                let t = std::time::Instant::now();
                mask = Some(c.mask());
                shared.masks.fetch_add(1, Relaxed);
                shared
                    .mask_nanos
                    .fetch_add(t.elapsed().as_nanos() as u64, Relaxed);
            }
        }
        outcome = sample_and_send(s, l, mask.take(), shared);
        let keep =
            matches!(outcome, Outcome::Running) && draft.get(j).is_some_and(|&d| s.next == [d]);
        if !keep {
            break;
        }
        // The proposal sits in the cache already: it is fed, not pending.
        s.tokens.append(&mut s.next);
        accepted += 1;
    }
    if !draft.is_empty() {
        s.cache.truncate(s.tokens.len());
        shared.draft_tokens.fetch_add(draft.len() as u64, Relaxed);
        shared.draft_accepted.fetch_add(accepted as u64, Relaxed);
        s.pace.after(max_draft, draft.len(), accepted);
    }
    outcome
}

/// What became of a sequence after its step.
enum Outcome {
    Running,
    /// Ended; `Done` was sent.
    Done,
    /// An embedding was sent; its (bidirectional or pooled) KV is not for reuse.
    Embedded,
    /// The receiver has gone.
    Gone,
    /// The grammar failed; the message goes out as `Failed`.
    Failed(String),
}

/// Samples the next token of `s` from its logits (n_vocab), under its grammar's `mask` when it has one, sends it
/// and the tokens the grammar forces after it, and decides whether the sequence ends (an end-of-generation id, the
/// sink's [`Flow::Stop`], the grammar's completion, `max_tokens` or a full context); then sends `Done` with the
/// usage.
fn sample_and_send(
    s: &mut Seq,
    logits: &mut [f32],
    mask: Option<Result<Mask, String>>,
    shared: &Shared,
) -> Outcome {
    if let Some(mask) = mask {
        match mask.map(|m| m.apply(logits, &s.req.stop_ids)) {
            Err(msg) => return Outcome::Failed(format!("the grammar failed: {msg}")),
            Ok(false) => return Outcome::Failed("the grammar allows no token here".into()),
            Ok(true) => {}
        }
    }
    let raw = s.req.top_logprobs.map(|_| logits.to_vec());
    // Penalties look at everything the sequence holds: prompt and generated tokens.
    let id = s.sampler.sample(logits, &s.tokens);
    let (logprob, top) = match (raw, s.req.top_logprobs) {
        (Some(raw), Some(k)) => {
            let (lp, top) = log_probs(&raw, id, k);
            (Some(lp), top)
        }
        _ => (None, Vec::new()),
    };
    s.generated += 1;
    let mut forced = Vec::new();
    if let Some(c) = s
        .constraint
        .as_mut()
        .filter(|_| !s.req.stop_ids.contains(&id))
    {
        if let Err(msg) = c.consume(id) {
            return Outcome::Failed(format!("the grammar failed: {msg}"));
        }
        if !c.is_finished() {
            forced = c.forced();
        }
    }
    // Forced tokens go out as tokens of probability 1, as far as max_tokens and the context leave room.
    // `s.tokens` are the positions fed (the cache may hold rejected proposals beyond them until `sample_run` ends).
    let room =
        (s.req.max_tokens - s.generated).min(s.cache.n_ctx().saturating_sub(s.tokens.len() + 1));
    forced.truncate(room);
    if let Some(end) = forced.iter().position(|t| s.req.stop_ids.contains(t)) {
        forced.truncate(end + 1);
    }
    let mut flow = s.sink.send(Event::Token(Step { id, logprob, top }));
    let mut sent = 0;
    for &f in &forced {
        if flow != Flow::Continue {
            break;
        }
        s.generated += 1;
        sent += 1;
        flow = s.sink.send(Event::Token(sure_step(f, s.req.top_logprobs)));
    }
    forced.truncate(sent);
    shared.forced_tokens.fetch_add(sent as u64, Relaxed);
    let last = forced.last().copied().unwrap_or(id);
    let finish = match flow {
        Flow::Gone => return Outcome::Gone,
        Flow::Stop => Finish::Stop,
        Flow::Continue
            if s.req.stop_ids.contains(&last)
                || s.constraint.as_ref().is_some_and(|c| c.is_finished()) =>
        {
            Finish::Stop
        }
        Flow::Continue
            if s.generated >= s.req.max_tokens
                || s.tokens.len() + forced.len() >= s.cache.n_ctx() =>
        {
            Finish::Length
        }
        Flow::Continue => {
            s.next.push(id);
            s.next.append(&mut forced);
            return Outcome::Running;
        }
    };
    finish_seq(s, finish)
}

fn finish_seq(s: &mut Seq, finish: Finish) -> Outcome {
    let usage = Usage {
        prompt_tokens: s.n_prompt,
        completion_tokens: s.generated,
        cached_tokens: s.cached_tokens,
    };
    s.sink.send(Event::Done {
        finish,
        usage,
        embedding: None,
    });
    Outcome::Done
}

/// Sends the tokens a grammar forces before anything is sampled (the `{"name": ` a schema starts with) as the first
/// generated tokens (probability 1), and appends them to the prompt so that they are read in its forward passes.
fn force_start(s: &mut Seq, shared: &Shared) -> Outcome {
    let Some(c) = s.constraint.as_mut() else {
        return Outcome::Running;
    };
    let mut forced = c.forced();
    forced.truncate(s.req.max_tokens);
    if let Some(end) = forced.iter().position(|t| s.req.stop_ids.contains(t)) {
        forced.truncate(end + 1);
    }
    let finished = c.is_finished();
    let mut flow = Flow::Continue;
    for &f in &forced {
        if flow != Flow::Continue {
            break;
        }
        s.generated += 1;
        flow = s.sink.send(Event::Token(sure_step(f, s.req.top_logprobs)));
    }
    forced.truncate(s.generated);
    shared.forced_tokens.fetch_add(forced.len() as u64, Relaxed);
    let stopped = forced.last().is_some_and(|t| s.req.stop_ids.contains(t));
    s.req.prompt.extend_from_slice(&forced);
    match flow {
        Flow::Gone => Outcome::Gone,
        Flow::Stop => finish_seq(s, Finish::Stop),
        Flow::Continue if stopped || finished => finish_seq(s, Finish::Stop),
        Flow::Continue if s.generated >= s.req.max_tokens => finish_seq(s, Finish::Length),
        Flow::Continue => Outcome::Running,
    }
}

/// A token the grammar forced: probability 1.
fn sure_step(id: u32, top_logprobs: Option<usize>) -> Step {
    Step {
        id,
        logprob: top_logprobs.map(|_| 0.0),
        top: top_logprobs.map_or_else(Vec::new, |_| vec![(id, 0.0)]),
    }
}
