//! The plan: walk every operand as GNU rm's fts walk would, ask rm's questions, print rm's
//! refusals, and record what is to be removed — without removing anything.
//!
//! The walk goes through directory descriptors (`openat` with `O_NOFOLLOW`, `fstatat` with
//! `AT_SYMLINK_NOFOLLOW`), in readdir order, pre-order for "descend into" and post-order for
//! "remove directory", exactly where rm asks them. A child that is kept (declined, refused,
//! unreadable) keeps its ancestors silently, as rm's `mark_ancestor_dirs` does.

use std::collections::{HashMap, HashSet};
use std::ffi::CStr;
use std::io::{self, BufRead};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;

use crate::dirstack::DirStack;
use crate::quote::quote;
use crate::rules;
use crate::rules::{InteractiveMode, Options};
use crate::store::Store;
use crate::sys::{self, Stat};

mod plan;
pub use plan::{ArchivedHash, Fate, Node, Plan};

/// Everything the walk needs to know besides the operands.
pub struct Walker<'a> {
    pub opts: &'a Options,
    pub prog: &'a str,
    pub stdin_tty: bool,
    pub euid: u32,
    /// `(dev, ino)` of `/` when `-r` and --preserve-root are in effect.
    pub root_dev_ino: Option<(u64, u64)>,
    /// `(dev, ino)` of the store, which is never removed.
    pub store_dev_ino: Option<(u64, u64)>,
    /// Canonical path of the store: operands inside it are refused.
    pub store_path: Option<std::path::PathBuf>,
    /// `(dev, ino)` of the store's directories (`Store::directory_ids`): the store is
    /// recognised by what it is, wherever it is mounted or linked.
    pub store_dirs: HashSet<(u64, u64)>,
    /// Directories whose ancestors were looked at for a store (`Walker::store_above`).
    pub store_above_cache: HashMap<(u64, u64), Option<StoreMatch>>,
    /// Whether files are to be read (false with --no-archive).
    pub archiving: bool,
    /// `(dev, ino)` of a staged deletion's directory in the store, when the walk is its
    /// worker's: the operands right in it are the staged objects, not store files.
    pub staged: Option<(u64, u64)>,
    pub cwd: Vec<u8>,
    pub plan: Plan,
    /// What earlier operands remove, so later operands see it gone, as rm (which removes
    /// operand by operand) would: directories by `(dev, ino)`, other objects by their parent
    /// directory's `(dev, ino)` and name.
    pub seen_dirs: HashMap<(u64, u64), usize>,
    pub seen_names: HashMap<(u64, u64, Vec<u8>), usize>,
    /// Whether operands follow the one being walked (else nothing needs `seen_*`).
    pub more_operands: bool,
    /// Directories the walk could not read, and their ancestors: their rmdir fails unless
    /// they are empty, which only the unlink phase finds out. A later operand meets them
    /// again, as rm does when they are still there.
    pub uncertain: HashSet<usize>,
}

impl<'a> Walker<'a> {
    /// A walk of `opts`'s operands by `prog` in `cwd`, which skips `store` (its directories
    /// by `(dev, ino)`, its path) when there is one; nothing walked yet.
    pub fn new(opts: &'a Options, prog: &'a str, cwd: Vec<u8>, store: Option<&Store>) -> Self {
        Walker {
            opts,
            prog,
            stdin_tty: opts.presume_input_tty || sys::stdin_is_tty(),
            euid: sys::geteuid(),
            root_dev_ino: None,
            store_dev_ino: store.map(|s| s.dev_ino),
            store_path: store.map(|s| s.canonical.clone()),
            store_dirs: store.map(Store::directory_ids).unwrap_or_default(),
            store_above_cache: HashMap::new(),
            archiving: !opts.no_archive,
            staged: None,
            cwd,
            plan: Plan::default(),
            seen_dirs: HashMap::new(),
            seen_names: HashMap::new(),
            more_operands: false,
            uncertain: HashSet::new(),
        }
    }
}

/// How a directory was recognised as a store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreMatch {
    /// This run's store, or one of its directories, by `(dev, ino)`.
    Own,
    /// A directory holding a saferm `FORMAT` file: some store (another user's, an old one).
    Marked,
}

impl StoreMatch {
    fn noun(self) -> &'static str {
        match self {
            StoreMatch::Own => "the saferm store",
            StoreMatch::Marked => "a saferm store",
        }
    }
}

