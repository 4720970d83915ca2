//! Removing from the store, always under the exclusive lock: purging deletions (crash-safely,
//! through a purge marker), removing or setting aside orphan archives, and sweeping stale
//! temp files.

use std::os::fd::{AsRawFd, OwnedFd};

use anyhow::{bail, Context, Result};

use super::files::remove_if_present;
use super::layout::{self, safe_component, MANIFEST_SUFFIX, SIDECARS};
use super::{LockGuard, Scan, Store};
use crate::sys;

/// A deletion to purge: its id, the month its manifest is filed under, and the month of its
/// archive (None when there is no archive left).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PurgeTarget {
    pub id: String,
    pub manifest_month: String,
    pub archive_month: Option<String>,
}

impl Store {
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
                let fd = self.month_dir(layout::MANIFESTS, &t.manifest_month)?;
                manifest_dirs.insert(&t.manifest_month, fd);
            }
            if let Some(m) = &t.archive_month {
                if !archive_dirs.contains_key(m.as_str()) {
                    match self.subdir_fd(layout::ARCHIVES.as_bytes()).and_then(|a| {
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
            let marker = sys::cstr(layout::purge_marker_name(&t.id).as_bytes())?;
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
            for suffix in [MANIFEST_SUFFIX].iter().chain(SIDECARS) {
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
            let _ = nix::sys::signal::kill(nix::unistd::Pid::this(), nix::sys::signal::SIGKILL);
        }
        // 3. Archives, durably.
        for t in &targets {
            let Some(dir) = t.archive_month.as_deref().and_then(|m| archive_dirs.get(m)) else {
                continue;
            };
            let name = sys::cstr(layout::archive_name(&t.id).as_bytes())?;
            remove_if_present(dir.as_raw_fd(), &name)
                .with_context(|| format!("cannot remove the archive of {}", t.id))?;
        }
        for dir in archive_dirs.values() {
            sys::fsync(dir).context("cannot sync the store directory")?;
        }
        // 4. Markers.
        for t in &targets {
            let Some(dir) = dir_of(t) else { continue };
            let marker = sys::cstr(layout::purge_marker_name(&t.id).as_bytes())?;
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
        let rel = layout::archive_rel(month, id);
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
            self.subdir_fd(layout::ARCHIVES.as_bytes())?.as_raw_fd(),
            &sys::cstr(month.as_bytes())?,
        )?;
        let aside = layout::set_aside_archive_name(id);
        sys::rename_noreplace(
            dir.as_raw_fd(),
            &sys::cstr(layout::archive_name(id).as_bytes())?,
            dir.as_raw_fd(),
            &sys::cstr(aside.as_bytes())?,
        )
        .with_context(|| format!("cannot set archive {id} aside"))?;
        sys::fsync(&dir).context("cannot sync the store directory")?;
        Ok(layout::rel(layout::ARCHIVES, month, &aside))
    }

    /// Remove files in `tmp/` last modified more than `older_than` seconds ago, under the
    /// exclusive lock (writers hold the lock shared while their temp files live; the age
    /// covers the few temp files written without the lock: the listing cache, `FORMAT`).
    /// Returns how many were removed.
    pub fn sweep_temp(&self, lock: &LockGuard, older_than: u64) -> Result<usize> {
        if !lock.is_exclusive() {
            bail!("sweeping needs the store's exclusive lock");
        }
        let tmp = self.subdir_fd(layout::TMP.as_bytes())?;
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
        let tmp = self.subdir_fd(layout::TMP.as_bytes())?;
        let now = chrono::Utc::now().timestamp();
        Ok(sys::read_dir(tmp.as_raw_fd())?.iter().any(|e| {
            sys::fstatat(tmp.as_raw_fd(), &e.name, false)
                .is_ok_and(|st| st.is_file() && now.saturating_sub(st.mtime) >= older_than as i64)
        }))
    }
}
