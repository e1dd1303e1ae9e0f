//! `hearth act` and `hearth replay` as a user runs them: decision lines on stdout, bad lines answered with the
//! fallback and an error while the next is decided, `--latest-only` counting what it skipped, and an episode that
//! replays identically under every ISA this CPU has (scalar included), and fails naming the step when its world
//! state or a token is changed.

use hearth_kernels::Isa;
use hearth_test_support as support;
use serde_json::{json, Value};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn model() -> String {
    support::model_path("smollm2-135m").display().to_string()
}

fn example(name: &str) -> String {
    support::example(&format!("act/{name}"))
        .display()
        .to_string()
}

/// Runs `hearth ARGS` with `stdin` fed in and `env` set.
fn hearth(args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("hearth runs");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).unwrap();
    drop(input);
    let out = child.wait_with_output().unwrap();
    if !out.status.success() {
        eprintln!("stderr: {}", String::from_utf8_lossy(&out.stderr));
    }
    out
}

fn worlds(n: usize) -> Vec<String> {
    std::fs::read_to_string(example("worlds.jsonl"))
        .unwrap()
        .lines()
        .take(n)
        .map(str::to_string)
        .collect()
}

fn lines(out: &Output) -> Vec<Value> {
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn act(deadline_ms: &str, input: &str, extra: &[&str]) -> Output {
    let m = model();
    let space = example("pick-place.json");
    let mut args = vec!["act", &m, "--actions", &space, "--deadline-ms", deadline_ms];
    args.extend_from_slice(extra);
    hearth(&args, input, &[])
}

#[test]
fn decisions_come_one_per_line_and_bad_lines_get_the_fallback_with_an_error() {
    let w = worlds(3);
    let input = format!(
        "{}\nthis is not json\n\n{{\"bins\": []}}\n{}\n{}\n",
        w[0], w[1], w[2]
    );
    let out = act("60000", &input, &[]);
    assert!(out.status.success());
    let ds = lines(&out);
    assert_eq!(ds.len(), 5, "{ds:?}"); // the blank line is not a world state
    for (k, d) in ds.iter().enumerate() {
        assert_eq!(d["step"], k);
        for key in [
            "action",
            "source",
            "deadline_ms",
            "elapsed_ms",
            "tokens",
            "grammar_ms",
        ] {
            assert!(d.get(key).is_some(), "{key} missing in {d}");
        }
        assert_eq!(d["deadline_ms"], 60000.0);
    }
    let fallback = json!({"skill": "wait", "args": {}});
    assert_eq!(
        (&ds[1]["action"], &ds[1]["source"]),
        (&fallback, &json!("fallback"))
    );
    assert!(ds[1]["error"].as_str().unwrap().contains("not JSON"));
    assert!(ds[2]["error"]
        .as_str()
        .unwrap()
        .contains("no key \"objects\""));
    for k in [0, 3, 4] {
        assert_eq!(ds[k]["source"], "model", "{}", ds[k]);
        assert!(ds[k]["tokens"].as_u64().unwrap() > 3);
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("step 1: the line is not JSON"), "{stderr}");

    let bad = hearth(
        &[
            "act",
            &model(),
            "--actions",
            &example("worlds.jsonl"),
            "--deadline-ms",
            "100",
        ],
        "",
        &[],
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("the action space is invalid"));
}

#[test]
fn latest_only_decides_on_the_newest_line_and_counts_the_skipped() {
    let w = worlds(30);
    let out = act("400", &(w.join("\n") + "\n"), &["--latest-only"]);
    assert!(out.status.success());
    let ds = lines(&out);
    let skipped: u64 = ds.iter().map(|d| d["skipped"].as_u64().unwrap()).sum();
    assert_eq!(ds.len() as u64 + skipped, 30, "{ds:?}");
    // All 30 lines were there at once, and a decision takes far longer than reading them.
    assert!(skipped > 0);
    // The last decision is on the last line (the newest never gets skipped).
    let last = ds.last().unwrap();
    assert_eq!(last["step"], ds.len() - 1);
}

/// Replays `log` with `HEARTH_ISA` set to `isa` (or the default).
fn replay(log: &Path, isa: Option<&str>) -> Output {
    let env: Vec<(&str, &str)> = isa.map(|i| ("HEARTH_ISA", i)).into_iter().collect();
    hearth(&["replay", log.to_str().unwrap()], "", &env)
}

#[test]
fn an_episode_replays_identically_on_every_isa_and_a_change_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("episode.jsonl");
    let w = worlds(8);
    // A deadline that cuts some actions mid-way and lets others finish.
    let out = act(
        "450",
        &(w.join("\n") + "\n"),
        &["--log", log.to_str().unwrap()],
    );
    assert!(out.status.success());
    let ds = lines(&out);
    eprintln!(
        "sources: {:?}",
        ds.iter()
            .map(|d| (
                d["source"].as_str().unwrap().to_string(),
                d["tokens"].clone()
            ))
            .collect::<Vec<_>>()
    );
    let text = std::fs::read_to_string(&log).unwrap();
    let mut records: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records[0]["type"], "episode");
    assert_eq!(records[0]["model_sha256"].as_str().unwrap().len(), 64);
    assert_eq!(records.len(), 9);

    // The default kernels (the CPU's best), and the two the issue names when this CPU has them.
    let mut isas = vec![None];
    isas.extend(
        Isa::available()
            .into_iter()
            .map(|i| i.to_string())
            .filter(|i| i == "avx2" || i == "scalar")
            .map(Some),
    );
    assert!(isas.contains(&Some("scalar".to_string())));
    for isa in &isas {
        let r = replay(&log, isa.as_deref());
        assert!(
            r.status.success(),
            "{isa:?}: {}",
            String::from_utf8_lossy(&r.stderr)
        );
        assert!(String::from_utf8_lossy(&r.stdout).contains("identical: 8 steps"));
    }

    // A world state changed: replay fails and names its step.
    let original = records.clone();
    // records[0] is the episode header, so records[k] is step k - 1.
    records[2]["world"]["bins"][0]["id"] = json!("bin_middle");
    let changed = dir.path().join("changed.jsonl");
    let write = |recs: &[Value]| {
        let text: Vec<String> = recs.iter().map(Value::to_string).collect();
        std::fs::write(&changed, text.join("\n") + "\n").unwrap();
    };
    write(&records);
    let r = replay(&changed, None);
    assert_eq!(r.status.code(), Some(1));
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("step 1 differs: the prompt differs"), "{err}");

    // A token changed (in the first step that has one).
    let mut records = original;
    let k = (1..records.len())
        .find(|&k| !records[k]["tokens"].as_array().unwrap().is_empty())
        .expect("a step with tokens");
    let t = records[k]["tokens"][0].as_u64().unwrap();
    records[k]["tokens"][0] = json!(t + 1);
    write(&records);
    let r = replay(&changed, Some("scalar"));
    assert_eq!(r.status.code(), Some(1));
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        err.contains(&format!("step {} differs: generated token 0", k - 1)),
        "{err}"
    );
}
