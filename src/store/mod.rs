//! The store: where deletions are kept. [`Store`] opens it, and its doc comment states the
//! rules the store's files are kept by; [`layout`] is the only code that names them.
//!
//! - here: where the store is, opening it (creating it on first use), and the checks that
//!   refuse an unsafe or foreign directory;
//! - [`backend`]: the narrow interface the layers above use ([`Backend`]), which this
//!   local store implements;
//! - [`layout`]: the names of every store object (`archives/<month>/<id>.tar.zst`...);
//! - `lock`: the store's lock, shared for writers, exclusive for collection and repair;
//! - `files`: temp files, archives being written, publishing, caches, restore journals;
//! - `scan`: what the store holds, from directory listings and stats only;
//! - `purge`: removing deletions and leftovers, under the exclusive lock;
//! - `filesystem`: the store's filesystem (free space, size, type);
//! - [`id`]: what a deletion id may be, and making a new one.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::sys;

pub mod backend;
mod files;
mod filesystem;
pub mod id;
pub mod layout;
mod lock;
mod purge;
mod scan;
pub mod staging;

pub use backend::Backend;
pub use files::PendingArchive;
pub use filesystem::fs_magic_name;
pub use id::new_id;
pub use layout::{month_of, DAMAGED};
pub use lock::{Interrupted, LockGuard};
pub use purge::PurgeTarget;
pub use scan::{ArchiveFile, Scan};

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

/// An open, checked store. Writing, publishing and removing store files goes through it,
/// and every access to the store keeps these rules (DESIGN §1, §3, §8):
///
/// - **Persistent and private.** The store MUST be persistent and private: never on
///   tmpfs/ramfs, never under `/tmp`, `/var/tmp`, `/dev/shm` or `/run`; directories 0700,
///   files 0600, owned by the effective user. A store that breaks this is refused, and then
///   nothing is deleted. A directory that is neither a store nor empty is never made one.
/// - **What is written where.** Temp files are created in `tmp/` (`O_EXCL`, 0600); an
///   archive is created in place under its final name in `archives/<month>/` (`O_EXCL`;
///   readers list deletions by manifest, so a half-written archive is invisible; a crash
///   leaves an orphan that `unrm --check` reports). Manifests and notes reach
///   `manifests/<month>/`, and `FORMAT` the root, only by rename from `tmp/`. The caches in
///   the root (`index.jsonl`, `retention.json`) are the only files replaced, a restore's
///   journal in `restoring/` the only one appended to, and purge markers the only files
///   created in `manifests/` directly (under the exclusive lock).
/// - **Publish without replacing.** A published file (a manifest, a note, `FORMAT`) MUST
///   never replace one already there: it is renamed with `RENAME_NOREPLACE`
///   ([`Store::publish`]), and the first one published wins. Manifests are published but not
///   fsynced: each archive carries a copy of its manifest, from which `unrm --check
///   --repair` rebuilds one that a crash lost (and any unrm run, or saferm's periodic check,
///   one a crash left damaged or empty: `check::heal_manifests`). That keeps one journal
///   commit per deletion.
/// - **Durable before unlinked.** An archive MUST be fsynced and its directory fsynced before
///   anything it holds is unlinked. A failed fsync is an error, never retried: the archive
///   is discarded.
/// - **Lock discipline.** Writers MUST hold the lock shared from creating their temp file to
///   the last rename, so a collector holding it exclusively never sees a half-written
///   deletion. What was published MUST be removed only under the exclusive lock
///   ([`Store::purge_deletions`], [`Store::remove_orphan_archive`],
///   [`Store::set_aside_archive`] and [`Store::sweep_temp`] refuse a shared one); a writer
///   removes only its own unpublished files ([`Store::discard_temp`], and a
///   [`PendingArchive`] dropped before it is kept). A process that has to wait for the
///   lock SHOULD say so, and for whom, and MUST stay interruptible while it waits
///   ([`Store::lock_shared_patiently`]): it has done nothing yet.
/// - **Never follow links.** Store files MUST be opened without following a symlink in
///   their place (`O_NOFOLLOW`; here from the store's directory fd, and one directory at a
///   time for a path read from a manifest), without blocking on a FIFO, and what is read
///   must be a regular file. A name that comes from a manifest or the
///   listing cache (an id, a month, a path relative to the store) is checked before it is
///   used ([`layout::safe_component`], [`id::is_valid`]), so that none leads out of the store.
/// - **Never itself.** The store MUST never archive or delete itself: callers get its
///   `(dev, ino)` and those of its directories ([`Store::directory_ids`]) to skip them.
pub struct Store {
    root: PathBuf,
    root_fd: OwnedFd,
    /// `(dev, ino)` of the store directory, to keep it out of every deletion.
    pub dev_ino: (u64, u64),
    /// Canonical path, to refuse operands inside the store.
    pub canonical: PathBuf,
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
        for sub in layout::CREATION_DIRS {
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
        let path = self.root.join(layout::FORMAT);
        match sys::read_regular(self.fd(), layout::FORMAT_C, false, SMALL_FILE_MAX) {
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
                self.write_small_file(layout::FORMAT.as_bytes(), content.as_bytes())
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
        let (tmp_name, mut file) = self.create_temp(layout::SMALL_LABEL.as_bytes())?;
        use std::io::Write;
        file.write_all(content)?;
        sys::fsync(&file)?;
        let tmp_dir = self.subdir_fd(layout::TMP.as_bytes())?;
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
    sys::read_regular(dirfd, layout::FORMAT_C, false, 4096)
        .is_ok_and(|t| parse_format(&t).is_some())
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

/// A store is made only in a new or empty directory: one that holds no `FORMAT` must be
/// empty, or hold only what a creation that was cut short leaves (the empty directories of
/// [`layout::CREATION_DIRS`], and in `tmp/` the `FORMAT` being written). Anything else (a home,
/// a project) is refused before it is changed: adopting it would make it 0700, fill it
/// with store files, refuse every `rm` below it, and sweep its `tmp/`.
fn refuse_foreign_directory(root: &Path, root_fd: RawFd) -> Result<()> {
    match sys::fstatat(root_fd, layout::FORMAT_C, false) {
        Ok(_) => return Ok(()), // a store (check_format reads it)
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
        Err(e) => {
            return Err(e)
                .with_context(|| format!("cannot read '{}'", root.join(layout::FORMAT).display()))
        }
    }
    let entries =
        sys::read_dir(root_fd).with_context(|| format!("cannot read '{}'", root.display()))?;
    let leftover = |e: &sys::DirEntry| -> bool {
        let Ok(name) = e.name.to_str() else {
            return false;
        };
        if !layout::CREATION_DIRS.contains(&name) {
            return false;
        }
        let Ok(dir) = sys::open_dir_nofollow(root_fd, &e.name) else {
            return false;
        };
        let Ok(inside) = sys::read_dir(dir.as_raw_fd()) else {
            return false;
        };
        inside
            .iter()
            .all(|f| name == layout::TMP && f.name.to_str().is_ok_and(layout::is_small_temp))
    };
    if let Some(first) = entries.iter().find(|e| !leftover(e)) {
        // Another saferm may be making this store right now (several first runs at once):
        // it writes FORMAT before anything but the creation directories is put in, so
        // whatever of its making was listed above, FORMAT is there by now.
        if sys::fstatat(root_fd, layout::FORMAT_C, false).is_ok() {
            return Ok(());
        }
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
