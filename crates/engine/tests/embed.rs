//! Embedding requests in the batch engine, with a generative model (SmolLM2): the vector is the L2-normalised mean
//! of the final (output-normed) hidden states, the same bits alone and submitted beside generations and other
//! embeddings (a prompt longer than the prefill chunk is read whole), and a generation beside them yields the same
//! tokens as alone. The bert path against an independent reference is `hearth-convert`'s embeddings_vs_reference.

use hearth_test_support as support;

use hearth_engine::batch::{BatchConfig, Engine, Event, Request, SubmitError};
use hearth_engine::Model;
use std::sync::{mpsc, Arc};

fn config() -> BatchConfig {
    BatchConfig {
        n_threads: 1,
        n_ctx: 256,
        max_running: 8,
        max_queued: 64,
        prefill_chunk: 16,
        prefix_cache_bytes: 16 << 20,
        kv_type: Default::default(),
        lookup: Default::default(),
    }
}

fn prompt(i: u32, len: u32) -> Vec<u32> {
    (0..len)
        .map(|j| 100 + (i * 977 + j * 31) % 20_000)
        .collect()
}

fn embed(engine: &Engine, p: &[u32]) -> mpsc::Receiver<Event> {
    let (tx, rx) = mpsc::channel();
    let req = Request {
        prompt: p.to_vec(),
        embed: true,
        ..Default::default()
    };
    engine.submit(req, Box::new(tx)).unwrap();
    rx
}

fn vector(rx: mpsc::Receiver<Event>) -> Vec<f32> {
    match rx.recv().expect("no Done") {
        Event::Done {
            embedding: Some(v),
            usage,
            ..
        } => {
            assert_eq!(usage.completion_tokens, 0);
            v
        }
        Event::Done { .. } => panic!("Done without an embedding"),
        Event::Token(_) => panic!("an embedding request generated a token"),
        Event::Failed(m) => panic!("{m}"),
    }
}

fn tokens(rx: mpsc::Receiver<Event>) -> Vec<u32> {
    let mut ids = Vec::new();
    for ev in rx {
        match ev {
            Event::Token(s) => ids.push(s.id),
            Event::Done { embedding, .. } => {
                assert!(embedding.is_none());
                return ids;
            }
            Event::Failed(m) => panic!("{m}"),
        }
    }
    panic!("no Done");
}

#[test]
fn embeddings_are_batch_invariant_and_leave_generations_alone() {
    let model = Arc::new(Model::load(support::model_path("smollm2-135m")).unwrap());
    let n_embd = model.config.n_embd;
    let long = prompt(1, 40); // longer than the prefill chunk: read whole in one step
    let short = prompt(2, 5);
    let gen_prompt = prompt(3, 30);

    let engine = Engine::start(model.clone(), config());
    let alone_long = vector(embed(&engine, &long));
    let alone_short = vector(embed(&engine, &short));
    let (tx, rx) = mpsc::channel();
    let gen = Request {
        prompt: gen_prompt.clone(),
        max_tokens: 12,
        ..Default::default()
    };
    engine.submit(gen, Box::new(tx)).unwrap();
    let gen_alone = tokens(rx);
    assert_eq!(alone_long.len(), n_embd);
    let norm: f64 = alone_long
        .iter()
        .map(|x| (*x as f64).powi(2))
        .sum::<f64>()
        .sqrt();
    assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
    assert_ne!(alone_long, alone_short);

    // Everything at once: a generation in flight, two embeddings of the long prompt and one short.
    let (tx, rx) = mpsc::channel();
    let gen = Request {
        prompt: gen_prompt,
        max_tokens: 12,
        ..Default::default()
    };
    engine.submit(gen, Box::new(tx)).unwrap();
    let a = embed(&engine, &long);
    let b = embed(&engine, &short);
    let c = embed(&engine, &long);
    assert_eq!(vector(a), alone_long);
    assert_eq!(vector(b), alone_short);
    assert_eq!(vector(c), alone_long);
    assert_eq!(tokens(rx), gen_alone);

    // Longer than the context: refused at once.
    let (tx, _rx) = mpsc::channel();
    let too_long = Request {
        prompt: prompt(4, 300),
        embed: true,
        ..Default::default()
    };
    assert!(matches!(
        engine.submit(too_long, Box::new(tx)),
        Err(SubmitError::TooLong { n_ctx: 256, .. })
    ));
}
