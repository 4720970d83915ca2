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
//! - Nothing that exists is replaced: an existing destination is a conflict (skipped, or
//!   restored beside it as `NAME.~N~` with `--rename`).
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
//!   write back every inode and commit their journal), rather than one fsync per file: on a journalling
//!   filesystem each fsync is a journal commit and a cache flush, which for 50,000 small
//!   files costs many times the restore itself. Only then are `-v` lines and the summary
//!   printed and the "restored" note written; a failed sync makes it a failed restore.

pub mod obstacle;
pub mod resume;

use std::collections::{HashMap, HashSet};
use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStringExt;

use anyhow::{anyhow, bail, Context, Result};

use crate::hash::ContentHash;
use crate::manifest::{Entry, Kind, Manifest};
use crate::output::stderr_write;
use crate::paths::{display, is_under, join, normal_absolute, split_parent, PathMap};
use crate::quote::quote;
use crate::store::Store;
use crate::sys;
use resume::Resume;

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
}

impl Report {
    pub fn ok(&self) -> bool {
        self.failed == 0 && self.conflicts.is_empty()
    }
}

/// What happens to one manifest entry in this restore.
#[derive(Clone, Debug)]
enum Job {
    /// Create it at this destination.
    Create(Vec<u8>),
    /// A hard link whose first name is not restored: its content was restored here already
    /// (the first name's entry was redirected to this link's destination).
    AlreadyDone,
}

