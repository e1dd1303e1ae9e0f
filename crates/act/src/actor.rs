//! [`Actor`]: one model in the batch engine, one action space, and the deadline loop — a request per decision,
//! whose tokens are awaited until the action completes or the time is up, then the request is cancelled.
//!
//! Time: the prompt's fixed prefix (instruction and skills) is read once when the actor starts and stays in the
//! engine's prefix cache, so a step reads only its world state. The actor measures how long a decode step takes
//! (the gap between the engine's token bursts, smoothed); once a token has come and the time left is less than
//! one more step, it stops at once instead of waiting for the deadline. At the deadline it stops regardless, even
//! while the engine is mid-step: the request's sink then answers the engine [`Flow::Gone`] and the sequence is
//! dropped before the next step.

use crate::space::ActionSpace;
use crate::{hex, ActError, Decision, Reason, Source, Trace, World};
use hearth_constraint::{ConstraintError, Grammar, GrammarConstraint, Guide};
use hearth_engine::batch::{
    BatchConfig, Engine, Event, Finish, Flow, Lookup, Request, Sink, SubmitError,
};
use hearth_engine::{KvType, Model, SamplingParams};
use hearth_text::{ChatMessage, ChatTemplate, Tokenizer};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// How long a grammar may compile when there is no deadline (replay).
const COMPILE_LIMIT: Duration = Duration::from_secs(10);
/// Tokens that arrive closer together than this came from the same engine step (a sampled token and the ones its
/// grammar forced after it).
const SAME_STEP: Duration = Duration::from_micros(300);
/// How long to wait for the rest of a burst (the `Done` right behind an action's last token) before stopping early.
const BURST_GRACE: Duration = Duration::from_millis(1);
/// The most a deadline wait ends early to make up for late wake-ups (see `Actor::wake_margin`).
const MAX_WAKE_MARGIN: Duration = Duration::from_millis(20);
/// Bytes of a world state's JSON the prompt may hold.
pub const MAX_WORLD_BYTES: usize = 256 << 10;

/// Sampling settings (recorded in episode logs). The default is greedy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sampling {
    /// 0 is greedy.
    pub temperature: f32,
    pub top_k: usize,
    pub top_p: f32,
    pub min_p: f32,
    /// Step `k` samples with seed `seed + k`.
    pub seed: u64,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling {
            temperature: 0.0,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            seed: 0,
        }
    }
}

impl Sampling {
    fn params(&self, seed: u64) -> SamplingParams {
        SamplingParams {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            seed,
            ..SamplingParams::default()
        }
    }
}

/// How an [`Actor`] runs.
#[derive(Debug, Clone)]
pub struct ActOptions {
    pub sampling: Sampling,
    /// Compute threads (default: one per core).
    pub n_threads: usize,
    /// Context of each decision: prompt (instruction, skills, world state) plus the action.
    pub n_ctx: usize,
    /// Tokens an action may take; a longer one falls back ([`Reason::Length`]).
    pub max_tokens: usize,
    pub kv_type: KvType,
    /// Prompt-lookup speculation (copying ids from the world state pays); the decisions are the same bits either
    /// way.
    pub lookup: Lookup,
}

impl Default for ActOptions {
    fn default() -> Self {
        ActOptions {
            sampling: Sampling::default(),
            n_threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            n_ctx: 4096,
            max_tokens: 256,
            kv_type: KvType::F16,
            lookup: Lookup::default(),
        }
    }
}

/// How long a generation may run.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Budget {
    Deadline(Instant),
    /// Replay of a fallback: exactly this many tokens, no deadline.
    Tokens(usize),
    /// Replay of a model action: no limit but `max_tokens`.
    Unbounded,
}

/// How a generation ended.
enum End {
    /// The grammar completed the action.
    Complete,
    Length,
    Cut(Reason),
    Failed(String),
}

