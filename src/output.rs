//! Writing to stdout and stderr without panicking.
//!
//! Rust ignores SIGPIPE, so `println!` panics when a reader closes the pipe
//! (`saferm -rv d | head -1`). rm dies quietly there; saferm stops printing instead, and the
//! removal itself, which is already archived, goes on.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// Write to stdout; after a broken pipe, further output is dropped.
pub fn stdout_write(bytes: &[u8]) {
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if out.write_all(bytes).and_then(|_| out.flush()).is_err() {
        STDOUT_CLOSED.store(true, Ordering::Relaxed);
    }
}

/// Write to stderr, unbuffered as C's stderr is, so prompts appear before stdin is read.
pub fn stderr_write(bytes: &[u8]) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(bytes);
    let _ = err.flush();
}

/// Whether stdout was found closed (to exit as rm would after SIGPIPE: quietly).
pub fn stdout_closed() -> bool {
    STDOUT_CLOSED.load(Ordering::Relaxed)
}
