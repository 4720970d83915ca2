//! Honest answers after a crash or a partial removal (issue 12): a damaged manifest is
//! rebuilt before anything is answered, a path restores from every deletion that holds part
//! of it, a tree deleted through a symlinked path comes back by the path typed, and a
//! removal that failed is not listed as a deletion.

use std::fs;
use std::path::{Path, PathBuf};

use crate::common::{
    build_tree, deletions, files_under, newest_id, saferm_bin, saferm_ok as saferm, unrm, unrm_bin,
    unrm_ok, Outcome, Sandbox,
};

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

/// Move `path` out of the way, below the sandbox (tests delete nothing themselves).
fn away(sb: &Sandbox, path: &Path) {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    fs::rename(path, sb.root().join(format!("away-{n}"))).expect("move away");
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
        away(&sb, &sb.store().join("index.jsonl"));
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
        assert_eq!(
            crate::common::when_blanked(&out.stdout_text()),
            "restored 'tree' (deleted WHEN)\n"
        );
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
    let out = unrm_ok(&sb, sb.root(), &["--list", "--long"]);
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

// --- 6. a path removed in parts -------------------------------------------------------------

/// The files below `dir` and their contents, by path relative to it.
fn contents(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    assert!(dir.is_dir(), "{} is a directory", dir.display());
    files_under(dir)
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(dir).expect("below").to_path_buf();
            (rel, fs::read(&p).expect("read"))
        })
        .collect()
}

const PROJ: &[&str] = &[
    "proj/a=1",
    "proj/sub/b=2",
    "proj/sub/secret=3",
    "proj/c/d=4",
];

/// `rm -rf proj` that cannot archive `proj/sub/secret`: everything else goes.
fn partial_rm(sb: &Sandbox, w: &Path) {
    let out = sb
        .command(saferm_bin())
        .current_dir(w)
        .env("SAFERM_FAULT", "read=secret")
        .args(["-rf", "proj"])
        .run();
    assert_eq!(out.code(), Some(1), "{}", out.stderr_text());
    assert!(
        out.stderr_text().contains("proj/sub/secret"),
        "{}",
        out.stderr_text()
    );
    assert!(w.join("proj/sub/secret").exists() && !w.join("proj/a").exists());
}

#[test]
fn a_partial_rm_rf_is_restored_by_the_path_given() {
    let sb = Sandbox::new();
    let w = sb.work("w");
    build_tree(&w, PROJ);
    let before = contents(&w.join("proj"));
    partial_rm(&sb, &w);
    unrm_ok(&sb, &w, &["proj"]);
    assert_eq!(contents(&w.join("proj")), before);
}

#[test]
fn a_path_removed_by_two_runs_restores_from_both_and_says_so() {
    let sb = Sandbox::new();
    let w = sb.work("w");
    build_tree(&w, PROJ);
    let before = contents(&w.join("proj"));
    partial_rm(&sb, &w);
    saferm(&sb, &w, &["-rf", "proj"]);
    assert!(!w.join("proj").exists());
    let ids: Vec<String> = deletions(&sb)
        .iter()
        .map(|d| d["id"].as_str().expect("id").to_string())
        .collect();
    let out = unrm_ok(&sb, &w, &["proj"]);
    assert_eq!(contents(&w.join("proj")), before);
    let text = crate::common::when_blanked(&out.stdout_text());
    assert!(
        text.starts_with(&format!(
            "'proj' was removed in parts by 2 deletions; restoring from each, the newest version of each object: {}, {}\n",
            ids[0], ids[1]
        )),
        "{text}"
    );
    assert!(text.contains("restored 'proj' (deleted WHEN)\n"), "{text}");
    // Under --to, the pieces keep their places below the operand's parent.
    away(&sb, &w.join("proj"));
    let out_dir = sb.work("out");
    unrm_ok(&sb, &w, &["--to", out_dir.to_str().expect("utf-8"), "proj"]);
    assert_eq!(contents(&out_dir.join("proj")), before);
}

#[test]
fn a_path_removed_again_after_it_was_made_again_restores_the_newer_one() {
    let sb = Sandbox::new();
    let w = sb.work("w");
    build_tree(&w, &["proj/old=1", "proj/both=old"]);
    saferm(&sb, &w, &["-r", "proj"]);
    build_tree(&w, &["proj/new=2", "proj/both=new"]);
    saferm(&sb, &w, &["-r", "proj"]);
    let out = unrm_ok(&sb, &w, &["proj"]);
    assert_eq!(
        crate::common::when_blanked(&out.stdout_text()),
        "restored 'proj' (deleted WHEN; 1 older version: --pick)\n"
    );
    assert_eq!(
        contents(&w.join("proj")),
        vec![
            (PathBuf::from("both"), b"new".to_vec()),
            (PathBuf::from("new"), b"2".to_vec())
        ]
    );
}

