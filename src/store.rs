//! The store: where deletions are kept, and the only module that knows its layout.
//!
//! ```text
//! $SAFERM_STORE | $XDG_DATA_HOME/saferm | ~/.local/share/saferm
//!   FORMAT                          "saferm-store 1"
//!   lock                            flock: shared for writers, exclusive for GC/repair
//!   tmp/                            manifests and indexes being written
//!   archives/YYYY-MM/<id>.tar.zst   0600
//!   manifests/YYYY-MM/<id>.json     0600
//! ```
//!
//! The rules this module keeps (DESIGN §1):
//! - The store MUST be persistent and private: never on tmpfs/ramfs, never under `/tmp`,
//!   `/var/tmp`, `/dev/shm` or `/run`; directories 0700, files 0600, owned by the effective
//!   user. A store that breaks this is refused, and then nothing is deleted.
//! - An archive MUST be fsynced and its directory fsynced before anything it holds is
//!   unlinked. A failed fsync is an error, never retried: the archive is discarded.
//! - Archives are written in place under their final name (readers list deletions by
//!   manifest, so a half-written archive is invisible; a crash leaves an orphan that
//!   `unrm --check` reports). Manifests are published by atomic rename but not fsynced: each
//!   archive carries a copy of its manifest, from which `unrm --check --repair` rebuilds one
//!   that a crash lost. That keeps one journal commit per deletion.
//! - Writers MUST hold the lock shared from creating their temp file to the last rename, so a
//!   collector holding it exclusively never sees a half-written deletion.
//! - The store MUST never archive or delete itself: callers get its `(dev, ino)` to skip it.

use std::ffi::{CString, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::sys;

/// The store format this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
const FORMAT_NAME: &str = "saferm-store";

const TMPFS_MAGIC: i64 = 0x0102_1994;
const RAMFS_MAGIC: i64 = 0x8584_58f6;

/// Places that are emptied at boot or live in memory.
const VOLATILE_PREFIXES: &[&str] = &["/tmp", "/var/tmp", "/dev/shm", "/run"];

/// Where the store is, and why (for messages and `--stats`).
pub fn location() -> Result<PathBuf> {
    location_with(&crate::config::Config::load()?)
}

/// Where the store is under this configuration (`store` / `SAFERM_STORE` first).
pub fn location_with(config: &crate::config::Config) -> Result<PathBuf> {
    if let Some(p) = &config.store.value {
        return Ok(p.clone());
    }
    // The XDG spec says relative values are invalid and to be ignored.
    if let Some(p) = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
    {
        return Ok(p.join("saferm"));
    }
    Ok(home_dir()?.join(".local/share/saferm"))
}

/// The user's home. As root, the password database's, not `$HOME`: `sudo saferm` with the
/// caller's HOME must not put root-owned files into the caller's home.
fn home_dir() -> Result<PathBuf> {
    let euid = sys::geteuid();
    if euid != 0 {
        if let Some(h) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
            return Ok(PathBuf::from(h));
        }
    }
    match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(euid)) {
        Ok(Some(user)) => Ok(user.dir),
        _ => bail!("cannot find the home directory of uid {euid}; set SAFERM_STORE"),
    }
}

/// An open, checked store.
pub struct Store {
    root: PathBuf,
    root_fd: OwnedFd,
    /// `(dev, ino)` of the store directory, to keep it out of every deletion.
    pub dev_ino: (u64, u64),
    /// Canonical path, to refuse operands inside the store.
    pub canonical: PathBuf,
}

/// An archive being written in place: the file, its directory and its name.
pub struct PendingArchive {
    pub file: Option<File>,
    dir: OwnedFd,
    name: CString,
    /// Path relative to the store.
    pub rel: String,
}

impl PendingArchive {
    /// Make the directory entry durable (the file itself was fsynced when sealed). A failed
    /// fsync is not retried: the caller discards the archive and fails.
    pub fn sync_dir(&self) -> Result<()> {
        crate::fault::check("dirsync")
            .and_then(|_| sys::fsync(&self.dir))
            .context("cannot sync the store directory")
    }
}

/// A held store lock; released on drop.
pub struct LockGuard {
    _file: File,
}

impl Store {
    /// Open the store at `location()`, creating it if needed, and check that it is safe.
    pub fn open() -> Result<Store> {
        let root = location()?;
        Store::open_at(&root)
    }

