//! Thin, safe wrappers over the system calls saferm walks with.
//!
//! Every traversal goes through directory file descriptors and never follows a symlink it
//! did not get as an operand (DESIGN §1.6). The calls are rustix's (safe, zero-cost, one
//! system call each) with the flags that matter here spelled out. The few that neither
//! rustix nor std has (leases, `readahead`, `sync_file_range`, `mincore`, `fchmodat2`,
//! `fnmatch`, the locale, `ioprio_set`) are libc's, each behind one small safe wrapper
//! (`cache.rs`, `locale.rs`, [`chmod_nofollow`], [`set_io_priority_best_effort`]);
//! directory listings are in `dir.rs`. `unlinkat` is deliberately absent: it lives in
//! `unlink.rs`, the one module allowed to delete.
//!
//! A `RawFd` given to a function here is one its caller holds open for the whole call (an
//! `OwnedFd` or `File` it owns, a level of a `DirStack`, the store's root), or `AT_FDCWD`:
//! [`borrow`] relies on that.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;

pub use libc::AT_FDCWD;

mod cache;
mod dir;
mod locale;

pub use cache::{from_disk, ignore_lease_breaks, read_ahead, start_writeback, writers, Writers};
pub use dir::{read_dir, DirEntry, Name};
pub use locale::{fnmatch, locale_info};

/// `fd` as the [`BorrowedFd`] rustix takes, for as long as the caller's `RawFd` is in scope
/// (one call). `-1`, which no `BorrowedFd` may hold, is `EBADF`, as the kernel says it.
pub(crate) fn borrow(fd: &RawFd) -> io::Result<BorrowedFd<'_>> {
    if *fd == -1 {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    // SAFETY: fd is not -1, and it stays open while the borrow lives (the caller's `fd`
    // outlives it): a RawFd given to this module, or to the crate's other callers of this
    // function (`unlink`, `restore::create`, `store::files`), is one its caller holds open for
    // the call, or AT_FDCWD, which rustix's own `CWD` borrows so too.
    Ok(unsafe { BorrowedFd::borrow_raw(*fd) })
}

/// The width in columns of the terminal on `fd`, if it is one that knows its size.
pub fn terminal_width(fd: RawFd) -> Option<usize> {
    let ws = rustix::termios::tcgetwinsize(borrow(&fd).ok()?).ok()?;
    (ws.ws_col > 0).then_some(usize::from(ws.ws_col))
}

/// A path as a C string; names with a NUL byte cannot exist, so they are reported as such.
pub fn cstr(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// The identity and metadata of one object, as `fstatat` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    pub dev: u64,
    pub ino: u64,
    pub mode: u32,
    pub nlink: u64,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u64,
    pub size: u64,
    pub blocks: u64,
    pub mtime: i64,
    pub mtime_nsec: i64,
    pub ctime: i64,
    pub ctime_nsec: i64,
}

impl Stat {
    #[allow(clippy::unnecessary_cast)] // the field types differ between targets
    fn from_raw(st: &rustix::fs::Stat) -> Stat {
        Stat {
            dev: st.st_dev as u64,
            ino: st.st_ino as u64,
            mode: st.st_mode as u32,
            nlink: st.st_nlink as u64,
            uid: st.st_uid,
            gid: st.st_gid,
            rdev: st.st_rdev as u64,
            size: st.st_size.max(0) as u64,
            blocks: st.st_blocks.max(0) as u64,
            mtime: st.st_mtime as i64,
            mtime_nsec: st.st_mtime_nsec as i64,
            ctime: st.st_ctime as i64,
            ctime_nsec: st.st_ctime_nsec as i64,
        }
    }

    pub fn file_type(&self) -> u32 {
        self.mode & libc::S_IFMT
    }

    pub fn is_dir(&self) -> bool {
        self.file_type() == libc::S_IFDIR
    }

    pub fn is_symlink(&self) -> bool {
        self.file_type() == libc::S_IFLNK
    }

    pub fn is_file(&self) -> bool {
        self.file_type() == libc::S_IFREG
    }
}