#[test]
fn a_directory_removed_in_parts_after_a_subtree_was_made_again_skips_the_old_subtree() {
    // proj/sub removed whole, made again, then a partial rm -rf proj and the run that
    // finished it: the old sub's files are another incarnation and stay out.
    let sb = Sandbox::new();
    let w = sb.work("w");
    build_tree(&w, &["proj/sub/gone=old", "proj/x=1"]);
    saferm(&sb, &w, &["-r", "proj/sub"]);
    build_tree(&w, &["proj/sub/b=2", "proj/sub/secret=3"]);
    let before = contents(&w.join("proj"));
    partial_rm(&sb, &w);
    saferm(&sb, &w, &["-rf", "proj"]);
    unrm_ok(&sb, &w, &["proj"]);
    assert_eq!(contents(&w.join("proj")), before);
}

#[test]
fn pieces_of_an_earlier_life_of_the_path_stay_out() {
    // proj removed in two runs, made again with other files, removed in two runs again:
    // unrm proj gives back the second proj only.
    let sb = Sandbox::new();
    let w = sb.work("w");
    build_tree(&w, &["proj/old=1", "proj/sub/secret=old"]);
    partial_rm(&sb, &w);
    saferm(&sb, &w, &["-rf", "proj"]);
    build_tree(&w, &["proj/new=2", "proj/sub/b=3", "proj/sub/secret=new"]);
    let before = contents(&w.join("proj"));
    partial_rm(&sb, &w);
    saferm(&sb, &w, &["-rf", "proj"]);
    let out = unrm_ok(&sb, &w, &["proj"]);
    assert!(
        out.stdout_text().contains("by 2 deletions"),
        "{}",
        out.stdout_text()
    );
    assert_eq!(contents(&w.join("proj")), before);
}

// --- 7. a path typed through a symlink -----------------------------------------------------

/// `home/proj` -> `data/proj`, which holds `src/a.rs`.
fn linked_project(sb: &Sandbox) -> (PathBuf, PathBuf) {
    let w = sb.work("w");
    build_tree(&w, &["data/proj/src/a.rs=fn main() {}", "home/"]);
    std::os::unix::fs::symlink(w.join("data/proj"), w.join("home/proj")).expect("symlink");
    (w.join("home/proj"), w.join("data/proj"))
}

#[test]
fn a_tree_removed_through_a_symlinked_path_is_restored_by_that_path() {
    let sb = Sandbox::new();
    let (linked, real) = linked_project(&sb);
    let typed = linked.join("src");
    let typed = typed.to_str().expect("utf-8");
    saferm(&sb, sb.root(), &["-r", typed]);
    assert!(!real.join("src").exists());
    let id = newest_id(&sb);
    let m: serde_json::Value =
        serde_json::from_slice(&fs::read(manifest_of(&sb, &id)).expect("manifest")).expect("json");
    assert_eq!(m["operands"][0]["typed"]["path"], typed, "{m}");
    assert_eq!(
        m["operands"][0]["absolute"]["path"],
        real.join("src").to_str().expect("utf-8")
    );
    let listed = unrm_ok(&sb, sb.root(), &["--list", "-l", typed]).stdout_text();
    assert!(listed.contains(&id), "--list by the typed path: {listed}");
    // While the link is there, and after it is gone (only the manifest knows then).
    unrm_ok(&sb, sb.root(), &[typed]);
    assert_eq!(
        fs::read(real.join("src/a.rs")).expect("a.rs"),
        b"fn main() {}"
    );
    saferm(&sb, sb.root(), &["-r", typed]);
    away(&sb, &linked);
    let out = unrm_ok(&sb, sb.root(), &[typed]);
    assert!(
        out.stdout_text().contains("restored"),
        "{}",
        out.stdout_text()
    );
    assert_eq!(
        fs::read(real.join("src/a.rs")).expect("a.rs"),
        b"fn main() {}"
    );
    // The resolved path works as before.
    saferm(
        &sb,
        sb.root(),
        &["-r", real.join("src").to_str().expect("utf-8")],
    );
    unrm_ok(&sb, sb.root(), &[real.join("src").to_str().expect("utf-8")]);
    assert!(real.join("src/a.rs").exists());
}

