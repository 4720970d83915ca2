//! Thin, safe wrappers over the `*at` system calls saferm walks with.
//!
//! Every traversal goes through directory file descriptors and never follows a symlink it
//! did not get as an operand (DESIGN §1.6). libc is called directly where nix's wrappers
//! would hide the flags that matter here. `unlinkat` is deliberately absent: it lives in
//! `unlink.rs`, the one module allowed to delete.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

pub use libc::AT_FDCWD;

/// The width in columns of the terminal on `fd`, if it is one that knows its size.
pub fn terminal_width(fd: RawFd) -> Option<usize> {
    // SAFETY: winsize is plain integers, for which zero is a value.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ fills the winsize struct it is given, or fails.
    let ret = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) };
    (ret == 0 && ws.ws_col > 0).then_some(usize::from(ws.ws_col))
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
    fn from_raw(st: &libc::stat) -> Stat {
        Stat {
            dev: st.st_dev,
            ino: st.st_ino,
            mode: st.st_mode,
            nlink: st.st_nlink,
            uid: st.st_uid,
            gid: st.st_gid,
            rdev: st.st_rdev,
            size: st.st_size.max(0) as u64,
            blocks: st.st_blocks.max(0) as u64,
            mtime: st.st_mtime,
            mtime_nsec: st.st_mtime_nsec,
            ctime: st.st_ctime,
            ctime_nsec: st.st_ctime_nsec,
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
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    let flags = if follow { 0 } else { libc::AT_SYMLINK_NOFOLLOW };
    // SAFETY: name is NUL-terminated; st is written by the kernel on success.
    check(unsafe { libc::fstatat(dirfd, name.as_ptr(), st.as_mut_ptr(), flags) })?;
    // SAFETY: fstatat returned 0, so st is initialised.
    Ok(Stat::from_raw(unsafe { &st.assume_init() }))
}

/// The `chattr` attributes of an entry that forbid removing it, or its entries, as
/// `statx` reports them without following a symlink: `(immutable, append_only)`. A
/// filesystem that does not report one reads as not having it.
pub fn removal_attributes(dirfd: RawFd, name: &CStr) -> io::Result<(bool, bool)> {
    let mut stx = std::mem::MaybeUninit::<libc::statx>::uninit();
    // SAFETY: name is NUL-terminated; stx is written by the kernel on success.
    check(unsafe {
        libc::statx(
            dirfd,
            name.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW | libc::AT_STATX_DONT_SYNC,
            0,
            stx.as_mut_ptr(),
        )
    })?;
    // SAFETY: statx returned 0, so stx is initialised.
    let stx = unsafe { stx.assume_init() };
    let has = |attr: libc::c_int| {
        let attr = attr as u64;
        stx.stx_attributes_mask & attr != 0 && stx.stx_attributes & attr != 0
    };
    Ok((
        has(libc::STATX_ATTR_IMMUTABLE),
        has(libc::STATX_ATTR_APPEND),
    ))
}

/// Raise the soft limit on open files to the hard limit. Walking, archiving, unlinking and
/// restoring keep a bounded number of directories open (`dirstack.rs`), so any tree works
/// under any limit; a higher one leaves room for the rest (Go's runtime raises it at
/// start-up too). Up to 2^20; errors leave the limit as it was.
pub fn raise_open_file_limit() {
    // SAFETY: getrlimit and setrlimit read and write a local struct.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max.min(1 << 20);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// `fstat` of an open descriptor.
pub fn fstat(fd: RawFd) -> io::Result<Stat> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: st is written by the kernel on success.
    check(unsafe { libc::fstat(fd, st.as_mut_ptr()) })?;
    // SAFETY: fstat returned 0.
    Ok(Stat::from_raw(unsafe { &st.assume_init() }))
}

/// `openat` with `O_CLOEXEC` added.
pub fn openat(
    dirfd: RawFd,
    name: &CStr,
    flags: libc::c_int,
    mode: libc::mode_t,
) -> io::Result<OwnedFd> {
    // SAFETY: name is NUL-terminated; the returned descriptor is owned by the OwnedFd.
    let fd = check(unsafe {
        libc::openat(
            dirfd,
            name.as_ptr(),
            flags | libc::O_CLOEXEC,
            mode as libc::c_uint,
        )
    })?;
    // SAFETY: fd was just returned by openat and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
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
    /// Its mode could not be changed, or it could not be opened: nothing is left changed.
    Failed(io::Error),
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
        openat(dirfd, name, libc::O_PATH | libc::O_NOFOLLOW, 0).map_err(OwnerOpen::Failed)?;
    let before = fstat(path_fd.as_raw_fd()).map_err(OwnerOpen::Failed)?;
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
        return Err(OwnerOpen::Failed(io::Error::from_raw_os_error(libc::EPERM)));
    }
    let proc = cstr(format!("/proc/self/fd/{}", path_fd.as_raw_fd()).as_bytes())
        .map_err(OwnerOpen::Failed)?;
    // SAFETY: proc is NUL-terminated.
    check(unsafe { libc::chmod(proc.as_ptr(), (mode | libc::S_IRUSR) as libc::mode_t) })
        .map_err(OwnerOpen::Failed)?;
    let opened = openat(AT_FDCWD, &proc, libc::O_RDONLY | libc::O_NOCTTY | flags, 0)
        .map_err(OwnerOpen::Failed)
        .and_then(|fd| {
            let read = while_readable(fd.as_raw_fd()).map_err(OwnerOpen::Read)?;
            Ok((fd, read))
        });
    let restored = if crate::fault::active("mode-back") {
        Err(io::Error::from_raw_os_error(libc::EIO))
    } else {
        // SAFETY: proc is NUL-terminated.
        check(unsafe { libc::chmod(proc.as_ptr(), mode as libc::mode_t) })
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
    // SAFETY: getegid cannot fail.
    if unsafe { libc::getegid() } == gid {
        return true;
    }
    // SAFETY: with 0, getgroups only counts.
    let n = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
    let Ok(len) = usize::try_from(n) else {
        return false;
    };
    let mut groups: Vec<libc::gid_t> = vec![0; len];
    // SAFETY: the buffer holds `n` entries.
    let got = unsafe { libc::getgroups(n, groups.as_mut_ptr()) };
    let Ok(got) = usize::try_from(got) else {
        return false;
    };
    groups[..got.min(len)].contains(&gid)
}

/// A file name, NUL-terminated, held in place when it is short (most are): a directory of
/// 200,000 files needs no allocation per name. It derefs to the [`CStr`] the calls take.
#[derive(Clone)]
pub enum Name {
    /// The bytes, their NUL, then zeros; and the length without the NUL.
    Short([u8; SHORT_NAME], u8),
    Long(CString),
}

/// Bytes a [`Name`] holds in place, its NUL included.
const SHORT_NAME: usize = 22;

impl Name {
    pub fn new(c: &CStr) -> Name {
        let bytes = c.to_bytes_with_nul();
        match u8::try_from(bytes.len() - 1) {
            Ok(len) if bytes.len() <= SHORT_NAME => {
                let mut short = [0u8; SHORT_NAME];
                short[..bytes.len()].copy_from_slice(bytes);
                Name::Short(short, len)
            }
            _ => Name::Long(c.to_owned()),
        }
    }

    /// The name without its NUL.
    pub fn as_bytes(&self) -> &[u8] {
        self.to_bytes()
    }
}

impl From<CString> for Name {
    fn from(c: CString) -> Name {
        match c.as_bytes().len() < SHORT_NAME {
            true => Name::new(&c),
            false => Name::Long(c),
        }
    }
}

impl std::ops::Deref for Name {
    type Target = CStr;

    fn deref(&self) -> &CStr {
        match self {
            // Made from a CStr: no NUL before the one at `len`.
            Name::Short(bytes, len) => {
                CStr::from_bytes_with_nul(&bytes[..=*len as usize]).unwrap_or_default()
            }
            Name::Long(c) => c,
        }
    }
}

impl AsRef<CStr> for Name {
    fn as_ref(&self) -> &CStr {
        self
    }
}

impl std::fmt::Debug for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&**self, f)
    }
}

