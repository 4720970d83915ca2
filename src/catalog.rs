//! The catalog: every deletion in the store, read from its manifest, newest first, with the
//! "restored" note `unrm` leaves beside it.
//!
//! The manifest stays the immutable source of truth; a restore writes a small sidecar next
//! to it instead of rewriting it: `manifests/YYYY-MM/<id>.restored.json` when everything
//! the deletion holds was put back, `<id>.restored-part.json` when only part of it was.
//! saferm leaves one too when a removal failed after archiving (an immutable file, an
//! append-only directory): `<id>.kept-part.json` lists what is still in place, which no
//! answer counts as deleted; `<id>.kept.json` says nothing was removed (the deletion could
//! not be withdrawn at once), and the catalog leaves such a deletion out.
//!
//! Listing must stay fast with 10,000 deletions, so `--list` reads [`Header`]s (a manifest
//! without its entries) from `index.jsonl` in the store, a cache rebuilt from the manifests:
//! the manifest directories are listed on every run, headers of manifests the cache does
//! not know are read from them, and headers of manifests that are gone are dropped. Losing
//! or damaging the cache costs one slow listing, nothing more.

use std::path::PathBuf;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::manifest::{ArchiveInfo, Manifest, Operand, PathBytes, Totals};
use crate::store::layout::{self, INDEX, KEPT_ALL, KEPT_PART};
use crate::store::Backend;

/// What the sidecar says about a restore.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Restored {
    /// RFC 3339, UTC.
    pub at: String,
    /// Where the targets went.
    pub to: Vec<PathBytes>,
    /// Objects restored.
    pub objects: u64,
    /// Whether everything the deletion holds was restored without a failure.
    pub complete: bool,
}

/// What saferm's note says stayed in place of a deletion (`<id>.kept-part.json`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kept {
    /// Absolute paths of the objects archived but not removed.
    pub kept: Vec<PathBytes>,
}

/// One deletion, its manifest read in full.
#[derive(Clone, Debug)]
pub struct Deletion {
    pub manifest: Manifest,
    /// The month directory the manifest is filed under.
    pub month: String,
    /// Entries archived but never removed (they are still in place): not part of what
    /// the deletion holds for listing or restoring.
    pub kept: std::collections::HashSet<Vec<u8>>,
}

impl Deletion {
    pub fn id(&self) -> &str {
        &self.manifest.id
    }

    /// Paths of the top objects of the deletion: entries whose parent is not an entry.
    /// (An operand's recorded absolute path is not always an entry: `rm -r link/` removes
    /// only what is inside the directory.)
    pub fn roots(&self) -> Vec<Vec<u8>> {
        let paths: Vec<Vec<u8>> = self.removed().filter_map(|e| e.path.bytes()).collect();
        let set: std::collections::HashSet<&[u8]> = paths.iter().map(|p| p.as_slice()).collect();
        paths
            .iter()
            .filter(|p| !set.contains(crate::paths::split_parent(p).0))
            .cloned()
            .collect()
    }
}

impl Deletion {
    /// The entries of what was removed: all but those saferm had to leave in place.
    pub fn removed(&self) -> impl Iterator<Item = &crate::manifest::Entry> + '_ {
        self.manifest.entries.iter().filter(move |e| {
            self.kept.is_empty() || e.path.bytes().is_none_or(|p| !self.kept.contains(&p))
        })
    }
}

/// A file in `manifests/` that could not be read as a manifest.
#[derive(Clone, Debug)]
pub struct Unreadable {
    pub path: PathBuf,
    pub reason: String,
}

/// Every deletion, newest first: headers up front (from the cache), full manifests read on
/// first use, so that restoring something deleted recently reads few manifests.
pub struct Catalog<'s> {
    store: &'s dyn Backend,
    pub headers: Vec<Header>,
    /// Manifests whose header could not be read.
    pub unreadable: Vec<Unreadable>,
    loaded: Vec<std::cell::OnceCell<Result<Deletion, String>>>,
}

/// How an id prefix matched.
pub enum IdMatch {
    None,
    One(usize),
    Several(Vec<usize>),
}

