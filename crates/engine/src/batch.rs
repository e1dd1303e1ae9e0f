//! Continuous batching: one engine thread serves many sequences at once, fed by a channel.
//!
//! Each [`Engine::submit`]ted [`Request`] carries its own [`Sink`] for streaming [`Event`]s (tokens with their
//! log-probabilities, then the finish and usage). The engine alone ends a sequence and says why ([`Finish`]): at an
//! end-of-generation id, at `max_tokens` or a full context, or when its sink answers a token with [`Flow::Stop`]
//! (the front-end's text stream found a stop string); usage always comes with the `Done` event. A [`Constraint`] (a
//! grammar) may limit which tokens a sequence can produce. Every step the engine thread runs all live sequences through one
//! [`Model::forward`](crate::Model::forward): running streams decode one token each, and prompts are read in chunks
//! beside them (so a long prompt does not stall running streams). New requests join between steps; a sequence whose
//! sink has closed is dropped, and its KV freed, before the next step. Finished sequences leave their KV in a
//! [`prefix cache`](BatchConfig::prefix_cache_bytes) that later requests sharing a prefix start from.
//!
//! An [`embed`](Request::embed) request generates nothing: its prompt is read whole in one forward pass (beside
//! the other sequences) and its `Done` event carries the pooled, L2-normalised final hidden states
//! ([`Model::forward_pooled`](crate::Model::forward_pooled)).
//!
//! The forward pass is exact per sequence (each token's output depends only on its own sequence), so a greedy
//! request yields the same tokens alone or batched with others.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use hearth_engine::batch::{BatchConfig, Engine, Event, Request};
//! use std::sync::{mpsc, Arc};
//! let model = Arc::new(hearth_engine::Model::load("smollm2-135m.gguf")?);
//! let engine = Engine::start(model, BatchConfig::default());
//! let (tx, rx) = mpsc::channel();
//! engine.submit(Request { prompt: vec![1, 2, 3], max_tokens: 8, ..Default::default() }, Box::new(tx))?;
//! for ev in rx {
//!     match ev {
//!         Event::Token(step) => println!("{}", step.id),
//!         Event::Done { finish, usage, .. } => println!("{finish:?} {usage:?}"),
//!         Event::Failed(msg) => eprintln!("{msg}"),
//!     }
//! }
//! # Ok(()) }
//! ```

mod constraint;
mod lookup;
mod prefix;
mod scheduler;

pub use constraint::{Constraint, Mask};
pub use lookup::{propose, Lookup};

use crate::{KvType, Model, SamplingParams};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;

/// How the engine thread schedules work.
#[derive(Debug, Clone)]
pub struct BatchConfig {
    /// Compute threads of the engine's pool.
    pub n_threads: usize,
    /// Context (positions) of each sequence: prompt plus generated tokens.
    pub n_ctx: usize,
    /// Sequences in flight at once (prefilling or decoding); more wait in the queue.
    pub max_running: usize,
    /// Requests waiting to start beyond which [`Engine::submit`] refuses with [`SubmitError::QueueFull`].
    pub max_queued: usize,
    /// Prompt tokens read per step, over all prefilling sequences together.
    pub prefill_chunk: usize,
    /// KV bytes kept from finished requests for later ones that share a prefix (0 disables the prefix cache).
    pub prefix_cache_bytes: usize,
    /// Element type of every sequence's KV cache (check it fits the model with
    /// [`Model::new_cache_typed`](crate::Model::new_cache_typed) before starting; a type that does not fit falls
    /// back to f16).
    pub kv_type: KvType,
    /// Prompt-lookup speculation (on by default): decoding sequences propose continuations of n-grams they have
    /// seen and verify them in the step's forward pass; the output is the same bits either way.
    pub lookup: Lookup,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            n_threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            n_ctx: 4096,
            max_running: 64,
            max_queued: 256,
            prefill_chunk: 256,
            prefix_cache_bytes: 256 << 20,
            kv_type: KvType::F16,
            lookup: Lookup::default(),
        }
    }
}