/// One directory entry: its name and the type readdir reported (`DT_*`).
pub struct DirEntry {
    pub name: Name,
    pub d_type: u8,
    pub ino: u64,
}

/// Every entry of the directory open at `fd` except `.` and `..`, in the order readdir gives
/// them (the order GNU rm processes them in, for small directories).
pub fn read_dir(fd: RawFd) -> io::Result<Vec<DirEntry>> {
    // fdopendir takes ownership of the descriptor it gets, so give it a duplicate.
    // SAFETY: dup of a valid descriptor.
    let dup = check(unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) })?;
    // SAFETY: dup is a valid descriptor we own; on failure we close it ourselves.
    let dir = unsafe { libc::fdopendir(dup) };
    if dir.is_null() {
        let err = io::Error::last_os_error();
        // SAFETY: fdopendir failed, so dup is still ours to close.
        unsafe { libc::close(dup) };
        return Err(err);
    }
    // A fresh descriptor from dup shares the file offset: rewind so the listing is whole.
    // SAFETY: dir is a valid DIR*.
    unsafe { libc::rewinddir(dir) };
    let mut out = Vec::new();
    let result = loop {
        // readdir signals errors only through errno, so clear it first.
        // SAFETY: __errno_location is always valid for this thread.
        unsafe { *libc::__errno_location() = 0 };
        // SAFETY: dir is a valid DIR*.
        let ent = unsafe { libc::readdir64(dir) };
        if ent.is_null() {
            let errno = io::Error::last_os_error();
            break match errno.raw_os_error() {
                Some(0) | None => Ok(()),
                Some(_) => Err(errno),
            };
        }
        // SAFETY: ent points to a valid dirent64 until the next readdir call.
        let (name, d_type, ino) = unsafe {
            (
                CStr::from_ptr((*ent).d_name.as_ptr()),
                (*ent).d_type,
                (*ent).d_ino,
            )
        };
        let bytes = name.to_bytes();
        if bytes == b"." || bytes == b".." {
            continue;
        }
        out.push(DirEntry {
            name: Name::new(name),
            d_type,
            ino,
        });
    };
    // SAFETY: dir is valid and closed exactly once.
    unsafe { libc::closedir(dir) };
    result.map(|_| out)
}

