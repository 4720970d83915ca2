//! The catalog: every deletion in the store, read from its manifest, newest first, with the
//! "restored" note `unrm` leaves beside it.
//!
//! The manifest stays the immutable source of truth; a restore writes a small sidecar
//! `manifests/YYYY-MM/<id>.restored.json` next to it instead of rewriting it.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::manifest::{Manifest, PathBytes};
use crate::store::Store;
use crate::sys;

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

/// One deletion.
#[derive(Clone, Debug)]
pub struct Deletion {
    pub manifest: Manifest,
    /// The month directory the manifest is filed under.
    pub month: String,
    pub restored: Option<Restored>,
}

impl Deletion {
    pub fn id(&self) -> &str {
        &self.manifest.id
    }

    /// The manifest's path relative to the store.
    pub fn manifest_rel(&self) -> String {
        format!("manifests/{}/{}.json", self.month, self.manifest.id)
    }

    /// Paths of the top objects of the deletion: entries whose parent is not an entry.
    /// (An operand's recorded absolute path is not always an entry: `rm -r link/` removes
    /// only what is inside the directory.)
    pub fn roots(&self) -> Vec<Vec<u8>> {
        let paths: Vec<Vec<u8>> = self
            .manifest
            .entries
            .iter()
            .filter_map(|e| e.path.bytes())
            .collect();
        let set: std::collections::HashSet<&[u8]> = paths.iter().map(|p| p.as_slice()).collect();
        paths
            .iter()
            .filter(|p| !set.contains(crate::restore::split_parent(p).0))
            .cloned()
            .collect()
    }
}

/// A file in `manifests/` that could not be read as a manifest.
#[derive(Clone, Debug)]
pub struct Unreadable {
    pub path: PathBuf,
    pub reason: String,
}

/// Every deletion, newest first.
pub struct Catalog {
    pub deletions: Vec<Deletion>,
    pub unreadable: Vec<Unreadable>,
}

/// How an id prefix matched.
pub enum IdMatch {
    None,
    One(usize),
    Several(Vec<usize>),
}

impl Catalog {
    pub fn load(store: &Store) -> Result<Catalog> {
        let dir = store.root().join("manifests");
        let mut deletions = Vec::new();
        let mut unreadable = Vec::new();
        for (month, path) in manifest_files(&dir)? {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let Some(id) = name.strip_suffix(".json") else {
                continue;
            };
            if id.ends_with(".restored") {
                continue;
            }
            let parsed = std::fs::read(&path)
                .map_err(anyhow::Error::new)
                .and_then(|b| Manifest::from_json(&b));
            match parsed {
                Ok(manifest) => {
                    let restored =
                        std::fs::read(dir.join(&month).join(format!("{id}.restored.json")))
                            .ok()
                            .and_then(|b| serde_json::from_slice(&b).ok());
                    deletions.push(Deletion {
                        manifest,
                        month,
                        restored,
                    });
                }
                Err(e) => unreadable.push(Unreadable {
                    path,
                    reason: format!("{e:#}"),
                }),
            }
        }
        // Ids start with the UTC time to the nanosecond: they sort by age.
        deletions.sort_by(|a, b| b.manifest.id.cmp(&a.manifest.id));
        Ok(Catalog {
            deletions,
            unreadable,
        })
    }

    /// The deletion whose id is `prefix` or starts with it.
    pub fn find_id(&self, prefix: &str) -> IdMatch {
        if prefix.is_empty() {
            return IdMatch::None;
        }
        if let Some(i) = self.deletions.iter().position(|d| d.id() == prefix) {
            return IdMatch::One(i);
        }
        let hits: Vec<usize> = self
            .deletions
            .iter()
            .enumerate()
            .filter(|(_, d)| d.id().starts_with(prefix))
            .map(|(i, _)| i)
            .collect();
        match hits.len() {
            0 => IdMatch::None,
            1 => IdMatch::One(hits[0]),
            _ => IdMatch::Several(hits),
        }
    }
}

/// `(month, path)` of every `*.json` under `manifests/<month>/`.
pub fn manifest_files(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    let months = match std::fs::read_dir(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).with_context(|| format!("cannot read '{}'", dir.display())),
    };
    for month in months {
        let month = month.with_context(|| format!("cannot read '{}'", dir.display()))?;
        if !month.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let mname = month.file_name().to_string_lossy().into_owned();
        let files = std::fs::read_dir(month.path())
            .with_context(|| format!("cannot read '{}'", month.path().display()))?;
        for f in files {
            let f = f.with_context(|| format!("cannot read '{}'", month.path().display()))?;
            if f.file_name().to_string_lossy().ends_with(".json") {
                out.push((mname.clone(), f.path()));
            }
        }
    }
    Ok(out)
}

/// Record that `deletion` was restored. The first restore's note is kept: the sidecar is
/// published without replacing, like every store file.
pub fn mark_restored(store: &Store, deletion: &Deletion, note: &Restored) -> Result<()> {
    let name = format!("{}.restored.json", deletion.id());
    let existing = store
        .root()
        .join("manifests")
        .join(&deletion.month)
        .join(&name);
    if std::fs::symlink_metadata(&existing).is_ok() {
        return Ok(());
    }
    let (tmp, mut file) = store.create_temp(name.as_bytes())?;
    let written = (|| -> Result<()> {
        file.write_all(&serde_json::to_vec(note)?)?;
        sys::fsync(&file)?;
        Ok(())
    })();
    if let Err(e) = written {
        store.discard_temp(&tmp);
        return Err(e);
    }
    if let Err(e) = store.publish(&tmp, "manifests", &deletion.month, &name) {
        store.discard_temp(&tmp);
        return Err(e);
    }
    Ok(())
}