/// Restore `targets` from one deletion. Errors are for the deletion as a whole (the archive
/// cannot be opened, the manifest is damaged); per-object failures go into the report.
pub fn restore(
    store: &Store,
    manifest: &Manifest,
    targets: &[Target],
    opts: &RestoreOptions,
    report: &mut Report,
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
    let mut r = Restorer {
        opts,
        report,
        manifest,
        paths: &paths,
        index: &index,
        dirs: HashMap::new(),
        created_dirs: HashSet::new(),
        finalize: Vec::new(),
        retired_at: (Vec::new(), 0),
        first_names: HashMap::new(),
        skipped_below: PathMap::default(),
        roots: Roots::default(),
        buf: Vec::new(),
        current: None,
        filesystems: HashMap::new(),
        fs_error: None,
        flusher: Flusher::start(),
        verbose_out: Vec::new(),
        resume: Resume::default(),
    };
    let jobs = r.plan(targets)?;
    if jobs.iter().all(Option::is_none) {
        return Ok(());
    }
    r.resume = Resume::start(store, &manifest.id);
    let result = r.stream(store, &jobs);
    r.finish();
    // Also after a failure or Ctrl-C: what was made is kept, and may be noted as restored.
    if let Err(err) = r.sync() {
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

/// The target roots of one restore, `(source, dest)`, none below another. A path is looked
/// up by walking up its own parents, so the cost is its depth, never the number of roots:
/// `rm d/*` makes one root per file, and every entry and every object made asks (scanning
/// the list made `unrm --last` of 20,000 operands quadratic, issue 12).
#[derive(Default)]
struct Roots {
    list: Vec<(Vec<u8>, Vec<u8>)>,
    by_source: PathMap<usize>,
    by_dest: PathMap<usize>,
}

impl Roots {
    fn push(&mut self, source: Vec<u8>, dest: Vec<u8>) {
        let i = self.list.len();
        self.by_source.insert_first(source.clone(), i);
        self.by_dest.insert_first(dest.clone(), i);
        self.list.push((source, dest));
    }

    /// The root whose source is `path` or holds it.
    fn holding(&self, path: &[u8]) -> Option<usize> {
        self.by_source.nearest(path).map(|(_, &i)| i)
    }

    /// Where the original `path` is restored to, when a root holds it.
    fn dest_of(&self, path: &[u8]) -> Option<Vec<u8>> {
        let (s, d) = &self.list[self.holding(path)?];
        let mut out = d.clone();
        out.extend_from_slice(&path[s.len()..]);
        Some(out)
    }

    /// The original path the destination `dest` stands for, when a root's dest holds it.
    fn source_of(&self, dest: &[u8]) -> Option<Vec<u8>> {
        let (s, d) = &self.list[*self.by_dest.nearest(dest)?.1];
        let mut out = s.clone();
        out.extend_from_slice(&dest[d.len()..]);
        Some(out)
    }

    /// Whether `dest` is where a root is restored.
    fn is_dest(&self, dest: &[u8]) -> bool {
        self.by_dest.contains(dest)
    }
}

struct Restorer<'a> {
    opts: &'a RestoreOptions,
    report: &'a mut Report,
    manifest: &'a Manifest,
    paths: &'a [Vec<u8>],
    index: &'a HashMap<&'a [u8], usize>,
    /// Open directories by destination path.
    dirs: HashMap<Vec<u8>, OwnedFd>,
    /// Directories this run created (so a directory entry arriving later adopts them).
    created_dirs: HashSet<Vec<u8>>,
    /// Directories to finish at the end: (dest, what to give them, their `(dev, ino)`).
    finalize: Vec<(Vec<u8>, Finish, (u64, u64))>,
    /// The `next` of the last [`Restorer::retire`], and how many of the first `finalize`
    /// entries are above it: those need no comparison of their bytes the next time.
    retired_at: (Vec<u8>, usize),
    /// Where each restored regular file is, by original path (for hard links).
    first_names: HashMap<Vec<u8>, Vec<u8>>,
    /// Destinations whose subtree is skipped (a conflict or failure below a target root).
    skipped_below: PathMap<()>,
    /// (source, dest) of every target root, after conflict resolution.
    roots: Roots,
    /// The copy buffer, reused for every file.
    buf: Vec<u8>,
    /// (original, destination) of the object being made, to find what its missing parents
    /// were.
    current: Option<(Vec<u8>, Vec<u8>)>,
    /// A descriptor on each filesystem a directory was opened on, by device, opened before
    /// anything was written there: synced at the end ([`Restorer::sync`]).
    filesystems: HashMap<u64, OwnedFd>,
    /// A filesystem that could not be noted for the sync: the restore cannot be durable.
    fs_error: Option<io::Error>,
    /// Writes back in the background while the restore goes on.
    flusher: Flusher,
    /// `-v` lines, printed once what they name is durable.
    verbose_out: Vec<u8>,
    /// What a killed restore of this deletion left to finish, and this run's journal.
    resume: Resume,
}

impl Restorer<'_> {
    /// Remember the filesystem of the directory `fd`, to sync it at the end.
    fn note_fs(&mut self, fd: &OwnedFd) {
        let noted = sys::fstat(fd.as_raw_fd()).and_then(|st| {
            if let std::collections::hash_map::Entry::Vacant(slot) = self.filesystems.entry(st.dev)
            {
                // A duplicate shares the open file, and with it the point from which
                // syncfs reports writeback errors.
                slot.insert(fd.try_clone()?);
                self.flusher.add(fd.try_clone()?);
            }
            Ok(())
        });
        if let Err(err) = noted {
            self.fs_error.get_or_insert(err);
        }
    }

    /// Make everything this restore made durable: one `syncfs` per filesystem it wrote to
    /// (see the module's doc). A failure is not retried.
    fn sync(&mut self) -> io::Result<()> {
        if let Some(err) = self.fs_error.take() {
            return Err(err);
        }
        self.flusher.stop()?;
        for fd in self.filesystems.values() {
            crate::fault::check("restore-sync")?;
            sys::syncfs(fd)?;
        }
        Ok(())
    }

    /// A path as the user would type it: relative when it is below the current directory.
    fn shown(&self, path: &[u8]) -> String {
        quote(&display(&self.opts.cwd, path))
    }

    fn fail(&mut self, dest: &[u8], reason: &str) {
        let shown = self.shown(dest);
        stderr_write(format!("unrm: could not restore {shown}: {reason}\n").as_bytes());
        self.report.failed += 1;
    }

    /// Decide each entry's destination; settle conflicts at the target roots.
    fn plan(&mut self, targets: &[Target]) -> Result<Vec<Option<Job>>> {
        let n = self.paths.len();
        let mut jobs: Vec<Option<Job>> = vec![None; n];
        // Outermost targets first, so a target inside another is restored once.
        let mut sorted: Vec<&Target> = targets.iter().collect();
        sorted.sort_by_key(|t| t.source.len());
        for t in sorted {
            if !normal_absolute(&t.dest) || !is_under(&t.dest, &self.opts.anchor) {
                self.fail(&t.dest, "the destination is not a normal absolute path");
                continue;
            }
            if !self.index.contains_key(t.source.as_slice()) {
                self.fail(&t.source, "it is not in this deletion");
                continue;
            }
            if self.roots.holding(&t.source).is_some() {
                continue;
            }
            let dest = match self.settle_root(&t.dest) {
                Ok(Some(d)) => d,
                Ok(None) => continue,
                Err(e) => {
                    self.fail(&t.dest, &format!("{e:#}"));
                    continue;
                }
            };
            self.roots.push(t.source.clone(), dest);
        }
        // The roots hold no one another: each entry is below one of them at most.
        for (job, p) in jobs.iter_mut().zip(self.paths) {
            *job = self.roots.dest_of(p).map(Job::Create);
        }
        // A hard link whose first name is not restored: restore that content at the link.
        for i in 0..n {
            let manifest = self.manifest;
            let e = &manifest.entries[i];
            if e.kind != Kind::Hardlink {
                continue;
            }
            let Some(Job::Create(dest)) = jobs[i].clone() else {
                continue;
            };
            let target = e.link.as_ref().and_then(|l| l.bytes()).unwrap_or_default();
            match self.index.get(target.as_slice()) {
                Some(&t) if t < i && self.manifest.entries[t].kind == Kind::File => {
                    if jobs[t].is_none() {
                        jobs[t] = Some(Job::Create(dest));
                        jobs[i] = Some(Job::AlreadyDone);
                    }
                }
                _ => {
                    jobs[i] = None;
                    self.fail(
                        &dest,
                        "it is a hard link to something that is not an earlier file of the deletion",
                    );
                }
            }
        }
        Ok(jobs)
    }

    /// Look at a target root's destination: free, a conflict to skip, or a name to rename to.
    fn settle_root(&mut self, dest: &[u8]) -> Result<Option<Vec<u8>>> {
        let (parent, name) = split_parent(dest);
        let pfd = match self.existing_dir(parent)? {
            Some(fd) => fd,
            None => return Ok(Some(dest.to_vec())), // parents are missing: it cannot exist
        };
        let cname = sys::cstr(name)?;
        match sys::fstatat(pfd, &cname, false) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(Some(dest.to_vec())),
            Err(e) => Err(e).with_context(|| format!("cannot look at {}", self.shown(dest))),
            Ok(_) => match self.opts.conflict {
                // Restored into (a directory), found identical, or reported, entry by entry.
                Conflict::Skip => Ok(Some(dest.to_vec())),
                Conflict::Rename => {
                    let free = numbered_name(pfd, name)?;
                    let new = join(parent, &free);
                    self.report.renamed.push((dest.to_vec(), new.clone()));
                    Ok(Some(new))
                }
                Conflict::Overwrite => {
                    // All of it goes, or none: an obstacle only part of which can be
                    // removed is left as it is.
                    let shown = display(&self.opts.cwd, dest);
                    if let Some(why) = obstacle::why_not_removable(pfd, &cname, &shown) {
                        self.fail(
                            dest,
                            &format!(
                                "it is in the way and cannot be removed whole ({why}); \
                                 nothing of it was changed"
                            ),
                        );
                        return Ok(None);
                    }
                    // saferm archives, verifies and only then unlinks it (a deletion of its
                    // own in the store); its messages read `unrm: cannot remove ...`.
                    // As `rm -rf -- DEST`.
                    let rm = crate::rules::Options {
                        interactive: crate::rules::InteractiveMode::Never,
                        ignore_missing: true,
                        recursive: true,
                        operands: vec![std::ffi::OsString::from_vec(dest.to_vec())],
                        ..Default::default()
                    };
                    let mut outcome = crate::remove::Outcome::default();
                    let code = crate::remove::delete("unrm", &rm, &mut outcome);
                    // saferm puts the default signal handlers back when it is done.
                    crate::signal::catch();
                    match sys::fstatat(pfd, &cname, false) {
                        Err(e) if e.raw_os_error() == Some(libc::ENOENT) && code == 0 => {
                            self.report.replaced.push(dest.to_vec());
                            Ok(Some(dest.to_vec()))
                        }
                        _ => {
                            // Something changed it after it was looked at.
                            let what = if outcome.kept < outcome.archived {
                                "it is in the way and could be removed only in part (what \
                                 was removed is in the store, as a deletion of its own); \
                                 nothing was restored there"
                            } else {
                                "it is in the way and could not be archived and removed; \
                                 nothing of it was changed"
                            };
                            self.fail(dest, what);
                            Ok(None)
                        }
                    }
                }
            },
        }
    }

    /// An open existing directory at `path` (None when it or a parent does not exist).
    fn existing_dir(&mut self, path: &[u8]) -> Result<Option<RawFd>> {
        match self.dir(path, false) {
            Ok(fd) => Ok(Some(fd)),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
            // Our own errors already name the path.
            Err(e) if e.raw_os_error().is_none() => Err(e.into()),
            Err(e) => Err(e).with_context(|| format!("cannot open {}", self.shown(path))),
        }
    }

    /// The descriptor of the directory at destination `path`, opened from the anchor one
    /// component at a time without following symlinks; missing ones are created when
    /// `create` (with the recorded mode when the deletion has them, applied at the end).
    fn dir(&mut self, path: &[u8], create: bool) -> io::Result<RawFd> {
        if let Some(fd) = self.dirs.get(path) {
            return Ok(fd.as_raw_fd());
        }
        // Up to the nearest open directory (or the anchor), then down one component at a
        // time: a loop, since trees are deeper than the stack.
        let mut start = path;
        while !(self.dirs.contains_key(start) || start == self.opts.anchor.as_slice()) {
            if !is_under(start, &self.opts.anchor) || start == b"/" {
                return Err(io::Error::other("outside the destination"));
            }
            start = split_parent(start).0;
        }
        if !self.dirs.contains_key(start) {
            let c = sys::cstr(start)?;
            let fd = sys::openat(sys::AT_FDCWD, &c, libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
            self.note_fs(&fd);
            self.dirs.insert(start.to_vec(), fd);
        }
        let mut at = start.len();
        let mut raw = self.dirs.get(start).map(|fd| fd.as_raw_fd());
        while at < path.len() {
            let from = if path[..at].ends_with(b"/") {
                at
            } else {
                at + 1
            };
            let end = path[from..]
                .iter()
                .position(|&b| b == b'/')
                .map_or(path.len(), |i| from + i);
            let pfd = raw.ok_or_else(|| io::Error::other("lost a parent directory"))?;
            raw = Some(self.open_below(pfd, &path[..end], create)?);
            // Deep below anything open: the levels passed on the way down are not kept.
            if self.dirs.len() > 2 * MAX_OPEN_DIRS && &path[..at] != self.opts.anchor.as_slice() {
                self.dirs.remove(&path[..at]);
            }
            at = end;
        }
        raw.ok_or_else(|| io::Error::other("lost a parent directory"))
    }

    /// Open (or, when `create`, make) the directory `path` in the open directory `pfd`
    /// above it, without following a symlink.
    fn open_below(&mut self, pfd: RawFd, path: &[u8], create: bool) -> io::Result<RawFd> {
        let (_, name) = split_parent(path);
        let cname = sys::cstr(name)?;
        let recorded = |r: &Self| {
            r.original_of(path)
                .and_then(|o| r.index.get(o.as_slice()).copied())
                .filter(|&i| r.manifest.entries[i].kind == Kind::Dir)
        };
        let fd = match sys::open_dir_nofollow(pfd, &cname) {
            Ok(fd) => {
                // Made by a restore of this deletion that was killed: finished now.
                let id = sys::fstat(fd.as_raw_fd()).map_or((0, 0), |st| (st.dev, st.ino));
                if self.resume.made_before(id) && !self.created_dirs.contains(path) {
                    if let Some(i) = recorded(self) {
                        self.created_dirs.insert(path.to_vec());
                        self.finalize.push((path.to_vec(), Finish::Recorded(i), id));
                    }
                }
                fd
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) && create => {
                let recorded = recorded(self);
                let mode = if recorded.is_some() { 0o700 } else { 0o777 };
                let made = sys::mkdirat_exist_ok(pfd, &cname, mode)?;
                let fd = sys::open_dir_nofollow(pfd, &cname)?;
                self.created_dirs.insert(path.to_vec());
                let id = sys::fstat(fd.as_raw_fd()).map_or((0, 0), |st| (st.dev, st.ino));
                if made {
                    self.resume.made_dir(id);
                }
                if let Some(i) = recorded {
                    self.finalize.push((path.to_vec(), Finish::Recorded(i), id));
                }
                fd
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::ENOTDIR)) => {
                let symlink = sys::fstatat(pfd, &cname, false).is_ok_and(|st| st.is_symlink());
                let what = if symlink {
                    "is a symlink (restores never follow one)"
                } else {
                    "is not a directory"
                };
                return Err(io::Error::other(format!("{} {what}", self.shown(path))));
            }
            Err(e) => return Err(e),
        };
        // An existing directory may be a mount point: another filesystem to sync.
        self.note_fs(&fd);
        let raw = fd.as_raw_fd();
        self.dirs.insert(path.to_vec(), fd);
        Ok(raw)
    }

    /// The original path a destination stands for, when known.
    fn original_of(&self, dest: &[u8]) -> Option<Vec<u8>> {
        // A parent of the object being made: the same tail below both.
        if let Some((o, d)) = &self.current {
            if is_under(d, dest) && d.len() > dest.len() {
                let tail = &d[dest.len()..];
                if let Some(head) = o.strip_suffix(tail) {
                    return Some(head.to_vec());
                }
            }
        }
        if let Some(o) = self.roots.source_of(dest) {
            return Some(o);
        }
        // In place, the parents above a target are where they were.
        (self.opts.anchor == b"/").then(|| dest.to_vec())
    }

    fn skipped(&self, dest: &[u8]) -> bool {
        // By the lengths of its parents, as the roots are: one conflict per operand must not
        // cost a scan per entry, nor a deep entry a probe per level.
        !self.skipped_below.is_empty() && self.skipped_below.nearest(dest).is_some()
    }

    /// Decode the archive from the frame holding the first wanted entry to the last one.
    fn stream(&mut self, store: &Store, jobs: &[Option<Job>]) -> Result<()> {
        let first = jobs.iter().position(Option::is_some).unwrap_or(0);
        let last = jobs.iter().rposition(Option::is_some).unwrap_or(0);
        let archive = self
            .manifest
            .archive
            .as_ref()
            .ok_or_else(|| anyhow!("deletion {} has no archive", self.manifest.id))?;
        let mut file = store.open_published(&archive.path)?;
        // The frame to start from: the last one at or before the first wanted entry, and an
        // entry must start exactly there.
        let want = self.manifest.entries[first].offset;
        let mut start = (0usize, 0u64);
        for f in &self.manifest.frames {
            if f.tar_offset <= want {
                if let Some(i) = self.manifest.entries[..=first]
                    .iter()
                    .position(|e| e.offset == f.tar_offset)
                {
                    start = (i, f.compressed_offset);
                }
            }
        }
        file.seek(SeekFrom::Start(start.1))
            .with_context(|| format!("cannot read {}", quote(archive.path.as_bytes())))?;
        let decoder =
            zstd::stream::read::Decoder::new(file).context("cannot start decoding the archive")?;
        let mut tar = tar::Archive::new(decoder);
        let entries = tar.entries().context("cannot read the archive")?;
        let mut i = start.0;
        for entry in entries {
            if i > last {
                break;
            }
            if crate::signal::caught().is_some() {
                self.abandon(jobs, i);
                bail!("interrupted");
            }
            let mut entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    self.abandon(jobs, i);
                    bail!("the archive is damaged at entry {i}: {e}");
                }
            };
            let paths = self.paths;
            let want_path = &paths[i];
            if entry.path_bytes().as_ref() != &want_path[1..] {
                self.abandon(jobs, i);
                bail!(
                    "the archive does not match its manifest at entry {i} ({} instead of {})",
                    quote(&entry.path_bytes()),
                    quote(want_path)
                );
            }
            let kind = crate::verify::kind_of(entry.header().entry_type());
            if kind != Some(self.manifest.entries[i].kind) {
                self.abandon(jobs, i);
                bail!(
                    "the archive does not match its manifest at {} (type)",
                    quote(want_path)
                );
            }
            if let Some(Job::Create(dest)) = &jobs[i] {
                let dest = dest.clone();
                if !self.skipped(&dest) {
                    self.retire(&dest);
                    let (xattrs, sparse) = pax_xattrs(&mut entry);
                    let data = Data {
                        read: &mut entry,
                        sparse,
                    };
                    self.create(i, &dest, data, &xattrs);
                }
            }
            i += 1;
        }
        if i <= last {
            self.abandon(jobs, i);
            bail!("the archive ends before entry {i} of its manifest");
        }
        Ok(())
    }

    /// Count what can no longer be restored after the stream broke at entry `from`.
    fn abandon(&mut self, jobs: &[Option<Job>], from: usize) {
        let n = jobs[from..]
            .iter()
            .filter(|j| matches!(j, Some(Job::Create(_))))
            .count();
        self.report.failed += n as u64;
    }

    /// Create one object at `dest` from entry `i`.
    fn create(&mut self, i: usize, dest: &[u8], data: Data<'_>, xattrs: &[(Vec<u8>, Vec<u8>)]) {
        let manifest = self.manifest;
        let e = &manifest.entries[i];
        let (parent, name) = split_parent(dest);
        self.current = Some((self.paths[i].clone(), dest.to_vec()));
        let pfd = match self.dir(parent, true) {
            Ok(fd) => fd,
            Err(err) => {
                self.fail(dest, &reason(&err));
                if e.kind == Kind::Dir {
                    self.skipped_below.insert_first(dest.to_vec(), ());
                }
                return;
            }
        };
        let cname = match sys::cstr(name) {
            Ok(c) => c,
            Err(err) => return self.fail(dest, &reason(&err)),
        };
        // Something is there already: a directory is restored into, an identical object is
        // left as it is (so a restore can be run again after an interruption or a partial
        // restore), anything else is a conflict.
        let ours = e.kind == Kind::Dir && self.created_dirs.contains(dest);
        if !ours {
            match sys::fstatat(pfd, &cname, false) {
                Ok(st) => return self.existing(i, pfd, &cname, dest, &st),
                Err(err) if err.raw_os_error() == Some(libc::ENOENT) => {}
                Err(err) => return self.fail(dest, &reason(&err)),
            }
        }
        let result = match e.kind {
            Kind::Dir => self.create_dir(i, pfd, &cname, dest, xattrs),
            Kind::File => self.create_file(e, pfd, &cname, dest, data, xattrs),
            Kind::Hardlink => self.create_link(e, pfd, &cname),
            Kind::Symlink => create_symlink(e, pfd, &cname, self.opts.euid),
            Kind::Fifo | Kind::Char | Kind::Block => create_node(e, pfd, &cname, self.opts.euid),
            Kind::Socket => Err(io::Error::other("sockets are not archived")),
        };
        match result {
            Ok(Done { owner_set }) => {
                if !owner_set {
                    self.report.ownership_not_set += 1;
                }
                if e.kind == Kind::File {
                    self.first_names
                        .insert(self.paths[i].clone(), dest.to_vec());
                }
                self.report.restored += 1;
                if self.roots.is_dest(dest) {
                    self.report.roots_restored.push(dest.to_vec());
                }
                if self.opts.verbose {
                    let line = format!("restored {}\n", self.shown(dest));
                    self.verbose_out.extend_from_slice(line.as_bytes());
                }
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) if err.raw_os_error() == Some(libc::EEXIST) => self.conflict(e, dest),
            Err(err) => {
                self.fail(dest, &reason(&err));
                if e.kind == Kind::Dir {
                    self.skipped_below.insert_first(dest.to_vec(), ());
                }
            }
        }
    }

    fn conflict(&mut self, e: &Entry, dest: &[u8]) {
        stderr_write(
            format!(
                "unrm: could not restore {}: something else is there (--rename restores beside it)\n",
                self.shown(dest)
            )
            .as_bytes(),
        );
        self.report.conflicts.push(dest.to_vec());
        if e.kind == Kind::Dir {
            self.skipped_below.insert_first(dest.to_vec(), ());
        }
    }

    /// Entry `i` meets an existing object `st` at its destination.
    fn existing(&mut self, i: usize, pfd: RawFd, name: &CStr, dest: &[u8], st: &sys::Stat) {
        let manifest = self.manifest;
        let e = &manifest.entries[i];
        let same = match e.kind {
            Kind::Dir if st.is_dir() => {
                // Restore into it, and give it its own mtime back afterwards.
                if self.dir(dest, false).is_err() {
                    return self.conflict(e, dest);
                }
                let id = (st.dev, st.ino);
                // One a killed restore of this deletion made gets its recorded metadata.
                let finish = if self.resume.made_before(id) {
                    Finish::Recorded(i)
                } else {
                    Finish::KeepTime(st.mtime, st.mtime_nsec)
                };
                // (Opening it may have found it made before, and queued it already.)
                if !self.created_dirs.contains(dest) {
                    self.finalize.push((dest.to_vec(), finish, id));
                }
                true
            }
            Kind::File => st.is_file() && same_content(pfd, name, e),
            Kind::Hardlink => {
                let target = e.link.as_ref().and_then(|l| l.bytes()).unwrap_or_default();
                let first = self
                    .index
                    .get(target.as_slice())
                    .map(|&t| &manifest.entries[t]);
                st.is_file() && first.is_some_and(|f| same_content(pfd, name, f))
            }
            Kind::Symlink => {
                st.is_symlink()
                    && sys::readlinkat(pfd, name).ok() == e.link.as_ref().and_then(|l| l.bytes())
            }
            Kind::Fifo => st.file_type() == libc::S_IFIFO,
            Kind::Char | Kind::Block => {
                let ft = if e.kind == Kind::Char {
                    libc::S_IFCHR
                } else {
                    libc::S_IFBLK
                };
                st.file_type() == ft
                    && Some(sys::dev_major_minor(st.rdev)) == e.rdev_major.zip(e.rdev_minor)
            }
            Kind::Socket | Kind::Dir => false,
        };
        if !same {
            return self.conflict(e, dest);
        }
        if e.kind == Kind::File {
            self.first_names
                .insert(self.paths[i].clone(), dest.to_vec());
        }
        self.report.already += 1;
        if self.roots.is_dest(dest) {
            self.report.roots_restored.push(dest.to_vec());
        }
    }

    fn create_dir(
        &mut self,
        i: usize,
        pfd: RawFd,
        name: &CStr,
        dest: &[u8],
        xattrs: &[(Vec<u8>, Vec<u8>)],
    ) -> io::Result<Done> {
        if self.created_dirs.contains(dest) {
            // Made earlier in this run as a parent: it becomes this entry.
            if !self.finalize.iter().any(|(d, _, _)| d == dest) {
                let fd = self.dir(dest, false)?;
                let st = sys::fstat(fd)?;
                self.finalize
                    .push((dest.to_vec(), Finish::Recorded(i), (st.dev, st.ino)));
            }
        } else {
            // SAFETY: name is NUL-terminated.
            if unsafe { libc::mkdirat(pfd, name.as_ptr(), 0o700) } < 0 {
                return Err(io::Error::last_os_error());
            }
            let fd = sys::open_dir_nofollow(pfd, name)?;
            let st = sys::fstat(fd.as_raw_fd())?;
            self.resume.made_dir((st.dev, st.ino));
            self.dirs.insert(dest.to_vec(), fd);
            self.created_dirs.insert(dest.to_vec());
            self.finalize
                .push((dest.to_vec(), Finish::Recorded(i), (st.dev, st.ino)));
        }
        let fd = self.dir(dest, false)?;
        self.set_xattrs(fd, dest, xattrs);
        Ok(Done { owner_set: true })
    }

    fn create_file(
        &mut self,
        e: &Entry,
        pfd: RawFd,
        name: &CStr,
        dest: &[u8],
        data: Data<'_>,
        xattrs: &[(Vec<u8>, Vec<u8>)],
    ) -> io::Result<Done> {
        // Written under a temporary name and renamed into place (without replacing) once
        // complete: an interrupted or damaged restore never leaves a partial file under
        // the real name.
        self.resume.sweep(pfd);
        let (tmp, fd) = create_temp_file(pfd)?;
        let mut file = File::from(fd);
        let result = self
            .fill_file(e, &mut file, dest, data, xattrs)
            .and_then(|done| {
                // Failure injection (debug builds): unrm is killed (-9) with this file
                // written under its temp name, its directories not finished.
                if crate::fault::names("restore-kill", dest) {
                    crate::signal::raise_kill();
                }
                sys::rename_noreplace(pfd, &tmp, pfd, name)?;
                Ok(done)
            });
        if result.is_err() {
            remove_partial(pfd, &tmp, &file);
        }
        result
    }

    /// Write, check and give its metadata to a file being restored.
    fn fill_file(
        &mut self,
        e: &Entry,
        file: &mut File,
        dest: &[u8],
        data: Data<'_>,
        xattrs: &[(Vec<u8>, Vec<u8>)],
    ) -> io::Result<Done> {
        let Data { read: data, sparse } = data;
        let mut hash = ContentHash::of(e);
        let copied = match sparse {
            Ok(None) => {
                let mut buf = std::mem::take(&mut self.buf);
                buf.resize(256 * 1024, 0);
                let copied = copy_hashed(data, file, &mut buf, &mut hash);
                self.buf = buf;
                copied
            }
            Ok(Some((size, stored))) => copy_sparse(data, file, size, stored, &mut hash),
            Err(err) => Err(err),
        };
        match copied {
            Ok(()) if hash.matches(e.size) => {}
            Ok(()) => {
                return Err(io::Error::other(
                    "the archived copy is damaged (blake3 mismatch); nothing was left in its place",
                ))
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => return Err(err),
            Err(err) => {
                return Err(io::Error::other(format!(
                    "cannot read it from the archive ({}); nothing was left in its place",
                    reason(&err)
                )))
            }
        }
        // chown clears file capabilities (and setuid): security.capability goes on after
        // it; the others before the mode, which may take away the write permission that
        // user.* attributes need.
        let (caps, others): (Vec<_>, Vec<_>) = xattrs
            .iter()
            .cloned()
            .partition(|(n, _)| n == b"security.capability");
        self.set_xattrs(file.as_raw_fd(), dest, &others);
        let owner_set = set_owner_fd(file.as_raw_fd(), e, self.opts.euid)?;
        fchmod(file.as_raw_fd(), e.mode)?;
        self.set_xattrs(file.as_raw_fd(), dest, &caps);
        set_times_fd(file.as_raw_fd(), e)?;
        Ok(Done { owner_set })
    }

    fn create_link(&mut self, e: &Entry, pfd: RawFd, name: &CStr) -> io::Result<Done> {
        let target = e.link.as_ref().and_then(|l| l.bytes()).unwrap_or_default();
        let Some(first) = self.first_names.get(&target).cloned() else {
            return Err(io::Error::other(
                "the file it is a hard link of was not restored",
            ));
        };
        let (tparent, tname) = split_parent(&first);
        let tfd = self.dir(tparent, false)?;
        let ctname = sys::cstr(tname)?;
        // SAFETY: both names are NUL-terminated; flags 0: a symlink is linked, not followed.
        if unsafe { libc::linkat(tfd, ctname.as_ptr(), pfd, name.as_ptr(), 0) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Done { owner_set: true })
    }

    fn set_xattrs(&mut self, fd: RawFd, dest: &[u8], xattrs: &[(Vec<u8>, Vec<u8>)]) {
        for (name, value) in xattrs {
            let Ok(cname) = sys::cstr(name) else { continue };
            // SAFETY: cname is NUL-terminated; value is a valid buffer of its length.
            let ret = unsafe {
                libc::fsetxattr(fd, cname.as_ptr(), value.as_ptr().cast(), value.len(), 0)
            };
            if ret < 0 {
                let err = io::Error::last_os_error();
                if matches!(
                    err.raw_os_error(),
                    Some(libc::EPERM) | Some(libc::ENOTSUP) | Some(libc::EACCES)
                ) {
                    self.report.xattrs_not_set += 1;
                } else {
                    stderr_write(
                        format!(
                            "unrm: could not restore the attribute {} of {}: {}\n",
                            String::from_utf8_lossy(name),
                            self.shown(dest),
                            reason(&err)
                        )
                        .as_bytes(),
                    );
                    self.report.failed += 1;
                }
            }
        }
    }

    /// Give the directories still open their recorded metadata, then close them.
    fn finish(&mut self) {
        let list = std::mem::take(&mut self.finalize);
        self.retired_at = (Vec::new(), 0);
        self.finalize_dirs(&list);
        self.dirs.clear();
    }

    /// Keep the number of open directories bounded: once there are many, finish and close
    /// every directory that is not above `next` (the archive lists a directory's subtree
    /// contiguously, so they are complete; one that is needed again is reopened), and if
    /// the ones above `next` are still too many (a deep tree), close the shallowest of them
    /// too: they are finished at the end, reopened then.
    fn retire(&mut self, next: &[u8]) {
        if self.dirs.len() < MAX_OPEN_DIRS {
            return;
        }
        // Those above the last `next` are above this one when they are no longer than the
        // part both share: a deep tree's thousands of parents are not compared byte by
        // byte at every call.
        let (last, known) = std::mem::take(&mut self.retired_at);
        let shared = last.iter().zip(next).take_while(|(a, b)| a == b).count();
        let (done, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.finalize)
            .into_iter()
            .enumerate()
            .partition(|(i, (d, _, _))| {
                let above = if *i < known && d.len() <= shared {
                    d.len() == next.len() || next[d.len()] == b'/' || d.as_slice() == b"/"
                } else {
                    is_under(next, d)
                };
                !above
            });
        let done: Vec<_> = done.into_iter().map(|(_, e)| e).collect();
        self.finalize = keep.into_iter().map(|(_, e)| e).collect();
        self.retired_at = (next.to_vec(), self.finalize.len());
        self.finalize_dirs(&done);
        let anchor = self.opts.anchor.as_slice();
        self.dirs
            .retain(|d, _| is_under(next, d) || d.as_slice() == anchor);
        if self.dirs.len() >= MAX_OPEN_DIRS {
            let mut above: Vec<usize> = self
                .dirs
                .keys()
                .filter(|d| d.as_slice() != anchor)
                .map(Vec::len)
                .collect();
            above.sort_unstable();
            let cut = above[above.len() - MAX_OPEN_DIRS / 2];
            self.dirs
                .retain(|d, _| d.len() >= cut || d.as_slice() == anchor);
        }
    }

    /// Give directories their recorded owner, mode and mtime (or, for one that was there,
    /// its own mtime back), latest (deepest) first, and close them. One that was closed is
    /// opened again as `..` of the one finished before it when it is its parent (and still
    /// has its `(dev, ino)`), else by name from the nearest open directory above it.
    fn finalize_dirs(&mut self, list: &[(Vec<u8>, Finish, (u64, u64))]) {
        let mut below: Option<(&[u8], OwnedFd)> = None;
        for (dest, finish, id) in list.iter().rev() {
            let from_below = below
                .take()
                .filter(|(b, _)| split_parent(b).0 == dest.as_slice());
            let fd = match self.dirs.remove(dest) {
                Some(fd) => fd,
                None => match from_below.and_then(|(_, b)| parent_of(&b, *id)) {
                    Some(fd) => fd,
                    None => match self.dir(dest, false) {
                        Ok(_) => match self.dirs.remove(dest) {
                            Some(fd) => fd,
                            None => continue,
                        },
                        Err(err) => {
                            self.fail(dest, &reason(&err));
                            continue;
                        }
                    },
                },
            };
            let raw = fd.as_raw_fd();
            let res = match *finish {
                Finish::Recorded(i) => {
                    let e = &self.manifest.entries[i];
                    set_owner_fd(raw, e, self.opts.euid).and_then(|owner_set| {
                        fchmod(raw, e.mode)?;
                        set_times_fd(raw, e)?;
                        Ok(owner_set)
                    })
                }
                Finish::KeepTime(sec, nsec) => set_mtime_fd(raw, sec, nsec).map(|()| true),
            };
            match res {
                Ok(true) => {}
                Ok(false) => self.report.ownership_not_set += 1,
                Err(err) => self.fail(dest, &reason(&err)),
            }
            if dest.as_slice() == self.opts.anchor.as_slice() {
                self.dirs.insert(dest.clone(), fd);
            } else {
                below = Some((dest, fd));
            }
        }
    }
}

