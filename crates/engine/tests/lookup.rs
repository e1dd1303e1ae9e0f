//! Prompt-lookup speculation in the batch engine, with SmolLM2 and Gemma3 on real copy-heavy chat prompts: a verify
//! pass's logits are a decode step's bit for bit; greedy and seeded sampled output, finish and usage are the same
//! with lookup on and off (also when a stop string, `max_tokens` or a grammar cuts a run of accepted proposals, and
//! in a batch mixing speculating, plain and prefilling sequences); and lookup does take fewer steps there.
//! One compute thread each: the tests run side by side.

mod events;

use events::{collect, StopAt};
use hearth_test_support as support;

use hearth_engine::batch::{BatchConfig, Constraint, Engine, Lookup, Mask, Request, Stats};
use hearth_engine::{Finish, Model, SamplingParams, Session, ThreadPool};
use hearth_text::{ChatMessage, ChatTemplate, Tokenizer};
use std::sync::{mpsc, Arc, OnceLock};

struct Setup {
    model: Arc<Model>,
    tok: Tokenizer,
    template: ChatTemplate,
}

fn setup(name: &str) -> Setup {
    let model = Arc::new(Model::load(support::model_path(name)).unwrap());
    let tok = Tokenizer::from_gguf(&model.gguf).unwrap();
    let template = ChatTemplate::from_gguf_with(&model.gguf, &tok).unwrap();
    Setup {
        model,
        tok,
        template,
    }
}

fn smollm2() -> &'static Setup {
    static S: OnceLock<Setup> = OnceLock::new();
    S.get_or_init(|| setup("smollm2-135m"))
}

fn gemma3() -> &'static Setup {
    static S: OnceLock<Setup> = OnceLock::new();
    S.get_or_init(|| setup("gemma3-270m"))
}

const CODE: &str = "Here is a Python function:\n\n```python\ndef total_price(items, tax_rate):\n    subtotal = 0\n    \
for item in items:\n        subtotal += item.price * item.quantity\n    tax = subtotal * tax_rate\n    return \
subtotal + tax\n```\n\nRepeat the function exactly, but rename `tax_rate` to `rate`.";

const DOCUMENT: &str = "Read this notice:\n\nThe library on Mill Street opens at 9 am on weekdays and at 10 am on \
Saturdays. It is closed on Sundays. Members may borrow up to six books for three weeks. Late returns cost 20 cents \
per book per day.\n\nCopy the sentence that says how many books members may borrow, word for word.";

const WORLD: &str = "World state:\nrobot_7f3a at dock_12, carrying crate_0091\nrobot_c21e at shelf_b4, idle\n\
robot_9d05 at charger_2, battery 35%\nTask: list every robot id with its location, one per line, as \
`id: location`.";

/// The chat prompt (with the generation prompt) as token ids.
fn prompt(s: &Setup, text: &str) -> Vec<u32> {
    let rendered = s
        .template
        .render(&[ChatMessage::new("user", text)], true)
        .unwrap();
    s.tok.encode(&rendered, false, true).unwrap()
}

fn config(lookup: Lookup) -> BatchConfig {
    BatchConfig {
        n_threads: 1,
        n_ctx: 1024,
        max_running: 8,
        max_queued: 64,
        prefill_chunk: 64,
        // The cutting tests run one prompt many times: keep its KV.
        prefix_cache_bytes: 64 << 20,
        kv_type: Default::default(),
        lookup,
    }
}

fn on() -> Lookup {
    Lookup::with_max_draft(8)
}

/// One request's tokens, finish and usage.
type Outcome = (Vec<u32>, Finish, hearth_engine::batch::Usage);

/// Runs `reqs` together on a fresh engine; returns their outcomes and the engine's counters.
fn run(model: &Arc<Model>, lookup: Lookup, reqs: Vec<Request>) -> (Vec<Outcome>, Stats) {
    let engine = Engine::start(model.clone(), config(lookup));
    let rxs: Vec<_> = reqs
        .into_iter()
        .map(|r| {
            let (tx, rx) = mpsc::channel();
            engine.submit(r, Box::new(tx)).unwrap();
            rx
        })
        .collect();
    let out = rxs.into_iter().map(collect).collect();
    (out, engine.stats())
}

fn request(prompt: &[u32], max_tokens: usize, stop_ids: &[u32]) -> Request {
    Request {
        prompt: prompt.to_vec(),
        max_tokens,
        stop_ids: stop_ids.to_vec(),
        ..Default::default()
    }
}

