//! Continuous batching with SmolLM2: greedy output is the same alone (the plain `greedy_reference` loop) and
//! batched (chunked prefill mixed with decodes, a queue, the prefix cache); cancelling frees the KV; a full queue
//! refuses. One compute thread each: the tests run side by side.

mod events;

use events::{collect, StopAt};
use hearth_test_support as support;

use hearth_engine::batch::{
    BatchConfig, Constraint, Engine, Event, Mask, Request, SubmitError, Usage,
};
use hearth_engine::{greedy_reference, Finish, Model, SamplingParams, ThreadPool};
use std::sync::{mpsc, Arc, OnceLock};
use std::time::{Duration, Instant};

fn model() -> Arc<Model> {
    static M: OnceLock<Arc<Model>> = OnceLock::new();
    M.get_or_init(|| Arc::new(Model::load(support::model_path("smollm2-135m")).unwrap()))
        .clone()
}

/// Prompts of varied lengths (some longer than the prefill chunks used below), as token ids.
fn prompts() -> Vec<Vec<u32>> {
    (0..6u32)
        .map(|i| {
            let len = [3, 17, 40, 9, 70, 1][i as usize];
            (0..len)
                .map(|j| 100 + (i * 977 + j * 31) % 20_000)
                .collect()
        })
        .collect()
}

fn solo(model: &Model, prompt: &[u32], max_tokens: usize) -> Vec<u32> {
    let pool = ThreadPool::new(1);
    greedy_reference(model, &pool, prompt, max_tokens, 0)
        .unwrap()
        .iter()
        .map(|s| s.id)
        .collect()
}

fn config(prefill_chunk: usize, max_running: usize) -> BatchConfig {
    BatchConfig {
        n_threads: 1,
        n_ctx: 512,
        max_running,
        max_queued: 64,
        prefill_chunk,
        prefix_cache_bytes: 0,
        kv_type: Default::default(),
        lookup: Default::default(),
    }
}

fn with_prefix_cache(config: BatchConfig) -> BatchConfig {
    BatchConfig {
        prefix_cache_bytes: 64 << 20,
        ..config
    }
}

fn greedy(prompt: &[u32], max_tokens: usize) -> Request {
    Request {
        prompt: prompt.to_vec(),
        max_tokens,
        ..Default::default()
    }
}

#[test]
fn greedy_batched_equals_solo() {
    let model = model();
    let want: Vec<Vec<u32>> = prompts().iter().map(|p| solo(&model, p, 12)).collect();
    // Small chunks make prompts straddle steps beside running decodes; max_running 4 makes two wait in the queue.
    for (chunk, running) in [(16, 4), (5, 64)] {
        let engine = Engine::start(model.clone(), config(chunk, running));
        let rxs: Vec<_> = prompts()
            .iter()
            .map(|p| {
                let (tx, rx) = mpsc::channel();
                engine.submit(greedy(p, 12), Box::new(tx)).unwrap();
                rx
            })
            .collect();
        for (i, rx) in rxs.into_iter().enumerate() {
            let (ids, finish, usage) = collect(rx);
            assert_eq!(
                ids, want[i],
                "prompt {i}, chunk {chunk}, max_running {running}"
            );
            assert_eq!(finish, Finish::Length);
            assert_eq!(usage.prompt_tokens, prompts()[i].len());
            assert_eq!(usage.completion_tokens, 12);
        }
        assert!(engine.stats().steps > 0);
    }
}

#[test]
fn prefix_cache_reuses_kv_and_keeps_output() {
    let model = model();
    let engine = Engine::start(model.clone(), with_prefix_cache(config(32, 8)));
    let base = prompts()[4].clone(); // 70 tokens
    let (tx, rx) = mpsc::channel();
    engine.submit(greedy(&base, 6), Box::new(tx)).unwrap();
    let (first, _, u1) = collect(rx);
    assert_eq!(u1.cached_tokens, 0);
    // A follow-up that extends the first conversation: prompt + answer + more.
    let mut longer = base.clone();
    longer.extend(&first);
    longer.extend([500, 600, 700]);
    let (tx, rx) = mpsc::channel();
    engine.submit(greedy(&longer, 8), Box::new(tx)).unwrap();
    let (ids, _, u2) = collect(rx);
    // The cache holds the prompt and the fed-back answer (all but the last generated token).
    assert_eq!(u2.cached_tokens, base.len() + first.len() - 1);
    assert_eq!(ids, solo(&model, &longer, 8));
    // A prompt that only shares the first 30 tokens starts from a truncated copy.
    let mut branch = base[..30].to_vec();
    branch.extend([42, 43, 44]);
    let (tx, rx) = mpsc::channel();
    engine.submit(greedy(&branch, 8), Box::new(tx)).unwrap();
    let (ids, _, u3) = collect(rx);
    assert_eq!(u3.cached_tokens, 30);
    assert_eq!(ids, solo(&model, &branch, 8));
    let st = engine.stats();
    assert_eq!(st.prefix_hits, 2);
    assert!(st.prefix_bytes > 0 && st.kv_bytes == st.prefix_bytes);
}

