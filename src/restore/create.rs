//! Creating one object of each type below an open directory, never following a link, and
//! giving it its recorded metadata: a regular file (written under a temporary name, hashed,
//! holes kept, renamed into place), a symlink, a device or FIFO node, a hard link, a
//! directory; and the setters of owner, mode, times and extended attributes.

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use super::dirs::Finish;
use super::reason;
use super::restorer::{Data, Restorer};
use super::Outcome;
use crate::hash::ContentHash;
use crate::manifest::{Entry, Kind};
use crate::output::stderr_write;
use crate::paths::split_parent;
use crate::sys::{self, NoFollow};
use rustix::fs::{AtFlags, FileType, Mode, Timespec, Timestamps};
use rustix::fs::{Gid, Uid};

impl Restorer<'_> {
    /// The directory of entry `i`, `name` in `pfd` at `dest`: made private (0700) and given
    /// its recorded metadata once its contents are in ([`Restorer::finish`]), or adopted when
    /// this run made it already as a parent.
    pub(super) fn create_dir(
        &mut self,
        i: usize,
        pfd: RawFd,
        name: &CStr,
        dest: &[u8],
        xattrs: &[(Vec<u8>, Vec<u8>)],
    ) -> io::Result<Done> {
        if self.created_dirs.contains(dest) {
            // Made earlier in this run as a parent: it becomes this entry.
            if !self.finalize.iter().any(|(d, _, _)| d == dest) {
                let fd = self.dir(dest, false)?;
                let st = sys::fstat(fd)?;
                self.finalize
                    .push((dest.to_vec(), Finish::Recorded(i), (st.dev, st.ino)));
            }
        } else {
            rustix::fs::mkdirat(sys::borrow(&pfd)?, name, Mode::from_raw_mode(0o700))?;
            let fd = sys::open_dir_beneath(pfd, name)?;
            let st = sys::fstat(fd.as_raw_fd())?;
            self.resume.made_dir((st.dev, st.ino));
            self.dirs.insert(dest.to_vec(), fd);
            self.created_dirs.insert(dest.to_vec());
            self.fresh_dirs.insert(dest.to_vec());
            self.finalize
                .push((dest.to_vec(), Finish::Recorded(i), (st.dev, st.ino)));
        }
        let fd = self.dir(dest, false)?;
        self.set_xattrs(fd, dest, xattrs);
        Ok(Done { owner_set: true })
    }

    /// The regular file of entry `e`, `name` in `pfd` at `dest`, from the archive's `data`.
    pub(super) fn create_file(
        &mut self,
        e: &Entry,
        pfd: RawFd,
        name: &CStr,
        dest: &[u8],
        data: Data<'_>,
        xattrs: &[(Vec<u8>, Vec<u8>)],
    ) -> io::Result<Done> {
        // Written under a temporary name and renamed into place (without replacing) once
        // complete: an interrupted or damaged restore never leaves a partial file under
        // the real name.
        self.resume.sweep(pfd);
        let (tmp, fd) = create_temp_file(pfd)?;
        let mut file = File::from(fd);
        let result = self
            .fill_file(e, &mut file, dest, data, xattrs)
            .and_then(|done| {
                // Failure injection (debug builds): unrm is killed (-9) with this file
                // written under its temp name, its directories not finished.
                if crate::fault::names("restore-kill", dest) {
                    crate::signal::raise_kill();
                }
                sys::rename_noreplace(pfd, &tmp, pfd, name)?;
                Ok(done)
            });
        if result.is_err() {
            remove_partial(pfd, &tmp, &file);
        }
        result
    }

    /// Write, check and give its metadata to a file being restored.
    fn fill_file(
        &mut self,
        e: &Entry,
        file: &mut File,
        dest: &[u8],
        data: Data<'_>,
        xattrs: &[(Vec<u8>, Vec<u8>)],
    ) -> io::Result<Done> {
        let Data { read: data, sparse } = data;
        let mut hash = ContentHash::of(e);
        let bar = &mut self.tally.bar;
        let copied = match sparse {
            Ok(None) => {
                let mut buf = std::mem::take(&mut self.buf);
                buf.resize(256 * 1024, 0);
                let pause = crate::fault::names("restore-pause", dest);
                let copied = copy_hashed(data, file, &mut buf, &mut hash, (bar, pause));
                self.buf = buf;
                copied
            }
            Ok(Some((size, stored))) => {
                let copied = copy_sparse(data, file, size, stored, &mut hash);
                bar.advance(size);
                copied
            }
            Err(err) => Err(err),
        };
        match copied {
            Ok(()) if hash.matches(e.size) => {}
            Ok(()) => return Err(damaged()),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => return Err(err),
            Err(err) => return Err(unreadable(&err)),
        }
        // chown clears file capabilities (and setuid): security.capability goes on after
        // it; the others before the mode, which may take away the write permission that
        // user.* attributes need.
        let (caps, others): (Vec<_>, Vec<_>) = xattrs
            .iter()
            .cloned()
            .partition(|(n, _)| n == b"security.capability");
        self.set_xattrs(file.as_raw_fd(), dest, &others);
        let owner_set = set_owner_fd(file.as_raw_fd(), e, self.opts.euid)?;
        fchmod(file.as_raw_fd(), e.mode)?;
        self.set_xattrs(file.as_raw_fd(), dest, &caps);
        set_times_fd(file.as_raw_fd(), e)?;
        Ok(Done { owner_set })
    }

    /// A hard link `name` in `pfd` to where this run restored the file entry `e` names.
    pub(super) fn create_link(&mut self, e: &Entry, pfd: RawFd, name: &CStr) -> io::Result<Done> {
        let target = e.link.as_ref().and_then(|l| l.bytes()).unwrap_or_default();
        let Some(first) = self.first_names.get(&target).cloned() else {
            return Err(io::Error::other(
                "the file it is a hard link of was not restored",
            ));
        };
        let (tparent, tname) = split_parent(&first);
        let tfd = self.dir(tparent, false)?;
        let ctname = sys::cstr(tname)?;
        // No AT_SYMLINK_FOLLOW: a symlink is linked, not followed.
        let (tdir, pdir) = (sys::borrow(&tfd)?, sys::borrow(&pfd)?);
        rustix::fs::linkat(tdir, ctname.as_c_str(), pdir, name, AtFlags::empty())?;
        Ok(Done { owner_set: true })
    }

    /// Set extended attributes on `fd`: one refused for want of rights or support (EPERM,
    /// EACCES, ENOTSUP) is counted, any other failure is reported.
    fn set_xattrs(&mut self, fd: RawFd, dest: &[u8], xattrs: &[(Vec<u8>, Vec<u8>)]) {
        for (name, value) in xattrs {
            let Ok(cname) = sys::cstr(name) else { continue };
            let set = sys::borrow(&fd).and_then(|fd| {
                Ok(rustix::fs::fsetxattr(
                    fd,
                    cname.as_c_str(),
                    value,
                    rustix::fs::XattrFlags::empty(),
                )?)
            });
            if let Err(err) = set {
                if matches!(
                    err.raw_os_error(),
                    Some(libc::EPERM) | Some(libc::ENOTSUP) | Some(libc::EACCES)
                ) {
                    self.report.xattrs_not_set += 1;
                } else {
                    self.tally.bar.clear();
                    stderr_write(
                        format!(
                            "unrm: could not restore the attribute {} of {}: {}\n",
                            String::from_utf8_lossy(name),
                            self.shown(dest),
                            reason(&err)
                        )
                        .as_bytes(),
                    );
                    self.report.failed += 1;
                    let why = format!("could not restore its attribute: {}", reason(&err));
                    self.log(dest, Outcome::Failed(why), None);
                }
            }
        }
    }
}