impl<'s> Catalog<'s> {
    pub fn open(store: &'s dyn Backend) -> Result<Catalog<'s>> {
        let (mut headers, unreadable) = headers(store)?;
        // Nothing of these was removed: not deletions.
        headers.retain(|h| !h.kept);
        let loaded = headers.iter().map(|_| std::cell::OnceCell::new()).collect();
        Ok(Catalog {
            store,
            headers,
            unreadable,
            loaded,
        })
    }

    pub fn len(&self) -> usize {
        self.headers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.headers.is_empty()
    }

    pub fn id(&self, i: usize) -> &str {
        &self.headers[i].id
    }

    /// Deletion `i` with its full manifest, read now if it was not yet.
    pub fn load(&self, i: usize) -> Result<&Deletion, String> {
        self.loaded[i]
            .get_or_init(|| {
                let h = &self.headers[i];
                // A note that cannot be read keeps nothing out: the restore then meets
                // those objects in place, identical or in conflict, and says so.
                let kept = if h.partly_kept {
                    let note = layout::kept_note_name(&h.id, false);
                    self.store
                        .read_manifest(&h.month, &note)
                        .ok()
                        .and_then(|b| serde_json::from_slice::<Kept>(&b).ok())
                        .map(|k| k.kept.iter().filter_map(PathBytes::bytes).collect())
                        .unwrap_or_default()
                } else {
                    Default::default()
                };
                self.store
                    .read_manifest(&h.month, &layout::manifest_name(&h.id))
                    .and_then(|b| Manifest::from_json(&b))
                    .and_then(|manifest| {
                        // Its id names the notes written beside it: it must be the one
                        // its file name gives.
                        if manifest.id != h.id {
                            anyhow::bail!("it is the manifest of {}", manifest.id);
                        }
                        Ok(manifest)
                    })
                    .map(|manifest| Deletion {
                        manifest,
                        month: h.month.clone(),
                        kept,
                    })
                    .map_err(|e| {
                        let name = layout::manifest_name(&h.id);
                        let path = self.store.manifest_location(&h.month, &name);
                        format!("cannot read '{}': {e:#}", path.display())
                    })
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Deletion `i` when its manifest can be read (a damaged one is left to --check).
    pub fn get(&self, i: usize) -> Option<&Deletion> {
        self.load(i).ok()
    }

    /// `(month, id)` of every manifest found damaged so far: those whose header could not
    /// be read, and those whose full read failed since ([`crate::check::heal_manifests`]
    /// rebuilds them).
    pub fn damaged(&self) -> Vec<(String, String)> {
        let unreadable = self.unreadable.iter().filter_map(|u| {
            let month = u.path.parent()?.file_name()?.to_str()?;
            let id = u
                .path
                .file_name()?
                .to_str()?
                .strip_suffix(layout::MANIFEST_SUFFIX)?;
            Some((month.to_string(), id.to_string()))
        });
        let failed = self
            .loaded
            .iter()
            .zip(&self.headers)
            .filter(|(cell, _)| cell.get().is_some_and(|r| r.is_err()))
            .map(|(_, h)| (h.month.clone(), h.id.clone()));
        unreadable.chain(failed).collect()
    }

    /// The deletion whose id is `prefix` or starts with it.
    pub fn find_id(&self, prefix: &str) -> IdMatch {
        if prefix.is_empty() {
            return IdMatch::None;
        }
        if let Some(i) = self.headers.iter().position(|h| h.id == prefix) {
            return IdMatch::One(i);
        }
        let hits: Vec<usize> = self
            .headers
            .iter()
            .enumerate()
            .filter(|(_, h)| h.id.starts_with(prefix))
            .map(|(i, _)| i)
            .collect();
        match hits.len() {
            0 => IdMatch::None,
            1 => IdMatch::One(hits[0]),
            _ => IdMatch::Several(hits),
        }
    }
}

/// A short id (`unrm --list`, completion) has at least this many bytes: `YYYYMMDD`, then as
/// much as it takes.
pub const SHORT_ID_MIN: usize = 8;

/// The shortest prefix of each of `ids` that no other of them starts with, of at least
/// `min` bytes (or the whole id), as [`Catalog::find_id`] resolves it: one byte past the
/// longest start it shares with another id. An id that is the start of another is its own
/// short form (an exact id wins there). Ids are ASCII ([`crate::store::id`]); any that is
/// not is left whole.
pub fn unique_prefixes<'a>(ids: &[&'a str], min: usize) -> Vec<&'a str> {
    let mut order: Vec<usize> = (0..ids.len()).collect();
    order.sort_by(|&a, &b| ids[a].cmp(ids[b]));
    let shared = |a: &str, b: &str| a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
    let mut need = vec![0usize; ids.len()];
    for pair in order.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        let n = shared(ids[a], ids[b]) + 1;
        need[a] = need[a].max(n);
        need[b] = need[b].max(n);
    }
    ids.iter()
        .zip(need)
        .map(|(id, n)| id.get(..n.max(min)).unwrap_or(id))
        .collect()
}

