//! Instant mode's staging area (DESIGN §9): a deletion whose operands are renamed whole
//! into `staging/<id>/` (same filesystem, so O(1), and nothing is unlinked), with the
//! record of where they came from (`origin.json`). A worker archives each staged deletion
//! through the ordinary pipeline, and only once its archive is verified and durable and its
//! manifest published are the staged objects unlinked and the staging removed.
//!
//! Nothing here needs an fsync to keep data: a rename lost in a crash leaves the object
//! where it was, and a staged object whose origin was lost is still in the store.

use std::ffi::CString;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::{layout, Store, SMALL_FILE_MAX};
use crate::manifest::{Operand, PathBytes};
use crate::sys;

/// The version of `origin.json` this build writes and reads.
const ORIGIN_FORMAT: u32 = 1;

/// Where a staged deletion came from (`staging/<id>/origin.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StagedOrigin {
    pub format: u32,
    pub id: String,
    /// RFC 3339, nanoseconds, UTC.
    pub created: String,
    pub cwd: PathBytes,
    pub argv: Vec<PathBytes>,
    /// Each operand as its manifest will record it; operand `i` is staged as
    /// `staging/<id>/<i>`.
    pub operands: Vec<Operand>,
    /// What the staged objects hold (an estimate of their archive's size, uncompressed):
    /// part of the store for `max_size` until they are archived.
    #[serde(default)]
    pub bytes: u64,
}

impl StagedOrigin {
    pub fn new(
        id: &str,
        created: chrono::DateTime<chrono::Utc>,
        cwd: &[u8],
        operands: Vec<Operand>,
        bytes: u64,
    ) -> StagedOrigin {
        use std::os::unix::ffi::OsStrExt;
        StagedOrigin {
            format: ORIGIN_FORMAT,
            id: id.to_string(),
            created: created.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
            cwd: PathBytes::new(cwd),
            argv: std::env::args_os()
                .map(|a| PathBytes::new(a.as_bytes()))
                .collect(),
            operands,
            bytes,
        }
    }
}

/// A staged deletion's directory, open.
pub struct Staging {
    dir: OwnedFd,
    pub id: String,
    /// `staging/<id>` under the store, for the worker's walk.
    pub path: PathBuf,
}

impl Staging {
    /// The directory's descriptor.
    pub fn fd(&self) -> RawFd {
        self.dir.as_raw_fd()
    }

    /// The operand slots staged here now (`0`, `1`, ...), in order.
    pub fn slots(&self) -> std::io::Result<Vec<usize>> {
        let mut slots: Vec<usize> = sys::read_dir(self.fd())?
            .iter()
            .filter_map(|e| e.name.to_str().ok().and_then(|n| n.parse::<usize>().ok()))
            .collect();
        slots.sort_unstable();
        Ok(slots)
    }

    /// Rename `name` (in `dirfd`) into this staging as operand `slot`, never replacing.
    pub fn take(&self, dirfd: RawFd, name: &std::ffi::CStr, slot: usize) -> std::io::Result<()> {
        let slot = CString::new(slot.to_string()).map_err(std::io::Error::other)?;
        sys::rename_noreplace(dirfd, name, self.fd(), &slot)
    }

    /// Rename operand `slot` back to `name` in `dirfd`, never replacing (a staging that
    /// could not be finished).
    pub fn put_back(
        &self,
        slot: usize,
        dirfd: RawFd,
        name: &std::ffi::CStr,
    ) -> std::io::Result<()> {
        let slot = CString::new(slot.to_string()).map_err(std::io::Error::other)?;
        sys::rename_noreplace(self.fd(), &slot, dirfd, name)
    }
}

/// A staged deletion not archived (yet), as `unrm --list` and `unrm --check` report it.
pub struct Staged {
    pub id: String,
    /// Where it came from; `None` when its `origin.json` is missing or cannot be read.
    pub origin: Option<StagedOrigin>,
    pub state: StagedState,
}

/// What is becoming of a staged deletion.
pub enum StagedState {
    /// Nobody is at it: the next saferm or unrm finishes it (or the worker one starts).
    Waiting,
    /// These processes hold the staging lock: (pid, whether it is a worker).
    Archiving(Vec<(u32, bool)>),
    /// This run could not archive it, for this reason.
    Failed(String),
}

