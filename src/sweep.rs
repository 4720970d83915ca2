//! The unlink phase: post-order, re-stat each object just before its unlink, and say what
//! rm says, in the order rm says it.
//!
//! Unlinking is the kernel's work, and on ext4 two threads that unlink in different
//! directories take about half the time of one. So a large deletion without `-v` is cut into
//! subtrees ("jobs") that worker threads take in turn. A job's messages are held and printed
//! afterwards in the order of the jobs, which is the order one thread would have printed them
//! in, so stderr stays what rm prints. With `-v` every line is printed as it happens, by one
//! thread, as rm does.

use std::collections::HashSet;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::dirstack::DirStack;
use crate::output::{stderr_write, stdout_write};
use crate::quote::quote;
use crate::rules;
use crate::sys;
use crate::walk::{Fate, Plan};

/// Below this many objects to unlink, threads cost more than they save.
const PARALLEL_MIN_OBJECTS: usize = 4096;
/// At most this many unlinking threads; more only contend on the filesystem's journal.
const MAX_THREADS: usize = 4;
/// Cut the tree into about this many jobs per thread, so that threads finish together.
const JOBS_PER_THREAD: usize = 8;
/// Cut no deeper than this: the directories above the jobs stay open until the end, and
/// below this depth a subtree is one job, however deep.
const MAX_CUT_DEPTH: usize = 8;

/// Unlink everything the plan still removes. Returns whether any error was reported.
pub fn unlink_plan(prog: &str, opts: &rules::Options, plan: &mut Plan) -> bool {
    let keep: Vec<AtomicBool> = plan
        .nodes
        .iter()
        .map(|n| AtomicBool::new(n.fate == Fate::Keep))
        .collect();
    let unlinked = Mutex::new(HashSet::new());
    let mut has_removal: Vec<bool> = keep.iter().map(|k| !k.load(Ordering::Relaxed)).collect();
    for i in (0..plan.nodes.len()).rev() {
        if let (true, Some(p)) = (has_removal[i], plan.nodes[i].parent()) {
            has_removal[p] = true;
        }
    }
    let shared = Shared {
        prog,
        opts,
        plan,
        keep: &keep,
        has_removal,
        unlinked: &unlinked,
    };
    let removals = keep.iter().filter(|k| !k.load(Ordering::Relaxed)).count();
    let threads = if opts.verbose || removals < PARALLEL_MIN_OBJECTS {
        1
    } else {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(MAX_THREADS)
    };
    let failed = if threads > 1 {
        parallel(&shared, threads)
    } else {
        let mut u = Unlinker::new(&shared, false);
        for &r in &plan.roots {
            u.node(r, sys::AT_FDCWD, &plan.display(r));
        }
        u.failed
    };
    for (node, k) in plan.nodes.iter_mut().zip(&keep) {
        if k.load(Ordering::Relaxed) {
            node.fate = Fate::Keep;
        }
    }
    failed
}

/// What every unlinking thread reads.
struct Shared<'a> {
    prog: &'a str,
    opts: &'a rules::Options,
    plan: &'a Plan,
    /// The plan's `Fate::Keep`, settable from any thread.
    keep: &'a [AtomicBool],
    /// Whether a node or anything below it was to be removed when the phase began (later
    /// failures only keep more: a stale `true` costs opening a directory for nothing).
    has_removal: Vec<bool>,
    /// Hard-linked inodes this run is unlinking a name of: their other names get a new ctime
    /// and nlink from it, which is not a change by someone else.
    unlinked: &'a Mutex<HashSet<(u64, u64)>>,
}

impl Shared<'_> {
    fn kept(&self, idx: usize) -> bool {
        self.keep[idx].load(Ordering::Relaxed)
    }

    fn keep_with_ancestors(&self, mut idx: usize) {
        self.keep[idx].store(true, Ordering::Relaxed);
        while let Some(p) = self.plan.nodes[idx].parent() {
            if self.keep[p].swap(true, Ordering::Relaxed) {
                break;
            }
            idx = p;
        }
    }

    fn keep_subtree(&self, idx: usize) {
        let mut stack = vec![idx];
        while let Some(i) = stack.pop() {
            self.keep[i].store(true, Ordering::Relaxed);
            stack.extend(self.plan.children(i));
        }
        self.keep_with_ancestors(idx);
    }

    /// Open a directory to unlink below it, if it is still the one that was archived.
    fn open_dir(&self, idx: usize, dirfd: RawFd) -> std::io::Result<OwnedFd> {
        let n = &self.plan.nodes[idx];
        let fd = sys::open_dir_nofollow(dirfd, &n.name)?;
        let now = sys::fstat(fd.as_raw_fd())?;
        if (now.dev, now.ino) != (n.st.dev, n.st.ino) {
            return Err(std::io::Error::from_raw_os_error(libc::ESTALE));
        }
        Ok(fd)
    }
}