/// A model acting in one action space. See the crate's documentation.
pub struct Actor {
    engine: Engine,
    tok: Arc<Tokenizer>,
    guide: Arc<Guide>,
    template: ChatTemplate,
    space: ActionSpace,
    opts: ActOptions,
    system: String,
    /// Tokens of the fixed prompt prefix (read at start into the prefix cache).
    prefix_len: usize,
    next_step: u64,
    /// Smoothed duration of one decode step, once one was seen.
    step_time: std::cell::Cell<Option<Duration>>,
    /// How late this thread has recently woken from a timed wait (a slowly decaying maximum, at most
    /// [`MAX_WAKE_MARGIN`]). The deadline wait ends this much early, so that a thread the OS schedules late still
    /// writes its decision by the deadline: on a busy machine a timer wake-up can come milliseconds late.
    wake_margin: std::cell::Cell<Duration>,
}

impl Actor {
    /// Loads the model file and starts an actor (see [`Actor::new`]).
    pub fn load(path: &Path, space: ActionSpace, opts: ActOptions) -> Result<Actor, ActError> {
        let model = Model::load(path)
            .map_err(|e| ActError::Model(format!("cannot load {}: {e}", path.display())))?;
        Actor::new(model, space, opts)
    }

    /// Starts the engine for `model`, checks that every skill's schema compiles and that the fallback is a valid
    /// action, and reads the fixed prompt prefix into the engine's prefix cache.
    pub fn new(model: Model, space: ActionSpace, opts: ActOptions) -> Result<Actor, ActError> {
        let m = |e: &dyn std::fmt::Display| ActError::Model(e.to_string());
        opts.sampling
            .params(0)
            .validate()
            .map_err(|e| ActError::Options(e.to_string()))?;
        if opts.max_tokens == 0 || opts.n_ctx <= opts.max_tokens {
            return Err(ActError::Options(format!(
                "max_tokens ({}) must be at least 1 and less than the context ({})",
                opts.max_tokens, opts.n_ctx
            )));
        }
        let tok = Arc::new(Tokenizer::from_gguf(&model.gguf).map_err(|e| m(&e))?);
        let template = ChatTemplate::from_gguf_with(&model.gguf, &tok).map_err(|e| m(&e))?;
        let guide = Arc::new(Guide::new(tok.clone(), model.config.n_vocab).map_err(|e| m(&e))?);
        check_space(&guide, &tok, &space)?;
        let n_ctx = opts.n_ctx.min(model.config.n_ctx_train.max(1));
        let engine = Engine::start(
            Arc::new(model),
            BatchConfig {
                n_threads: opts.n_threads.max(1),
                n_ctx,
                // A cancelled request leaves at the engine's next step; until then new ones queue behind it.
                max_running: 2,
                max_queued: 64,
                // Small chunks: a cancelled request's last step (which the next one waits for) stays short.
                prefill_chunk: 128,
                prefix_cache_bytes: 64 << 20,
                kv_type: opts.kv_type,
                lookup: opts.lookup.clone(),
            },
        );
        let system = space.system_prompt();
        let mut actor = Actor {
            engine,
            tok,
            guide,
            template,
            space,
            opts: ActOptions { n_ctx, ..opts },
            system,
            prefix_len: 0,
            next_step: 0,
            step_time: std::cell::Cell::new(None),
            wake_margin: std::cell::Cell::new(Duration::ZERO),
        };
        actor.warm_up()?;
        Ok(actor)
    }

    pub fn space(&self) -> &ActionSpace {
        &self.space
    }

    pub fn options(&self) -> &ActOptions {
        &self.opts
    }

    /// Tokens of the prompt prefix every step shares (instruction and skills).
    pub fn prefix_tokens(&self) -> usize {
        self.prefix_len
    }

    /// The number the next decision gets.
    pub fn next_step(&self) -> u64 {
        self.next_step
    }

    /// Decides the action for `world` by `deadline`: the model's complete action, or the fallback (with the
    /// reason, and the error when the world state was unusable). Errs only when the engine has failed.
    pub fn decide(&mut self, world: &Value, deadline: Instant) -> Result<Decision, ActError> {
        let start = Instant::now();
        let step = self.take_step();
        let seed = self.step_seed(step);
        self.run(
            step,
            seed,
            World::State(world.clone()),
            Budget::Deadline(deadline),
            start,
        )
    }