    pub fn open_at(root: &Path) -> Result<Store> {
        refuse_volatile_path(root)?;
        create_private_dirs(root)?;
        let croot = sys::cstr(root.as_os_str().as_bytes())?;
        let root_fd = sys::openat(sys::AT_FDCWD, &croot, libc::O_RDONLY | libc::O_DIRECTORY, 0)
            .with_context(|| format!("cannot open store '{}'", root.display()))?;
        let st = sys::fstat(root_fd.as_raw_fd())?;
        let euid = sys::geteuid();
        if st.uid != euid {
            bail!(
                "store '{}' belongs to uid {}, not to you (uid {euid}); set SAFERM_STORE to a directory of your own",
                root.display(),
                st.uid
            );
        }
        let canonical = std::fs::canonicalize(root)
            .with_context(|| format!("cannot resolve '{}'", root.display()))?;
        // The canonical path may reveal a symlink into /tmp.
        refuse_volatile_path(&canonical)?;
        let (fstype, _) = sys::statfs(root_fd.as_raw_fd())?;
        if (fstype == TMPFS_MAGIC || fstype == RAMFS_MAGIC) && !volatile_allowed_for_tests() {
            bail!(
                "store '{}' is on a memory filesystem (tmpfs/ramfs) and would be lost at reboot; set SAFERM_STORE to a directory on disk",
                root.display()
            );
        }
        if st.mode & 0o077 != 0 {
            nix::sys::stat::fchmod(
                root_fd.as_raw_fd(),
                nix::sys::stat::Mode::from_bits_truncate(0o700),
            )
            .with_context(|| format!("cannot make store '{}' private", root.display()))?;
        }
        let store = Store {
            root: root.to_path_buf(),
            root_fd,
            dev_ino: (st.dev, st.ino),
            canonical,
        };
        for sub in ["tmp", "archives", "manifests"] {
            sys::mkdirat_exist_ok(store.fd(), &sys::cstr(sub.as_bytes())?, 0o700)
                .with_context(|| format!("cannot create '{}'", store.root.join(sub).display()))?;
        }
        store.check_format()?;
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn fd(&self) -> RawFd {
        self.root_fd.as_raw_fd()
    }

    /// Write `FORMAT` on first use; refuse a store written by a newer, incompatible saferm.
    fn check_format(&self) -> Result<()> {
        let path = self.root.join("FORMAT");
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let version = text
                    .trim()
                    .strip_prefix(FORMAT_NAME)
                    .and_then(|v| v.trim().parse::<u32>().ok())
                    .with_context(|| {
                        format!("'{}' is not a saferm store format file", path.display())
                    })?;
                if version > FORMAT_VERSION {
                    bail!(
                        "store '{}' has format {version}, newer than this saferm supports ({FORMAT_VERSION}); upgrade saferm",
                        self.root.display()
                    );
                }
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let content = format!("{FORMAT_NAME} {FORMAT_VERSION}\n");
                self.write_small_file(b"FORMAT", content.as_bytes())
                    .with_context(|| format!("cannot write '{}'", path.display()))
            }
            Err(e) => Err(e).with_context(|| format!("cannot read '{}'", path.display())),
        }
    }

    /// Write a small file atomically (temp, fsync, rename without replacing, fsync dir).
    fn write_small_file(&self, name: &[u8], content: &[u8]) -> Result<()> {
        let (tmp_name, mut file) = self.create_temp(b"small")?;
        use std::io::Write;
        file.write_all(content)?;
        sys::fsync(&file)?;
        let tmp_dir = self.subdir_fd(b"tmp")?;
        match sys::rename_noreplace(tmp_dir.as_raw_fd(), &tmp_name, self.fd(), &sys::cstr(name)?) {
            Ok(()) => {}
            // Another process wrote it first: theirs is as good as ours.
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                crate::unlink::remove_store_file(tmp_dir.as_raw_fd(), &tmp_name)?;
            }
            Err(e) => return Err(e.into()),
        }
        sys::fsync(&self.root_fd)?;
        Ok(())
    }

    fn subdir_fd(&self, name: &[u8]) -> Result<OwnedFd> {
        let c = sys::cstr(name)?;
        sys::open_dir_nofollow(self.fd(), &c).with_context(|| {
            format!(
                "cannot open '{}'",
                self.root.join(OsString::from_vec(name.to_vec())).display()
            )
        })
    }

    /// Create a new private temp file in `tmp/` (O_EXCL, 0600).
    pub fn create_temp(&self, label: &[u8]) -> Result<(CString, File)> {
        let tmp = self.subdir_fd(b"tmp")?;
        for _ in 0..16 {
            let name = format!(
                "{}.{}.{:08x}.tmp",
                String::from_utf8_lossy(label),
                std::process::id(),
                sys::random_u32()
            );
            let cname = sys::cstr(name.as_bytes())?;
            match sys::openat(
                tmp.as_raw_fd(),
                &cname,
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
                0o600,
            ) {
                Ok(fd) => return Ok((cname, File::from(fd))),
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => continue,
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!(
                            "cannot create a temp file in '{}'",
                            self.root.join("tmp").display()
                        )
                    })
                }
            }
        }
        bail!(
            "cannot create a unique temp file in '{}'",
            self.root.join("tmp").display()
        )
    }

    /// Remove a temp file after a failure (best effort: the caller is already failing).
    pub fn discard_temp(&self, name: &CString) {
        if let Ok(tmp) = self.subdir_fd(b"tmp") {
            let _ = crate::unlink::remove_store_file(tmp.as_raw_fd(), name);
        }
    }

    /// Hold the lock shared, as every writer does.
    pub fn lock_shared(&self) -> Result<LockGuard> {
        self.lock(false)
    }

    /// Hold the lock exclusively (collection, repair).
    pub fn lock_exclusive(&self) -> Result<LockGuard> {
        self.lock(true)
    }

    fn lock(&self, exclusive: bool) -> Result<LockGuard> {
        let fd = sys::openat(
            self.fd(),
            c"lock",
            libc::O_RDWR | libc::O_CREAT | libc::O_NOFOLLOW,
            0o600,
        )
        .with_context(|| format!("cannot open '{}'", self.root.join("lock").display()))?;
        let file = File::from(fd);
        sys::flock(&file, exclusive, false)
            .with_context(|| format!("cannot lock '{}'", self.root.join("lock").display()))?;
        Ok(LockGuard { _file: file })
    }

    /// `<kind>/<month>/`, created (durably) on first use.
    fn month_dir(&self, kind: &str, month: &str) -> Result<OwnedFd> {
        let kind_fd = self.subdir_fd(kind.as_bytes())?;
        let cmonth = sys::cstr(month.as_bytes())?;
        if sys::mkdirat_exist_ok(kind_fd.as_raw_fd(), &cmonth, 0o700)? {
            sys::fsync(&kind_fd).context("cannot sync the store directory")?;
        }
        Ok(sys::open_dir_nofollow(kind_fd.as_raw_fd(), &cmonth)?)
    }

    /// Create a new archive file directly under its final name, `archives/<month>/<name>`
    /// (O_EXCL, 0600). Writing it in place rather than renaming it there lets the file's
    /// fsync commit its directory entry too (on ext4 the directory fsync that follows then
    /// has nothing left to do): one journal commit per deletion instead of two. Readers
    /// list deletions by manifest, so an archive being written is invisible to them.
    pub fn create_archive(&self, month: &str, name: &str) -> Result<PendingArchive> {
        let dir = self.month_dir("archives", month)?;
        let cname = sys::cstr(name.as_bytes())?;
        let fd = sys::openat(
            dir.as_raw_fd(),
            &cname,
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
            0o600,
        )
        .with_context(|| {
            format!(
                "cannot create an archive in '{}'",
                self.root.join("archives").join(month).display()
            )
        })?;
        Ok(PendingArchive {
            file: Some(File::from(fd)),
            dir,
            name: cname,
            rel: format!("archives/{month}/{name}"),
        })
    }

    /// Remove an archive that did not make it (failed write, verification or manifest).
    pub fn discard_archive(&self, p: &PendingArchive) {
        let _ = crate::unlink::remove_store_file(p.dir.as_raw_fd(), &p.name);
    }

    /// Move a finished temp file to `<kind>/<month>/<name>` atomically, without fsync:
    /// manifests are rebuilt from the copy inside their (durable) archive if a crash loses
    /// them (`unrm --check --repair`). Returns the path relative to the store.
    pub fn publish(
        &self,
        tmp_name: &CString,
        kind: &str,
        month: &str,
        file_name: &str,
    ) -> Result<String> {
        let month_fd = self.month_dir(kind, month)?;
        let tmp = self.subdir_fd(b"tmp")?;
        crate::fault::check("rename")?;
        sys::rename_noreplace(
            tmp.as_raw_fd(),
            tmp_name,
            month_fd.as_raw_fd(),
            &sys::cstr(file_name.as_bytes())?,
        )
        .with_context(|| {
            format!(
                "cannot move the archive into '{}'",
                self.root.join(kind).join(month).display()
            )
        })?;
        Ok(format!("{kind}/{month}/{file_name}"))
    }

    /// Remove a published file (an archive that failed verification).
    pub fn unpublish(&self, rel: &str) -> Result<()> {
        let (dir, name) = rel.rsplit_once('/').context("bad store path")?;
        let cdir = sys::cstr(dir.as_bytes())?;
        let dfd = sys::openat(
            self.fd(),
            &cdir,
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
            0,
        )?;
        crate::unlink::remove_store_file(dfd.as_raw_fd(), &sys::cstr(name.as_bytes())?)?;
        sys::fsync(&dfd)?;
        Ok(())
    }

    /// Open a published file for reading.
    pub fn open_published(&self, rel: &str) -> Result<File> {
        let c = sys::cstr(rel.as_bytes())?;
        let fd = sys::openat(self.fd(), &c, libc::O_RDONLY | libc::O_NOFOLLOW, 0)
            .with_context(|| format!("cannot open '{}'", self.root.join(rel).display()))?;
        Ok(File::from(fd))
    }

    /// Free bytes on the store's filesystem.
    pub fn free_bytes(&self) -> Result<u64> {
        Ok(sys::statfs(self.fd())?.1)
    }

    /// The total size of the store's filesystem (for limits given in %).
    pub fn fs_bytes(&self) -> Result<u64> {
        Ok(sys::fs_size(self.fd())?)
    }
}

