//! `hearth bench MODEL --parallel N[,M…]`: N greedy streams at once through the batch engine, the way a server
//! with N clients runs them (llama.cpp's `llama-batched-bench` measures the same thing).
//!
//! Every stream gets its own random prompt of `-p` tokens (the first value; no prefix is shared, so the prefix
//! cache plays no part) and generates exactly `-n` tokens (no end-of-generation ids). All N are submitted together;
//! the table shows, per N:
//! - `pp`: prompt tokens per second, N·p over the time from the submission to the last stream's first token;
//! - `tg`: generated tokens per second while all N streams decode together, counted from the last stream's first
//!   token to the first stream's end (the steady state, where each step decodes N tokens; measured in whole steps);
//! - `total`: N·(p+n) over the whole run.
//!
//! Compare `tg` at N against N = 1 for the gain batching gives (issue 18's serving target is ≥ 3× at N = 16).

use super::{mean_std, path_name, Args};
use anyhow::{bail, Result};
use hearth_engine::batch::{BatchConfig, Engine, Event, Flow, Request, Sink};
use hearth_engine::Model;
use std::process::ExitCode;
use std::sync::{mpsc, Arc};
use std::time::Instant;

/// Forwards a stream's events, tagged with its index and the time they left the engine thread.
struct Tagged {
    stream: usize,
    tx: mpsc::Sender<(usize, Instant, Event)>,
}

impl Sink for Tagged {
    fn send(&mut self, event: Event) -> Flow {
        match self.tx.send((self.stream, Instant::now(), event)) {
            Ok(()) => Flow::Continue,
            Err(_) => Flow::Gone,
        }
    }
}

/// One run's timings in seconds: (to the last first token, the all-decoding window, the whole run) and the tokens
/// generated in the window.
struct Run {
    prefill_s: f64,
    window_s: f64,
    window_tokens: usize,
    total_s: f64,
}

pub fn parallel(a: &Args, model: Model, streams: &[usize]) -> Result<ExitCode> {
    let n_prompt = a.n_prompt.first().copied().unwrap_or(0).max(1);
    let n_gen = a.n_gen.first().copied().unwrap_or(0);
    if n_gen < 2 {
        bail!("--parallel needs -n of at least 2 generated tokens per stream");
    }
    if streams.contains(&0) {
        bail!("--parallel counts must be at least 1");
    }
    let n_threads = a
        .threads
        .first()
        .copied()
        .unwrap_or_else(crate::common::ModelArgs::default_threads);
    let n_vocab = model.config.n_vocab as u64;
    let max_streams = streams.iter().copied().max().unwrap_or(1);
    let engine = Engine::start(
        Arc::new(model),
        BatchConfig {
            n_threads,
            n_ctx: n_prompt + n_gen,
            max_running: max_streams,
            max_queued: max_streams,
            prefill_chunk: a.batch,
            prefix_cache_bytes: 0,
            kv_type: a.kv_type,
            // Random ids repeat no n-gram worth proposing; plain decoding is what this measures.
            lookup: hearth_engine::batch::Lookup::OFF,
        },
    );
    let mut rng = super::RNG_SEED;
    let mut random_prompt = || super::random_tokens(&mut rng, n_prompt, n_vocab);
    let name = path_name(a.model.as_deref().unwrap_or_default());
    println!("| model | threads | streams | test | pp t/s | tg t/s | total t/s | tg vs 1 stream |");
    println!("| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: |");
    let mut tg_one = None;
    for &n in streams {
        let mut runs = Vec::new();
        // Repetition 0 warms up, as in the other tests.
        for rep in 0..=a.repetitions {
            let run = one_run(&engine, n, n_gen, &mut random_prompt)?;
            if rep > 0 {
                runs.push(run);
            }
        }
        let rate = |f: &dyn Fn(&Run) -> f64| -> (f64, f64) {
            mean_std(&runs.iter().map(f).collect::<Vec<_>>())
        };
        let (pp, _) = rate(&|r| (n * n_prompt) as f64 / r.prefill_s);
        let (tg, tg_sd) = rate(&|r| r.window_tokens as f64 / r.window_s);
        let (total, _) = rate(&|r| (n * (n_prompt + n_gen)) as f64 / r.total_s);
        if n == 1 {
            tg_one = Some(tg);
        }
        let gain = tg_one.map_or("".to_string(), |one| format!("{:.2}x", tg / one));
        println!(
            "| {name} | {n_threads} | {n} | pp{n_prompt}+tg{n_gen} | {pp:.1} | {tg:.1} ± {tg_sd:.1} | {total:.1} | {gain} |"
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Submits `n` streams at once and follows them to the end.
fn one_run(
    engine: &Engine,
    n: usize,
    n_gen: usize,
    random_prompt: &mut dyn FnMut() -> Vec<u32>,
) -> Result<Run> {
    let (tx, rx) = mpsc::channel();
    let t0 = Instant::now();
    for stream in 0..n {
        let req = Request {
            prompt: random_prompt(),
            max_tokens: n_gen,
            ..Default::default()
        };
        let sink = Tagged {
            stream,
            tx: tx.clone(),
        };
        engine.submit(req, Box::new(sink))?;
    }
    drop(tx);
    // Per stream: the times of its tokens.
    let mut times: Vec<Vec<Instant>> = vec![Vec::with_capacity(n_gen); n];
    let mut done = 0;
    let mut end = t0;
    for (stream, at, ev) in rx {
        match ev {
            Event::Token(_) => times[stream].push(at),
            Event::Done { usage, .. } => {
                if usage.completion_tokens != n_gen {
                    bail!(
                        "stream {stream} generated {} tokens, not {n_gen}",
                        usage.completion_tokens
                    );
                }
                done += 1;
                end = end.max(at);
            }
            Event::Failed(m) => bail!("stream {stream} failed: {m}"),
        }
    }
    if done != n {
        bail!("{} of {n} streams ended", done);
    }
    // The stream that started decoding last, and the first stream to end: between the two, every step decodes all
    // n streams. Both ends of the window are that last stream's own token times, so it spans whole steps.
    let last = (0..n).max_by_key(|&i| times[i][0]).unwrap_or(0);
    let first_end = times.iter().map(|t| t[t.len() - 1]).min().unwrap_or(end);
    let steps = times[last].iter().filter(|&&x| x <= first_end).count();
    if steps < 2 {
        bail!("the streams never all decoded together (raise -n)");
    }
    let (from, to) = (times[last][0], times[last][steps - 1]);
    let window_tokens = (steps - 1) * n;
    Ok(Run {
        prefill_s: (from - t0).as_secs_f64(),
        window_s: (to - from).as_secs_f64(),
        window_tokens,
        total_s: (end - t0).as_secs_f64(),
    })
}