/// A directory opened to walk its children.
struct Opened {
    fd: OwnedFd,
    entries: Vec<sys::DirEntry>,
    children_ok: Result<(), i32>,
}

/// A directory being walked: the entries still to meet, and how to finish it.
struct Frame {
    idx: usize,
    level: usize,
    /// Whether its own unlink is possible (from the directory above).
    dir_ok: Result<(), i32>,
    /// Whether unlinks inside it are possible.
    children_ok: Result<(), i32>,
    entries: std::vec::IntoIter<sys::DirEntry>,
    /// The length of its path in the walk's path buffer.
    display_len: usize,
}

enum Asked {
    Yes,
    No,
    Error,
}

impl Walker<'_> {
    /// Print an error in rm's form and remember that the run failed.
    pub fn error(&mut self, msg: &str) {
        crate::output::stderr_write(format!("{}: {msg}\n", self.prog).as_bytes());
        self.plan.failed = true;
    }

    fn cannot_remove(&mut self, display: &[u8], err: &io::Error) {
        let msg = format!("cannot remove {}: {}", quote(display), sys::strerror(err));
        self.error(&msg);
    }

    /// Walk one operand.
    pub fn operand(&mut self, index: usize, operand: &[u8]) {
        let path = rules::fts_trim(operand).to_vec();
        let cpath = match sys::cstr(&path) {
            Ok(c) => c,
            Err(e) => return self.cannot_remove(&path, &e),
        };
        let trimmed = trim_trailing_slashes(&path).to_vec();
        let (dir_part, base) = split_dir_base(&trimmed);
        let parent_id = sys::cstr(dir_part)
            .and_then(|c| sys::fstatat(sys::AT_FDCWD, &c, true))
            .ok()
            .map(|p| (p.dev, p.ino));
        let enoent = || io::Error::from_raw_os_error(libc::ENOENT);
        // Inside a directory an earlier operand removes: gone by the time rm gets here.
        let removed_before = parent_id.is_some_and(|(d, i)| {
            self.removed_dir((d, i)) || self.removed_name(&(d, i, base.to_vec()))
        });
        if removed_before {
            return self.missing(&path, &enoent(), &enoent());
        }
        let (st, pinned) = match sys::lstat_pinned(sys::AT_FDCWD, &cpath) {
            Ok(got) => got,
            Err(e) => {
                // rm reports what unlinkat says: `dangling/` is "Not a directory".
                let unlink_err = match sys::cstr(&trimmed)
                    .and_then(|c| sys::fstatat(sys::AT_FDCWD, &c, false))
                {
                    Ok(l) if l.is_symlink() && trimmed.len() < path.len() => {
                        io::Error::from_raw_os_error(libc::ENOTDIR)
                    }
                    _ => io::Error::from_raw_os_error(e.raw_os_error().unwrap_or(libc::EIO)),
                };
                return self.missing(&path, &e, &unlink_err);
            }
        };
        if st.is_dir() && self.removed_dir((st.dev, st.ino)) {
            return self.missing(&path, &enoent(), &enoent());
        }
        // The store seen through another path (a bind mount of it or of `archives/`)
        // is still the store: its directories are known by `(dev, ino)` and its marker.
        let staged = self.staged.is_some() && parent_id == self.staged;
        if let Some(found) = self.store_above(dir_part, parent_id).filter(|_| !staged) {
            let msg = format!(
                "cannot remove {}: it is inside {} (use 'unrm --purge')",
                quote(&path),
                found.noun()
            );
            return self.error(&msg);
        }
        if let Some(store) = self.store_path.as_ref().filter(|_| !staged) {
            if let Some(abs) = absolute_of(&self.cwd, &path, st.is_dir()) {
                if std::path::Path::new(std::ffi::OsStr::from_bytes(&abs)).starts_with(store) {
                    let msg = format!(
                        "cannot remove {}: it is inside the saferm store (use 'unrm --purge')",
                        quote(&path)
                    );
                    return self.error(&msg);
                }
            }
        }
        let abs = absolute_of(&self.cwd, &path, st.is_dir())
            .unwrap_or_else(|| rules::child_path(&self.cwd, &path));
        // `link/` names the directory a symlink points to: its contents go, the link stays
        // and rmdir fails with ENOTDIR, as with rm.
        let through_link = path.ends_with(b"/") && path.len() > 1 && {
            let trimmed = trim_trailing_slashes(&path);
            sys::cstr(trimmed)
                .ok()
                .and_then(|c| sys::fstatat(sys::AT_FDCWD, &c, false).ok())
                .is_some_and(|s| s.is_symlink())
        };
        let pseudo = sys::pseudo_fs_at(sys::AT_FDCWD, &cpath);
        let node = Node {
            archive_self: !through_link && abs != b"/",
            pseudo,
            pinned,
            ..Node::new(None, cpath.into(), st, index)
        };
        let idx = self.push(node, parent_id, base);
        self.plan.roots.push(idx);
        self.plan.root_abs.insert(idx, abs);
        // May rm unlink in the directory this operand is in? (Asked once per operand.)
        let unlinkable = self.unlinkable_in(sys::AT_FDCWD, dir_part);
        if st.is_dir() {
            self.walk_dir(idx, st.dev, unlinkable);
        } else {
            self.leaf(idx, sys::AT_FDCWD, unlinkable);
        }
    }

    /// Whether `dir` (an operand's directory, whose `(dev, ino)` is `id`) or a directory
    /// above it is a store. Climbs by `..` from the directory itself, so a bind mount is
    /// seen for what it is; asked once per directory (`rm d/*` climbs once).
    fn store_above(&mut self, dir: &[u8], id: Option<(u64, u64)>) -> Option<StoreMatch> {
        if !self.archiving {
            return None;
        }
        let id = id?;
        if let Some(found) = self.store_above_cache.get(&id) {
            return *found;
        }
        let found = self.climb_for_store(dir);
        self.store_above_cache.insert(id, found);
        found
    }

    fn climb_for_store(&self, dir: &[u8]) -> Option<StoreMatch> {
        let flags = libc::O_PATH | libc::O_DIRECTORY;
        let mut fd = sys::openat(sys::AT_FDCWD, &sys::cstr(dir).ok()?, flags, 0).ok()?;
        let mut below: Option<(u64, u64)> = None;
        // Deeper than PATH_MAX allows: a loop guard only.
        for _ in 0..4096 {
            let st = sys::fstat(fd.as_raw_fd()).ok()?;
            let here = (st.dev, st.ino);
            if below == Some(here) {
                return None; // `/` is its own parent
            }
            if self.store_dirs.contains(&here) {
                return Some(StoreMatch::Own);
            }
            if crate::store::is_marked_store(fd.as_raw_fd()) {
                return Some(StoreMatch::Marked);
            }
            below = Some(here);
            fd = sys::openat(fd.as_raw_fd(), c"..", flags, 0).ok()?;
        }
        None
    }

    fn push(&mut self, mut node: Node, parent_id: Option<(u64, u64)>, name: &[u8]) -> usize {
        let idx = self.plan.link_child(node.parent());
        // Met again: only what an earlier operand may fail to remove is (see `uncertain`).
        node.repeat = (node.st.is_dir()
            && self.seen_dirs.contains_key(&(node.st.dev, node.st.ino)))
            || (!self.seen_names.is_empty()
                && parent_id
                    .is_some_and(|(d, i)| self.seen_names.contains_key(&(d, i, name.to_vec()))));
        if self.more_operands {
            if node.st.is_dir() {
                self.seen_dirs.insert((node.st.dev, node.st.ino), idx);
            }
            if let Some((d, i)) = parent_id {
                self.seen_names.insert((d, i, name.to_vec()), idx);
            }
        }
        self.plan.nodes.push(node);
        idx
    }

    fn removed_dir(&self, id: (u64, u64)) -> bool {
        self.seen_dirs
            .get(&id)
            .is_some_and(|&i| self.certainly_removed(i))
    }

    fn removed_name(&self, key: &(u64, u64, Vec<u8>)) -> bool {
        self.seen_names
            .get(key)
            .is_some_and(|&i| self.certainly_removed(i))
    }

    fn certainly_removed(&self, idx: usize) -> bool {
        self.plan.nodes[idx].fate == Fate::Remove && !self.uncertain.contains(&idx)
    }

    /// Whether unlinkat in this directory would fail for every name (no write or search
    /// permission, read-only filesystem), and with which errno. rm learns it from unlinkat;
    /// saferm must know before archiving, to fail at the same point with the same message.
    fn unlinkable_in(&self, dirfd: RawFd, dir: &[u8]) -> Result<(), i32> {
        let c = sys::cstr(dir).map_err(|_| libc::EINVAL)?;
        match sys::access_effective(dirfd, &c, libc::W_OK | libc::X_OK) {
            Ok(()) => Ok(()),
            Err(e) => match e.raw_os_error() {
                Some(code @ (libc::EACCES | libc::EROFS | libc::EPERM)) => Err(code),
                _ => Ok(()),
            },
        }
    }

    /// The errno unlinkat would give for this object, predicted from its directory.
    fn predicted_unlink_error(&self, idx: usize, dir_ok: Result<(), i32>) -> Option<io::Error> {
        if let Err(code) = dir_ok {
            return Some(io::Error::from_raw_os_error(code));
        }
        // A sticky directory lets only the owner of the file or of the directory unlink.
        let n = &self.plan.nodes[idx];
        if self.euid != 0 && n.st.uid != self.euid {
            if let Some(p) = n.parent() {
                let ps = self.plan.nodes[p].st;
                if ps.mode & libc::S_ISVTX != 0 && ps.uid != self.euid {
                    return Some(io::Error::from_raw_os_error(libc::EPERM));
                }
            }
        }
        None
    }

    /// rm's excise failing: report, and keep the object and its ancestors.
    fn excise_fails(&mut self, idx: usize, err: &io::Error) {
        let display = self.plan.display(idx);
        self.cannot_remove(&display, err);
        self.plan.keep_with_ancestors(idx);
    }

    /// An operand that lstat could not find (fts's FTS_NS). `stat_err` is what lstat said;
    /// `unlink_err` what rm's unlinkat would say. rm reports the first when its prompt()
    /// stats the name (-i, or a tty for a non-root user), else the second, which -f silences
    /// when it is ENOENT or ENOTDIR.
    fn missing(&mut self, display: &[u8], stat_err: &io::Error, unlink_err: &io::Error) {
        let o = self.opts;
        let prompt_stats = o.interactive == InteractiveMode::Always
            || (o.interactive != InteractiveMode::Never
                && !o.ignore_missing
                && self.stdin_tty
                && self.euid != 0);
        if prompt_stats {
            return self.cannot_remove(display, stat_err);
        }
        let ignorable = matches!(
            unlink_err.raw_os_error(),
            Some(libc::ENOENT) | Some(libc::ENOTDIR)
        );
        if o.ignore_missing && ignorable {
            return;
        }
        self.cannot_remove(display, unlink_err);
    }

    /// Anything but a directory: ask if rm would, check it can be archived.
    fn leaf(&mut self, idx: usize, dirfd: RawFd, dir_ok: Result<(), i32>) {
        // A declined or refused file keeps only itself: rm then asks about the directory
        // above and fails to remove it (Directory not empty), as GNU rm does.
        match self.ask(idx, dirfd, false, false) {
            Asked::Yes => {}
            Asked::No => return self.plan.nodes[idx].fate = Fate::Keep,
            Asked::Error => return self.fail_alone(idx),
        }
        if let Some(e) = self.predicted_unlink_error(idx, dir_ok) {
            return self.excise_fails(idx, &e);
        }
        let n = &self.plan.nodes[idx];
        // The user's own files can always be read: the archive writer gives its owner read
        // permission for as long as an open takes (sys::open_as_owner).
        if self.archiving && n.st.is_file() && !n.pseudo && self.euid != 0 && n.st.uid != self.euid
        {
            if let Err(e) = sys::access_effective(dirfd, &n.name, libc::R_OK) {
                let msg = format!(
                    "cannot remove {}: could not archive: {}",
                    quote(&self.plan.display(idx)),
                    sys::strerror(&e)
                );
                self.error(&msg);
                self.plan.keep_with_ancestors(idx);
            }
        }
    }

    fn fail(&mut self, idx: usize) {
        self.plan.failed = true;
        self.plan.keep_with_ancestors(idx);
    }

    fn fail_alone(&mut self, idx: usize) {
        self.plan.failed = true;
        self.plan.nodes[idx].fate = Fate::Keep;
    }

    /// Walk an operand that is a directory, and everything below it, with a loop and a
    /// bounded number of descriptors ([`DirStack`]): trees are deeper than the stack and the
    /// open-file limit.
    fn walk_dir(&mut self, root: usize, root_dev: u64, dir_ok: Result<(), i32>) {
        let mut fds = DirStack::new(sys::AT_FDCWD);
        let mut frames: Vec<Frame> = Vec::new();
        let mut display = self.plan.display(root);
        if let Some(opened) = self.enter(root, sys::AT_FDCWD, 0, root_dev, dir_ok, &display) {
            frames.push(self.frame(root, 0, dir_ok, opened, &mut fds, &display));
        }
        while let Some(top) = frames.last_mut() {
            let (idx, level, children_ok, here_len) =
                (top.idx, top.level, top.children_ok, top.display_len);
            let Some(entry) = top.entries.next() else {
                // FTS_DP, with the directory closed and the one above open.
                let done = frames.pop();
                let Some(done) = done else { break };
                if let Err(e) = fds.pop() {
                    let above = self.plan.nodes[done.idx].parent().unwrap_or(done.idx);
                    let shown = self.plan.display(above);
                    self.changed_meanwhile(&shown, &e);
                    self.plan.keep_with_ancestors(done.idx);
                    return;
                }
                if let Some(up) = frames.last() {
                    display.truncate(up.display_len);
                }
                match fds.top() {
                    Ok(dirfd) => self.post_order(done.idx, dirfd, done.dir_ok),
                    Err(_) => self.fail(done.idx),
                }
                continue;
            };
            let fd = match fds.top() {
                Ok(fd) => fd,
                Err(_) => return self.fail(idx),
            };
            rules::push_child(&mut display, entry.name.as_bytes());
            if let Some(opened) = self.child(idx, fd, entry, level, root_dev, children_ok, &display)
            {
                let cidx = self.plan.nodes.len() - 1;
                let frame = self.frame(cidx, level + 1, children_ok, opened, &mut fds, &display);
                frames.push(frame);
                continue;
            }
            display.truncate(here_len);
        }
    }

    /// A directory entered: its descriptor goes on the stack, its entries into a frame.
    fn frame(
        &self,
        idx: usize,
        level: usize,
        dir_ok: Result<(), i32>,
        opened: Opened,
        fds: &mut DirStack,
        display: &[u8],
    ) -> Frame {
        let st = self.plan.nodes[idx].st;
        fds.push(opened.fd, (st.dev, st.ino));
        Frame {
            idx,
            level,
            dir_ok,
            children_ok: opened.children_ok,
            entries: opened.entries.into_iter(),
            display_len: display.len(),
        }
    }

    fn changed_meanwhile(&mut self, display: &[u8], e: &io::Error) {
        if e.raw_os_error() == Some(libc::ESTALE) {
            let msg = format!(
                "cannot remove {}: changed while it was being archived",
                quote(display)
            );
            self.error(&msg);
        } else {
            self.cannot_remove(display, e);
        }
    }

    /// One entry of the directory `idx` (open at `fd`): planned, and if it is a directory
    /// to go into, opened.
    #[allow(clippy::too_many_arguments)]
    fn child(
        &mut self,
        idx: usize,
        fd: RawFd,
        entry: sys::DirEntry,
        level: usize,
        root_dev: u64,
        children_ok: Result<(), i32>,
        child_display: &[u8],
    ) -> Option<Opened> {
        let opts = self.opts;
        let (operand, st) = (self.plan.nodes[idx].operand, self.plan.nodes[idx].st);
        let (child_st, pinned) = match sys::lstat_pinned(fd, &entry.name) {
            Ok(got) => got,
            Err(e) => {
                // Gone since readdir: rm's unlink would fail the same way.
                if !(opts.ignore_missing && e.raw_os_error() == Some(libc::ENOENT)) {
                    self.cannot_remove(child_display, &e);
                    self.plan.keep_with_ancestors(idx);
                }
                return None;
            }
        };
        // Below a mount point, or a file mounted over one: look at the filesystem again.
        let pseudo = if child_st.dev == st.dev {
            self.plan.nodes[idx].pseudo
        } else {
            sys::pseudo_fs_at(fd, &entry.name)
        };
        let child = Node {
            pseudo,
            pinned,
            ..Node::new(Some(idx), entry.name, child_st, operand)
        };
        let cname = child.name.as_bytes().to_vec();
        let cidx = self.push(child, Some((st.dev, st.ino)), &cname);
        if child_st.is_dir() {
            return self.enter(cidx, fd, level + 1, root_dev, children_ok, child_display);
        }
        self.leaf(cidx, fd, children_ok);
        None
    }

    /// A directory: rm's FTS_D checks and the descend question. Returns it open, with its
    /// entries, when its children are to be walked; else it is done (FTS_DP included).
    fn enter(
        &mut self,
        idx: usize,
        dirfd: RawFd,
        level: usize,
        root_dev: u64,
        dir_ok: Result<(), i32>,
        display: &[u8],
    ) -> Option<Opened> {
        let opts = self.opts;
        let (name, st) = {
            let n = &self.plan.nodes[idx];
            (n.name.clone(), n.st)
        };
        // Open and list it now: rm's is_empty_dir does, and the children come from it.
        let opened = sys::open_dir_nofollow(dirfd, &name).and_then(|fd| {
            let now = sys::fstat(fd.as_raw_fd())?;
            if (now.dev, now.ino) != (st.dev, st.ino) {
                return Err(io::Error::from_raw_os_error(libc::ESTALE));
            }
            let mut entries = sys::read_dir(fd.as_raw_fd())?;
            sort_like_fts(fd.as_raw_fd(), &mut entries);
            // What an earlier operand removes is gone by now, for rm.
            entries.retain(|e| !self.removed_name(&(st.dev, st.ino, e.name.as_bytes().to_vec())));
            Ok((fd, entries))
        });
        let is_empty = matches!(&opened, Ok((_, e)) if e.is_empty());

        if !(opts.recursive || (opts.remove_empty_dirs && is_empty)) {
            let errno = if opts.remove_empty_dirs {
                libc::ENOTEMPTY
            } else {
                libc::EISDIR
            };
            self.cannot_remove(display, &io::Error::from_raw_os_error(errno));
            self.fail(idx);
            return None;
        }
        if level == 0 && self.refused_operand(display, name.as_bytes(), &st) {
            self.fail(idx);
            return None;
        }
        if let Some(what) = self.store_here(&st, &opened) {
            let msg = format!("skipping {}, since it is {what}", quote(display));
            self.error(&msg);
            self.fail(idx);
            return None;
        }

        match self.ask(idx, dirfd, true, is_empty) {
            Asked::Yes => {}
            Asked::No => {
                self.plan.keep_with_ancestors(idx);
                return None;
            }
            Asked::Error => {
                self.fail(idx);
                return None;
            }
        }
        if is_empty {
            // Removed as it is, with no second question (rm's excise at FTS_D).
            if let Some(e) = self.predicted_unlink_error(idx, dir_ok) {
                self.excise_fails(idx, &e);
            }
            return None;
        }
        let (fd, entries): (OwnedFd, Vec<sys::DirEntry>) = match opened {
            Ok(pair) => pair,
            Err(e) => {
                self.unreadable_dir(idx, dirfd, dir_ok, display, &e);
                return None;
            }
        };
        if opts.one_file_system && level > 0 && st.dev != root_dev {
            let msg = rules::other_device_text(display);
            self.error(&msg);
            self.fail(idx);
            return None;
        }
        let children_ok = self.unlinkable_in(fd.as_raw_fd(), b".");
        Some(Opened {
            fd,
            entries,
            children_ok,
        })
    }

    /// rm's refusals of a directory operand itself: `.` and `..`, `/` (with
    /// --preserve-root), and with --preserve-root=all one on another device than its parent.
    /// Says why and returns true when it is refused.
    fn refused_operand(&mut self, display: &[u8], name: &[u8], st: &Stat) -> bool {
        if rules::dot_or_dotdot(rules::last_component(display)) {
            let msg = rules::refusing_dot_text(display);
            self.error(&msg);
            return true;
        }
        if self.root_dev_ino == Some((st.dev, st.ino)) {
            for line in rules::dangerous_root_lines(display) {
                self.error(&line);
            }
            return true;
        }
        if self.opts.preserve_all_root {
            let probe = rules::parent_probe(name);
            let parent = sys::cstr(&probe).and_then(|c| sys::fstatat(sys::AT_FDCWD, &c, false));
            match parent {
                Err(_) => {
                    let msg = format!(
                        "failed to stat {}: skipping {}",
                        quote(&probe),
                        quote(display)
                    );
                    self.error(&msg);
                    return true;
                }
                Ok(p) if p.dev != st.dev => {
                    let msg = rules::other_device_text(display);
                    self.error(&msg);
                    self.error("and --preserve-root=all is in effect");
                    return true;
                }
                Ok(_) => {}
            }
        }
        false
    }

    /// A directory that could not be opened or listed (`e`): one that changed is kept; else
    /// rm's FTS_DNR: rmdir is tried after asking, and fails unless it is empty.
    fn unreadable_dir(
        &mut self,
        idx: usize,
        dirfd: RawFd,
        dir_ok: Result<(), i32>,
        display: &[u8],
        e: &io::Error,
    ) {
        if e.raw_os_error() == Some(libc::ESTALE) {
            let msg = format!(
                "cannot remove {}: changed while it was being archived",
                quote(display)
            );
            self.error(&msg);
            self.fail(idx);
            return;
        }
        self.plan.nodes[idx].unreadable = e.raw_os_error();
        if self.more_operands {
            let mut cur = Some(idx);
            while let Some(c) = cur.filter(|&c| self.uncertain.insert(c)) {
                cur = self.plan.nodes[c].parent();
            }
        }
        self.post_order(idx, dirfd, dir_ok);
    }

    /// Whether the directory `st` (opened and listed as `opened`) is the store, a part
    /// of it, or another store: how it is to be named in the skipping message.
    fn store_here(
        &self,
        st: &Stat,
        opened: &io::Result<(OwnedFd, Vec<sys::DirEntry>)>,
    ) -> Option<&'static str> {
        if self.store_dev_ino == Some((st.dev, st.ino)) {
            return Some("the saferm store");
        }
        if self.store_dirs.contains(&(st.dev, st.ino)) {
            return Some("part of the saferm store");
        }
        let marked = self.archiving
            && matches!(opened, Ok((fd, entries))
                if entries.iter().any(|e| e.name.as_bytes() == crate::store::layout::FORMAT.as_bytes())
                    && crate::store::is_marked_store(fd.as_raw_fd()));
        marked.then_some("a saferm store")
    }

    /// rm's FTS_DP: a directory whose children all went is asked about (with -i) and removed.
    fn post_order(&mut self, idx: usize, dirfd: RawFd, dir_ok: Result<(), i32>) {
        if self.plan.nodes[idx].fate == Fate::Keep {
            return; // a child failed: rm marks the ancestors and says nothing more
        }
        match self.ask(idx, dirfd, false, false) {
            Asked::Yes => {}
            Asked::No => return self.plan.nodes[idx].fate = Fate::Keep,
            Asked::Error => return self.fail_alone(idx),
        }
        // A child the user declined is still there: rm's rmdir fails right here.
        if self
            .plan
            .children(idx)
            .any(|c| self.plan.nodes[c].fate == Fate::Keep)
        {
            return self.excise_fails(idx, &io::Error::from_raw_os_error(libc::ENOTEMPTY));
        }
        if let Some(e) = self.predicted_unlink_error(idx, dir_ok) {
            self.excise_fails(idx, &e);
        }
    }

    /// rm's `prompt()`: whether to go ahead with this object.
    fn ask(&mut self, idx: usize, dirfd: RawFd, descend: bool, is_empty: bool) -> Asked {
        let opts = self.opts;
        if opts.interactive == InteractiveMode::Never {
            return Asked::Yes;
        }
        let st = self.plan.nodes[idx].st;
        let mut write_protected: i32 = 0;
        let mut wp_errno = 0;
        if !opts.ignore_missing && (opts.interactive == InteractiveMode::Always || self.stdin_tty) {
            let name = &self.plan.nodes[idx].name;
            (write_protected, wp_errno) = self.write_protected(dirfd, name, &st);
        }
        if write_protected == 0 && opts.interactive != InteractiveMode::Always {
            return Asked::Yes;
        }
        // Only now, with a question or an error to print, is the path worth building.
        let display = self.plan.display(idx);
        if write_protected >= 0 {
            if st.is_symlink() {
                if opts.interactive != InteractiveMode::Always {
                    return Asked::Yes;
                }
            } else if st.is_dir() && !(opts.recursive || (opts.remove_empty_dirs && is_empty)) {
                write_protected = -1;
                wp_errno = libc::EISDIR;
            }
        }
        if write_protected < 0 {
            self.cannot_remove(&display, &io::Error::from_raw_os_error(wp_errno));
            return Asked::Error;
        }
        let text = rules::prompt_text(
            self.prog,
            &display,
            descend && st.is_dir() && !is_empty,
            write_protected > 0,
            rules::file_type(st.mode, st.size),
        );
        if yes_no(&text) {
            Asked::Yes
        } else {
            Asked::No
        }
    }

    /// coreutils' `write_protected_non_symlink`: 1 if protected, 0 if not, -1 with an errno.
    fn write_protected(&self, dirfd: RawFd, name: &CStr, st: &Stat) -> (i32, i32) {
        if self.euid == 0 || st.is_symlink() {
            return (0, 0);
        }
        match sys::access_effective(dirfd, name, libc::W_OK) {
            Ok(()) => (0, 0),
            Err(e) if e.raw_os_error() == Some(libc::EACCES) => (1, 0),
            Err(e) => (-1, e.raw_os_error().unwrap_or(libc::EIO)),
        }
    }
}

