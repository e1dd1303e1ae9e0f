//! Download progress: a bar (bytes, rate, ETA) on a terminal, plain periodic lines otherwise, nothing when quiet.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a pull tells a caller that shows progress itself ([`crate::PullOptions::report`]), besides (or instead of,
/// with [`ProgressMode::Quiet`]) what it prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullEvent {
    /// A step: `pulling manifest` (listing the source), `writing manifest` (installing).
    Status(&'static str),
    /// A file's transfer: `completed` bytes of `total` (when known); `sha256` when the source publishes it.
    Transfer {
        file: String,
        sha256: Option<String>,
        completed: u64,
        total: Option<u64>,
    },
}

/// Receives [`PullEvent`]s (on the pulling thread; keep it quick).
#[derive(Clone)]
pub struct Reporter(pub Arc<dyn Fn(PullEvent) + Send + Sync>);

impl std::fmt::Debug for Reporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reporter")
    }
}

impl Reporter {
    pub(crate) fn status(report: Option<&Reporter>, s: &'static str) {
        if let Some(r) = report {
            (r.0)(PullEvent::Status(s));
        }
    }
}

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// A bar on a terminal, lines otherwise (chosen by whether stderr is a terminal).
    Auto,
    /// Plain lines on stderr every few seconds.
    Lines,
    Quiet,
}

/// Progress of one transfer.
pub(crate) struct Progress {
    bar: Option<indicatif::ProgressBar>,
    lines: bool,
    label: String,
    total: Option<u64>,
    pos: u64,
    start: Instant,
    start_pos: u64,
    last_line: Instant,
    report: Option<(Reporter, Option<String>)>,
}

const LINE_EVERY: Duration = Duration::from_secs(3);

impl Progress {
    /// Progress shown as `mode` says, and reported to `report` (with the file's sha256, when known).
    pub(crate) fn new(
        mode: ProgressMode,
        label: &str,
        total: Option<u64>,
        pos: u64,
        report: Option<(Reporter, Option<String>)>,
    ) -> Progress {
        let tty = mode == ProgressMode::Auto && std::io::stderr().is_terminal();
        let bar = tty.then(|| {
            let bar = match total {
                Some(t) => indicatif::ProgressBar::new(t),
                None => indicatif::ProgressBar::no_length(),
            };
            let style = indicatif::ProgressStyle::with_template(
                "{msg} [{bar:30}] {decimal_bytes}/{decimal_total_bytes} {decimal_bytes_per_sec} ETA {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            bar.set_message(label.to_string());
            bar.set_position(pos);
            bar
        });
        let lines = !tty && mode != ProgressMode::Quiet;
        if lines && pos > 0 {
            eprintln!("{label}: resuming at {}", crate::format_bytes(pos));
        }
        let now = Instant::now();
        let p = Progress {
            bar,
            lines,
            label: label.to_string(),
            total,
            pos,
            start: now,
            start_pos: pos,
            last_line: now,
            report,
        };
        p.report();
        p
    }

    fn report(&self) {
        if let Some((r, sha256)) = &self.report {
            (r.0)(PullEvent::Transfer {
                file: self.label.clone(),
                sha256: sha256.clone(),
                completed: self.pos,
                total: self.total,
            });
        }
    }

    /// A transfer restarted from `pos` (a resumed or a restarted request).
    pub(crate) fn reset(&mut self, pos: u64) {
        self.pos = pos;
        self.start = Instant::now();
        self.start_pos = pos;
        if let Some(b) = &self.bar {
            b.set_position(pos);
        }
        self.report();
    }

    pub(crate) fn set(&mut self, pos: u64) {
        self.pos = pos;
        self.report();
        if let Some(b) = &self.bar {
            b.set_position(pos);
        } else if self.lines && self.last_line.elapsed() >= LINE_EVERY {
            self.last_line = Instant::now();
            self.print_line();
        }
    }

    pub(crate) fn note(&self, msg: &str) {
        match &self.bar {
            Some(b) => b.println(format!("{}: {msg}", self.label)),
            None if self.lines => eprintln!("{}: {msg}", self.label),
            None => {}
        }
    }

    pub(crate) fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish();
        } else if self.lines {
            self.print_line();
        }
    }

    fn print_line(&self) {
        let secs = self.start.elapsed().as_secs_f64().max(1e-3);
        let rate = (self.pos.saturating_sub(self.start_pos)) as f64 / secs;
        let mut line = format!("{}: {}", self.label, crate::format_bytes(self.pos));
        if let Some(t) = self.total {
            let pct = if t == 0 {
                100.0
            } else {
                self.pos as f64 * 100.0 / t as f64
            };
            line += &format!(" / {} ({pct:.0}%)", crate::format_bytes(t));
        }
        line += &format!(", {}/s", crate::format_bytes(rate as u64));
        if let Some(t) = self.total {
            if rate > 0.0 && self.pos < t {
                line += &format!(", ETA {:.0}s", (t - self.pos) as f64 / rate);
            }
        }
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{line}");
    }
}