/// One generated token.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub id: u32,
    /// Log-probability of `id` and the top-k alternatives, over the full vocabulary before sampling
    /// (when asked for).
    pub logprob: Option<f32>,
    pub top: Vec<(u32, f32)>,
}

/// Why a sequence ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// The model produced an end-of-generation id, the sink found a stop string, or the grammar completed.
    Stop,
    /// `max_tokens` were generated, or the context filled up.
    Length,
}

/// One generation to run.
#[derive(Default)]
pub struct Request {
    /// Prompt token ids (at least one).
    pub prompt: Vec<u32>,
    /// Tokens to generate at most.
    pub max_tokens: usize,
    pub sampling: SamplingParams,
    /// End-of-generation ids: generation stops after producing one (it is reported, not fed back).
    pub stop_ids: Vec<u32>,
    /// Report the top `k` log-probabilities of every step (and the chosen token's).
    pub top_logprobs: Option<usize>,
    /// A grammar the generated tokens must follow; `stop_ids` are then allowed only where it accepts.
    pub constraint: Option<Box<dyn Constraint>>,
    /// Embed the prompt instead of generating: `Done` carries its embedding (`max_tokens` and sampling are unused;
    /// the prompt is read whole in one step and never comes from or goes to the prefix cache).
    pub embed: bool,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("prompt", &self.prompt)
            .field("max_tokens", &self.max_tokens)
            .field("sampling", &self.sampling)
            .field("stop_ids", &self.stop_ids)
            .field("top_logprobs", &self.top_logprobs)
            .field("constraint", &self.constraint.is_some())
            .field("embed", &self.embed)
            .finish()
    }
}

/// Token counts of a finished request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    /// Prompt tokens whose KV came from the prefix cache instead of being computed.
    pub cached_tokens: usize,
}

/// What a request's sink receives: `Token`s, then exactly one `Done` or `Failed`.
#[derive(Debug, Clone)]
pub enum Event {
    Token(Step),
    Done {
        finish: Finish,
        usage: Usage,
        /// An [`embed`](Request::embed) request's L2-normalised embedding (n_embd); `None` for generations.
        embedding: Option<Vec<f32>>,
    },
    Failed(String),
}

/// What a sink answers to an event (only a `Token`'s answer changes anything).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Go on.
    Continue,
    /// The sequence is complete (its text reached a stop string): the engine ends it with [`Finish::Stop`] and
    /// sends `Done` with the usage.
    Stop,
    /// The receiver has gone: the engine drops the sequence, and sends nothing more.
    Gone,
}

/// Where a request's events go; it runs on the engine thread, so it must be quick (detokenize, forward to a
/// channel, write to a terminal). A sink whose receiver has gone cancels its request.
pub trait Sink: Send {
    /// Delivers one event.
    fn send(&mut self, event: Event) -> Flow;
    /// Whether the receiver has gone (checked before every step, so a disconnect frees the sequence at once).
    fn is_closed(&self) -> bool {
        false
    }
}

impl Sink for mpsc::Sender<Event> {
    fn send(&mut self, event: Event) -> Flow {
        match mpsc::Sender::send(self, event) {
            Ok(()) => Flow::Continue,
            Err(_) => Flow::Gone,
        }
    }
}

/// Why a request was refused before it started.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    #[error("the queue is full ({max_queued} requests waiting); retry later")]
    QueueFull { max_queued: usize },
    #[error("the prompt is empty")]
    EmptyPrompt,
    #[error(
        "the prompt ({prompt_tokens} tokens) plus max_tokens ({max_tokens}) exceeds the context of {n_ctx} tokens"
    )]
    TooLong {
        prompt_tokens: usize,
        max_tokens: usize,
        n_ctx: usize,
    },
    #[error("token id {id} is outside the vocabulary of {n_vocab}")]
    BadToken { id: u32, n_vocab: usize },
    #[error("the engine has stopped")]
    Stopped,
    #[error("this model makes embeddings only: it cannot generate text")]
    EmbeddingOnly,
}

