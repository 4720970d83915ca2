//! The store: where deletions are kept, and the only module that knows its layout.
//!
//! ```text
//! $SAFERM_STORE | $XDG_DATA_HOME/saferm | ~/.local/share/saferm
//!   FORMAT                          "saferm-store 1"
//!   lock                            flock: shared for writers, exclusive for GC/repair
//!   tmp/                            manifests and indexes being written
//!   archives/YYYY-MM/<id>.tar.zst   0600
//!   manifests/YYYY-MM/<id>.json     0600
//!   manifests/YYYY-MM/<id>.purging  a purge in progress (see `Store::purge_deletions`)
//!   manifests/YYYY-MM/<id>.{restored,restored-part,kept,kept-part}.json   notes (`catalog`)
//!   index.jsonl, retention.json     caches (listing headers; the last retention check)
//!   restoring/<id>                  a restore from deletion <id> in progress (`crate::resume`)
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
//!   that a crash lost (and any unrm run, or saferm's periodic check, one a crash left
//!   damaged or empty: `check::heal_manifests`). That keeps one journal commit per deletion.
//! - Writers MUST hold the lock shared from creating their temp file to the last rename, so a
//!   collector holding it exclusively never sees a half-written deletion.
//! - A process that has to wait for the lock SHOULD say so, and for whom, and MUST stay
//!   interruptible while it waits (`Store::lock_shared_patiently`): it has done nothing yet.
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

/// The most saferm reads of a store file it reads whole: `FORMAT`, `retention.json`, a
/// restore note (a few hundred bytes each).
pub const SMALL_FILE_MAX: u64 = 1 << 20;
/// The most saferm reads of a manifest or of the listing cache: ~3 million entries. A
/// larger one is refused rather than read until memory runs out (a sparse file costs
/// nothing to make); the copy inside the archive is still there.
pub const MANIFEST_MAX: u64 = 1 << 30;

/// Places that are emptied at boot or live in memory.
const VOLATILE_PREFIXES: &[&str] = &["/tmp", "/var/tmp", "/dev/shm", "/run"];

/// Where the store is, and why (for messages and `--stats`).
pub fn location() -> Result<PathBuf> {
    location_with(&crate::config::Config::load()?)
}

/// Where the store is under this configuration (`store` / `SAFERM_STORE` first). As root,
/// an `XDG_DATA_HOME` or `HOME` that belongs to another user is ignored (`crate::home`).
pub fn location_with(config: &crate::config::Config) -> Result<PathBuf> {
    if let Some(p) = &config.store.value {
        return Ok(p.clone());
    }
    // The XDG spec says relative values are invalid and to be ignored.
    if let Some(p) = crate::home::xdg_dir("XDG_DATA_HOME") {
        return Ok(p.join("saferm"));
    }
    Ok(crate::home::home()?.join(".local/share/saferm"))
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

/// How often a process waiting for the lock tries it again, and looks for a signal.
const LOCK_POLL_MS: u64 = 50;

/// Waiting for the lock was given up because a signal (Ctrl-C) arrived; nothing was done.
#[derive(Debug)]
pub struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted while waiting for the store lock")
    }
}

impl std::error::Error for Interrupted {}

/// Who holds the `flock` on `file`, as /proc/locks tells (Linux): `process 1234 (unrm
/// --purge)`, several pids when several share it; `another process` when it cannot be
/// learnt (no /proc, another pid namespace).
fn lock_holders(file: &File) -> String {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = file.metadata() else {
        return "another process".to_string();
    };
    let locks = std::fs::read_to_string("/proc/locks").unwrap_or_default();
    let found: Vec<(u32, bool)> = locks
        .lines()
        .filter_map(|line| flock_holder(line, meta.dev(), meta.ino()))
        .collect();
    // The device number in /proc/locks is the superblock's, which st_dev is not on every
    // filesystem (btrfs subvolumes): the inode alone decides when no device matches.
    let any_dev = found.iter().any(|&(_, dev_matches)| dev_matches);
    let mut pids: Vec<u32> = found
        .iter()
        .filter(|&&(_, dev_matches)| dev_matches || !any_dev)
        .map(|&(pid, _)| pid)
        .collect();
    pids.sort_unstable();
    pids.dedup();
    let mine = std::process::id();
    pids.retain(|&p| p != mine);
    if pids.is_empty() {
        return "another process".to_string();
    }
    let described: Vec<String> = pids
        .iter()
        .take(4)
        .map(|pid| match process_command(*pid) {
            Some(cmd) => format!("{pid} ({cmd})"),
            None => pid.to_string(),
        })
        .collect();
    let noun = if pids.len() == 1 {
        "process"
    } else {
        "processes"
    };
    let more = if pids.len() > 4 { ", ..." } else { "" };
    format!("{noun} {}{more}", described.join(", "))
}

/// The pid of a line of /proc/locks that is a granted FLOCK on inode `ino`, and whether its
/// device is `dev`, as in `3: FLOCK  ADVISORY  WRITE 1234 08:01:56789 0 EOF` (waiters read
/// `3: -> FLOCK ...`).
fn flock_holder(line: &str, dev: u64, ino: u64) -> Option<(u32, bool)> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    if fields.get(1) != Some(&"FLOCK") {
        return None;
    }
    let pid: u32 = fields.get(4)?.parse().ok()?;
    let mut id = fields.get(5)?.split(':');
    let major = u64::from_str_radix(id.next()?, 16).ok()?;
    let minor = u64::from_str_radix(id.next()?, 16).ok()?;
    let inode: u64 = id.next()?.parse().ok()?;
    let (want_major, want_minor) = (libc::major(dev) as u64, libc::minor(dev) as u64);
    (inode == ino).then_some((pid, major == want_major && minor == want_minor))
}