/// Record that `deletion` was restored (in part). The first note of each kind is kept: the
/// sidecar is published without replacing, like every store file.
pub fn mark_restored(store: &dyn Backend, deletion: &Deletion, note: &Restored) -> Result<()> {
    crate::store::id::DeletionId::parse(deletion.id())?;
    let name = layout::restored_note_name(deletion.id(), note.complete);
    store.put_note(&deletion.month, &name, &serde_json::to_vec(note)?)?;
    Ok(())
}

/// Note that `kept` (absolute paths) of deletion `id` were archived but are still in place;
/// `all` when nothing of it was removed. Written durably, never replacing.
pub fn mark_kept(
    store: &dyn Backend,
    month: &str,
    id: &str,
    kept: &[Vec<u8>],
    all: bool,
) -> Result<()> {
    let name = layout::kept_note_name(id, all);
    let note = Kept {
        kept: kept.iter().map(|p| PathBytes::new(p)).collect(),
    };
    store.put_note(month, &name, &serde_json::to_vec(&note)?)?;
    Ok(())
}

/// What `--list` shows of a deletion: its manifest without the entries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// Checked as it is read ([`crate::store::id`]): the cache may be damaged.
    #[serde(deserialize_with = "crate::store::id::deserialize")]
    pub id: String,
    /// The month directory (not in the manifest: filled in from where it was found).
    #[serde(default)]
    pub month: String,
    pub created: String,
    pub cwd: PathBytes,
    /// The command it is part of, when that made more than one deletion (the manifest's).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub run: Option<String>,
    pub operands: Vec<Operand>,
    pub totals: Totals,
    #[serde(default)]
    pub archive: Option<ArchiveInfo>,
    /// Whether everything it holds was restored (from the names beside the manifest).
    #[serde(skip)]
    pub restored: bool,
    /// Whether part of it was restored.
    #[serde(skip)]
    pub partly_restored: bool,
    /// Whether nothing of it was removed (saferm's `<id>.kept.json`).
    #[serde(skip)]
    pub kept: bool,
    /// Whether part of what it archived is still in place (`<id>.kept-part.json`).
    #[serde(skip)]
    pub partly_kept: bool,
}

