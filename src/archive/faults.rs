//! Failure injection for the archive pipeline and the unlink phase (DESIGN §1.2, tests
//! only: every step is a no-op unless `crate::fault` names it).

use std::fs::File;
use std::os::unix::ffi::OsStrExt;

use crate::walk::Plan;

/// Failure injection for the re-stat rule (DESIGN §1.2): between sealing and unlinking,
/// `mutate` appends to the first archived file, `chmod` sets the first archived file's mode
/// to what it is (only its ctime changes) and `swap` replaces the first archived
/// subdirectory by a symlink to it, as another process could.
#[allow(clippy::disallowed_methods)] // moves a test's file aside, as another process would
pub fn simulate_concurrent_change(plan: &Plan) {
    crate::fault::pause("pause");
    let archived = || plan.to_archive();
    if crate::fault::active("chmod") {
        if let Some(i) = archived().find(|&i| plan.nodes[i].st.is_file()) {
            let abs = plan.abs(i);
            let path = std::ffi::OsStr::from_bytes(&abs);
            let mode = plan.nodes[i].st.mode & 0o7777;
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
        }
    }
    if crate::fault::active("mutate") {
        if let Some(i) = archived().find(|&i| plan.nodes[i].st.is_file()) {
            let abs = plan.abs(i);
            let path = std::ffi::OsStr::from_bytes(&abs);
            if let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(path) {
                let _ = std::io::Write::write_all(&mut f, b"+");
            }
        }
    }
    if crate::fault::active("swap") {
        let found =
            archived().find(|&i| plan.nodes[i].st.is_dir() && plan.nodes[i].parent().is_some());
        if let Some(i) = found {
            let path = std::path::PathBuf::from(std::ffi::OsStr::from_bytes(&plan.abs(i)));
            let mut moved = path.clone().into_os_string();
            moved.push(".moved");
            if std::fs::rename(&path, &moved).is_ok() {
                let _ = std::os::unix::fs::symlink(&moved, &path);
            }
        }
    }
}

/// Failure injection (`verify-copy`): flip the archive's last byte, in the manifest copy,
/// which a zstd decoder skips.
pub(super) fn damage_last_byte(read: &File, write: &File, size: u64) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let mut last = [0u8];
    read.read_exact_at(&mut last, size.saturating_sub(1))?;
    write.write_all_at(&[!last[0]], size.saturating_sub(1))
}

/// Failure injection for a change between the walk and the archiving (DESIGN §1.2): once
/// per run, `replace-file`, `replace-dir` and `replace-fifo` put another file of the same
/// size, a directory or a FIFO in place of the first file to archive (moved to `NAME.moved`).
#[allow(clippy::disallowed_methods)] // moves a test's file aside, as another process would
pub(super) fn simulate_replacement(plan: &Plan) {
    static DONE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let Some(step) = ["replace-file", "replace-dir", "replace-fifo"]
        .into_iter()
        .find(|step| crate::fault::active(step))
    else {
        return;
    };
    if DONE.swap(true, std::sync::atomic::Ordering::Relaxed) {
        return;
    }
    let Some(i) = plan.to_archive().find(|&i| plan.nodes[i].st.is_file()) else {
        return;
    };
    let path = std::path::PathBuf::from(std::ffi::OsStr::from_bytes(&plan.abs(i)));
    let size = plan.nodes[i].st.size as usize;
    let mut moved = path.clone().into_os_string();
    moved.push(".moved");
    if std::fs::rename(&path, &moved).is_err() {
        return;
    }
    let _ = match step {
        "replace-file" => std::fs::write(&path, vec![b'#'; size]),
        "replace-dir" => std::fs::create_dir(&path),
        _ => nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o644))
            .map_err(std::io::Error::from),
    };
}

/// A reader that flips one byte in the middle, for the `verify` failure-injection test.
pub(super) struct Damaged<R> {
    pub(super) inner: R,
    pub(super) pos: u64,
    pub(super) flip_at: u64,
}

impl Damaged<std::io::BufReader<File>> {
    pub(super) fn new(file: File) -> Self {
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        Damaged {
            inner: std::io::BufReader::new(file),
            pos: 0,
            flip_at: len / 2,
        }
    }
}

impl<R: std::io::Read> std::io::Read for Damaged<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if self.flip_at >= self.pos && self.flip_at < self.pos + n as u64 {
            buf[(self.flip_at - self.pos) as usize] ^= 0x20;
        }
        self.pos += n as u64;
        Ok(n)
    }
}

/// Reads a source file, failing like a bad disk where a fault says so: `read` at the first
/// read of every file, `read=NAME` at the first read of the file called NAME, `read-late=NAME`
/// once its first MiB has been read.
pub(super) struct FaultyRead<'a> {
    pub(super) file: &'a File,
    /// How many more bytes may be read before the injected error (`None`: no fault).
    pub(super) fail_after: Option<u64>,
}

impl<'a> FaultyRead<'a> {
    pub(super) fn new(file: &'a File, name: &std::ffi::CStr) -> Self {
        let name = name.to_bytes();
        let fail_after = if crate::fault::active("read") || crate::fault::names("read", name) {
            Some(0)
        } else if crate::fault::names("read-late", name) {
            Some(1 << 20)
        } else {
            None
        };
        FaultyRead { file, fail_after }
    }
}

impl std::io::Read for FaultyRead<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let len = buf.len();
        let buf = match self.fail_after {
            Some(0) => return Err(std::io::Error::from_raw_os_error(libc::EIO)),
            Some(left) => &mut buf[..len.min(usize::try_from(left).unwrap_or(usize::MAX))],
            None => buf,
        };
        let mut f = self.file;
        let n = f.read(buf)?;
        if let Some(left) = &mut self.fail_after {
            *left -= n as u64;
        }
        Ok(n)
    }
}