/// `fstatat`, not following a final symlink unless `follow`.
pub fn fstatat(dirfd: RawFd, name: &CStr, follow: bool) -> io::Result<Stat> {
    let flags = if follow {
        AtFlags::empty()
    } else {
        AtFlags::SYMLINK_NOFOLLOW
    };
    Ok(Stat::from_raw(&rustix::fs::statat(
        borrow(&dirfd)?,
        name,
        flags,
    )?))
}

/// The `chattr` attributes of an entry that forbid removing it, or its entries, as
/// `statx` reports them without following a symlink: `(immutable, append_only)`. A
/// filesystem that does not report one reads as not having it.
pub fn removal_attributes(dirfd: RawFd, name: &CStr) -> io::Result<(bool, bool)> {
    let (_, pinned) = statx_nofollow(dirfd, name, false)?;
    Ok(pinned)
}

/// `fstatat` without following a symlink, by `statx`, which tells the `chattr` attributes
/// in the same call: the stat, and whether the entry is immutable or append-only (its
/// removal, or its entries', fails), as [`removal_attributes`] says.
pub fn lstat_pinned(dirfd: RawFd, name: &CStr) -> io::Result<(Stat, bool)> {
    let (st, (immutable, append)) = statx_nofollow(dirfd, name, true)?;
    Ok((st, immutable || append))
}

fn statx_nofollow(dirfd: RawFd, name: &CStr, basic: bool) -> io::Result<(Stat, (bool, bool))> {
    use rustix::fs::{StatxAttributes, StatxFlags};
    let mask = if basic {
        StatxFlags::BASIC_STATS
    } else {
        StatxFlags::empty()
    };
    let stx = rustix::fs::statx(
        borrow(&dirfd)?,
        name,
        AtFlags::SYMLINK_NOFOLLOW | AtFlags::STATX_DONT_SYNC,
        mask,
    )?;
    let has = |attr: StatxAttributes| {
        stx.stx_attributes_mask.contains(attr) && stx.stx_attributes.contains(attr)
    };
    let st = Stat {
        dev: rustix::fs::makedev(stx.stx_dev_major, stx.stx_dev_minor),
        ino: stx.stx_ino,
        mode: u32::from(stx.stx_mode),
        nlink: u64::from(stx.stx_nlink),
        uid: stx.stx_uid,
        gid: stx.stx_gid,
        rdev: rustix::fs::makedev(stx.stx_rdev_major, stx.stx_rdev_minor),
        size: stx.stx_size,
        blocks: stx.stx_blocks,
        mtime: stx.stx_mtime.tv_sec,
        mtime_nsec: i64::from(stx.stx_mtime.tv_nsec),
        ctime: stx.stx_ctime.tv_sec,
        ctime_nsec: i64::from(stx.stx_ctime.tv_nsec),
    };
    Ok((
        st,
        (
            has(StatxAttributes::IMMUTABLE),
            has(StatxAttributes::APPEND),
        ),
    ))
}

/// Raise the soft limit on open files to the hard limit. Walking, archiving, unlinking and
/// restoring keep a bounded number of directories open (`dirstack.rs`), so any tree works
/// under any limit; a higher one leaves room for the rest (Go's runtime raises it at
/// start-up too). Up to 2^20; errors leave the limit as it was.
pub fn raise_open_file_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    // None is RLIM_INFINITY.
    let lim = getrlimit(Resource::Nofile);
    if let Some(cur) = lim.current {
        if lim.maximum.is_none_or(|max| cur < max) {
            let current = Some(lim.maximum.map_or(1 << 20, |max| max.min(1 << 20)));
            let _ = setrlimit(Resource::Nofile, Rlimit { current, ..lim });
        }
    }
}

/// `fstat` of an open descriptor.
pub fn fstat(fd: RawFd) -> io::Result<Stat> {
    Ok(Stat::from_raw(&rustix::fs::fstat(borrow(&fd)?)?))
}

/// `openat` with `O_CLOEXEC` added.
pub fn openat(
    dirfd: RawFd,
    name: &CStr,
    flags: libc::c_int,
    mode: libc::mode_t,
) -> io::Result<OwnedFd> {
    let flags = OFlags::from_bits_retain(flags as libc::c_uint) | OFlags::CLOEXEC;
    Ok(rustix::fs::openat(
        borrow(&dirfd)?,
        name,
        flags,
        Mode::from_raw_mode(mode),
    )?)
}