/// The outcome of creating one object.
pub(super) struct Done {
    /// False when the recorded owner could not be set (not root).
    pub(super) owner_set: bool,
}

/// Write a sparse entry's data regions at their offsets (the holes stay holes) and set the
/// length, feeding the logical content to `hash`.
fn copy_sparse(
    src: &mut dyn Read,
    dst: &File,
    size: u64,
    stored: u64,
    hash: &mut ContentHash,
) -> io::Result<()> {
    let regions = crate::archive::sparse::read_map(src, stored, size)?;
    let complete = crate::archive::sparse::hash_stored(src, &regions, size, hash, Some(dst))?;
    if crate::fault::active("restore-signal") {
        crate::signal::raise_interrupt();
    }
    if crate::signal::caught().is_some() {
        return Err(io::Error::from(io::ErrorKind::Interrupted));
    }
    dst.set_len(size)?;
    if !complete {
        return Err(io::Error::other("the archive's sparse entry is short"));
    }
    Ok(())
}

/// Copy everything from `src` to `dst`, feeding it to `hash`, and moving the progress `bar`
/// chunk by chunk (`pause`: failure injection, `restore-pause`, after the first chunk).
fn copy_hashed(
    src: &mut dyn Read,
    dst: &mut File,
    buf: &mut [u8],
    hash: &mut ContentHash,
    (bar, mut pause): (&mut crate::progress::Progress, bool),
) -> io::Result<()> {
    let mut total = 0u64;
    // Whether the file ends in a hole (seeked over): only then is its length to be set.
    let mut hole_at_end = false;
    loop {
        let n = match src.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hash.data(&buf[..n]);
        // Runs of zeros become holes, so a sparse file comes back sparse (as `cp
        // --sparse=auto` makes it); the length is set at the end.
        hole_at_end = n >= 4096 && buf[..n].iter().all(|&b| b == 0);
        if hole_at_end {
            dst.seek(SeekFrom::Current(n as i64))?;
        } else {
            dst.write_all(&buf[..n])?;
        }
        total += n as u64;
        bar.advance(n as u64);
        if std::mem::take(&mut pause) {
            crate::fault::wait_for_resume();
        }
        // Failure injection (debug builds): Ctrl-C arrives while a file is being written.
        if crate::fault::active("restore-signal") {
            crate::signal::raise_interrupt();
        }
        if crate::signal::caught().is_some() {
            return Err(io::Error::from(io::ErrorKind::Interrupted));
        }
    }
    if hole_at_end {
        dst.set_len(total)?;
    }
    Ok(())
}