/// `faccessat` with the effective ids, as coreutils' `euidaccess` asks.
pub fn access_effective(dirfd: RawFd, name: &CStr, mode: libc::c_int) -> io::Result<()> {
    // SAFETY: name is NUL-terminated.
    check(unsafe { libc::faccessat(dirfd, name.as_ptr(), mode, libc::AT_EACCESS) }).map(|_| ())
}

/// `readlinkat` of a symlink below `dirfd`.
pub fn readlinkat(dirfd: RawFd, name: &CStr) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    loop {
        // SAFETY: buf has buf.len() writable bytes.
        let n =
            unsafe { libc::readlinkat(dirfd, name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        if n < buf.len() {
            buf.truncate(n);
            return Ok(buf);
        }
        buf.resize(buf.len() * 2, 0);
    }
}

/// The extended attributes of an open file or directory, name and value.
pub fn xattrs(fd: RawFd) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let names = xattr_call(|buf, len| unsafe { libc::flistxattr(fd, buf.cast(), len) })?;
    let mut out = Vec::new();
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let cname = cstr(name)?;
        // SAFETY: cname is NUL-terminated; buf/len describe a writable buffer.
        match xattr_call(|buf, len| unsafe { libc::fgetxattr(fd, cname.as_ptr(), buf.cast(), len) })
        {
            Ok(value) => out.push((name.to_vec(), value)),
            // Removed between list and get: nothing to keep.
            Err(e) if e.raw_os_error() == Some(libc::ENODATA) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Call a size-probing xattr function until the buffer is large enough.
fn xattr_call(mut f: impl FnMut(*mut u8, usize) -> libc::ssize_t) -> io::Result<Vec<u8>> {
    loop {
        let size = f(std::ptr::null_mut(), 0);
        if size < 0 {
            let err = io::Error::last_os_error();
            return match err.raw_os_error() {
                Some(libc::ENOTSUP) => Ok(Vec::new()),
                _ => Err(err),
            };
        }
        if size == 0 {
            return Ok(Vec::new()); // nothing to fetch (the common case)
        }
        let mut buf = vec![0u8; size as usize];
        let got = f(buf.as_mut_ptr(), buf.len());
        if got < 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::ERANGE) {
                continue; // grew in between
            }
            return Err(err);
        }
        buf.truncate(got as usize);
        return Ok(buf);
    }
}

/// `fsync`, reported as the error it is: a failed fsync is never retried (DESIGN §1.3).
pub fn fsync(fd: &impl AsRawFd) -> io::Result<()> {
    // SAFETY: plain syscall on a valid descriptor.
    check(unsafe { libc::fsync(fd.as_raw_fd()) }).map(|_| ())
}

