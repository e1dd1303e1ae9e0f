//! Greedy decoding on prompts that are NOT in ../shared, against HF transformers loading the same GGUF
//! (fixtures/transformers/, made by make_fixtures.py there). Same bar as against llama.cpp: identical ids until the
//! two part, a small top-2 margin where they part, chosen log-probs within 0.3 before.

use hearth_test_support as support;

use hearth_engine::{greedy_reference, Model, ThreadPool};

fn check(model_name: &str, fixture: &str) {
    let model = Model::load(support::model_path(model_name)).unwrap();
    let pool = ThreadPool::new(support::threads());
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/transformers")
        .join(fixture);
    let refs = support::read_json(path);
    let mut n_parted = 0;
    for case in refs["cases"].as_array().unwrap() {
        let prompt = support::ids(&case["prompt_tokens"]);
        let steps = case["steps"].as_array().unwrap();
        let ours = greedy_reference(&model, &pool, &prompt, steps.len(), 2).unwrap();
        assert_eq!(ours.len(), steps.len());
        for (i, (o, r)) in ours.iter().zip(steps).enumerate() {
            if o.id as u64 != r["id"].as_u64().unwrap() {
                let margin = (o.top[0].1 - o.top[1].1).min(r["margin"].as_f64().unwrap() as f32);
                assert!(
                    margin < 0.25,
                    "{model_name} {:?}: step {i} differs from transformers with margin {margin}",
                    case["prompt"]
                );
                eprintln!(
                    "{model_name} {:?}: parts at step {i} (margin {margin:.3})",
                    case["prompt"]
                );
                n_parted += 1;
                break;
            }
            let (lo, lr) = (o.logprob.unwrap(), r["logprob"].as_f64().unwrap() as f32);
            assert!(
                (lo - lr).abs() < 0.3,
                "{model_name} {:?}: step {i} log-prob {lo} vs transformers {lr}",
                case["prompt"]
            );
        }
    }
    eprintln!(
        "{model_name}: {n_parted} of {} new prompts part from transformers",
        refs["cases"].as_array().unwrap().len()
    );
}

#[test]
fn smollm2_new_prompts_match_transformers() {
    check("smollm2-135m", "smollm2.json");
}

#[test]
fn gemma3_new_prompts_match_transformers() {
    check("gemma3-270m", "gemma3.json");
}