/// One thread's unlinking, and where its messages go.
struct Unlinker<'a, 's> {
    s: &'s Shared<'a>,
    /// Messages held for printing later (parallel jobs); `None` prints them now.
    held: Option<Vec<u8>>,
    failed: bool,
}

impl<'a, 's> Unlinker<'a, 's> {
    fn new(s: &'s Shared<'a>, hold: bool) -> Self {
        Unlinker {
            s,
            held: hold.then(Vec::new),
            failed: false,
        }
    }

    fn error(&mut self, display: &[u8], what: &str) {
        let msg = format!(
            "{}: cannot remove {}: {what}\n",
            self.s.prog,
            quote(display)
        );
        self.say(&msg);
        self.failed = true;
    }

    /// A line for stderr, now or held with the job's messages.
    fn say(&mut self, msg: &str) {
        match &mut self.held {
            Some(held) => held.extend_from_slice(msg.as_bytes()),
            None => stderr_write(msg.as_bytes()),
        }
    }

    /// Unlink a node and everything below it that is still to be removed, children first,
    /// with a loop and a bounded number of descriptors ([`DirStack`]): trees are deeper than
    /// the stack and the open-file limit.
    fn node(&mut self, root: usize, base: RawFd, display: &[u8]) {
        let plan = self.s.plan;
        let mut fds = DirStack::new(base);
        let mut path = display.to_vec();
        // Open directories: (node, its next child, the length of its path).
        let mut frames: Vec<(usize, Option<usize>, usize)> = Vec::new();
        let mut visit = Some(root);
        loop {
            if let Some(idx) = visit.take() {
                let n = &plan.nodes[idx];
                if n.st.is_dir() && n.has_children() && self.s.has_removal[idx] {
                    match fds.top().and_then(|dirfd| self.s.open_dir(idx, dirfd)) {
                        Ok(fd) => {
                            fds.push(fd, (n.st.dev, n.st.ino));
                            frames.push((idx, plan.children(idx).next(), path.len()));
                        }
                        // An earlier operand removed it after all.
                        Err(e) if n.repeat && e.raw_os_error() == Some(libc::ENOENT) => {}
                        Err(_) => {
                            self.error(&path, "changed while it was being archived");
                            self.s.keep_subtree(idx);
                        }
                    }
                } else if let Ok(dirfd) = fds.top() {
                    self.finish(idx, dirfd, &path);
                }
            }
            let Some(top) = frames.last_mut() else {
                return;
            };
            let (idx, next, len) = *top;
            path.truncate(len);
            if let Some(c) = next {
                top.1 = plan.siblings_after(c).next();
                rules::push_child(&mut path, plan.nodes[c].name.as_bytes());
                visit = Some(c);
                continue;
            }
            frames.pop();
            if fds.pop().is_err() {
                // The directory above is not where it was: keep it and what is left in it.
                if let Some(&(up, _, up_len)) = frames.last() {
                    path.truncate(up_len);
                    self.error(&path, "changed while it was being archived");
                    self.s.keep_subtree(up);
                }
                return;
            }
            if let Ok(dirfd) = fds.top() {
                self.finish(idx, dirfd, &path);
            }
        }
    }