/// Open a directory below `dirfd` without following a symlink in its place.
pub fn open_dir_nofollow(dirfd: RawFd, name: &CStr) -> io::Result<OwnedFd> {
    openat(
        dirfd,
        name,
        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_NOCTTY,
        0,
    )
}

/// Open the directory `name` (one component) below `dirfd` so that the kernel guarantees it
/// is beneath it: `openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
/// RESOLVE_NO_MAGICLINKS` (a `..`, a symlink or a `/proc` magic link in the way is refused,
/// EXDEV or ELOOP), where the kernel has it (Linux 5.6; not behind a seccomp filter that
/// refuses it). Elsewhere the same refusals come from [`open_dir_nofollow`] on a name that
/// is checked to be one plain component. Restores open every directory this way.
pub fn open_dir_beneath(dirfd: RawFd, name: &CStr) -> io::Result<OwnedFd> {
    use std::sync::atomic::{AtomicBool, Ordering};
    static NO_OPENAT2: AtomicBool = AtomicBool::new(false);
    if !NO_OPENAT2.load(Ordering::Relaxed) {
        let resolve = rustix::fs::ResolveFlags::BENEATH
            | rustix::fs::ResolveFlags::NO_SYMLINKS
            | rustix::fs::ResolveFlags::NO_MAGICLINKS;
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::NOCTTY;
        match rustix::fs::openat2(
            borrow(&dirfd)?,
            name,
            flags | OFlags::CLOEXEC,
            Mode::empty(),
            resolve,
        ) {
            Ok(fd) => return Ok(fd),
            Err(Errno::NOSYS | Errno::PERM | Errno::INVAL) => {
                NO_OPENAT2.store(true, Ordering::Relaxed);
            }
            Err(e) => return Err(e.into()),
        }
    }
    open_dir_beneath_by_name(dirfd, name)
}

/// [`open_dir_beneath`] without `openat2`.
fn open_dir_beneath_by_name(dirfd: RawFd, name: &CStr) -> io::Result<OwnedFd> {
    let bytes = name.to_bytes();
    if bytes.is_empty() || bytes == b"." || bytes == b".." || bytes.contains(&b'/') {
        return Err(io::Error::from_raw_os_error(libc::EXDEV));
    }
    open_dir_nofollow(dirfd, name)
}

/// Open a regular file below `dirfd` for reading, without following a symlink and without
/// blocking on a FIFO swapped into its place.
pub fn open_file_nofollow(dirfd: RawFd, name: &CStr) -> io::Result<OwnedFd> {
    openat(
        dirfd,
        name,
        libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NOCTTY | libc::O_NONBLOCK | libc::O_NOATIME,
        0,
    )
    .or_else(|e| {
        // O_NOATIME is refused (EPERM) for files the caller does not own.
        if e.raw_os_error() == Some(libc::EPERM) {
            openat(
                dirfd,
                name,
                libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NOCTTY | libc::O_NONBLOCK,
                0,
            )
        } else {
            Err(e)
        }
    })
}

/// Open a small file of saferm's own (a store file, the config file) to read it whole:
/// never blocking (a FIFO in its place would hang the open and the read), and a regular
/// file only (not a FIFO, a device such as `/dev/zero`, a directory). With `follow` false
/// a symlink in its place is refused too (`ELOOP`); the config file may be a symlink into
/// a dotfiles checkout, store files may not. Refused objects give `EINVAL`-like errors
/// that say what they are.
pub fn open_regular(dirfd: RawFd, name: &CStr, follow: bool) -> io::Result<std::fs::File> {
    let nofollow = if follow { 0 } else { libc::O_NOFOLLOW };
    let fd = openat(
        dirfd,
        name,
        libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY | nofollow,
        0,
    )?;
    let st = fstat(fd.as_raw_fd())?;
    if !st.is_file() {
        let what = match st.file_type() {
            libc::S_IFIFO => "a FIFO",
            libc::S_IFCHR => "a character device",
            libc::S_IFBLK => "a block device",
            libc::S_IFDIR => "a directory",
            libc::S_IFSOCK => "a socket",
            _ => "not a regular file",
        };
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("it is {what}, not a regular file"),
        ));
    }
    Ok(std::fs::File::from(fd))
}

