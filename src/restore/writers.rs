//! Writing small regular files on threads of their own, so that a restore of many small
//! files creates several at once: the filesystem's per-file work (inode, directory entry,
//! page cache, journal) is most of such a restore, and it runs on both cores where one
//! thread would leave the second idle. Measured on ext4 with two cores, two `tar -x` of
//! the two halves of a 50,000-file tree at once took 1.85 s where one `tar -x` of it took
//! 3.05 s.
//!
//! The thread that reads the archive still does everything else in archive order
//! (directories, links, conflicts, whatever is not a small file, and all the bookkeeping):
//! it reads a small file's content whole, and hands the file to a writer with a descriptor
//! of its own on the directory it goes in. What each writer did comes back, and is taken
//! in archive order ([`super::restorer::Restorer`]'s queue), so that reports, `-v` lines
//! and journals read as a restore on one thread would write them.

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::create::{
    create_temp_file, damaged, fchmod, remove_partial, set_mtime_fd, set_owner_ids, unreadable,
    Done,
};
use super::restorer::{Data, Restorer};
use crate::hash::ContentHash;
use crate::paths::split_parent;
use crate::sys;

/// The largest file given to a writer: its content is held in memory until it is written,
/// [`QUEUED`] files at most, so a restore stays within its memory budget.
pub(super) const MAX_SIZE: u64 = 256 * 1024;
/// Files handed over and not yet taken by a writer, at most.
const QUEUED: usize = 16;
/// Writers need little stack: they make system calls.
const STACK: usize = 256 * 1024;

/// One small file to make: `name` in the directory `dir`, with `data` as its content.
pub(super) struct FileJob {
    /// Its place in the restore's queue.
    pub(super) seq: u64,
    pub(super) dir: Arc<OwnedFd>,
    pub(super) name: CString,
    pub(super) data: Vec<u8>,
    /// What its content must hash to: the manifest's `blake3` and `blake3_blocks`.
    pub(super) hashes: (Option<String>, Option<String>),
    /// Its recorded size, owner, mode and mtime, and who runs the restore.
    pub(super) size: u64,
    pub(super) owner: (u32, u32),
    pub(super) mode: u32,
    pub(super) mtime: (i64, i64),
    pub(super) euid: u32,
}

/// What a writer did with one [`FileJob`], and its buffer back for the next one.
pub(super) struct Written {
    pub(super) seq: u64,
    pub(super) result: io::Result<Done>,
    pub(super) data: Vec<u8>,
}

/// The writer threads.
pub(super) struct Writers {
    to: Option<SyncSender<FileJob>>,
    done: Receiver<Written>,
    threads: Vec<JoinHandle<()>>,
    /// Buffers back from writers, for the next files' content.
    spare: Vec<Vec<u8>>,
}

impl Writers {
    /// `n` writers; None when not even one thread can be started.
    pub(super) fn start(n: usize) -> Option<Writers> {
        let (to, jobs) = sync_channel::<FileJob>(QUEUED);
        let jobs = Arc::new(Mutex::new(jobs));
        let (report, done) = channel::<Written>();
        let threads: Vec<JoinHandle<()>> = (0..n)
            .filter_map(|_| {
                let jobs = Arc::clone(&jobs);
                let report = report.clone();
                std::thread::Builder::new()
                    .name("unrm-write".into())
                    .stack_size(STACK)
                    .spawn(move || work(&jobs, &report))
                    .ok()
            })
            .collect();
        (!threads.is_empty()).then_some(Writers {
            to: Some(to),
            done,
            threads,
            spare: Vec::new(),
        })
    }

    /// A buffer for the next file's content (empty, maybe with room).
    pub(super) fn buffer(&mut self) -> Vec<u8> {
        self.spare.pop().unwrap_or_default()
    }

    /// Hand `job` to a writer, waiting while [`QUEUED`] are waiting already. The job back
    /// when no writer is left to take it.
    pub(super) fn submit(&mut self, job: FileJob) -> Option<FileJob> {
        match &self.to {
            Some(to) => to.send(job).err().map(|e| e.0),
            None => Some(job),
        }
    }

    /// What a writer did next: waiting for it when `wait`; None when nothing is done yet
    /// (or, waiting, when no writer is left).
    pub(super) fn next(&mut self, wait: bool) -> Option<Written> {
        let got = if wait {
            self.done.recv().ok()
        } else {
            self.done.try_recv().ok()
        };
        got.map(|mut w| {
            if self.spare.len() < QUEUED {
                w.data.clear();
                self.spare.push(std::mem::take(&mut w.data));
            }
            w
        })
    }
}