/// The directory above the one open at `fd`, if it is still `id` (`..` is never a symlink).
fn parent_of(fd: &OwnedFd, id: (u64, u64)) -> Option<OwnedFd> {
    let up = sys::open_dir_nofollow(fd.as_raw_fd(), c"..").ok()?;
    let st = sys::fstat(up.as_raw_fd()).ok()?;
    ((st.dev, st.ino) == id).then_some(up)
}

/// A thread that syncs the filesystems a restore writes to every [`Flusher::PERIOD`] while
/// it goes on, so that the data is written back while the next files are decoded and the
/// final sync has little left to wait for. Its errors are the restore's.
struct Flusher {
    to: Option<std::sync::mpsc::Sender<OwnedFd>>,
    thread: Option<std::thread::JoinHandle<io::Result<()>>>,
}

impl Flusher {
    const PERIOD: std::time::Duration = std::time::Duration::from_millis(300);

    fn start() -> Flusher {
        let (to, from) = std::sync::mpsc::channel::<OwnedFd>();
        let thread = std::thread::Builder::new()
            .name("unrm-flush".into())
            .spawn(move || {
                use std::sync::mpsc::RecvTimeoutError;
                let mut fds = Vec::new();
                let mut next = std::time::Instant::now() + Self::PERIOD;
                loop {
                    let wait = next.saturating_duration_since(std::time::Instant::now());
                    match from.recv_timeout(wait) {
                        Ok(fd) => fds.push(fd),
                        Err(RecvTimeoutError::Timeout) => {
                            for fd in &fds {
                                sys::syncfs(fd)?;
                            }
                            next = std::time::Instant::now() + Self::PERIOD;
                        }
                        Err(RecvTimeoutError::Disconnected) => return Ok(()),
                    }
                }
            })
            .ok();
        Flusher {
            to: thread.is_some().then_some(to),
            thread,
        }
    }