    /// [`Actor::decide`] for a line of text: a line that is not a JSON object gets the fallback, with the error.
    pub fn decide_line(&mut self, line: &str, deadline: Instant) -> Result<Decision, ActError> {
        let start = Instant::now();
        let step = self.take_step();
        let seed = self.step_seed(step);
        self.run(
            step,
            seed,
            parse_line(line),
            Budget::Deadline(deadline),
            start,
        )
    }

    /// The fallback for input that never became a world state (a line too long, or not UTF-8): reason
    /// [`Reason::World`], with `why` as the error.
    pub fn reject(&mut self, why: &str) -> Decision {
        let step = self.take_step();
        let seed = self.step_seed(step);
        let fallback = self.space.fallback().clone();
        Decision {
            step,
            action: fallback,
            source: Source::Fallback,
            reason: Some(Reason::World),
            deadline_ms: 0.0,
            elapsed_ms: 0.0,
            tokens: 0,
            grammar_ms: 0.0,
            skipped: None,
            error: Some(why.to_string()),
            trace: Trace {
                world: World::None,
                seed,
                ..Trace::default()
            },
        }
    }

    fn take_step(&mut self) -> u64 {
        let s = self.next_step;
        self.next_step += 1;
        s
    }

    fn step_seed(&self, step: u64) -> u64 {
        self.opts.sampling.seed.wrapping_add(step)
    }

    /// Re-runs a recorded step (replay): `budget` is [`Budget::Tokens`] for a fallback's cut.
    pub(crate) fn rerun(
        &mut self,
        step: u64,
        seed: u64,
        world: World,
        budget: Budget,
    ) -> Result<Decision, ActError> {
        self.next_step = step + 1;
        self.run(step, seed, world, budget, Instant::now())
    }

    fn run(
        &mut self,
        step: u64,
        seed: u64,
        world: World,
        budget: Budget,
        start: Instant,
    ) -> Result<Decision, ActError> {
        let deadline_ms = match budget {
            Budget::Deadline(d) => ms(d.saturating_duration_since(start)),
            _ => 0.0,
        };
        let mut d = Decision {
            step,
            action: self.space.fallback().clone(),
            source: Source::Fallback,
            reason: None,
            deadline_ms,
            elapsed_ms: 0.0,
            tokens: 0,
            grammar_ms: 0.0,
            skipped: None,
            error: None,
            trace: Trace {
                world,
                seed,
                ..Trace::default()
            },
        };
        let fallback = self.space.fallback().clone();
        let finish = |mut d: Decision, reason: Option<Reason>, error: Option<String>| {
            if reason.is_some() {
                d.action = fallback.clone();
                d.source = Source::Fallback;
            }
            d.reason = reason;
            d.error = error;
            d.elapsed_ms = ms(start.elapsed());
            Ok(d)
        };
        let state = match &d.trace.world {
            World::State(v) if v.is_object() => v.clone(),
            World::State(_) => {
                return finish(
                    d,
                    Some(Reason::World),
                    Some("a world state must be a JSON object".into()),
                )
            }
            World::Line(l) => {
                let e = serde_json::from_str::<Value>(l)
                    .err()
                    .map_or_else(String::new, |e| e.to_string());
                return finish(
                    d,
                    Some(Reason::World),
                    Some(format!("the line is not JSON: {e}")),
                );
            }
            World::None => return finish(d, Some(Reason::World), Some("no world state".into())),
        };
        // The prompt first: its digest is logged for every world state that is usable, however the step ends.
        let prompt = match self.prompt(&state) {
            Ok(p) => p,
            Err(e) => return finish(d, Some(Reason::World), Some(e.to_string())),
        };
        d.trace.prompt_tokens = prompt.len();
        d.trace.prompt_sha256 = ids_sha256(&prompt);
        // This step's grammar, from the world as it is now.
        let t = Instant::now();
        let grammar = match self.space.step_grammar(&state) {
            Ok(g) => g,
            Err(e) => return finish(d, Some(Reason::World), Some(e.to_string())),
        };
        let limit = match budget {
            Budget::Deadline(dl) => dl.saturating_duration_since(Instant::now()),
            _ => COMPILE_LIMIT,
        };
        let constraint = self
            .guide
            .compile_bounded(Grammar::Lark(grammar.lark.clone()), limit);
        d.grammar_ms = ms(t.elapsed());
        let constraint = match constraint {
            Ok(c) => c,
            Err(ConstraintError::Timeout { .. }) if matches!(budget, Budget::Deadline(_)) => {
                return finish(d, Some(Reason::Deadline), None)
            }
            Err(e) => return finish(d, Some(Reason::Error), Some(e.to_string())),
        };
        let (ids, end, cached) = self.generate(prompt, constraint, seed, budget)?;
        d.tokens = ids.len();
        d.trace.cached_tokens = cached;
        d.trace.token_ids = ids;
        match end {
            End::Complete => {
                let text: Vec<u32> = d
                    .trace
                    .token_ids
                    .iter()
                    .copied()
                    .filter(|&id| !self.tok.is_eog(id))
                    .collect();
                let text = self.tok.decode(&text);
                match serde_json::from_str::<Value>(&text) {
                    Ok(a) => {
                        d.action = a;
                        d.source = Source::Model;
                        finish(d, None, None)
                    }
                    Err(e) => {
                        let why = format!("the model's action {text:?} is not JSON: {e}");
                        finish(d, Some(Reason::Error), Some(why))
                    }
                }
            }
            End::Length => finish(d, Some(Reason::Length), None),
            End::Cut(r) => finish(d, Some(r), None),
            End::Failed(msg) => {
                if let Some(why) = self.engine.failure() {
                    return Err(ActError::Engine(why));
                }
                finish(d, Some(Reason::Error), Some(msg))
            }
        }
    }

