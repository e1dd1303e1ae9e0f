//! `hearth run MODEL [PROMPT]`: one answer through the chat template, an interactive chat without a prompt, or
//! plain completion with `--raw`. Every turn is a request to the batch engine (the server's, with one sequence);
//! its sink runs hearth-text's text stream on the engine thread and writes to the terminal, and interactive chat
//! reuses the KV of earlier turns from the engine's prefix cache. Only generated text goes to stdout; reasoning,
//! logs and timings go to stderr.

use crate::common::{Loaded, ModelArgs};
use anyhow::{anyhow, bail, Result};
use hearth_engine::batch::{BatchConfig, Engine, Event, Finish, Flow, Request, Sink, Usage};
use hearth_engine::{KvLayout, SamplingParams};
use hearth_text::{ChatMessage, ChatTemplate, Delta, Reasoning, TextStream, Tokenizer};
use std::io::Write;
use std::process::ExitCode;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

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
    #[command(flatten)]
    lookup: crate::common::LookupArgs,
    /// Sampling temperature; 0 is greedy.
    #[arg(long = "temp", default_value_t = SamplingParams::CLI_TEMPERATURE)]
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
    /// Answers must be JSON: `json` for any JSON object, or a JSON Schema file (docs/structured.md).
    #[arg(long, value_name = "json|SCHEMA.json")]
    format: Option<String>,
    /// Answers must follow this llguidance Lark grammar file.
    #[arg(long, value_name = "FILE.lark")]
    grammar: Option<std::path::PathBuf>,
    /// Answers must match this regular expression.
    #[arg(long, value_name = "RE")]
    regex: Option<String>,
}