    fn add(&mut self, fd: OwnedFd) {
        if let Some(to) = &self.to {
            let _ = to.send(fd);
        }
    }

    /// Stop the thread; the first error it met.
    fn stop(&mut self) -> io::Result<()> {
        self.to = None;
        match self.thread.take().map(|t| t.join()) {
            None | Some(Ok(Ok(()))) => Ok(()),
            Some(Ok(Err(err))) => Err(err),
            Some(Err(_)) => Err(io::Error::other("the writeback thread failed")),
        }
    }
}

/// Open directories kept before finished ones are closed ([`Restorer::retire`]).
const MAX_OPEN_DIRS: usize = 16;

/// What a directory gets once its contents are restored.
#[derive(Clone, Copy, Debug)]
enum Finish {
    /// The recorded owner, mode and mtime of this entry (a directory this run made).
    Recorded(usize),
    /// Its own mtime from before (a directory that was there and was restored into).
    KeepTime(i64, i64),
}

/// The outcome of creating one object.
struct Done {
    /// False when the recorded owner could not be set (not root).
    owner_set: bool,
}

fn reason(err: &io::Error) -> String {
    sys::strerror(err)
}

/// Whether an entry is stored sparse (`crate::sparse`): its real size and stored size.
type Sparse = io::Result<Option<(u64, u64)>>;

