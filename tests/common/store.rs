//! Looking into a store from outside: its files, and its deletions as unrm lists them.

use std::fs;
use std::path::{Path, PathBuf};

use super::{unrm_ok, Sandbox};

/// Every object below `dir` that is not a directory, sorted; symlinks are listed, not
/// followed. A missing `dir` has none.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() && !p.is_symlink() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The files below `store/archives`, sorted (oldest month and deletion first).
pub fn archives(store: &Path) -> Vec<PathBuf> {
    files_under(&store.join("archives"))
}

/// The files below `store/manifests` (manifests and restore notes), sorted.
pub fn manifests(store: &Path) -> Vec<PathBuf> {
    files_under(&store.join("manifests"))
}

/// Rewrite the manifest (or other JSON file) at `path` with `edit`.
pub fn edit_manifest(path: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut v: serde_json::Value =
        serde_json::from_slice(&fs::read(path).expect("read manifest")).expect("json");
    edit(&mut v);
    fs::write(path, serde_json::to_vec(&v).expect("json")).expect("write manifest");
}

/// The deletions in the store, newest first, from `unrm --list --json`.
pub fn deletions(sb: &Sandbox) -> Vec<serde_json::Value> {
    let out = unrm_ok(sb, sb.root(), &["--list", "--json"]);
    let doc: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("--list --json is JSON");
    match &doc["deletions"] {
        serde_json::Value::Array(items) => items.clone(),
        _ => panic!("--list --json holds no deletions: {doc}"),
    }
}

/// The id of the newest deletion in the store.
pub fn newest_id(sb: &Sandbox) -> String {
    deletions(sb)[0]["id"].as_str().expect("an id").to_string()
}