/// Every deletion's header, newest first, through the `index.jsonl` cache; and the
/// manifests whose header could not be read.
pub fn headers(store: &dyn Backend) -> Result<(Vec<Header>, Vec<Unreadable>)> {
    // id -> (month, (restored, partly restored))
    let mut present: std::collections::HashMap<String, (String, (bool, bool))> = Default::default();
    let mut notes: Vec<(String, bool)> = Vec::new();
    // id -> whether nothing was removed (else part of it was kept)
    let mut kept: std::collections::HashMap<String, bool> = Default::default();
    for (month, name) in store.manifest_names()? {
        let Some(stem) = name.strip_suffix(layout::MANIFEST_SUFFIX) else {
            continue;
        };
        // A name no deletion can have is not part of the layout.
        let stem_id = name
            .strip_suffix(layout::RESTORED)
            .or_else(|| name.strip_suffix(layout::RESTORED_PART))
            .unwrap_or(stem);
        if !crate::store::id::is_valid(stem_id) {
            continue;
        }
        if let Some(id) = name.strip_suffix(layout::RESTORED) {
            notes.push((id.to_string(), true));
        } else if let Some(id) = name.strip_suffix(layout::RESTORED_PART) {
            notes.push((id.to_string(), false));
        } else if let Some(id) = name.strip_suffix(KEPT_ALL) {
            kept.insert(id.to_string(), true);
        } else if let Some(id) = name.strip_suffix(KEPT_PART) {
            kept.entry(id.to_string()).or_insert(false);
        } else if let Some(id) = name.strip_suffix(layout::MANIFEST_SUFFIX) {
            present.insert(id.to_string(), (month, (false, false)));
        }
    }
    for (id, complete) in notes {
        if let Some(p) = present.get_mut(&id) {
            if complete {
                p.1 .0 = true;
            } else {
                p.1 .1 = true;
            }
        }
    }
    let kept_of = |h: &mut Header| match kept.get(&h.id) {
        Some(&all) => (h.kept, h.partly_kept) = (all, !all),
        None => (h.kept, h.partly_kept) = (false, false),
    };
    let mut out: Vec<Header> = Vec::with_capacity(present.len());
    let mut seen: std::collections::HashSet<String> = Default::default();
    let cached = store
        .read_cache(INDEX, crate::store::MANIFEST_MAX)
        .unwrap_or_default();
    for line in cached.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let Ok(mut h) = serde_json::from_slice::<Header>(line) else {
            continue;
        };
        match present.get(&h.id) {
            Some((month, (all, part))) if *month == h.month && seen.insert(h.id.clone()) => {
                (h.restored, h.partly_restored) = (*all, *part);
                kept_of(&mut h);
                out.push(h);
            }
            _ => {}
        }
    }
    let cached_count = out.len();
    let mut unreadable = Vec::new();
    for (id, (month, (all, part))) in &present {
        if seen.contains(id) {
            continue;
        }
        let name = layout::manifest_name(id);
        let path = store.manifest_location(month, &name);
        // A manifest that cannot be read is left out (and reported by --check).
        let parsed = store
            .read_manifest(month, &name)
            .and_then(|b| serde_json::from_slice::<Header>(&b).map_err(anyhow::Error::new));
        let mut h = match parsed {
            Ok(h) if h.id == *id => h,
            Ok(h) => {
                unreadable.push(Unreadable {
                    path,
                    reason: format!("it is the manifest of {}", h.id),
                });
                continue;
            }
            Err(e) => {
                unreadable.push(Unreadable {
                    path,
                    reason: format!("{e:#}"),
                });
                continue;
            }
        };
        h.month = month.clone();
        (h.restored, h.partly_restored) = (*all, *part);
        kept_of(&mut h);
        out.push(h);
    }
    out.sort_by(|a, b| b.id.cmp(&a.id));
    if out.len() != cached_count || cached_count != cached.iter().filter(|&&b| b == b'\n').count() {
        // Best effort: a cache that cannot be written only makes the next listing slower.
        let _ = write_index(store, &out);
    }
    Ok((out, unreadable))
}

/// Replace `index.jsonl` whole (no fsync: it is a cache).
fn write_index(store: &dyn Backend, headers: &[Header]) -> Result<()> {
    store.write_cache(INDEX, &mut |w| {
        for h in headers {
            serde_json::to_writer(&mut *w, h)?;
            w.write_all(b"\n")?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::unique_prefixes;

    #[test]
    fn short_ids_go_one_past_what_they_share() {
        let ids = [
            "20260610T120000.1Z-1-a",
            "20260610T120005.2Z-1-b",
            "20260609T080000.3Z-1-c",
            "20260610T120005.25Z-1-d",
        ];
        assert_eq!(
            unique_prefixes(&ids, 8),
            [
                "20260610T120000",
                "20260610T120005.2Z",
                "20260609",
                "20260610T120005.25"
            ]
        );
        assert_eq!(unique_prefixes(&["20260610T1"], 8), ["20260610"]);
        assert_eq!(unique_prefixes(&["short"], 8), ["short"]);
        // An id that starts another is shown whole; the other goes past it.
        assert_eq!(
            unique_prefixes(&["abcdefghij", "abcdefghijk"], 8),
            ["abcdefghij", "abcdefghijk"]
        );
        assert!(unique_prefixes(&[], 8).is_empty());
    }
}
