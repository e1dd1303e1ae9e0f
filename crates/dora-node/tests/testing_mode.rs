//! The `hearth-dora-node` binary in dora's testing mode (`DORA_TEST_WITH_INPUTS`, no daemon), with SmolLM2 and the
//! SO-101 example's action space: every decision it sends is valid for the world state it was decided on (as its
//! episode log records it), a world state where the arm is busy gets `wait` (the only skill offered), and a world
//! state that is not JSON gets the fallback without stopping the node.

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn smollm2() -> PathBuf {
    let home = std::env::var_os("HEARTH_HOME").map_or_else(
        || PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/hearth"),
        PathBuf::from,
    );
    let p = home.join("models/smollm2-135m.gguf");
    assert!(
        p.is_file(),
        "{} is missing: run scripts/fetch-models.sh",
        p.display()
    );
    p
}

fn world(arm: &str, pickable: &[&str]) -> Value {
    json!({
        "instruction": "put the red block in the left area",
        "arm": arm, "gripper": "open", "holding": null, "pickable": pickable,
        "blocks": [
            {"id": "red", "color": "red", "pos_cm": [27.0, 7.5, 2.0], "area": null},
            {"id": "blue", "color": "blue", "pos_cm": [27.0, -7.5, 2.0], "area": null}
        ],
        "areas": [{"id": "left", "pos_cm": [17.0, 13.0]}, {"id": "right", "pos_cm": [17.0, -13.0]}]
    })
}

/// Independent of hearth-act: the example's two skills, checked by hand against the world state.
fn valid(action: &Value, world: &Value) -> bool {
    let strs = |v: &Value| {
        v.as_array().map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
    };
    let pickable = strs(&world["pickable"]).unwrap_or_default();
    let areas: Vec<String> = world["areas"].as_array().map_or(vec![], |a| {
        a.iter()
            .filter_map(|x| x["id"].as_str())
            .map(str::to_owned)
            .collect()
    });
    match action["skill"].as_str() {
        Some("wait") => action["args"] == json!({}),
        Some("move_block") => {
            let args = action["args"].as_object();
            args.is_some_and(|a| a.len() == 2)
                && action["args"]["block"]
                    .as_str()
                    .is_some_and(|b| pickable.iter().any(|p| p == b))
                && action["args"]["area"]
                    .as_str()
                    .is_some_and(|b| areas.iter().any(|p| p == b))
        }
        _ => false,
    }
}

#[test]
fn every_decision_in_testing_mode_is_valid_for_its_world_state() {
    let dir = tempfile::tempdir().unwrap();
    let worlds = [
        world("idle", &["red", "blue"]).to_string(),
        world("busy", &[]).to_string(),
        "{not json".to_string(),
    ];
    // 3 s apart with a 2 s deadline: each normally arrives after the previous decision. Then ticks (an input the node
    // does not decide on) and Stop: dora's testing daemon can hold the reply to an output until the next input or
    // two are delivered, and without them the last world state could be queued together with the input's closing,
    // when a pending world state is not decided.
    let mut events: Vec<Value> = worlds
        .iter()
        .enumerate()
        .map(|(i, w)| json!({"time_offset_secs": 3.0 * i as f64, "type": "Input", "id": "world", "data": w}))
        .collect();
    for t in [6.5, 7.0, 7.5] {
        events.push(json!({"time_offset_secs": t, "type": "Input", "id": "tick"}));
    }
    events.push(json!({"time_offset_secs": 8.0, "type": "Stop"}));
    let inputs = dir.path().join("inputs.json");
    std::fs::write(
        &inputs,
        json!({"id": "hearth", "outputs": ["action"], "events": events}).to_string(),
    )
    .unwrap();
    let outputs = dir.path().join("outputs.jsonl");
    let log = dir.path().join("episode.jsonl");
    let run = Command::new(env!("CARGO_BIN_EXE_hearth-dora-node"))
        .arg(smollm2())
        .args(["--actions", "examples/so101/actions.json"])
        .current_dir(repo())
        .env("DORA_TEST_WITH_INPUTS", &inputs)
        .env("DORA_TEST_WRITE_OUTPUTS_TO", &outputs)
        .env("DORA_TEST_NO_OUTPUT_TIME_OFFSET", "1")
        .env("HEARTH_DEADLINE_MS", "2000")
        .env("HEARTH_THREADS", "1")
        .env("HEARTH_NICE", "5")
        .env("HEARTH_LOG", &log)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");

    let sent: Vec<Value> = std::fs::read_to_string(&outputs)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let steps: Vec<Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["type"] == "step")
        .collect();
    // On a loaded machine a decision can outlast the gap to the next world state, which is then dropped (latest
    // frame wins): every world state is either decided or counted as skipped, and the last one is always decided.
    assert_eq!(
        sent.len(),
        steps.len(),
        "one output per logged decision: {sent:?}\n{stderr}"
    );
    let skipped: u64 = steps
        .iter()
        .map(|s| s["skipped"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(sent.len() as u64 + skipped, 3, "{steps:?}");
    for (i, (out, step)) in sent.iter().zip(&steps).enumerate() {
        assert_eq!(out["id"], "action");
        let line: Value = serde_json::from_str(out["data"][0].as_str().unwrap()).unwrap();
        assert_eq!(line["step"], i, "{line}");
        assert_eq!(
            line["action"], step["action"],
            "the log records the action sent"
        );
        match step.get("world") {
            Some(w) => {
                assert!(
                    valid(&line["action"], w),
                    "step {i}: {line} is not valid for {w}"
                );
                if w["arm"] == "busy" {
                    assert_eq!(
                        line["action"],
                        json!({"skill": "wait", "args": {}}),
                        "only wait is offered: {line}"
                    );
                }
            }
            None => {
                assert_eq!(step["line"], worlds[2], "{step}");
                assert_eq!(line["source"], "fallback", "{line}");
                assert_eq!(line["action"], json!({"skill": "wait", "args": {}}));
            }
        }
    }
    assert!(
        steps.last().is_some_and(|s| s["line"] == worlds[2]),
        "the last world state is decided: {steps:?}"
    );
}