/// A unique, sortable id: UTC time to the nanosecond, pid, randomness, and a readable label
/// from the first operand (`20261126T105853.123456789Z-4242-9f3a1c07-packages`).
pub fn new_id(now: chrono::DateTime<chrono::Utc>, first_operand: &[u8]) -> String {
    let label: String = Path::new(std::ffi::OsStr::from_bytes(first_operand))
        .file_name()
        .map(|n| n.as_bytes().to_vec())
        .unwrap_or_default()
        .iter()
        .map(|&b| {
            if b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-' {
                b as char
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    let label = label.trim_start_matches('.');
    let label = if label.is_empty() { "deletion" } else { label };
    format!(
        "{}-{}-{:08x}-{}",
        now.format("%Y%m%dT%H%M%S%.9fZ"),
        std::process::id(),
        sys::random_u32(),
        label
    )
}

/// The month directory an id is filed under.
pub fn month_of(now: chrono::DateTime<chrono::Utc>) -> String {
    now.format("%Y-%m").to_string()
}

fn refuse_volatile_path(path: &Path) -> Result<()> {
    if volatile_allowed_for_tests() {
        return Ok(());
    }
    for prefix in VOLATILE_PREFIXES {
        if path.starts_with(prefix) {
            bail!(
                "store '{}' is under {prefix}, which is emptied at boot; set SAFERM_STORE to a directory on disk",
                path.display()
            );
        }
    }
    Ok(())
}

/// Tests on a size-limited tmpfs need to allow it; only debug builds honour this.
fn volatile_allowed_for_tests() -> bool {
    cfg!(debug_assertions) && std::env::var_os("SAFERM_TEST_ALLOW_VOLATILE_STORE").is_some()
}

/// `mkdir -p` whose last component (the store) is created 0700.
fn create_private_dirs(root: &Path) -> Result<()> {
    if root.is_dir() {
        return Ok(());
    }
    if let Some(parent) = root.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create '{}'", parent.display()))?;
    }
    let c = sys::cstr(root.as_os_str().as_bytes())?;
    sys::mkdirat_exist_ok(sys::AT_FDCWD, &c, 0o700)
        .with_context(|| format!("cannot create store '{}'", root.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_by_time_and_carry_a_label() {
        use chrono::TimeZone;
        let t1 = chrono::Utc
            .timestamp_opt(1_700_000_000, 5)
            .single()
            .unwrap_or_default();
        let t2 = chrono::Utc
            .timestamp_opt(1_700_000_001, 0)
            .single()
            .unwrap_or_default();
        let a = new_id(t1, b"some/dir/packages/");
        let b = new_id(t2, b"a b\xff");
        assert!(a < b, "{a} < {b}");
        assert!(a.ends_with("-packages"), "{a}");
        assert!(b.ends_with("-a_b_"), "{b}");
        assert_eq!(new_id(t1, b".").rsplit('-').next(), Some("deletion"));
    }

    #[test]
    fn volatile_paths_are_refused() {
        assert!(refuse_volatile_path(Path::new("/tmp/x")).is_err());
        assert!(refuse_volatile_path(Path::new("/run/user/1000/s")).is_err());
        assert!(refuse_volatile_path(Path::new("/tmpfoo/x")).is_ok());
        assert!(refuse_volatile_path(Path::new("/home/u/.local/share/saferm")).is_ok());
    }
}
