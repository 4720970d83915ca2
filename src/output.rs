//! Writing to stdout and stderr without panicking, and reporting stdout's write errors as
//! GNU's `close_stdout` does.
//!
//! Rust ignores SIGPIPE, so `println!` panics when a reader closes the pipe
//! (`saferm -rv d | head -1`). rm dies quietly there; saferm stops printing instead, and the
//! removal itself, which is already archived, goes on.
//!
//! Any other write error (`saferm -v f >/dev/full`) also stops the printing, and is reported
//! once at exit by [`finish`]: `rm: write error: No space left on device`, exit 1, as GNU
//! does. The work itself is not undone: rm too removes the file and then reports.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);
/// The first write error on stdout other than a closed pipe.
static STDOUT_ERROR: OnceLock<io::Error> = OnceLock::new();

/// Write to stdout; after a broken pipe or a write error, further output is dropped.
pub fn stdout_write(bytes: &[u8]) {
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = io::stdout().lock();
    if let Err(e) = out.write_all(bytes).and_then(|_| out.flush()) {
        STDOUT_CLOSED.store(true, Ordering::Relaxed);
        if e.kind() != io::ErrorKind::BrokenPipe {
            let _ = STDOUT_ERROR.set(e);
        }
    }
}

/// Write to stderr, unbuffered as C's stderr is, so prompts appear before stdin is read.
pub fn stderr_write(bytes: &[u8]) {
    let mut err = io::stderr().lock();
    let _ = err.write_all(bytes);
    let _ = err.flush();
}

/// Whether stdout can take no more output (a closed pipe or a write error): stop producing it.
pub fn stdout_closed() -> bool {
    STDOUT_CLOSED.load(Ordering::Relaxed)
}

/// The exit status to end with: `code`, or 1 after reporting `PROG: write error: REASON` when
/// a write to stdout failed for any reason but a closed pipe (GNU's `close_stdout`).
pub fn finish(prog: &str, code: i32) -> i32 {
    match STDOUT_ERROR.get() {
        None => code,
        Some(e) => {
            stderr_write(format!("{prog}: write error: {}\n", crate::sys::strerror(e)).as_bytes());
            if code == 0 {
                1
            } else {
                code
            }
        }
    }
}

/// An RFC 3339 time as local `YYYY-MM-DD HH:MM:SS`.
pub fn local_time(rfc3339: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| {
            t.with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
        })
        .unwrap_or_else(|_| rfc3339.to_string())
}

/// A byte count for people: `512 B`, `4.0 KiB`, `1.5 GiB`.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
