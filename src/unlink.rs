//! The only module that deletes. Every `unlinkat` saferm makes is here, so the one
//! irreversible operation can be audited in one place; `std::fs::remove_*` is banned
//! elsewhere by clippy.toml.
//!
//! Callers MUST have archived, sealed and verified what they remove (DESIGN §1.1) and re-stat
//! it just before calling (§1.2) — or run with `--no-archive`, which the user asked for.

// The one module allowed to call what clippy.toml bans elsewhere.
#![allow(clippy::disallowed_methods)]

use std::ffi::CStr;
use std::io;
use std::os::fd::RawFd;

/// Remove one name below `dirfd`: a directory with `AT_REMOVEDIR`, anything else without.
pub fn remove_object(dirfd: RawFd, name: &CStr, is_dir: bool) -> io::Result<()> {
    use rustix::fs::AtFlags;
    let flags = if is_dir {
        AtFlags::REMOVEDIR
    } else {
        AtFlags::empty()
    };
    Ok(rustix::fs::unlinkat(
        crate::sys::borrow(&dirfd)?,
        name,
        flags,
    )?)
}

/// Remove one of the store's own files (a temp file, an archive that failed verification).
pub fn remove_store_file(dirfd: RawFd, name: &CStr) -> io::Result<()> {
    remove_object(dirfd, name, false)
}

/// Remove the empty directory of a staged deletion once its objects are archived and
/// unlinked (`store::staging`).
pub fn remove_staging_dir(dirfd: RawFd, name: &CStr) -> io::Result<()> {
    remove_object(dirfd, name, true)
}

/// Remove a regular file `unrm` has just created and found damaged (its content did not match
/// the manifest's blake3), so that no partial copy is left where the original was.
pub fn remove_partial_restore(dirfd: RawFd, name: &CStr) -> io::Result<()> {
    remove_object(dirfd, name, false)
}

/// Remove a temp file (`.unrm.<pid>.<random>.tmp`) that an earlier `unrm` was killed while
/// writing: `crate::restore::resume` checks that it is one, that its process is gone, and that it is
/// a regular file of ours.
pub fn remove_stale_restore_temp(dirfd: RawFd, name: &CStr) -> io::Result<()> {
    remove_object(dirfd, name, false)
}