impl Args {
    /// The grammar `--format`, `--grammar` or `--regex` asks for (at most one of them).
    fn constraint_grammar(&self) -> Result<Option<hearth_constraint::Grammar>> {
        use hearth_constraint::Grammar;
        let mut out = Vec::new();
        if let Some(f) = &self.format {
            out.push(if f == "json" {
                Grammar::JsonObject
            } else {
                let text = std::fs::read_to_string(f)
                    .map_err(|e| anyhow::anyhow!("--format: cannot read {f}: {e}"))?;
                Grammar::JsonSchema(
                    serde_json::from_str(&text)
                        .map_err(|e| anyhow::anyhow!("--format: {f} is not JSON: {e}"))?,
                )
            });
        }
        if let Some(g) = &self.grammar {
            let text = std::fs::read_to_string(g)
                .map_err(|e| anyhow::anyhow!("--grammar: cannot read {}: {e}", g.display()))?;
            out.push(Grammar::Lark(text));
        }
        if let Some(r) = &self.regex {
            out.push(Grammar::Regex(r.clone()));
        }
        if out.len() > 1 {
            bail!("--format, --grammar and --regex each constrain the answer: give one");
        }
        Ok(out.pop())
    }
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

/// The engine with the model's tokenizer, and what every request shares.
struct Runner {
    engine: Engine,
    tok: Arc<Tokenizer>,
    sampling: SamplingParams,
    max_tokens: Option<usize>,
    n_ctx: usize,
    hide_reasoning: bool,
    /// The grammar every answer follows (compiled once; each request gets a fresh copy).
    constraint: Option<hearth_constraint::GrammarConstraint>,
}

pub fn run(a: Args) -> Result<ExitCode> {
    if a.json && !a.raw {
        bail!("--json needs --raw (it reports plain completion steps)");
    }
    if a.raw && a.prompt.is_none() {
        bail!("--raw needs a prompt");
    }
    a.sampling().validate()?;
    let t0 = Instant::now();
    let loaded = Loaded::open_or_pull(&a.model.model)?;
    let n_ctx = loaded.n_ctx(a.ctx_size);
    loaded.check_memory(n_ctx, &a.model)?;
    let template = match a.raw {
        true => None,
        false => Some(loaded.chat_template()?),
    };
    let Loaded {
        model,
        tokenizer,
        path,
        ..
    } = loaded;
    // Refuse a KV type that does not fit the model here (the engine would fall back to f16 silently).
    model.new_cache_typed(1, a.model.kv_type)?;
    let n_threads = a.model.n_threads();
    let tokenizer = Arc::new(tokenizer);
    let constraint = match a.constraint_grammar()? {
        Some(g) => {
            let guide = hearth_constraint::Guide::new(tokenizer.clone(), model.config.n_vocab)?;
            Some(guide.compile(&g)?)
        }
        None => None,
    };
    eprintln!(
        "loaded {} ({}, {} layers) in {:.2}s; context {n_ctx}, {n_threads} threads",
        path.display(),
        model.config.arch,
        model.config.n_layer,
        t0.elapsed().as_secs_f64(),
    );
    // One sequence at a time; interactive chat keeps one conversation's KV (a whole context) for the next turn.
    let interactive = a.prompt.is_none();
    let layout = KvLayout::for_model(&model.config, a.model.kv_type);
    let context_bytes = layout
        .position_bytes()
        .saturating_mul(n_ctx)
        .saturating_mul(model.config.n_layer);
    let config = BatchConfig {
        n_threads,
        n_ctx,
        max_running: 1,
        max_queued: 1,
        prefix_cache_bytes: if interactive { context_bytes } else { 0 },
        kv_type: a.model.kv_type,
        lookup: a.lookup.lookup(),
        ..BatchConfig::default()
    };
    let runner = Runner {
        engine: Engine::start(Arc::new(model), config),
        tok: tokenizer,
        constraint,
        sampling: a.sampling(),
        max_tokens: a.max_tokens,
        n_ctx,
        hide_reasoning: a.hide_reasoning,
    };
    let Some(template) = template else {
        let prompt = a.prompt.as_deref().unwrap_or_default();
        let ids = runner.tok.encode(prompt, true, true)?;
        if a.json {
            return runner.json(ids, a.logprobs.unwrap_or(0));
        }
        runner.turn(ids, Reasoning::Off, Ending::Raw)?;
        return Ok(ExitCode::SUCCESS);
    };
    let mut messages = Vec::new();
    if let Some(s) = &a.system {
        messages.push(ChatMessage::new("system", s.as_str()));
    }
    if let Some(prompt) = &a.prompt {
        messages.push(ChatMessage::new("user", prompt.as_str()));
        runner.chat(&template, &messages)?;
        return Ok(ExitCode::SUCCESS);
    }
    chat_loop(&runner, &template, &mut messages, &a.model.model)?;
    Ok(ExitCode::SUCCESS)
}

/// Interactive chat: the history grows; each turn's prompt shares its start with the last, whose KV the engine's
/// prefix cache holds.
fn chat_loop(
    runner: &Runner,
    template: &ChatTemplate,
    messages: &mut Vec<ChatMessage>,
    name: &str,
) -> Result<()> {
    let mut rl = rustyline::DefaultEditor::new()?;
    eprintln!("chat with {name} — /bye or Ctrl-D to leave");
    loop {
        let line = match rl.readline(">>> ") {
            Ok(l) => l,
            Err(
                rustyline::error::ReadlineError::Eof | rustyline::error::ReadlineError::Interrupted,
            ) => break,
            Err(rustyline::error::ReadlineError::Io(e))
                if e.kind() == std::io::ErrorKind::InvalidData =>
            {
                eprintln!("that line is not valid UTF-8 text; it was skipped (type it again)");
                continue;
            }
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
        messages.push(ChatMessage::new("user", line));
        let answer = runner.chat(template, messages)?;
        messages.push(ChatMessage::new("assistant", answer));
    }
    Ok(())
}

/// How the output of a turn ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// Exactly the generated text (raw completion).
    Raw,
    /// A chat answer: its line is ended.
    Line,
}

impl Runner {
    /// One chat turn over `messages`; returns the answer (without reasoning).
    fn chat(&self, template: &ChatTemplate, messages: &[ChatMessage]) -> Result<String> {
        let rendered = template.render(messages, true)?;
        // The template writes BOS itself when the model wants one.
        let ids = self.tok.encode(&rendered, false, true)?;
        let reasoning = Reasoning::for_chat(&self.tok, &rendered);
        self.turn(ids, reasoning, Ending::Line)
    }

