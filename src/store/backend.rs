//! What the layers above ask of a store: the narrow [`Backend`] interface, and [`Store`] (a
//! directory on a local filesystem) as its first implementation.
//!
//! The archive pipeline (`archive::run`), the catalog (listing and reading manifests, its
//! listing cache, the kept and restored notes) and the restore (its reads of an archive,
//! its journal) go through it, and through nothing else of the store; a second backend (an S3-compatible bucket, say) is then an
//! implementation of this trait. What it hands out is local: an archive is written into a
//! [`PendingArchive`] (a file the pipeline reads back to verify; a remote backend stages it
//! locally and uploads it when it is kept), and read as a [`File`] with ranged reads
//! (`FileExt::read_at`; a remote backend downloads, or reads ranges into, a local cache).
//! Maintenance still uses [`Store`] itself: check, repair and retention handle what only a
//! filesystem has (temp files, orphans, set-aside archives, the stats of every archive).
//!
//! Every method keeps the rules of [`Store`]'s doc comment: nothing published is replaced,
//! removal needs the exclusive lock, nothing is reached through a link.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use anyhow::Result;

use super::{layout, LockGuard, PendingArchive, PurgeTarget, Scan, Store};

/// A store of deletions: archives, their manifests and the notes beside them, a lock, and
/// the room left. Names are deletion ids and the months they are filed under
/// ([`super::month_of`]); where an object lives is the backend's own business.
pub trait Backend: Sync {
    /// Where the store is, as a person should see it in a message.
    fn location(&self) -> &Path;

    /// The lock, shared (writers and restores) or `exclusive` (collection and repair). When
    /// another process holds it, `waiting` is told who, once; the wait ends with an error
    /// when a signal is caught.
    fn lock(&self, exclusive: bool, waiting: &mut dyn FnMut(&str)) -> Result<LockGuard>;

    /// The lock exclusively, only if nobody holds it (`None` otherwise): automatic
    /// retention never makes anyone wait.
    fn try_lock_exclusive(&self) -> Result<Option<LockGuard>>;

    /// A new archive for deletion `id`, filed under `month`; removed when dropped before
    /// [`PendingArchive::keep`].
    fn create_archive(&self, month: &str, id: &str) -> Result<PendingArchive>;

    /// The archive at `rel` (as a manifest records it) for reading, ranges included.
    fn open_archive(&self, rel: &str) -> Result<File>;

    /// Publish deletion `id`'s manifest under `month`, its JSON written by `write`; never
    /// replacing one. It needs no fsync: a manifest lost to a crash is rebuilt from the copy
    /// in its durable archive.
    fn publish_manifest(
        &self,
        month: &str,
        id: &str,
        write: &mut dyn FnMut(&mut dyn Write) -> Result<()>,
    ) -> Result<()>;

    /// Put the note `name` (a restored or a kept note, named by [`layout`]) beside the
    /// manifests of `month`, durably and never replacing one; `false` when it was already
    /// there.
    fn put_note(&self, month: &str, name: &str, content: &[u8]) -> Result<bool>;

    /// The journal of a restore from deletion `id`: what an earlier run that was killed
    /// wrote in it, and the journal open for appending (not synced: it is there for a run
    /// that was killed, not a power cut).
    fn open_restore_journal(&self, id: &str) -> Result<(Vec<u8>, File)>;

    /// Remove the journal of a restore from deletion `id` (best effort).
    fn remove_restore_journal(&self, id: &str);

    /// `(month, file name)` of every manifest and note (`*.json`) filed under a month.
    fn manifest_names(&self) -> Result<Vec<(String, String)>>;

    /// The manifest or note `name` filed under `month`: a regular file, not reached through
    /// a link, of at most [`super::MANIFEST_MAX`] bytes.
    fn read_manifest(&self, month: &str, name: &str) -> Result<Vec<u8>>;

    /// Where the manifest or note `name` of `month` is, as a person should see it.
    fn manifest_location(&self, month: &str, name: &str) -> std::path::PathBuf;

    /// The cache `name` (the listing cache), if it can be read: at most `limit` bytes.
    fn read_cache(&self, name: &str, limit: u64) -> Option<Vec<u8>>;