#[test]
fn a_relative_path_in_a_symlinked_directory_is_recorded_as_the_shell_names_it() {
    let sb = Sandbox::new();
    let (linked, real) = linked_project(&sb);
    // The shell is in home/proj (its $PWD); the kernel's cwd is data/proj.
    let out = sb
        .command(saferm_bin())
        .current_dir(&linked)
        .env("PWD", &linked)
        .args(["-r", "src"])
        .run();
    assert_eq!(out.code(), Some(0), "{}", out.stderr_text());
    away(&sb, &linked);
    let typed = linked.join("src");
    unrm_ok(&sb, sb.root(), &[typed.to_str().expect("utf-8")]);
    assert!(real.join("src/a.rs").exists());
}

#[test]
fn the_contents_removed_through_link_slash_are_restored_by_the_link() {
    let sb = Sandbox::new();
    let w = sb.work("w");
    build_tree(&w, &["real/a=1", "real/sub/b=2"]);
    std::os::unix::fs::symlink("real", w.join("link")).expect("symlink");
    let out = sb
        .command(saferm_bin())
        .current_dir(&w)
        .args(["-r", "link/"])
        .run();
    assert_eq!(
        out.code(),
        Some(1),
        "rm fails on the link: {}",
        out.stderr_text()
    );
    assert!(fs::read_dir(w.join("real")).expect("real").next().is_none());
    for name in ["link", "link/"] {
        unrm_ok(&sb, &w, &[name]);
        assert_eq!(fs::read(w.join("real/sub/b")).expect("b"), b"2", "{name}");
        away(&sb, &w.join("real"));
        fs::create_dir(w.join("real")).expect("mkdir");
    }
    // With the link gone, by the path recorded as typed.
    away(&sb, &w.join("link"));
    unrm_ok(&sb, &w, &["link"]);
    assert_eq!(fs::read(w.join("real/a")).expect("a"), b"1");
}

#[test]
fn manifests_without_typed_paths_still_read() {
    let json = br#"{"given":{"path":"a"},"absolute":{"path":"/w/a"}}"#;
    let o: saferm::manifest::Operand = serde_json::from_slice(json).expect("an old operand");
    assert_eq!(o.typed, None);
    assert!(!String::from_utf8_lossy(&serde_json::to_vec(&o).expect("json")).contains("typed"));
}

// --- 10. a removal that failed --------------------------------------------------------------

#[test]
fn a_removal_that_removed_nothing_is_not_listed() {
    let sb = Sandbox::new();
    let w = sb.work("w");
    build_tree(&w, &["imm=keep me", "ao/f=1", "ao/g=2"]);
    let Some(_attrs) = crate::common::Attrs::set(&sb, "+i", &[w.join("imm")]) else {
        return;
    };
    let Some(_more) = crate::common::Attrs::set(&sb, "+a", &[w.join("ao")]) else {
        return;
    };
    for args in [&["imm"][..], &["-rf", "ao"]] {
        let out = sb.command(saferm_bin()).current_dir(&w).args(args).run();
        assert_eq!(out.code(), Some(1), "{args:?}");
        assert!(
            out.stderr_text().contains("Operation not permitted"),
            "{args:?}: {}",
            out.stderr_text()
        );
    }
    assert_eq!(deletions(&sb), Vec::<serde_json::Value>::new());
    let out = unrm(&sb, &w, &["--last"]);
    assert_eq!(out.code(), Some(1));
    assert!(
        out.stderr_text().contains("no deletion is left to undo"),
        "{}",
        out.stderr_text()
    );
    let out = unrm(&sb, &w, &["imm"]);
    assert_eq!(out.code(), Some(1));
    assert!(
        out.stderr_text()
            .contains("no deletion in the store holds it"),
        "{}",
        out.stderr_text()
    );
    // Withdrawn: no archive is left of what is still in place.
    let archives: Vec<_> = fs::read_dir(sb.store().join("archives"))
        .expect("archives")
        .flat_map(|m| fs::read_dir(m.expect("month").path()).expect("month"))
        .collect();
    assert!(archives.is_empty(), "{archives:?}");
}