/// Whether the regular file `name` below `pfd` has the size and hash entry `e` records.
pub(super) fn same_content(pfd: RawFd, name: &CStr, e: &Entry) -> bool {
    let Ok(fd) = sys::open_file_nofollow(pfd, name) else {
        return false;
    };
    let mut file = File::from(fd);
    match sys::fstat(file.as_raw_fd()) {
        Ok(st) if st.is_file() && st.size == e.size => {}
        _ => return false,
    }
    let mut hash = ContentHash::of(e);
    let mut buf = vec![0u8; 256 * 1024];
    // Only the data is read: a hole is zeros, which `blake3_blocks` hashes for nothing.
    let holes = match crate::archive::sparse::data_map(&file, e.size) {
        Ok(regions) => regions,
        Err(_) => return false,
    };
    let read = |file: &mut File, hash: &mut ContentHash, buf: &mut [u8]| -> io::Result<()> {
        if let Some(regions) = &holes {
            for r in regions {
                hash.zeros(r.offset.saturating_sub(hash.len()));
                file.seek(SeekFrom::Start(r.offset))?;
                feed(&mut Read::take(&mut *file, r.len), hash, buf)?;
            }
            hash.zeros(e.size.saturating_sub(hash.len()));
            file.seek(SeekFrom::Start(e.size))?;
        }
        // The rest: all of a file without holes; anything past the size otherwise.
        feed(file, hash, buf)
    };
    read(&mut file, &mut hash, &mut buf).is_ok() && hash.matches(e.size)
}

/// A restored file's content did not hash to what its manifest records.
pub(super) fn damaged() -> io::Error {
    io::Error::other(
        "the archived copy is damaged (blake3 mismatch); nothing was left in its place",
    )
}

/// The archive could not be read as far as the end of a file's content.
pub(super) fn unreadable(err: &io::Error) -> io::Error {
    io::Error::other(format!(
        "cannot read it from the archive ({}); nothing was left in its place",
        reason(err)
    ))
}

/// Feed everything `src` gives to `hash`.
fn feed(src: &mut impl Read, hash: &mut ContentHash, buf: &mut [u8]) -> io::Result<()> {
    loop {
        match src.read(buf) {
            Ok(0) => return Ok(()),
            Ok(n) => hash.data(&buf[..n]),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        }
    }
}

