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
//! and `cold-start` only starts it (it then finds the files cached and gives up). unrm:
//! `restore-signal` (SIGINT while restoring), `purge-crash` (a purge stops between the
//! manifest and the archive).

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