#[test]
fn what_a_removal_had_to_leave_in_place_is_not_listed_as_deleted() {
    let sb = Sandbox::new();
    let w = sb.work("w");
    build_tree(&w, &["d/imm=keep me", "d/a=1", "d/sub/b=2"]);
    let Some(_attrs) = crate::common::Attrs::set(&sb, "+i", &[w.join("d/imm")]) else {
        return;
    };
    let out = sb
        .command(saferm_bin())
        .current_dir(&w)
        .args(["-rf", "d"])
        .run();
    assert_eq!(out.code(), Some(1), "{}", out.stderr_text());
    assert!(w.join("d/imm").exists() && !w.join("d/a").exists());
    let list = deletions(&sb);
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["partly_kept"], true, "{list:?}");
    let id = list[0]["id"].as_str().expect("id");
    let show = unrm_ok(&sb, &w, &["--show", id]).stdout_text();
    let marked: Vec<&str> = show
        .lines()
        .filter(|l| l.ends_with("(not removed: it could not be, and is still in place)"))
        .collect();
    assert_eq!(marked.len(), 2, "d and d/imm: {show}");
    let out = unrm(&sb, &w, &["d/imm"]);
    assert_eq!(out.code(), Some(1), "{}", out.stdout_text());
    assert!(
        out.stderr_text()
            .contains("no deletion in the store holds it"),
        "{}",
        out.stderr_text()
    );
    let out = unrm_ok(&sb, &w, &["--last"]);
    let text = crate::common::when_blanked(&out.stdout_text());
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "restored 'd/a' (deleted WHEN)",
            "restored 'd/sub' (deleted WHEN)"
        ]
    );
    assert_eq!(fs::read(w.join("d/sub/b")).expect("b"), b"2");
}

// --- 9. an overwrite whose obstacle cannot all go ------------------------------------------

/// Every object below `root` with its mtime: what an obstacle left alone must keep.
fn with_mtimes(root: &Path) -> Vec<(crate::common::Entry, i64, i64)> {
    use std::os::unix::fs::MetadataExt;
    crate::common::snapshot(root)
        .into_iter()
        .map(|e| {
            let m = fs::symlink_metadata(root.join(&e.path)).expect("lstat");
            (e, m.mtime(), m.mtime_nsec())
        })
        .collect()
}

/// `o` deleted with `o/x=orig`, then made again as an obstacle `spec`.
fn deleted_then_in_the_way(sb: &Sandbox, w: &Path, spec: &[&str]) {
    build_tree(w, &["o/x=orig"]);
    saferm(sb, w, &["-r", "o"]);
    build_tree(w, spec);
}

#[test]
fn an_overwrite_whose_obstacle_holds_an_immutable_file_changes_none_of_it() {
    let sb = Sandbox::new();
    let w = sb.work("w");
    deleted_then_in_the_way(&sb, &w, &["o/a=1", "o/sub/imm=2", "o/sub/b=3"]);
    let Some(_attrs) = crate::common::Attrs::set(&sb, "+i", &[w.join("o/sub/imm")]) else {
        return;
    };
    let before = with_mtimes(&w);
    let out = unrm(&sb, &w, &["--overwrite", "o"]);
    assert_eq!(out.code(), Some(1), "{}", out.stdout_text());
    assert_eq!(
        out.stderr_text(),
        "unrm: could not restore 'o': it is in the way and cannot be removed whole \
         ('o/sub/imm' is immutable); nothing of it was changed\n\
         unrm: restored 0 objects; 1 could not be restored\n"
    );
    assert_eq!(with_mtimes(&w), before, "the obstacle is as it was");
    assert_eq!(
        deletions(&sb).len(),
        1,
        "no deletion was made of the obstacle"
    );
}

#[test]
fn an_overwrite_whose_obstacle_holds_an_append_only_directory_changes_none_of_it() {
    let sb = Sandbox::new();
    let w = sb.work("w");
    deleted_then_in_the_way(&sb, &w, &["o/a=1", "o/log/f=2"]);
    let Some(_attrs) = crate::common::Attrs::set(&sb, "+a", &[w.join("o/log")]) else {
        return;
    };
    let before = with_mtimes(&w);
    let out = unrm(&sb, &w, &["--overwrite", "o"]);
    assert_eq!(out.code(), Some(1));
    assert!(
        out.stderr_text().contains("('o/log' is append-only)"),
        "{}",
        out.stderr_text()
    );
    assert_eq!(with_mtimes(&w), before);
    // Once it can go, it goes whole, and the deletion comes back.
    drop(_attrs);
    unrm_ok(&sb, &w, &["--overwrite", "o"]);
    assert_eq!(fs::read(w.join("o/x")).expect("o/x"), b"orig");
    assert!(!w.join("o/a").exists() && !w.join("o/log").exists());
}

