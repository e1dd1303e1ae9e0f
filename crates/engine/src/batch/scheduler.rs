//! The engine thread's loop: take new requests, drop cancelled ones, admit from the queue, run one forward pass
//! over every live sequence (decodes plus a budget of prompt chunks), sample, and send the events.

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

/// A sequence in flight. Per-sequence behaviour (sampling, a guide, the sink's text stream) hangs off `req` and
/// `sink`; `sample_and_send` is the one place a step's token is chosen, reported and judged.
struct Seq {
    req: Box<Request>,
    sink: Box<dyn Sink>,
    sampler: Sampler,
    cache: KvCache,
    /// The tokens the cache holds: prompt tokens read so far, then the generated tokens fed back.
    tokens: Vec<u32>,
    /// The last sampled token, to feed next step (None while the prompt is being read).
    next: Option<u32>,
    generated: usize,
    cached_tokens: usize,
}

impl Seq {
    fn prefilling(&self) -> bool {
        self.next.is_none()
    }
}

/// What one sequence contributes to a step: its index in `running` and how many tokens.
struct Part {
    seq: usize,
    n_tokens: usize,
    wants_logits: bool,
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
    pub fn new(model: Arc<Model>, config: BatchConfig, shared: Arc<Shared>) -> Scheduler {
        Scheduler {
            pool: ThreadPool::new(config.n_threads.max(1)),
            prefix: PrefixCache::new(config.prefix_cache_bytes),
            model,
            config,
            shared,
            waiting: VecDeque::new(),
            running: Vec::new(),
            shutdown: false,
        }
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

    /// Drops sequences and queued requests whose receiver has gone; their KV is freed here.
    fn drop_cancelled(&mut self) {
        let before = self.running.len() + self.waiting.len();
        let queued_before = self.waiting.len();
        self.running.retain(|s| !s.sink.is_closed());
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
            if req.max_tokens == 0 {
                let mut sink = sink;
                let usage = Usage {
                    prompt_tokens: req.prompt.len(),
                    ..Usage::default()
                };
                sink.send(Event::Done {
                    finish: Finish::Length,
                    usage,
                });
                continue;
            }
            // Always compute the last prompt token: its logits give the first generated token.
            let reusable = req.prompt.len() - 1;
            let cache = self
                .prefix
                .lookup(&req.prompt, reusable)
                .unwrap_or_else(|| {
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
            self.running.push(Seq {
                sampler: Sampler::new(req.sampling.clone()),
                tokens: req.prompt[..cached_tokens].to_vec(),
                req,
                sink,
                cache,
                next: None,
                generated: 0,
                cached_tokens,
            });
        }
    }

    /// Which tokens each sequence feeds this step: one for every decoding sequence, and prompt chunks (oldest
    /// request first) up to `prefill_chunk` tokens in all.
    fn plan(&self) -> Vec<Part> {
        let mut parts = Vec::new();
        let mut budget = self.config.prefill_chunk.max(1);
        for (i, s) in self.running.iter().enumerate() {
            if !s.prefilling() {
                parts.push(Part {
                    seq: i,
                    n_tokens: 1,
                    wants_logits: true,
                });
            } else if budget > 0 {
                let left = s.req.prompt.len() - s.tokens.len();
                let n = left.min(budget);
                budget -= n;
                parts.push(Part {
                    seq: i,
                    n_tokens: n,
                    wants_logits: n == left,
                });
            }
        }
        parts
    }

    fn step(&mut self) {
        let parts = self.plan();
        if parts.is_empty() {
            return;
        }
        let n_tokens: usize = parts.iter().map(|p| p.n_tokens).sum();
        let result = {
            let mut batch = Vec::with_capacity(parts.len());
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
                    ..
                } = s;
                let toks: &[u32] = match next {
                    Some(id) => std::slice::from_ref(id),
                    None => &req.prompt[tokens.len()..tokens.len() + p.n_tokens],
                };
                batch.push(SeqBatch {
                    cache,
                    tokens: toks,
                    logits_from: if p.wants_logits {
                        p.n_tokens - 1
                    } else {
                        p.n_tokens
                    },
                });
            }
            self.model.forward(&self.pool, &mut batch)
        };
        self.shared.steps.fetch_add(1, Relaxed);
        self.shared
            .tokens_processed
            .fetch_add(n_tokens as u64, Relaxed);
        let mut logits = match result {
            Ok(l) => l,
            Err(e) => {
                // Nothing changed in the caches, but the step cannot be retried as it is: fail its sequences.
                let msg = e.to_string();
                let failed: Vec<usize> = parts.iter().map(|p| p.seq).collect();
                for &i in failed.iter().rev() {
                    let mut s = self.running.remove(i);
                    s.sink.send(Event::Failed(msg.clone()));
                }
                return;
            }
        };

        let n_vocab = self.model.config.n_vocab;
        let mut row = 0;
        let mut finished = Vec::new(); // (index, Some(finish) or None when the receiver has gone)
        for p in &parts {
            let s = &mut self.running[p.seq];
            match s.next.take() {
                Some(id) => s.tokens.push(id),
                None => {
                    let at = s.tokens.len();
                    s.tokens
                        .extend_from_slice(&s.req.prompt[at..at + p.n_tokens]);
                }
            }
            if !p.wants_logits {
                continue;
            }
            let l = &mut logits[row * n_vocab..(row + 1) * n_vocab];
            row += 1;
            match sample_and_send(s, l) {
                Outcome::Running => {}
                end => finished.push((p.seq, end)),
            }
        }
        for (i, end) in finished.into_iter().rev() {
            let mut s = self.running.remove(i);
            match end {
                Outcome::Running => {}
                Outcome::Done => self.prefix.insert(s.tokens, s.cache),
                Outcome::Gone => {
                    self.shared.cancelled.fetch_add(1, Relaxed);
                }
                Outcome::Failed(msg) => {
                    s.sink.send(Event::Failed(msg));
                }
            }
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

/// What became of a sequence after its step.
enum Outcome {
    Running,
    /// Ended; `Done` was sent.
    Done,
    /// The receiver has gone.
    Gone,
    /// The guide refused; the message goes out as `Failed`.
    Failed(String),
}

/// Samples the next token of `s` from its logits (n_vocab), sends it, and decides whether the sequence ends (an
/// end-of-generation id, the sink's [`Flow::Stop`], the guide's completion, `max_tokens` or a full context); then
/// sends `Done` with the usage.
fn sample_and_send(s: &mut Seq, logits: &mut [f32]) -> Outcome {
    let raw = s.req.top_logprobs.map(|_| logits.to_vec());
    if let Some(g) = &mut s.req.guide {
        if let Err(m) = g.mask(logits) {
            return Outcome::Failed(m);
        }
    }
    // Penalties look at everything the sequence holds: prompt and generated tokens.
    let id = s.sampler.sample(logits, &s.tokens);
    let (logprob, top) = match (raw, s.req.top_logprobs) {
        (Some(raw), Some(k)) => {
            let (lp, top) = log_probs(&raw, id, k);
            (Some(lp), top)
        }
        _ => (None, Vec::new()),
    };
    let guide_done = match s.req.guide.as_mut().map(|g| g.accept(id)) {
        None => false,
        Some(Ok(done)) => done,
        Some(Err(m)) => return Outcome::Failed(m),
    };
    s.generated += 1;
    let flow = s.sink.send(Event::Token(Step { id, logprob, top }));
    let finish = match flow {
        Flow::Gone => return Outcome::Gone,
        Flow::Stop => Finish::Stop,
        Flow::Continue if guide_done || s.req.stop_ids.contains(&id) => Finish::Stop,
        Flow::Continue if s.generated >= s.req.max_tokens || s.cache.len() >= s.cache.n_ctx() => {
            Finish::Length
        }
        Flow::Continue => {
            s.next = Some(id);
            return Outcome::Running;
        }
    };
    let usage = Usage {
        prompt_tokens: s.req.prompt.len(),
        completion_tokens: s.generated,
        cached_tokens: s.cached_tokens,
    };
    s.sink.send(Event::Done { finish, usage });
    Outcome::Done
}
