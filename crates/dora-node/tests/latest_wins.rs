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

#[test]
fn world_states_that_arrive_while_deciding_are_dropped_and_counted() {
    // "a" starts a 300 ms decision; "b" and "c" arrive during it, so only "c" is decided next, with one skipped;
    // "d" comes when the planner is idle again.
    let events = vec![
        world(0.0, "a".into()),
        world(0.05, "b".into()),
        world(0.10, "c".into()),
        world(1.0, "d".into()),
        TimedIncomingEvent {
            time_offset_secs: 1.5,
            event: IncomingEvent::Stop,
        },
    ];
    let (stats, seen, outputs) = run(events, Duration::from_millis(300));
    let seen: Vec<(&str, u64)> = seen.iter().map(|(w, s)| (w.as_str(), *s)).collect();
    assert_eq!(seen, [("a", 0), ("c", 1), ("d", 0)]);
    assert_eq!(
        stats,
        Stats {
            decisions: 3,
            dropped_frames: 1
        }
    );
    let lines: Vec<&str> = outputs
        .iter()
        .map(|o| {
            assert_eq!(o["id"], "action", "{o}");
            o["data"][0]
                .as_str()
                .unwrap_or_else(|| panic!("not one string: {o}"))
        })
        .collect();
    assert_eq!(
        lines,
        [
            r#"{"step":0,"skipped":0}"#,
            r#"{"step":1,"skipped":1}"#,
            r#"{"step":2,"skipped":0}"#
        ]
    );
}

#[test]
fn a_world_input_that_is_not_a_string_is_decided_as_an_error_text() {
    // A number instead of a string: the planner is asked about the error (hearth-act answers that with its fallback,
    // saying why), and the loop goes on to the next world state.
    let events = vec![world(0.0, serde_json::json!(5)), world(0.2, "ok".into())];
    let (stats, seen, _) = run(events, Duration::from_millis(10));
    assert_eq!(stats.decisions, 2);
    assert!(
        seen[0]
            .0
            .starts_with("the world input is not one UTF-8 string"),
        "{:?}",
        seen[0]
    );
    assert_eq!(seen[1].0, "ok");
}
