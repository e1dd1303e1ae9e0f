//! `hearth bench MODEL`: prompt-processing and generation speed, measured the way llama.cpp's llama-bench does.
//!
//! Each test runs on a fresh cache: `--depth D` tokens are processed first (untimed), then either one batch of
//! `-p N` prompt tokens (`ppN`) or `-n N` single-token steps (`tgN`), timed. Tokens are random ids, as in
//! llama-bench, so no tokenizer is involved. One untimed warm-up run precedes the `-r` timed repetitions.
//! `docs/bench.md` shows the llama-bench command line for a side-by-side.
//!
//! `--json-schema SCHEMA.json` measures structured output instead: the same chat prompt (asking for JSON of that
//! schema) generated greedily through the batch engine, free and under the schema, in the same run; it prints both
//! generation rates, their ratio, the mean grammar-mask time per token and how many tokens the grammar forced.
//!
//! `--parallel N[,M…]` measures N greedy streams decoding together through the batch engine instead
//! ([`parallel`]), as a server with N clients runs them.
//!
//! `--lookup` measures prompt-lookup speculation instead: copy-heavy chat prompts generated greedily through the
//! batch engine with it off and on (see `bench/lookup.rs`).
//!
//! `--bandwidth` measures the machine's memory read bandwidth instead (no model): the ceiling that generation, which
//! reads every weight once per token, is compared against (see `docs/bench.md`).

mod lookup;
mod parallel;

use crate::common::{resolve_model, ModelArgs};
use anyhow::{bail, Context, Result};
use hearth_engine::{KvType, Model, SeqBatch, ThreadPool};
use std::process::ExitCode;
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A model name (e.g. smollm2-135m) or a path to a .gguf file.
    #[arg(required_unless_present = "bandwidth")]
    model: Option<String>,
    /// Prompt lengths to test, comma-separated (0: none).
    #[arg(
        short = 'p',
        long = "n-prompt",
        default_value = "512",
        value_delimiter = ','
    )]
    n_prompt: Vec<usize>,
    /// Generation lengths to test, comma-separated (0: none).
    #[arg(
        short = 'n',
        long = "n-gen",
        default_value = "128",
        value_delimiter = ','
    )]
    n_gen: Vec<usize>,
    /// Tokens already in the KV cache before each test, comma-separated.
    #[arg(
        short = 'd',
        long = "depth",
        default_value = "0",
        value_delimiter = ','
    )]
    depth: Vec<usize>,
    /// Thread counts to test, comma-separated (default: all cores).
    #[arg(short = 't', long = "threads", value_delimiter = ',')]
    threads: Vec<usize>,
    /// Timed repetitions of each test.
    #[arg(short = 'r', long = "repetitions", default_value_t = 5)]
    repetitions: usize,
    /// Prompt tokens per forward pass (llama-bench's -ub).
    #[arg(short = 'b', long = "batch", default_value_t = 512)]
    batch: usize,
    /// KV cache element type: f16, f32 or q8_0.
    #[arg(long = "kv-type", default_value = "f16")]
    kv_type: KvType,
    /// Print a JSON array (llama-bench's field names) instead of a table.
    #[arg(long)]
    json: bool,
    /// Measure generation under this JSON Schema (a file) against free generation, through the batch engine.
    #[arg(long = "json-schema", value_name = "SCHEMA.json")]
    json_schema: Option<std::path::PathBuf>,
    /// Measure N concurrent greedy streams through the batch engine (comma-separated counts; prompt `-p`,
    /// generation `-n`, each its first value) and print their aggregate speeds.
    #[arg(long, value_delimiter = ',', value_name = "N")]
    parallel: Vec<usize>,
    /// Measure prompt-lookup speculation (off against on) on copy-heavy chat prompts, through the batch engine.
    #[arg(long)]
    lookup: bool,
    /// With --lookup: most tokens proposed per step.
    #[arg(long = "draft-max", default_value_t = hearth_engine::batch::Lookup::default().max_draft, value_parser = crate::common::parse_draft_max)]
    draft_max: usize,
    /// Measure memory read bandwidth (GB/s over a buffer of this many MiB, 64 to 8192, default 1024) instead of a
    /// model.
    #[arg(long, value_name = "MIB", num_args = 0..=1, default_missing_value = "1024")]
    bandwidth: Option<usize>,
}

