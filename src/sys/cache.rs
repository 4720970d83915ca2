//! The page cache and leases: whether a read would wait for the disk, read-ahead and
//! write-back hints, and whether anyone else has a file open for writing. None of these has
//! a rustix or std call: each is libc behind one small safe wrapper.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};

use rustix::io::Errno;

use super::{check, openat};

/// Ask the kernel to start writing a file's dirty pages back (`sync_file_range` with
/// `SYNC_FILE_RANGE_WRITE`: it does not wait and guarantees nothing; the fsync does).
pub fn start_writeback(fd: &impl AsFd) {
    let fd = fd.as_fd().as_raw_fd();
    // SAFETY: sync_file_range takes integers only and touches no memory of ours; fd is open
    // (borrowed from the caller). Errors are irrelevant (a hint).
    unsafe {
        libc::sync_file_range(fd, 0, 0, libc::SYNC_FILE_RANGE_WRITE);
    }
}

/// Whether reading the start of `file` has to wait for the disk. A one-byte read that may not
/// wait (`RWF_NOWAIT`) fails with EAGAIN when its page is not cached, and now and then for a
/// cached one too (a lock held for a moment), so EAGAIN is checked with mincore(2) on the
/// first page. Where the kernel cannot tell, the answer is no.
pub fn from_disk(file: &std::fs::File) -> bool {
    would_wait(file) && first_page_cached(file) == Some(false)
}

/// Whether a one-byte read at the start of `file` would wait (`RWF_NOWAIT` says EAGAIN):
/// its page is not cached, or, now and then, a lock is held for a moment.
fn would_wait(file: &std::fs::File) -> bool {
    use rustix::io::{preadv2, ReadWriteFlags};
    let mut byte = [0u8; 1];
    let mut iov = [io::IoSliceMut::new(&mut byte)];
    preadv2(file, &mut iov, 0, ReadWriteFlags::NOWAIT) == Err(Errno::AGAIN)
}

/// Whether the first page of `file` is in the page cache (None: the kernel would not say).
fn first_page_cached(file: &std::fs::File) -> Option<bool> {
    let len = 4096;
    let mut vec = [0u8; 1];
    // SAFETY: a read-only mapping of one page of a file held open for the call, which
    // nothing reads through: mincore only writes one byte per page into vec (one page, one
    // byte), and the mapping is unmapped before the block ends.
    let r = unsafe {
        let addr = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        );
        if addr == libc::MAP_FAILED {
            return None;
        }
        let r = libc::mincore(addr, len, vec.as_mut_ptr());
        libc::munmap(addr, len);
        r
    };
    (r == 0).then_some(vec[0] & 1 == 1)
}

/// Ask the kernel to read the first `size` bytes of the file at `path` into the page cache,
/// without waiting for them. With `unless_cached`, not if its first byte can be read without
/// waiting.
/// Returns whether it asked, or None if the file could not be opened.
pub fn read_ahead(path: &CStr, size: u64, unless_cached: bool) -> Option<bool> {
    let flags = libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NOCTTY | libc::O_NONBLOCK;
    let fd = openat(libc::AT_FDCWD, path, flags, 0).ok()?;
    let file = std::fs::File::from(fd);
    if unless_cached && !would_wait(&file) {
        return Some(false);
    }
    let len = usize::try_from(size).unwrap_or(usize::MAX);
    // SAFETY: readahead takes integers only and touches no memory of ours; file is open.
    Some(unsafe { libc::readahead(file.as_raw_fd(), 0, len) } == 0)
}

/// Whether anyone else has a file open for writing, as far as the kernel can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Writers {
    /// Nobody: no descriptor of it is open for writing, and no writable shared mapping of it
    /// exists (a mapping keeps its open file for writing even after its descriptor is
    /// closed).
    None,
    /// Someone has it open for writing (a writer, or a writable `MAP_SHARED` mapping).
    Some,
    /// The kernel would not say (a file the caller neither owns nor has `CAP_LEASE` for, a
    /// filesystem without leases such as NFS).
    Unknown,
}

/// Ask whether `fd` (a regular file this process opened read-only) is open for writing
/// anywhere else: a read lease (`F_SETLEASE F_RDLCK`) is granted only when it is not, and is
/// given back at once, so that nobody who opens it meanwhile waits more than a moment.
///
/// A lease being broken sends SIGIO, which would kill the process: [`ignore_lease_breaks`]
/// must have run first.
pub fn writers(fd: RawFd) -> Writers {
    if set_lease(fd, libc::F_RDLCK).is_ok() {
        // Closing the descriptor would give it back as well.
        let _ = set_lease(fd, libc::F_UNLCK);
        return Writers::None;
    }
    match io::Error::last_os_error().raw_os_error() {
        Some(libc::EAGAIN) => Writers::Some,
        _ => Writers::Unknown,
    }
}

/// `fcntl(fd, F_SETLEASE, kind)` (no rustix or nix call has leases).
fn set_lease(fd: RawFd, kind: libc::c_int) -> io::Result<libc::c_int> {
    // SAFETY: F_SETLEASE takes an integer argument and touches no memory of ours; fd is open
    // for the call (module doc).
    check(unsafe { libc::fcntl(fd, libc::F_SETLEASE, kind) })
}

/// Ignore SIGIO, which the kernel sends to a lease holder when someone opens the file for
/// writing ([`writers`]): its default action kills the process. saferm uses no SIGIO.
pub fn ignore_lease_breaks() {
    static DONE: std::sync::Once = std::sync::Once::new();
    DONE.call_once(|| crate::signal::ignore(nix::sys::signal::Signal::SIGIO));
}
