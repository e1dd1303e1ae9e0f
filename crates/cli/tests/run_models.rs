//! The `hearth` binary on the real models, against llama.cpp's reference data (../shared/reference) and against
//! data not in it: completion text, JSON steps, tokenization, perplexity, inspect, and clear errors.

use hearth_test_support::{ids, read_json as json, reference};
use serde_json::Value;
use std::process::{Command, Output};

fn hearth(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(args)
        .output()
        .expect("hearth runs");
    if !out.status.success() {
        eprintln!("stderr: {}", String::from_utf8_lossy(&out.stderr));
    }
    out
}

/// Runs `hearth perplexity` and returns the value of its last line `PPL = …`.
fn perplexity(model: &str, file: &str) -> f64 {
    let out = hearth(&["perplexity", model, file, "--ctx", "512"]);
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let last = stdout.lines().last().unwrap();
    last.strip_prefix("PPL = ")
        .expect("last line is PPL = …")
        .parse()
        .unwrap()
}

#[test]
fn raw_greedy_completion_is_exactly_llamacpps_text() {
    // The "capital" prompt does not part from llama.cpp in 32 steps, so the text must be identical.
    let refs = json(reference("smollm2-135m-q4_1/greedy.json"));
    let case = refs
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "capital")
        .unwrap();
    let out = hearth(&[
        "run",
        "smollm2-135m",
        "--raw",
        "--temp",
        "0",
        "-n",
        "32",
        case["prompt"].as_str().unwrap(),
    ]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        case["completion"].as_str().unwrap()
    );
}

#[test]
fn json_steps_have_the_reference_shape() {
    let refs = json(reference("gemma3-270m-q4_k_m/greedy.json"));
    let case = &refs[0];
    let out = hearth(&[
        "run",
        "gemma3-270m",
        "--raw",
        "--temp",
        "0",
        "-n",
        "4",
        "--logprobs",
        "5",
        "--json",
        case["prompt"].as_str().unwrap(),
    ]);
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        ids(&v["prompt_ids"]),
        ids(&case["prompt_tokens"]),
        "BOS and prompt ids as llama.cpp"
    );
    let steps = v["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 4);
    assert_eq!(steps[0]["top"].as_array().unwrap().len(), 5);
    assert_eq!(steps[0]["id"], case["steps"][0]["id"]);
    let (ours, theirs) = (
        steps[0]["logprob"].as_f64().unwrap(),
        case["steps"][0]["logprob"].as_f64().unwrap(),
    );
    assert!((ours - theirs).abs() < 0.3, "{ours} vs {theirs}");
}

#[test]
fn tokenize_matches_llamacpp() {
    let refs = json(reference("smollm2-135m-q4_1/tokenize.json"));
    for case in refs.as_array().unwrap().iter().take(8) {
        let out = hearth(&["tokenize", "smollm2-135m", case["text"].as_str().unwrap()]);
        assert!(out.status.success());
        let got: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(ids(&got), ids(&case["ids"]), "{:?}", case["text"]);
    }
}

#[test]
fn smollm2_perplexity_within_one_percent_of_llamacpp() {
    let ppl = perplexity(
        "smollm2-135m",
        reference("ppl-text-gpl3.txt").to_str().unwrap(),
    );
    let want = 18.3914;
    assert!(
        (ppl / want - 1.0).abs() < 0.01,
        "PPL {ppl} vs llama.cpp {want}"
    );
}

#[test]
fn gemma3_perplexity_within_one_percent_of_llamacpp() {
    let ppl = perplexity(
        "gemma3-270m",
        reference("ppl-text-gpl3.txt").to_str().unwrap(),
    );
    let want = 13.9062;
    assert!(
        (ppl / want - 1.0).abs() < 0.01,
        "PPL {ppl} vs llama.cpp {want}"
    );
}

#[test]
fn inspect_reports_architecture_and_quant_mix() {
    let out = hearth(&["inspect", "gemma3-270m"]);
    assert!(out.status.success());
    let s = String::from_utf8(out.stdout).unwrap();
    assert!(s.contains("architecture  gemma3"), "{s}");
    assert!(s.contains("Q5_0 ×81") && s.contains("Q6_K ×9"), "{s}");
    assert!(s.contains("262144 tokens"), "{s}");
}

#[test]
fn errors_say_what_to_do() {
    let out = hearth(&["run", "no-such-model", "hi"]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("no-such-model") && err.contains("pull"),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.gguf");
    std::fs::write(&bad, b"GGUF\x03\x00\x00\x00garbage").unwrap();
    let out = hearth(&["run", bad.to_str().unwrap(), "hi"]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("truncated"), "{err}");

    let out = hearth(&[
        "run",
        "smollm2-135m",
        "--raw",
        "-c",
        "8",
        "--temp",
        "0",
        "this prompt is certainly longer than eight tokens, by far",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("context") && err.contains("8"), "{err}");
}
