//! `hearth replay EPISODE.jsonl [MODEL]`: re-runs every decision of an episode `hearth act --log` wrote, without
//! deadlines (a fallback up to the token where it was cut), and exits 0 only when every step's prompt, tokens and
//! action are identical; otherwise it names the first step that differs and exits 1.

use crate::common::resolve_model;
use anyhow::{bail, Result};
use hearth_act::{ActOptions, ActionSpace, Actor, Episode};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The episode log (`hearth act --log`).
    episode: PathBuf,
    /// The model (a name or a .gguf path); default: the file the episode names. Its sha256 must match the log's.
    model: Option<String>,
    /// Compute threads, 1 to the number of logical CPUs (default: all of them).
    #[arg(short = 't', long, value_parser = crate::common::parse_threads)]
    threads: Option<usize>,
}

pub fn run(a: Args) -> Result<ExitCode> {
    let episode = Episode::read(&a.episode)?;
    let h = &episode.header;
    let path = resolve_model(a.model.as_deref().unwrap_or(&h.model))?;
    let sha = hearth_act::file_sha256(&path)?;
    if sha != h.model_sha256 {
        bail!(
            "{} is not the model this episode was recorded with (sha256 {sha}; the log has {})",
            path.display(),
            h.model_sha256
        );
    }
    if h.hearth != hearth_act::HEARTH_VERSION {
        eprintln!(
            "note: recorded with hearth {}, replaying with {}",
            h.hearth,
            hearth_act::HEARTH_VERSION
        );
    }
    let space = ActionSpace::from_json(h.action_space.clone())?;
    let opts = ActOptions {
        sampling: h.sampling.clone(),
        n_threads: a
            .threads
            .unwrap_or_else(crate::common::ModelArgs::default_threads),
        n_ctx: h.n_ctx,
        max_tokens: h.max_tokens,
        ..ActOptions::default()
    };
    let mut actor = Actor::load(&path, space, opts)?;
    let (mut model, mut tokens) = (0usize, 0usize);
    let mismatch = hearth_act::replay(&mut actor, &episode, |rec, _| {
        model += usize::from(rec.source == hearth_act::Source::Model);
        tokens += rec.tokens.len();
    })?;
    match mismatch {
        None => {
            println!(
                "identical: {} steps ({model} actions by the model, {tokens} tokens) replayed on {}",
                episode.steps.len(),
                hearth_engine_isa()
            );
            Ok(ExitCode::SUCCESS)
        }
        Some(m) => {
            eprintln!(
                "{}",
                crate::common::escape_for_terminal(&m.to_string(), crate::common::MAX_ECHO)
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Which kernels ran: `HEARTH_ISA`'s choice, or the CPU's best.
fn hearth_engine_isa() -> String {
    match std::env::var("HEARTH_ISA") {
        Ok(isa) if !isa.trim().is_empty() => format!("HEARTH_ISA={isa}"),
        _ => "the default kernels".into(),
    }
}
