//! Greedy decoding against llama.cpp's (../shared/reference/<model>/greedy.json): identical ids until the two part;
//! where they part, one side's top-2 margin is under 0.25; before that, chosen log-probs within 0.3.

use hearth_test_support as support;

use hearth_engine::{greedy_reference, Model, ThreadPool};

/// Where a prompt parted from the reference (reported; the bar is on margins and log-probs).
struct Outcome {
    parted_at: Option<usize>,
}

fn top2_margin(top: &[(f32,)]) -> f32 {
    top[0].0 - top[1].0
}

/// Runs every prompt of a greedy.json and checks the bars; returns where each prompt parted.
fn check(model_name: &str, reference: &str) -> Vec<Outcome> {
    let model = Model::load(support::model_path(model_name)).unwrap();
    let pool = ThreadPool::new(support::threads());
    let refs = support::read_json(support::reference(reference));
    let mut outcomes = Vec::new();
    for case in refs.as_array().unwrap() {
        let name = case["id"].as_str().unwrap().to_string();
        let prompt = support::ids(&case["prompt_tokens"]);
        let steps = case["steps"].as_array().unwrap();
        let ours = greedy_reference(&model, &pool, &prompt, steps.len(), 5).unwrap();
        let mut parted_at = None;
        let mut max_diff = 0f32;
        for (i, (o, r)) in ours.iter().zip(steps).enumerate() {
            let r_id = r["id"].as_u64().unwrap() as u32;
            let r_top: Vec<(f32,)> = r["top"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| (t["logprob"].as_f64().unwrap() as f32,))
                .collect();
            let o_top: Vec<(f32,)> = o.top.iter().map(|t| (t.1,)).collect();
            if o.id != r_id {
                let margin = top2_margin(&r_top).min(top2_margin(&o_top));
                eprintln!(
                    "{model_name}/{name}: step {i}: top-2 margins llama.cpp {:.3}, hearth {:.3}",
                    top2_margin(&r_top),
                    top2_margin(&o_top)
                );
                assert!(
                    margin < 0.25,
                    "{model_name}/{name}: step {i} chose {} where llama.cpp chose {r_id}, and both were sure (margin {margin:.3})",
                    o.id
                );
                parted_at = Some(i);
                break;
            }
            let (lo, lr) = (o.logprob.unwrap(), r["logprob"].as_f64().unwrap() as f32);
            max_diff = max_diff.max((lo - lr).abs());
            assert!(
                (lo - lr).abs() < 0.3,
                "{model_name}/{name}: step {i} log-prob {lo:.4} vs llama.cpp {lr:.4}"
            );
        }
        let how = parted_at.map_or("identical".to_string(), |i| format!("parts at step {i}"));
        eprintln!("{model_name}/{name}: {how}; chosen log-probs within {max_diff:.4} before that");
        outcomes.push(Outcome { parted_at });
    }
    let n_parted = outcomes.iter().filter(|o| o.parted_at.is_some()).count();
    eprintln!(
        "{model_name}: {n_parted} of {} prompts part from llama.cpp",
        outcomes.len()
    );
    outcomes
}

#[test]
fn smollm2_greedy_matches_llamacpp() {
    let out = check("smollm2-135m", "smollm2-135m-q4_1/greedy.json");
    assert_eq!(out.len(), 6);
}

#[test]
fn gemma3_greedy_matches_llamacpp() {
    let out = check("gemma3-270m", "gemma3-270m-q4_k_m/greedy.json");
    assert_eq!(out.len(), 6);
}