#[test]
fn verify_rows_are_decode_logits_bit_for_bit() {
    let pool = ThreadPool::new(1);
    for s in [smollm2(), gemma3()] {
        let p = prompt(s, CODE);
        // Past Gemma3's window of 512 and the attention's spans of 512 keys too (these lengths differed before
        // spans and tiles were aligned to absolute positions).
        let longer = |n| p.iter().cycle().take(n).copied().collect::<Vec<u32>>();
        for base in [p.clone(), longer(600), longer(700), longer(1000)] {
            let fed = [base[5], base[6], base[7], base[8], base[9]];
            let mut one = Session::new(&s.model, 1100);
            one.prefill(&s.model, &pool, &base).unwrap();
            let mut rows = Vec::new();
            for &t in &fed {
                rows.extend(one.feed(&s.model, &pool, &[t], 0).unwrap());
            }
            let mut all = Session::new(&s.model, 1100);
            all.prefill(&s.model, &pool, &base).unwrap();
            let verify = all.feed(&s.model, &pool, &fed, 0).unwrap();
            assert!(
                rows.iter()
                    .zip(&verify)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{}: a 5-token pass after {} tokens differs from 5 decode steps",
                s.model.config.arch,
                base.len()
            );
        }
    }
}

#[test]
fn greedy_output_is_the_same_with_lookup_on_and_off() {
    for s in [smollm2(), gemma3()] {
        let stops = s.tok.eog_ids().to_vec();
        let reqs = || {
            [CODE, DOCUMENT, WORLD]
                .iter()
                .map(|t| request(&prompt(s, t), 64, &stops))
                .collect::<Vec<_>>()
        };
        // One at a time, so that the step counts compare speculation alone.
        for (i, req) in reqs().into_iter().enumerate() {
            let again = request(&req.prompt, 64, &stops);
            let (off, st_off) = run(&s.model, Lookup::OFF, vec![req]);
            let (on, st_on) = run(&s.model, on(), vec![again]);
            let arch = &s.model.config.arch;
            assert_eq!(on, off, "{arch}, prompt {i}");
            assert_eq!(st_off.draft_tokens, 0);
            assert!(
                st_on.draft_accepted > 0 && st_on.steps < st_off.steps,
                "{arch}, prompt {i}: lookup accepted {} of {} in {} steps ({} without)",
                st_on.draft_accepted,
                st_on.draft_tokens,
                st_on.steps,
                st_off.steps
            );
        }
        // All three in one batch.
        let (off, _) = run(&s.model, Lookup::OFF, reqs());
        let (on, _) = run(&s.model, on(), reqs());
        assert_eq!(on, off, "{} batched", s.model.config.arch);
    }
}

#[test]
fn seeded_sampling_is_the_same_with_lookup_on_and_off() {
    let s = smollm2();
    let p = prompt(s, WORLD);
    let reqs = || {
        (0..4u64)
            .map(|seed| Request {
                sampling: SamplingParams {
                    temperature: 0.7,
                    top_p: 0.95,
                    top_k: 40,
                    // Penalties read the history (prompt, accepted proposals) and what the sampler drew.
                    repeat_penalty: if seed % 2 == 0 { 1.1 } else { 1.0 },
                    presence_penalty: if seed == 1 { 0.5 } else { 0.0 },
                    seed,
                    ..Default::default()
                },
                top_logprobs: Some(3),
                ..request(&p, 48, s.tok.eog_ids())
            })
            .collect::<Vec<_>>()
    };
    let (off, _) = run(&s.model, Lookup::OFF, reqs());
    let (on, st) = run(&s.model, on(), reqs());
    assert_eq!(on, off);
    assert!(st.draft_accepted > 0, "no proposal was accepted: {st:?}");
    assert_ne!(off[0].0, off[1].0, "the seeds differ");
}

