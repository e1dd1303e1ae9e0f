//! `hearth act MODEL --actions ACTIONS.json --deadline-ms D`: one world state (a JSON object) per line on stdin,
//! one decision per line on stdout — the model's complete action or the action space's fallback, always by the
//! deadline (hearth-act does the deciding). `--log` writes the episode for `hearth replay`; `--latest-only` decides
//! only on the newest world state when several came while the model was busy.
//!
//! `elapsed_ms` runs from reading the line to writing the decision. A line that is not a JSON object, or a world
//! state without a path the action space points into, gets the fallback with an `error` (also on stderr), and the
//! next line is read.

use crate::common::{resolve_model, ModelArgs};
use anyhow::{Context, Result};
use hearth_act::{
    ActOptions, ActionSpace, Actor, Decision, EpisodeHeader, EpisodeLog, Sampling, Source,
};
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Bytes a world-state line may have; a longer one is refused (and read past) without being held in memory.
const MAX_LINE: usize = 1 << 20;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// The action space: instruction, skills with JSON Schema parameters, fallback (docs/act.md).
    #[arg(long, value_name = "ACTIONS.json")]
    actions: PathBuf,
    /// Each decision's deadline, from reading its line.
    #[arg(long = "deadline-ms", value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    deadline_ms: u64,
    /// Write the episode (model sha256, action space, world states, tokens, actions) to this JSONL file.
    #[arg(long, value_name = "EPISODE.jsonl")]
    log: Option<PathBuf>,
    /// Sampling seed (step k uses seed + k).
    #[arg(short = 's', long, default_value_t = 0)]
    seed: u64,
    /// Sampling temperature; 0 (the default) is greedy.
    #[arg(long = "temp", default_value_t = 0.0)]
    temperature: f32,
    /// Decide only on the newest world state: lines that came while the model was busy are skipped (and counted).
    #[arg(long)]
    latest_only: bool,
    /// Most tokens an action may take before it falls back.
    #[arg(long = "max-tokens", default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=65_536))]
    max_tokens: u64,
    /// Context size in tokens (instruction, skills, world state and action).
    #[arg(short = 'c', long = "ctx-size", default_value_t = 4096, value_parser = crate::common::parse_ctx_size)]
    ctx_size: usize,
    #[command(flatten)]
    lookup: crate::common::LookupArgs,
}

pub fn run(a: Args) -> Result<ExitCode> {
    let space = ActionSpace::load(&a.actions)?;
    let path = resolve_model(&a.model.model)?;
    let opts = ActOptions {
        sampling: Sampling {
            temperature: a.temperature,
            seed: a.seed,
            ..Sampling::default()
        },
        n_threads: a.model.n_threads(),
        n_ctx: a.ctx_size,
        max_tokens: a.max_tokens as usize,
        kv_type: a.model.kv_type,
        lookup: a.lookup.lookup(),
    };
    let t0 = Instant::now();
    let mut actor = Actor::load(&path, space, opts)?;
    eprintln!(
        "loaded {} in {:.2}s; instruction and skills: {} tokens (cached); deadline {} ms",
        path.display(),
        t0.elapsed().as_secs_f64(),
        actor.prefix_tokens(),
        a.deadline_ms
    );
    let mut log = match &a.log {
        Some(p) => {
            let header = EpisodeHeader::for_actor(&actor, &path, Some(a.deadline_ms as f64))?;
            Some(EpisodeLog::create(p, &header)?)
        }
        None => None,
    };
    let deadline = Duration::from_millis(a.deadline_ms);
    let mut tally = Tally::default();
    let mut out = std::io::stdout().lock();
    let mut decide = |line: Line, skipped: Option<u64>| -> Result<()> {
        let mut d = match &line.text {
            Ok(text) => actor.decide_line(text, line.read + deadline)?,
            Err(why) => actor.reject(why),
        };
        d.skipped = skipped;
        d.deadline_ms = a.deadline_ms as f64;
        d.elapsed_ms = ms(line.read.elapsed());
        let text = serde_json::to_string(&d)?;
        writeln!(out, "{text}")?;
        out.flush()?;
        if let Some(e) = &d.error {
            eprintln!(
                "step {}: {}",
                d.step,
                crate::common::escape_for_terminal(e, crate::common::MAX_ECHO)
            );
        }
        tally.add(&d);
        if let Some(log) = log.as_mut() {
            log.record(&d)?;
        }
        Ok(())
    };
    if a.latest_only {
        let latest = Latest::spawn();
        while let Some((line, skipped)) = latest.take() {
            decide(line, Some(skipped))?;
        }
    } else {
        let mut stdin = std::io::stdin().lock();
        while let Some(line) = read_line(&mut stdin).context("cannot read stdin")? {
            decide(line, None)?;
        }
    }
    eprintln!("{}", tally.summary());
    Ok(ExitCode::SUCCESS)
}