/// `syncfs`: write back and commit everything of the filesystem `fd` is on, and wait. Since
/// Linux 5.8 it reports a writeback error on that filesystem since `fd` was opened.
pub fn syncfs(fd: &impl AsRawFd) -> io::Result<()> {
    // SAFETY: plain syscall on a valid descriptor.
    check(unsafe { libc::syncfs(fd.as_raw_fd()) }).map(|_| ())
}

/// Ask the kernel to start writing a file's dirty pages back (`sync_file_range` with
/// `SYNC_FILE_RANGE_WRITE`: it does not wait and guarantees nothing; the fsync does).
pub fn start_writeback(fd: &impl AsRawFd) {
    // SAFETY: plain syscall on a valid descriptor; errors are irrelevant (a hint).
    unsafe {
        libc::sync_file_range(fd.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
    }
}

/// `renameat`, no replace (the store's names are unique; an existing one is a bug).
pub fn rename_noreplace(olddir: RawFd, old: &CStr, newdir: RawFd, new: &CStr) -> io::Result<()> {
    // SAFETY: both names are NUL-terminated.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            olddir,
            old.as_ptr(),
            newdir,
            new.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `mkdirat`; an existing directory is fine.
pub fn mkdirat_exist_ok(dirfd: RawFd, name: &CStr, mode: libc::mode_t) -> io::Result<bool> {
    // SAFETY: name is NUL-terminated.
    match check(unsafe { libc::mkdirat(dirfd, name.as_ptr(), mode) }) {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The filesystem type (`f_type`) and free bytes for an unprivileged user.
pub fn statfs(fd: RawFd) -> io::Result<(i64, u64)> {
    let mut sf = std::mem::MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: sf is written by the kernel on success.
    check(unsafe { libc::fstatfs(fd, sf.as_mut_ptr()) })?;
    // SAFETY: fstatfs returned 0.
    let sf = unsafe { sf.assume_init() };
    #[allow(clippy::unnecessary_cast)] // the field types differ between targets
    Ok((
        sf.f_type as i64,
        (sf.f_bavail as u64).saturating_mul(sf.f_bsize as u64),
    ))
}

/// The total size in bytes of the filesystem holding `fd`.
pub fn fs_size(fd: RawFd) -> io::Result<u64> {
    let mut sf = std::mem::MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: sf is written by the kernel on success.
    check(unsafe { libc::fstatfs(fd, sf.as_mut_ptr()) })?;
    // SAFETY: fstatfs returned 0.
    let sf = unsafe { sf.assume_init() };
    #[allow(clippy::unnecessary_cast)] // the field types differ between targets
    Ok((sf.f_blocks as u64).saturating_mul(sf.f_frsize as u64))
}

/// `flock` on an open file.
pub fn flock(fd: &impl AsRawFd, exclusive: bool, nonblocking: bool) -> io::Result<()> {
    let mut op = if exclusive {
        libc::LOCK_EX
    } else {
        libc::LOCK_SH
    };
    if nonblocking {
        op |= libc::LOCK_NB;
    }
    loop {
        // SAFETY: plain syscall on a valid descriptor.
        match check(unsafe { libc::flock(fd.as_raw_fd(), op) }) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other.map(|_| ()),
        }
    }
}

/// Whether stdin is a terminal.
pub fn stdin_is_tty() -> bool {
    // SAFETY: isatty only inspects the descriptor.
    unsafe { libc::isatty(0) == 1 }
}

/// The effective user id.
pub fn geteuid() -> u32 {
    // SAFETY: always succeeds.
    unsafe { libc::geteuid() }
}

/// major/minor of a device number.
pub fn dev_major_minor(rdev: u64) -> (u32, u32) {
    (libc::major(rdev), libc::minor(rdev))
}

/// The errno text of an error, as C's `strerror` (and so GNU rm) prints it.
pub fn strerror(err: &io::Error) -> String {
    match err.raw_os_error() {
        Some(code) => {
            // SAFETY: strerror returns a pointer to a static or thread-local string.
            let s = unsafe { CStr::from_ptr(libc::strerror(code)) };
            s.to_string_lossy().into_owned()
        }
        None => err.to_string(),
    }
}

/// Random bytes from the kernel, for unique ids.
pub fn random_u32() -> u32 {
    let mut buf = [0u8; 4];
    // SAFETY: buf has 4 writable bytes.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), libc::GRND_NONBLOCK) };
    if n == 4 {
        u32::from_ne_bytes(buf)
    } else {
        // Entropy not ready (early boot): the timestamp and pid in the id still keep it unique
        // together with O_EXCL.
        std::process::id().rotate_left(16)
            ^ (std::time::SystemTime::now()
                .elapsed()
                .map(|d| d.subsec_nanos())
                .unwrap_or(0))
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
    let mut sf = std::mem::MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: sf is written by the kernel on success.
    check(unsafe { libc::fstatfs(fd, sf.as_mut_ptr()) })?;
    // SAFETY: fstatfs returned 0.
    let sf = unsafe { sf.assume_init() };
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
    use std::os::fd::AsRawFd;
    let mut byte = [0u8; 1];
    let iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    // SAFETY: one iovec over a local one-byte buffer.
    let r = unsafe { libc::preadv2(file.as_raw_fd(), &iov, 1, 0, libc::RWF_NOWAIT) };
    r < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EAGAIN)
}

/// Whether the first page of `file` is in the page cache (None: the kernel would not say).
fn first_page_cached(file: &std::fs::File) -> Option<bool> {
    use std::os::fd::AsRawFd;
    let len = 4096;
    // SAFETY: a private read-only mapping of one page of a file we hold open, unmapped below;
    // nothing reads through it.
    let addr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        )
    };
    if addr == libc::MAP_FAILED {
        return None;
    }
    let mut vec = [0u8; 1];
    // SAFETY: addr..addr+len is the mapping made above; vec holds one byte per page.
    let r = unsafe { libc::mincore(addr, len, vec.as_mut_ptr()) };
    // SAFETY: the mapping made above.
    unsafe { libc::munmap(addr, len) };
    (r == 0).then_some(vec[0] & 1 == 1)
}

/// Ask the kernel to read the first `size` bytes of the file at `path` into the page cache,
/// without waiting for them. With `unless_cached`, not if its first byte can be read without
/// waiting.
/// Returns whether it asked, or None if the file could not be opened.
pub fn read_ahead(path: &CStr, size: u64, unless_cached: bool) -> Option<bool> {
    use std::os::fd::AsRawFd;
    let flags = libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NOCTTY | libc::O_NONBLOCK;
    let fd = openat(libc::AT_FDCWD, path, flags, 0).ok()?;
    let file = std::fs::File::from(fd);
    if unless_cached && !would_wait(&file) {
        return Some(false);
    }
    let len = usize::try_from(size).unwrap_or(usize::MAX);
    // SAFETY: a plain syscall on a descriptor we own.
    Some(unsafe { libc::readahead(file.as_raw_fd(), 0, len) } == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_short_and_long_give_back_their_bytes() {
        for len in [0, 1, 20, 21, 22, 23, 255, 4000] {
            let bytes: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            let c = CString::new(bytes.clone()).expect("no NUL");
            let short = len < SHORT_NAME;
            for name in [Name::new(&c), Name::from(c.clone())] {
                assert_eq!(name.as_bytes(), &bytes[..], "length {len}");
                assert_eq!(&*name, c.as_c_str());
                assert_eq!(matches!(name, Name::Short(..)), short, "length {len}");
            }
        }
    }
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
    // SAFETY: fcntl on a descriptor we own, with integer arguments.
    if unsafe { libc::fcntl(fd, libc::F_SETLEASE, libc::F_RDLCK) } == 0 {
        // SAFETY: as above. Closing the descriptor would give it back as well.
        unsafe { libc::fcntl(fd, libc::F_SETLEASE, libc::F_UNLCK) };
        return Writers::None;
    }
    match io::Error::last_os_error().raw_os_error() {
        Some(libc::EAGAIN) => Writers::Some,
        _ => Writers::Unknown,
    }
}

/// Ignore SIGIO, which the kernel sends to a lease holder when someone opens the file for
/// writing ([`writers`]): its default action kills the process. saferm uses no SIGIO.
pub fn ignore_lease_breaks() {
    static DONE: std::sync::Once = std::sync::Once::new();
    DONE.call_once(|| {
        // SAFETY: setting a signal's disposition to SIG_IGN is always valid.
        unsafe {
            libc::signal(libc::SIGIO, libc::SIG_IGN);
        }
    });
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