/// [`open_regular`], then read it whole, refusing one of more than `limit` bytes (a sparse
/// file of a terabyte is a regular file too) before reading any of it.
pub fn read_regular(dirfd: RawFd, name: &CStr, follow: bool, limit: u64) -> io::Result<Vec<u8>> {
    let file = open_regular(dirfd, name, follow)?;
    let size = file.metadata()?.len();
    if size > limit {
        return Err(too_big(limit));
    }
    let mut out = Vec::new();
    out.try_reserve_exact(size as usize)
        .map_err(|_| io::Error::from(io::ErrorKind::OutOfMemory))?;
    // It may grow while it is read: never past the limit.
    io::Read::read_to_end(&mut io::Read::take(&file, limit + 1), &mut out)?;
    if out.len() as u64 > limit {
        return Err(too_big(limit));
    }
    Ok(out)
}

/// [`read_regular`] of a path (relative to the working directory or absolute).
pub fn read_regular_path(path: &std::path::Path, follow: bool, limit: u64) -> io::Result<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    read_regular(AT_FDCWD, &cstr(path.as_os_str().as_bytes())?, follow, limit)
}

fn too_big(limit: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("it is larger than {limit} bytes"),
    )
}

/// How [`open_as_owner`] failed.
#[derive(Debug)]
pub enum OwnerOpen {
    /// The object is not the one the caller expected: nothing was changed.
    NotExpected,
    /// Its mode could not be changed, or it could not be opened: nothing is left changed
    /// (the caller reports what its plain open said).
    Failed,
    /// What had to be read while it was readable failed: nothing is left changed.
    Read(io::Error),
    /// Its mode could not be put back (it may keep owner read permission it did not have).
    ModeLeft(io::Error),
}

/// Open a regular file (or, with `dir`, a directory) below `dirfd` that its owner, the
/// caller, may not read (mode 0000, 0200, ...), as rm's owner could after `chmod u+r`:
/// through an `O_PATH` descriptor (the object named, never a symlink's target, and no
/// other name swapped in later), add owner read permission, open it, and put the mode back
/// at once, before a byte is read; the permission check is made at open (but reading
/// extended attributes checks the mode again: `while_readable` does that, or whatever else
/// needs it, in between). Only the
/// object `expected` accepts (as the caller last saw it) is touched. Returns the open
/// file, its stat afterwards (same mode, a new ctime, which is this call's own change),
/// and what `while_readable` returned.
///
/// The mode is changed through `/proc/self/fd/N` (glibc's `fchmodat(AT_SYMLINK_NOFOLLOW)`
/// does the same), so it needs `/proc`. Between the two `chmod`s there are only the `open`
/// and `while_readable`: if the process dies there, the file is left with owner read
/// permission (`u+r`) and nothing else changed.
pub fn open_as_owner<T>(
    dirfd: RawFd,
    name: &CStr,
    dir: bool,
    expected: impl Fn(&Stat) -> bool,
    while_readable: impl FnOnce(RawFd) -> io::Result<T>,
) -> Result<(OwnedFd, Stat, T), OwnerOpen> {
    let path_fd =
        openat(dirfd, name, libc::O_PATH | libc::O_NOFOLLOW, 0).map_err(|_| OwnerOpen::Failed)?;
    let before = fstat(path_fd.as_raw_fd()).map_err(|_| OwnerOpen::Failed)?;
    let (kind, flags) = if dir {
        (libc::S_IFDIR, libc::O_DIRECTORY)
    } else {
        (libc::S_IFREG, libc::O_NONBLOCK)
    };
    if before.file_type() != kind || !expected(&before) {
        return Err(OwnerOpen::NotExpected);
    }
    let mode = before.mode & 0o7777;
    // chmod by someone outside the file's group drops its setgid bit, for good.
    if mode & libc::S_ISGID != 0 && !in_group(before.gid) {
        return Err(OwnerOpen::Failed);
    }
    let proc = cstr(format!("/proc/self/fd/{}", path_fd.as_raw_fd()).as_bytes())
        .map_err(|_| OwnerOpen::Failed)?;
    rustix::fs::chmod(&*proc, Mode::from_raw_mode(mode | libc::S_IRUSR))
        .map_err(|_| OwnerOpen::Failed)?;
    let opened = openat(AT_FDCWD, &proc, libc::O_RDONLY | libc::O_NOCTTY | flags, 0)
        .map_err(|_| OwnerOpen::Failed)
        .and_then(|fd| {
            let read = while_readable(fd.as_raw_fd()).map_err(OwnerOpen::Read)?;
            Ok((fd, read))
        });
    let restored = if crate::fault::active("mode-back") {
        Err(io::Error::from_raw_os_error(libc::EIO))
    } else {
        rustix::fs::chmod(&*proc, Mode::from_raw_mode(mode)).map_err(io::Error::from)
    };
    let after = fstat(path_fd.as_raw_fd());
    match (restored, after) {
        (Err(e), _) | (_, Err(e)) => Err(OwnerOpen::ModeLeft(e)),
        // chmod by a non-member of the file's group drops the setgid bit.
        (Ok(_), Ok(after)) if after.mode & 0o7777 != mode => {
            Err(OwnerOpen::ModeLeft(io::Error::other(format!(
                "its mode is {:o}, not {mode:o}",
                after.mode & 0o7777
            ))))
        }
        (Ok(_), Ok(after)) => opened.map(|(fd, read)| (fd, after, read)),
    }
}