    /// Unlink the node itself (its children are done): re-stat, compare, unlink.
    fn finish(&mut self, idx: usize, dirfd: RawFd, display: &[u8]) {
        let s = self.s;
        if s.kept(idx) {
            return;
        }
        let n = &s.plan.nodes[idx];
        let st = n.st;
        let hard_linked = !st.is_dir() && st.nlink > 1;
        // Open for writing elsewhere when it was read: its content is compared again, before
        // the re-stat (which then catches a write(2) made meanwhile).
        if let Some(want) = s.plan.recheck.get(&idx) {
            if !crate::restat::content_unchanged(dirfd, &n.name, &st, want) {
                self.error(display, "changed while it was being archived");
                s.keep_with_ancestors(idx);
                return;
            }
        }
        match sys::fstatat(dirfd, &n.name, false) {
            Ok(now) => {
                // A pseudo-filesystem's files change by themselves, and nothing of them was
                // archived: only their identity matters.
                let same = if st.is_dir() || n.pseudo {
                    (now.dev, now.ino, now.file_type()) == (st.dev, st.ino, st.file_type())
                } else if hard_linked && self.unlinking(st.dev, st.ino) {
                    crate::restat::unchanged_but_ctime(&now, &st)
                } else {
                    crate::restat::unchanged(&now, &st)
                };
                if !same {
                    self.error(display, "changed while it was being archived");
                    s.keep_with_ancestors(idx);
                    return;
                }
            }
            Err(e) => {
                let gone = e.raw_os_error() == Some(libc::ENOENT);
                if self.ignorable(&e) || (gone && n.repeat) {
                    return;
                }
                self.error(display, &sys::strerror(&e));
                s.keep_with_ancestors(idx);
                return;
            }
        }
        if hard_linked {
            // Before the unlink: another thread may re-stat another name of it at any time
            // after.
            if let Ok(mut set) = s.unlinked.lock() {
                set.insert((st.dev, st.ino));
            }
        }
        match crate::unlink::remove_object(dirfd, &n.name, st.is_dir()) {
            Ok(()) => {
                if n.pseudo && !s.opts.no_archive {
                    self.say(&format!(
                        "{}: warning: removed {} without an archive copy: it is on a pseudo-filesystem (kernel state, not data)\n",
                        s.prog,
                        quote(display)
                    ));
                }
                if s.opts.verbose {
                    let what = if st.is_dir() {
                        "removed directory"
                    } else {
                        "removed"
                    };
                    stdout_write(format!("{what} {}\n", quote(display)).as_bytes());
                }
            }
            Err(e) => {
                if self.ignorable(&e) {
                    return;
                }
                let errno = e.raw_os_error().unwrap_or(0);
                let shown = match n.unreadable {
                    Some(saved)
                        if matches!(
                            errno,
                            libc::ENOTEMPTY | libc::EISDIR | libc::ENOTDIR | libc::EEXIST
                        ) =>
                    {
                        std::io::Error::from_raw_os_error(saved)
                    }
                    _ => e,
                };
                self.error(display, &sys::strerror(&shown));
                s.keep_with_ancestors(idx);
            }
        }
    }

    fn unlinking(&self, dev: u64, ino: u64) -> bool {
        self.s
            .unlinked
            .lock()
            .map(|set| set.contains(&(dev, ino)))
            .unwrap_or(false)
    }

    /// rm's `ignorable_missing`: with -f, a name that is gone (or not a directory) is fine.
    fn ignorable(&self, e: &std::io::Error) -> bool {
        self.s.opts.ignore_missing
            && matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR))
    }
}

/// The top of the tree, opened by the calling thread; the jobs hang below it.
enum Part {
    /// A subtree one thread unlinks: the index into the job list.
    Job(usize),
    /// A directory cut into parts; unlinked itself after them.
    Open {
        idx: usize,
        dirfd: RawFd,
        display: Vec<u8>,
        fd: OwnedFd,
        parts: Vec<Part>,
    },
}

/// A subtree, or a run of small siblings, that one thread unlinks. A directory of 200,000
/// files is cut into a few runs, not 200,000 jobs with a path each.
struct Job {
    idx: usize,
    dirfd: RawFd,
    /// The path of `idx` as displayed.
    display: Vec<u8>,
    /// `None`: the subtree of `idx`. `Some((first, count))`: `count` children of the
    /// directory `idx` (open as `dirfd`) from `first` on, each subtree after the other.
    siblings: Option<(usize, usize)>,
}

impl Job {
    fn run(&self, u: &mut Unlinker<'_, '_>) {
        let plan = u.s.plan;
        let Some((first, count)) = self.siblings else {
            u.node(self.idx, self.dirfd, &self.display);
            return;
        };
        let run = std::iter::once(first).chain(plan.siblings_after(first));
        for c in run.take(count) {
            let display = rules::child_path(&self.display, plan.nodes[c].name.as_bytes());
            u.node(c, self.dirfd, &display);
        }
    }
}

