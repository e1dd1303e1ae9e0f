//! Compares the first generated step's top-5 log-probabilities with a reference greedy.json (a fidelity probe).
//! Usage: cargo run -p hearth-engine --example first_step -- MODEL.gguf GREEDY.json

use hearth_engine::{sampler::argmax, sampler::log_probs, Model, Session, ThreadPool};
use hearth_test_support as support;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let model = Model::load(&args[1]).expect("model loads");
    let refs = support::read_json(&args[2]);
    let pool = ThreadPool::new(2);
    let mut worst = 0f32;
    for case in refs.as_array().expect("array") {
        let prompt = support::ids(&case["prompt_tokens"]);
        let mut s = Session::new(&model, 512);
        let logits = s.prefill(&model, &pool, &prompt).expect("prefill");
        let (_, top) = log_probs(&logits, argmax(&logits), 5);
        let r = &case["steps"][0]["top"];
        let mut line = String::new();
        for (i, (id, lp)) in top.iter().enumerate() {
            let rid = r[i]["id"].as_u64().unwrap() as u32;
            let rlp = r[i]["logprob"].as_f64().unwrap() as f32;
            if *id == rid {
                worst = worst.max((lp - rlp).abs());
            }
            line += &format!(" {id}:{lp:.3}/{rid}:{rlp:.3}");
        }
        println!("{:>8}{line}", case["id"].as_str().unwrap());
    }
    println!("worst |Δ logprob| on matching ids: {worst:.4}");
}
