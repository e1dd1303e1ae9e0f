//! hearth as a dora-rs node: each `world` input (an Arrow UTF-8 string holding a JSON world state) gets one `action`
//! output, the decision line of `hearth act` (an Arrow UTF-8 string), decided by a deadline.
//!
//! - **Latest frame wins.** A robot wants a decision about the world as it is now: world states that arrive while the
//!   model is deciding are dropped (only the newest is kept) and counted, in the next decision's `skipped` field and
//!   in the output metadata's `dropped_frames`.
//! - **Output metadata**: the input's own parameters (so a sender can tag its frames), plus `input_timestamp` (the
//!   input's dora timestamp, ns since the Unix epoch), `latency_ms` (from taking the frame to sending the decision),
//!   `source` (`"model"` or `"fallback"`), `step`, `dropped_frames` (so far) and, when logging, `episode_log`.
//! - [`Planner`] is the seam between the dora loop ([`serve`]) and the model: [`ActPlanner`] runs `hearth-act`'s
//!   [`Actor`] in-process and writes the episode log.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use hearth_act::{ActOptions, ActionSpace, Actor};
//! use hearth_dora_node::{serve, ActPlanner};
//! use std::time::Duration;
//! let space = ActionSpace::load("examples/so101/actions.json".as_ref())?;
//! let actor = Actor::load("smollm2-135m.gguf".as_ref(), space, ActOptions::default())?;
//! let mut planner = ActPlanner::new(actor, None);
//! let (mut node, mut events) = dora_node_api::DoraNode::init_from_env()?;
//! let stats = serve(&mut node, &mut events, &mut planner, Duration::from_millis(2000))?;
//! eprintln!("{} decisions, {} world states dropped", stats.decisions, stats.dropped_frames);
//! # Ok(()) }
//! ```

use dora_node_api::dora_core::config::DataId;
use dora_node_api::{DoraNode, Event, EventStream, Metadata, MetadataParameters, Parameter};
use hearth_act::{ActError, Actor, EpisodeLog};
use std::path::PathBuf;
use std::time::{Duration, Instant, UNIX_EPOCH};

/// The input the node decides on.
pub const WORLD_INPUT: &str = "world";
/// The output its decisions go to.
pub const ACTION_OUTPUT: &str = "action";

/// One decision as the node sends it.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    /// The decision line (`hearth act`'s JSON object, one line).
    pub line: String,
    /// `"model"` or `"fallback"`.
    pub source: &'static str,
    pub step: u64,
}

/// Decides one world state by a deadline. `skipped` is how many world states were dropped since the last decision.
pub trait Planner {
    fn decide(
        &mut self,
        world: &str,
        deadline: Instant,
        skipped: u64,
    ) -> Result<Planned, NodeError>;
    /// The episode log's path, if decisions are logged.
    fn episode_log(&self) -> Option<&std::path::Path> {
        None
    }
}

/// The node's errors: dora failing, or the model (a bad world state is not an error: it gets the fallback).
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("dora: {0}")]
    Dora(String),
    #[error(transparent)]
    Act(#[from] ActError),
    #[error("cannot encode the decision: {0}")]
    Encode(#[from] serde_json::Error),
}

/// What a [`serve`] loop did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub decisions: u64,
    pub dropped_frames: u64,
}

/// A world state taken from the queue.
struct Frame {
    text: Result<String, String>,
    metadata: Metadata,
    taken: Instant,
}

/// Runs the node until dora stops it or its `world` input closes: every world state taken from the queue is decided
/// (with `deadline` from the moment it was taken) after dropping any older one still queued.
pub fn serve(
    node: &mut DoraNode,
    events: &mut EventStream,
    planner: &mut impl Planner,
    deadline: Duration,
) -> Result<Stats, NodeError> {
    let mut stats = Stats::default();
    let mut skipped = 0u64;
    let mut done = false;
    while !done {
        let Some(first) = events.recv() else { break };
        let mut latest = None;
        let mut take = |ev: Event, latest: &mut Option<Frame>| match ev {
            Event::Input { id, metadata, data } if id.as_str() == WORLD_INPUT => {
                let text = <&str>::try_from(&data)
                    .map(str::to_owned)
                    .map_err(|e| format!("the world input is not one UTF-8 string: {e}"));
                let frame = Frame {
                    text,
                    metadata,
                    taken: Instant::now(),
                };
                if latest.replace(frame).is_some() {
                    skipped += 1;
                }
                false
            }
            Event::InputClosed { id } => id.as_str() == WORLD_INPUT,
            Event::Stop(_) => true,
            Event::Error(e) => {
                eprintln!("hearth dora-node: dora reported: {e}");
                false
            }
            _ => false,
        };
        done = take(first, &mut latest);
        // Everything already queued: only the newest world state is decided.
        while !done {
            match events.try_recv() {
                Ok(ev) => done = take(ev, &mut latest),
                Err(_) => break,
            }
        }
        // Stopped, or nobody sends world states any more: a pending one would be answered to no one.
        let Some(frame) = latest.filter(|_| !done) else {
            continue;
        };
        let world = match &frame.text {
            Ok(text) => text.as_str(),
            // Not JSON, so the actor answers with the fallback and says why in the decision.
            Err(why) => why.as_str(),
        };
        let planned = planner.decide(world, frame.taken + deadline, skipped)?;
        stats.dropped_frames += skipped;
        skipped = 0;
        stats.decisions += 1;
        let params = output_metadata(
            &frame.metadata,
            &planned,
            frame.taken.elapsed(),
            stats,
            planner.episode_log(),
        );
        node.send_output(DataId::from(ACTION_OUTPUT.to_owned()), params, planned.line)
            .map_err(|e| NodeError::Dora(e.to_string()))?;
    }
    Ok(stats)
}

