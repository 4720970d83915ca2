//! Restoring: read one deletion's archive and recreate what it holds, exactly, without ever
//! writing outside the destination (DESIGN §1.7, §6).
//!
//! The rules this module keeps:
//! - The manifest is the source of truth for what an object is (path, type, mode, owner,
//!   mtime, content hash); the archive supplies the bytes, and an archive entry that does not
//!   match its manifest entry (path, type) stops the restore of that deletion.
//! - Paths MUST be absolute and normal (no `.`, `..` or empty components) in the manifest; the
//!   tar path is only compared with it, never used to create anything. Hard links are made
//!   only to files this run restored; a link naming anything else is refused.
//! - Every object is created through directory descriptors: existing directories are opened
//!   with `O_NOFOLLOW` from the anchor (`/`, or the `--to` directory the user named), new
//!   ones with `mkdirat`, files with `O_CREAT|O_EXCL|O_NOFOLLOW` and mode 0600. A symlink in
//!   the way is never followed, so a crafted "symlink, then a file below it" cannot escape.
//! - Nothing that exists is replaced unasked: an existing destination is a conflict
//!   (skipped, restored beside it as `NAME.~N~` with `--rename`, or, with `--overwrite`,
//!   archived through saferm's own delete path, whole or not at all, and then replaced).
//! - A regular file gets its recorded mode (setuid included) only after its data is written
//!   and its owner set; directories get their mode and mtime last, after their contents.
//! - Every regular file is hashed while written and compared with the hash its manifest
//!   records (`crate::hash`); a mismatch removes the partial file (through `unlink.rs`) and
//!   is reported.
//! - A restore seeks to the zstd frame holding the first wanted entry and stops after the
//!   last one, so one small file from a large deletion does not decode the whole archive.
//! - A restore is done only once what it made is durable: data, metadata and directory
//!   entries. Every filesystem a directory was opened on is synced once at the end
//!   (`syncfs`, through a descriptor opened before anything was written there, so that a
//!   writeback error since is reported, as Linux does from 5.8 on; ext4, xfs and btrfs
//!   write back every inode and commit their journal), rather than one fsync per file: on
//!   a journalling filesystem each fsync is a journal commit and a cache flush, which for
//!   50,000 small files costs many times the restore itself. Only then are `-v` lines and the summary
//!   printed and the "restored" note written; a failed sync makes it a failed restore.
//!
//! How a restore goes ([`restore`]):
//! 1. Plan (`restorer.rs`): each wanted manifest entry gets its destination below one of
//!    the target roots, and a destination that exists is settled at its root, before
//!    anything is written: left alone, renamed beside it, or archived and removed whole
//!    (`obstacle.rs` looks at all of it first).
//! 2. Stream (`restorer.rs`): the archive is decoded from the zstd frame holding the first
//!    wanted entry to the last one, each tar entry checked against its manifest entry.
//! 3. Create (`create.rs`): each object is made through directory descriptors (`dirs.rs`)
//!    without following a link: a regular file under a temporary name, hashed as it is
//!    written, then renamed into place; a symlink, a device or FIFO node, a hard link, a
//!    directory; then its owner, mode, times and extended attributes.
//! 4. Finish directories (`dirs.rs`): deepest first, once their contents are in, each gets
//!    its recorded owner, mode and mtime (one that was there gets its own mtime back).
//! 5. Sync (`durable.rs`): each filesystem written to is synced once.
//! 6. Report: the `-v` lines are printed and this deletion's restore journal (`resume.rs`,
//!    what lets a killed restore be finished) is removed; the caller (`unrm`) prints the
//!    summary and writes the "restored" note.

pub mod cat;
mod create;
mod decode;
mod dirs;
mod durable;
pub mod obstacle;
mod restorer;
pub mod resume;
pub mod tally;
mod writers;

use std::collections::HashMap;
use std::io;

use anyhow::{anyhow, bail, Result};

use crate::manifest::Manifest;
use crate::paths::normal_absolute;
use crate::quote::quote;
use crate::store::Backend;
use crate::sys;
use restorer::Restorer;
use resume::Resume;
pub use tally::Tally;

/// What to do when the destination of a restored object already exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conflict {
    /// Leave it alone, report it, restore the rest (the default).
    Skip,
    /// Restore beside it as `NAME.~N~` (GNU's numbered backups).
    Rename,
    /// Replace it, after archiving it through saferm's own delete path, so that even an
    /// overwrite loses nothing.
    Overwrite,
}

/// One object to restore with everything below it: `source` is an entry path of the
/// manifest, `dest` the absolute path to create it at (the same path for an in-place restore).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub source: Vec<u8>,
    pub dest: Vec<u8>,
}

