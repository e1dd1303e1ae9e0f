//! Episodes: a JSONL log of everything needed to reproduce each decision, and [`replay`], which re-runs it without
//! deadlines and names the first step that differs.
//!
//! The first line is the [`EpisodeHeader`] (`"type": "episode"`: hearth's version, the model file's sha256, the
//! action space, the sampling settings); then one [`StepRecord`] per decision (`"type": "step"`: the world state,
//! the step's seed, the prompt's length and sha256, the generated token ids, the action, and for a fallback the
//! number of tokens generated before the cut). Each line is flushed as it is written, so a log survives a crash
//! of the process up to its last decision (a torn last line is reported when read).

use crate::actor::{Budget, Sampling};
use crate::{ActError, Actor, Decision, Reason, Source, World};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

/// The first line of an episode log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpisodeHeader {
    /// hearth's version that recorded it.
    pub hearth: String,
    /// The model file as given, and its sha256.
    pub model: String,
    pub model_sha256: String,
    pub action_space: Value,
    pub sampling: Sampling,
    pub max_tokens: usize,
    pub n_ctx: usize,
    /// The deadline every step had (when the recorder used one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<f64>,
}

impl EpisodeHeader {
    /// The header for `actor` running `model_path` (hashes the file: about a second for a few hundred MB).
    pub fn for_actor(
        actor: &Actor,
        model_path: &Path,
        deadline_ms: Option<f64>,
    ) -> Result<Self, ActError> {
        let o = actor.options();
        Ok(EpisodeHeader {
            hearth: crate::HEARTH_VERSION.to_string(),
            model: model_path.display().to_string(),
            model_sha256: crate::file_sha256(model_path)?,
            action_space: actor.space().source().clone(),
            sampling: o.sampling.clone(),
            max_tokens: o.max_tokens,
            n_ctx: o.n_ctx,
            deadline_ms,
        })
    }
}

/// One decision as logged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub step: u64,
    /// The world state (absent when the line was not JSON: then `line` holds it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub world: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<String>,
    pub seed: u64,
    pub prompt_tokens: usize,
    /// sha256 of the prompt's token ids: what the model saw.
    pub prompt_sha256: String,
    /// Generated token ids (for a fallback, those before the cut).
    pub tokens: Vec<u32>,
    pub action: Value,
    pub source: Source,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    /// For a fallback: how many tokens the model had generated when it was cut.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cut: Option<usize>,
    pub deadline_ms: f64,
    pub elapsed_ms: f64,
    pub grammar_ms: f64,
    pub cached_tokens: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl From<&Decision> for StepRecord {
    fn from(d: &Decision) -> Self {
        let t = &d.trace;
        let (world, line) = match &t.world {
            World::State(v) => (Some(v.clone()), None),
            World::Line(l) => (None, Some(l.clone())),
            World::None => (None, None),
        };
        StepRecord {
            step: d.step,
            world,
            line,
            seed: t.seed,
            prompt_tokens: t.prompt_tokens,
            prompt_sha256: t.prompt_sha256.clone(),
            tokens: t.token_ids.clone(),
            action: d.action.clone(),
            source: d.source,
            reason: d.reason,
            cut: (d.source == Source::Fallback).then_some(t.token_ids.len()),
            deadline_ms: d.deadline_ms,
            elapsed_ms: d.elapsed_ms,
            grammar_ms: d.grammar_ms,
            cached_tokens: t.cached_tokens,
            skipped: d.skipped,
            error: d.error.clone(),
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Line {
    Episode(EpisodeHeader),
    Step(StepRecord),
}

/// Writes an episode log, a line per decision, each flushed.
pub struct EpisodeLog {
    out: std::io::BufWriter<std::fs::File>,
    path: PathBuf,
}

impl EpisodeLog {
    /// Creates (or truncates) `path` and writes the header.
    pub fn create(path: &Path, header: &EpisodeHeader) -> Result<EpisodeLog, ActError> {
        let file = std::fs::File::create(path).map_err(|e| ActError::Io {
            what: format!("cannot create the episode log {}", path.display()),
            source: e,
        })?;
        let mut log = EpisodeLog {
            out: std::io::BufWriter::new(file),
            path: path.to_path_buf(),
        };
        log.write(&Line::Episode(header.clone()))?;
        Ok(log)
    }

    /// Appends a decision.
    pub fn record(&mut self, d: &Decision) -> Result<(), ActError> {
        self.write(&Line::Step(StepRecord::from(d)))
    }

    fn write(&mut self, line: &Line) -> Result<(), ActError> {
        let io = |e| ActError::Io {
            what: format!("cannot write the episode log {}", self.path.display()),
            source: e,
        };
        serde_json::to_writer(&mut self.out, line).map_err(|e| io(e.into()))?;
        self.out.write_all(b"\n").map_err(io)?;
        self.out.flush().map_err(io)
    }
}

/// A recorded episode.
#[derive(Debug, Clone, PartialEq)]
pub struct Episode {
    pub header: EpisodeHeader,
    pub steps: Vec<StepRecord>,
}

impl Episode {
    /// Reads a log; errors name the line.
    pub fn read(path: &Path) -> Result<Episode, ActError> {
        let f = std::fs::File::open(path).map_err(|e| ActError::Io {
            what: format!("cannot open the episode log {}", path.display()),
            source: e,
        })?;
        let mut header = None;
        let mut steps = Vec::new();
        for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
            let at = |m: String| ActError::Log(format!("{} line {}: {m}", path.display(), i + 1));
            let line = line.map_err(|e| at(e.to_string()))?;
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Line>(&line).map_err(|e| at(e.to_string()))? {
                Line::Episode(h) if header.is_none() && i == 0 => header = Some(h),
                Line::Episode(_) => return Err(at("a second episode header".into())),
                Line::Step(_) if header.is_none() => {
                    return Err(at("a step before the episode header".into()))
                }
                Line::Step(s) => steps.push(s),
            }
        }
        let header = header.ok_or_else(|| ActError::Log(format!("{} is empty", path.display())))?;
        Ok(Episode { header, steps })
    }
}

/// The first difference replay found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub step: u64,
    pub what: String,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "step {} differs: {}", self.step, self.what)
    }
}