/// Waits (up to a minute) until the engine's published stats say `cond`: they are published after each step.
fn until(engine: &Engine, what: &str, cond: impl Fn(&hearth_engine::batch::Stats) -> bool) {
    let t0 = Instant::now();
    while !cond(&engine.stats()) {
        assert!(t0.elapsed() < Duration::from_secs(60), "never: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A follow-up whose prompt extends a whole cached conversation takes that KV over instead of copying it (the
/// prefix cache is empty while it runs: the conversation is held once), and a follow-up cancelled midway gives the
/// prefix back, so the next one still starts from it, with the same tokens as alone.
#[test]
fn a_follow_up_takes_the_cached_conversation_over() {
    let model = model();
    let engine = Engine::start(model.clone(), with_prefix_cache(config(32, 8)));
    let base = prompts()[4].clone();
    let (tx, rx) = mpsc::channel();
    engine.submit(greedy(&base, 6), Box::new(tx)).unwrap();
    let (first, _, _) = collect(rx);
    until(&engine, "the first answer is cached", |s| {
        s.prefix_entries == 1
    });
    let mut longer = base.clone();
    longer.extend(&first);
    longer.extend([500, 600, 700]);

    let (tx, rx) = mpsc::channel();
    engine.submit(greedy(&longer, 200), Box::new(tx)).unwrap();
    // Two tokens in: the stats published after the step that sent the first are visible.
    let tokens = rx
        .iter()
        .filter(|ev| matches!(ev, Event::Token(_)))
        .take(2)
        .count();
    assert_eq!(tokens, 2);
    let st = engine.stats();
    assert_eq!(
        (st.prefix_entries, st.prefix_bytes),
        (0, 0),
        "the prefix cache kept a copy of the conversation the follow-up runs on"
    );
    assert!(st.kv_bytes > 0);
    drop(rx);
    until(&engine, "the cancelled follow-up's prefix is back", |s| {
        s.running == 0 && s.prefix_entries == 1
    });

    let (tx, rx) = mpsc::channel();
    engine.submit(greedy(&longer, 8), Box::new(tx)).unwrap();
    let (ids, _, usage) = collect(rx);
    assert_eq!(usage.cached_tokens, base.len() + first.len() - 1);
    assert_eq!(ids, solo(&model, &longer, 8));
}

#[test]
fn sampled_requests_follow_their_seed() {
    let model = model();
    let engine = Engine::start(model.clone(), config(64, 16));
    let req = |seed| Request {
        sampling: SamplingParams {
            temperature: 0.9,
            top_p: 0.95,
            seed,
            ..Default::default()
        },
        ..greedy(&prompts()[2], 16)
    };
    let run = |seeds: &[u64]| -> Vec<Vec<u32>> {
        let rxs: Vec<_> = seeds
            .iter()
            .map(|&s| {
                let (tx, rx) = mpsc::channel();
                engine.submit(req(s), Box::new(tx)).unwrap();
                rx
            })
            .collect();
        rxs.into_iter().map(|rx| collect(rx).0).collect()
    };
    let together = run(&[1, 2, 3]);
    assert_eq!(
        run(&[2])[0],
        together[1],
        "a seed gives the same tokens alone or batched"
    );
    assert_ne!(together[0], together[1]);
}

#[test]
fn cancelled_request_frees_its_kv_and_others_continue() {
    let model = model();
    let engine = Engine::start(model.clone(), config(64, 8));
    let (tx, rx) = mpsc::channel();
    engine
        .submit(greedy(&prompts()[1], 400), Box::new(tx))
        .unwrap();
    let (tx2, rx2) = mpsc::channel();
    engine
        .submit(greedy(&prompts()[0], 10), Box::new(tx2))
        .unwrap();
    // Read a few tokens, then hang up.
    for _ in 0..3 {
        assert!(matches!(rx.recv().unwrap(), Event::Token(_)));
    }
    drop(rx);
    let (ids, _, _) = collect(rx2);
    assert_eq!(ids, solo(&model, &prompts()[0], 10));
    let t0 = Instant::now();
    while engine.stats().running > 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the cancelled sequence still runs"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let st = engine.stats();
    assert_eq!(st.cancelled, 1);
    assert_eq!(st.kv_bytes, 0, "no prefix cache: nothing may stay");
}

#[test]
fn refusals_are_clear() {
    let model = model();
    let engine = Engine::start(
        model.clone(),
        BatchConfig {
            max_queued: 2,
            ..config(64, 1)
        },
    );
    let (tx, _rx) = mpsc::channel();
    assert_eq!(
        engine.submit(greedy(&[1; 500], 13), Box::new(tx.clone())),
        Err(SubmitError::TooLong {
            prompt_tokens: 500,
            max_tokens: 13,
            n_ctx: 512
        })
    );
    assert_eq!(
        engine.submit(greedy(&[], 1), Box::new(tx.clone())),
        Err(SubmitError::EmptyPrompt)
    );
    // Outside the engine too, an empty prompt says so (it once read "the model's hyperparameters are inconsistent").
    let e = greedy_reference(&model, &ThreadPool::new(1), &[], 1, 0).unwrap_err();
    assert_eq!(
        e.to_string(),
        "the prompt is empty: there is nothing to continue"
    );
    assert!(matches!(
        engine.submit(greedy(&[1, 99_999_999], 1), Box::new(tx.clone())),
        Err(SubmitError::BadToken { id: 99_999_999, .. })
    ));
    // One runs (max_running 1), two wait; the rest are refused while the first is still generating.
    let mut rxs = Vec::new();
    let mut refused = 0;
    for _ in 0..8 {
        let (tx, rx) = mpsc::channel();
        match engine.submit(greedy(&prompts()[1], 200), Box::new(tx)) {
            Ok(()) => rxs.push(rx),
            Err(SubmitError::QueueFull { max_queued: 2 }) => refused += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(refused >= 5, "refused {refused}");
    // Zero tokens asked: done at once.
    drop(rxs);
    let (tx, rx) = mpsc::channel();
    let t0 = Instant::now();
    loop {
        match engine.submit(greedy(&[5, 6], 0), Box::new(tx.clone())) {
            Ok(()) => break,
            Err(SubmitError::QueueFull { .. }) if t0.elapsed() < Duration::from_secs(30) => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => panic!("{e}"),
        }
    }
    drop(tx);
    let (ids, finish, usage) = collect(rx);
    assert!(ids.is_empty());
    assert_eq!((finish, usage.prompt_tokens), (Finish::Length, 2));
}

#[test]
fn a_sink_that_stops_gets_done_with_the_engines_usage() {
    let model = model();
    let engine = Engine::start(model.clone(), with_prefix_cache(config(32, 8)));
    let base = prompts()[4].clone();
    let (tx, rx) = mpsc::channel();
    engine.submit(greedy(&base, 6), Box::new(tx)).unwrap();
    collect(rx);
    // The same prompt again, stopped by its sink after 3 tokens: the sequence ends there (Stop, not Length), and
    // the usage counts the cached prompt tokens.
    let (tx, rx) = mpsc::channel();
    let sink = StopAt::new(3, tx);
    engine.submit(greedy(&base, 20), Box::new(sink)).unwrap();
    let (ids, finish, usage) = collect(rx);
    assert_eq!(ids, solo(&model, &base, 3));
    assert_eq!(finish, Finish::Stop);
    assert_eq!(
        usage,
        Usage {
            prompt_tokens: base.len(),
            completion_tokens: 3,
            cached_tokens: base.len() - 1,
        }
    );
}

/// Allows only ids from `allowed`; complete after `n` tokens.
#[derive(Clone)]
struct OnlyThese {
    allowed: Vec<u32>,
    n: usize,
    seen: Vec<u32>,
}

impl Constraint for OnlyThese {
    fn mask(&mut self) -> Result<Mask, String> {
        let top = self.allowed.iter().max().map_or(0, |&m| m as usize + 1);
        let mut allowed = vec![0u32; top.div_ceil(32)];
        for &id in &self.allowed {
            allowed[id as usize / 32] |= 1 << (id % 32);
        }
        Ok(Mask {
            allowed,
            accepting: false,
        })
    }
    fn consume(&mut self, id: u32) -> Result<(), String> {
        if !self.allowed.contains(&id) {
            return Err(format!("token {id} was not allowed"));
        }
        self.seen.push(id);
        Ok(())
    }
    fn forced(&mut self) -> Vec<u32> {
        Vec::new()
    }
    fn is_finished(&self) -> bool {
        self.seen.len() == self.n
    }
    fn boxed_clone(&self) -> Box<dyn Constraint> {
        Box::new(self.clone())
    }
}

#[test]
fn a_guide_masks_every_step_and_ends_the_sequence() {
    let model = model();
    let engine = Engine::start(model.clone(), config(64, 4));
    let allowed = vec![300, 301, 302, 5000];
    let (tx, rx) = mpsc::channel();
    let guide = OnlyThese {
        allowed: allowed.clone(),
        n: 5,
        seen: Vec::new(),
    };
    let req = Request {
        constraint: Some(Box::new(guide)),
        ..greedy(&prompts()[2], 50)
    };
    engine.submit(req, Box::new(tx)).unwrap();
    let (ids, finish, usage) = collect(rx);
    assert_eq!(ids.len(), 5);
    assert!(ids.iter().all(|id| allowed.contains(id)), "{ids:?}");
    assert_eq!((finish, usage.completion_tokens), (Finish::Stop, 5));
}