/// How to restore.
#[derive(Clone, Debug)]
pub struct RestoreOptions {
    pub conflict: Conflict,
    /// The directory every destination is below: `/` in place, or the `--to` directory.
    /// It is opened by path (the user named it); everything below it through descriptors.
    pub anchor: Vec<u8>,
    pub euid: u32,
    /// The current directory, to show paths below it relative to it.
    pub cwd: Vec<u8>,
    /// `-v`: print each restored object.
    pub verbose: bool,
    /// Keep a [`Report::log`] of every object settled (`unrm --json` accounts per target).
    pub record: bool,
}

/// What became of one object of a restore, for [`Report::log`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Made at its destination.
    Restored,
    /// Found there already, identical.
    Already,
    /// Something else is there: left alone.
    Conflict,
    /// Could not be restored, and why (as said on stderr).
    Failed(String),
}

/// One object of a restore's log: its destination (or, when it was not in the deletion,
/// the path asked for), what became of it, whether it is a regular file, and its bytes.
#[derive(Clone, Debug)]
pub struct Logged {
    pub path: Vec<u8>,
    pub outcome: Outcome,
    pub file: bool,
    pub bytes: u64,
}

/// What a restore did, for the summary and the exit code.
#[derive(Debug, Default)]
pub struct Report {
    /// Objects created.
    pub restored: u64,
    /// Objects that could not be restored (each reported on stderr).
    pub failed: u64,
    /// Destinations that existed and were left alone.
    pub conflicts: Vec<Vec<u8>>,
    /// Targets restored under another name (`--rename`): (wanted, used).
    pub renamed: Vec<(Vec<u8>, Vec<u8>)>,
    /// Destinations that existed and were archived and replaced (`--overwrite`).
    pub replaced: Vec<Vec<u8>>,
    /// Destinations of the target roots that were created, restored into, or found
    /// identical already (after any rename).
    pub roots_restored: Vec<Vec<u8>>,
    /// Objects found already there, identical (a restore run again).
    pub already: u64,
    /// Objects whose recorded owner could not be set (not root).
    pub ownership_not_set: u64,
    /// Extended attributes that could not be set (EPERM: a namespace only root may write).
    pub xattrs_not_set: u64,
    /// What was restored could not be made durable: nothing may be said to be restored.
    pub not_durable: bool,
    /// With [`RestoreOptions::record`]: every object settled, in the order it was.
    pub log: Vec<Logged>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.failed == 0 && self.conflicts.is_empty()
    }
}

/// Restore `targets` from one deletion. Errors are for the deletion as a whole (the archive
/// cannot be opened, the manifest is damaged); per-object failures go into the report.
pub fn restore(
    store: &dyn Backend,
    manifest: &Manifest,
    targets: &[Target],
    opts: &RestoreOptions,
    report: &mut Report,
    tally: &mut Tally,
) -> Result<()> {
    let paths: Vec<Vec<u8>> = manifest
        .entries
        .iter()
        .map(|e| e.path.bytes().unwrap_or_default())
        .collect();
    for p in &paths {
        if !normal_absolute(p) {
            bail!(
                "its manifest has an unsafe path {}: refusing to restore from it",
                quote(p)
            );
        }
    }
    let index: HashMap<&[u8], usize> = paths
        .iter()
        .enumerate()
        .map(|(i, p)| (p.as_slice(), i))
        .collect();
    let mut r = Restorer::new(opts, report, manifest, &paths, &index, tally);
    let jobs = r.plan(targets)?;
    crate::timing::mark("restore planned");
    if jobs.iter().all(Option::is_none) {
        return Ok(());
    }
    r.resume = Resume::start(store, &manifest.id);
    let result = r.stream(store, &jobs);
    crate::timing::mark("objects created");
    r.finish();
    crate::timing::mark("directories finished");
    // Also after a failure or Ctrl-C: what was made is kept, and may be noted as restored.
    let synced = r.filesystems.sync();
    crate::timing::mark("synced");
    if let Err(err) = synced {
        r.report.not_durable = true;
        return Err(anyhow!(
            "could not make what was restored durable (a crash could lose it): {}",
            reason(&err)
        ));
    }
    crate::output::stdout_write(&r.verbose_out);
    std::mem::take(&mut r.resume).done(store, &manifest.id);
    result
}

fn reason(err: &io::Error) -> String {
    sys::strerror(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_normal_absolute_paths_are_restored() {
        assert!(normal_absolute(b"/a/b"));
        assert!(!normal_absolute(b"a/b"));
        assert!(!normal_absolute(b"/a/../b"));
        assert!(!normal_absolute(b"/a/./b"));
        assert!(!normal_absolute(b"/a//b"));
        assert!(!normal_absolute(b"/a/"));
        assert!(!normal_absolute(b"/"));
        assert!(!normal_absolute(b"/.."));
    }
}
