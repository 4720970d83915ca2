//! The directories from an operand down to where a walk is, as descriptors, with at most
//! [`MAX_OPEN`] of them open at a time, so a tree deeper than the open-file limit can be
//! walked (GNU's fts does the same).
//!
//! Going down, each level is opened by the caller (`openat` with `O_NOFOLLOW` below the
//! level above); once more than [`MAX_OPEN`] are open, the shallowest open one is closed.
//! Going up, a closed level is opened again as `..` of the level below it, which is never a
//! symlink, and must still be the directory that was there (`(dev, ino)`, DESIGN §1.6);
//! if it is not (the tree was moved meanwhile), the stack is broken and every later use
//! fails with `ESTALE`, so the caller keeps what it has not reached.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use crate::sys;

/// Descriptors a stack keeps open at most.
pub const MAX_OPEN: usize = 32;

struct Level {
    id: (u64, u64),
    fd: Option<OwnedFd>,
}

/// A path of directories below `base`, the deepest on top.
pub struct DirStack {
    base: RawFd,
    levels: Vec<Level>,
    /// `levels[first_open..]` are open (always a suffix).
    first_open: usize,
    broken: bool,
}

impl DirStack {
    /// An empty stack whose top is `base` (`AT_FDCWD` for operands), which the caller keeps
    /// open.
    pub fn new(base: RawFd) -> DirStack {
        DirStack {
            base,
            levels: Vec::new(),
            first_open: 0,
            broken: false,
        }
    }

    /// The descriptor of the deepest directory (`base` when the stack is empty).
    pub fn top(&self) -> io::Result<RawFd> {
        if self.broken {
            return Err(io::Error::from_raw_os_error(libc::ESTALE));
        }
        match self.levels.last() {
            None => Ok(self.base),
            Some(Level { fd: Some(fd), .. }) => Ok(fd.as_raw_fd()),
            Some(Level { fd: None, .. }) => Err(io::Error::from_raw_os_error(libc::ESTALE)),
        }
    }

    /// Go down into the directory `fd`, whose `(dev, ino)` is `id`.
    pub fn push(&mut self, fd: OwnedFd, id: (u64, u64)) {
        if self.broken {
            return;
        }
        self.levels.push(Level { id, fd: Some(fd) });
        if self.levels.len() - self.first_open > MAX_OPEN {
            self.levels[self.first_open].fd = None;
            self.first_open += 1;
        }
    }

    /// Go up one level, opening the one above again if it was closed.
    pub fn pop(&mut self) -> io::Result<()> {
        if self.broken {
            return Err(io::Error::from_raw_os_error(libc::ESTALE));
        }
        let Some(below) = self.levels.pop() else {
            return Ok(());
        };
        let len = self.levels.len();
        if len == 0 || self.first_open < len {
            self.first_open = self.first_open.min(len);
            return Ok(());
        }
        let reopened = below
            .fd
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ESTALE))
            .and_then(|fd| sys::open_dir_nofollow(fd.as_raw_fd(), c".."))
            .and_then(|fd| {
                let st = sys::fstat(fd.as_raw_fd())?;
                if (st.dev, st.ino) != self.levels[len - 1].id {
                    return Err(io::Error::from_raw_os_error(libc::ESTALE));
                }
                Ok(fd)
            });
        match reopened {
            Ok(fd) => {
                self.levels[len - 1].fd = Some(fd);
                self.first_open = len - 1;
                Ok(())
            }
            Err(e) => {
                self.broken = true;
                self.levels.clear();
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dirfd: RawFd, name: &std::ffi::CStr) -> (OwnedFd, (u64, u64)) {
        let fd = sys::open_dir_nofollow(dirfd, name).expect("open");
        let st = sys::fstat(fd.as_raw_fd()).expect("fstat");
        (fd, (st.dev, st.ino))
    }

    #[test]
    fn a_deep_path_keeps_few_descriptors_and_climbs_back() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = sys::cstr(tmp.path().as_os_str().as_encoded_bytes()).expect("path");
        let (fd, id) = open(sys::AT_FDCWD, &root);
        let mut stack = DirStack::new(sys::AT_FDCWD);
        stack.push(fd, id);
        let mut ids = vec![id];
        for _ in 0..3 * MAX_OPEN {
            let top = stack.top().expect("top");
            sys::mkdirat_exist_ok(top, c"d", 0o700).expect("mkdir");
            let (fd, id) = open(top, c"d");
            stack.push(fd, id);
            ids.push(id);
        }
        let open_now = stack.levels.iter().filter(|l| l.fd.is_some()).count();
        assert_eq!(open_now, MAX_OPEN);
        while let Some(id) = ids.pop() {
            let st = sys::fstat(stack.top().expect("top")).expect("fstat");
            assert_eq!((st.dev, st.ino), id);
            stack.pop().expect("pop");
        }
        assert_eq!(stack.top().expect("base"), sys::AT_FDCWD);
    }

    #[test]
    fn a_level_moved_away_breaks_the_stack() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = sys::cstr(tmp.path().as_os_str().as_encoded_bytes()).expect("path");
        let (fd, id) = open(sys::AT_FDCWD, &root);
        let mut stack = DirStack::new(sys::AT_FDCWD);
        stack.push(fd, id);
        for _ in 0..MAX_OPEN + 1 {
            let top = stack.top().expect("top");
            sys::mkdirat_exist_ok(top, c"d", 0o700).expect("mkdir");
            let (fd, id) = open(top, c"d");
            stack.push(fd, id);
        }
        // A directory below the closed levels moves: its `..` is no longer the level above.
        #[allow(clippy::disallowed_methods)]
        std::fs::rename(tmp.path().join("d/d"), tmp.path().join("moved")).expect("rename");
        let mut failed = false;
        for _ in 0..MAX_OPEN + 2 {
            if stack.pop().is_err() {
                failed = true;
                break;
            }
        }
        assert!(failed, "climbing through a moved directory must fail");
        assert!(stack.top().is_err());
    }
}
