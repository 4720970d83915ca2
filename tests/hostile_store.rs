//! A store that is crafted, damaged, misplaced or reached by another path: ids that climb
//! out of the store, special files in place of store files, a store directory that is not
//! empty, and the store seen through a bind mount.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::{build_tree, saferm_ok as saferm, unrm_bin, Outcome, Sandbox};

/// Long enough for any of these runs on a loaded machine; short enough that a run that
/// hangs (a FIFO opened for reading) fails the test instead of holding up the suite.
const HANG: Duration = Duration::from_secs(20);

fn unrm(sb: &Sandbox, cwd: &Path, args: &[&str]) -> Outcome {
    sb.command(unrm_bin())
        .current_dir(cwd)
        .args(args)
        .timeout(HANG)
        .run()
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
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

/// The one manifest in the store.
fn only_manifest(sb: &Sandbox) -> PathBuf {
    let all: Vec<PathBuf> = files_under(&sb.store().join("manifests"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    assert_eq!(all.len(), 1, "{all:?}");
    all[0].clone()
}

#[test]
fn a_manifest_id_with_dot_dot_writes_nothing_outside_the_store() {
    let sb = Sandbox::new();
    let w = sb.work("w");
    build_tree(&w, &["f=1"]);
    saferm(&sb, &w, &["f"]);
    // The listing cache now knows the deletion by its real id.
    assert_eq!(unrm(&sb, &w, &["--list"]).code(), Some(0));
    let manifest = only_manifest(&sb);
    let mut json: serde_json::Value =
        serde_json::from_slice(&fs::read(&manifest).expect("manifest")).expect("json");
    // From manifests/<month>/ three levels up is the sandbox's data/ directory.
    json["id"] = serde_json::Value::from("../../../escaped");
    fs::write(&manifest, serde_json::to_vec(&json).expect("json")).expect("craft");
    for args in [vec!["f"], vec!["--last"]] {
        let out = unrm(&sb, &w, &args);
        assert_ne!(out.code(), Some(0), "{args:?}: {}", out.stderr_text());
        assert!(out.stderr_text().starts_with("unrm: "), "{}", out.stderr_text());
    }
    let escaped: Vec<PathBuf> = files_under(sb.root())
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("escaped"))
        .collect();
    assert!(escaped.is_empty(), "written outside the store: {escaped:?}");
    assert!(!w.join("f").exists(), "restored from a manifest that lies");
    // The damage is reported by --check, not taken for another deletion.
    let check = unrm(&sb, &w, &["--check"]);
    assert_ne!(check.code(), Some(0), "{}", check.stderr_text());
}

#[test]
fn a_crafted_listing_cache_with_a_bad_id_is_ignored() {
    let sb = Sandbox::new();
    let w = sb.work("w");
    build_tree(&w, &["f=1"]);
    saferm(&sb, &w, &["f"]);
    assert_eq!(unrm(&sb, &w, &["--list"]).code(), Some(0));
    let index = sb.store().join("index.jsonl");
    let text = fs::read_to_string(&index).expect("index");
    let mut line: serde_json::Value =
        serde_json::from_str(text.lines().next().expect("a line")).expect("json");
    line["id"] = serde_json::Value::from("../../../escaped");
    fs::write(&index, format!("{line}\n{text}")).expect("craft");
    let out = unrm(&sb, &w, &["--list", "--json"]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr_text());
    assert!(!out.stdout_text().contains("escaped"), "{}", out.stdout_text());
    let out = unrm(&sb, &w, &["f"]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr_text());
    assert_eq!(fs::read(w.join("f")).expect("restored"), b"1");
    assert!(files_under(sb.root())
        .iter()
        .all(|p| !p.to_string_lossy().contains("escaped")));
}