/// Counters the engine thread keeps up to date (read them with [`Engine::stats`]).
#[derive(Debug, Default)]
struct Shared {
    queued: AtomicUsize,
    running: AtomicUsize,
    kv_bytes: AtomicUsize,
    prefix_bytes: AtomicUsize,
    prefix_entries: AtomicUsize,
    steps: AtomicU64,
    tokens_processed: AtomicU64,
    prefix_hits: AtomicU64,
    cached_tokens: AtomicU64,
    cancelled: AtomicU64,
    masks: AtomicU64,
    mask_nanos: AtomicU64,
    forced_tokens: AtomicU64,
    draft_tokens: AtomicU64,
    draft_accepted: AtomicU64,
    /// Set when the engine thread panicked: the panic's message. The thread has ended; nothing more will run.
    failure: Mutex<Option<String>>,
}

/// A snapshot of the engine's state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Requests waiting to start.
    pub queued: usize,
    /// Sequences prefilling or decoding.
    pub running: usize,
    /// KV bytes held: running sequences plus the prefix cache.
    pub kv_bytes: usize,
    /// KV bytes held by the prefix cache alone.
    pub prefix_bytes: usize,
    pub prefix_entries: usize,
    /// Forward passes run.
    pub steps: u64,
    /// Tokens run through the model (prompt and generated).
    pub tokens_processed: u64,
    /// Requests that started from the prefix cache, and the prompt tokens that saved.
    pub prefix_hits: u64,
    pub cached_tokens: u64,
    /// Requests dropped because their sink closed.
    pub cancelled: u64,
    /// Grammar masks computed for constrained sequences, and the time they took in all (on the helper thread that
    /// runs beside the forward pass).
    pub masks: u64,
    pub mask_nanos: u64,
    /// Tokens a grammar forced (fed without a step of their own).
    pub forced_tokens: u64,
    /// Tokens proposed by prompt lookup and verified, and how many of them were kept.
    pub draft_tokens: u64,
    pub draft_accepted: u64,
}

enum Msg {
    Submit(Box<Request>, Box<dyn Sink>),
    Shutdown,
}

/// The handle to the engine thread. Dropping it cancels whatever is left and joins the thread.
pub struct Engine {
    tx: mpsc::Sender<Msg>,
    shared: Arc<Shared>,
    config: BatchConfig,
    n_vocab: usize,
    /// The model has an output layer (an encoder such as BERT does not).
    can_generate: bool,
    /// Most positions an embedding's prompt may have (the context, or fewer learned positions).
    max_embed_tokens: usize,
    thread: Option<JoinHandle<()>>,
}

impl Engine {
    /// Starts the engine thread (and its compute pool) for `model`.
    pub fn start(model: Arc<Model>, config: BatchConfig) -> Engine {
        let (tx, rx) = mpsc::channel();
        let shared = Arc::new(Shared::default());
        let n_vocab = model.config.n_vocab;
        let can_generate = model.weights.output.is_some();
        let max_embed_tokens = model
            .weights
            .position_embd
            .as_ref()
            .map_or(config.n_ctx, |p| p.rows.min(config.n_ctx));
        let thread = {
            let (shared, config) = (shared.clone(), config.clone());
            std::thread::Builder::new()
                .name("hearth-engine".into())
                .spawn(move || {
                    // A panic is a bug whose damage we cannot bound; record why, so that `failure` reports it
                    // (the sinks of every request in flight are dropped by the unwind, which their receivers see).
                    // The scheduler (and so every request's sink) outlives the unwind, so the failure is recorded
                    // before any receiver sees its sink go.
                    let mut scheduler =
                        match scheduler::Scheduler::new(model, config, shared.clone()) {
                            Ok(s) => s,
                            Err(why) => {
                                // Reported like a panic: `failure` says why and every submit is refused.
                                if let Ok(mut f) = shared.failure.lock() {
                                    *f = Some(why);
                                }
                                return;
                            }
                        };
                    let run = std::panic::AssertUnwindSafe(|| scheduler.run(rx));
                    if let Err(payload) = std::panic::catch_unwind(run) {
                        let why = panic_message(payload.as_ref());
                        if let Ok(mut f) = shared.failure.lock() {
                            *f = Some(why);
                        }
                    }
                    drop(scheduler);
                })
                .expect("spawning the engine thread")
        };
        Engine {
            tx,
            shared,
            config,
            n_vocab,
            can_generate,
            max_embed_tokens,
            thread: Some(thread),
        }
    }

