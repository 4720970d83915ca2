//! A progress bar for long archives: on stderr, only when stderr is a terminal, and only
//! once the run has taken more than half a second — nothing of it in scripts or logs.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressFinish, ProgressStyle};

/// How long a run goes before it shows progress.
const DELAY: Duration = Duration::from_millis(500);

pub struct Progress {
    start: Instant,
    total: u64,
    done: u64,
    enabled: bool,
    bar: Option<ProgressBar>,
    delay: Duration,
}

impl Progress {
    /// Progress over `total` bytes.
    pub fn new(total: u64) -> Progress {
        // Tests on a pseudo-terminal may shorten the delay (debug builds only).
        let delay =
            if cfg!(debug_assertions) && std::env::var_os("SAFERM_TEST_PROGRESS_NOW").is_some() {
                Duration::ZERO
            } else {
                DELAY
            };
        Progress {
            start: Instant::now(),
            total,
            done: 0,
            enabled: std::io::stderr().is_terminal(),
            bar: None,
            delay,
        }
    }

    /// `bytes` more are done.
    pub fn advance(&mut self, bytes: u64) {
        self.done += bytes;
        if let Some(bar) = &self.bar {
            bar.set_position(self.done);
            return;
        }
        if self.enabled && self.start.elapsed() >= self.delay {
            // Cleared however the run ends (an error message should not follow a stale bar).
            let bar = ProgressBar::with_draw_target(Some(self.total), ProgressDrawTarget::stderr())
                .with_finish(ProgressFinish::AndClear);
            if let Ok(style) = ProgressStyle::with_template(
                "saferm: archiving {bar:30} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta}",
            ) {
                bar.set_style(style);
            }
            bar.set_position(self.done);
            self.bar = Some(bar);
        }
    }

    /// Remove the bar from the screen.
    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}