    fn request(&self, prompt: Vec<u32>, top_logprobs: Option<usize>) -> Request {
        // Default: until the model ends its turn or the context is full.
        let room = self.n_ctx.saturating_sub(prompt.len());
        Request {
            max_tokens: self.max_tokens.map_or(room, |n| n.min(room)),
            prompt,
            sampling: self.sampling.clone(),
            stop_ids: self.tok.eog_ids().to_vec(),
            top_logprobs,
            constraint: self
                .constraint
                .as_ref()
                .map(|c| Box::new(c.clone()) as Box<dyn hearth_engine::batch::Constraint>),
            embed: false,
        }
    }

    /// Generates, printing text as it becomes final; returns the answer's text.
    fn turn(&self, ids: Vec<u32>, reasoning: Reasoning, ending: Ending) -> Result<String> {
        let (tx, rx) = mpsc::channel();
        let sink = Terminal {
            text: TextStream::new(self.tok.clone(), Vec::new(), reasoning),
            hide_reasoning: self.hide_reasoning,
            answer: String::new(),
            first: None,
            tx,
        };
        let t0 = Instant::now();
        self.engine
            .submit(self.request(ids, None), Box::new(sink))
            .map_err(|e| anyhow!("{e}"))?;
        let (finish, usage, answer, first) = match rx.recv() {
            Ok(Report::Done {
                finish,
                usage,
                answer,
                first,
            }) => (finish, usage, answer, first),
            Ok(Report::Failed(m)) => bail!("generation failed: {m}"),
            Err(_) => bail!("the engine dropped the request"),
        };
        let mut out = std::io::stdout().lock();
        // Raw completion prints exactly the generated text; a chat answer ends its line.
        if ending == Ending::Line {
            writeln!(out)?;
        }
        out.flush()?;
        let timing = first.map(|f| (f - t0, f.elapsed()));
        eprintln!("[{}]", summary(&usage, finish, timing));
        Ok(answer)
    }