impl Drop for Writers {
    /// Let the writers finish what they were given and end.
    fn drop(&mut self) {
        self.to = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// A writer: take jobs until there are none, and say what became of each.
fn work(jobs: &Mutex<Receiver<FileJob>>, report: &Sender<Written>) {
    loop {
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else {
            return;
        };
        if report.send(write(job)).is_err() {
            return;
        }
    }
}

/// Make the file of `job` as the thread that reads the archive would
/// (`Restorer::create_file`): under a temporary name, its content checked against its
/// hash, then its owner, mode and mtime, then renamed into place without replacing.
fn write(job: FileJob) -> Written {
    let FileJob {
        seq,
        dir,
        name,
        data,
        hashes,
        size,
        owner,
        mode,
        mtime,
        euid,
    } = job;
    let dir = dir.as_raw_fd();
    let result = create_temp_file(dir).and_then(|(tmp, fd)| {
        let file = File::from(fd);
        let hash = ContentHash::new(hashes.0.as_deref(), hashes.1.as_deref());
        let made = fill(&file, &data, hash, size)
            .and_then(|()| {
                let fd = file.as_raw_fd();
                let owner_set = set_owner_ids(fd, owner, euid)?;
                fchmod(fd, mode)?;
                set_mtime_fd(fd, mtime.0, mtime.1)?;
                Ok(Done { owner_set })
            })
            .and_then(|done| {
                sys::rename_noreplace(dir, &tmp, dir, &name)?;
                Ok(done)
            });
        if made.is_err() {
            remove_partial(dir, &tmp, &file);
        }
        made
    });
    Written { seq, result, data }
}

/// Check `data` against `hash` and write it into `file`.
fn fill(mut file: &File, data: &[u8], mut hash: ContentHash, size: u64) -> io::Result<()> {
    hash.data(data);
    if !hash.matches(size) {
        return Err(damaged());
    }
    // A run of zeros is a hole, as the one-thread copy makes it (`cp --sparse=auto`).
    if data.len() >= 4096 && data.iter().all(|&b| b == 0) {
        file.set_len(data.len() as u64)
    } else {
        file.write_all(data)
    }
}

/// A file handed to a writer or made meanwhile, in archive order: entry `i` at `dest`, and
/// what became of it once known.
pub(super) struct Queued {
    i: usize,
    dest: Vec<u8>,
    result: Option<io::Result<Done>>,
}

/// The restore's side of the writers: what was handed over and not yet taken in order.
#[derive(Default)]
pub(super) struct Handover {
    writers: Option<Writers>,
    queue: std::collections::VecDeque<Queued>,
    /// The `seq` of the queue's first.
    front: u64,
    /// The directory the last file handed over went in: its path, the restore's descriptor
    /// of it, and the writers' own.
    dir: Option<(Vec<u8>, RawFd, Arc<OwnedFd>)>,
}

/// A restore of one small file makes it on the one thread (starting two threads costs
/// about what writing it does).
const MIN_FILES: usize = 2;

impl Restorer<'_> {
    /// Start the writers when this restore has enough small files to make (`files`).
    pub(super) fn start_writers(&mut self, files: usize) {
        if files < MIN_FILES {
            return;
        }
        let n = std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_WRITERS));
        self.handover.writers = Writers::start(n);
    }

    /// Hand the regular file of entry `i` (`name` in `pfd`, at `dest`) to a writer when it
    /// is one for them: small, not sparse, no extended attributes. False when it is to be
    /// made here ([`Restorer::create_file`]).
    pub(super) fn write_later(
        &mut self,
        i: usize,
        (pfd, name): (RawFd, &CStr),
        dest: &[u8],
        data: &mut Data<'_>,
        xattrs: &[(Vec<u8>, Vec<u8>)],
    ) -> bool {
        let manifest = self.manifest;
        let e = &manifest.entries[i];
        let for_writers = self.handover.writers.is_some()
            && e.size <= MAX_SIZE
            && matches!(data.sparse, Ok(None))
            && xattrs.is_empty()
            && !crate::fault::names("restore-kill", dest)
            && !crate::fault::names("restore-pause", dest)
            && !crate::fault::active("restore-signal");
        if !for_writers {
            return false;
        }
        let Some(dir) = self.writers_dir(pfd, split_parent(dest).0) else {
            return false;
        };
        self.resume.sweep(pfd);
        let mut content = self
            .handover
            .writers
            .as_mut()
            .map(Writers::buffer)
            .unwrap_or_default();
        let read = data.read.read_to_end(&mut content);
        self.tally.bar.advance(content.len() as u64);
        let seq = self.handover.front + self.handover.queue.len() as u64;
        self.handover.queue.push_back(Queued {
            i,
            dest: dest.to_vec(),
            result: None,
        });
        if let Err(err) = read {
            self.handover.place(seq, Err(unreadable(&err)));
            self.take_written(false);
            return true;
        }
        let job = FileJob {
            seq,
            dir,
            name: name.to_owned(),
            data: content,
            hashes: (e.blake3.clone(), e.blake3_blocks.clone()),
            size: e.size,
            owner: (e.uid, e.gid),
            mode: e.mode,
            mtime: (e.mtime, i64::from(e.mtime_nsec.min(999_999_999))),
            euid: self.opts.euid,
        };
        let refused = match self.handover.writers.as_mut() {
            Some(w) => w.submit(job),
            None => Some(job),
        };
        if let Some(job) = refused {
            // No writer is left: made here.
            let written = write(job);
            self.handover.place(written.seq, written.result);
        }
        self.take_written(false);
        true
    }

    /// The writers' descriptor of the directory `path`, open here at `pfd`: the last one's
    /// again when the file goes in the same directory, else a new duplicate of `pfd`.
    fn writers_dir(&mut self, pfd: RawFd, path: &[u8]) -> Option<Arc<OwnedFd>> {
        if let Some((p, raw, fd)) = &self.handover.dir {
            if *raw == pfd && p.as_slice() == path {
                return Some(Arc::clone(fd));
            }
        }
        let fd = Arc::new(sys::borrow(&pfd).ok()?.try_clone_to_owned().ok()?);
        self.handover.dir = Some((path.to_vec(), pfd, Arc::clone(&fd)));
        Some(fd)
    }

    /// Entry `i`'s object, made here with `result`: taken now when nothing handed to the
    /// writers is waiting, else queued behind them. A failure is taken at once, after them
    /// (what it stops, such as the contents of a directory that could not be made, must
    /// know before the next entry).
    pub(super) fn settle(&mut self, i: usize, dest: &[u8], result: io::Result<Done>) {
        if result.is_err() {
            self.drain_writers();
        }
        if self.handover.queue.is_empty() {
            return self.commit(i, dest, result);
        }
        self.handover.queue.push_back(Queued {
            i,
            dest: dest.to_vec(),
            result: Some(result),
        });
        self.take_written(false);
    }

    /// Take, in archive order, everything handed to the writers: before what must come
    /// after them (a report, a hard link to one of them, a directory's final metadata,
    /// the end of the stream).
    pub(super) fn drain_writers(&mut self) {
        while !self.handover.queue.is_empty() {
            self.take_written(true);
        }
    }

    /// Take what the writers have done, in order, as far as it is done; with `wait`,
    /// waiting for the first of the queue at least.
    fn take_written(&mut self, wait: bool) {
        loop {
            while let Some(Queued {
                result: Some(_), ..
            }) = self.handover.queue.front()
            {
                let Some(Queued { i, dest, result }) = self.handover.queue.pop_front() else {
                    break;
                };
                self.handover.front += 1;
                if let Some(result) = result {
                    self.commit(i, &dest, result);
                }
            }
            if self.handover.queue.is_empty() {
                return;
            }
            let next = self.handover.writers.as_mut().and_then(|w| w.next(wait));
            match next {
                Some(w) => self.handover.place(w.seq, w.result),
                None if wait => {
                    // The writers are gone with files in hand.
                    for q in &mut self.handover.queue {
                        q.result
                            .get_or_insert_with(|| Err(io::Error::other("a writer thread failed")));
                    }
                }
                None => return,
            }
        }
    }

    /// Stop the writers, once everything they were given is taken.
    pub(super) fn stop_writers(&mut self) {
        self.drain_writers();
        self.handover = Handover::default();
    }
}

impl Handover {
    /// The outcome of the file queued as `seq`.
    fn place(&mut self, seq: u64, result: io::Result<Done>) {
        let at = seq
            .checked_sub(self.front)
            .and_then(|k| usize::try_from(k).ok());
        if let Some(q) = at.and_then(|k| self.queue.get_mut(k)) {
            q.result = Some(result);
        }
    }
}

/// Writers at most: three were no faster than two on two cores (3 runs each, by hand).
const MAX_WRITERS: usize = 2;