/// A new, private (0600) file with a temporary name in the directory `pfd`:
/// `.unrm.<pid>.<8 hex digits>.tmp`, the digits one random start per process counted up
/// (two syscalls fewer per file than a fresh pid and random number each; O_EXCL still
/// settles a name left by an earlier process of the same pid).
pub(super) fn create_temp_file(pfd: RawFd) -> io::Result<(CString, OwnedFd)> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static START: std::sync::OnceLock<(u32, u32)> = std::sync::OnceLock::new();
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let (pid, start) = *START.get_or_init(|| (std::process::id(), sys::random_u32()));
    loop {
        let n = start.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed));
        let name = format!(".unrm.{pid}.{n:08x}.tmp");
        let cname = sys::cstr(name.as_bytes())?;
        match sys::openat(
            pfd,
            &cname,
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_NOCTTY,
            0o600,
        ) {
            Ok(fd) => return Ok((cname, fd)),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Remove a file this run created and found damaged, if the name still is that file.
pub(super) fn remove_partial(pfd: RawFd, name: &CStr, file: &File) {
    let (Ok(ours), Ok(there)) = (sys::fstat(file.as_raw_fd()), sys::fstatat(pfd, name, false))
    else {
        return;
    };
    if (ours.dev, ours.ino) == (there.dev, there.ino) {
        let _ = crate::unlink::remove_partial_restore(pfd, name);
    }
}

/// Set the recorded owner when it differs; false when not permitted (not root).
pub(super) fn set_owner_fd(fd: RawFd, e: &Entry, euid: u32) -> io::Result<bool> {
    set_owner_ids(fd, (e.uid, e.gid), euid)
}

/// [`set_owner_fd`], given the owner: `(uid, gid)`.
pub(super) fn set_owner_ids(fd: RawFd, (uid, gid): (u32, u32), euid: u32) -> io::Result<bool> {
    let st = sys::fstat(fd)?;
    if (st.uid, st.gid) == (uid, gid) {
        return Ok(true);
    }
    if let Err(err) = std::os::unix::fs::fchown(sys::borrow(&fd)?, Some(uid), Some(gid)) {
        if err.raw_os_error() == Some(libc::EPERM) && euid != 0 {
            return Ok(false);
        }
        return Err(err);
    }
    Ok(true)
}

fn set_owner_at(pfd: RawFd, name: &CStr, e: &Entry, euid: u32) -> io::Result<bool> {
    let st = sys::fstatat(pfd, name, false)?;
    if (st.uid, st.gid) == (e.uid, e.gid) {
        return Ok(true);
    }
    // AT_SYMLINK_NOFOLLOW changes a symlink itself. -1 (as fchownat takes it) is None.
    let uid = (e.uid != u32::MAX).then(|| Uid::from_raw(e.uid));
    let gid = (e.gid != u32::MAX).then(|| Gid::from_raw(e.gid));
    let chowned = rustix::fs::chownat(
        sys::borrow(&pfd)?,
        name,
        uid,
        gid,
        AtFlags::SYMLINK_NOFOLLOW,
    );
    if let Err(err) = chowned.map_err(io::Error::from) {
        if err.raw_os_error() == Some(libc::EPERM) && euid != 0 {
            return Ok(false);
        }
        return Err(err);
    }
    Ok(true)
}

pub(super) fn fchmod(fd: RawFd, mode: u32) -> io::Result<()> {
    Ok(rustix::fs::fchmod(
        sys::borrow(&fd)?,
        Mode::from_raw_mode(mode & 0o7777),
    )?)
}

/// The access time left as it is, the modification time `sec`.`nsec`.
fn mtime_only(sec: i64, nsec: i64) -> Timestamps {
    Timestamps {
        last_access: Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_OMIT,
        },
        last_modification: Timespec {
            tv_sec: sec as _,
            tv_nsec: nsec as _,
        },
    }
}

fn times_of(e: &Entry) -> Timestamps {
    mtime_only(e.mtime, e.mtime_nsec.min(999_999_999) as i64)
}