impl StagedState {
    /// Its name in `unrm --list --json`.
    pub fn name(&self) -> &'static str {
        match self {
            StagedState::Waiting => "waiting",
            StagedState::Archiving(_) => "being_archived",
            StagedState::Failed(_) => "could_not_be_archived",
        }
    }

    /// In words: `waiting to be archived`, `being archived by worker 4242`,
    /// `could not be archived: WHY`.
    pub fn describe(&self) -> String {
        match self {
            StagedState::Waiting => "waiting to be archived".to_string(),
            StagedState::Archiving(holders) => {
                let by: Vec<String> = holders
                    .iter()
                    .map(|&(pid, worker)| {
                        format!("{} {pid}", if worker { "worker" } else { "process" })
                    })
                    .collect();
                format!("being archived by {}", by.join(", "))
            }
            StagedState::Failed(why) => format!("could not be archived: {why}"),
        }
    }
}

impl Store {
    /// Every staged deletion in the store, oldest first, and what is becoming of it;
    /// `failed` are the ones this run could not archive, with why (`instant::drain`'s
    /// answer).
    pub fn staged(&self, failed: &[(String, String)]) -> Result<Vec<Staged>> {
        let ids = self.stagings()?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let holders = self.drain_lock_holders();
        Ok(ids
            .into_iter()
            .map(|id| {
                let state = match failed.iter().find(|(f, _)| *f == id) {
                    Some((_, why)) => StagedState::Failed(why.clone()),
                    None if !holders.is_empty() => StagedState::Archiving(holders.clone()),
                    None => StagedState::Waiting,
                };
                Staged {
                    origin: self.staged_origin(&id),
                    id,
                    state,
                }
            })
            .collect())
    }
}

impl Store {
    fn staging_root(&self) -> Result<OwnedFd> {
        let name = sys::cstr(layout::STAGING.as_bytes())?;
        sys::mkdirat_exist_ok(self.fd(), &name, 0o700)
            .with_context(|| format!("cannot create '{}'", self.staging_path().display()))?;
        Ok(sys::open_dir_nofollow(self.fd(), &name)?)
    }

    fn staging_path(&self) -> PathBuf {
        self.root().join(layout::STAGING)
    }

    /// Make `staging/<id>/` and write where its objects come from, ready for them to be
    /// renamed in ([`Staging::take`]).
    pub fn begin_staging(&self, origin: &StagedOrigin) -> Result<Staging> {
        if !super::id::is_valid(&origin.id) {
            bail!("'{}' is not a deletion id", origin.id);
        }
        let root = self.staging_root()?;
        let name = sys::cstr(origin.id.as_bytes())?;
        let path = self.staging_path().join(&origin.id);
        if !sys::mkdirat_exist_ok(root.as_raw_fd(), &name, 0o700)? {
            bail!("'{}' exists already", path.display());
        }
        let dir = sys::open_dir_nofollow(root.as_raw_fd(), &name)?;
        // Held until the staging is made (the Staging is dropped): a worker leaves it alone
        // meanwhile ([`Store::open_staging`]).
        sys::flock(&dir, true, true).context("cannot lock the new staging")?;
        let file = sys::openat(
            dir.as_raw_fd(),
            &sys::cstr(layout::STAGED_ORIGIN.as_bytes())?,
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
            0o600,
        )
        .with_context(|| format!("cannot write '{}'", path.display()))?;
        // Durable before anything is renamed in: a power cut after a rename must not find
        // the objects staged and where they came from lost (tests/powercut.rs, instant).
        let mut file = File::from(file);
        file.write_all(&serde_json::to_vec(origin)?)
            .and_then(|()| file.sync_all())
            .with_context(|| format!("cannot write '{}'", path.display()))?;
        Ok(Staging {
            dir,
            id: origin.id.clone(),
            path,
        })
    }

