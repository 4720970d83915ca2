//! Honest answers after a crash or a partial removal (issue 12): a damaged manifest is
//! rebuilt before anything is answered, a path restores from every deletion that holds part
//! of it, a tree deleted through a symlinked path comes back by the path typed, and a
//! removal that failed is not listed as a deletion.

use std::fs;
use std::path::{Path, PathBuf};

use crate::common::{build_tree, saferm_bin, saferm_ok as saferm, unrm_bin, Outcome, Sandbox};

fn unrm(sb: &Sandbox, cwd: &Path, args: &[&str]) -> Outcome {
    sb.command(unrm_bin()).current_dir(cwd).args(args).run()
}

fn unrm_ok(sb: &Sandbox, cwd: &Path, args: &[&str]) -> Outcome {
    let out = unrm(sb, cwd, args);
    assert_eq!(
        out.code(),
        Some(0),
        "unrm {args:?}\nstdout: {}\nstderr: {}",
        out.stdout_text(),
        out.stderr_text()
    );
    out
}

/// The deletions in the store, newest first, from `unrm --list --json`.
fn deletions(sb: &Sandbox) -> Vec<serde_json::Value> {
    let out = unrm_ok(sb, sb.root(), &["--list", "--json"]);
    serde_json::from_slice(&out.stdout).expect("--list --json is JSON")
}

/// The manifest of deletion `id`.
fn manifest_of(sb: &Sandbox, id: &str) -> PathBuf {
    let mut found = Vec::new();
    for month in fs::read_dir(sb.store().join("manifests")).expect("manifests") {
        let p = month.expect("month").path().join(format!("{id}.json"));
        if p.exists() {
            found.push(p);
        }
    }
    assert_eq!(found.len(), 1, "{id}: {found:?}");
    found.remove(0)
}

fn newest_id(sb: &Sandbox) -> String {
    deletions(sb)[0]["id"].as_str().expect("an id").to_string()
}

// --- 5. an empty or damaged manifest ------------------------------------------------------

/// Two deletions, `old` then `tree`; the manifest of `tree` is left empty as a power cut
/// leaves it. Returns (sandbox, work dir, id of `tree`, its manifest).
fn power_cut_after_rm(list_first: bool) -> (Sandbox, PathBuf, String, PathBuf) {
    let sb = Sandbox::new();
    let w = sb.work("w");
    build_tree(&w, &["old=unrelated", "tree/a=1", "tree/sub/b=2"]);
    saferm(&sb, &w, &["old"]);
    saferm(&sb, &w, &["-r", "tree"]);
    let id = newest_id(&sb);
    if !list_first {
        // The listing cache written by `--list` must not know it either.
        fs::remove_file(sb.store().join("index.jsonl")).expect("drop the cache");
    }
    let manifest = manifest_of(&sb, &id);
    fs::write(&manifest, b"").expect("empty the manifest");
    (sb, w, id, manifest)
}

fn assert_rebuilt(out: &Outcome, id: &str, manifest: &Path) {
    let err = out.stderr_text();
    assert!(
        err.contains(&format!(
            "the manifest of deletion {id} was damaged; rebuilt it"
        )),
        "{err}"
    );
    let m = saferm::manifest::Manifest::from_json(&fs::read(manifest).expect("rebuilt"))
        .expect("the rebuilt manifest reads");
    assert_eq!(m.id, id);
    let mut aside = manifest.as_os_str().to_os_string();
    aside.push(".damaged");
    assert!(Path::new(&aside).exists(), "the damaged one is kept");
}

#[test]
fn an_empty_manifest_is_rebuilt_before_unrm_restores_a_path_of_it() {
    for list_first in [false, true] {
        let (sb, w, id, manifest) = power_cut_after_rm(list_first);
        let out = unrm_ok(&sb, &w, &["tree"]);
        assert_rebuilt(&out, &id, &manifest);
        assert_eq!(out.stdout_text(), "restored 'tree'\n");
        assert_eq!(fs::read(w.join("tree/sub/b")).expect("b"), b"2");
        assert!(!w.join("old").exists(), "the older deletion is not touched");
    }
}

#[test]
fn an_empty_manifest_is_rebuilt_before_last_picks_a_deletion() {
    for list_first in [false, true] {
        let (sb, w, id, manifest) = power_cut_after_rm(list_first);
        let out = unrm_ok(&sb, &w, &["--last"]);
        assert_rebuilt(&out, &id, &manifest);
        assert_eq!(fs::read(w.join("tree/a")).expect("a"), b"1");
        assert!(
            !w.join("old").exists(),
            "--last undid the older, unrelated deletion"
        );
    }
}

#[test]
fn an_empty_manifest_is_rebuilt_before_it_is_listed() {
    let (sb, _w, id, manifest) = power_cut_after_rm(false);
    let out = unrm_ok(&sb, sb.root(), &["--list"]);
    assert_rebuilt(&out, &id, &manifest);
    assert!(out.stdout_text().contains(&id), "{}", out.stdout_text());
    // --check alone reports and changes nothing.
    let (sb, _w, id, manifest) = power_cut_after_rm(false);
    let out = unrm(&sb, sb.root(), &["--check"]);
    assert_eq!(out.code(), Some(1), "{}", out.stderr_text());
    assert_eq!(fs::read(&manifest).expect("manifest"), b"", "{id}");
}

#[test]
fn saferm_rebuilds_an_empty_manifest_it_meets() {
    let (sb, w, id, manifest) = power_cut_after_rm(false);
    build_tree(&w, &["next=3"]);
    // A clock past the last full check of the store (as after a reboot).
    let later = (chrono::Utc::now().timestamp() + 3600).to_string();
    let out = sb
        .command(saferm_bin())
        .current_dir(&w)
        .env("SAFERM_TEST_NOW", &later)
        .arg("next")
        .run();
    assert_eq!(out.code(), Some(0), "{}", out.stderr_text());
    assert!(
        out.stderr_text().starts_with(&format!(
            "saferm: the manifest of deletion {id} was damaged; rebuilt it"
        )),
        "{}",
        out.stderr_text()
    );
    assert_rebuilt(&out, &id, &manifest);
    unrm_ok(&sb, &w, &["tree"]);
    assert_eq!(fs::read(w.join("tree/a")).expect("a"), b"1");
}