#[test]
fn stops_and_max_tokens_inside_accepted_runs_are_exact() {
    let s = smollm2();
    let p = prompt(s, CODE);
    const N: usize = 24;
    // The whole run with lookup on takes fewer steps than tokens: some step produced two or more, so cutting after
    // each token in turn cuts inside an accepted run.
    let (full, st) = run(&s.model, on(), vec![request(&p, N, &[])]);
    assert_eq!(full[0].0.len(), N);
    assert!(st.steps < N as u64, "{st:?}");
    for lookup in [Lookup::OFF, on()] {
        let engine = Engine::start(s.model.clone(), config(lookup.clone()));
        for at in 1..=N {
            let (tx, rx) = mpsc::channel();
            let sink = StopAt::new(at, tx);
            engine.submit(request(&p, N, &[]), Box::new(sink)).unwrap();
            let (ids, finish, usage) = collect(rx);
            assert_eq!(ids, full[0].0[..at], "{lookup:?}: stop at {at}");
            // The sink's stop wins over max_tokens at the last token, as without lookup.
            assert_eq!(finish, Finish::Stop);
            assert_eq!(
                (usage.completion_tokens, usage.prompt_tokens),
                (at, p.len())
            );

            let (tx, rx) = mpsc::channel();
            engine.submit(request(&p, at, &[]), Box::new(tx)).unwrap();
            let (ids, finish, usage) = collect(rx);
            assert_eq!(ids, full[0].0[..at], "{lookup:?}: max_tokens {at}");
            assert_eq!(finish, Finish::Length);
            assert_eq!(usage.completion_tokens, at);
        }
    }
    // An end-of-generation id inside a run: make a token of the copy a stop id.
    let eog = full[0].0[N / 2];
    let (off, _) = run(&s.model, Lookup::OFF, vec![request(&p, N, &[eog])]);
    let (on, _) = run(&s.model, on(), vec![request(&p, N, &[eog])]);
    assert_eq!(on, off);
    assert_eq!(off[0].1, Finish::Stop);
    assert_eq!(off[0].0.last(), Some(&eog));
}

/// Allows only the tokens of `allowed`; accepting (may stop) after `accept_after` tokens.
#[derive(Clone)]
struct Only {
    allowed: Vec<u32>,
    accept_after: usize,
    consumed: usize,
    n_vocab: usize,
}

impl Constraint for Only {
    fn mask(&mut self) -> Result<Mask, String> {
        let mut allowed = vec![0u32; self.n_vocab.div_ceil(32)];
        for &id in &self.allowed {
            allowed[id as usize / 32] |= 1 << (id % 32);
        }
        Ok(Mask {
            allowed,
            accepting: self.consumed >= self.accept_after,
        })
    }
    fn consume(&mut self, id: u32) -> Result<(), String> {
        if !self.allowed.contains(&id) {
            return Err(format!("{id} is not allowed"));
        }
        self.consumed += 1;
        Ok(())
    }
    fn forced(&mut self) -> Vec<u32> {
        Vec::new()
    }
    fn is_finished(&self) -> bool {
        false
    }
    fn boxed_clone(&self) -> Box<dyn Constraint> {
        Box::new(self.clone())
    }
}

#[test]
fn a_mixed_batch_is_the_same_with_lookup_on_and_off() {
    let s = smollm2();
    let stops = s.tok.eog_ids().to_vec();
    let copy = prompt(s, WORLD);
    // The grammar allows the copy's own tokens except one, so proposals meet masked rows.
    let mut allowed: Vec<u32> = copy.clone();
    allowed.sort_unstable();
    allowed.dedup();
    allowed.retain(|&t| t != copy[copy.len() / 2]);
    let reqs = || {
        let random: Vec<u32> = (0..40u32).map(|j| 300 + (j * 7919) % 40_000).collect();
        let long: Vec<u32> = copy.iter().cycle().take(300).copied().collect();
        vec![
            request(&copy, 40, &stops),
            // No n-gram recurs early in a random prompt: mostly plain steps.
            request(&random, 40, &[]),
            // Prefilled in chunks beside the decodes.
            request(&long, 24, &stops),
            Request {
                constraint: Some(Box::new(Only {
                    allowed: allowed.clone(),
                    accept_after: 8,
                    consumed: 0,
                    n_vocab: s.model.config.n_vocab,
                })),
                ..request(&copy, 40, &stops)
            },
            Request {
                sampling: SamplingParams {
                    temperature: 0.8,
                    seed: 7,
                    ..Default::default()
                },
                ..request(&copy, 40, &stops)
            },
        ]
    };
    let (off, _) = run(&s.model, Lookup::OFF, reqs());
    let (on, st) = run(&s.model, on(), reqs());
    for (i, (a, b)) in on.iter().zip(&off).enumerate() {
        assert_eq!(a, b, "request {i}");
    }
    assert!(st.draft_accepted > 0, "{st:?}");
    assert!(
        st.draft_accepted < st.draft_tokens,
        "some proposal was rejected: {st:?}"
    );
}
