//! What the store holds, from directory listings and stats only (no file is read): cheap
//! enough to run after every `rm`. A name that is not part of the [`layout`] is ignored.

use std::os::fd::{AsRawFd, OwnedFd};

use anyhow::{Context, Result};

use super::layout::{self, PURGING, SIDECARS};
use super::Store;
use crate::sys;

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

impl Store {
    /// `(month, file name)` of every file under `<kind>/<month>/` (`kind` is `archives` or
    /// `manifests`), by name: what a listing shows, before anything is opened.
    pub fn month_files(&self, kind: &str) -> Result<Vec<(String, String)>> {
        let dir = self.root().join(kind);
        let mut out = Vec::new();
        let months = match std::fs::read_dir(&dir) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e).with_context(|| format!("cannot read '{}'", dir.display())),
        };
        for month in months {
            let month = month.with_context(|| format!("cannot read '{}'", dir.display()))?;
            if !month.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let m = month.file_name().to_string_lossy().into_owned();
            let files = std::fs::read_dir(month.path())
                .with_context(|| format!("cannot read '{}'", month.path().display()))?;
            for f in files {
                let f = f.with_context(|| format!("cannot read '{}'", month.path().display()))?;
                out.push((m.clone(), f.file_name().to_string_lossy().into_owned()));
            }
        }
        Ok(out)
    }

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
            if !layout::safe_component(name) {
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
        for (month, fd) in self.months(layout::ARCHIVES)? {
            for e in sys::read_dir(fd.as_raw_fd())? {
                let Some(id) = e
                    .name
                    .to_str()
                    .ok()
                    .and_then(|n| n.strip_suffix(layout::ARCHIVE_SUFFIX))
                    .filter(|id| super::id::is_valid(id))
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
        for (month, fd) in self.months(layout::MANIFESTS)? {
            for e in sys::read_dir(fd.as_raw_fd())? {
                let Ok(name) = e.name.to_str() else { continue };
                // A name no deletion can have is not part of the layout.
                let stem = name.rsplit_once('.').map_or(name, |(stem, _)| stem);
                let stem = SIDECARS
                    .iter()
                    .find_map(|s| name.strip_suffix(s))
                    .unwrap_or(stem);
                if !super::id::is_valid(stem) {
                    continue;
                }
                if let Some(id) = name.strip_suffix(PURGING) {
                    scan.purging.push((month.clone(), id.to_string()));
                } else if SIDECARS.iter().any(|s| name.ends_with(s)) {
                    continue;
                } else if let Some(id) = name.strip_suffix(layout::MANIFEST_SUFFIX) {
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
        for (month, fd) in self.months(layout::MANIFESTS)? {
            for e in sys::read_dir(fd.as_raw_fd())? {
                let Ok(name) = e.name.to_str() else { continue };
                if SIDECARS.iter().any(|s| name.ends_with(s)) {
                    continue;
                }
                let Some(id) = name
                    .strip_suffix(layout::MANIFEST_SUFFIX)
                    .filter(|id| wanted(id))
                else {
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

    /// The size of the archive of deletion `id`, found by the month its id starts with.
    pub fn archive_size(&self, id: &str) -> Option<u64> {
        let month = super::id::month(id)?;
        if !layout::safe_component(id) || !layout::safe_component(&month) {
            return None;
        }
        let rel = layout::archive_rel(&month, id);
        let st = sys::fstatat(self.fd(), &sys::cstr(rel.as_bytes()).ok()?, false).ok()?;
        st.is_file().then_some(st.size)
    }
}