    /// Replace the cache `name` whole with what `write` writes (not synced: a cache lost in
    /// a crash is only recomputed).
    fn write_cache(
        &self,
        name: &str,
        write: &mut dyn FnMut(&mut dyn Write) -> Result<()>,
    ) -> Result<()>;

    /// What the store holds: its archives and manifests, by id.
    fn list(&self) -> Result<Scan>;

    /// Remove these deletions (manifest, notes, archive), crash-safely, under the exclusive
    /// `lock`.
    fn remove(&self, lock: &LockGuard, targets: &[PurgeTarget]) -> Result<()>;

    /// Bytes free for new archives.
    fn free_bytes(&self) -> Result<u64>;

    /// The size of what the store is kept on (for limits given as a percentage).
    fn size_bytes(&self) -> Result<u64>;
}

impl Backend for Store {
    fn location(&self) -> &Path {
        self.root()
    }

    fn lock(&self, exclusive: bool, waiting: &mut dyn FnMut(&str)) -> Result<LockGuard> {
        if exclusive {
            self.lock_exclusive_patiently(waiting)
        } else {
            self.lock_shared_patiently(waiting)
        }
    }

    fn try_lock_exclusive(&self) -> Result<Option<LockGuard>> {
        Store::try_lock_exclusive(self)
    }

    fn create_archive(&self, month: &str, id: &str) -> Result<PendingArchive> {
        Store::create_archive(self, month, &layout::archive_name(id))
    }

    fn open_archive(&self, rel: &str) -> Result<File> {
        self.open_published(rel)
    }

    fn publish_manifest(
        &self,
        month: &str,
        id: &str,
        write: &mut dyn FnMut(&mut dyn Write) -> Result<()>,
    ) -> Result<()> {
        let name = layout::manifest_name(id);
        let (tmp, mut file) = self.create_temp(name.as_bytes())?;
        let published = write(&mut file).and_then(|()| {
            self.publish(&tmp, layout::MANIFESTS, month, &name)
                .map(|_| ())
        });
        if published.is_err() {
            self.discard_temp(&tmp);
        }
        published
    }

    fn put_note(&self, month: &str, name: &str, content: &[u8]) -> Result<bool> {
        let existing = self.root().join(layout::MANIFESTS).join(month).join(name);
        if std::fs::symlink_metadata(existing).is_ok() {
            return Ok(false);
        }
        self.publish_new(layout::MANIFESTS, month, name, content)?;
        Ok(true)
    }

    fn open_restore_journal(&self, id: &str) -> Result<(Vec<u8>, File)> {
        Store::open_restore_journal(self, id)
    }

    fn remove_restore_journal(&self, id: &str) {
        Store::remove_restore_journal(self, id)
    }

    fn manifest_names(&self) -> Result<Vec<(String, String)>> {
        let mut names = self.month_files(layout::MANIFESTS)?;
        names.retain(|(_, name)| name.ends_with(layout::MANIFEST_SUFFIX));
        Ok(names)
    }

    fn read_manifest(&self, month: &str, name: &str) -> Result<Vec<u8>> {
        if !layout::safe_component(month) || !layout::safe_component(name) {
            anyhow::bail!("'{month}/{name}' is not a name inside the store");
        }
        let path = self.manifest_location(month, name);
        Ok(crate::sys::read_regular_path(
            &path,
            false,
            super::MANIFEST_MAX,
        )?)
    }

    fn manifest_location(&self, month: &str, name: &str) -> std::path::PathBuf {
        self.root().join(layout::MANIFESTS).join(month).join(name)
    }

    fn read_cache(&self, name: &str, limit: u64) -> Option<Vec<u8>> {
        self.read_cache_up_to(name, limit)
    }

    fn write_cache(
        &self,
        name: &str,
        write: &mut dyn FnMut(&mut dyn Write) -> Result<()>,
    ) -> Result<()> {
        self.write_cache_with(name, write)
    }

    fn list(&self) -> Result<Scan> {
        self.scan()
    }

    fn remove(&self, lock: &LockGuard, targets: &[PurgeTarget]) -> Result<()> {
        self.purge_deletions(lock, targets)
    }

    fn free_bytes(&self) -> Result<u64> {
        Store::free_bytes(self)
    }

    fn size_bytes(&self) -> Result<u64> {
        self.fs_bytes()
    }
}
