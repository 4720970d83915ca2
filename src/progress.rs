//! A progress bar for long runs (saferm archiving, unrm restoring and checking): on stderr,
//! only when stderr is a terminal, and only once the run has taken more than half a second
//! — nothing of it in scripts or logs.
//!
//! It counts bytes, not files: callers advance it per chunk as data is copied, so one large
//! file moves the bar as it goes. [`Progress::advance`] is cheap enough for that (an add,
//! and a clock read only when the bar is shown at all).
//!
//! Drawn here rather than with indicatif: that crate's rate estimate calls `powf`, and that
//! one call made every saferm load libm, 0.13 ms of each process start on this VM (issue
//! 11 §5), for a bar that a one-file `rm` never shows.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use crate::output::{human, stderr_write};

/// How long a run goes before it shows progress.
const DELAY: Duration = Duration::from_millis(500);
/// How often the bar is redrawn at most.
const REDRAW: Duration = Duration::from_millis(100);
/// Characters of the bar itself, at most: fewer on a narrow terminal, so that the counts,
/// the rate and the ETA fit.
const BAR_WIDTH: u64 = 30;
/// A narrower bar than this is left out.
const MIN_BAR_WIDTH: u64 = 8;

pub struct Progress {
    /// What is being done, as the line starts: `saferm: archiving`.
    label: &'static str,
    start: Instant,
    total: u64,
    done: u64,
    enabled: bool,
    /// When the bar was last drawn, once it is on the screen.
    drawn: Option<Instant>,
    delay: Duration,
    /// Tests only (`SAFERM_TEST_PROGRESS_NOW`, debug builds): the sixteenth of the total
    /// last drawn. A frame is also drawn at each new sixteenth, so that a test sees the
    /// count move within one file however fast the machine is.
    test_step: Option<u64>,
}

impl Progress {
    /// Progress over `total` bytes, its line starting with `label` (`unrm: restoring`).
    pub fn new(label: &'static str, total: u64) -> Progress {
        // Tests on a pseudo-terminal may shorten the delay (debug builds only).
        let now = cfg!(debug_assertions) && std::env::var_os("SAFERM_TEST_PROGRESS_NOW").is_some();
        Progress {
            label,
            start: Instant::now(),
            total,
            done: 0,
            enabled: std::io::stderr().is_terminal(),
            drawn: None,
            delay: if now { Duration::ZERO } else { DELAY },
            test_step: now.then_some(0),
        }
    }

    /// `bytes` more are done.
    pub fn advance(&mut self, bytes: u64) {
        self.done += bytes;
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        let mut due = match self.drawn {
            Some(last) => now.duration_since(last) >= REDRAW,
            None => now.duration_since(self.start) >= self.delay,
        };
        if let Some(step) = self.test_step {
            let reached = self.done.min(self.total).saturating_mul(16) / self.total.max(1);
            due |= reached > step;
            self.test_step = Some(reached.max(step));
        }
        if due {
            let width = crate::sys::terminal_width(2).unwrap_or(80);
            let elapsed = now.duration_since(self.start);
            let line = bar_line(self.label, (self.done, self.total), elapsed, width);
            // Never wider than the terminal: a wrapped line would not be redrawn in place.
            let line: String = line.chars().take(width.saturating_sub(1)).collect();
            stderr_write(format!("\r{line}\x1b[K").as_bytes());
            self.drawn = Some(now);
        }
    }

    /// Remove the bar from the screen.
    pub fn finish(mut self) {
        self.clear();
    }

    /// Take the bar off the screen (it comes back at the next frame): before a message, so
    /// that the message is not written over a stale bar.
    pub fn clear(&mut self) {
        if self.drawn.take().is_some() {
            stderr_write(b"\r\x1b[K");
        }
    }
}

impl Drop for Progress {
    /// Cleared however the run ends (an error message should not follow a stale bar).
    fn drop(&mut self) {
        self.clear();
    }
}

/// `saferm: archiving [bar] 12.0 MiB/100.0 MiB 40.0 MiB/s ETA 2s`, in fewer than `width`
/// characters when the bar can shrink to make it fit.
fn bar_line(label: &str, (done, total): (u64, u64), elapsed: Duration, width: usize) -> String {
    let done = done.min(total);
    let rest = counts(done, total, elapsed);
    // Two spaces around the bar; one column left free (the cursor).
    let room = width.saturating_sub(label.chars().count() + rest.chars().count() + 3);
    let bar_width = (room as u64).min(BAR_WIDTH);
    if bar_width < MIN_BAR_WIDTH {
        return format!("{label} {rest}");
    }
    let filled = (done.saturating_mul(bar_width))
        .checked_div(total)
        .unwrap_or(bar_width);
    let bar: String = (0..bar_width)
        .map(|i| if i < filled { '█' } else { '░' })
        .collect();
    format!("{label} {bar} {rest}")
}

/// `12.0 MiB/100.0 MiB 40.0 MiB/s ETA 2s`.
fn counts(done: u64, total: u64, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
    let eta = if rate > 0.0 {
        duration((total - done) as f64 / rate)
    } else {
        "?".to_string()
    };
    format!(
        "{}/{} {}/s ETA {eta}",
        human(done),
        human(total),
        human(rate as u64),
    )
}

/// `45s`, `3m 20s`, `2h 5m`.
fn duration(secs: f64) -> String {
    let s = secs.ceil() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        _ => format!("{}h {}m", s / 3600, s % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_says_how_far_how_fast_and_how_long_yet() {
        let line = bar_line(
            "saferm: archiving",
            (25 << 20, 100 << 20),
            Duration::from_secs(1),
            200,
        );
        assert_eq!(
            line,
            format!(
                "saferm: archiving {}{} 25.0 MiB/100.0 MiB 25.0 MiB/s ETA 3s",
                "█".repeat(7),
                "░".repeat(23)
            )
        );
        assert!(bar_line("unrm: restoring", (0, 0), Duration::ZERO, 80)
            .ends_with("0 B/0 B 0 B/s ETA ?"));
        // On 80 columns the bar is shorter, and the ETA still there.
        let rate = Duration::from_secs(1);
        let narrow = bar_line("saferm: archiving", (113 << 20, 300 << 20), rate, 80);
        assert!(
            narrow.ends_with(" 113.0 MiB/300.0 MiB 113.0 MiB/s ETA 2s"),
            "{narrow}"
        );
        assert_eq!(narrow.chars().count(), 79, "{narrow}");
        let tiny = bar_line("saferm: archiving", (1, 2), rate, 40);
        assert_eq!(tiny, "saferm: archiving 1 B/2 B 1 B/s ETA 1s");
        assert_eq!(duration(200.0), "3m 20s");
        assert_eq!(duration(7500.0), "2h 5m");
    }
}
