//! The dora loop in dora's testing mode (no daemon), with a stand-in planner that takes a fixed time: world states
//! that arrive while it decides are dropped, only the newest is decided, and the drops are counted.

use dora_node_api::integration_testing::{
    drain_outputs,
    integration_testing_format::{IncomingEvent, InputData, TimedIncomingEvent},
    output_channel, IntegrationTestInput, TestingInput, TestingOptions, TestingOutput,
};
use dora_node_api::DoraNode;
use hearth_dora_node::{serve, NodeError, Planned, Planner, Stats};
use std::time::{Duration, Instant};

/// Takes `busy` per decision and remembers what it was given.
struct Slow {
    busy: Duration,
    seen: Vec<(String, u64)>,
}

impl Planner for Slow {
    fn decide(
        &mut self,
        world: &str,
        _deadline: Instant,
        skipped: u64,
    ) -> Result<Planned, NodeError> {
        std::thread::sleep(self.busy);
        self.seen.push((world.to_owned(), skipped));
        let step = self.seen.len() as u64 - 1;
        Ok(Planned {
            line: format!("{{\"step\":{step},\"skipped\":{skipped}}}"),
            source: "model",
            step,
        })
    }
}

fn world(t: f64, data: serde_json::Value) -> TimedIncomingEvent {
    TimedIncomingEvent {
        time_offset_secs: t,
        event: IncomingEvent::Input {
            id: "world".to_string().into(),
            metadata: None,
            data: Some(Box::new(InputData::JsonObject {
                data,
                data_type: None,
            })),
        },
    }
}

/// An input the node does not decide on (it only waits for world states): it keeps the testing daemon's queue
/// moving (see below) without being a world state.
fn tick(t: f64) -> TimedIncomingEvent {
    TimedIncomingEvent {
        time_offset_secs: t,
        event: IncomingEvent::Input {
            id: "tick".to_string().into(),
            metadata: None,
            data: None,
        },
    }
}

fn stop(t: f64) -> TimedIncomingEvent {
    TimedIncomingEvent {
        time_offset_secs: t,
        event: IncomingEvent::Stop,
    }
}

fn run(
    events: Vec<TimedIncomingEvent>,
    busy: Duration,
) -> (Stats, Vec<(String, u64)>, Vec<serde_json::Value>) {
    let mut input = IntegrationTestInput::new("hearth".parse().unwrap(), events);
    input.outputs.insert("action".to_string().into());
    let input = TestingInput::Input(input);
    let (tx, mut rx) = output_channel();
    let options = TestingOptions {
        skip_output_time_offsets: true,
    };
    let (mut node, mut stream) =
        DoraNode::init_testing(input, TestingOutput::ToChannel(tx), options).unwrap();
    let mut planner = Slow {
        busy,
        seen: Vec::new(),
    };
    let stats = serve(&mut node, &mut stream, &mut planner, Duration::from_secs(1)).unwrap();
    drop(node);
    let outputs = drain_outputs(&mut rx)
        .into_iter()
        .map(serde_json::Value::Object)
        .collect();
    (stats, planner.seen, outputs)
}

// dora's testing daemon is one thread that sleeps until an input's time before it answers any other request, so
// inputs get bundled by timing: the node's start (`init_testing`) can return only when the second input is due, and
// the reply to an output can wait until the next input or two are delivered. Ticks (inputs that are not world
// states) between the world states absorb those waits, and the assertions below hold however inputs are bundled.

/// The world states decided, in order, and the world states skipped before each.
fn decided(seen: &[(String, u64)]) -> Vec<(&str, u64)> {
    seen.iter().map(|(w, s)| (w.as_str(), *s)).collect()
}

#[test]
fn world_states_that_arrive_while_deciding_are_dropped_and_counted() {
    // A 1.5 s planner: "b" and "c" arrive while it decides the first; "d" comes later.
    let sent = ["a", "b", "c", "d"];
    let events = vec![
        world(0.0, "a".into()),
        tick(0.3),
        world(0.6, "b".into()),
        world(0.8, "c".into()),
        world(2.5, "d".into()),
        tick(3.0),
        tick(3.5),
        tick(4.0),
        stop(4.5),
    ];
    let (stats, seen, outputs) = run(events, Duration::from_millis(1500));
    let seen = decided(&seen);
    // Only the newest queued world state is decided, so the decisions go forward in time, skip exactly the world
    // states between them (each counted), and end with the last one sent; some were dropped while deciding.
    let mut previous = None;
    for &(w, skipped) in &seen {
        let i = sent
            .iter()
            .position(|s| *s == w)
            .expect("a world state that was sent");
        let gap = previous.map_or(i, |p: usize| {
            assert!(i > p, "decided out of order: {seen:?}");
            i - p - 1
        });
        assert_eq!(
            skipped as usize, gap,
            "skipped counts the world states in between: {seen:?}"
        );
        previous = Some(i);
    }
    assert_eq!(seen.last().map(|d| d.0), Some("d"), "{seen:?}");
    assert!(
        seen.len() < sent.len(),
        "nothing dropped while deciding: {seen:?}"
    );
    assert_eq!(
        stats,
        Stats {
            decisions: seen.len() as u64,
            dropped_frames: (sent.len() - seen.len()) as u64
        }
    );
    let lines: Vec<String> = outputs
        .iter()
        .map(|o| {
            assert_eq!(o["id"], "action", "{o}");
            o["data"][0]
                .as_str()
                .unwrap_or_else(|| panic!("not one string: {o}"))
                .to_owned()
        })
        .collect();
    let expected: Vec<String> = seen
        .iter()
        .enumerate()
        .map(|(step, (_, skipped))| format!("{{\"step\":{step},\"skipped\":{skipped}}}"))
        .collect();
    assert_eq!(lines, expected);
}

#[test]
fn a_world_input_that_is_not_a_string_is_decided_as_an_error_text() {
    // A number instead of a string: the planner is asked about the error (hearth-act answers that with its fallback,
    // saying why), and the loop goes on to the next world state, which comes after three ticks.
    let events = vec![
        world(0.0, serde_json::json!(5)),
        tick(0.5),
        tick(1.0),
        tick(1.5),
        world(2.0, "ok".into()),
        tick(2.5),
        tick(3.0),
        tick(3.5),
        stop(4.0),
    ];
    let (stats, seen, _) = run(events, Duration::from_millis(10));
    let seen = decided(&seen);
    assert_eq!(stats.decisions, 2, "{seen:?}");
    assert!(
        seen[0]
            .0
            .starts_with("the world input is not one UTF-8 string"),
        "{seen:?}"
    );
    assert_eq!(seen[1], ("ok", 0));
}