/// A process's command line, printable and short, for a message.
fn process_command(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let text: String = String::from_utf8_lossy(&raw)
        .trim_end_matches('\0')
        .chars()
        .map(|c| if c == '\0' || c.is_control() { ' ' } else { c })
        .take(60)
        .collect();
    (!text.is_empty()).then_some(text)
}

/// A held store lock; released on drop.
pub struct LockGuard {
    _file: File,
    exclusive: bool,
}

impl LockGuard {
    /// Whether no writer or reader can be active beside its holder.
    pub fn is_exclusive(&self) -> bool {
        self.exclusive
    }
}

impl Store {
    /// Open the store at `location()`, creating it if needed, and check that it is safe.
    pub fn open() -> Result<Store> {
        let root = location()?;
        Store::open_at(&root)
    }

    pub fn open_at(root: &Path) -> Result<Store> {
        Store::open_waiving(root, &TestWaivers::from_env())
    }

    /// Tests only (debug builds): [`Store::open_at`] as in a process started with
    /// `SAFERM_TEST_SANDBOX=sandbox` (and `SAFERM_TEST_ALLOW_VOLATILE_STORE` when
    /// `allow_volatile`), for an integration test that opens its sandbox's store itself
    /// and may not change its own environment.
    #[cfg(debug_assertions)]
    #[doc(hidden)]
    pub fn open_in_test_sandbox(
        root: &Path,
        sandbox: Option<&Path>,
        allow_volatile: bool,
    ) -> Result<Store> {
        let waivers = TestWaivers {
            sandbox: sandbox.map(Path::to_path_buf),
            volatile: allow_volatile,
        };
        Store::open_waiving(root, &waivers)
    }