/// Print a question on stderr and read the answer line from stdin (a tty or not, as rm).
/// End of input, or an unreadable stdin, is "no".
pub fn yes_no(question: &str) -> bool {
    crate::output::stderr_write(question.as_bytes());
    let mut line = Vec::new();
    match io::stdin().lock().read_until(b'\n', &mut line) {
        Ok(0) | Err(_) => false,
        Ok(_) => rules::is_yes(&line, yes_chars()),
    }
}

/// The characters that start an affirmative answer in the current locale (from `YESEXPR`,
/// which is `^[yY]` in the C locale and `^[+1yY]` in many others).
pub fn yes_chars() -> &'static [u8] {
    static YES: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    YES.get_or_init(read_yes_chars)
}

fn read_yes_chars() -> Vec<u8> {
    let (_, expr) = sys::locale_info(libc::LC_MESSAGES, libc::YESEXPR);
    match expr.strip_prefix(b"^[").and_then(|r| {
        r.iter()
            .position(|&b| b == b']')
            .map(|end| r[..end].to_vec())
    }) {
        Some(set) if !set.is_empty() && set.is_ascii() => set,
        _ => b"yY".to_vec(),
    }
}

/// gnulib's fts sorts a directory of more than 10,000 entries by inode number (it makes
/// the walk faster on most filesystems, so it skips the sort on tmpfs, NFS and CIFS). rm's
/// order, and so `rm -rv`'s output, follows.
fn sort_like_fts(fd: RawFd, entries: &mut [sys::DirEntry]) {
    const THRESHOLD: usize = 10_000;
    const TMPFS: i64 = 0x0102_1994;
    const NFS: i64 = 0x6969;
    const CIFS: i64 = 0xFF53_4D42;
    if entries.len() <= THRESHOLD {
        return;
    }
    match sys::statfs(fd) {
        Ok((TMPFS | NFS | CIFS, _)) => {}
        _ => entries.sort_by_key(|e| e.ino),
    }
}