    /// The chat prompt for `world`: the system message (instruction and skills), then the world state.
    fn prompt(&self, world: &Value) -> Result<Vec<u32>, ActError> {
        let json = serde_json::to_string(world).map_err(|e| ActError::World(e.to_string()))?;
        if json.len() > MAX_WORLD_BYTES {
            return Err(ActError::World(format!(
                "it is {} bytes of JSON; at most {MAX_WORLD_BYTES} are read",
                json.len()
            )));
        }
        let text = self.render(&json)?;
        let ids = self
            .tok
            .encode(&text, false, true)
            .map_err(|e| ActError::World(e.to_string()))?;
        let room = self.opts.n_ctx - self.opts.max_tokens;
        if ids.len() > room {
            return Err(ActError::World(format!(
                "the prompt with it is {} tokens; the context ({}) leaves room for {room} after max_tokens ({})",
                ids.len(),
                self.opts.n_ctx,
                self.opts.max_tokens
            )));
        }
        Ok(ids)
    }

    fn render(&self, world_json: &str) -> Result<String, ActError> {
        let user = format!("World state:\n{world_json}");
        self.template
            .render(
                &[
                    ChatMessage::new("system", &self.system),
                    ChatMessage::new("user", &user),
                ],
                true,
            )
            .map_err(|e| ActError::Model(format!("the chat template: {e}")))
    }

    /// Reads the prompt prefix every step shares into the engine's prefix cache (a one-token request).
    fn warm_up(&mut self) -> Result<(), ActError> {
        const MARK: &str = "\u{1}WORLD\u{1}";
        let text = self.render(MARK)?;
        let cut = text.find(MARK).unwrap_or(text.len());
        let prefix = self
            .tok
            .encode(&text[..cut], false, true)
            .map_err(|e| ActError::Model(e.to_string()))?;
        self.prefix_len = prefix.len();
        if prefix.len() + 1 >= self.opts.n_ctx {
            return Err(ActError::Options(format!(
                "the instruction and skills take {} tokens; the context is {}",
                prefix.len(),
                self.opts.n_ctx
            )));
        }
        let (tx, rx) = mpsc::channel();
        let req = Request {
            prompt: prefix,
            max_tokens: 1,
            ..Default::default()
        };
        self.engine
            .submit(req, Box::new(tx))
            .map_err(|e| ActError::Engine(e.to_string()))?;
        for ev in rx {
            match ev {
                Event::Done { .. } => return Ok(()),
                Event::Failed(m) => return Err(ActError::Engine(m)),
                Event::Token(_) => {}
            }
        }
        Err(ActError::Engine(
            self.engine
                .failure()
                .unwrap_or_else(|| "the engine stopped".into()),
        ))
    }