    fn open_waiving(root: &Path, waivers: &TestWaivers) -> Result<Store> {
        refuse_volatile_path(root, waivers)?;
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
        refuse_volatile_path(&canonical, waivers)?;
        let (fstype, _) = sys::statfs(root_fd.as_raw_fd())?;
        if (fstype == TMPFS_MAGIC || fstype == RAMFS_MAGIC) && !waivers.volatile {
            bail!(
                "store '{}' is on a memory filesystem (tmpfs/ramfs) and would be lost at reboot; set SAFERM_STORE to a directory on disk",
                root.display()
            );
        }
        // Nothing is changed in a directory that is neither a store nor free to become one.
        refuse_foreign_directory(root, root_fd.as_raw_fd())?;
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
        for sub in CREATION_DIRS {
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
        match sys::read_regular(self.fd(), c"FORMAT", false, SMALL_FILE_MAX) {
            Ok(text) => {
                let version = parse_format(&text).with_context(|| {
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

    /// `(dev, ino)` of the store's directories: the store, every directory in it, and
    /// every directory in those (`archives/<month>`, `manifests/<month>`). Wherever one of
    /// them is mounted (a bind mount) or reached, it is still the store: a walk that meets
    /// one must skip it, and an operand below one is inside the store.
    pub fn directory_ids(&self) -> std::collections::HashSet<(u64, u64)> {
        let mut ids = std::collections::HashSet::from([self.dev_ino]);
        let mut level: Vec<OwnedFd> = sys::open_dir_nofollow(self.fd(), c".")
            .into_iter()
            .collect();
        for _depth in 0..2 {
            let mut next = Vec::new();
            for dir in &level {
                for e in sys::read_dir(dir.as_raw_fd()).unwrap_or_default() {
                    if e.d_type != libc::DT_DIR && e.d_type != libc::DT_UNKNOWN {
                        continue; // the files of tmp/, FORMAT, lock...
                    }
                    let Ok(sub) = sys::open_dir_nofollow(dir.as_raw_fd(), &e.name) else {
                        continue; // not a directory
                    };
                    if let Ok(st) = sys::fstat(sub.as_raw_fd()) {
                        ids.insert((st.dev, st.ino));
                        next.push(sub);
                    }
                }
            }
            level = next;
        }
        ids
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
            // The label may come from a manifest: only plain characters, never a `/`.
            let label: String = label
                .iter()
                .take(100)
                .map(|&b| match b {
                    b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' | b'.' => b as char,
                    _ => '_',
                })
                .collect();
            let name = format!(
                "{}.{}.{:08x}.tmp",
                label.trim_start_matches('.'),
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

    /// Take the lock exclusively, calling `waiting` first if that means waiting for other
    /// processes (so that a user knows why `unrm --purge` or `--check` does not return).
    pub fn lock_exclusive_patiently(&self, waiting: impl FnOnce(&str)) -> Result<LockGuard> {
        self.lock_patiently(true, waiting)
    }

    /// Take the lock shared, calling `waiting` first if another process holds it exclusively.
    pub fn lock_shared_patiently(&self, waiting: impl FnOnce(&str)) -> Result<LockGuard> {
        self.lock_patiently(false, waiting)
    }

    /// Take the lock. When another process holds it, `waiting` is called once with who that
    /// is (`process 1234 (unrm --purge)`, from /proc/locks), then the lock is tried again
    /// every few dozen milliseconds until it is free or a signal was caught
    /// (`signal::caught`), which fails with [`Interrupted`]. A blocking `flock` would not do:
    /// after an `SA_RESTART` handler the kernel restarts it, and Ctrl-C would go unheard
    /// until the other process let go.
    fn lock_patiently(&self, exclusive: bool, waiting: impl FnOnce(&str)) -> Result<LockGuard> {
        let file = self.lock_file()?;
        let mut waiting = Some(waiting);
        loop {
            match sys::flock(&file, exclusive, true) {
                Ok(()) => {
                    return Ok(LockGuard {
                        _file: file,
                        exclusive,
                    })
                }
                Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => {}
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!("cannot lock '{}'", self.root.join("lock").display())
                    })
                }
            }
            if let Some(tell) = waiting.take() {
                tell(&lock_holders(&file));
            }
            if crate::signal::caught().is_some() {
                return Err(Interrupted.into());
            }
            std::thread::sleep(std::time::Duration::from_millis(LOCK_POLL_MS));
        }
    }

    /// Take the lock exclusively only if nobody holds it: None when a writer, a restore or
    /// another collector is active (automatic retention never makes an `rm` wait).
    pub fn try_lock_exclusive(&self) -> Result<Option<LockGuard>> {
        let file = self.lock_file()?;
        match sys::flock(&file, true, true) {
            Ok(()) => Ok(Some(LockGuard {
                _file: file,
                exclusive: true,
            })),
            Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => Ok(None),
            Err(e) => Err(e)
                .with_context(|| format!("cannot lock '{}'", self.root.join("lock").display())),
        }
    }

    fn lock_file(&self) -> Result<File> {
        let fd = sys::openat(
            self.fd(),
            c"lock",
            libc::O_RDWR | libc::O_CREAT | libc::O_NOFOLLOW | libc::O_NONBLOCK,
            0o600,
        )
        .with_context(|| format!("cannot open '{}'", self.root.join("lock").display()))?;
        if !sys::fstat(fd.as_raw_fd())?.is_file() {
            bail!(
                "cannot lock '{}': it is not a regular file",
                self.root.join("lock").display()
            );
        }
        Ok(File::from(fd))
    }

    fn lock(&self, exclusive: bool) -> Result<LockGuard> {
        let file = self.lock_file()?;
        sys::flock(&file, exclusive, false)
            .with_context(|| format!("cannot lock '{}'", self.root.join("lock").display()))?;
        Ok(LockGuard {
            _file: file,
            exclusive,
        })
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
        // The names may come from a manifest (its id): never a path out of the directory.
        if ![kind, month, file_name].iter().all(|c| safe_component(c)) {
            bail!("'{kind}/{month}/{file_name}' is not a name inside the store");
        }
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

    /// Write `content` to a temp file, fsync it, and publish it as `<kind>/<month>/<name>`,
    /// never replacing a file already there; the temp file is removed on any failure.
    pub fn publish_new(&self, kind: &str, month: &str, name: &str, content: &[u8]) -> Result<()> {
        use std::io::Write;
        let (tmp, mut file) = self.create_temp(name.as_bytes())?;
        let written = (|| -> Result<()> {
            file.write_all(content)?;
            sys::fsync(&file)?;
            Ok(())
        })();
        if let Err(e) = written {
            self.discard_temp(&tmp);
            return Err(e);
        }
        if let Err(e) = self.publish(&tmp, kind, month, name) {
            self.discard_temp(&tmp);
            return Err(e);
        }
        Ok(())
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

    /// Open a published file for reading. `rel` comes from a manifest, which may be
    /// damaged: it must be a normal relative path (never absolute, no `..`), so that
    /// nothing outside the store is read as an archive.
    pub fn open_published(&self, rel: &str) -> Result<File> {
        if rel.is_empty()
            || rel
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == ".." || c.contains('\0'))
        {
            bail!("'{rel}' is not a path inside the store");
        }
        let context = || format!("cannot open '{}'", self.root.join(rel).display());
        // One directory at a time, none of them a symlink (a month replaced by a link to
        // elsewhere is not followed); then not blocking on a FIFO in the file's place, and
        // nothing but a regular file.
        let (dirs, name) = rel.rsplit_once('/').unwrap_or(("", rel));
        let mut dir: Option<OwnedFd> = None;
        for component in dirs.split('/').filter(|c| !c.is_empty()) {
            let at = dir.as_ref().map_or(self.fd(), |d| d.as_raw_fd());
            let next = sys::open_dir_nofollow(at, &sys::cstr(component.as_bytes())?)
                .with_context(context)?;
            dir = Some(next);
        }
        let at = dir.as_ref().map_or(self.fd(), |d| d.as_raw_fd());
        sys::open_regular(at, &sys::cstr(name.as_bytes())?, false).with_context(context)
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

/// One archive file, as listing and stat'ing `archives/` shows it (nothing is read).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveFile {
    pub month: String,
    pub id: String,
    pub size: u64,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
}

/// What the store's directories hold, from directory listings and stats only: cheap enough
/// to run after every `rm`.
#[derive(Clone, Debug, Default)]
pub struct Scan {
    pub archives: Vec<ArchiveFile>,
    /// id -> month of every `manifests/<month>/<id>.json` (not the restored sidecars).
    pub manifests: std::collections::HashMap<String, String>,
    /// (month, id) of every purge marker `manifests/<month>/<id>.purging`.
    pub purging: Vec<(String, String)>,
}

impl Scan {
    /// Archives with neither a manifest nor a purge marker: left by an interrupted saferm,
    /// or their manifest was lost in a crash (`unrm --check --repair` tells which).
    pub fn orphans(&self) -> impl Iterator<Item = &ArchiveFile> {
        self.archives.iter().filter(|a| {
            !self.manifests.contains_key(&a.id) && !self.purging.iter().any(|(_, id)| *id == a.id)
        })
    }

    /// Total bytes of the archives.
    pub fn archive_bytes(&self) -> u64 {
        self.archives.iter().map(|a| a.size).sum()
    }
}

/// A deletion to purge: its id, the month its manifest is filed under, and the month of its
/// archive (None when there is no archive left).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PurgeTarget {
    pub id: String,
    pub manifest_month: String,
    pub archive_month: Option<String>,
}

/// The sidecar suffixes a deletion may have beside its manifest.
const SIDECARS: &[&str] = &[
    ".restored.json",
    ".restored-part.json",
    ".kept.json",
    ".kept-part.json",
];
/// The suffix of an archive without a manifest that could not be rebuilt, set aside.
pub const DAMAGED: &str = ".damaged";
/// The suffix of a purge marker, beside the manifest it dooms.
const PURGING: &str = ".purging";

/// A store path component that is safe to use as a name: not empty, no `/`, not a dot name.
fn safe_component(s: &str) -> bool {
    !s.is_empty() && !s.contains('/') && !s.starts_with('.') && !s.contains('\0')
}

impl Store {
    /// `(month, fd)` of every month directory under `kind/`.
    fn months(&self, kind: &str) -> Result<Vec<(String, OwnedFd)>> {
        let kind_fd = match sys::open_dir_nofollow(self.fd(), &sys::cstr(kind.as_bytes())?) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(Vec::new()),
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot open '{}'", self.root.join(kind).display()))
            }
        };
        let mut out = Vec::new();
        for e in sys::read_dir(kind_fd.as_raw_fd())
            .with_context(|| format!("cannot read '{}'", self.root.join(kind).display()))?
        {
            let Ok(name) = e.name.to_str() else { continue };
            if !safe_component(name) {
                continue;
            }
            // Not a directory (or a symlink in its place): not part of the layout.
            if let Ok(fd) = sys::open_dir_nofollow(kind_fd.as_raw_fd(), &e.name) {
                out.push((name.to_string(), fd));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// List `archives/` and `manifests/`: names, sizes and times, no file contents.
    pub fn scan(&self) -> Result<Scan> {
        let mut scan = Scan::default();
        for (month, fd) in self.months("archives")? {
            for e in sys::read_dir(fd.as_raw_fd())? {
                let Some(id) = e
                    .name
                    .to_str()
                    .ok()
                    .and_then(|n| n.strip_suffix(".tar.zst"))
                    .filter(|id| crate::id::is_valid(id))
                else {
                    continue;
                };
                // Gone in between (purged by someone else): not there.
                let Ok(st) = sys::fstatat(fd.as_raw_fd(), &e.name, false) else {
                    continue;
                };
                if !st.is_file() {
                    continue;
                }
                scan.archives.push(ArchiveFile {
                    month: month.clone(),
                    id: id.to_string(),
                    size: st.size,
                    mtime: st.mtime,
                });
            }
        }
        for (month, fd) in self.months("manifests")? {
            for e in sys::read_dir(fd.as_raw_fd())? {
                let Ok(name) = e.name.to_str() else { continue };
                // A name no deletion can have is not part of the layout.
                let stem = name.rsplit_once('.').map_or(name, |(stem, _)| stem);
                let stem = SIDECARS
                    .iter()
                    .find_map(|s| name.strip_suffix(s))
                    .unwrap_or(stem);
                if !crate::id::is_valid(stem) {
                    continue;
                }
                if let Some(id) = name.strip_suffix(PURGING) {
                    scan.purging.push((month.clone(), id.to_string()));
                } else if SIDECARS.iter().any(|s| name.ends_with(s)) {
                    continue;
                } else if let Some(id) = name.strip_suffix(".json") {
                    scan.manifests.insert(id.to_string(), month.clone());
                }
            }
        }
        scan.archives.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(scan)
    }

    /// `(month, id)` of every manifest that is empty (a power cut soon after `rm` can leave
    /// one at 0 bytes: its rename reached the disk, its data did not), among those whose id
    /// `wanted` lets through. Listings and a stat per manifest wanted; nothing is read.
    pub fn empty_manifests(&self, wanted: &dyn Fn(&str) -> bool) -> Result<Vec<(String, String)>> {
        let mut out = Vec::new();
        for (month, fd) in self.months("manifests")? {
            for e in sys::read_dir(fd.as_raw_fd())? {
                let Ok(name) = e.name.to_str() else { continue };
                if SIDECARS.iter().any(|s| name.ends_with(s)) {
                    continue;
                }
                let Some(id) = name.strip_suffix(".json").filter(|id| wanted(id)) else {
                    continue;
                };
                if sys::fstatat(fd.as_raw_fd(), &e.name, false)
                    .is_ok_and(|st| st.is_file() && st.size == 0)
                {
                    out.push((month.clone(), id.to_string()));
                }
            }
        }
        Ok(out)
    }

    /// Purge deletions, crash-safely, under the exclusive lock:
    ///
    /// 1. a marker `manifests/<month>/<id>.purging` is made durable;
    /// 2. the manifest and its sidecars are removed, durably (the deletion is gone from
    ///    every listing);
    /// 3. the archive is removed, durably;
    /// 4. the marker is removed.
    ///
    /// A crash leaves either a complete deletion with a marker (the next purge or
    /// `unrm --check` finishes the purge), or an archive with a marker and no manifest (an
    /// orphan that `unrm --check` removes, and that `--repair` must not rebuild: the
    /// marker says it was being purged), or a lone marker (removed the same way). Without
    /// the marker, an orphan from an interrupted purge could not be told from an archive
    /// whose manifest a crash lost, which `--repair` rebuilds.
    pub fn purge_deletions(&self, lock: &LockGuard, targets: &[PurgeTarget]) -> Result<()> {
        if !lock.is_exclusive() {
            bail!("purging needs the store's exclusive lock");
        }
        let targets: Vec<&PurgeTarget> = targets
            .iter()
            .filter(|t| {
                safe_component(&t.id)
                    && safe_component(&t.manifest_month)
                    && t.archive_month.as_deref().is_none_or(safe_component)
            })
            .collect();
        if targets.is_empty() {
            return Ok(());
        }
        let mut manifest_dirs: std::collections::BTreeMap<&str, OwnedFd> = Default::default();
        let mut archive_dirs: std::collections::BTreeMap<&str, OwnedFd> = Default::default();
        for t in &targets {
            if !manifest_dirs.contains_key(t.manifest_month.as_str()) {
                let fd = self.month_dir("manifests", &t.manifest_month)?;
                manifest_dirs.insert(&t.manifest_month, fd);
            }
            if let Some(m) = &t.archive_month {
                if !archive_dirs.contains_key(m.as_str()) {
                    match self.subdir_fd(b"archives").and_then(|a| {
                        Ok(sys::open_dir_nofollow(
                            a.as_raw_fd(),
                            &sys::cstr(m.as_bytes())?,
                        )?)
                    }) {
                        Ok(fd) => {
                            archive_dirs.insert(m, fd);
                        }
                        Err(_) => continue, // no such month: nothing to remove there
                    }
                }
            }
        }
        let dir_of = |t: &PurgeTarget| manifest_dirs.get(t.manifest_month.as_str());
        // 1. Markers, durable before anything is removed.
        for t in &targets {
            let Some(dir) = dir_of(t) else { continue };
            let marker = sys::cstr(format!("{}{PURGING}", t.id).as_bytes())?;
            match sys::openat(
                dir.as_raw_fd(),
                &marker,
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
                0o600,
            ) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot mark {} for purging", t.id))
                }
            }
        }
        for dir in manifest_dirs.values() {
            sys::fsync(dir).context("cannot sync the store directory")?;
        }
        // 2. Manifests and sidecars, durably.
        for t in &targets {
            let Some(dir) = dir_of(t) else { continue };
            for suffix in [".json"].iter().chain(SIDECARS) {
                let name = sys::cstr(format!("{}{suffix}", t.id).as_bytes())?;
                remove_if_present(dir.as_raw_fd(), &name)
                    .with_context(|| format!("cannot remove the manifest of {}", t.id))?;
            }
        }
        for dir in manifest_dirs.values() {
            sys::fsync(dir).context("cannot sync the store directory")?;
        }
        if crate::fault::active("purge-crash") {
            // A crash between the manifest and the archive: die as kill -9 would.
            // SAFETY: plain syscalls.
            unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
        }
        // 3. Archives, durably.
        for t in &targets {
            let Some(dir) = t.archive_month.as_deref().and_then(|m| archive_dirs.get(m)) else {
                continue;
            };
            let name = sys::cstr(format!("{}.tar.zst", t.id).as_bytes())?;
            remove_if_present(dir.as_raw_fd(), &name)
                .with_context(|| format!("cannot remove the archive of {}", t.id))?;
        }
        for dir in archive_dirs.values() {
            sys::fsync(dir).context("cannot sync the store directory")?;
        }
        // 4. Markers.
        for t in &targets {
            let Some(dir) = dir_of(t) else { continue };
            let marker = sys::cstr(format!("{}{PURGING}", t.id).as_bytes())?;
            remove_if_present(dir.as_raw_fd(), &marker)
                .with_context(|| format!("cannot remove the purge marker of {}", t.id))?;
        }
        Ok(())
    }

    /// Finish the purges a crash interrupted (their markers are still there); returns their
    /// ids.
    pub fn finish_interrupted_purges(&self, lock: &LockGuard, scan: &Scan) -> Result<Vec<String>> {
        let targets: Vec<PurgeTarget> = scan
            .purging
            .iter()
            .map(|(month, id)| PurgeTarget {
                id: id.clone(),
                manifest_month: month.clone(),
                archive_month: scan
                    .archives
                    .iter()
                    .find(|a| a.id == *id)
                    .map(|a| a.month.clone()),
            })
            .collect();
        self.purge_deletions(lock, &targets)?;
        Ok(targets.into_iter().map(|t| t.id).collect())
    }

    /// Remove an archive that has no manifest and never will (an interrupted write), under
    /// the exclusive lock, so that it cannot be one being written.
    pub fn remove_orphan_archive(&self, lock: &LockGuard, month: &str, id: &str) -> Result<()> {
        if !lock.is_exclusive() {
            bail!("removing an archive needs the store's exclusive lock");
        }
        if !safe_component(month) || !safe_component(id) {
            bail!("bad archive name {month}/{id}");
        }
        let rel = format!("archives/{month}/{id}.tar.zst");
        self.unpublish(&rel)
            .with_context(|| format!("cannot remove '{}'", self.root.join(&rel).display()))
    }

    /// Rename an archive that has no manifest and cannot be rebuilt to
    /// `archives/<month>/<id>.tar.zst.damaged`: kept for recovery by hand, out of the way of
    /// the checks after every saferm run. Returns its path relative to the store.
    pub fn set_aside_archive(&self, lock: &LockGuard, month: &str, id: &str) -> Result<String> {
        if !lock.is_exclusive() {
            bail!("setting an archive aside needs the store's exclusive lock");
        }
        if !safe_component(month) || !safe_component(id) {
            bail!("bad archive name {month}/{id}");
        }
        let dir = sys::open_dir_nofollow(
            self.subdir_fd(b"archives")?.as_raw_fd(),
            &sys::cstr(month.as_bytes())?,
        )?;
        let aside = format!("{id}.tar.zst{DAMAGED}");
        sys::rename_noreplace(
            dir.as_raw_fd(),
            &sys::cstr(format!("{id}.tar.zst").as_bytes())?,
            dir.as_raw_fd(),
            &sys::cstr(aside.as_bytes())?,
        )
        .with_context(|| format!("cannot set archive {id} aside"))?;
        sys::fsync(&dir).context("cannot sync the store directory")?;
        Ok(format!("archives/{month}/{aside}"))
    }

    /// Remove files in `tmp/` last modified more than `older_than` seconds ago, under the
    /// exclusive lock (writers hold the lock shared while their temp files live; the age
    /// covers the few temp files written without the lock: the listing cache, `FORMAT`).
    /// Returns how many were removed.
    pub fn sweep_temp(&self, lock: &LockGuard, older_than: u64) -> Result<usize> {
        if !lock.is_exclusive() {
            bail!("sweeping needs the store's exclusive lock");
        }
        let tmp = self.subdir_fd(b"tmp")?;
        let now = chrono::Utc::now().timestamp();
        let mut swept = 0;
        for e in sys::read_dir(tmp.as_raw_fd())? {
            let Ok(st) = sys::fstatat(tmp.as_raw_fd(), &e.name, false) else {
                continue;
            };
            if !st.is_file() || now.saturating_sub(st.mtime) < older_than as i64 {
                continue;
            }
            if remove_if_present(tmp.as_raw_fd(), &e.name).is_ok() {
                swept += 1;
            }
        }
        Ok(swept)
    }

    /// Whether `tmp/` holds a file older than `older_than` seconds (a listing and a stat per
    /// file; `tmp/` is empty but for writes in flight).
    pub fn has_stale_temp(&self, older_than: u64) -> Result<bool> {
        let tmp = self.subdir_fd(b"tmp")?;
        let now = chrono::Utc::now().timestamp();
        Ok(sys::read_dir(tmp.as_raw_fd())?.iter().any(|e| {
            sys::fstatat(tmp.as_raw_fd(), &e.name, false)
                .is_ok_and(|st| st.is_file() && now.saturating_sub(st.mtime) >= older_than as i64)
        }))
    }

    /// The journal of a restore from deletion `id`, `restoring/<id>`: what it held already
    /// (an earlier run that was killed wrote it; at most 16 MiB are read) and the file open
    /// for appending. Opened without following a link and without blocking, and it must be a
    /// regular file. Not synced: it is there for a run that was killed, not a power cut.
    pub fn open_restore_journal(&self, id: &str) -> Result<(Vec<u8>, File)> {
        if !safe_component(id) {
            bail!("'{id}' is not a deletion id");
        }
        let dir = sys::cstr(b"restoring")?;
        sys::mkdirat_exist_ok(self.fd(), &dir, 0o700)?;
        let dir = self.subdir_fd(b"restoring")?;
        let fd = sys::openat(
            dir.as_raw_fd(),
            &sys::cstr(id.as_bytes())?,
            libc::O_RDWR
                | libc::O_APPEND
                | libc::O_CREAT
                | libc::O_NOFOLLOW
                | libc::O_NONBLOCK
                | libc::O_NOCTTY,
            0o600,
        )
        .with_context(|| format!("cannot open '{}'", self.root.join("restoring").display()))?;
        if !sys::fstat(fd.as_raw_fd())?.is_file() {
            bail!("'restoring/{id}' in the store is not a regular file");
        }
        let mut file = File::from(fd);
        let mut held = Vec::new();
        use std::io::Read;
        (&mut file).take(16 << 20).read_to_end(&mut held)?;
        Ok((held, file))
    }

    /// Remove the journal of a restore from deletion `id` (best effort: a stale one only
    /// makes a later run look for what it names).
    pub fn remove_restore_journal(&self, id: &str) {
        if !safe_component(id) {
            return;
        }
        if let (Ok(dir), Ok(name)) = (self.subdir_fd(b"restoring"), sys::cstr(id.as_bytes())) {
            let _ = remove_if_present(dir.as_raw_fd(), &name);
        }
    }

    /// The size of the archive of deletion `id`, found by the month its id starts with.
    pub fn archive_size(&self, id: &str) -> Option<u64> {
        let month = crate::id::month(id)?;
        if !safe_component(id) || !safe_component(&month) {
            return None;
        }
        let rel = format!("archives/{month}/{id}.tar.zst");
        let st = sys::fstatat(self.fd(), &sys::cstr(rel.as_bytes()).ok()?, false).ok()?;
        st.is_file().then_some(st.size)
    }

    /// Read a small cache file in the store's root (None if missing or unreadable, or not
    /// a regular file of at most [`SMALL_FILE_MAX`] bytes).
    pub fn read_cache(&self, name: &str) -> Option<Vec<u8>> {
        self.read_cache_up_to(name, SMALL_FILE_MAX)
    }

    /// [`Store::read_cache`] of a cache that may be larger (the listing cache).
    pub fn read_cache_up_to(&self, name: &str, limit: u64) -> Option<Vec<u8>> {
        if !safe_component(name) {
            return None;
        }
        sys::read_regular(self.fd(), &sys::cstr(name.as_bytes()).ok()?, false, limit).ok()
    }

    /// Replace a small cache file in the store's root atomically (temp file, rename over
    /// it), without fsync: a cache lost in a crash is only recomputed.
    pub fn write_cache(&self, name: &str, content: &[u8]) -> Result<()> {
        if !safe_component(name) {
            bail!("bad cache file name '{name}'");
        }
        let (tmp_name, mut file) = self.create_temp(name.as_bytes())?;
        let written = io::Write::write_all(&mut file, content);
        let tmp = self.subdir_fd(b"tmp")?;
        let cname = sys::cstr(name.as_bytes())?;
        let renamed = written.and_then(|()| {
            // SAFETY: both names are NUL-terminated.
            let ret = unsafe {
                libc::renameat(
                    tmp.as_raw_fd(),
                    tmp_name.as_ptr(),
                    self.fd(),
                    cname.as_ptr(),
                )
            };
            if ret < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(())
            }
        });
        if let Err(e) = renamed {
            self.discard_temp(&tmp_name);
            return Err(e)
                .with_context(|| format!("cannot write '{}'", self.root.join(name).display()));
        }
        Ok(())
    }

    /// The type, size and free space of the store's filesystem.
    pub fn fs_stat(&self) -> Result<sys::FsStat> {
        Ok(sys::statfs_full(self.fd())?)
    }

    /// The name of the store's filesystem type (`ext4`, `xfs`, `btrfs`...): from
    /// `/proc/self/mountinfo` (the mount whose device is the store's), else from its magic.
    pub fn fs_type_name(&self) -> String {
        let magic = self.fs_stat().map(|s| s.fs_type).unwrap_or(0);
        let (major, minor) = sys::dev_major_minor(self.dev_ino.0);
        let dev = format!("{major}:{minor}");
        if let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") {
            // The deepest mount point above the store, among those of its device.
            let mut best: Option<(usize, String)> = None;
            for line in text.lines() {
                let fields: Vec<&str> = line.split(' ').collect();
                let Some(sep) = fields.iter().position(|f| *f == "-") else {
                    continue;
                };
                let (Some(d), Some(mp), Some(fstype)) =
                    (fields.get(2), fields.get(4), fields.get(sep + 1))
                else {
                    continue;
                };
                let mp = unescape_mountinfo(mp);
                if *d == dev && self.canonical.starts_with(&mp) {
                    let depth = mp.len();
                    if best.as_ref().is_none_or(|(b, _)| depth >= *b) {
                        best = Some((depth, fstype.to_string()));
                    }
                }
            }
            if let Some((_, name)) = best {
                return name;
            }
        }
        fs_magic_name(magic)
    }
}

/// The version a `FORMAT` file's text gives (`saferm-store 1`), if it is one.
fn parse_format(text: &[u8]) -> Option<u32> {
    std::str::from_utf8(text)
        .ok()?
        .trim()
        .strip_prefix(FORMAT_NAME)?
        .trim()
        .parse::<u32>()
        .ok()
}

/// Whether the directory open at `dirfd` is a saferm store, this user's or any other (an
/// older one, another user's, this one reached by a path its `(dev, ino)` does not give):
/// it holds a `FORMAT` file that says so. Read without following a link or blocking, and
/// bounded, as every store file is.
pub fn is_marked_store(dirfd: RawFd) -> bool {
    sys::read_regular(dirfd, c"FORMAT", false, 4096).is_ok_and(|t| parse_format(&t).is_some())
}

/// mountinfo writes spaces, tabs, newlines and backslashes in paths as octal escapes.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 4 <= b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A filesystem's name from its `statfs` magic number.
pub fn fs_magic_name(magic: i64) -> String {
    let name = match magic as u64 & 0xFFFF_FFFF {
        0xEF53 => "ext2/ext3/ext4",
        0x5846_5342 => "xfs",
        0x9123_683E => "btrfs",
        0x0102_1994 => "tmpfs",
        0x8584_58F6 => "ramfs",
        0x2FC1_2FC2 => "zfs",
        0x6969 => "nfs",
        0x794C_7630 => "overlayfs",
        0xF2F5_2010 => "f2fs",
        0x6573_5546 => "fuse",
        0xFF53_4D42 => "cifs",
        0xFE53_4D42 => "smb2",
        0x4D44 => "vfat",
        0x2011_BAB0 => "exfat",
        0x5346_544E => "ntfs",
        0xCA45_1A4E => "bcachefs",
        0xF15F => "ecryptfs",
        _ => return format!("unknown (0x{:x})", magic),
    };
    name.to_string()
}

/// Remove a store file; one that is already gone is fine.
fn remove_if_present(dirfd: RawFd, name: &std::ffi::CStr) -> io::Result<()> {
    match crate::unlink::remove_store_file(dirfd, name) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        other => other,
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

fn refuse_volatile_path(path: &Path, waivers: &TestWaivers) -> Result<()> {
    if waivers.volatile || waivers.sandbox.as_deref().is_some_and(|d| inside(path, d)) {
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

/// What the integration tests may waive of the rules above; only debug builds read it.
/// - `SAFERM_TEST_ALLOW_VOLATILE_STORE`: any store on tmpfs or under `/tmp` (tests of a
///   store on a size-limited tmpfs).
/// - `SAFERM_TEST_SANDBOX=DIR`: a checkout under `/tmp` has its test sandboxes there
///   (tests/common), and their stores must work. It waives the path rule for a store
///   inside DIR only, not the memory-filesystem rule, and nothing outside DIR.
#[derive(Default)]
struct TestWaivers {
    sandbox: Option<PathBuf>,
    volatile: bool,
}

impl TestWaivers {
    fn from_env() -> TestWaivers {
        if !cfg!(debug_assertions) {
            return TestWaivers::default();
        }
        TestWaivers {
            sandbox: std::env::var_os("SAFERM_TEST_SANDBOX").map(PathBuf::from),
            volatile: std::env::var_os("SAFERM_TEST_ALLOW_VOLATILE_STORE").is_some(),
        }
    }
}

/// Whether `path` is `dir` or below it, both absolute and without `..`, `dir` not `/`.
fn inside(path: &Path, dir: &Path) -> bool {
    let plain =
        |p: &Path| p.is_absolute() && p.components().all(|c| c != std::path::Component::ParentDir);
    plain(dir) && plain(path) && dir != Path::new("/") && path.starts_with(dir)
}

/// What a store's creation makes before `FORMAT` (see `Store::open_waiving`), in order.
const CREATION_DIRS: &[&str] = &["tmp", "archives", "manifests"];

/// A store is made only in a new or empty directory: one that holds no `FORMAT` must be
/// empty, or hold only what a creation that was cut short leaves (the empty directories of
/// [`CREATION_DIRS`], and in `tmp/` the `FORMAT` being written). Anything else (a home,
/// a project) is refused before it is changed: adopting it would make it 0700, fill it
/// with store files, refuse every `rm` below it, and sweep its `tmp/`.
fn refuse_foreign_directory(root: &Path, root_fd: RawFd) -> Result<()> {
    match sys::fstatat(root_fd, c"FORMAT", false) {
        Ok(_) => return Ok(()), // a store (check_format reads it)
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
        Err(e) => {
            return Err(e)
                .with_context(|| format!("cannot read '{}'", root.join("FORMAT").display()))
        }
    }
    let entries =
        sys::read_dir(root_fd).with_context(|| format!("cannot read '{}'", root.display()))?;
    let leftover = |e: &sys::DirEntry| -> bool {
        let Ok(name) = e.name.to_str() else {
            return false;
        };
        if !CREATION_DIRS.contains(&name) {
            return false;
        }
        let Ok(dir) = sys::open_dir_nofollow(root_fd, &e.name) else {
            return false;
        };
        let Ok(inside) = sys::read_dir(dir.as_raw_fd()) else {
            return false;
        };
        inside.iter().all(|f| {
            name == "tmp"
                && f.name
                    .to_str()
                    .is_ok_and(|n| n.starts_with("small.") && n.ends_with(".tmp"))
        })
    };
    if let Some(first) = entries.iter().find(|e| !leftover(e)) {
        bail!(
            "'{}' is not empty and is not a saferm store (it holds '{}' and no FORMAT file); \
             set SAFERM_STORE to a new or empty directory (a store whose FORMAT file was \
             lost gets it back with: echo '{FORMAT_NAME} {FORMAT_VERSION}' > FORMAT)",
            root.display(),
            String::from_utf8_lossy(first.name.as_bytes()),
        );
    }
    Ok(())
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
    fn proc_locks_lines_name_the_flock_holders() {
        let dev = libc::makedev(8, 1);
        let held = "3: FLOCK  ADVISORY  WRITE 1234 08:01:56789 0 EOF";
        assert_eq!(flock_holder(held, dev, 56789), Some((1234, true)));
        assert_eq!(
            flock_holder(held, libc::makedev(0, 0x2b), 56789),
            Some((1234, false))
        );
        assert_eq!(flock_holder(held, dev, 56788), None);
        let waiter = "3: -> FLOCK  ADVISORY  WRITE 99 08:01:56789 0 EOF";
        assert_eq!(flock_holder(waiter, dev, 56789), None);
        let posix = "1: POSIX  ADVISORY  WRITE 77 08:01:56789 0 EOF";
        assert_eq!(flock_holder(posix, dev, 56789), None);
        assert_eq!(flock_holder("garbage", dev, 1), None);
    }

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
    fn filesystems_are_named() {
        assert_eq!(fs_magic_name(0x5846_5342), "xfs");
        assert_eq!(fs_magic_name(0x9123_683E_u32 as i32 as i64), "btrfs");
        assert!(fs_magic_name(0x1234).starts_with("unknown"));
        assert_eq!(unescape_mountinfo("/mnt/a\\040b"), "/mnt/a b");
        assert!(safe_component("2026-11") && !safe_component("..") && !safe_component("a/b"));
    }

    #[test]
    fn volatile_paths_are_refused() {
        let none = TestWaivers::default();
        assert!(refuse_volatile_path(Path::new("/tmp/x"), &none).is_err());
        assert!(refuse_volatile_path(Path::new("/run/user/1000/s"), &none).is_err());
        assert!(refuse_volatile_path(Path::new("/tmpfoo/x"), &none).is_ok());
        assert!(refuse_volatile_path(Path::new("/home/u/.local/share/saferm"), &none).is_ok());
    }

    #[test]
    fn the_test_sandbox_waiver_covers_its_own_directory_only() {
        let waivers = TestWaivers {
            sandbox: Some(PathBuf::from("/tmp/x/target/tmp/sandbox-1")),
            volatile: false,
        };
        let ok = |p: &str| refuse_volatile_path(Path::new(p), &waivers).is_ok();
        assert!(ok("/tmp/x/target/tmp/sandbox-1/data/saferm"));
        assert!(ok("/tmp/x/target/tmp/sandbox-1"));
        assert!(!ok("/tmp/x/target/tmp/sandbox-10/s"));
        assert!(!ok("/tmp/saferm"));
        assert!(!ok("/tmp/x/target/tmp/sandbox-1/../../../../s"));
        assert!(!inside(Path::new("sandbox-1/s"), Path::new("sandbox-1")));
        assert!(!inside(Path::new("/tmp/s"), Path::new("/")));
    }
}
