//! The store's files, written and read: temp files in `tmp/`, archives written in place,
//! publishing a finished temp file without replacing anything, small caches in the root,
//! and the journals of restores in progress. Names come from [`layout`]; every file is
//! reached from the store's directory fd, without following a link in its place.

use std::ffi::{CString, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStringExt;

use anyhow::{bail, Context, Result};

use super::{layout, Store, SMALL_FILE_MAX};
use crate::sys;

/// An archive being written in place: the file, its directory and its name. Until
/// [`PendingArchive::keep`] (once its manifest is published) it is the writer's own
/// unpublished file, and dropping it removes it: an attempt that fails, returns early or
/// unwinds leaves nothing behind in `archives/`.
pub struct PendingArchive {
    file: Option<File>,
    dir: OwnedFd,
    name: CString,
    /// Path relative to the store.
    pub rel: String,
    /// Published: not to be removed on drop.
    kept: bool,
}

impl PendingArchive {
    /// The file to write the archive into (once; after that, an error).
    pub fn take_file(&mut self) -> Result<File> {
        self.file
            .take()
            .context("internal error: the archive file was already taken")
    }

    /// Make the directory entry durable (the file itself was fsynced when sealed). A failed
    /// fsync is not retried: the caller discards the archive and fails.
    pub fn sync_dir(&self) -> Result<()> {
        crate::fault::check("dirsync")
            .and_then(|_| sys::fsync(&self.dir))
            .context("cannot sync the store directory")
    }

    /// The archive's manifest is published: from now on it is part of the store, removed
    /// only by a purge under the exclusive lock.
    pub fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for PendingArchive {
    fn drop(&mut self) {
        if !self.kept {
            let _ = crate::unlink::remove_store_file(self.dir.as_raw_fd(), &self.name);
        }
    }
}

impl Store {
    pub(super) fn subdir_fd(&self, name: &[u8]) -> Result<OwnedFd> {
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
        let tmp = self.subdir_fd(layout::TMP.as_bytes())?;
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
            let name = layout::temp_name(
                label.trim_start_matches('.'),
                std::process::id(),
                sys::random_u32(),
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
                            self.root.join(layout::TMP).display()
                        )
                    })
                }
            }
        }
        bail!(
            "cannot create a unique temp file in '{}'",
            self.root.join(layout::TMP).display()
        )
    }

    /// Remove a temp file after a failure (best effort: the caller is already failing).
    pub fn discard_temp(&self, name: &CString) {
        if let Ok(tmp) = self.subdir_fd(layout::TMP.as_bytes()) {
            let _ = crate::unlink::remove_store_file(tmp.as_raw_fd(), name);
        }
    }

    /// `<kind>/<month>/`, created (durably) on first use.
    pub(super) fn month_dir(&self, kind: &str, month: &str) -> Result<OwnedFd> {
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
        let dir = self.month_dir(layout::ARCHIVES, month)?;
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
                self.root.join(layout::ARCHIVES).join(month).display()
            )
        })?;
        Ok(PendingArchive {
            file: Some(File::from(fd)),
            dir,
            name: cname,
            rel: layout::rel(layout::ARCHIVES, month, name),
            kept: false,
        })
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
        if ![kind, month, file_name]
            .iter()
            .all(|c| layout::safe_component(c))
        {
            bail!("'{kind}/{month}/{file_name}' is not a name inside the store");
        }
        let month_fd = self.month_dir(kind, month)?;
        let tmp = self.subdir_fd(layout::TMP.as_bytes())?;
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
        Ok(layout::rel(kind, month, file_name))
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

    /// The journal of a restore from deletion `id`, `restoring/<id>`: what it held already
    /// (an earlier run that was killed wrote it; at most 16 MiB are read) and the file open
    /// for appending. Opened without following a link and without blocking, and it must be a
    /// regular file. Not synced: it is there for a run that was killed, not a power cut.
    pub fn open_restore_journal(&self, id: &str) -> Result<(Vec<u8>, File)> {
        if !layout::safe_component(id) {
            bail!("'{id}' is not a deletion id");
        }
        let dir = sys::cstr(layout::RESTORING.as_bytes())?;
        sys::mkdirat_exist_ok(self.fd(), &dir, 0o700)?;
        let dir = self.subdir_fd(layout::RESTORING.as_bytes())?;
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
        .with_context(|| {
            format!(
                "cannot open '{}'",
                self.root.join(layout::RESTORING).display()
            )
        })?;
        if !sys::fstat(fd.as_raw_fd())?.is_file() {
            bail!(
                "'{}/{id}' in the store is not a regular file",
                layout::RESTORING
            );
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
        if !layout::safe_component(id) {
            return;
        }
        if let (Ok(dir), Ok(name)) = (
            self.subdir_fd(layout::RESTORING.as_bytes()),
            sys::cstr(id.as_bytes()),
        ) {
            let _ = remove_if_present(dir.as_raw_fd(), &name);
        }
    }

    /// Read a small cache file in the store's root (None if missing or unreadable, or not
    /// a regular file of at most [`SMALL_FILE_MAX`] bytes).
    pub fn read_cache(&self, name: &str) -> Option<Vec<u8>> {
        self.read_cache_up_to(name, SMALL_FILE_MAX)
    }

    /// [`Store::read_cache`] of a cache that may be larger (the listing cache).
    pub fn read_cache_up_to(&self, name: &str, limit: u64) -> Option<Vec<u8>> {
        if !layout::safe_component(name) {
            return None;
        }
        sys::read_regular(self.fd(), &sys::cstr(name.as_bytes()).ok()?, false, limit).ok()
    }

    /// Replace a small cache file in the store's root atomically (temp file, rename over
    /// it), without fsync: a cache lost in a crash is only recomputed.
    pub fn write_cache(&self, name: &str, content: &[u8]) -> Result<()> {
        self.write_cache_with(name, &mut |w| Ok(w.write_all(content)?))
    }

    /// [`Store::write_cache`] of a cache that `write` writes out (the listing cache, too
    /// large to be held whole).
    pub fn write_cache_with(
        &self,
        name: &str,
        write: &mut dyn FnMut(&mut dyn io::Write) -> Result<()>,
    ) -> Result<()> {
        if !layout::safe_component(name) {
            bail!("bad cache file name '{name}'");
        }
        let (tmp_name, file) = self.create_temp(name.as_bytes())?;
        let written = (|| -> Result<()> {
            let mut w = io::BufWriter::new(file);
            write(&mut w)?;
            io::Write::flush(&mut w)?;
            Ok(())
        })();
        let tmp = self.subdir_fd(layout::TMP.as_bytes())?;
        let cname = sys::cstr(name.as_bytes())?;
        let renamed = written.and_then(|()| {
            let root = self.fd();
            // The store's own small file (a cache in its root), replaced whole.
            #[allow(clippy::disallowed_methods)]
            let renamed = rustix::fs::renameat(
                &tmp,
                tmp_name.as_c_str(),
                sys::borrow(&root)?,
                cname.as_c_str(),
            );
            Ok(renamed?)
        });
        if let Err(e) = renamed {
            self.discard_temp(&tmp_name);
            return Err(e)
                .with_context(|| format!("cannot write '{}'", self.root.join(name).display()));
        }
        Ok(())
    }
}

/// Remove a store file; one that is already gone is fine.
pub(super) fn remove_if_present(dirfd: RawFd, name: &std::ffi::CStr) -> io::Result<()> {
    match crate::unlink::remove_store_file(dirfd, name) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        other => other,
    }
}
