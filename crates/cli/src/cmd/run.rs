//! `hearth run MODEL [PROMPT]`: one answer through the chat template, an interactive chat without a prompt, or
//! plain completion with `--raw`. Only generated text goes to stdout; logs and timings go to stderr.

use crate::common::{Loaded, ModelArgs};
use anyhow::{bail, Result};
use hearth_engine::{generate, Finish, GenerateOptions, SamplingParams, Session, Step};
use hearth_text::{ChatMessage, Detokenizer, ReasoningPart, ReasoningSplitter};
use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// The prompt; without one, an interactive chat starts.
    prompt: Option<String>,
    /// Plain completion of the prompt, no chat template.
    #[arg(long)]
    raw: bool,
    /// A system message for chat.
    #[arg(long)]
    system: Option<String>,
    /// Most tokens to generate (default: until the model ends its turn or the context is full).
    #[arg(short = 'n', long = "max-tokens")]
    max_tokens: Option<usize>,
    /// Context size in tokens.
    #[arg(short = 'c', long = "ctx-size", default_value_t = 4096, value_parser = crate::common::parse_ctx_size)]
    ctx_size: usize,
    /// Sampling temperature; 0 is greedy.
    #[arg(long = "temp", default_value_t = 0.8)]
    temperature: f32,
    #[arg(long, default_value_t = 40)]
    top_k: usize,
    #[arg(long, default_value_t = 0.95)]
    top_p: f32,
    #[arg(long, default_value_t = 0.05)]
    min_p: f32,
    #[arg(long, default_value_t = 1.0)]
    repeat_penalty: f32,
    #[arg(long, default_value_t = 64)]
    repeat_last_n: usize,
    /// Random seed (default: a new one each run).
    #[arg(short = 's', long)]
    seed: Option<u64>,
    /// With --raw --json: report the top K log-probabilities of every step.
    #[arg(long)]
    logprobs: Option<usize>,
    /// With --raw: print one JSON object (prompt ids, and each step's id and log-probabilities) instead of text.
    #[arg(long)]
    json: bool,
    /// Reasoning models (DeepSeek-R1, Qwen3): don't show the `<think>` part of answers (shown on stderr otherwise).
    #[arg(long)]
    hide_reasoning: bool,
}

impl Args {
    fn sampling(&self) -> SamplingParams {
        let seed = self.seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        });
        SamplingParams {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            repeat_last_n: self.repeat_last_n,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            seed,
        }
    }
}

pub fn run(a: Args) -> Result<ExitCode> {
    if a.json && !a.raw {
        bail!("--json needs --raw (it reports plain completion steps)");
    }
    a.sampling().validate()?;
    let t0 = Instant::now();
    let loaded = Loaded::open(&a.model.model)?;
    let pool = a.model.pool()?;
    let n_ctx = loaded.n_ctx(a.ctx_size);
    loaded.check_memory(n_ctx, &a.model)?;
    eprintln!(
        "loaded {} ({}, {} layers) in {:.2}s; context {n_ctx}, {} threads",
        loaded.path.display(),
        loaded.model.config.arch,
        loaded.model.config.n_layer,
        t0.elapsed().as_secs_f64(),
        pool.n_threads()
    );
    let mut session = Session::with_cache(loaded.model.new_cache_typed(n_ctx, a.model.kv_type)?);
    let opts = GenerateOptions {
        max_tokens: a.max_tokens.unwrap_or(usize::MAX),
        sampling: a.sampling(),
        stop_ids: loaded.tokenizer.eog_ids().to_vec(),
        top_logprobs: if a.json {
            Some(a.logprobs.unwrap_or(0))
        } else {
            None
        },
    };
    if a.raw {
        let Some(prompt) = &a.prompt else {
            bail!("--raw needs a prompt")
        };
        let ids = loaded.tokenizer.encode(prompt, true, true)?;
        if a.json {
            return raw_json(&loaded, &pool, &mut session, &ids, &opts);
        }
        stream(&loaded, &pool, &mut session, &ids, &opts, Output::Raw)?;
        return Ok(ExitCode::SUCCESS);
    }
    let template = loaded.chat_template()?;
    let mut messages = Vec::new();
    if let Some(s) = &a.system {
        messages.push(ChatMessage {
            role: "system".into(),
            content: s.clone(),
        });
    }
    if let Some(prompt) = &a.prompt {
        messages.push(ChatMessage {
            role: "user".into(),
            content: prompt.clone(),
        });
        let rendered = template.render(&messages, true)?;
        let ids = loaded.tokenizer.encode(&rendered, false, true)?;
        let output = chat_output(&loaded, &rendered, a.hide_reasoning);
        stream(&loaded, &pool, &mut session, &ids, &opts, output)?;
        return Ok(ExitCode::SUCCESS);
    }
    // Interactive chat: the history grows; the session reuses the KV of everything already read.
    let mut rl = rustyline::DefaultEditor::new()?;
    eprintln!("chat with {} — /bye or Ctrl-D to leave", a.model.model);
    loop {
        let line = match rl.readline(">>> ") {
            Ok(l) => l,
            Err(
                rustyline::error::ReadlineError::Eof | rustyline::error::ReadlineError::Interrupted,
            ) => break,
            Err(e) => return Err(e.into()),
        };
        let line = line.trim();
        if line == "/bye" {
            break;
        }
        if line.is_empty() {
            continue;
        }
        let _ = rl.add_history_entry(line);
        messages.push(ChatMessage {
            role: "user".into(),
            content: line.to_string(),
        });
        let rendered = template.render(&messages, true)?;
        let ids = loaded.tokenizer.encode(&rendered, false, true)?;
        let output = chat_output(&loaded, &rendered, a.hide_reasoning);
        let answer = stream(&loaded, &pool, &mut session, &ids, &opts, output)?;
        messages.push(ChatMessage {
            role: "assistant".into(),
            content: answer,
        });
    }
    Ok(ExitCode::SUCCESS)
}

