//! hearth-act: actions a machine can trust. An [`Actor`] turns each world state (a JSON object) into one action
//! `{"skill": NAME, "args": {…}}` from an [`ActionSpace`], by a wall-clock deadline: either the model's complete
//! action, valid against the grammar of what is possible in that world state, or the space's declared fallback —
//! never a partial or invalid one. Every decision can be logged ([`EpisodeLog`]) and replayed bit for bit
//! ([`replay`]).
//!
//! - [`ActionSpace`]: the instruction, the skills (a JSON Schema for each one's `args`) and the fallback. An
//!   `"enum": "$world:/objects/*/id"` inside a schema takes its values from the world state at every step (a JSON
//!   Pointer; `*` is every array element); a skill whose enum comes out empty is not offered at that step.
//! - [`Actor::decide`]: one decision. The instruction and skills are a fixed prompt prefix that the engine's prefix
//!   cache keeps, so each step reads only the world state; decoding is greedy or seeded; when the time left cannot
//!   fit another step, or the deadline passes mid-step, the request is cancelled and the fallback returned.
//! - [`Decision`]: serializes to the decision line `{"step", "action", "source", "deadline_ms", "elapsed_ms",
//!   "tokens", "grammar_ms", …}`; its [`Trace`] holds what the episode log needs (token ids, seed, prompt digest).
//! - [`EpisodeLog`] writes an episode (model sha256, hearth version, action space, sampling, each step);
//!   [`Episode::read`] and [`replay`] re-run it without deadlines and name the first step that differs.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use hearth_act::{ActOptions, ActionSpace, Actor};
//! use std::time::{Duration, Instant};
//! let space = ActionSpace::load("examples/act/pick-place.json".as_ref())?;
//! let mut actor = Actor::load("smollm2-135m.gguf".as_ref(), space, ActOptions::default())?;
//! let world = serde_json::json!({"objects": [{"id": "red_cube", "color": "red", "at": [0.1, 0.2]}],
//!                                "bins": [{"id": "bin_a"}], "gripper": {"holding": null}});
//! let d = actor.decide(&world, Instant::now() + Duration::from_millis(2000))?;
//! println!("{}", serde_json::to_string(&d)?); // {"step":0,"action":{"skill":"pick",…},"source":"model",…}
//! # Ok(()) }
//! ```

mod actor;
mod episode;
mod pointer;
mod space;

pub use actor::{ActOptions, Actor, Sampling};
pub use episode::{replay, Episode, EpisodeHeader, EpisodeLog, Mismatch, StepRecord};
pub use pointer::Pointer;
pub use space::{ActionSpace, StepGrammar, WORLD_PREFIX};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Whose action a decision carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The model's own complete action.
    Model,
    /// The action space's fallback.
    Fallback,
}

/// Why a decision fell back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The deadline came while the model was still writing (or the grammar still compiling).
    Deadline,
    /// The time left could not fit another step of the model, so it was stopped before the deadline.
    Estimate,
    /// The model wrote `max_tokens` without finishing the action.
    Length,
    /// The world state was unusable (not a JSON object, a `$world` path missing, too long for the context).
    World,
    /// The grammar or the model failed (the error says how).
    Error,
}

/// One decision: the decision line, plus a [`Trace`] for the episode log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// 0, 1, 2, … in the order decisions were made.
    pub step: u64,
    pub action: Value,
    pub source: Source,
    /// Why the fallback was taken (absent for the model's own action).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    /// The deadline, from the start of the decision.
    pub deadline_ms: f64,
    /// From the start of the decision (the CLI: from reading the line) to its return (the CLI: to writing it).
    pub elapsed_ms: f64,
    /// Tokens the model generated (for a fallback, before it was cut).
    pub tokens: usize,
    /// Time to build and compile this step's grammar (with its first mask).
    pub grammar_ms: f64,
    /// World states skipped before this one because newer ones came (`hearth act --latest-only`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<u64>,
    /// What was wrong (with the world state, the grammar or the model) when the fallback was taken for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip)]
    pub trace: Trace,
}

/// What the episode log records of a decision beyond its line.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Trace {
    /// The world state as parsed, or the line as read when it was not JSON.
    pub world: World,
    /// The seed of this step's sampler.
    pub seed: u64,
    pub prompt_tokens: usize,
    /// sha256 of the prompt's token ids (little-endian u32s): what the model saw.
    pub prompt_sha256: String,
    /// Prompt tokens whose KV came from the engine's prefix cache.
    pub cached_tokens: usize,
    /// The generated token ids (for a fallback, those before the cut).
    pub token_ids: Vec<u32>,
}

/// A world state as it came.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum World {
    #[default]
    None,
    /// Parsed JSON (an object, unless it was refused).
    State(Value),
    /// A line that is not JSON.
    Line(String),
}

/// Errors: a refused action space or options, a model that cannot load, the engine failing, an episode log.
/// (A bad world state is not an error: its decision is the fallback, with the error in [`Decision::error`].)
#[derive(Debug, thiserror::Error)]
pub enum ActError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the action space is invalid: {0}")]
    Space(String),
    #[error("the world state is invalid: {0}")]
    World(String),
    #[error("{0}")]
    Options(String),
    #[error("the model: {0}")]
    Model(String),
    #[error("the engine failed: {0}")]
    Engine(String),
    #[error("the episode log {0}")]
    Log(String),
}

/// hearth's version, as episode logs record it.
pub const HEARTH_VERSION: &str = env!("CARGO_PKG_VERSION");

/// sha256 of a file, in hex (the model's identity in an episode log).
pub fn file_sha256(path: &std::path::Path) -> Result<String, ActError> {
    use sha2::Digest;
    use std::io::Read;
    let io = |e| ActError::Io {
        what: format!("cannot read {}", path.display()),
        source: e,
    };
    let mut f = std::fs::File::open(path).map_err(io)?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
