//! Ctrl-C (and SIGTERM, SIGHUP) while archiving: stop, remove the temp file, leave every
//! original in place, then die of the same signal so the shell sees it (exit 130 for SIGINT).

use std::sync::atomic::{AtomicI32, Ordering};

static CAUGHT: AtomicI32 = AtomicI32::new(0);

const SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

extern "C" fn on_signal(sig: libc::c_int) {
    CAUGHT.store(sig, Ordering::SeqCst);
}

/// Catch the signals for the duration of the archive phase.
pub fn catch() {
    for sig in SIGNALS {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as usize;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// The default dispositions again (for the unlink phase: the archive is sealed by then).
pub fn restore() {
    for sig in SIGNALS {
        // SAFETY: resetting to SIG_DFL is always valid.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
        }
    }
}

/// The signal that arrived, if any.
pub fn caught() -> Option<i32> {
    match CAUGHT.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// Die of `sig` as if it had not been caught.
pub fn reraise(sig: i32) -> ! {
    restore();
    // SAFETY: raising a signal with its default action terminates the process.
    unsafe {
        libc::raise(sig);
    }
    std::process::exit(128 + sig)
}

/// For failure-injection tests: deliver SIGINT to ourselves.
pub fn raise_interrupt() {
    // SAFETY: raise is always safe to call.
    unsafe {
        libc::raise(libc::SIGINT);
    }
}

/// Die of SIGKILL at once, as `kill -9` makes a process do (failure injection).
pub fn raise_kill() {
    // SAFETY: raise is always safe to call.
    unsafe {
        libc::raise(libc::SIGKILL);
    }
}