    /// Runs one constrained request within `budget`: (generated ids, how it ended, cached prompt tokens).
    fn generate(
        &mut self,
        prompt: Vec<u32>,
        constraint: GrammarConstraint,
        seed: u64,
        budget: Budget,
    ) -> Result<(Vec<u32>, End, usize), ActError> {
        let max_tokens = match budget {
            Budget::Tokens(n) => n.min(self.opts.max_tokens),
            _ => self.opts.max_tokens,
        };
        if max_tokens == 0 {
            return Ok((Vec::new(), End::Cut(Reason::Deadline), 0));
        }
        let (tx, rx) = mpsc::channel();
        let cancel = Arc::new(AtomicBool::new(false));
        let sink = CancellableSink {
            tx,
            cancel: cancel.clone(),
        };
        let req = Request {
            prompt,
            max_tokens,
            sampling: self.opts.sampling.params(seed),
            stop_ids: self.tok.eog_ids().to_vec(),
            constraint: Some(Box::new(constraint)),
            ..Default::default()
        };
        let cached_before = self.engine.stats().cached_tokens;
        match self.engine.submit(req, Box::new(sink)) {
            Ok(()) => {}
            Err(SubmitError::Stopped) => return Err(self.gone()),
            // Transient (a queue full of cancelled requests) or the request itself: this step falls back.
            Err(e) => return Ok((Vec::new(), End::Failed(e.to_string()), 0)),
        }
        let mut ids = Vec::new();
        let mut last: Option<Instant> = None;
        // Token bursts (one per engine step) seen so far.
        let mut bursts = 0u32;
        let cut = |reason: Reason, ids: Vec<u32>| {
            cancel.store(true, Ordering::Release);
            // No `Done` (and no usage) comes for a cancelled request; the engine's counter says what its admission
            // took from the prefix cache (0 when it was never admitted). This actor is the engine's only user.
            let cached = self
                .engine
                .stats()
                .cached_tokens
                .saturating_sub(cached_before);
            Ok((ids, End::Cut(reason), cached as usize))
        };
        loop {
            let ev = match budget {
                Budget::Deadline(deadline) => match rx.try_recv() {
                    Ok(ev) => ev,
                    Err(mpsc::TryRecvError::Disconnected) => return Err(self.gone()),
                    Err(mpsc::TryRecvError::Empty) => {
                        let now = Instant::now();
                        // The wait ends early by how late wake-ups have recently been (and by the time it takes
                        // to cancel and write the decision, which is part of that measure).
                        let deadline = deadline
                            .checked_sub(self.wake_margin.get())
                            .unwrap_or(deadline);
                        if now >= deadline {
                            return cut(Reason::Deadline, ids);
                        }
                        let left = deadline - now;
                        // Another step cannot fit: wait only for the rest of a burst (an action's last token
                        // comes with `Done` right behind it), then stop.
                        let early =
                            last.is_some() && self.step_time.get().is_some_and(|s| s > left);
                        let wait = if early { BURST_GRACE.min(left) } else { left };
                        let waited = rx.recv_timeout(wait);
                        if matches!(waited, Err(mpsc::RecvTimeoutError::Timeout)) {
                            self.observe_wake(Instant::now().saturating_duration_since(now + wait));
                        }
                        match waited {
                            Ok(ev) => ev,
                            Err(mpsc::RecvTimeoutError::Timeout) if early && wait < left => {
                                return cut(Reason::Estimate, ids)
                            }
                            Err(mpsc::RecvTimeoutError::Timeout) => {
                                return cut(Reason::Deadline, ids)
                            }
                            Err(mpsc::RecvTimeoutError::Disconnected) => return Err(self.gone()),
                        }
                    }
                },
                _ => match rx.recv() {
                    Ok(ev) => ev,
                    Err(_) => return Err(self.gone()),
                },
            };
            match ev {
                Event::Token(s) => {
                    let now = Instant::now();
                    if let Some(prev) = last {
                        let gap = now - prev;
                        if gap > SAME_STEP {
                            // The gap after the first burst holds the prompt's forward passes (the tokens a
                            // grammar forces at the start are sent on admission, before them): not a decode step.
                            if bursts >= 2 {
                                self.observe_step(gap);
                            }
                            bursts += 1;
                        }
                    } else {
                        bursts = 1;
                    }
                    last = Some(now);
                    ids.push(s.id);
                }
                Event::Done { finish, usage, .. } => {
                    let end = match finish {
                        Finish::Stop => End::Complete,
                        Finish::Length if matches!(budget, Budget::Tokens(_)) => {
                            End::Cut(Reason::Deadline)
                        }
                        Finish::Length => End::Length,
                    };
                    return Ok((ids, end, usage.cached_tokens));
                }
                Event::Failed(msg) => return Ok((ids, End::Failed(msg), 0)),
            }
        }
    }

