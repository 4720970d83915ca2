//! The names of the store's objects: the one place that spells them (DESIGN §8). Every
//! other module, inside the store and out, builds and recognises store names through these
//! constants and functions, so that the layout can be read, and changed, here alone.
//!
//! ```text
//! <store>/
//!   FORMAT                          "saferm-store 1"
//!   lock                            flock: shared for writers, exclusive for GC/repair
//!   tmp/<label>.<pid>.<8 hex>.tmp   manifests and indexes being written
//!   archives/YYYY-MM/<id>.tar.zst   0600
//!   archives/YYYY-MM/<id>.tar.zst.damaged   an orphan that could not be rebuilt, set aside
//!   manifests/YYYY-MM/<id>.json     0600
//!   manifests/YYYY-MM/<id>.purging  a purge in progress (see `Store::purge_deletions`)
//!   manifests/YYYY-MM/<id>.{restored,restored-part,kept,kept-part}.json   notes (`catalog`)
//!   index.jsonl, retention.json     caches (listing headers; the last retention check)
//!   restoring/<id>                  a restore from deletion <id> in progress (`crate::restore::resume`)
//! ```
//!
//! `<id>` is a [`crate::store::id`] (checked with `id::is_valid` wherever one is read back), and
//! `YYYY-MM` the month of its time ([`month_of`]).

use std::ffi::CStr;

/// The file that marks a directory as a store and gives its format version.
pub const FORMAT: &str = "FORMAT";
/// [`FORMAT`], for the `*at` calls.
pub const FORMAT_C: &CStr = c"FORMAT";
/// The file whose `flock` is the store's lock.
pub const LOCK: &str = "lock";
/// [`LOCK`], for the `*at` calls.
pub const LOCK_C: &CStr = c"lock";
/// Temp files being written, published from here by rename.
pub const TMP: &str = "tmp";
/// `archives/<month>/<id>.tar.zst`.
pub const ARCHIVES: &str = "archives";
/// `manifests/<month>/<id>.json` and the notes beside them.
pub const MANIFESTS: &str = "manifests";
/// The journals of restores in progress, `restoring/<id>`.
pub const RESTORING: &str = "restoring";
/// Deletions staged by instant mode and not archived yet: `staging/<id>/` holds
/// [`STAGED_ORIGIN`] and the operands themselves, renamed in whole as `0`, `1`, ...
pub const STAGING: &str = "staging";
/// Where a staged deletion came from (`staging/<id>/origin.json`).
pub const STAGED_ORIGIN: &str = "origin.json";
/// The deletion that holds a staging's objects, once published (`staging/<id>/published`):
/// what is left staged then is only to be unlinked.
pub const STAGED_PUBLISHED: &str = "published";
/// Made (durably) before a worker first archives a staging (`staging/<id>/attempted`): the
/// first attempt's deletion takes the staging's id; a later one, which may meet a partial
/// archive of that name, takes an id of its own.
pub const STAGED_ATTEMPTED: &str = "attempted";
/// The lock of the worker that archives staged deletions (`staging/.drain`).
pub const DRAIN_LOCK: &str = ".drain";
/// The cache of listing headers, in the store's root.
pub const INDEX: &str = "index.jsonl";
/// The cache of the last full retention check, in the store's root.
pub const RETENTION: &str = "retention.json";

/// What a store's creation makes before `FORMAT` (see `Store::open_waiving`), in order.
pub(super) const CREATION_DIRS: &[&str] = &[TMP, ARCHIVES, MANIFESTS];

