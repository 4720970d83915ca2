//! `SAFERM_TIMINGS=1`: where a run's time goes. At the end of each phase, one line on stderr
//! with the wall-clock time since the start and the process's CPU time so far, e.g.
//! `saferm: timing: archived 1.648 s (user 1.923 s, sys 0.625 s)`. For benchmarking
//! (doc/benchmarks.md); without the variable it prints nothing and costs one lookup.

use std::sync::OnceLock;
use std::time::Instant;

static START: OnceLock<Option<Instant>> = OnceLock::new();

/// Start the clock (the first call does, wherever it is).
pub fn start() {
    START.get_or_init(|| std::env::var_os("SAFERM_TIMINGS").map(|_| Instant::now()));
}

/// Report the end of `phase`, if timings were asked for.
pub fn mark(phase: &str) {
    start();
    let Some(Some(t0)) = START.get() else {
        return;
    };
    let (user, sys) = cpu_times();
    let line = format!(
        "saferm: timing: {phase} {:.4} s (user {user:.3} s, sys {sys:.3} s)\n",
        t0.elapsed().as_secs_f64()
    );
    crate::output::stderr_write(line.as_bytes());
}

/// Say something about the run, if timings were asked for.
pub fn note(text: &str) {
    start();
    if let Some(Some(_)) = START.get() {
        crate::output::stderr_write(format!("saferm: timing: {text}\n").as_bytes());
    }
}

/// User and system CPU time of the whole process (every thread), in seconds.
fn cpu_times() -> (f64, f64) {
    use nix::sys::resource::{getrusage, UsageWho};
    let Ok(ru) = getrusage(UsageWho::RUSAGE_SELF) else {
        return (0.0, 0.0);
    };
    let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    (secs(ru.user_time()), secs(ru.system_time()))
}