    fn observe_step(&self, d: Duration) {
        self.step_time.set(Some(match self.step_time.get() {
            None => d,
            Some(s) => (s * 3 + d) / 4,
        }));
    }

    /// Records how late a timed wait woke: the margin jumps to a new maximum and decays by a tenth per wake.
    fn observe_wake(&self, late: Duration) {
        let decayed = self.wake_margin.get() * 9 / 10;
        self.wake_margin.set(late.max(decayed).min(MAX_WAKE_MARGIN));
    }

    fn gone(&self) -> ActError {
        ActError::Engine(
            self.engine
                .failure()
                .unwrap_or_else(|| "the engine stopped".into()),
        )
    }
}

/// Forwards events to the deciding thread until it cancels: then the engine drops the sequence.
struct CancellableSink {
    tx: mpsc::Sender<Event>,
    cancel: Arc<AtomicBool>,
}

impl Sink for CancellableSink {
    fn send(&mut self, event: Event) -> Flow {
        if self.cancel.load(Ordering::Acquire) {
            return Flow::Gone;
        }
        match self.tx.send(event) {
            Ok(()) => Flow::Continue,
            Err(_) => Flow::Gone,
        }
    }

    fn is_closed(&self) -> bool {
        self.cancel.load(Ordering::Acquire)
    }
}

/// Checks at start that the grammar of every skill compiles (naming the first that does not) and that the
/// fallback is an action its skill's grammar accepts.
fn check_space(guide: &Guide, tok: &Tokenizer, space: &ActionSpace) -> Result<(), ActError> {
    for (name, lark) in space.skill_probes() {
        guide.compile(&Grammar::Lark(lark)).map_err(|e| {
            ActError::Space(format!(
                "the parameters of skill {name:?} do not compile: {e}"
            ))
        })?;
    }
    guide
        .compile(&Grammar::Lark(space.probe_grammar()))
        .map_err(|e| ActError::Space(format!("the skills do not compile together: {e}")))?;
    let text = space.fallback_text()?;
    let mut c = guide
        .compile(&Grammar::Lark(space.fallback_grammar()?))
        .map_err(|e| ActError::Space(e.to_string()))?;
    let bad =
        |why: String| ActError::Space(format!("'fallback' {text} is not a valid action: {why}"));
    let ids = tok
        .encode(&text, false, false)
        .map_err(|e| bad(e.to_string()))?;
    use hearth_engine::batch::Constraint;
    for id in ids {
        let mask = c.mask().map_err(&bad)?;
        if !mask.is_allowed(id) {
            return Err(bad("it does not follow its skill's parameters".into()));
        }
        c.consume(id).map_err(&bad)?;
    }
    let mask = c.mask().map_err(&bad)?;
    if !(mask.accepting || c.is_finished()) {
        return Err(bad("it is incomplete for its skill's parameters".into()));
    }
    Ok(())
}

fn parse_line(line: &str) -> World {
    match serde_json::from_str::<Value>(line) {
        Ok(v) => World::State(v),
        Err(_) => World::Line(line.to_string()),
    }
}

fn ids_sha256(ids: &[u32]) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for id in ids {
        h.update(id.to_le_bytes());
    }
    hex(&h.finalize())
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e5).round() / 100.0
}