/// How generated text is shown.
enum Output {
    /// Exactly the generated text on stdout.
    Raw,
    /// A chat answer: its line ended; a reasoning model's thinking split off, to stderr or hidden.
    Chat {
        reasoning: Option<ReasoningSplitter>,
        hide_reasoning: bool,
    },
}

/// Chat output for a model: reasoning is split off when the vocabulary has a `<think>` token.
fn chat_output(loaded: &Loaded, rendered_prompt: &str, hide_reasoning: bool) -> Output {
    let reasoning = loaded.tokenizer.token_id("<think>").map(|_| {
        ReasoningSplitter::new(ReasoningSplitter::prompt_opens_reasoning(rendered_prompt))
    });
    Output::Chat {
        reasoning,
        hide_reasoning,
    }
}

/// Writes generated text: the answer to stdout, reasoning (dimmed) to stderr unless hidden. Returns the answer.
fn show(output: &mut Output, piece: &str, out: &mut impl Write) -> std::io::Result<String> {
    let parts = match output {
        Output::Chat {
            reasoning: Some(s), ..
        } => s.push(piece),
        _ => vec![ReasoningPart {
            reasoning: false,
            text: piece.to_string(),
        }],
    };
    write_parts(output, parts, out)
}

fn write_parts(
    output: &Output,
    parts: Vec<ReasoningPart>,
    out: &mut impl Write,
) -> std::io::Result<String> {
    let hide = matches!(
        output,
        Output::Chat {
            hide_reasoning: true,
            ..
        }
    );
    let mut answer = String::new();
    for p in parts {
        if !p.reasoning {
            out.write_all(p.text.as_bytes())?;
            answer.push_str(&p.text);
        } else if !hide {
            eprint!("\x1b[2m{}\x1b[0m", p.text);
        }
    }
    out.flush()?;
    Ok(answer)
}

/// Generates, printing text as it becomes final; returns the answer's text (without end-of-turn tokens or
/// reasoning).
fn stream(
    loaded: &Loaded,
    pool: &hearth_engine::ThreadPool,
    session: &mut Session,
    ids: &[u32],
    opts: &GenerateOptions,
    mut output: Output,
) -> Result<String> {
    let raw = matches!(output, Output::Raw);
    let mut detok = Detokenizer::new(&loaded.tokenizer);
    let mut out = std::io::stdout().lock();
    let mut text = String::new();
    let mut n = 0usize;
    let t0 = Instant::now();
    let mut t_first = None;
    let finish = generate(&loaded.model, pool, session, ids, opts, |s: &Step| {
        n += 1;
        t_first.get_or_insert_with(Instant::now);
        if loaded.tokenizer.eog_ids().contains(&s.id) {
            return true;
        }
        let piece = detok.push(s.id);
        match show(&mut output, &piece, &mut out) {
            Ok(answer) => {
                text.push_str(&answer);
                true
            }
            Err(_) => false,
        }
    })?;
    let tail = detok.flush();
    text.push_str(&show(&mut output, &tail, &mut out)?);
    if let Output::Chat {
        reasoning: Some(s), ..
    } = &mut output
    {
        let rest = s.finish();
        text.push_str(&write_parts(&output, rest, &mut out)?);
    }
    // Raw completion prints exactly the generated text; a chat answer ends its line.
    if !raw {
        writeln!(out)?;
    }
    out.flush()?;
    let prefill = t_first.map_or(0.0, |t| (t - t0).as_secs_f64());
    let decode = t_first.map_or(0.0, |t| t.elapsed().as_secs_f64());
    eprintln!(
        "[{} prompt tokens in {:.2}s ({:.1} t/s); {n} tokens in {:.2}s ({:.1} t/s); {}]",
        ids.len(),
        prefill,
        ids.len() as f64 / prefill.max(1e-9),
        decode,
        (n.saturating_sub(1)) as f64 / decode.max(1e-9),
        match finish {
            Finish::Stop => "end of turn",
            Finish::Length => "length limit",
            Finish::Cancelled => "stopped",
        }
    );
    Ok(text)
}

/// `--raw --json`: the shape of the reference's greedy.json.
fn raw_json(
    loaded: &Loaded,
    pool: &hearth_engine::ThreadPool,
    session: &mut Session,
    ids: &[u32],
    opts: &GenerateOptions,
) -> Result<ExitCode> {
    let mut steps = Vec::new();
    generate(&loaded.model, pool, session, ids, opts, |s: &Step| {
        let top: Vec<_> = s
            .top
            .iter()
            .map(|&(id, lp)| serde_json::json!({"id": id, "logprob": lp}))
            .collect();
        steps.push(serde_json::json!({"id": s.id, "logprob": s.logprob, "top": top}));
        true
    })?;
    println!("{}", serde_json::json!({"prompt_ids": ids, "steps": steps}));
    Ok(ExitCode::SUCCESS)
}
