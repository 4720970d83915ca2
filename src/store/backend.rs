//! What the layers above ask of a store: the narrow [`Backend`] interface, and [`Store`] (a
//! directory on a local filesystem) as its first implementation.
//!
//! The archive pipeline (`archive::run`), the kept and restored notes (`catalog`) and the
//! restore (its reads of an archive, its journal) go through it, and through nothing else
//! of the store; a second backend (an S3-compatible bucket, say) is then an
//! implementation of this trait. What it hands out is local: an archive is written into a
//! [`PendingArchive`] (a file the pipeline reads back to verify; a remote backend stages it
//! locally and uploads it when it is kept), and read as a [`File`] with ranged reads
//! (`FileExt::read_at`; a remote backend downloads, or reads ranges into, a local cache).
//! Listing and maintenance still use [`Store`] itself: the catalog reads `manifests/` with
//! its listing cache, and check, repair and retention handle what only a filesystem has
//! (temp files, orphans, set-aside archives).
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
