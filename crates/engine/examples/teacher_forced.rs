//! Teacher-forced log-probabilities against a reference greedy run: feeds the reference's own tokens, so the two
//! never part, and prints for every step how far our log-probability of the reference's token is from its own.
//! Shows which steps are numerically sensitive (compare runs under `HEARTH_ISA`, `HEARTH_REPACK=0` or an f32 KV
//! cache).
//!
//! `cargo run --release -p hearth-engine --example teacher_forced -- MODEL.gguf GREEDY.json PROMPT_ID [f16|f32|q8_0]`
//! with GREEDY.json one of `../shared/reference/*/greedy.json`.

use hearth_engine::{KvType, Model, Session, ThreadPool};
use serde_json::Value;

/// Log-softmax of one row of logits, in f64 for the sum.
fn log_softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::MIN, f32::max);
    let sum: f64 = logits.iter().map(|&x| ((x - max) as f64).exp()).sum();
    logits.iter().map(|&x| x - max - sum.ln() as f32).collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model, reference, id, rest @ ..] = &args[..] else {
        return Err("usage: teacher_forced MODEL.gguf GREEDY.json PROMPT_ID [f16|f32|q8_0]".into());
    };
    let kv: KvType = rest.first().map_or(Ok(KvType::F16), |s| s.parse())?;
    let model = Model::load(model)?;
    let pool = ThreadPool::new(2);
    let cases: Value = serde_json::from_slice(&std::fs::read(reference)?)?;
    let case = cases
        .as_array()
        .and_then(|a| a.iter().find(|c| c["id"] == id.as_str()))
        .ok_or(format!("no prompt {id} in {reference}"))?;
    let ids = |v: &Value| -> Vec<u32> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_u64())
                    .map(|x| x as u32)
                    .collect()
            })
            .unwrap_or_default()
    };
    let prompt = ids(&case["prompt_tokens"]);
    let mut session = Session::with_cache(model.new_cache_typed(4096, kv)?);
    let mut logits = session.prefill(&model, &pool, &prompt)?;
    for (i, step) in case["steps"].as_array().into_iter().flatten().enumerate() {
        let (token, reference_lp) = (
            step["id"].as_u64().unwrap_or(0) as u32,
            step["logprob"].as_f64().unwrap_or(0.0),
        );
        let ours = *log_softmax(&logits)
            .get(token as usize)
            .ok_or(format!("step {i}: token {token} is outside the vocabulary"))?;
        println!(
            "step {i:2}: ours - reference = {:+.3}",
            ours as f64 - reference_lp
        );
        logits = session.feed(&model, &pool, &[token], 0)?;
    }
    Ok(())
}