    /// The ids of the staged deletions, oldest first.
    pub fn stagings(&self) -> Result<Vec<String>> {
        let name = sys::cstr(layout::STAGING.as_bytes())?;
        let root = match sys::open_dir_nofollow(self.fd(), &name) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(Vec::new()),
            Err(e) => return Err(e).context("cannot open the staging area"),
        };
        let mut ids: Vec<String> = sys::read_dir(root.as_raw_fd())?
            .iter()
            .filter_map(|e| e.name.to_str().ok().map(str::to_string))
            .filter(|n| super::id::is_valid(n))
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// What every staging holds, by the sizes their origins recorded (read without their
    /// locks: one being made counts from when its origin is written).
    pub fn staged_bytes(&self) -> u64 {
        let Ok(root) = self.staging_root() else {
            return 0;
        };
        let Ok(name) = sys::cstr(layout::STAGED_ORIGIN.as_bytes()) else {
            return 0;
        };
        self.stagings()
            .unwrap_or_default()
            .iter()
            .filter_map(|id| {
                let dir = sys::open_dir_nofollow(root.as_raw_fd(), &sys::cstr(id.as_bytes()).ok()?)
                    .ok()?;
                let b = sys::read_regular(dir.as_raw_fd(), &name, false, SMALL_FILE_MAX).ok()?;
                serde_json::from_slice::<StagedOrigin>(&b)
                    .ok()
                    .map(|o| o.bytes)
            })
            .fold(0, u64::saturating_add)
    }

