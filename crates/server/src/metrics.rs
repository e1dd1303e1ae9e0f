//! Prometheus metrics: counters and histograms kept with atomics, rendered in the text exposition format together
//! with the engine's gauges.

use hearth_engine::batch::Stats;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A histogram with fixed upper bounds; the sum is kept in microunits.
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, v: f64) {
        if let Some(i) = self.bounds.iter().position(|&b| v <= b) {
            self.counts[i].fetch_add(1, Relaxed);
        }
        self.sum_micros
            .fetch_add((v.max(0.0) * 1e6) as u64, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut acc = 0;
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            acc += c.load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {acc}");
        }
        let n = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {n}");
        let _ = writeln!(
            out,
            "{name}_sum {}",
            self.sum_micros.load(Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count {n}");
    }
}

/// Everything the server counts.
pub struct Metrics {
    pub chat_requests: AtomicU64,
    pub completion_requests: AtomicU64,
    /// Requests answered with an error status (4xx/5xx), including refusals before they reached the engine.
    pub errors: AtomicU64,
    pub rejected_queue_full: AtomicU64,
    pub prompt_tokens: AtomicU64,
    pub completion_tokens: AtomicU64,
    pub ttft: Histogram,
    pub tokens_per_second: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            chat_requests: AtomicU64::new(0),
            completion_requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            rejected_queue_full: AtomicU64::new(0),
            prompt_tokens: AtomicU64::new(0),
            completion_tokens: AtomicU64::new(0),
            ttft: Histogram::new(&[0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
            tokens_per_second: Histogram::new(&[
                1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0,
            ]),
        }
    }
}

impl Metrics {
    pub fn render(&self, engine: &Stats) -> String {
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, labels: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name}{labels} {v}"
            );
        };
        counter(
            "hearth_requests_total",
            "Completion requests received.",
            "{endpoint=\"chat\"}",
            self.chat_requests.load(Relaxed),
        );
        let _ = writeln!(
            out,
            "hearth_requests_total{{endpoint=\"completions\"}} {}",
            self.completion_requests.load(Relaxed)
        );
        let mut counter = |name: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        };
        counter(
            "hearth_request_errors_total",
            "Requests answered with an error.",
            self.errors.load(Relaxed),
        );
        counter(
            "hearth_requests_rejected_total",
            "Requests refused because the queue was full (429).",
            self.rejected_queue_full.load(Relaxed),
        );
        counter(
            "hearth_prompt_tokens_total",
            "Prompt tokens of finished requests.",
            self.prompt_tokens.load(Relaxed),
        );
        counter(
            "hearth_completion_tokens_total",
            "Tokens generated.",
            self.completion_tokens.load(Relaxed),
        );
        counter(
            "hearth_prompt_tokens_cached_total",
            "Prompt tokens served from the prefix cache.",
            engine.cached_tokens,
        );
        counter(
            "hearth_requests_cancelled_total",
            "Sequences dropped because the client went away.",
            engine.cancelled,
        );
        counter(
            "hearth_engine_steps_total",
            "Forward passes run.",
            engine.steps,
        );
        counter(
            "hearth_engine_tokens_total",
            "Tokens run through the model (prompt and generated).",
            engine.tokens_processed,
        );
        counter(
            "hearth_lookup_draft_tokens_total",
            "Tokens proposed by prompt lookup and verified.",
            engine.draft_tokens,
        );
        counter(
            "hearth_lookup_accepted_tokens_total",
            "Proposed tokens that were kept.",
            engine.draft_accepted,
        );
        let mut gauge = |name: &str, help: &str, v: usize| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        gauge(
            "hearth_queue_depth",
            "Requests waiting to start.",
            engine.queued,
        );
        gauge(
            "hearth_running_sequences",
            "Sequences prefilling or decoding.",
            engine.running,
        );
        gauge(
            "hearth_kv_cache_bytes",
            "KV cache bytes held (running sequences and prefix cache).",
            engine.kv_bytes,
        );
        gauge(
            "hearth_prefix_cache_bytes",
            "KV bytes kept for prefix reuse.",
            engine.prefix_bytes,
        );
        gauge(
            "hearth_prefix_cache_entries",
            "Finished sequences kept for prefix reuse.",
            engine.prefix_entries,
        );
        self.ttft.render(
            &mut out,
            "hearth_time_to_first_token_seconds",
            "Time from request to first generated token.",
        );
        self.tokens_per_second.render(
            &mut out,
            "hearth_tokens_per_second",
            "Generation speed of each request after its first token.",
        );
        out
    }
}

/// Two engines' counters and gauges added (for a server with several models loaded). Counters of a model that was
/// unloaded leave the sum, as a process restart would.
pub fn add_stats(a: Stats, b: Stats) -> Stats {
    Stats {
        queued: a.queued + b.queued,
        running: a.running + b.running,
        kv_bytes: a.kv_bytes + b.kv_bytes,
        prefix_bytes: a.prefix_bytes + b.prefix_bytes,
        prefix_entries: a.prefix_entries + b.prefix_entries,
        steps: a.steps + b.steps,
        tokens_processed: a.tokens_processed + b.tokens_processed,
        prefix_hits: a.prefix_hits + b.prefix_hits,
        cached_tokens: a.cached_tokens + b.cached_tokens,
        cancelled: a.cancelled + b.cancelled,
        masks: a.masks + b.masks,
        mask_nanos: a.mask_nanos + b.mask_nanos,
        forced_tokens: a.forced_tokens + b.forced_tokens,
        draft_tokens: a.draft_tokens + b.draft_tokens,
        draft_accepted: a.draft_accepted + b.draft_accepted,
    }
}
