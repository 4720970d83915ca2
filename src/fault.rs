//! Failure injection for tests: `SAFERM_FAULT=<step>` makes that step fail.
//!
//! Only debug builds (what `cargo test` runs) read the variable; a release build has no
//! hook at all. Steps: `read` (reading a source file), `write` (writing the archive),
//! `fsync`, `rename`, `dirsync`, `verify` (the archive is damaged before it is read back),
//! `verify-copy` (the manifest copy at its end is damaged), `hold-nothing` (no content is
//! handed to the streamed verifier: every file is compared by its blake3), `manifest`,
//! `signal` (SIGINT arrives while archiving), `space` (the store looks full),
//! `skip-space-check` (write until the filesystem says ENOSPC), and after sealing `mutate`
//! (a file changes), `chmod` (a file's ctime changes, nothing else) and `swap` (a
//! directory becomes a symlink); `mode-back` (the mode of a file saferm gave itself read
//! permission on cannot be put back); before archiving,
//! `replace-file`, `replace-dir` and `replace-fifo` (a file is replaced); `cold` makes
//! every source file look uncached, which starts the read-ahead thread (src/prefetch.rs),
//! `cold-start` only starts it (it then finds every file cached and gives up), and `warm`
//! makes every file look cached (the thread never starts). unrm:
//! `restore-signal` (SIGINT while restoring), `check-signal` (SIGINT while `--check` reads an
//! archive), `restore-sync` (making a restore durable
//! fails), `purge-crash` (a purge stops between the manifest and the archive),
//! `no-fchmodat2` (the kernel lacks fchmodat2, as before 6.6).
//!
//! Per-entry steps name the files they hit: `read=a,b` fails reading the files called `a`
//! and `b` (at their first read), `read-late=a` after their first MiB (the tar header has
//! committed to a size), `verify-entry=a` makes the archive's entry for `a` differ from
//! what its manifest says (as a bad read-back of that one entry would), and
//! `sparse-damage=a` stores one byte of the sparse file `a`'s data other than the one its
//! hash was worked out from. unrm: `restore-kill=a` kills unrm (SIGKILL) once `a` is written
//! under its temp name.
//!
//! `archive-pause=a` pauses saferm after the first chunk of the file `a` is archived, and
//! `restore-pause=a` unrm after the first chunk of `a` is restored (both with the progress
//! bar drawn), the way `pause` does, so that a test can interrupt them there.
//!
//! `pause` stops saferm between sealing and unlinking until a test says go on: it creates
//! the file `paused` in the directory `SAFERM_TEST_PAUSE_DIR` names, then waits (at most two
//! minutes) for a file `resume` there, or for a signal it catches, so that a test can change
//! a file (or stop the process) at exactly that step.
//! Instant mode's steps pause the same way: `staging` (saferm has made the staging and
//! written its origin, nothing renamed in yet), `staged` (everything renamed in), `drain`
//! (a worker or unrm is about to archive a staging), `published` (it has published the
//! staging's deletion and not yet noted so in the staging) and `drained` (unrm has finished
//! what was staged and not yet looked at what is left); `no-worker` keeps saferm from
//! starting its worker.
//!
//! `SAFERM_TEST_NOW=<unix seconds>` sets the clock retention measures ages with ([`now`]),
//! so that age limits can be tested without racing the real clock.

use std::io;

/// Fail with an injected error if `SAFERM_FAULT` names this step.
pub fn check(step: &str) -> io::Result<()> {
    if active(step) {
        return Err(io::Error::other(format!("injected fault at {step}")));
    }
    Ok(())
}

/// Whether `SAFERM_FAULT` names this step.
pub fn active(step: &str) -> bool {
    cfg!(debug_assertions) && std::env::var_os("SAFERM_FAULT").is_some_and(|v| v == step)
}

/// Whether `SAFERM_FAULT` is `step=NAME,NAME...` and one of the names is `name` (a file
/// name, the last component of a path).
pub fn names(step: &str, name: &[u8]) -> bool {
    if !cfg!(debug_assertions) {
        return false;
    }
    let Some(value) = std::env::var_os("SAFERM_FAULT") else {
        return false;
    };
    let value = std::os::unix::ffi::OsStrExt::as_bytes(value.as_os_str());
    let base = name.rsplit(|&b| b == b'/').next().unwrap_or(name);
    value
        .strip_prefix(step.as_bytes())
        .and_then(|rest| rest.strip_prefix(b"="))
        .is_some_and(|list| list.split(|&b| b == b',').any(|n| n == base))
}

/// Fault `step` (`pause`): tell the test through `SAFERM_TEST_PAUSE_DIR/paused`, then wait
/// for `SAFERM_TEST_PAUSE_DIR/resume`.
pub fn pause(step: &str) {
    if active(step) {
        wait_for_resume();
    }
}

/// The wait of [`pause`], for steps that name files (`archive-pause=a`, see [`names`]):
/// create `SAFERM_TEST_PAUSE_DIR/paused`, then wait (two minutes at most) for `resume`, or
/// for a signal that [`crate::signal`] catches (what the process does with it is the test).
pub fn wait_for_resume() {
    if !cfg!(debug_assertions) {
        return;
    }
    let Some(dir) = std::env::var_os("SAFERM_TEST_PAUSE_DIR").map(std::path::PathBuf::from) else {
        return;
    };
    let _ = std::fs::write(dir.join("paused"), b"");
    for _ in 0..12_000 {
        if dir.join("resume").exists() || crate::signal::caught().is_some() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// The current time in Unix seconds, as retention measures ages: `SAFERM_TEST_NOW` in debug
/// builds when set, else the clock.
pub fn now() -> i64 {
    if cfg!(debug_assertions) {
        let fixed = std::env::var("SAFERM_TEST_NOW")
            .ok()
            .and_then(|v| v.parse().ok());
        if let Some(t) = fixed {
            return t;
        }
    }
    chrono::Utc::now().timestamp()
}