/// The suffix of an archive file.
pub const ARCHIVE_SUFFIX: &str = ".tar.zst";
/// The suffix of a manifest file (and of the notes beside it).
pub const MANIFEST_SUFFIX: &str = ".json";
/// The note that everything a deletion holds was restored.
pub const RESTORED: &str = ".restored.json";
/// The note that part of what a deletion holds was restored.
pub const RESTORED_PART: &str = ".restored-part.json";
/// The note that nothing of a deletion was removed (saferm could not unlink any of it).
pub const KEPT_ALL: &str = ".kept.json";
/// The note listing what of a deletion is still in place.
pub const KEPT_PART: &str = ".kept-part.json";
/// The sidecar suffixes a deletion may have beside its manifest.
pub const SIDECARS: &[&str] = &[RESTORED, RESTORED_PART, KEPT_ALL, KEPT_PART];
/// The suffix of an archive without a manifest that could not be rebuilt, set aside.
pub const DAMAGED: &str = ".damaged";
/// The suffix of a purge marker, beside the manifest it dooms.
pub const PURGING: &str = ".purging";
/// The suffix of a temp file in `tmp/`.
pub const TEMP_SUFFIX: &str = ".tmp";
/// The label of the temp file `FORMAT` is written through.
pub const SMALL_LABEL: &str = "small";

/// The file name of the archive of deletion `id`.
pub fn archive_name(id: &str) -> String {
    format!("{id}{ARCHIVE_SUFFIX}")
}

/// The file name of the manifest of deletion `id`.
pub fn manifest_name(id: &str) -> String {
    format!("{id}{MANIFEST_SUFFIX}")
}

/// The file name of the purge marker of deletion `id`.
pub fn purge_marker_name(id: &str) -> String {
    format!("{id}{PURGING}")
}

/// The file name an orphan archive of deletion `id` is set aside under.
pub fn set_aside_archive_name(id: &str) -> String {
    format!("{}{DAMAGED}", archive_name(id))
}

/// Whether `name` is an archive set aside ([`set_aside_archive_name`]).
pub fn is_set_aside_archive(name: &str) -> bool {
    name.ends_with(&format!("{ARCHIVE_SUFFIX}{DAMAGED}"))
}

/// The file name of the note that deletion `id` was restored, whole (`complete`) or in part.
pub fn restored_note_name(id: &str, complete: bool) -> String {
    if complete {
        format!("{id}{RESTORED}")
    } else {
        format!("{id}{RESTORED_PART}")
    }
}

/// The file name of the note that deletion `id` was kept in place, whole (`all`) or in part.
pub fn kept_note_name(id: &str, all: bool) -> String {
    format!("{id}{}", if all { KEPT_ALL } else { KEPT_PART })
}

/// The name of a temp file in `tmp/`: a plain label, the writer's pid and randomness.
pub fn temp_name(label: &str, pid: u32, random: u32) -> String {
    format!("{label}.{pid}.{random:08x}{TEMP_SUFFIX}")
}

/// Whether `name` is the temp file of a `FORMAT` being written ([`SMALL_LABEL`]).
pub fn is_small_temp(name: &str) -> bool {
    name.starts_with(&format!("{SMALL_LABEL}.")) && name.ends_with(TEMP_SUFFIX)
}

/// The path relative to the store of `name` in month `month` of `kind` (`archives` or
/// `manifests`).
pub fn rel(kind: &str, month: &str, name: &str) -> String {
    format!("{kind}/{month}/{name}")
}

/// The path relative to the store of the archive of deletion `id`, filed under `month`.
pub fn archive_rel(month: &str, id: &str) -> String {
    rel(ARCHIVES, month, &archive_name(id))
}

/// The path relative to the store of the manifest of deletion `id`, filed under `month`.
pub fn manifest_rel(month: &str, id: &str) -> String {
    rel(MANIFESTS, month, &manifest_name(id))
}

/// The month directory an id is filed under.
pub fn month_of(now: chrono::DateTime<chrono::Utc>) -> String {
    now.format("%Y-%m").to_string()
}

/// A store path component that is safe to use as a name: not empty, no `/`, not a dot name.
pub fn safe_component(s: &str) -> bool {
    !s.is_empty() && !s.contains('/') && !s.starts_with('.') && !s.contains('\0')
}