/// `dirname` and `basename` of a path without trailing slashes (`.` for a bare name).
fn split_dir_base(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(0) => (b"/", &path[1..]),
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (b".", path),
    }
}

fn trim_trailing_slashes(path: &[u8]) -> &[u8] {
    let mut end = path.len();
    while end > 1 && path[end - 1] == b'/' {
        end -= 1;
    }
    &path[..end]
}

/// The absolute path an operand names, resolving the directories above it (and, for `dir/`,
/// the directory itself) but not a final symlink.
pub fn absolute_of(cwd: &[u8], path: &[u8], is_dir: bool) -> Option<Vec<u8>> {
    let os = |b: &[u8]| std::ffi::OsStr::from_bytes(b).to_os_string();
    if path.ends_with(b"/") && is_dir {
        let canon = std::fs::canonicalize(os(path)).ok()?;
        return Some(canon.as_os_str().as_bytes().to_vec());
    }
    let (dir, base) = split_dir_base(trim_trailing_slashes(path));
    if base.is_empty() {
        return Some(b"/".to_vec());
    }
    let parent = if dir == b"." {
        cwd.to_vec()
    } else {
        std::fs::canonicalize(os(dir))
            .ok()?
            .as_os_str()
            .as_bytes()
            .to_vec()
    };
    Some(rules::child_path(&parent, base))
}
