//! The Restorer: one restore's state, its plan (each entry's destination, conflicts
//! settled at the target roots), the stream of the archive, and what to do with each entry
//! (create it, or find it there already). How each object is made is `create.rs`; the
//! directories it is made in, `dirs.rs`.

use std::collections::{HashMap, HashSet};
use std::ffi::CStr;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::{OwnedFd, RawFd};
use std::os::unix::ffi::OsStringExt;

use anyhow::{anyhow, bail, Context, Result};

use super::create::{create_node, create_symlink, same_content, Done};
use super::decode::Decoded;
use super::dirs::Finish;
use super::durable::Filesystems;
use super::resume::Resume;
use super::tally::Tally;
use super::writers::{Handover, MAX_SIZE};
use super::{reason, Conflict, Logged, Outcome, Report, RestoreOptions, Target};
use crate::manifest::{Entry, Kind, Manifest};
use crate::output::stderr_write;
use crate::paths::{display, is_under, join, normal_absolute, split_parent, PathMap};
use crate::quote::quote;
use crate::store::Backend;
use crate::sys;

/// What happens to one manifest entry in this restore.
#[derive(Clone, Debug)]
pub(super) enum Job {
    /// Create it at this destination.
    Create(Vec<u8>),
    /// A hard link whose first name is not restored: its content was restored here already
    /// (the first name's entry was redirected to this link's destination).
    AlreadyDone,
}

/// The target roots of one restore, `(source, dest)`, none below another. A path is looked
/// up by walking up its own parents, so the cost is its depth, never the number of roots:
/// `rm d/*` makes one root per file, and every entry and every object made asks (scanning
/// the list made `unrm --last` of 20,000 operands quadratic, issue 12).
#[derive(Default)]
pub(super) struct Roots {
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
    pub(super) fn source_of(&self, dest: &[u8]) -> Option<Vec<u8>> {
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

/// One restore of one deletion: what it was asked, what it has open and has made, and what
/// is left to finish.
pub(super) struct Restorer<'a> {
    pub(super) opts: &'a RestoreOptions,
    pub(super) report: &'a mut Report,
    pub(super) manifest: &'a Manifest,
    pub(super) paths: &'a [Vec<u8>],
    pub(super) index: &'a HashMap<&'a [u8], usize>,
    /// Open directories by destination path.
    pub(super) dirs: HashMap<Vec<u8>, OwnedFd>,
    /// Directories this run created (so a directory entry arriving later adopts them).
    pub(super) created_dirs: HashSet<Vec<u8>>,
    /// Of those, the ones this run's own mkdirat made (not one adopted from a killed restore,
    /// nor one that appeared meanwhile): they were empty, so what goes into them needs no
    /// look first.
    pub(super) fresh_dirs: HashSet<Vec<u8>>,
    /// Directories to finish at the end: (dest, what to give them, their `(dev, ino)`).
    pub(super) finalize: Vec<(Vec<u8>, Finish, (u64, u64))>,
    /// The `next` of the last [`Restorer::retire`], and how many of the first `finalize`
    /// entries are above it: those need no comparison of their bytes the next time.
    pub(super) retired_at: (Vec<u8>, usize),
    /// Where each restored regular file that a hard link of the deletion names is, by
    /// original path (only those: a path per file was 12 MiB of a 50,000-file restore).
    pub(super) first_names: HashMap<Vec<u8>, Vec<u8>>,
    /// The original paths the deletion's hard links name.
    link_targets: HashSet<Vec<u8>>,
    /// Destinations whose subtree is skipped (a conflict or failure below a target root).
    pub(super) skipped_below: PathMap<()>,
    /// (source, dest) of every target root, after conflict resolution.
    pub(super) roots: Roots,
    /// The copy buffer, reused for every file.
    pub(super) buf: Vec<u8>,
    /// (original, destination) of the object being made, to find what its missing parents
    /// were.
    pub(super) current: Option<(Vec<u8>, Vec<u8>)>,
    /// Every filesystem a directory was opened on, synced at the end ([`Filesystems::sync`]).
    pub(super) filesystems: Filesystems,
    /// `-v` lines, printed once what they name is durable.
    pub(super) verbose_out: Vec<u8>,
    /// What a killed restore of this deletion left to finish, and this run's journal.
    pub(super) resume: Resume,
    /// The run's progress: the bar, and the files in place.
    pub(super) tally: &'a mut Tally,
    /// Small files handed to writer threads, and what is queued behind them.
    pub(super) handover: Handover,
}

impl<'a> Restorer<'a> {
    /// A restorer for the entries `paths` of `manifest` (`index`: each one's position).
    pub(super) fn new(
        opts: &'a RestoreOptions,
        report: &'a mut Report,
        manifest: &'a Manifest,
        paths: &'a [Vec<u8>],
        index: &'a HashMap<&'a [u8], usize>,
        tally: &'a mut Tally,
    ) -> Restorer<'a> {
        Restorer {
            opts,
            report,
            manifest,
            paths,
            index,
            dirs: HashMap::new(),
            created_dirs: HashSet::new(),
            fresh_dirs: HashSet::new(),
            finalize: Vec::new(),
            retired_at: (Vec::new(), 0),
            first_names: HashMap::new(),
            link_targets: manifest
                .entries
                .iter()
                .filter(|e| e.kind == Kind::Hardlink)
                .filter_map(|e| e.link.as_ref().and_then(|l| l.bytes()))
                .collect(),
            skipped_below: PathMap::default(),
            roots: Roots::default(),
            buf: Vec::new(),
            current: None,
            filesystems: Filesystems::start(),
            verbose_out: Vec::new(),
            resume: Resume::default(),
            tally,
            handover: Handover::default(),
        }
    }
}