    /// `--raw --json`: the shape of the reference's greedy.json.
    fn json(&self, ids: Vec<u32>, top_k: usize) -> Result<ExitCode> {
        let (tx, rx) = mpsc::channel();
        self.engine
            .submit(self.request(ids.clone(), Some(top_k)), Box::new(tx))
            .map_err(|e| anyhow!("{e}"))?;
        let mut steps = Vec::new();
        for ev in rx {
            match ev {
                Event::Token(s) => {
                    let top: Vec<_> = s
                        .top
                        .iter()
                        .map(|&(id, lp)| serde_json::json!({"id": id, "logprob": lp}))
                        .collect();
                    steps.push(serde_json::json!({"id": s.id, "logprob": s.logprob, "top": top}));
                }
                Event::Done { .. } => break,
                Event::Failed(m) => bail!("generation failed: {m}"),
            }
        }
        println!("{}", serde_json::json!({"prompt_ids": ids, "steps": steps}));
        Ok(ExitCode::SUCCESS)
    }
}

/// What the terminal sink tells the waiting thread at the end.
enum Report {
    Done {
        finish: Finish,
        usage: Usage,
        answer: String,
        /// When the first token came.
        first: Option<Instant>,
    },
    Failed(String),
}

/// The engine sink of one turn: text to the terminal as it becomes final (the answer on stdout, reasoning dimmed
/// on stderr unless hidden); the end goes back to the waiting thread.
struct Terminal {
    text: TextStream<Arc<Tokenizer>>,
    hide_reasoning: bool,
    answer: String,
    first: Option<Instant>,
    tx: mpsc::Sender<Report>,
}

impl Terminal {
    fn show(&mut self, d: Delta) -> std::io::Result<()> {
        if !d.reasoning.is_empty() && !self.hide_reasoning {
            eprint!("\x1b[2m{}\x1b[0m", d.reasoning);
        }
        if !d.text.is_empty() {
            let mut out = std::io::stdout().lock();
            out.write_all(d.text.as_bytes())?;
            out.flush()?;
            self.answer.push_str(&d.text);
        }
        Ok(())
    }
}

impl Sink for Terminal {
    fn send(&mut self, event: Event) -> Flow {
        match event {
            Event::Token(step) => {
                self.first.get_or_insert_with(Instant::now);
                let d = self.text.push(step.id);
                if self.show(d).is_err() {
                    return Flow::Gone; // stdout closed (a pipe whose reader ended)
                }
                if self.text.stopped() {
                    return Flow::Stop;
                }
                Flow::Continue
            }
            Event::Done { finish, usage, .. } => {
                let rest = self.text.finish();
                let _ = self.show(rest);
                let report = Report::Done {
                    finish,
                    usage,
                    answer: std::mem::take(&mut self.answer),
                    first: self.first,
                };
                match self.tx.send(report) {
                    Ok(()) => Flow::Continue,
                    Err(_) => Flow::Gone,
                }
            }
            Event::Failed(m) => match self.tx.send(Report::Failed(m)) {
                Ok(()) => Flow::Continue,
                Err(_) => Flow::Gone,
            },
        }
    }
}

/// The timing line of a turn: prompt tokens (computed and cached), generated tokens, and why it ended; with the
/// times and rates when a token came (`timing`: from the request to the first token, which counts as prompt time,
/// and from there to the end). A rate is shown only where there is something to divide.
fn summary(usage: &Usage, finish: Finish, timing: Option<(Duration, Duration)>) -> String {
    let rate = |n: usize, d: Duration| match d.as_secs_f64() {
        s if n > 0 && s > 0.0 => format!(" ({:.1} t/s)", n as f64 / s),
        _ => String::new(),
    };
    let computed = usage.prompt_tokens - usage.cached_tokens.min(usage.prompt_tokens);
    let cached = match usage.cached_tokens {
        0 => String::new(),
        c => format!(", {c} cached"),
    };
    let why = match finish {
        Finish::Stop => "end of turn",
        Finish::Length => "length limit",
    };
    let n = usage.completion_tokens;
    match timing {
        Some((prefill, decode)) if n > 0 => format!(
            "{} prompt tokens{cached} in {:.2}s{}; {n} tokens in {:.2}s{}; {why}",
            usage.prompt_tokens,
            prefill.as_secs_f64(),
            rate(computed, prefill),
            decode.as_secs_f64(),
            rate(n - 1, decode)
        ),
        _ => format!(
            "{} prompt tokens{cached}; no tokens generated; {why}",
            usage.prompt_tokens
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_generated_tokens_show_no_rate() {
        // `-n 0`: nothing generated, nothing timed; no rate may come out of a division by (almost) zero.
        let usage = Usage {
            prompt_tokens: 5,
            completion_tokens: 0,
            cached_tokens: 0,
        };
        let s = summary(&usage, Finish::Length, None);
        assert_eq!(s, "5 prompt tokens; no tokens generated; length limit");
        // One token: its time is prompt time; no decode rate from zero intervals.
        let usage = Usage {
            completion_tokens: 1,
            cached_tokens: 4,
            ..usage
        };
        let timing = Some((Duration::from_millis(500), Duration::ZERO));
        assert_eq!(
            summary(&usage, Finish::Stop, timing),
            "5 prompt tokens, 4 cached in 0.50s (2.0 t/s); 1 tokens in 0.00s; end of turn"
        );
    }
}
