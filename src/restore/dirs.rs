//! The directories of a restore: opened from the anchor one component at a time through
//! descriptors, never following a symlink, and made when missing; kept open while the
//! stream is below them, then finished (owner, mode, mtime) deepest first and closed.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use anyhow::{Context, Result};

use super::create::{fchmod, set_mtime_fd, set_owner_fd, set_times_fd};
use super::reason;
use super::restorer::Restorer;
use crate::manifest::Kind;
use crate::paths::{is_under, split_parent};
use crate::sys;

impl Restorer<'_> {
    /// An open existing directory at `path` (None when it or a parent does not exist).
    pub(super) fn existing_dir(&mut self, path: &[u8]) -> Result<Option<RawFd>> {
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
    pub(super) fn dir(&mut self, path: &[u8], create: bool) -> io::Result<RawFd> {
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
            self.filesystems.note(&fd);
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
        let fd = match sys::open_dir_beneath(pfd, &cname) {
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
                let fd = sys::open_dir_beneath(pfd, &cname)?;
                self.created_dirs.insert(path.to_vec());
                let id = sys::fstat(fd.as_raw_fd()).map_or((0, 0), |st| (st.dev, st.ino));
                if made {
                    self.resume.made_dir(id);
                    self.fresh_dirs.insert(path.to_vec());
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
        self.filesystems.note(&fd);
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

    /// Give the directories still open their recorded metadata, then close them.
    pub(super) fn finish(&mut self) {
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
    pub(super) fn retire(&mut self, next: &[u8]) {
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
        if !list.is_empty() {
            // Their last files must be in before their mtime is set.
            self.drain_writers();
        }
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

/// Open directories kept before finished ones are closed ([`Restorer::retire`]).
const MAX_OPEN_DIRS: usize = 16;

/// What a directory gets once its contents are restored.
#[derive(Clone, Copy, Debug)]
pub(super) enum Finish {
    /// The recorded owner, mode and mtime of this entry (a directory this run made).
    Recorded(usize),
    /// Its own mtime from before (a directory that was there and was restored into).
    KeepTime(i64, i64),
}