/// Whether the process is in group `gid` (its effective group or a supplementary one).
fn in_group(gid: u32) -> bool {
    if rustix::process::getegid().as_raw() == gid {
        return true;
    }
    rustix::process::getgroups().is_ok_and(|groups| groups.iter().any(|g| g.as_raw() == gid))
}

/// `faccessat` with the effective ids, as coreutils' `euidaccess` asks.
pub fn access_effective(dirfd: RawFd, name: &CStr, mode: libc::c_int) -> io::Result<()> {
    let access = rustix::fs::Access::from_bits_retain(mode as libc::c_uint);
    Ok(rustix::fs::accessat(
        borrow(&dirfd)?,
        name,
        access,
        AtFlags::EACCESS,
    )?)
}

/// `readlinkat` of a symlink below `dirfd`.
pub fn readlinkat(dirfd: RawFd, name: &CStr) -> io::Result<Vec<u8>> {
    Ok(rustix::fs::readlinkat(borrow(&dirfd)?, name, Vec::new())?.into_bytes())
}

/// The extended attributes of an open file or directory, name and value.
pub fn xattrs(fd: RawFd) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    use rustix::fs::{fgetxattr, fgetxattr_query, flistxattr, flistxattr_query};
    let fd = borrow(&fd)?;
    let names = xattr_call(|| flistxattr_query(fd), |buf| flistxattr(fd, buf))?;
    let mut out = Vec::new();
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let cname = cstr(name)?;
        let cname = cname.as_c_str();
        match xattr_call(
            || fgetxattr_query(fd, cname),
            |buf| fgetxattr(fd, cname, buf),
        ) {
            Ok(value) => out.push((name.to_vec(), value)),
            // Removed between list and get: nothing to keep.
            Err(e) if e.raw_os_error() == Some(libc::ENODATA) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Ask an xattr call for the size it needs (`query`), then `fetch` into a buffer of that
/// size, again if it grew in between.
fn xattr_call(
    query: impl Fn() -> rustix::io::Result<usize>,
    fetch: impl Fn(&mut [u8]) -> rustix::io::Result<usize>,
) -> io::Result<Vec<u8>> {
    loop {
        let size = match query() {
            Ok(size) => size,
            Err(Errno::NOTSUP) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        if size == 0 {
            return Ok(Vec::new()); // nothing to fetch (the common case)
        }
        let mut buf = vec![0u8; size];
        match fetch(&mut buf) {
            Ok(got) => {
                buf.truncate(got);
                return Ok(buf);
            }
            Err(Errno::RANGE) => continue, // grew in between
            Err(e) => return Err(e.into()),
        }
    }
}

/// `fsync`, reported as the error it is: a failed fsync is never retried (DESIGN §1.3).
pub fn fsync(fd: &impl AsFd) -> io::Result<()> {
    Ok(rustix::fs::fsync(fd)?)
}

/// `syncfs`: write back and commit everything of the filesystem `fd` is on, and wait. Since
/// Linux 5.8 it reports a writeback error on that filesystem since `fd` was opened.
pub fn syncfs(fd: &impl AsFd) -> io::Result<()> {
    Ok(rustix::fs::syncfs(fd)?)
}

/// `renameat`, no replace (the store's names are unique; an existing one is a bug).
pub fn rename_noreplace(olddir: RawFd, old: &CStr, newdir: RawFd, new: &CStr) -> io::Result<()> {
    use rustix::fs::RenameFlags;
    let (olddir, newdir) = (borrow(&olddir)?, borrow(&newdir)?);
    Ok(rustix::fs::renameat_with(
        olddir,
        old,
        newdir,
        new,
        RenameFlags::NOREPLACE,
    )?)
}

/// `mkdirat`; an existing directory is fine.
pub fn mkdirat_exist_ok(dirfd: RawFd, name: &CStr, mode: libc::mode_t) -> io::Result<bool> {
    match rustix::fs::mkdirat(borrow(&dirfd)?, name, Mode::from_raw_mode(mode)) {
        Ok(()) => Ok(true),
        Err(Errno::EXIST) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The filesystem type (`f_type`) and free bytes for an unprivileged user.
pub fn statfs(fd: RawFd) -> io::Result<(i64, u64)> {
    let sf = rustix::fs::fstatfs(borrow(&fd)?)?;
    #[allow(clippy::unnecessary_cast)] // the field types differ between targets
    Ok((
        sf.f_type as i64,
        (sf.f_bavail as u64).saturating_mul(sf.f_bsize as u64),
    ))
}

/// The total size in bytes of the filesystem holding `fd`.
pub fn fs_size(fd: RawFd) -> io::Result<u64> {
    let sf = rustix::fs::fstatfs(borrow(&fd)?)?;
    #[allow(clippy::unnecessary_cast)] // the field types differ between targets
    Ok((sf.f_blocks as u64).saturating_mul(sf.f_frsize as u64))
}

/// `flock` on an open file.
pub fn flock(fd: &impl AsFd, exclusive: bool, nonblocking: bool) -> io::Result<()> {
    use rustix::fs::FlockOperation as Op;
    let op = match (exclusive, nonblocking) {
        (true, false) => Op::LockExclusive,
        (true, true) => Op::NonBlockingLockExclusive,
        (false, false) => Op::LockShared,
        (false, true) => Op::NonBlockingLockShared,
    };
    loop {
        match rustix::fs::flock(fd, op) {
            Err(Errno::INTR) => continue,
            other => return Ok(other?),
        }
    }
}

/// Whether stdin is a terminal.
pub fn stdin_is_tty() -> bool {
    io::IsTerminal::is_terminal(&io::stdin())
}

/// The effective user id.
pub fn geteuid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Put the calling process in the best-effort I/O scheduling class at `level` (0, the
/// highest, to 7, the lowest; larger values are taken as 7), as `ionice -c 2 -n LEVEL`
/// does. Threads it starts afterwards inherit it. `ioprio_set(2)`, which neither rustix
/// nor nix wraps.
pub fn set_io_priority_best_effort(level: u8) -> io::Result<()> {
    // <linux/ioprio.h>: the class in the bits above IOPRIO_CLASS_SHIFT, the level below.
    const IOPRIO_WHO_PROCESS: libc::c_int = 1;
    const IOPRIO_CLASS_BE: libc::c_int = 2;
    const IOPRIO_CLASS_SHIFT: u32 = 13;
    let value = (IOPRIO_CLASS_BE << IOPRIO_CLASS_SHIFT) | libc::c_int::from(level.min(7));
    // SAFETY: ioprio_set takes three integers (who 0: the calling thread) and reads and
    // writes no memory of ours.
    let ret = unsafe { libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, value) };
    check(ret as libc::c_int).map(|_| ())
}

/// major/minor of a device number.
pub fn dev_major_minor(rdev: u64) -> (u32, u32) {
    (rustix::fs::major(rdev), rustix::fs::minor(rdev))
}

/// The errno text of an error, as C's `strerror` (and so GNU rm) prints it: std's text for
/// an OS error is the C library's (`strerror_r`), followed by ` (os error N)`.
pub fn strerror(err: &io::Error) -> String {
    match err.raw_os_error() {
        Some(code) => {
            let text = io::Error::from_raw_os_error(code).to_string();
            match text.strip_suffix(&format!(" (os error {code})")) {
                Some(bare) => bare.to_owned(),
                None => text,
            }
        }
        None => err.to_string(),
    }
}

/// Random bytes from the kernel, for unique ids.
pub fn random_u32() -> u32 {
    let mut buf = [0u8; 4];
    match rustix::rand::getrandom(&mut buf, rustix::rand::GetRandomFlags::NONBLOCK) {
        Ok(4) => u32::from_ne_bytes(buf),
        // Entropy not ready (early boot): the timestamp and pid in the id still keep it unique
        // together with O_EXCL.
        _ => {
            std::process::id().rotate_left(16)
                ^ (std::time::SystemTime::now()
                    .elapsed()
                    .map(|d| d.subsec_nanos())
                    .unwrap_or(0))
        }
    }
}

/// What `fstatfs` says about a filesystem: its type and size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FsStat {
    /// `f_type`, the filesystem's magic number.
    pub fs_type: i64,
    /// Total bytes.
    pub total: u64,
    /// Bytes free for an unprivileged user.
    pub available: u64,
}

/// The type, size and free space of the filesystem holding `fd`.
pub fn statfs_full(fd: RawFd) -> io::Result<FsStat> {
    let sf = rustix::fs::fstatfs(borrow(&fd)?)?;
    #[allow(clippy::unnecessary_cast)] // the field types differ between targets
    let (bsize, frsize) = (sf.f_bsize as u64, sf.f_frsize as u64);
    let unit = if frsize > 0 { frsize } else { bsize };
    #[allow(clippy::unnecessary_cast)]
    Ok(FsStat {
        fs_type: sf.f_type as i64,
        total: (sf.f_blocks as u64).saturating_mul(unit),
        available: (sf.f_bavail as u64).saturating_mul(unit),
    })
}

/// Whether `f_type` is a pseudo-filesystem, whose files are the kernel's state, not data
/// (sysfs, procfs, cgroupfs, debugfs, securityfs...): nothing there can be archived or put
/// back, so saferm does what rm does with them, without an archive attempt.
pub fn is_pseudo_fs(fs_type: i64) -> bool {
    matches!(
        fs_type as u64 & 0xFFFF_FFFF,
        0x6265_6572 // sysfs
            | 0x9FA0 // proc
            | 0x0027_E0EB // cgroup
            | 0x6367_7270 // cgroup2
            | 0x6462_6720 // debugfs
            | 0x7472_6163 // tracefs
            | 0x7363_6673 // securityfs
            | 0xF97C_FF8C // selinuxfs
            | 0x4341_5D53 // smackfs
            | 0x6265_6570 // configfs
            | 0xCAFE_4A11 // bpf
            | 0x4249_4E4D // binfmt_misc
            | 0x6573_5543 // fusectl
            | 0x1CD1 // devpts
            | 0x6E73_6673 // nsfs
            | 0x1980_0202 // mqueue
    )
}

/// Whether `name` below `dirfd` (itself, not a symlink's target) is on a pseudo-filesystem
/// ([`is_pseudo_fs`]). Not knowing is no: the object is then archived as any other.
pub fn pseudo_fs_at(dirfd: RawFd, name: &CStr) -> bool {
    openat(dirfd, name, libc::O_PATH | libc::O_NOFOLLOW, 0)
        .and_then(|fd| statfs(fd.as_raw_fd()))
        .is_ok_and(|(fs_type, _)| is_pseudo_fs(fs_type))
}

/// How [`chmod_nofollow`] changes the mode of a name that must not be followed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoFollow {
    /// The `fchmodat2` system call (Linux 6.6), which takes `AT_SYMLINK_NOFOLLOW` itself.
    Fchmodat2,
    /// glibc's `fchmodat(AT_SYMLINK_NOFOLLOW)`, which goes through `/proc` where the kernel
    /// has no `fchmodat2`.
    Glibc,
}

/// Set the mode of `name` below `dirfd` (itself, never a symlink's target) as `how` says;
/// rustix's `chmodat` refuses `AT_SYMLINK_NOFOLLOW`.
pub fn chmod_nofollow(dirfd: RawFd, name: &CStr, mode: u32, how: NoFollow) -> io::Result<()> {
    // SAFETY: name is NUL-terminated and outlives the call; both calls take integers and it,
    // and only read it.
    let ret = unsafe {
        match how {
            NoFollow::Fchmodat2 => libc::syscall(
                libc::SYS_fchmodat2,
                dirfd,
                name.as_ptr(),
                mode as libc::c_uint,
                libc::AT_SYMLINK_NOFOLLOW,
            ) as libc::c_int,
            NoFollow::Glibc => {
                libc::fchmodat(dirfd, name.as_ptr(), mode, libc::AT_SYMLINK_NOFOLLOW)
            }
        }
    };
    check(ret).map(|_| ())
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_walk_s_statx_says_what_fstatat_says() {
        let tmp = tempfile::tempdir().expect("tempdir");
        std::fs::write(tmp.path().join("f"), b"12345").expect("write");
        std::os::unix::fs::symlink("f", tmp.path().join("l")).expect("symlink");
        std::fs::create_dir(tmp.path().join("d")).expect("mkdir");
        let dir = std::fs::File::open(tmp.path()).expect("open");
        for name in [c"f", c"l", c"d", c"."] {
            let (st, pinned) = lstat_pinned(dir.as_raw_fd(), name).expect("statx");
            let expected = fstatat(dir.as_raw_fd(), name, false).expect("stat");
            assert_eq!(st, expected, "{name:?}");
            assert!(!pinned);
        }
        let missing = lstat_pinned(dir.as_raw_fd(), c"missing").map(|_| ());
        assert_eq!(
            missing.map_err(|e| e.raw_os_error()),
            Err(Some(libc::ENOENT))
        );
    }

    #[test]
    fn directories_opened_beneath_stay_beneath() {
        let tmp = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(tmp.path().join("d")).expect("mkdir");
        std::os::unix::fs::symlink("d", tmp.path().join("link")).expect("symlink");
        std::os::unix::fs::symlink("/", tmp.path().join("root")).expect("symlink");
        let dir = std::fs::File::open(tmp.path()).expect("open");
        let fd = dir.as_raw_fd();
        for open in [open_dir_beneath, open_dir_beneath_by_name] {
            assert!(open(fd, c"d").is_ok());
            let code = |name: &CStr| open(fd, name).err().and_then(|e| e.raw_os_error());
            assert_eq!(code(c".."), Some(libc::EXDEV));
            // A symlink in the name's place: ELOOP, or ENOTDIR where O_DIRECTORY is looked
            // at first (the restore treats both as "a symlink or not a directory").
            for link in [c"link", c"root"] {
                assert!(
                    matches!(code(link), Some(libc::ELOOP | libc::ENOTDIR)),
                    "{link:?}: {:?}",
                    code(link)
                );
            }
            assert_eq!(code(c"missing"), Some(libc::ENOENT));
        }
    }
    use super::*;

    #[test]
    fn strerror_is_the_c_librarys_text() {
        for code in 0..150 {
            // SAFETY: strerror returns a pointer to a string valid until the next call on
            // this thread; it is copied at once.
            let c = unsafe { CStr::from_ptr(libc::strerror(code)) };
            let want = c.to_string_lossy().into_owned();
            assert_eq!(
                strerror(&io::Error::from_raw_os_error(code)),
                want,
                "errno {code}"
            );
        }
    }
}