#[test]
fn an_overwrite_by_a_user_who_may_not_empty_a_directory_of_the_obstacle_changes_none_of_it() {
    if !crate::common::is_root() {
        assert!(
            std::env::var_os("SAFERM_TEST_REQUIRE_ALL").is_none_or(|v| v != "1"),
            "dropping privileges needs root"
        );
        eprintln!("\n*** SKIPPED: dropping privileges needs root. ***");
        return;
    }
    let sb = Sandbox::new();
    let w = sb.work("w");
    let as_nobody = |args: &[&str]| {
        sb.command(unrm_bin())
            .current_dir(&w)
            .args(args)
            .unprivileged()
            .run()
    };
    build_tree(&w, &["o/x=orig"]);
    sb.chown_all(65534, 65534);
    let out = sb
        .command(saferm_bin())
        .current_dir(&w)
        .args(["-r", "o"])
        .unprivileged()
        .run();
    assert_eq!(out.code(), Some(0), "{}", out.stderr_text());
    // The obstacle is the user's, but a directory in it is root's: its file cannot go.
    build_tree(&w, &["o/a=1", "o/roots/f=2"]);
    crate::common::chown_path_tree(&w.join("o"), 65534, 65534);
    crate::common::chown_path_tree(&w.join("o/roots"), 0, 0);
    let before = with_mtimes(&w);
    let out = as_nobody(&["--overwrite", "o"]);
    assert_eq!(out.code(), Some(1), "{}", out.stdout_text());
    assert!(
        out.stderr_text()
            .contains("('o/roots' does not let you remove its entries); nothing of it was changed"),
        "{}",
        out.stderr_text()
    );
    assert_eq!(with_mtimes(&w), before);
}

#[test]
fn an_obstacle_made_immutable_after_it_was_looked_at_is_reported_as_removed_in_part() {
    let sb = Sandbox::new();
    let w = sb.work("w");
    deleted_then_in_the_way(&sb, &w, &["o/a=1", "o/sub/late=2"]);
    // Made able to chattr first, so a skip happens before anything runs.
    let Some(probe) = crate::common::Attrs::set(&sb, "+i", &[w.join("o/sub/late")]) else {
        return;
    };
    drop(probe);
    let pause = sb.work("pause");
    let cmd = sb
        .command(unrm_bin())
        .current_dir(&w)
        .args(["--overwrite", "o"])
        .env("SAFERM_FAULT", "pause")
        .env("SAFERM_TEST_PAUSE_DIR", &pause);
    let mut attrs = None;
    let out = std::thread::scope(|s| {
        let run = s.spawn(|| cmd.run());
        while !pause.join("paused").exists() && !run.is_finished() {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(pause.join("paused").exists(), "unrm did not pause");
        attrs = crate::common::Attrs::set(&sb, "+i", &[w.join("o/sub/late")]);
        fs::write(pause.join("resume"), b"").expect("resume");
        run.join().expect("unrm thread")
    });
    assert!(attrs.is_some());
    assert_eq!(out.code(), Some(1));
    let err = out.stderr_text();
    // The attribute changed its ctime: saferm keeps it as changed while archived.
    assert!(
        err.contains("/o/sub/late': changed while it was being archived"),
        "{err}"
    );
    assert!(
        err.contains(
            "unrm: could not restore 'o': it is in the way and could be removed only in part"
        ),
        "{err}"
    );
    assert!(!w.join("o/a").exists() && w.join("o/sub/late").exists());
    // What was removed of it is in the store, and comes back.
    let id = newest_id(&sb);
    drop(attrs);
    let out = unrm_ok(&sb, &w, &[&id]);
    assert_eq!(
        fs::read(w.join("o/a")).unwrap_or_default(),
        b"1",
        "{}{}",
        out.stdout_text(),
        out.stderr_text()
    );
}

#[test]
fn an_overwrite_whose_obstacle_holds_a_mount_point_changes_none_of_it() {
    let sb = Sandbox::new();
    let w = sb.work("w");
    deleted_then_in_the_way(&sb, &w, &["o/a=1", "o/mnt/"]);
    let mount = match crate::common::Tmpfs::mount(&w.join("o/mnt")) {
        Ok(m) => m,
        Err(e) => {
            assert!(
                std::env::var_os("SAFERM_TEST_REQUIRE_ALL").is_none_or(|v| v != "1"),
                "{e}"
            );
            eprintln!("\n*** SKIPPED: cannot mount a tmpfs here: {e}. ***");
            return;
        }
    };
    fs::write(w.join("o/mnt/on-the-mount"), b"2").expect("write on the mount");
    let before = with_mtimes(&w);
    let out = unrm(&sb, &w, &["--overwrite", "o"]);
    assert_eq!(out.code(), Some(1));
    assert!(
        out.stderr_text().contains("('o/mnt' is a mount point)"),
        "{}",
        out.stderr_text()
    );
    assert_eq!(with_mtimes(&w), before);
    drop(mount);
}
