//! Constrained sequences in the batch engine with SmolLM2, under small scripted grammars (no llguidance here: the
//! engine only sees the `Constraint` seam): every token stays inside the mask, greedy and sampled; the stop ids come
//! only where the grammar accepts; forced tokens go out as tokens and are fed in one forward pass, giving the same
//! tokens as one step each; a constrained stream batched with free ones equals it alone; a failing grammar fails
//! only its own stream.

use hearth_test_support as support;

use hearth_engine::batch::{BatchConfig, Constraint, Engine, Event, Lookup, Mask, Request};
use hearth_engine::{Finish, Model, SamplingParams};
use std::sync::{mpsc, Arc, OnceLock};

fn model() -> Arc<Model> {
    static M: OnceLock<Arc<Model>> = OnceLock::new();
    M.get_or_init(|| Arc::new(Model::load(support::model_path("smollm2-135m")).unwrap()))
        .clone()
}

const STOP: u32 = 2; // <|im_end|>

/// A scripted grammar: any of `allowed`, accepting once `accept_after` tokens were consumed; optionally, after each
/// chosen token, `forces` are forced (`force`) or offered as the only choice one step each (`!force`);
/// `fail_at` makes the mask fail after that many tokens.
#[derive(Clone)]
struct Script {
    allowed: Vec<u32>,
    accept_after: usize,
    forces: Vec<u32>,
    force: bool,
    fail_at: Option<usize>,
    n_vocab: usize,
    consumed: Vec<u32>,
    /// Tokens of `forces` still to be offered one by one (when `!force`).
    pending: Vec<u32>,
}

impl Script {
    fn new(allowed: Vec<u32>, accept_after: usize) -> Script {
        Script {
            allowed,
            accept_after,
            forces: Vec::new(),
            force: true,
            fail_at: None,
            n_vocab: model().config.n_vocab,
            consumed: Vec::new(),
            pending: Vec::new(),
        }
    }
}

impl Constraint for Script {
    fn mask(&mut self) -> Result<Mask, String> {
        if self.fail_at.is_some_and(|n| self.consumed.len() >= n) {
            return Err("scripted failure".into());
        }
        let mut allowed = vec![0u32; self.n_vocab.div_ceil(32)];
        let ids = match self.pending.first() {
            Some(&p) => vec![p],
            None => self.allowed.clone(),
        };
        for id in ids {
            allowed[id as usize / 32] |= 1 << (id % 32);
        }
        Ok(Mask {
            allowed,
            accepting: self.pending.is_empty() && self.consumed.len() >= self.accept_after,
        })
    }

    fn consume(&mut self, id: u32) -> Result<(), String> {
        match self.pending.first() {
            Some(&p) if p == id => {
                self.pending.remove(0);
            }
            Some(&p) => return Err(format!("expected {p}, got {id}")),
            None if self.allowed.contains(&id) => {
                if !self.force {
                    self.pending = self.forces.clone();
                }
            }
            None => return Err(format!("{id} is not allowed")),
        }
        self.consumed.push(id);
        Ok(())
    }

    fn forced(&mut self) -> Vec<u32> {
        if !self.force || self.forces.is_empty() {
            return Vec::new();
        }
        // Only after a chosen token (not at the start, not after the forced ones themselves).
        if self.consumed.is_empty() || self.forces.contains(self.consumed.last().unwrap()) {
            return Vec::new();
        }
        self.consumed.extend(&self.forces);
        self.forces.clone()
    }

    fn is_finished(&self) -> bool {
        false
    }

    fn boxed_clone(&self) -> Box<dyn Constraint> {
        Box::new(self.clone())
    }
}

fn config() -> BatchConfig {
    BatchConfig {
        n_threads: 1,
        n_ctx: 512,
        max_running: 16,
        max_queued: 64,
        prefill_chunk: 64,
        prefix_cache_bytes: 0,
        kv_type: Default::default(),
        lookup: Default::default(),
    }
}

fn request(
    prompt: &[u32],
    max_tokens: usize,
    c: Option<Script>,
    sampling: SamplingParams,
) -> Request {
    Request {
        prompt: prompt.to_vec(),
        max_tokens,
        sampling,
        stop_ids: vec![STOP],
        constraint: c.map(|c| Box::new(c) as Box<dyn Constraint>),
        ..Default::default()
    }
}

fn run(engine: &Engine, req: Request) -> mpsc::Receiver<Event> {
    let (tx, rx) = mpsc::channel();
    engine.submit(req, Box::new(tx)).unwrap();
    rx
}

/// Tokens and how it ended (Err with the message when it failed).
fn collect(rx: mpsc::Receiver<Event>) -> (Vec<u32>, Result<Finish, String>) {
    let mut ids = Vec::new();
    for ev in rx {
        match ev {
            Event::Token(s) => ids.push(s.id),
            Event::Done { finish, .. } => return (ids, Ok(finish)),
            Event::Failed(m) => return (ids, Err(m)),
        }
    }
    panic!("no Done");
}