impl Restorer<'_> {
    /// A path as the user would type it: relative when it is below the current directory.
    pub(super) fn shown(&self, path: &[u8]) -> String {
        quote(&display(&self.opts.cwd, path))
    }

    pub(super) fn fail(&mut self, dest: &[u8], reason: &str) {
        let shown = self.shown(dest);
        self.tally.bar.clear();
        stderr_write(format!("unrm: could not restore {shown}: {reason}\n").as_bytes());
        self.report.failed += 1;
        self.log(dest, Outcome::Failed(reason.to_string()), None);
    }

    /// Note in the report's log (when one is kept) what became of the object at `path`;
    /// `entry` is its manifest entry when known (whether it is a file, and its size).
    pub(super) fn log(&mut self, path: &[u8], outcome: Outcome, entry: Option<&Entry>) {
        if self.opts.record {
            let file = entry.is_some_and(|e| e.kind == Kind::File);
            self.report.log.push(Logged {
                path: path.to_vec(),
                outcome,
                file,
                bytes: if file { entry.map_or(0, |e| e.size) } else { 0 },
            });
        }
    }

    /// Decide each entry's destination; settle conflicts at the target roots.
    pub(super) fn plan(&mut self, targets: &[Target]) -> Result<Vec<Option<Job>>> {
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
                Conflict::Overwrite => self.overwrite_root(pfd, &cname, dest),
            },
        }
    }

    /// `--overwrite` of the target root `dest`, the entry `cname` of `pfd`: archive and
    /// remove what is there through saferm's own delete path, if all of it can go; `None`
    /// (reported) when it cannot, or could not.
    fn overwrite_root(&mut self, pfd: RawFd, cname: &CStr, dest: &[u8]) -> Result<Option<Vec<u8>>> {
        // All of it goes, or none: an obstacle only part of which can be removed is left as
        // it is.
        let shown = display(&self.opts.cwd, dest);
        if let Some(why) = super::obstacle::why_not_removable(pfd, cname, &shown) {
            self.fail(
                dest,
                &format!(
                    "it is in the way and cannot be removed whole ({why}); \
                     nothing of it was changed"
                ),
            );
            return Ok(None);
        }
        // saferm archives, verifies and only then unlinks it (a deletion of its own in the
        // store); its messages read `unrm: cannot remove ...`. As `rm -rf -- DEST`.
        let rm = crate::rules::Options {
            interactive: crate::rules::InteractiveMode::Never,
            ignore_missing: true,
            recursive: true,
            operands: vec![std::ffi::OsString::from_vec(dest.to_vec())],
            ..Default::default()
        };
        let outcome = crate::remove::delete("unrm", &rm);
        // saferm puts the default signal handlers back when it is done.
        crate::signal::catch();
        match sys::fstatat(pfd, cname, false) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) && outcome.status == 0 => {
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

    fn skipped(&self, dest: &[u8]) -> bool {
        // By the lengths of its parents, as the roots are: one conflict per operand must not
        // cost a scan per entry, nor a deep entry a probe per level.
        !self.skipped_below.is_empty() && self.skipped_below.nearest(dest).is_some()
    }

    /// Decode the archive from the frame holding the first wanted entry to the last one.
    pub(super) fn stream(&mut self, store: &dyn Backend, jobs: &[Option<Job>]) -> Result<()> {
        let first = jobs.iter().position(Option::is_some).unwrap_or(0);
        let last = jobs.iter().rposition(Option::is_some).unwrap_or(0);
        let archive = self
            .manifest
            .archive
            .as_ref()
            .ok_or_else(|| anyhow!("deletion {} has no archive", self.manifest.id))?;
        let mut file = store.open_archive(&archive.path)?;
        let start = self.manifest.start_frame(first);
        file.seek(SeekFrom::Start(start.1))
            .with_context(|| format!("cannot read {}", quote(archive.path.as_bytes())))?;
        let decoder =
            zstd::stream::read::Decoder::new(file).context("cannot start decoding the archive")?;
        let decoded = Decoded::start(decoder).context("cannot start decoding the archive")?;
        let mut tar = tar::Archive::new(decoded);
        let entries = tar.entries().context("cannot read the archive")?;
        let small_files = jobs
            .iter()
            .zip(&self.manifest.entries)
            .filter(|(j, e)| j.is_some() && e.kind == Kind::File && e.size <= MAX_SIZE)
            .count();
        self.start_writers(small_files);
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
            let kind = crate::archive::verify::kind_of(entry.header().entry_type());
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
        self.stop_writers();
        if i <= last {
            self.abandon(jobs, i);
            bail!("the archive ends before entry {i} of its manifest");
        }
        Ok(())
    }

    /// Count what can no longer be restored after the stream broke at entry `from`.
    fn abandon(&mut self, jobs: &[Option<Job>], from: usize) {
        self.stop_writers();
        let n = jobs[from..]
            .iter()
            .filter(|j| matches!(j, Some(Job::Create(_))))
            .count();
        self.report.failed += n as u64;
        if self.opts.record {
            let why = "the archive could not be read as far as it";
            for (i, job) in jobs.iter().enumerate().skip(from) {
                if let Some(Job::Create(dest)) = job {
                    let manifest = self.manifest;
                    self.log(
                        dest,
                        Outcome::Failed(why.into()),
                        Some(&manifest.entries[i]),
                    );
                }
            }
        }
    }

    /// The regular file of entry `i` is at `dest` now: where a hard link to it links to.
    fn note_first_name(&mut self, i: usize, dest: &[u8]) {
        if self.link_targets.contains(&self.paths[i]) {
            self.first_names
                .insert(self.paths[i].clone(), dest.to_vec());
        }
    }

    /// Create one object at `dest` from entry `i`.
    fn create(&mut self, i: usize, dest: &[u8], mut data: Data<'_>, xattrs: &[(Vec<u8>, Vec<u8>)]) {
        let manifest = self.manifest;
        let e = &manifest.entries[i];
        let (parent, name) = split_parent(dest);
        self.current = Some((self.paths[i].clone(), dest.to_vec()));
        let pfd = match self.dir(parent, true) {
            Ok(fd) => fd,
            Err(err) => {
                self.drain_writers();
                self.fail(dest, &reason(&err));
                if e.kind == Kind::Dir {
                    self.skipped_below.insert_first(dest.to_vec(), ());
                }
                return;
            }
        };
        let cname = match sys::cstr(name) {
            Ok(c) => c,
            Err(err) => {
                self.drain_writers();
                return self.fail(dest, &reason(&err));
            }
        };
        // Something is there already: a directory is restored into, an identical object is
        // left as it is (so a restore can be run again after an interruption or a partial
        // restore), anything else is a conflict.
        // Nor is anything in a directory this run made itself (it was empty; a name that appears
        // there since makes the create fail, as O_EXCL and mkdirat do not replace): one
        // lookup less per object of a tree restored whole.
        let ours = (e.kind == Kind::Dir && self.created_dirs.contains(dest))
            || self.fresh_dirs.contains(parent);
        if !ours {
            match sys::fstatat(pfd, &cname, false) {
                Ok(st) => {
                    self.drain_writers();
                    return self.existing(i, pfd, &cname, dest, &st);
                }
                Err(err) if err.raw_os_error() == Some(libc::ENOENT) => {}
                Err(err) => {
                    self.drain_writers();
                    return self.fail(dest, &reason(&err));
                }
            }
        }
        if e.kind == Kind::File && self.write_later(i, (pfd, &cname), dest, &mut data, xattrs) {
            return;
        }
        if e.kind == Kind::Hardlink {
            // To a file this run restored: one handed to a writer must be there first.
            self.drain_writers();
        }
        let result = match e.kind {
            Kind::Dir => self.create_dir(i, pfd, &cname, dest, xattrs),
            Kind::File => self.create_file(e, pfd, &cname, dest, data, xattrs),
            Kind::Hardlink => self.create_link(e, pfd, &cname),
            Kind::Symlink => create_symlink(e, pfd, &cname, self.opts.euid),
            Kind::Fifo | Kind::Char | Kind::Block => create_node(e, pfd, &cname, self.opts.euid),
            Kind::Socket => Err(io::Error::other("sockets are not archived")),
        };
        self.settle(i, dest, result);
    }

    /// What became of entry `i`, made at `dest`: counted, logged, and what it stops
    /// stopped. In archive order ([`Restorer::settle`]).
    pub(super) fn commit(&mut self, i: usize, dest: &[u8], result: io::Result<Done>) {
        let manifest = self.manifest;
        let e = &manifest.entries[i];
        match result {
            Ok(Done { owner_set }) => {
                if !owner_set {
                    self.report.ownership_not_set += 1;
                }
                if e.kind == Kind::File {
                    self.note_first_name(i, dest);
                    self.tally.in_place(e.size, true);
                }
                self.report.restored += 1;
                self.log(dest, Outcome::Restored, Some(e));
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

    /// Report that something else is at `dest`; below a directory, nothing is restored.
    fn conflict(&mut self, e: &Entry, dest: &[u8]) {
        self.tally.bar.clear();
        stderr_write(
            format!(
                "unrm: could not restore {}: something else is there (--rename restores beside it)\n",
                self.shown(dest)
            )
            .as_bytes(),
        );
        self.report.conflicts.push(dest.to_vec());
        self.log(dest, Outcome::Conflict, Some(e));
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
            self.note_first_name(i, dest);
            self.tally.in_place(e.size, false);
        }
        self.report.already += 1;
        self.log(dest, Outcome::Already, Some(e));
        if self.roots.is_dest(dest) {
            self.report.roots_restored.push(dest.to_vec());
        }
    }
}

/// Whether an entry is stored sparse (`crate::archive::sparse`): its real size and stored size.
pub(super) type Sparse = io::Result<Option<(u64, u64)>>;

/// An entry's data as the archive stores it.
pub(super) struct Data<'a> {
    pub(super) read: &'a mut dyn Read,
    pub(super) sparse: Sparse,
}

type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

/// The `SCHILY.xattr.*` records of an entry's PAX header, and whether it is sparse.
pub(super) fn pax_xattrs<R: Read>(entry: &mut tar::Entry<'_, R>) -> (Xattrs, Sparse) {
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
    let sparse = crate::archive::sparse::realsize(records.iter().map(|(k, v)| (&k[..], &v[..])))
        .map(|size| size.map(|size| (size, stored)));
    (out, sparse)
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