/// An entry's data as the archive stores it.
struct Data<'a> {
    read: &'a mut dyn Read,
    sparse: Sparse,
}

type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

/// The `SCHILY.xattr.*` records of an entry's PAX header, and whether it is sparse.
fn pax_xattrs<R: Read>(entry: &mut tar::Entry<'_, R>) -> (Xattrs, Sparse) {
    let stored = entry.size();
    let mut out = Vec::new();
    let mut records = Vec::new();
    if let Ok(Some(exts)) = entry.pax_extensions() {
        for ext in exts.flatten() {
            if let Some(name) = ext.key_bytes().strip_prefix(b"SCHILY.xattr.") {
                out.push((name.to_vec(), ext.value_bytes().to_vec()));
            } else if ext.key_bytes().starts_with(b"GNU.sparse.") {
                records.push((ext.key_bytes().to_vec(), ext.value_bytes().to_vec()));
            }
        }
    }
    let sparse = crate::sparse::realsize(records.iter().map(|(k, v)| (&k[..], &v[..])))
        .map(|size| size.map(|size| (size, stored)));
    (out, sparse)
}

/// Write a sparse entry's data regions at their offsets (the holes stay holes) and set the
/// length, feeding the logical content to `hash`.
fn copy_sparse(
    src: &mut dyn Read,
    dst: &File,
    size: u64,
    stored: u64,
    hash: &mut ContentHash,
) -> io::Result<()> {
    let regions = crate::sparse::read_map(src, stored, size)?;
    let complete = crate::sparse::hash_stored(src, &regions, size, hash, Some(dst))?;
    if crate::fault::active("restore-signal") {
        crate::signal::raise_interrupt();
    }
    if crate::signal::caught().is_some() {
        return Err(io::Error::from(io::ErrorKind::Interrupted));
    }
    dst.set_len(size)?;
    if !complete {
        return Err(io::Error::other("the archive's sparse entry is short"));
    }
    Ok(())
}

