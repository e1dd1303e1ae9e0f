//! hearth-act on the real models: every decision is a valid action naming only objects that exist in its world
//! state (the example table top, and a drone action space generated here, not in the repository); the fixed
//! prefix comes from the engine's prefix cache; a 100 ms deadline still gets a valid action on time; bad world
//! states and bad action spaces get clear errors; an episode replays identically, and replay names the step whose
//! world state or token was changed.

mod common;

use common::{drone_action_ok, example, model_path, table_action_ok, worlds};
use hearth_act::{
    ActError, ActOptions, ActionSpace, Actor, Episode, EpisodeHeader, EpisodeLog, Reason, Source,
};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Long enough that the model always finishes: these steps test validity, not speed.
const NO_HURRY: Duration = Duration::from_secs(120);

fn actor(model: &str, space: Value) -> Actor {
    let space = ActionSpace::from_json(space).unwrap();
    Actor::load(&model_path(model), space, ActOptions::default()).unwrap()
}

fn table_space() -> Value {
    serde_json::from_slice(&std::fs::read(example("pick-place.json")).unwrap()).unwrap()
}

/// Decides every world with `deadline`, checks each action with `ok`, and returns the decisions.
fn run(
    a: &mut Actor,
    states: &[Value],
    deadline: Duration,
    ok: fn(&Value, &Value) -> Result<(), String>,
) -> Vec<hearth_act::Decision> {
    let mut out = Vec::new();
    for w in states {
        let d = a.decide(w, Instant::now() + deadline).unwrap();
        match d.source {
            Source::Model => ok(&d.action, w).unwrap(),
            Source::Fallback => assert_eq!(&d.action, a.space().fallback()),
        }
        assert_eq!(d.error, None, "{d:?}");
        out.push(d);
    }
    out
}

#[test]
fn smollm2_decisions_are_valid_and_reuse_the_cached_prefix() {
    let mut a = actor("smollm2-135m", table_space());
    let states = worlds::table_top(7, 24);
    let ds = run(&mut a, &states, NO_HURRY, table_action_ok);
    let prefix = a.prefix_tokens();
    assert!(
        prefix > 100,
        "the instruction and skills are {prefix} tokens"
    );
    for d in &ds {
        assert_eq!(d.source, Source::Model, "{d:?}");
        // Everything up to the world state came from the prefix cache (the last token or two may tokenize
        // differently where the world state joins it).
        assert!(
            d.trace.cached_tokens + 2 >= prefix,
            "step {}: {} of {prefix} cached",
            d.step,
            d.trace.cached_tokens
        );
        assert!(d.trace.prompt_tokens > d.trace.cached_tokens);
    }
    // The example's worlds sometimes have no objects: then `pick` is not offered, and never chosen.
    let empty: Vec<_> = states
        .iter()
        .zip(&ds)
        .filter(|(w, _)| w["objects"] == json!([]))
        .collect();
    for (_, d) in &empty {
        assert_ne!(d.action["skill"], "pick");
    }
}

#[test]
fn gemma3_decisions_are_valid() {
    let mut a = actor("gemma3-270m", table_space());
    let ds = run(&mut a, &worlds::table_top(11, 8), NO_HURRY, table_action_ok);
    assert!(ds.iter().all(|d| d.source == Source::Model), "{ds:?}");
}

#[test]
fn a_generated_action_space_and_worlds_not_in_the_repository() {
    let mut a = actor("smollm2-135m", worlds::drone_space());
    let states = worlds::drone_worlds(3, 16);
    let ds = run(&mut a, &states, NO_HURRY, drone_action_ok);
    assert!(ds.iter().all(|d| d.source == Source::Model), "{ds:?}");
}

#[test]
fn a_100ms_deadline_still_gets_a_valid_action_on_time() {
    let mut a = actor("smollm2-135m", table_space());
    let states = worlds::table_top(5, 16);
    let deadline = Duration::from_millis(100);
    for (i, w) in states.iter().enumerate() {
        let t = Instant::now();
        let d = a.decide(w, t + deadline).unwrap();
        let took = t.elapsed();
        if i == 0 {
            // The instruction and skills were read when the actor started: even the first decision, cut at the
            // deadline or not, starts from the prefix cache.
            let prefix = a.prefix_tokens();
            assert!(
                d.trace.cached_tokens + 2 >= prefix,
                "{} of {prefix} cached",
                d.trace.cached_tokens
            );
        }
        match d.source {
            Source::Model => table_action_ok(&d.action, w).unwrap(),
            Source::Fallback => {
                assert_eq!(d.action, json!({"skill": "wait", "args": {}}));
                assert!(
                    matches!(d.reason, Some(Reason::Deadline | Reason::Estimate)),
                    "{d:?}"
                );
            }
        }
        // Not a benchmark: a loose bound that only a deadline waiting for the model (seconds) would break.
        assert!(
            took < deadline + Duration::from_millis(400),
            "step {} took {took:?}",
            d.step
        );
        assert!(d.elapsed_ms <= took.as_secs_f64() * 1e3 + 0.01);
    }
}