/// Cut the tree into jobs, let `threads` threads take them in turn, then print what they held
/// and unlink the directories above them, in the order one thread would have.
fn parallel(s: &Shared<'_>, threads: usize) -> bool {
    let plan = s.plan;
    // Objects in each subtree; a child's index is always above its parent's.
    let mut size = vec![1usize; plan.nodes.len()];
    for i in (0..plan.nodes.len()).rev() {
        if let Some(p) = plan.nodes[i].parent() {
            size[p] += size[i];
        }
    }
    let total: usize = plan.roots.iter().map(|&r| size[r]).sum();
    let cut_above = (total / (threads * JOBS_PER_THREAD)).max(1);
    let mut jobs = Vec::new();
    let mut failed = false;
    let mut main = Unlinker::new(s, false);
    let mut parts = Vec::new();
    for &r in &plan.roots {
        let at = Place {
            idx: r,
            dirfd: sys::AT_FDCWD,
            display: plan.display(r),
            depth: 0,
        };
        parts.push(cut(s, &size, cut_above, at, &mut jobs));
    }
    let next = AtomicUsize::new(0);
    let results: Vec<Mutex<Option<Vec<u8>>>> = jobs.iter().map(|_| Mutex::new(None)).collect();
    let work = || -> bool {
        let mut failed = false;
        loop {
            let j = next.fetch_add(1, Ordering::Relaxed);
            let Some(job) = jobs.get(j) else {
                return failed;
            };
            let mut u = Unlinker::new(s, true);
            job.run(&mut u);
            failed |= u.failed;
            match (u.held, results[j].lock()) {
                (Some(held), Ok(mut slot)) if !held.is_empty() => *slot = Some(held),
                _ => {}
            }
        }
    };
    std::thread::scope(|scope| {
        // A helper that cannot be started (out of threads or memory) leaves its share to
        // the others: every job is taken by whoever comes first.
        let helpers: Vec<_> = (1..threads)
            .filter_map(|_| std::thread::Builder::new().spawn_scoped(scope, work).ok())
            .collect();
        failed |= work();
        for h in helpers {
            // A helper that panicked left its jobs' objects in place; say so as an error.
            failed |= h.join().unwrap_or(true);
        }
    });
    for part in parts {
        replay(&mut main, part, &results);
    }
    failed | main.failed
}

/// Where a part of the tree is: its node, the directory it is in, its path and depth.
struct Place {
    idx: usize,
    dirfd: RawFd,
    display: Vec<u8>,
    depth: usize,
}

/// The part for `at`: a job, or, for a large directory that is still the archived one (and
/// not too deep), the directory opened with its children cut in turn.
fn cut(s: &Shared<'_>, size: &[usize], cut_above: usize, at: Place, jobs: &mut Vec<Job>) -> Part {
    let Place {
        idx,
        dirfd,
        display,
        depth,
    } = at;
    let n = &s.plan.nodes[idx];
    if size[idx] > cut_above && depth < MAX_CUT_DEPTH && n.st.is_dir() && s.has_removal[idx] {
        // A directory that cannot be opened becomes a job, which reports it in its turn.
        if let Ok(fd) = s.open_dir(idx, dirfd) {
            let mut parts = Vec::new();
            // Small children go in runs of about `cut_above` objects; large ones are cut.
            // (its first child, how many, how many objects below them)
            let mut run: Option<(usize, usize, usize)> = None;
            let dir = (idx, fd.as_raw_fd(), &display[..]);
            for c in s.plan.children(idx) {
                if size[c] <= cut_above {
                    let (first, count, objects) = run.unwrap_or((c, 0, 0));
                    run = Some((first, count + 1, objects + size[c]));
                    if objects + size[c] >= cut_above {
                        flush_run(dir, &mut run, &mut parts, jobs);
                    }
                    continue;
                }
                flush_run(dir, &mut run, &mut parts, jobs);
                let child = Place {
                    idx: c,
                    dirfd: fd.as_raw_fd(),
                    display: rules::child_path(&display, s.plan.nodes[c].name.as_bytes()),
                    depth: depth + 1,
                };
                parts.push(cut(s, size, cut_above, child, jobs));
            }
            flush_run(dir, &mut run, &mut parts, jobs);
            return Part::Open {
                idx,
                dirfd,
                display,
                fd,
                parts,
            };
        }
    }
    jobs.push(Job {
        idx,
        dirfd,
        display,
        siblings: None,
    });
    Part::Job(jobs.len() - 1)
}

/// End the run of small children of `dir` (its node, fd and path) in `run`: one job for
/// all of them.
fn flush_run(
    (idx, dirfd, display): (usize, RawFd, &[u8]),
    run: &mut Option<(usize, usize, usize)>,
    parts: &mut Vec<Part>,
    jobs: &mut Vec<Job>,
) {
    if let Some((first, count, _)) = run.take() {
        jobs.push(Job {
            idx,
            dirfd,
            display: display.to_vec(),
            siblings: Some((first, count)),
        });
        parts.push(Part::Job(jobs.len() - 1));
    }
}

/// Print the held messages and unlink the opened directories, in post-order.
fn replay(main: &mut Unlinker<'_, '_>, part: Part, results: &[Mutex<Option<Vec<u8>>>]) {
    match part {
        Part::Job(j) => {
            let held = results.get(j).and_then(|m| m.lock().ok()?.take());
            if let Some(held) = held {
                stderr_write(&held);
            }
        }
        Part::Open {
            idx,
            dirfd,
            display,
            fd,
            parts,
        } => {
            for p in parts {
                replay(main, p, results);
            }
            drop(fd);
            main.finish(idx, dirfd, &display);
        }
    }
}