fn prompt() -> Vec<u32> {
    (0..12).map(|j| 300 + j * 37).collect()
}

/// Digits-like ids: a small set the model would rarely pick on its own.
fn allowed() -> Vec<u32> {
    (2000..2016).collect()
}

#[test]
fn tokens_stay_in_the_mask_and_stop_only_where_accepting() {
    let engine = Engine::start(model(), config());
    let mut samplings = vec![SamplingParams::default()];
    for seed in 0..4 {
        samplings.push(SamplingParams {
            temperature: 1.5,
            top_k: 40,
            seed,
            ..Default::default()
        });
    }
    let mut stopped = 0;
    for sampling in samplings {
        // The stop id is allowed as soon as 3 tokens are in, so sampled runs end early sometimes.
        let mut allowed = allowed();
        allowed.push(STOP);
        let (ids, finish) = collect(run(
            &engine,
            request(
                &prompt(),
                24,
                Some(Script::new(allowed, 3)),
                sampling.clone(),
            ),
        ));
        for (i, &id) in ids.iter().enumerate() {
            if id == STOP {
                assert!(
                    i >= 3 && i == ids.len() - 1,
                    "{sampling:?}: stop at {i} in {ids:?}"
                );
            } else {
                assert!(
                    (2000..2016).contains(&id),
                    "{sampling:?}: {id} outside the mask"
                );
            }
        }
        if finish == Ok(Finish::Stop) {
            stopped += 1;
        }
    }
    // A grammar that never accepts never lets the stop id through, even when it lists it.
    let mut allowed = allowed();
    allowed.push(STOP);
    let (ids, finish) = collect(run(
        &engine,
        request(
            &prompt(),
            16,
            Some(Script::new(allowed, usize::MAX)),
            SamplingParams::default(),
        ),
    ));
    assert_eq!(finish, Ok(Finish::Length));
    assert!(!ids.contains(&STOP));
    eprintln!("{stopped} of 5 runs stopped");
}

#[test]
fn forced_tokens_are_fed_in_one_pass_with_the_same_result() {
    let forces = vec![3000, 3001, 3002];
    // Step counts compare forcing alone: prompt lookup would propose the recurring forced tokens too.
    let config = BatchConfig {
        lookup: Lookup::OFF,
        ..config()
    };
    let engine = Engine::start(model(), config);
    let mut fed = Script::new(allowed(), 0);
    fed.forces = forces.clone();
    let steps0 = engine.stats().steps;
    let (a, fa) = collect(run(
        &engine,
        request(&prompt(), 20, Some(fed.clone()), Default::default()),
    ));
    let fed_steps = engine.stats().steps - steps0;
    let mut stepped = fed;
    stepped.force = false;
    let steps0 = engine.stats().steps;
    let (b, fb) = collect(run(
        &engine,
        request(&prompt(), 20, Some(stepped), Default::default()),
    ));
    let stepped_steps = engine.stats().steps - steps0;
    assert_eq!(a, b, "fed together vs one step each");
    assert_eq!((fa, fb), (Ok(Finish::Length), Ok(Finish::Length)));
    assert_eq!(a.len(), 20);
    assert_eq!(&a[1..4], &forces[..]);
    // 5 chosen tokens, each followed by 3 forced ones: 5 steps (plus the prompt's) instead of 20.
    assert_eq!(fed_steps, 5, "steps with forcing");
    assert_eq!(stepped_steps, 20, "steps without");
    assert_eq!(engine.stats().forced_tokens, 15);
}

#[test]
fn constrained_streams_batched_with_free_ones_equal_them_alone() {
    let engine = Engine::start(model(), config());
    let make = |i: usize| -> Request {
        let mut p = prompt();
        p.push(400 + i as u32);
        if i.is_multiple_of(2) {
            let mut s = Script::new(
                (1000 + 10 * i as u32..1000 + 10 * i as u32 + 30).collect(),
                0,
            );
            s.forces = vec![3000 + i as u32];
            request(&p, 10, Some(s), Default::default())
        } else {
            request(&p, 10, None, Default::default())
        }
    };
    let alone: Vec<_> = (0..6).map(|i| collect(run(&engine, make(i)))).collect();
    let rxs: Vec<_> = (0..6).map(|i| run(&engine, make(i))).collect();
    for (i, rx) in rxs.into_iter().enumerate() {
        assert_eq!(collect(rx), alone[i], "request {i}");
    }
}

#[test]
fn a_failing_grammar_fails_only_its_stream() {
    let engine = Engine::start(model(), config());
    let mut bad = Script::new(allowed(), 0);
    bad.fail_at = Some(4);
    let free = run(&engine, request(&prompt(), 12, None, Default::default()));
    let failing = run(
        &engine,
        request(&prompt(), 12, Some(bad), Default::default()),
    );
    let (ids, end) = collect(failing);
    assert_eq!(ids.len(), 4);
    assert!(end.unwrap_err().contains("scripted failure"));
    let (ids, end) = collect(free);
    assert_eq!((ids.len(), end), (12, Ok(Finish::Length)));
}
