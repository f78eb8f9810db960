//! Progress that behaves in a terminal and in a log: a live bar (indicatif) when stderr is a terminal, and
//! otherwise one plain line every few seconds, so a log file gets readable lines instead of one line of
//! carriage returns per epoch.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// How often a plain (non-terminal) progress line is written.
const PLAIN_EVERY: Duration = Duration::from_secs(10);

pub struct Progress {
    bar: Option<ProgressBar>,
    prefix: String,
    total: u64,
    last_line: Instant,
}

impl Progress {
    /// A task of `total` units called `prefix` (e.g. "epoch 3/30").
    pub fn new(prefix: impl Into<String>, total: u64) -> Self {
        let prefix = prefix.into();
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{prefix} [{bar:24}] {pos}/{len} {msg}")
                    .expect("a valid template")
                    .progress_chars("#>."),
            );
            bar.set_prefix(prefix.clone());
            bar
        });
        Self {
            bar,
            prefix,
            total,
            last_line: Instant::now(),
        }
    }

    /// `done` units finished; `message` (loss, rate, ETA) is only built when it will be shown.
    pub fn update(&mut self, done: u64, message: impl FnOnce() -> String) {
        match &self.bar {
            Some(bar) => {
                bar.set_position(done);
                bar.set_message(message());
            }
            None => {
                if self.last_line.elapsed() >= PLAIN_EVERY && done < self.total {
                    self.last_line = Instant::now();
                    eprintln!("{} {done}/{} {}", self.prefix, self.total, message());
                }
            }
        }
    }

    /// Ends the task with a final line (kept on screen in a terminal).
    pub fn finish(self, message: impl Into<String>) {
        let message = message.into();
        match self.bar {
            Some(bar) => {
                bar.set_position(self.total);
                bar.finish_with_message(message);
            }
            None => eprintln!("{} {}/{} {message}", self.prefix, self.total, self.total),
        }
    }
}

/// Images per second and the time left, from the units done since `started`.
pub fn rate_and_eta(done: usize, total: usize, started: Instant) -> (f64, f64) {
    let rate = done as f64 / started.elapsed().as_secs_f64().max(1e-9);
    (rate, total.saturating_sub(done) as f64 / rate.max(1e-9))
}