/// One line of the result: a test at one thread count and depth.
struct TestResult {
    n_prompt: usize,
    n_gen: usize,
    n_depth: usize,
    n_threads: usize,
    /// Seconds of each timed repetition.
    samples: Vec<f64>,
}

impl TestResult {
    fn tokens(&self) -> usize {
        self.n_prompt + self.n_gen
    }

    /// Tokens per second of each repetition.
    fn rates(&self) -> Vec<f64> {
        self.samples
            .iter()
            .map(|s| self.tokens() as f64 / s)
            .collect()
    }

    fn name(&self) -> String {
        let test = if self.n_prompt > 0 {
            format!("pp{}", self.n_prompt)
        } else {
            format!("tg{}", self.n_gen)
        };
        if self.n_depth > 0 {
            format!("{test} @ d{}", self.n_depth)
        } else {
            test
        }
    }
}

/// Mean and sample standard deviation.
fn mean_std(x: &[f64]) -> (f64, f64) {
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    if x.len() < 2 {
        return (mean, 0.0);
    }
    let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

pub fn run(a: Args) -> Result<ExitCode> {
    if a.repetitions == 0 || a.batch == 0 {
        bail!("--repetitions and --batch must be at least 1");
    }
    if let Some(mib) = a.bandwidth {
        return bandwidth(&a, mib);
    }
    let Some(model) = &a.model else {
        bail!("give a model (or --bandwidth)");
    };
    let path = resolve_model(model)?;
    let model = Model::load(&path).with_context(|| format!("cannot load {}", path.display()))?;
    if let Some(schema) = &a.json_schema {
        return constrained(&a, schema, model);
    }
    if !a.parallel.is_empty() {
        return parallel::parallel(&a, model, &a.parallel);
    }
    if a.lookup {
        return lookup::run(&a, model);
    }
    let threads = if a.threads.is_empty() {
        vec![ModelArgs::default_threads()]
    } else {
        a.threads.clone()
    };
    // Tests in llama-bench's order: every prompt length, then every generation length.
    let tests: Vec<(usize, usize)> = a
        .n_prompt
        .iter()
        .filter(|&&p| p > 0)
        .map(|&p| (p, 0))
        .chain(a.n_gen.iter().filter(|&&n| n > 0).map(|&n| (0, n)))
        .collect();
    let mut results = Vec::new();
    let mut rng = RNG_SEED;
    for &n_threads in &threads {
        if n_threads == 0 {
            bail!("--threads must be at least 1");
        }
        let pool = ThreadPool::new(n_threads);
        for &n_depth in &a.depth {
            for &(n_prompt, n_gen) in &tests {
                let n_ctx = n_depth + n_prompt + n_gen;
                if n_ctx > model.config.n_ctx_train {
                    bail!(
                        "depth {n_depth} + test {} tokens exceeds the model's context of {}",
                        n_prompt + n_gen,
                        model.config.n_ctx_train
                    );
                }
                let n_vocab = model.config.n_vocab as u64;
                let mut samples = Vec::new();
                for rep in 0..=a.repetitions {
                    let depth_tokens = random_tokens(&mut rng, n_depth, n_vocab);
                    let test_tokens = random_tokens(&mut rng, n_prompt.max(n_gen), n_vocab);
                    let mut cache = model.new_cache_typed(n_ctx, a.kv_type)?;
                    process(&model, &pool, &mut cache, &depth_tokens, a.batch)?;
                    let t0 = Instant::now();
                    if n_prompt > 0 {
                        process(&model, &pool, &mut cache, &test_tokens, a.batch)?;
                    } else {
                        for t in &test_tokens {
                            process(&model, &pool, &mut cache, std::slice::from_ref(t), 1)?;
                        }
                    }
                    // Repetition 0 warms caches and page tables up, as llama-bench's warm-up run does.
                    if rep > 0 {
                        samples.push(t0.elapsed().as_secs_f64());
                    }
                }
                let r = TestResult {
                    n_prompt,
                    n_gen,
                    n_depth,
                    n_threads,
                    samples,
                };
                if !a.json {
                    print_row(&r, &path, results.is_empty());
                }
                results.push(r);
            }
        }
    }
    if a.json {
        print_json(&results, &path, &model, a.kv_type)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Feeds `tokens` through the model `batch` at a time, asking for the last token's logits as generation would.
fn process(
    model: &Model,
    pool: &ThreadPool,
    cache: &mut hearth_engine::KvCache,
    tokens: &[u32],
    batch: usize,
) -> Result<()> {
    for chunk in tokens.chunks(batch) {
        model.forward(
            pool,
            &mut [SeqBatch {
                cache,
                tokens: chunk,
                logits_from: chunk.len() - 1,
            }],
        )?;
    }
    Ok(())
}

fn print_row(r: &TestResult, path: &std::path::Path, header: bool) {
    if header {
        println!("| model | threads | test | t/s |");
        println!("| --- | ---: | ---: | ---: |");
    }
    let (avg, std) = mean_std(&r.rates());
    let name = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    println!(
        "| {name} | {} | {} | {avg:.2} ± {std:.2} |",
        r.n_threads,
        r.name()
    );
}

fn print_json(
    results: &[TestResult],
    path: &std::path::Path,
    model: &Model,
    kv_type: KvType,
) -> Result<()> {
    let rows: Vec<serde_json::Value> = results
        .iter()
        .map(|r| {
            let ns: Vec<u64> = r.samples.iter().map(|s| (s * 1e9) as u64).collect();
            let ns_f: Vec<f64> = ns.iter().map(|&v| v as f64).collect();
            let (avg_ns, stddev_ns) = mean_std(&ns_f);
            let (avg_ts, stddev_ts) = mean_std(&r.rates());
            serde_json::json!({
                "model_filename": path.display().to_string(),
                "model_type": model.config.arch,
                "model_size": model.gguf.bytes().len(),
                "n_threads": r.n_threads,
                "type_k": kv_type.name(),
                "type_v": kv_type.name(),
                "n_prompt": r.n_prompt,
                "n_gen": r.n_gen,
                "n_depth": r.n_depth,
                "avg_ns": avg_ns as u64,
                "stddev_ns": stddev_ns as u64,
                "avg_ts": avg_ts,
                "stddev_ts": stddev_ts,
                "samples_ns": ns,
                "samples_ts": r.rates(),
            })
        })
        .collect();
    println!("{}", serde_json::to_string_pretty(&rows)?);
    Ok(())
}

/// `--json-schema`: generation under a schema against free generation (see the module doc).
fn constrained(a: &Args, schema_path: &std::path::Path, model: Model) -> Result<ExitCode> {
    use hearth_constraint::{Grammar, Guide};
    use hearth_engine::batch::{BatchConfig, Constraint, Engine, Event, Request};
    use std::sync::{mpsc, Arc};

    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(schema_path)
            .with_context(|| format!("cannot read {}", schema_path.display()))?,
    )
    .with_context(|| format!("{} is not JSON", schema_path.display()))?;
    let n_gen = a.n_gen.iter().copied().find(|&n| n > 0).unwrap_or(128);
    let tok = Arc::new(hearth_text::Tokenizer::from_gguf(&model.gguf)?);
    let template = hearth_text::ChatTemplate::from_gguf_with(&model.gguf, &tok)?;
    let ask = format!(
        "Answer with a JSON document that follows this JSON Schema, with realistic values and long lists:\n{schema}"
    );
    let prompt = tok.encode(
        &template.render(&[hearth_text::ChatMessage::new("user", ask)], true)?,
        false,
        true,
    )?;
    let t = Instant::now();
    let guide = Guide::new(tok.clone(), model.config.n_vocab)?;
    eprintln!(
        "vocabulary trie and parser factory: {:.0} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    let t = Instant::now();
    let grammar = guide.compile(&Grammar::JsonSchema(schema))?;
    eprintln!(
        "schema compiled (and first mask): {:.2} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    let n_threads = a
        .threads
        .first()
        .copied()
        .unwrap_or_else(ModelArgs::default_threads);
    let engine = Engine::start(
        Arc::new(model),
        BatchConfig {
            n_threads,
            n_ctx: prompt.len() + n_gen + 1,
            prefix_cache_bytes: 0,
            kv_type: a.kv_type,
            ..BatchConfig::default()
        },
    );
    // One request: (tokens generated, seconds from the first token to the end).
    let generate = |constraint: Option<Box<dyn Constraint>>| -> Result<(usize, f64)> {
        let (tx, rx) = mpsc::channel();
        let stop_ids = if constraint.is_some() {
            tok.eog_ids().to_vec()
        } else {
            Vec::new()
        };
        engine.submit(
            Request {
                prompt: prompt.clone(),
                max_tokens: n_gen,
                stop_ids,
                constraint,
                ..Default::default()
            },
            Box::new(tx),
        )?;
        let mut first = None;
        let mut n = 0;
        for ev in rx {
            match ev {
                Event::Token(_) => {
                    n += 1;
                    first.get_or_insert_with(Instant::now);
                }
                Event::Done { .. } => break,
                Event::Failed(m) => bail!("generation failed: {m}"),
            }
        }
        let secs = first.map_or(0.0, |f| f.elapsed().as_secs_f64());
        Ok((n, secs))
    };
    let mut free = Vec::new();
    let mut guided = Vec::new();
    let mut produced = 0;
    let before = engine.stats();
    for rep in 0..=a.repetitions {
        let (n, s) = generate(None)?;
        let (m, t) = generate(Some(Box::new(grammar.clone())))?;
        if rep > 0 {
            free.push((n.saturating_sub(1)) as f64 / s.max(1e-9));
            guided.push((m.saturating_sub(1)) as f64 / t.max(1e-9));
            produced = m;
        }
    }
    let after = engine.stats();
    let masks = after.masks - before.masks;
    let mask_us = (after.mask_nanos - before.mask_nanos) as f64 / masks.max(1) as f64 / 1e3;
    let forced = after.forced_tokens - before.forced_tokens;
    let (fa, fs) = mean_std(&free);
    let (ga, gs) = mean_std(&guided);
    let name = path_name(a.model.as_deref().unwrap_or_default());
    println!("| model | threads | test | t/s |");
    println!("| --- | ---: | ---: | ---: |");
    println!("| {name} | {n_threads} | tg{n_gen} (engine, free) | {fa:.2} ± {fs:.2} |");
    println!(
        "| {name} | {n_threads} | tg{n_gen} json-schema ({produced} tokens) | {ga:.2} ± {gs:.2} |"
    );
    println!(
        "constrained / free: {:.3}; mask {mask_us:.1} us per token ({masks} masks, beside the forward pass); \
         {forced} tokens forced",
        ga / fa
    );
    Ok(ExitCode::SUCCESS)
}

/// Bytes each task of the bandwidth test reads (a contiguous span, summed as 64-bit words).
const READ_SPAN: usize = 1 << 20;
/// Parts of a span read side by side.
const READ_STREAMS: usize = 4;

/// `--bandwidth MIB`: reads a buffer of `mib` MiB (much larger than any cache) on the compute pool, every thread
/// summing whole spans of it, `-r` times after an untimed pass; prints GB/s (10^9 bytes per second) per thread count.
fn bandwidth(a: &Args, mib: usize) -> Result<ExitCode> {
    if !(64..=8192).contains(&mib) {
        bail!("--bandwidth takes 64 to 8192 MiB");
    }
    let words_per_span = READ_SPAN / 8;
    let n_spans = mib * (1 << 20) / READ_SPAN;
    // Written in full once, so every page is resident before timing (a fresh allocation would be zero pages).
    let n_words = n_spans * words_per_span;
    let mut buf: Vec<u64> = Vec::new();
    buf.try_reserve_exact(n_words)
        .with_context(|| format!("cannot allocate {mib} MiB for the bandwidth test"))?;
    buf.extend(0..n_words as u64);
    let threads = if a.threads.is_empty() {
        vec![ModelArgs::default_threads()]
    } else {
        a.threads.clone()
    };
    let mut rows = Vec::new();
    for &n_threads in &threads {
        if n_threads == 0 {
            bail!("--threads must be at least 1");
        }
        let pool = ThreadPool::new(n_threads);
        let mut sums = vec![0u64; n_spans];
        let mut gbs = Vec::new();
        for rep in 0..=a.repetitions {
            let t0 = Instant::now();
            pool.for_each_row(&mut sums, 1, |i, s| {
                // The span's quarters read side by side, four independent sums each, so the loop is bound by loads,
                // not by an add chain, and keeps several streams in flight as the matmul kernels do (they read
                // 2 to 4 panels at once): one stream per core measured 12.5 GB/s on a VM where decoding read 20.
                let span = &buf[i * words_per_span..][..words_per_span];
                let quarter = words_per_span / READ_STREAMS;
                let mut acc = [[0u64; 4]; READ_STREAMS];
                for k in (0..quarter).step_by(4) {
                    for (st, a) in acc.iter_mut().enumerate() {
                        let w = &span[st * quarter + k..][..4];
                        for (a, &x) in a.iter_mut().zip(w) {
                            *a = a.wrapping_add(x);
                        }
                    }
                }
                s[0] = acc.iter().flatten().fold(0, |x, &y| x.wrapping_add(y));
            });
            let secs = t0.elapsed().as_secs_f64();
            std::hint::black_box(&sums);
            if rep > 0 {
                gbs.push((n_spans * READ_SPAN) as f64 / secs / 1e9);
            }
        }
        // The sum of 0..n is known: a check that every span was read.
        let n = n_words as u64;
        let want = (n / 2).wrapping_mul(n - 1);
        if sums.iter().fold(0u64, |x, &y| x.wrapping_add(y)) != want {
            bail!("bandwidth test: wrong sum (a span was not read)");
        }
        rows.push((n_threads, gbs));
    }
    if a.json {
        let out: Vec<serde_json::Value> = rows
            .iter()
            .map(|(t, g)| {
                let (avg, std) = mean_std(g);
                serde_json::json!({"test": "read", "bytes": n_spans * READ_SPAN, "n_threads": t,
                    "avg_gbs": avg, "stddev_gbs": std, "samples_gbs": g})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("| memory | threads | test | GB/s |");
        println!("| --- | ---: | ---: | ---: |");
        for (t, g) in &rows {
            let (avg, std) = mean_std(g);
            println!("| {mib} MiB | {t} | read | {avg:.2} ± {std:.2} |");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn path_name(model: &str) -> String {
    std::path::Path::new(model)
        .file_name()
        .map_or_else(|| model.to_string(), |n| n.to_string_lossy().into_owned())
}

/// The xorshift state the random token ids start from (llama-bench's tests use random ids too).
const RNG_SEED: u64 = 0x2545_f491_4f6c_dd1d;

/// `n` random token ids below `n_vocab`, from the xorshift state `rng`.
fn random_tokens(rng: &mut u64, n: usize, n_vocab: u64) -> Vec<u32> {
    (0..n)
        .map(|_| {
            *rng ^= *rng << 13;
            *rng ^= *rng >> 7;
            *rng ^= *rng << 17;
            (*rng % n_vocab) as u32
        })
        .collect()
}
