//! Ctrl-C (and SIGTERM, SIGHUP) while archiving: stop, remove the temp file, leave every
//! original in place, then die of the same signal so the shell sees it (exit 130 for SIGINT).

use std::sync::atomic::{AtomicI32, Ordering};

use nix::sys::signal::{raise, sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

static CAUGHT: AtomicI32 = AtomicI32::new(0);

const SIGNALS: [Signal; 3] = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP];

extern "C" fn on_signal(sig: libc::c_int) {
    CAUGHT.store(sig, Ordering::SeqCst);
}

/// What a signal does: the three dispositions saferm gives.
enum Disposition {
    /// Recorded by [`on_signal`], for [`caught`].
    Caught,
    /// The default action.
    Default,
    /// Nothing.
    Ignored,
}

/// `sigaction` with `SA_RESTART` and an empty mask.
fn set(sig: Signal, what: Disposition) {
    let handler = match what {
        Disposition::Caught => SigHandler::Handler(on_signal),
        Disposition::Default => SigHandler::SigDfl,
        Disposition::Ignored => SigHandler::SigIgn,
    };
    let action = SigAction::new(handler, SaFlags::SA_RESTART, SigSet::empty());
    // SAFETY: the only handler of ours is on_signal, which only stores to an atomic (that is
    // async-signal-safe); SIG_DFL and SIG_IGN run no code of ours.
    let _ = unsafe { sigaction(sig, &action) };
}

/// Catch the signals for the duration of the archive phase.
pub fn catch() {
    for sig in SIGNALS {
        set(sig, Disposition::Caught);
    }
}

/// The default dispositions again (for the unlink phase: the archive is sealed by then).
pub fn restore() {
    for sig in SIGNALS {
        set(sig, Disposition::Default);
    }
}

/// Ignore `sig` from now on.
pub fn ignore(sig: Signal) {
    set(sig, Disposition::Ignored);
}

/// The signal that arrived, if any.
pub fn caught() -> Option<i32> {
    match CAUGHT.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// The error a reader returns to stop a copy once a signal has arrived. Not of kind
/// `Interrupted`, which `io::copy` retries: this one ends the copy.
pub fn stop_error() -> std::io::Error {
    std::io::Error::other(Stopped)
}

/// Whether `e` is [`stop_error`].
pub fn is_stop(e: &std::io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<Stopped>())
}

#[derive(Debug)]
struct Stopped;

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted")
    }
}

impl std::error::Error for Stopped {}

/// Die of `sig` as if it had not been caught.
pub fn reraise(sig: i32) -> ! {
    restore();
    // Raising a signal with its default action terminates the process.
    if let Ok(signal) = Signal::try_from(sig) {
        let _ = raise(signal);
    }
    std::process::exit(128 + sig)
}

/// For failure-injection tests: deliver SIGINT to ourselves.
pub fn raise_interrupt() {
    let _ = raise(Signal::SIGINT);
}

/// Die of SIGKILL at once, as `kill -9` makes a process do (failure injection).
pub fn raise_kill() {
    let _ = raise(Signal::SIGKILL);
}