    /// Whether the model generates text (else it only embeds).
    pub fn can_generate(&self) -> bool {
        self.can_generate
    }

    /// The longest prompt an embedding request may have.
    pub fn max_embed_tokens(&self) -> usize {
        self.max_embed_tokens
    }

    pub fn config(&self) -> &BatchConfig {
        &self.config
    }

    /// Queues a request; its events go to `sink`. Refuses at once when the queue is full or the request cannot fit.
    pub fn submit(&self, req: Request, sink: Box<dyn Sink>) -> Result<(), SubmitError> {
        if req.prompt.is_empty() {
            return Err(SubmitError::EmptyPrompt);
        }
        if !req.embed && !self.can_generate {
            return Err(SubmitError::EmbeddingOnly);
        }
        let (max_tokens, n_ctx) = match req.embed {
            true => (0, self.max_embed_tokens),
            false => (req.max_tokens, self.config.n_ctx),
        };
        if req.prompt.len() + max_tokens > n_ctx {
            return Err(SubmitError::TooLong {
                prompt_tokens: req.prompt.len(),
                max_tokens,
                n_ctx,
            });
        }
        if let Some(&id) = req.prompt.iter().find(|&&id| id as usize >= self.n_vocab) {
            return Err(SubmitError::BadToken {
                id,
                n_vocab: self.n_vocab,
            });
        }
        // Reserve a queue slot; the engine thread releases it when the request starts (or is dropped).
        let max = self.config.max_queued;
        self.shared
            .queued
            .fetch_update(Relaxed, Relaxed, |q| (q < max).then_some(q + 1))
            .map_err(|_| SubmitError::QueueFull { max_queued: max })?;
        self.tx.send(Msg::Submit(Box::new(req), sink)).map_err(|_| {
            self.shared.queued.fetch_sub(1, Relaxed);
            SubmitError::Stopped
        })
    }

    /// Why the engine thread died, when it panicked (None while it runs). Requests submitted after that are
    /// refused with [`SubmitError::Stopped`]; the engine does not restart itself.
    pub fn failure(&self) -> Option<String> {
        if let Some(why) = self.shared.failure.lock().ok().and_then(|f| f.clone()) {
            return Some(why);
        }
        // The thread only ends on its own when it panicked (Drop sends the shutdown); a poisoned lock says the same.
        self.thread
            .as_ref()
            .filter(|t| t.is_finished())
            .map(|_| "the engine thread stopped".to_string())
    }

    pub fn stats(&self) -> Stats {
        let s = &self.shared;
        Stats {
            queued: s.queued.load(Relaxed),
            running: s.running.load(Relaxed),
            kv_bytes: s.kv_bytes.load(Relaxed),
            prefix_bytes: s.prefix_bytes.load(Relaxed),
            prefix_entries: s.prefix_entries.load(Relaxed),
            steps: s.steps.load(Relaxed),
            tokens_processed: s.tokens_processed.load(Relaxed),
            prefix_hits: s.prefix_hits.load(Relaxed),
            cached_tokens: s.cached_tokens.load(Relaxed),
            cancelled: s.cancelled.load(Relaxed),
            masks: s.masks.load(Relaxed),
            mask_nanos: s.mask_nanos.load(Relaxed),
            forced_tokens: s.forced_tokens.load(Relaxed),
            draft_tokens: s.draft_tokens.load(Relaxed),
            draft_accepted: s.draft_accepted.load(Relaxed),
        }
    }
}

/// The text of a panic payload (`panic!` with a literal or a format string), or a placeholder.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    let msg = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into());
    format!("the engine failed: {msg}")
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.tx.send(Msg::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