/// Copy everything from `src` to `dst`, feeding it to `hash`.
fn copy_hashed(
    src: &mut dyn Read,
    dst: &mut File,
    buf: &mut [u8],
    hash: &mut ContentHash,
) -> io::Result<()> {
    let mut total = 0u64;
    loop {
        let n = match src.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hash.data(&buf[..n]);
        // Runs of zeros become holes, so a sparse file comes back sparse (as `cp
        // --sparse=auto` makes it); the length is set at the end.
        if n >= 4096 && buf[..n].iter().all(|&b| b == 0) {
            dst.seek(SeekFrom::Current(n as i64))?;
        } else {
            dst.write_all(&buf[..n])?;
        }
        total += n as u64;
        // Failure injection (debug builds): Ctrl-C arrives while a file is being written.
        if crate::fault::active("restore-signal") {
            crate::signal::raise_interrupt();
        }
        if crate::signal::caught().is_some() {
            return Err(io::Error::from(io::ErrorKind::Interrupted));
        }
    }
    dst.set_len(total)?;
    Ok(())
}

/// Whether the regular file `name` below `pfd` has the size and hash entry `e` records.
fn same_content(pfd: RawFd, name: &CStr, e: &Entry) -> bool {
    let Ok(fd) = sys::open_file_nofollow(pfd, name) else {
        return false;
    };
    let mut file = File::from(fd);
    match sys::fstat(file.as_raw_fd()) {
        Ok(st) if st.is_file() && st.size == e.size => {}
        _ => return false,
    }
    let mut hash = ContentHash::of(e);
    let mut buf = vec![0u8; 256 * 1024];
    // Only the data is read: a hole is zeros, which `blake3_blocks` hashes for nothing.
    let holes = match crate::sparse::data_map(&file, e.size) {
        Ok(regions) => regions,
        Err(_) => return false,
    };
    let read = |file: &mut File, hash: &mut ContentHash, buf: &mut [u8]| -> io::Result<()> {
        if let Some(regions) = &holes {
            for r in regions {
                hash.zeros(r.offset.saturating_sub(hash.len()));
                file.seek(SeekFrom::Start(r.offset))?;
                feed(&mut Read::take(&mut *file, r.len), hash, buf)?;
            }
            hash.zeros(e.size.saturating_sub(hash.len()));
            file.seek(SeekFrom::Start(e.size))?;
        }
        // The rest: all of a file without holes; anything past the size otherwise.
        feed(file, hash, buf)
    };
    read(&mut file, &mut hash, &mut buf).is_ok() && hash.matches(e.size)
}

