//! Cold trees: have the kernel read the next files while the archive writer reads this one.
//!
//! The writer reads files one after the other. When they are not in the page cache, each
//! read waits for the disk, one request at a time: 50,000 small files then take seconds of
//! waiting. So the writer checks now and then whether the file it is about to read is cached
//! ([`sys::from_disk`]). The first time two in a row are not, a thread starts asking the
//! kernel to read the files that come next
//! (`readahead`, which queues the reads and does not wait for them), up to a window ahead of
//! the writer, so that many reads are in flight at once. On a tree that is in the cache it
//! never starts and costs one probe per [`PROBE_EVERY`] files.
//!
//! It only fills the cache. What goes into the archive is still read by the writer, through
//! directory descriptors; a name the prefetcher opens that was swapped for something else
//! only warms the cache for that something else.

use std::ffi::CString;
use std::fs::File;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use crate::sys;
use crate::walk::Plan;

/// Check whether the next file is cached once in this many files.
pub const PROBE_EVERY: usize = 32;
/// Keep at most this many files ...
const AHEAD_FILES: usize = 1024;
/// ... and this many bytes queued ahead of the writer.
const AHEAD_BYTES: u64 = 32 << 20;
/// Stop after finding this many files in a row already cached.
const GIVE_UP_AFTER_CACHED: usize = 256;

/// Files the writer will read whole, in the order it reads them.
pub struct Prefetch {
    /// Node indices, ascending (the writer visits nodes in index order).
    files: Vec<usize>,
    /// `ends[i]`: bytes in `files[..i]`.
    ends: Vec<u64>,
    /// Position of the writer in `files`.
    at: usize,
    /// How many of `files` were handed to the thread.
    handed: usize,
    checked: usize,
    /// The last probe found its file not cached.
    missed: bool,
    running: Option<Running>,
}

struct Running {
    /// Where the writer was when it started.
    first: usize,
    tx: Option<mpsc::Sender<(usize, CString, u64)>>,
    reached: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    /// Returns how many files it asked the kernel to read, and whether it gave up because
    /// they were cached.
    thread: Option<JoinHandle<(usize, bool)>>,
}

impl Prefetch {
    /// For the regular files among `order` of at most `max_size` bytes.
    pub fn new(plan: &Plan, order: &[usize], max_size: u64) -> Prefetch {
        let mut files: Vec<usize> = order
            .iter()
            .copied()
            .filter(|&i| {
                let st = &plan.nodes[i].st;
                st.is_file() && st.size > 0 && st.size <= max_size
            })
            .collect();
        files.sort_unstable();
        let mut ends = Vec::with_capacity(files.len() + 1);
        let mut total = 0u64;
        ends.push(0);
        for &i in &files {
            total += plan.nodes[i].st.size;
            ends.push(total);
        }
        Prefetch {
            files,
            ends,
            at: 0,
            handed: 0,
            checked: 0,
            missed: false,
            running: None,
        }
    }

    /// The writer is about to read node `idx` from `file`.
    pub fn reading(&mut self, plan: &Plan, idx: usize, file: &File) {
        while self.at < self.files.len() && self.files[self.at] < idx {
            self.at += 1;
        }
        if self.files.get(self.at) != Some(&idx) {
            return;
        }
        match &self.running {
            Some(r) => r.reached.store(self.at, Ordering::Relaxed),
            None => {
                self.checked += 1;
                if !self.missed && self.checked % PROBE_EVERY != 1 {
                    return;
                }
                if !looks_uncached(file) {
                    self.missed = false;
                    return;
                }
                // One slow read can be bad luck: start when the next file is not cached
                // either.
                if !std::mem::replace(&mut self.missed, true) {
                    return;
                }
                self.start();
            }
        }
        self.top_up(plan);
    }

    fn start(&mut self) {
        let (tx, rx) = mpsc::channel::<(usize, CString, u64)>();
        let reached = Arc::new(AtomicUsize::new(self.at));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s) = (reached.clone(), stop.clone());
        // Under the `cold` fault every file counts as uncached, so every queued one is read
        // ahead; under `cold-start` every one counts as cached. Either way each queued file
        // is looked at, however far the writer has got: what the tests count then does not
        // depend on how the two threads were scheduled.
        let all = crate::fault::active("cold");
        let none = crate::fault::active("cold-start");
        let every_one = all || none;
        let thread = std::thread::Builder::new()
            .name("saferm-prefetch".into())
            .spawn(move || {
                let mut asked = 0usize;
                let mut cached_in_a_row = 0usize;
                for (pos, path, size) in rx {
                    if s.load(Ordering::Relaxed) && !every_one {
                        break;
                    }
                    // Already read by the writer: nothing to gain.
                    if pos < r.load(Ordering::Relaxed) && !every_one {
                        continue;
                    }
                    let asked_now = if none {
                        Some(false)
                    } else {
                        sys::read_ahead(&path, size, !all)
                    };
                    match asked_now {
                        Some(true) => {
                            asked += 1;
                            cached_in_a_row = 0;
                        }
                        Some(false) => {
                            // The tree is in the cache after all (a few files were not):
                            // stop spending a thread on it.
                            cached_in_a_row += 1;
                            if cached_in_a_row >= GIVE_UP_AFTER_CACHED {
                                return (asked, true);
                            }
                        }
                        None => {}
                    }
                }
                (asked, false)
            })
            .ok();
        if thread.is_none() {
            return; // no thread: read as before
        }
        self.running = Some(Running {
            first: self.at,
            tx: Some(tx),
            reached,
            stop,
            thread,
        });
    }

    /// Hand the thread the files up to the window ahead of the writer.
    fn top_up(&mut self, plan: &Plan) {
        let Some(r) = &self.running else {
            return;
        };
        let Some(tx) = &r.tx else {
            return;
        };
        self.handed = self.handed.max(self.at);
        while self.handed < self.files.len()
            && self.handed - self.at < AHEAD_FILES
            && self.ends[self.handed] - self.ends[self.at] < AHEAD_BYTES
        {
            let idx = self.files[self.handed];
            let Ok(path) = sys::cstr(&plan.abs(idx)) else {
                self.handed += 1;
                continue;
            };
            if tx
                .send((self.handed, path, plan.nodes[idx].st.size))
                .is_err()
            {
                // The thread gave up: hand it nothing more.
                if let Some(r) = self.running.as_mut() {
                    r.tx = None;
                }
                return;
            }
            self.handed += 1;
        }
    }
}

/// Whether the file the writer is about to read is not in the page cache. The test hooks
/// decide instead of the cache in debug builds: `cold` and `cold-start` say not cached,
/// `warm` says cached (the page cache's real state depends on memory pressure, and
/// `RWF_NOWAIT` now and then refuses a cached page: tests cannot count on it).
fn looks_uncached(file: &File) -> bool {
    if crate::fault::active("cold") || crate::fault::active("cold-start") {
        return true;
    }
    if crate::fault::active("warm") {
        return false;
    }
    sys::from_disk(file)
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        if let Some(mut r) = self.running.take() {
            r.stop.store(true, Ordering::Relaxed);
            drop(r.tx.take());
            let (asked, gave_up) = r
                .thread
                .take()
                .and_then(|t| t.join().ok())
                .unwrap_or_default();
            crate::timing::note(&format!(
                "read ahead: {asked} of {} files ({} queued){}",
                self.files.len(),
                self.handed.saturating_sub(r.first),
                if gave_up {
                    "; gave up: they were cached"
                } else {
                    ""
                }
            ));
        }
    }
}