/// Re-runs every step of `episode` on `actor` (built from the episode's action space and sampling) without
/// deadlines — a fallback up to its recorded cut — and returns the first step whose prompt, tokens or action
/// differ, or None when all are identical. `each` sees every replayed step.
pub fn replay(
    actor: &mut Actor,
    episode: &Episode,
    mut each: impl FnMut(&StepRecord, &Decision),
) -> Result<Option<Mismatch>, ActError> {
    for rec in &episode.steps {
        let world = match (&rec.world, &rec.line) {
            (Some(w), _) => World::State(w.clone()),
            (None, Some(l)) => World::Line(l.clone()),
            (None, None) => World::None,
        };
        let budget = match rec.source {
            Source::Model => Budget::Unbounded,
            Source::Fallback => Budget::Tokens(rec.cut.unwrap_or(rec.tokens.len())),
        };
        let d = actor.rerun(rec.step, rec.seed, world, budget)?;
        each(rec, &d);
        if let Some(what) = compare(rec, &d) {
            return Ok(Some(Mismatch {
                step: rec.step,
                what,
            }));
        }
    }
    Ok(None)
}

/// What differs between a recorded step and its replay, if anything.
fn compare(rec: &StepRecord, d: &Decision) -> Option<String> {
    let t = &d.trace;
    if rec.prompt_sha256 != t.prompt_sha256 || rec.prompt_tokens != t.prompt_tokens {
        return Some(format!(
            "the prompt differs ({} tokens, sha256 {} in the log; {} tokens, sha256 {} on replay): the world \
             state or the action space is not what the model saw",
            rec.prompt_tokens,
            short(&rec.prompt_sha256),
            t.prompt_tokens,
            short(&t.prompt_sha256)
        ));
    }
    if let Some(cut) = rec.cut.filter(|&c| c != rec.tokens.len()) {
        return Some(format!(
            "the cut ({cut}) is not the number of tokens logged ({})",
            rec.tokens.len()
        ));
    }
    if let Some(i) = (0..rec.tokens.len().max(t.token_ids.len()))
        .find(|&i| rec.tokens.get(i) != t.token_ids.get(i))
    {
        let show = |x: Option<&u32>| x.map_or("nothing".to_string(), |id| format!("token id {id}"));
        return Some(format!(
            "generated token {i} is {} in the log, {} on replay",
            show(rec.tokens.get(i)),
            show(t.token_ids.get(i))
        ));
    }
    match rec.source {
        Source::Model if d.source != Source::Model => Some(format!(
            "the log has the model's action, replay fell back ({:?}{})",
            d.reason,
            d.error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        )),
        Source::Model if rec.action != d.action => Some(format!(
            "the action is {} in the log, {} on replay",
            rec.action, d.action
        )),
        Source::Fallback if rec.action != d.action && d.source == Source::Fallback => {
            Some(format!(
                "the fallback is {} in the log, {} on replay (the action space changed)",
                rec.action, d.action
            ))
        }
        // A world state that was refused must be refused again, for the same reason.
        Source::Fallback
            if (rec.reason == Some(Reason::World)) != (d.reason == Some(Reason::World)) =>
        {
            Some(format!(
                "the world state was {} when recorded and {} on replay",
                if rec.reason == Some(Reason::World) {
                    "refused"
                } else {
                    "accepted"
                },
                if d.reason == Some(Reason::World) {
                    "refused"
                } else {
                    "accepted"
                }
            ))
        }
        _ => None,
    }
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}