/// Feed everything `src` gives to `hash`.
fn feed(src: &mut impl Read, hash: &mut ContentHash, buf: &mut [u8]) -> io::Result<()> {
    loop {
        match src.read(buf) {
            Ok(0) => return Ok(()),
            Ok(n) => hash.data(&buf[..n]),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        }
    }
}

/// A new, private (0600) file with a temporary name in the directory `pfd`.
fn create_temp_file(pfd: RawFd) -> io::Result<(CString, OwnedFd)> {
    loop {
        let name = format!(".unrm.{}.{:08x}.tmp", std::process::id(), sys::random_u32());
        let cname = sys::cstr(name.as_bytes())?;
        match sys::openat(
            pfd,
            &cname,
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_NOCTTY,
            0o600,
        ) {
            Ok(fd) => return Ok((cname, fd)),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Remove a file this run created and found damaged, if the name still is that file.
fn remove_partial(pfd: RawFd, name: &CStr, file: &File) {
    let (Ok(ours), Ok(there)) = (sys::fstat(file.as_raw_fd()), sys::fstatat(pfd, name, false))
    else {
        return;
    };
    if (ours.dev, ours.ino) == (there.dev, there.ino) {
        let _ = crate::unlink::remove_partial_restore(pfd, name);
    }
}

/// Set the recorded owner when it differs; false when not permitted (not root).
fn set_owner_fd(fd: RawFd, e: &Entry, euid: u32) -> io::Result<bool> {
    let st = sys::fstat(fd)?;
    if (st.uid, st.gid) == (e.uid, e.gid) {
        return Ok(true);
    }
    // SAFETY: plain syscall on a valid descriptor.
    if unsafe { libc::fchown(fd, e.uid, e.gid) } < 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EPERM) && euid != 0 {
            return Ok(false);
        }
        return Err(err);
    }
    Ok(true)
}

fn set_owner_at(pfd: RawFd, name: &CStr, e: &Entry, euid: u32) -> io::Result<bool> {
    let st = sys::fstatat(pfd, name, false)?;
    if (st.uid, st.gid) == (e.uid, e.gid) {
        return Ok(true);
    }
    // SAFETY: name is NUL-terminated; AT_SYMLINK_NOFOLLOW changes a symlink itself.
    if unsafe { libc::fchownat(pfd, name.as_ptr(), e.uid, e.gid, libc::AT_SYMLINK_NOFOLLOW) } < 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EPERM) && euid != 0 {
            return Ok(false);
        }
        return Err(err);
    }
    Ok(true)
}