#[test]
fn bad_world_states_fall_back_with_a_clear_error_and_the_next_one_is_decided() {
    let mut a = actor("smollm2-135m", table_space());
    let soon = || Instant::now() + NO_HURRY;
    let cases = [
        ("{\"objects\": [", "the line is not JSON"),
        ("[1, 2]", "must be a JSON object"),
        (
            "{\"bins\": [], \"gripper\": {}}",
            "no path \"/objects/*/id\": no key \"objects\" at the top level",
        ),
        (
            "{\"objects\": [{\"name\": \"x\"}], \"bins\": []}",
            "no key \"id\" at /objects/0",
        ),
    ];
    for (line, want) in cases {
        let d = a.decide_line(line, soon()).unwrap();
        assert_eq!(
            (d.source, d.reason),
            (Source::Fallback, Some(Reason::World)),
            "{line}"
        );
        let e = d.error.unwrap_or_default();
        assert!(e.contains(want), "{line}: {e}");
    }
    // An empty list is not missing: the skill is just not offered.
    let w = json!({"objects": [], "bins": [{"id": "b"}], "gripper": {"holding": "cup_1"}});
    let d = a.decide(&w, soon()).unwrap();
    assert_eq!(d.source, Source::Model);
    table_action_ok(&d.action, &w).unwrap();
    assert_ne!(d.action["skill"], "pick");
}

#[test]
fn bad_action_spaces_are_refused_naming_the_cause() {
    let model = model_path("smollm2-135m");
    let start = |space: Value| match ActionSpace::from_json(space) {
        Err(e) => e,
        Ok(s) => match Actor::load(&model, s, ActOptions::default()) {
            Err(e) => e,
            Ok(_) => panic!("the action space was accepted"),
        },
    };
    let mut s = table_space();
    s["skills"][2]["parameters"]["properties"]["x"] =
        json!({"type": "number", "pattern": "(", "minimum": "a"});
    let e = start(s);
    assert!(
        matches!(e, ActError::Space(_)) && e.to_string().contains("skill \"move_to\""),
        "{e}"
    );
    let mut s = table_space();
    s["fallback"] = json!({"skill": "move_to", "args": {"x": 3, "y": 0}});
    let e = start(s).to_string();
    assert!(
        e.contains("'fallback'") && e.contains("not a valid action"),
        "{e}"
    );
    let mut s = table_space();
    s["fallback"] = json!({"skill": "move_to", "args": {"x": 0.1}});
    let e = start(s).to_string();
    assert!(
        e.contains("'fallback'") && e.contains("not a valid action"),
        "{e}"
    );
    let mut s = table_space();
    s["fallback"] = json!({"skill": "pick", "args": {"object": "x"}});
    assert!(start(s).to_string().contains("takes values from the world"));
    let mut s = table_space();
    s["skills"][0]["parameters"]["properties"]["object"]["enum"] = json!("$world:objects");
    assert!(start(s).to_string().contains("must start with '/'"));
}

/// Writes an episode with deadlines that vary per step (some long enough to finish, some cut mid-action), so that
/// it holds model actions and fallbacks cut at various tokens.
fn record(path: &std::path::Path, states: &[Value]) -> Episode {
    let model = model_path("smollm2-135m");
    let mut a = Actor::load(
        &model,
        ActionSpace::from_json(table_space()).unwrap(),
        ActOptions::default(),
    )
    .unwrap();
    let header = EpisodeHeader::for_actor(&a, &model, None).unwrap();
    let mut log = EpisodeLog::create(path, &header).unwrap();
    for (i, w) in states.iter().enumerate() {
        let deadline = match i % 3 {
            0 => NO_HURRY,
            1 => Duration::from_millis(150),
            _ => Duration::from_millis(350),
        };
        let d = a.decide(w, Instant::now() + deadline).unwrap();
        log.record(&d).unwrap();
    }
    log.record(
        &a.decide_line("not json", Instant::now() + NO_HURRY)
            .unwrap(),
    )
    .unwrap();
    Episode::read(path).unwrap()
}

#[test]
fn an_episode_replays_identically_and_a_changed_world_or_token_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("episode.jsonl");
    let ep = record(&path, &worlds::table_top(9, 9));
    assert_eq!(ep.steps.len(), 10);
    let models = ep
        .steps
        .iter()
        .filter(|s| s.source == Source::Model)
        .count();
    assert!(models >= 3, "{models} model steps");
    for s in &ep.steps {
        if s.source == Source::Fallback && s.reason != Some(Reason::World) {
            assert_eq!(s.cut, Some(s.tokens.len()));
        }
    }
    let space = ActionSpace::from_json(ep.header.action_space.clone()).unwrap();
    let mut a = Actor::load(&model_path("smollm2-135m"), space, ActOptions::default()).unwrap();
    assert_eq!(hearth_act::replay(&mut a, &ep, |_, _| {}).unwrap(), None);

    // A world state changed after the fact: the prompt no longer matches what the model saw.
    let mut changed = ep.clone();
    changed.steps[4].world.as_mut().unwrap()["gripper"]["open"] = json!("maybe");
    let m = hearth_act::replay(&mut a, &changed, |_, _| {})
        .unwrap()
        .expect("a difference");
    assert_eq!(m.step, 4, "{m}");
    assert!(m.what.contains("prompt differs"), "{m}");

    // A token changed in a model step.
    let mut changed = ep.clone();
    let k = changed
        .steps
        .iter()
        .position(|s| s.source == Source::Model && s.tokens.len() > 4)
        .unwrap();
    changed.steps[k].tokens[3] ^= 1;
    let m = hearth_act::replay(&mut a, &changed, |_, _| {})
        .unwrap()
        .expect("a difference");
    assert_eq!(m.step, k as u64, "{m}");
    assert!(m.what.contains("generated token 3"), "{m}");
}
