//! `hearth-dora-node` (also run as `hearth dora-node`): hearth deciding actions inside a dora-rs dataflow. Every
//! setting comes from the node's `args` or, as dora users expect, its `env` in the dataflow YAML.

use anyhow::{bail, Context, Result};
use clap::Parser;
use hearth_act::{ActOptions, ActionSpace, Actor, EpisodeHeader, EpisodeLog, Sampling};
use hearth_dora_node::{serve, ActPlanner};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "hearth dora-node",
    version,
    about = "Decide a valid action by a deadline for each world state."
)]
struct Args {
    /// A model name from the store, or a GGUF file.
    #[arg(env = "HEARTH_MODEL")]
    model: String,
    /// The action space (JSON: instruction, skills, fallback; see `hearth act`).
    #[arg(long, env = "HEARTH_ACTIONS")]
    actions: PathBuf,
    /// Each decision's deadline, from taking its world state off the queue.
    #[arg(long, env = "HEARTH_DEADLINE_MS", default_value_t = 2000)]
    deadline_ms: u64,
    /// Compute threads (default: one per core). On a machine shared with a control loop, fewer.
    #[arg(long, env = "HEARTH_THREADS")]
    threads: Option<usize>,
    /// Scheduling niceness, 0 to 19 (higher yields the CPU to the robot's own processes first).
    #[arg(long, env = "HEARTH_NICE", default_value_t = 0)]
    nice: i32,
    /// Scheduling policy of every hearth thread: `other` (the default, with --nice), `batch`, or `idle` (Linux's
    /// SCHED_IDLE: the model runs only on CPU time nothing else wants, and a waking control loop preempts it at
    /// once, however short its slice; the deadline still gives an action, the fallback when the model was starved).
    #[arg(long, env = "HEARTH_SCHED", default_value = "other", value_parser = ["other", "batch", "idle"])]
    sched: String,
    /// Write the episode (everything `hearth replay` needs) to this JSONL file.
    #[arg(long, env = "HEARTH_LOG")]
    log: Option<PathBuf>,
    /// Sampling seed (step k uses seed + k).
    #[arg(long, env = "HEARTH_SEED", default_value_t = 0)]
    seed: u64,
    /// Sampling temperature; 0 is greedy.
    #[arg(long, env = "HEARTH_TEMP", default_value_t = 0.0)]
    temp: f32,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hearth dora-node: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<()> {
    // First, before dora or the engine start any thread: threads inherit their creator's niceness.
    set_nice(args.nice)?;
    set_policy(&args.sched)?;
    let model = resolve_model(&args.model)?;
    let space = ActionSpace::load(&args.actions)?;
    let mut opts = ActOptions {
        sampling: Sampling {
            temperature: args.temp,
            seed: args.seed,
            ..Sampling::default()
        },
        ..ActOptions::default()
    };
    if let Some(n) = args.threads {
        if n == 0 {
            bail!("--threads must be at least 1");
        }
        opts.n_threads = n;
    }
    let actor = Actor::load(&model, space, opts)?;
    let log = match &args.log {
        Some(path) => {
            let header = EpisodeHeader::for_actor(&actor, &model, Some(args.deadline_ms as f64))?;
            Some((EpisodeLog::create(path, &header)?, path.clone()))
        }
        None => None,
    };
    let mut planner = ActPlanner::new(actor, log);
    // After the model is loaded, so that the first world state is not kept waiting by the load.
    let (mut node, mut events) = dora_node_api::DoraNode::init_from_env()
        .map_err(|e| anyhow::anyhow!("cannot start the dora node: {e}"))?;
    let stats = serve(
        &mut node,
        &mut events,
        &mut planner,
        Duration::from_millis(args.deadline_ms),
    )?;
    eprintln!(
        "hearth dora-node: {} decisions, {} world states dropped while deciding",
        stats.decisions, stats.dropped_frames
    );
    Ok(())
}

/// A store name (`smollm2-135m`) or a path, as `hearth run` takes it.
fn resolve_model(name: &str) -> Result<PathBuf> {
    let store = hearth_store::Store::open_default()?;
    let resolved = store
        .resolve(name)
        .with_context(|| format!("model {name:?}"))?;
    match resolved.paths.as_slice() {
        [one] => Ok(one.clone()),
        parts => bail!(
            "model {name:?} is split into {} files; merge them first",
            parts.len()
        ),
    }
}

/// Sets this thread's scheduling policy (inherited by every thread it starts afterwards). Lowering it to
/// SCHED_BATCH or SCHED_IDLE needs no privilege.
fn set_policy(sched: &str) -> Result<()> {
    let policy = match sched {
        "batch" => libc::SCHED_BATCH,
        "idle" => libc::SCHED_IDLE,
        _ => return Ok(()),
    };
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: sched_setscheduler reads one valid `sched_param`; pid 0 is the calling thread.
    let rc = unsafe { libc::sched_setscheduler(0, policy, &param) };
    if rc != 0 {
        bail!(
            "cannot set the scheduling policy {sched}: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// Lowers this thread's scheduling priority (and that of every thread it starts afterwards).
fn set_nice(nice: i32) -> Result<()> {
    if !(0..=19).contains(&nice) {
        bail!("--nice must be 0 to 19, not {nice}");
    }
    if nice == 0 {
        return Ok(());
    }
    // SAFETY: setpriority only reads its integer arguments; `who` 0 is the calling thread on Linux.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) };
    if rc != 0 {
        bail!(
            "cannot set niceness {nice}: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}