    /// Staged deletion `id`, open and locked, with its origin (`None` if it has none: a
    /// staging whose origin was lost in a crash, or one whose making was cut short).
    /// `Ok(None)` while the saferm that makes it is at it.
    pub fn open_staging(&self, id: &str) -> Result<Option<(Staging, Option<StagedOrigin>)>> {
        if !super::id::is_valid(id) {
            bail!("'{id}' is not a deletion id");
        }
        let root = self.staging_root()?;
        let dir = sys::open_dir_nofollow(root.as_raw_fd(), &sys::cstr(id.as_bytes())?)?;
        match sys::flock(&dir, true, true) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => return Ok(None),
            Err(e) => return Err(e).context("cannot lock a staging"),
        }
        let origin = read_origin(dir.as_raw_fd(), id);
        let staging = Staging {
            dir,
            id: id.to_string(),
            path: self.staging_path().join(id),
        };
        Ok(Some((staging, origin)))
    }

    /// Where staged deletion `id` came from, read without locking it (for a listing: a
    /// worker may be at it); `None` if it has no readable origin, or is gone.
    pub fn staged_origin(&self, id: &str) -> Option<StagedOrigin> {
        if !super::id::is_valid(id) {
            return None;
        }
        let root = self.staging_root().ok()?;
        let dir = sys::open_dir_nofollow(root.as_raw_fd(), &sys::cstr(id.as_bytes()).ok()?).ok()?;
        read_origin(dir.as_raw_fd(), id)
    }

    /// Note that deletion `made` holds everything staged in `staging` (its manifest is
    /// published): a worker killed while unlinking leaves only unlinking to do.
    pub fn mark_published(&self, staging: &Staging, made: &str) -> Result<()> {
        let fd = sys::openat(
            staging.fd(),
            &sys::cstr(layout::STAGED_PUBLISHED.as_bytes())?,
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_NOFOLLOW,
            0o600,
        )?;
        File::from(fd).write_all(made.as_bytes())?;
        Ok(())
    }

    /// Note that a worker is about to archive `staging`, durably; whether one had been
    /// about to before (and may have left part of an archive named by the staging's id).
    pub fn mark_attempted(&self, staging: &Staging) -> Result<bool> {
        let name = sys::cstr(layout::STAGED_ATTEMPTED.as_bytes())?;
        let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW;
        match sys::openat(staging.fd(), &name, flags, 0o600) {
            Ok(fd) => {
                drop(fd);
                sys::fsync(&staging.dir)?;
                Ok(false)
            }
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(true),
            Err(e) => Err(e.into()),
        }
    }

    /// The deletion that holds `staging`'s objects, if its archive was published.
    pub fn published(&self, staging: &Staging) -> Option<String> {
        let name = sys::cstr(layout::STAGED_PUBLISHED.as_bytes()).ok()?;
        let text = sys::read_regular(staging.fd(), &name, false, 4096).ok()?;
        let id = String::from_utf8(text).ok()?;
        super::id::is_valid(&id).then_some(id)
    }

    /// Remove a staging whose objects are archived and gone: its notes, then its
    /// directory. One that still holds anything else is kept whole, its notes with it:
    /// without its origin, what is left could only be restored by hand.
    pub fn end_staging(&self, staging: Staging) -> Result<()> {
        let notes = [
            layout::STAGED_PUBLISHED,
            layout::STAGED_ATTEMPTED,
            layout::STAGED_ORIGIN,
        ];
        let left = sys::read_dir(staging.fd())?
            .iter()
            .any(|e| !notes.iter().any(|n| e.name.as_bytes() == n.as_bytes()));
        if left {
            bail!(
                "'{}' still holds objects that are not archived",
                staging.path.display()
            );
        }
        for note in notes {
            let note = sys::cstr(note.as_bytes())?;
            match crate::unlink::remove_store_file(staging.fd(), &note) {
                Err(e) if e.raw_os_error() != Some(libc::ENOENT) => return Err(e.into()),
                _ => {}
            }
        }
        let root = self.staging_root()?;
        crate::unlink::remove_staging_dir(root.as_raw_fd(), &sys::cstr(staging.id.as_bytes())?)
            .with_context(|| format!("cannot remove '{}'", staging.path.display()))
    }

    /// The workers (`saferm ---drain-staging`) holding the staging lock now, by the
    /// kernel's lock table (never a pid written in a file), each checked to be one.
    pub fn drain_workers(&self) -> Vec<u32> {
        self.drain_lock_holders()
            .into_iter()
            .filter_map(|(pid, worker)| worker.then_some(pid))
            .collect()
    }

    /// Whoever holds the staging lock now, by the kernel's lock table: each pid, and
    /// whether it is a worker (`saferm ---drain-staging`) rather than an unrm finishing
    /// the staged deletions itself.
    pub fn drain_lock_holders(&self) -> Vec<(u32, bool)> {
        let Ok(root) = self.staging_root() else {
            return Vec::new();
        };
        let Ok(name) = sys::cstr(layout::DRAIN_LOCK.as_bytes()) else {
            return Vec::new();
        };
        let Ok(fd) = sys::openat(
            root.as_raw_fd(),
            &name,
            libc::O_RDONLY | libc::O_NOFOLLOW,
            0,
        ) else {
            return Vec::new();
        };
        super::lock::lock_holder_pids(&File::from(fd))
            .into_iter()
            .map(|pid| {
                let worker = std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| c.split(|&b| b == 0).any(|a| a == b"---drain-staging"));
                (pid, worker)
            })
            .collect()
    }

    fn drain_lock_file(&self) -> Result<File> {
        let root = self.staging_root()?;
        let fd = sys::openat(
            root.as_raw_fd(),
            &sys::cstr(layout::DRAIN_LOCK.as_bytes())?,
            libc::O_RDWR | libc::O_CREAT | libc::O_NOFOLLOW,
            0o600,
        )?;
        Ok(File::from(fd))
    }

    /// The lock of the worker that archives staged deletions, exclusive: `None` when
    /// another holds it.
    pub fn drain_lock(&self) -> Result<Option<File>> {
        let file = self.drain_lock_file()?;
        match sys::flock(&file, true, true) {
            Ok(()) => Ok(Some(file)),
            Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => Ok(None),
            Err(e) => Err(e).context("cannot lock the staging area"),
        }
    }

    /// [`Store::drain_lock`], waiting (interruptibly) for whoever holds it; `waiting` is
    /// told who, once, if it must.
    pub fn drain_lock_patiently(&self, waiting: impl FnOnce(&str)) -> Result<File> {
        let file = self.drain_lock_file()?;
        super::lock::flock_patiently(&file, true, waiting).map_err(|e| {
            if e.is::<super::Interrupted>() {
                e
            } else {
                e.context("cannot lock the staging area")
            }
        })?;
        Ok(file)
    }
}

/// The origin of staged deletion `id`, whose directory is open at `dir`, if it has one
/// that this build reads and that is its own.
fn read_origin(dir: RawFd, id: &str) -> Option<StagedOrigin> {
    let name = sys::cstr(layout::STAGED_ORIGIN.as_bytes()).ok()?;
    let bytes = sys::read_regular(dir, &name, false, SMALL_FILE_MAX).ok()?;
    serde_json::from_slice::<StagedOrigin>(&bytes)
        .ok()
        .filter(|o| o.format == ORIGIN_FORMAT && o.id == id)
}