/// A line read from stdin: its text (or why it cannot be used) and when it was read.
struct Line {
    text: std::result::Result<String, String>,
    read: Instant,
}

/// The next non-blank line, at most [`MAX_LINE`] bytes (a longer one is read past and refused); None at the end.
fn read_line(r: &mut impl BufRead) -> std::io::Result<Option<Line>> {
    loop {
        let mut buf = Vec::new();
        let n = std::io::Read::take(&mut *r, MAX_LINE as u64 + 1).read_until(b'\n', &mut buf)?;
        if n == 0 {
            return Ok(None);
        }
        let read = Instant::now();
        if buf.len() > MAX_LINE && buf.last() != Some(&b'\n') {
            // Skip the rest of the line without keeping it.
            let mut rest = 0usize;
            loop {
                let chunk = r.fill_buf()?;
                if chunk.is_empty() {
                    break;
                }
                match chunk.iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        r.consume(i + 1);
                        break;
                    }
                    None => {
                        let k = chunk.len();
                        rest += k;
                        r.consume(k);
                    }
                }
            }
            let why = format!(
                "the line is longer than {MAX_LINE} bytes ({} or more)",
                buf.len() + rest
            );
            return Ok(Some(Line {
                text: Err(why),
                read,
            }));
        }
        let text = match String::from_utf8(buf) {
            Ok(s) => Ok(s.trim_end_matches(['\n', '\r']).to_string()),
            Err(e) => Err(format!("the line is not UTF-8 text: {}", e.utf8_error())),
        };
        if matches!(&text, Ok(s) if s.trim().is_empty()) {
            continue;
        }
        return Ok(Some(Line { text, read }));
    }
}

/// `--latest-only`: a thread reads stdin and keeps only the newest line; taking it says how many were dropped.
struct Latest {
    slot: Arc<(Mutex<Slot>, Condvar)>,
}

#[derive(Default)]
struct Slot {
    newest: Option<Line>,
    skipped: u64,
    ended: bool,
}

impl Latest {
    fn spawn() -> Latest {
        let slot = Arc::new((Mutex::new(Slot::default()), Condvar::new()));
        let writer = slot.clone();
        std::thread::spawn(move || {
            let mut stdin = std::io::stdin().lock();
            loop {
                let line = read_line(&mut stdin).unwrap_or_else(|e| {
                    eprintln!("error: cannot read stdin: {e}");
                    None
                });
                let (lock, cv) = &*writer;
                let Ok(mut s) = lock.lock() else { return };
                match line {
                    Some(l) => {
                        if s.newest.replace(l).is_some() {
                            s.skipped += 1;
                        }
                    }
                    None => s.ended = true,
                }
                cv.notify_one();
                if s.ended {
                    return;
                }
            }
        });
        Latest { slot }
    }

    /// The newest line and how many were skipped before it; None once stdin has ended and all is taken.
    fn take(&self) -> Option<(Line, u64)> {
        let (lock, cv) = &*self.slot;
        let mut s = lock.lock().ok()?;
        loop {
            if let Some(l) = s.newest.take() {
                return Some((l, std::mem::take(&mut s.skipped)));
            }
            if s.ended {
                return None;
            }
            s = cv.wait(s).ok()?;
        }
    }
}

/// Counts for the closing summary on stderr.
#[derive(Default)]
struct Tally {
    decisions: u64,
    model: u64,
    skipped: u64,
    errors: u64,
    over: Vec<f64>,
}

impl Tally {
    fn add(&mut self, d: &Decision) {
        self.decisions += 1;
        self.model += u64::from(d.source == Source::Model);
        self.skipped += d.skipped.unwrap_or(0);
        self.errors += u64::from(d.error.is_some());
        self.over.push(d.elapsed_ms - d.deadline_ms);
    }

    fn summary(&self) -> String {
        let mut over = self.over.clone();
        over.sort_by(f64::total_cmp);
        let p99 = over
            .get(((over.len() as f64 * 0.99).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or(0.0);
        format!(
            "{} decisions: {} by the model, {} fallbacks ({} for bad input); {} world states skipped; elapsed - \
             deadline at p99: {p99:.2} ms",
            self.decisions,
            self.model,
            self.decisions - self.model,
            self.errors,
            self.skipped
        )
    }
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e5).round() / 100.0
}