/// The output's metadata: the input's parameters, then the decision's (see the crate's documentation).
pub fn output_metadata(
    input: &Metadata,
    planned: &Planned,
    latency: Duration,
    stats: Stats,
    episode_log: Option<&std::path::Path>,
) -> MetadataParameters {
    let mut params = input.parameters.clone();
    let ts = (*input.timestamp().get_time()).to_system_time();
    let ns = ts.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    params.insert(
        "input_timestamp".into(),
        Parameter::Integer(i64::try_from(ns).unwrap_or(i64::MAX)),
    );
    params.insert(
        "latency_ms".into(),
        Parameter::Float(latency.as_secs_f64() * 1e3),
    );
    params.insert("source".into(), Parameter::String(planned.source.into()));
    params.insert(
        "step".into(),
        Parameter::Integer(i64::try_from(planned.step).unwrap_or(i64::MAX)),
    );
    params.insert(
        "dropped_frames".into(),
        Parameter::Integer(i64::try_from(stats.dropped_frames).unwrap_or(i64::MAX)),
    );
    if let Some(path) = episode_log {
        params.insert(
            "episode_log".into(),
            Parameter::String(path.display().to_string()),
        );
    }
    params
}

/// The real planner: `hearth-act`'s [`Actor`], and the episode log when there is one.
pub struct ActPlanner {
    actor: Actor,
    log: Option<(EpisodeLog, PathBuf)>,
}

impl ActPlanner {
    pub fn new(actor: Actor, log: Option<(EpisodeLog, PathBuf)>) -> ActPlanner {
        ActPlanner { actor, log }
    }
}

impl Planner for ActPlanner {
    fn decide(
        &mut self,
        world: &str,
        deadline: Instant,
        skipped: u64,
    ) -> Result<Planned, NodeError> {
        let mut d = self.actor.decide_line(world, deadline)?;
        d.skipped = Some(skipped);
        if let Some((log, _)) = &mut self.log {
            log.record(&d)?;
        }
        let source = match d.source {
            hearth_act::Source::Model => "model",
            hearth_act::Source::Fallback => "fallback",
        };
        Ok(Planned {
            line: serde_json::to_string(&d)?,
            source,
            step: d.step,
        })
    }

    fn episode_log(&self) -> Option<&std::path::Path> {
        self.log.as_ref().map(|(_, p)| p.as_path())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dora_node_api::uhlc;

    #[test]
    fn output_metadata_keeps_the_inputs_parameters_and_adds_the_decisions() {
        let sent = Duration::from_secs(1_800_000_000) + Duration::from_nanos(123_456_789);
        let ts = uhlc::Timestamp::new(uhlc::NTP64::from(sent), uhlc::ID::rand());
        let mut params = MetadataParameters::new();
        params.insert("frame".into(), Parameter::Integer(70));
        let input = Metadata::from_parameters(ts, params);
        let planned = Planned {
            line: "{}".into(),
            source: "fallback",
            step: 4,
        };
        let stats = Stats {
            decisions: 5,
            dropped_frames: 9,
        };
        let out = output_metadata(
            &input,
            &planned,
            Duration::from_micros(1500),
            stats,
            Some("ep.jsonl".as_ref()),
        );
        assert_eq!(out.get("frame"), Some(&Parameter::Integer(70)));
        assert_eq!(
            out.get("source"),
            Some(&Parameter::String("fallback".into()))
        );
        assert_eq!(out.get("step"), Some(&Parameter::Integer(4)));
        assert_eq!(out.get("dropped_frames"), Some(&Parameter::Integer(9)));
        assert_eq!(out.get("latency_ms"), Some(&Parameter::Float(1.5)));
        assert_eq!(
            out.get("episode_log"),
            Some(&Parameter::String("ep.jsonl".into()))
        );
        // NTP64 keeps 32 bits of fraction (~0.23 ns): the nanoseconds survive within one.
        let Some(Parameter::Integer(ns)) = out.get("input_timestamp") else {
            panic!("no input_timestamp in {out:?}")
        };
        assert!(
            (ns - sent.as_nanos() as i64).abs() <= 1,
            "{ns} vs {}",
            sent.as_nanos()
        );
        assert!(
            output_metadata(&input, &planned, Duration::ZERO, stats, None)
                .get("episode_log")
                .is_none()
        );
    }
}