fn fchmod(fd: RawFd, mode: u32) -> io::Result<()> {
    // SAFETY: plain syscall on a valid descriptor.
    if unsafe { libc::fchmod(fd, (mode & 0o7777) as libc::mode_t) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn times_of(e: &Entry) -> [libc::timespec; 2] {
    [
        libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
        libc::timespec {
            tv_sec: e.mtime as libc::time_t,
            tv_nsec: e.mtime_nsec.min(999_999_999) as libc::c_long,
        },
    ]
}

fn set_mtime_fd(fd: RawFd, sec: i64, nsec: i64) -> io::Result<()> {
    let times = [
        libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
        libc::timespec {
            tv_sec: sec as libc::time_t,
            tv_nsec: nsec as libc::c_long,
        },
    ];
    // SAFETY: times points to two timespecs.
    if unsafe { libc::futimens(fd, times.as_ptr()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn set_times_fd(fd: RawFd, e: &Entry) -> io::Result<()> {
    let times = times_of(e);
    // SAFETY: times points to two timespecs.
    if unsafe { libc::futimens(fd, times.as_ptr()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn set_times_at(pfd: RawFd, name: &CStr, e: &Entry) -> io::Result<()> {
    let times = times_of(e);
    // SAFETY: name is NUL-terminated; times points to two timespecs.
    if unsafe {
        libc::utimensat(
            pfd,
            name.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    } < 0
    {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn create_symlink(e: &Entry, pfd: RawFd, name: &CStr, euid: u32) -> io::Result<Done> {
    let target = e.link.as_ref().and_then(|l| l.bytes()).unwrap_or_default();
    let ctarget = sys::cstr(&target)?;
    // SAFETY: both strings are NUL-terminated.
    if unsafe { libc::symlinkat(ctarget.as_ptr(), pfd, name.as_ptr()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let owner_set = set_owner_at(pfd, name, e, euid)?;
    set_times_at(pfd, name, e)?;
    Ok(Done { owner_set })
}

fn create_node(e: &Entry, pfd: RawFd, name: &CStr, euid: u32) -> io::Result<Done> {
    let (ftype, dev) = match e.kind {
        Kind::Fifo => (libc::S_IFIFO, 0),
        Kind::Char | Kind::Block => {
            if euid != 0 {
                return Err(io::Error::other("only root can create device nodes"));
            }
            let ft = if e.kind == Kind::Char {
                libc::S_IFCHR
            } else {
                libc::S_IFBLK
            };
            (
                ft,
                libc::makedev(e.rdev_major.unwrap_or(0), e.rdev_minor.unwrap_or(0)),
            )
        }
        _ => return Err(io::Error::other("not a special file")),
    };
    // SAFETY: name is NUL-terminated.
    if unsafe { libc::mknodat(pfd, name.as_ptr(), ftype | 0o600, dev) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let owner_set = set_owner_at(pfd, name, e, euid)?;
    chmod_node(pfd, name, e.mode, e.kind == Kind::Fifo)?;
    set_times_at(pfd, name, e)?;
    Ok(Done { owner_set })
}

/// Give the special file `name` below `pfd` its mode: the new node itself, never a symlink
/// swapped into its place, and without `/proc` (a chroot, a minimal container), through
/// which glibc's `fchmodat(AT_SYMLINK_NOFOLLOW)` works. `fchmodat2` (Linux 6.6) takes the
/// flag itself; before it (or where a seccomp filter refuses it), a FIFO is opened
/// (`O_NONBLOCK`: no writer is needed; `O_NOFOLLOW`) and changed through its descriptor.
/// A device node is never opened (that can act on the device): it is left to glibc.
fn chmod_node(pfd: RawFd, name: &CStr, mode: u32, fifo: bool) -> io::Result<()> {
    let mode = (mode & 0o7777) as libc::mode_t;
    let unsupported = |err: &io::Error| {
        matches!(
            err.raw_os_error(),
            Some(libc::ENOSYS) | Some(libc::EPERM) | Some(libc::EOPNOTSUPP)
        )
    };
    if !crate::fault::active("no-fchmodat2") {
        // SAFETY: name is NUL-terminated; fchmodat2 takes (dirfd, path, mode, flags).
        let ret = unsafe {
            libc::syscall(
                libc::SYS_fchmodat2,
                pfd,
                name.as_ptr(),
                mode as libc::c_uint,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        if ret == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if !unsupported(&err) {
            return Err(err);
        }
    }
    if fifo {
        let flags = libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_NOCTTY;
        let fd = sys::openat(pfd, name, flags, 0)?;
        if sys::fstat(fd.as_raw_fd())?.file_type() != libc::S_IFIFO {
            return Err(io::Error::other("it was replaced while being restored"));
        }
        return fchmod(fd.as_raw_fd(), mode);
    }
    // SAFETY: name is NUL-terminated.
    if unsafe { libc::fchmodat(pfd, name.as_ptr(), mode, libc::AT_SYMLINK_NOFOLLOW) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `NAME.~N~` with N one more than the highest numbered backup beside NAME (GNU's rule).
fn numbered_name(pfd: RawFd, name: &[u8]) -> io::Result<Vec<u8>> {
    let mut highest = 0u64;
    for ent in sys::read_dir(pfd)? {
        let n = ent.name.as_bytes();
        if let Some(rest) = n.strip_prefix(name).and_then(|r| r.strip_prefix(b".~")) {
            if let Some(num) = rest.strip_suffix(b"~") {
                if let Some(v) = std::str::from_utf8(num).ok().and_then(|s| s.parse().ok()) {
                    highest = highest.max(v);
                }
            }
        }
    }
    let mut out = name.to_vec();
    out.extend_from_slice(format!(".~{}~", highest + 1).as_bytes());
    Ok(out)
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

    #[test]
    fn a_root_is_found_through_the_parents_of_a_path_never_by_a_scan_of_the_roots() {
        // `rm d/*` of 20,000 files: one root per file, and each of their entries (and more
        // below them) is looked up. The work per lookup is the depth of the path.
        let n: u64 = 20_000;
        let mut roots = Roots::default();
        for i in 0..n {
            let source = format!("/d/f{i}").into_bytes();
            let dest = format!("/out/d/f{i}").into_bytes();
            roots.push(source, dest);
        }
        for i in 0..n {
            let below = format!("/d/f{i}/x").into_bytes();
            assert_eq!(
                roots.dest_of(&below),
                Some(format!("/out/d/f{i}/x").into_bytes())
            );
            assert!(roots.is_dest(format!("/out/d/f{i}").as_bytes()));
        }
        assert_eq!(roots.dest_of(b"/d/g"), None);
        assert_eq!(roots.dest_of(b"/d"), None);
        assert_eq!(roots.source_of(b"/out/d/f7/y"), Some(b"/d/f7/y".to_vec()));
        assert_eq!(roots.holding(b"/d/f12"), Some(12));
        // Two probes per entry below a root, three for one outside any: a scan would make
        // n of them per lookup.
        let probes = roots.by_source.probes.get() + roots.by_dest.probes.get();
        assert!(probes <= 2 * n + 10, "{probes} hash probes for {n} lookups");
    }
}