pub(super) fn set_mtime_fd(fd: RawFd, sec: i64, nsec: i64) -> io::Result<()> {
    Ok(rustix::fs::futimens(
        sys::borrow(&fd)?,
        &mtime_only(sec, nsec),
    )?)
}

pub(super) fn set_times_fd(fd: RawFd, e: &Entry) -> io::Result<()> {
    Ok(rustix::fs::futimens(sys::borrow(&fd)?, &times_of(e))?)
}

fn set_times_at(pfd: RawFd, name: &CStr, e: &Entry) -> io::Result<()> {
    let flags = AtFlags::SYMLINK_NOFOLLOW;
    Ok(rustix::fs::utimensat(
        sys::borrow(&pfd)?,
        name,
        &times_of(e),
        flags,
    )?)
}

pub(super) fn create_symlink(e: &Entry, pfd: RawFd, name: &CStr, euid: u32) -> io::Result<Done> {
    let target = e.link.as_ref().and_then(|l| l.bytes()).unwrap_or_default();
    let ctarget = sys::cstr(&target)?;
    rustix::fs::symlinkat(ctarget.as_c_str(), sys::borrow(&pfd)?, name)?;
    let owner_set = set_owner_at(pfd, name, e, euid)?;
    set_times_at(pfd, name, e)?;
    Ok(Done { owner_set })
}

pub(super) fn create_node(e: &Entry, pfd: RawFd, name: &CStr, euid: u32) -> io::Result<Done> {
    let (ftype, dev) = match e.kind {
        Kind::Fifo => (FileType::Fifo, 0),
        Kind::Char | Kind::Block => {
            if euid != 0 {
                return Err(io::Error::other("only root can create device nodes"));
            }
            let ft = if e.kind == Kind::Char {
                FileType::CharacterDevice
            } else {
                FileType::BlockDevice
            };
            (
                ft,
                rustix::fs::makedev(e.rdev_major.unwrap_or(0), e.rdev_minor.unwrap_or(0)),
            )
        }
        _ => return Err(io::Error::other("not a special file")),
    };
    let mode = Mode::from_raw_mode(0o600);
    rustix::fs::mknodat(sys::borrow(&pfd)?, name, ftype, mode, dev)?;
    let owner_set = set_owner_at(pfd, name, e, euid)?;
    chmod_node(pfd, name, e.mode, e.kind == Kind::Fifo)?;
    set_times_at(pfd, name, e)?;
    Ok(Done { owner_set })
}

/// Give the special file `name` below `pfd` its mode: the new node itself, never a symlink
/// swapped into its place, and without `/proc` (a chroot, a minimal container), through
/// which glibc's `fchmodat(AT_SYMLINK_NOFOLLOW)` works. `fchmodat2` (Linux 6.6) takes the
/// flag itself; before it (or where a seccomp filter refuses it), a FIFO is opened
/// (`O_NONBLOCK`: no writer is needed; `O_NOFOLLOW`) and changed through its descriptor.
/// A device node is never opened (that can act on the device): it is left to glibc.
fn chmod_node(pfd: RawFd, name: &CStr, mode: u32, fifo: bool) -> io::Result<()> {
    let mode = (mode & 0o7777) as libc::mode_t;
    let unsupported = |err: &io::Error| {
        matches!(
            err.raw_os_error(),
            Some(libc::ENOSYS) | Some(libc::EPERM) | Some(libc::EOPNOTSUPP)
        )
    };
    if !crate::fault::active("no-fchmodat2") {
        match sys::chmod_nofollow(pfd, name, mode, NoFollow::Fchmodat2) {
            Ok(()) => return Ok(()),
            Err(err) if !unsupported(&err) => return Err(err),
            Err(_) => {}
        }
    }
    if fifo {
        let flags = libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_NOCTTY;
        let fd = sys::openat(pfd, name, flags, 0)?;
        if sys::fstat(fd.as_raw_fd())?.file_type() != libc::S_IFIFO {
            return Err(io::Error::other("it was replaced while being restored"));
        }
        return fchmod(fd.as_raw_fd(), mode);
    }
    sys::chmod_nofollow(pfd, name, mode, NoFollow::Glibc)
}
