//! Instant mode (issue 14): a deletion staged by rename into the store, archived by a
//! worker, and only then unlinked; what cannot be staged takes the synchronous path. (The
//! differential suite runs every case in instant mode too: `common::run_all`.)

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::full::full_snapshot;
use crate::common::rich::rich_tree_for_unrm;
use crate::common::{
    is_root, manifests, noise, saferm_bin, snapshot, tool, unrm_ok, Outcome, Sandbox, Tmpfs,
};

/// `saferm ARGS` in `cwd` with instant mode on for any deletion (`instant_min` 0), and
/// `env` besides.
fn saferm_instant(sb: &Sandbox, cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Outcome {
    let mut cmd = sb
        .command(saferm_bin())
        .args(args)
        .current_dir(cwd)
        .env("SAFERM_INSTANT", "1")
        .env("SAFERM_INSTANT_MIN", "0");
    for (k, v) in env {
        cmd = cmd.env(k, v);
    }
    let out = cmd.run();
    assert_eq!(
        out.code(),
        Some(0),
        "saferm {args:?}: {}",
        out.stderr_text()
    );
    out
}

/// The staged deletions in the store (their directories' names).
fn staged(sb: &Sandbox) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(sb.store().join("staging"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.file_name().is_some_and(|n| n != ".drain"))
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

/// Wait until `done`, failing with `what` once `secs` have passed.
fn wait_until(secs: u64, what: impl Fn() -> String, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < Duration::from_secs(secs), "{}", what());
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Wait until the process held by a `pause` fault in `dir` says it is paused.
fn wait_paused(dir: &Path, who: &str) {
    wait_until(
        30,
        || format!("{who} did not pause"),
        || dir.join("paused").exists(),
    );
}

/// Start `cmd` with none of the test's stdin, stdout or stderr.
fn spawn_quiet(cmd: &mut std::process::Command) -> std::process::Child {
    use std::process::Stdio;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start a program")
}

#[test]
fn a_staged_deletion_is_archived_under_the_paths_it_came_from_and_restores_whole() {
    let sb = Sandbox::new();
    let w = sb.work("w");
    rich_tree_for_unrm(&w);
    let before = full_snapshot(&w.join("t"));
    // No worker: what saferm leaves is the staging itself.
    let out = saferm_instant(&sb, &w, &["-rf", "t"], &[("SAFERM_FAULT", "no-worker")]);
    assert_eq!(
        (out.stdout_text(), out.stderr_text()),
        (String::new(), String::new())
    );
    assert!(
        fs::symlink_metadata(w.join("t")).is_err(),
        "t is gone from its place"
    );
    assert!(manifests(&sb.store()).is_empty(), "nothing is archived yet");
    let staging = staged(&sb);
    assert_eq!(staging.len(), 1, "{staging:?}");
    assert!(staging[0].join("origin.json").is_file());
    assert_eq!(
        full_snapshot(&staging[0].join("0")),
        before,
        "staged whole, as it was"
    );

    // unrm finishes the staging first: archived, then unlinked from the staging area.
    let listed = unrm_ok(&sb, &w, &["--list"]);
    assert!(
        listed.stdout_text().contains("'t'"),
        "{}",
        listed.stdout_text()
    );
    assert!(staged_is_empty(&sb), "{:?}", staged(&sb));
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(&manifests(&sb.store())[0]).expect("manifest"))
            .expect("json");
    let w_canon = w.canonicalize().expect("canonical work dir");
    assert_eq!(
        manifest["operands"][0]["absolute"]["path"].as_str(),
        Some(w_canon.join("t").to_str().expect("utf-8 path")),
    );
    assert_eq!(manifest["operands"][0]["given"]["path"].as_str(), Some("t"));
    // GNU tar alone sees the tree where it was.
    if tool("tar", "listing the archive with GNU tar").is_some() {
        let archive = &crate::common::archives(&sb.store())[0];
        let listing = std::process::Command::new("tar")
            .args(["--zstd", "-tf"])
            .arg(archive)
            .output()
            .expect("tar");
        let text = String::from_utf8_lossy(&listing.stdout).into_owned();
        let inside = w_canon.join("t/ro/inside");
        let inside = inside.to_str().expect("utf-8").trim_start_matches('/');
        assert!(text.lines().any(|l| l == inside), "{text}");
        assert!(!text.contains("staging"), "{text}");
    }
    let out = unrm_ok(&sb, &w, &["t"]);
    assert_eq!(
        crate::common::when_blanked(&out.stdout_text()),
        "restored 't' (deleted WHEN)\n"
    );
    assert_eq!(full_snapshot(&w.join("t")), before);
}

fn staged_is_empty(sb: &Sandbox) -> bool {
    staged(sb).is_empty()
}

#[test]
fn the_worker_saferm_starts_archives_in_the_background() {
    let sb = Sandbox::new();
    let w = sb.work("w");
    fs::create_dir_all(w.join("d/e")).expect("mkdir");
    fs::write(w.join("d/e/f"), b"content").expect("write");
    fs::write(w.join("g"), b"other").expect("write");
    saferm_instant(&sb, &w, &["-r", "d", "g"], &[]);
    assert!(!w.join("d").exists() && !w.join("g").exists());
    // Without any unrm: the worker archives it, then removes the staging.
    wait_until(
        60,
        || format!("the worker did not finish: {:?}", staged(&sb)),
        || manifests(&sb.store()).len() == 1 && staged_is_empty(&sb),
    );
    unrm_ok(&sb, &w, &["--last"]);
    assert_eq!(fs::read(w.join("d/e/f")).expect("restored"), b"content");
    assert_eq!(fs::read(w.join("g")).expect("restored"), b"other");
}

#[test]
fn what_cannot_be_staged_is_archived_before_saferm_returns() {
    let sb = Sandbox::new();
    let w = sb.work("w");
    let make = |name: &str| {
        fs::create_dir_all(w.join(name)).expect("mkdir");
        fs::write(w.join(name).join("f"), name).expect("write");
    };
    // -v (rm's lines are printed as objects go), --sync, a socket (its warning).
    make("v");
    let out = saferm_instant(&sb, &w, &["-rv", "v"], &[("SAFERM_FAULT", "no-worker")]);
    assert_eq!(out.stdout_text(), "removed 'v/f'\nremoved directory 'v'\n");
    assert_eq!(manifests(&sb.store()).len(), 1);
    make("s");
    saferm_instant(
        &sb,
        &w,
        &["-r", "--sync", "s"],
        &[("SAFERM_FAULT", "no-worker")],
    );
    assert_eq!(manifests(&sb.store()).len(), 2);
    assert!(staged_is_empty(&sb));
    // A tree deeper than instant mode stages.
    let mut deep = w.join("deep");
    for _ in 0..200 {
        deep.push("l");
    }
    fs::create_dir_all(&deep).expect("mkdir");
    saferm_instant(&sb, &w, &["-r", "deep"], &[("SAFERM_FAULT", "no-worker")]);
    assert_eq!(manifests(&sb.store()).len(), 3);
    assert!(staged_is_empty(&sb));
    // Another filesystem than the store's: renaming into the store cannot be done.
    if !skip_unless_root("mounting a tmpfs") {
        let mnt = sb.work("mnt");
        let _tmpfs = Tmpfs::mount(&mnt).expect("mount a tmpfs");
        fs::create_dir(mnt.join("x")).expect("mkdir");
        fs::write(mnt.join("x/f"), b"on tmpfs").expect("write");
        saferm_instant(&sb, &mnt, &["-r", "x"], &[("SAFERM_FAULT", "no-worker")]);
        assert!(!mnt.join("x").exists());
        assert_eq!(manifests(&sb.store()).len(), 4);
        assert!(staged_is_empty(&sb));
    }
}

#[test]
fn by_default_a_large_deletion_is_staged_and_a_small_one_archived_at_once() {
    let sb = Sandbox::new();
    let w = sb.work("w");
    for (dir, files) in [("small", 4), ("large", 40)] {
        fs::create_dir(w.join(dir)).expect("mkdir");
        for i in 0..files {
            fs::write(w.join(dir).join(format!("f{i}")), b"x").expect("write");
        }
    }
    let run = |dir: &str| {
        let out = sb
            .command(saferm_bin())
            .args(["-r", dir])
            .current_dir(&w)
            .env_remove("SAFERM_INSTANT")
            .env("SAFERM_FAULT", "no-worker")
            .run();
        assert_eq!(out.code(), Some(0), "{}", out.stderr_text());
        assert!(!w.join(dir).exists());
    };
    // 5 objects count 80 KiB, below instant_min (256 KiB): archived before saferm returns.
    run("small");
    assert_eq!(crate::common::archives(&sb.store()).len(), 1);
    assert!(staged_is_empty(&sb));
    // 41 objects: staged.
    run("large");
    assert_eq!(crate::common::archives(&sb.store()).len(), 1);
    assert_eq!(staged(&sb).len(), 1);
    unrm_ok(&sb, &w, &["large"]);
    assert_eq!(fs::read_dir(w.join("large")).expect("restored").count(), 40);
}

/// Skip loudly (fail under `.ci/run`) a case that needs root here.
fn skip_unless_root(what: &str) -> bool {
    if is_root() {
        return false;
    }
    let why = format!("{what} needs root: not tested");
    assert!(
        std::env::var_os("SAFERM_TEST_REQUIRE_ALL").is_none_or(|v| v != "1"),
        "{why}"
    );
    eprintln!("\n*** SKIPPED: {why}. ***");
    true
}

#[test]
fn each_operand_that_cannot_be_staged_is_archived_at_once_and_last_undoes_the_whole_command() {
    if skip_unless_root("mounting a tmpfs") {
        return;
    }
    let sb = Sandbox::new();
    let w = sb.work("w");
    let mnt = sb.work("w/mnt");
    let _tmpfs = Tmpfs::mount(&mnt).expect("mount a tmpfs");
    for dir in ["a", "mnt/b", "c"] {
        fs::create_dir_all(w.join(dir).join("in")).expect("mkdir");
        fs::write(w.join(dir).join("in/f"), dir.as_bytes()).expect("write");
    }
    let operands = ["a", "mnt/b", "c"];
    let state = || operands.map(|d| full_snapshot(&w.join(d)));
    let before = state();
    // `mnt/b` is on another filesystem than the store: it alone takes the synchronous
    // path, and is archived before saferm returns; `a` and `c` are staged.
    let out = saferm_instant(
        &sb,
        &w,
        &["-r", "a", "mnt/b", "c"],
        &[("SAFERM_FAULT", "no-worker")],
    );
    assert_eq!(out.stderr_text(), "");
    for dir in ["a", "mnt/b", "c"] {
        assert!(!w.join(dir).exists(), "{dir} is still there");
    }
    assert_eq!(
        manifests(&sb.store()).len(),
        1,
        "mnt/b was not archived at once"
    );
    let staging = staged(&sb);
    assert_eq!(staging.len(), 1, "{staging:?}");
    let mut slots: Vec<String> = fs::read_dir(&staging[0])
        .expect("read the staging")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.parse::<usize>().is_ok())
        .collect();
    slots.sort();
    assert_eq!(slots, ["0", "1"], "a and c are staged");
    // One command, two deletions: --last undoes both.
    unrm_ok(&sb, &w, &["--last"]);
    assert_eq!(state(), before);
    assert!(staged_is_empty(&sb));
}

#[test]
fn an_operand_holding_an_immutable_file_fails_as_rm_fails_and_the_others_are_staged() {
    let sb = Sandbox::new();
    let w = sb.work("w");
    fs::create_dir_all(w.join("t/sub")).expect("mkdir");
    fs::write(w.join("t/sub/imm"), b"pinned").expect("write");
    fs::write(w.join("t/other"), b"goes").expect("write");
    fs::write(w.join("u"), b"staged").expect("write");
    let Some(_attrs) = crate::common::Attrs::set(&sb, "+i", &[w.join("t/sub/imm")]) else {
        return;
    };
    let out = sb
        .command(saferm_bin())
        .args(["-rf", "t", "u"])
        .current_dir(&w)
        .env("SAFERM_INSTANT", "1")
        .env("SAFERM_INSTANT_MIN", "0")
        .env("SAFERM_FAULT", "no-worker")
        .run();
    // rm's outcome: the immutable file and its directories stay, the rest goes.
    assert_eq!(out.code(), Some(1));
    assert_eq!(
        out.stderr_text(),
        "rm: cannot remove 't/sub/imm': Operation not permitted\n"
    );
    assert!(w.join("t/sub/imm").exists() && !w.join("t/other").exists());
    assert!(!w.join("u").exists());
    assert_eq!(staged(&sb).len(), 1, "u is staged");
    assert_eq!(
        crate::common::archives(&sb.store()).len(),
        1,
        "t's removable part is archived at once"
    );
    unrm_ok(&sb, &w, &["u"]);
    assert_eq!(fs::read(w.join("u")).expect("restored"), b"staged");
}

#[test]
fn a_worker_killed_at_any_moment_loses_nothing_and_unrm_finishes_its_work() {
    const ROUNDS: u64 = 50;
    let mut killed_early = 0;
    for round in 0..ROUNDS {
        let sb = Sandbox::new();
        let w = sb.work("w");
        fs::create_dir_all(w.join("d/sub")).expect("mkdir");
        for i in 0..20 {
            let dir = if i % 2 == 0 { "d" } else { "d/sub" };
            fs::write(
                w.join(dir).join(format!("f{i}")),
                noise(round * 100 + i, 3000),
            )
            .expect("write");
        }
        fs::write(w.join("d/big"), noise(round, 4 << 20)).expect("write");
        let before = snapshot(&w.join("d"));
        saferm_instant(&sb, &w, &["-r", "d"], &[("SAFERM_FAULT", "no-worker")]);
        let mut worker = spawn_quiet(
            sb.std_command(saferm_bin())
                .arg("---drain-staging")
                .current_dir(&w),
        );
        // Spread over the worker's run (a few dozen ms here): from before it has read
        // anything to after it has published.
        std::thread::sleep(Duration::from_micros(round * 2399 % 120_000));
        let _ = worker.kill();
        let status = worker.wait().expect("wait for the worker");
        if !status.success() {
            killed_early += 1;
        }
        // Whatever the kill interrupted, unrm finishes it, and everything comes back.
        unrm_ok(&sb, &w, &["--list"]);
        assert!(staged_is_empty(&sb), "round {round}: {:?}", staged(&sb));
        unrm_ok(&sb, &w, &["d"]);
        assert_eq!(snapshot(&w.join("d")), before, "round {round}");
    }
    eprintln!("{killed_early} of {ROUNDS} workers were killed before they finished");
    assert!(killed_early > 0, "no round killed a worker at work");
}

#[test]
fn many_saferms_staging_at_once_beside_purges_and_checks_lose_nothing() {
    const AT_ONCE: usize = 16;
    let sb = Sandbox::new();
    let w = sb.work("w");
    let mut expected = std::collections::HashMap::new();
    for p in 0..AT_ONCE {
        let dir = w.join(format!("t{p}"));
        fs::create_dir_all(dir.join("sub")).expect("mkdir");
        for i in 0..8u64 {
            fs::write(
                dir.join("sub").join(format!("f{i}")),
                noise(p as u64 * 10 + i, 5000),
            )
            .expect("write");
        }
        expected.insert(format!("t{p}"), snapshot(&dir));
    }
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let maintenance = s.spawn(|| {
            let mut rounds = 0;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                // Nothing may be purged: every deletion is within keep_last.
                unrm_ok(&sb, sb.root(), &["--purge", "--keep", "100"]);
                let out = unrm_ok(&sb, sb.root(), &["--check"]);
                assert!(
                    out.stdout_text().contains("no problems found"),
                    "{}",
                    out.stdout_text()
                );
                rounds += 1;
            }
            rounds
        });
        let stagers: Vec<_> = (0..AT_ONCE)
            .map(|p| {
                let (sb, w) = (&sb, &w);
                s.spawn(move || saferm_instant(sb, w, &["-r", &format!("t{p}")], &[]))
            })
            .collect();
        for h in stagers {
            h.join().expect("a saferm");
        }
        // Let the maintenance loop meet the workers at it.
        std::thread::sleep(Duration::from_millis(300));
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(maintenance.join().expect("maintenance") > 0);
    });
    let out = unrm_ok(&sb, sb.root(), &["--check"]);
    assert!(
        out.stdout_text().contains("no problems found"),
        "{}",
        out.stdout_text()
    );
    assert!(
        staged_is_empty(&sb),
        "{:?}; unrm --check said: {}",
        staged(&sb),
        out.stderr_text()
    );
    for (name, tree) in &expected {
        assert!(!w.join(name).exists(), "{name} is still in place");
        unrm_ok(&sb, &w, &[name.as_str()]);
        assert_eq!(&snapshot(&w.join(name)), tree, "{name}");
    }
}

#[test]
fn large_trees_archived_in_the_background_beside_purges_that_purge_lose_nothing() {
    let sb = Sandbox::new();
    let w = sb.work("w");
    // Older deletions, archived, for the maintenance loop to purge one by one.
    for i in 0..6u64 {
        fs::write(w.join(format!("old{i}")), noise(100 + i, 20_000)).expect("write");
        saferm_instant(&sb, &w, &["--sync", &format!("old{i}")], &[]);
    }
    let old: Vec<String> = crate::common::deletions(&sb)
        .iter()
        .filter_map(|d| d["id"].as_str().map(str::to_string))
        .collect();
    assert_eq!(old.len(), 6);
    // Four trees of 8 MiB (incompressible: the workers take a while) and eight small ones.
    let mut expected = std::collections::HashMap::new();
    for p in 0..12u64 {
        let dir = w.join(format!("t{p}"));
        fs::create_dir_all(dir.join("sub")).expect("mkdir");
        let (files, size) = if p < 4 { (4, 2 << 20) } else { (6, 4000) };
        for i in 0..files {
            let f = dir.join("sub").join(format!("f{i}"));
            fs::write(f, noise(p * 10 + i, size)).expect("write");
        }
        expected.insert(format!("t{p}"), snapshot(&dir));
    }
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let maintenance = s.spawn(|| {
            let mut purged = 0;
            while !done.load(std::sync::atomic::Ordering::SeqCst) || purged < old.len() {
                if let Some(id) = old.get(purged) {
                    let out = unrm_ok(&sb, sb.root(), &["--purge", id]);
                    assert!(
                        out.stdout_text().contains("purged 1 deletion"),
                        "{}",
                        out.stdout_text()
                    );
                    purged += 1;
                }
                unrm_ok(&sb, sb.root(), &["--list"]);
                let out = unrm_ok(&sb, sb.root(), &["--check"]);
                assert!(
                    out.stdout_text().contains("no problems found"),
                    "{}",
                    out.stdout_text()
                );
            }
        });
        let stagers: Vec<_> = (0..12)
            .map(|p| {
                let (sb, w) = (&sb, &w);
                s.spawn(move || saferm_instant(sb, w, &["-r", &format!("t{p}")], &[]))
            })
            .collect();
        for h in stagers {
            h.join().expect("a saferm");
        }
        std::thread::sleep(Duration::from_millis(300));
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        maintenance.join().expect("maintenance");
    });
    let out = unrm_ok(&sb, sb.root(), &["--check"]);
    assert!(
        out.stdout_text().contains("no problems found"),
        "{}",
        out.stdout_text()
    );
    assert!(staged_is_empty(&sb), "{:?}", staged(&sb));
    let left = crate::common::deletions(&sb);
    assert_eq!(left.len(), 12, "the purged ones, and only those, are gone");
    for (name, tree) in &expected {
        assert!(!w.join(name).exists(), "{name} is still in place");
        unrm_ok(&sb, &w, &[name.as_str()]);
        assert_eq!(&snapshot(&w.join(name)), tree, "{name}");
    }
}

#[test]
fn unrm_last_of_a_deletion_not_archived_yet_renames_it_back_as_it_was() {
    use std::os::unix::fs::MetadataExt;
    let sb = Sandbox::new();
    let w = sb.work("w");
    rich_tree_for_unrm(&w);
    let before = full_snapshot(&w.join("t"));
    let inode = fs::metadata(w.join("t/ro/inside")).expect("stat").ino();
    saferm_instant(&sb, &w, &["-rf", "t"], &[("SAFERM_FAULT", "no-worker")]);
    assert_eq!(staged(&sb).len(), 1);
    let out = unrm_ok(&sb, &w, &["--last"]);
    assert_eq!(
        crate::common::when_blanked(&out.stdout_text()),
        "restored 't' (deleted WHEN; put back as it was)\n"
    );
    assert_eq!(full_snapshot(&w.join("t")), before);
    // The same objects, not copies of them; and nothing was archived or is left staged.
    assert_eq!(
        fs::metadata(w.join("t/ro/inside")).expect("stat").ino(),
        inode
    );
    assert!(staged_is_empty(&sb) && manifests(&sb.store()).is_empty());

    // Something in its place since: the staging is archived first, and the ordinary
    // restore brings it back into the directory made since, beside what is new there.
    saferm_instant(&sb, &w, &["-rf", "t"], &[("SAFERM_FAULT", "no-worker")]);
    fs::create_dir(w.join("t")).expect("mkdir");
    fs::write(w.join("t/new"), b"made since").expect("write");
    unrm_ok(&sb, &w, &["--last"]);
    assert!(staged_is_empty(&sb));
    assert_eq!(crate::common::archives(&sb.store()).len(), 1);
    assert_eq!(fs::read(w.join("t/new")).expect("kept"), b"made since");
    assert_eq!(
        fs::read(w.join("t/ro/inside")).expect("restored"),
        b"read-only parent"
    );
}

/// A worker (`saferm ---drain-staging`) started and held at the pause step `fault`.
fn held_worker(sb: &Sandbox, fault: &str) -> std::process::Child {
    let pause = sb.work("pause");
    let worker = spawn_quiet(
        sb.std_command(saferm_bin())
            .arg("---drain-staging")
            .env("SAFERM_FAULT", fault)
            .env("SAFERM_TEST_PAUSE_DIR", &pause),
    );
    wait_paused(&pause, "the worker");
    worker
}

/// With the staged `t` (holding `t/sub/f`) in `w` and a worker held at it before it
/// archives (fault `drain`), `unrm ARGS` stops the worker and renames `t` back: the same
/// tree, the same inodes.
fn put_back_from_a_held_worker(sb: &Sandbox, w: &Path, args: &[&str]) {
    use std::os::unix::fs::MetadataExt;
    let staging = staged(sb);
    let slot = staging.first().expect("a staging").join("0");
    let before = snapshot(&slot);
    let inode = fs::metadata(slot.join("sub/f")).expect("stat").ino();
    let mut worker = held_worker(sb, "drain");
    let out = unrm_ok(sb, w, args);
    assert_eq!(
        crate::common::when_blanked(&out.stdout_text()),
        "restored 't' (deleted WHEN; put back as it was)\n"
    );
    let status = worker.wait().expect("wait for the worker");
    assert!(!status.success(), "the worker was stopped: {status:?}");
    assert_eq!(snapshot(&w.join("t")), before);
    assert_eq!(fs::metadata(w.join("t/sub/f")).expect("stat").ino(), inode);
}

#[test]
fn unrm_last_stops_a_worker_at_the_deletion_and_renames_it_back() {
    let sb = Sandbox::new();
    let w = sb.work("w");
    fs::create_dir_all(w.join("t/sub")).expect("mkdir");
    fs::write(w.join("t/sub/f"), noise(7, 100_000)).expect("write");
    saferm_instant(&sb, &w, &["-r", "t"], &[("SAFERM_FAULT", "no-worker")]);
    put_back_from_a_held_worker(&sb, &w, &["--last"]);
    assert!(staged_is_empty(&sb) && manifests(&sb.store()).is_empty());
}

/// `unrm --last` stops the worker (SIGTERM) just after it has published the staging's
/// deletion and before it has noted so in the staging (fault `published`). The stop waits
/// for the note: the deletion is restored from its archive, and the store holds it once —
/// not a second time, archived again by the next worker from a staging that did not say.
#[test]
fn a_worker_stopped_just_after_publishing_leaves_one_deletion_restored_whole() {
    let sb = Sandbox::new();
    let w = sb.work("w");
    fs::create_dir_all(w.join("t/sub")).expect("mkdir");
    fs::write(w.join("t/sub/f"), noise(7, 100_000)).expect("write");
    fs::write(w.join("t/top"), b"top").expect("write");
    let before = snapshot(&w.join("t"));
    saferm_instant(&sb, &w, &["-r", "t"], &[("SAFERM_FAULT", "no-worker")]);
    let mut worker = held_worker(&sb, "published");
    assert_eq!(
        manifests(&sb.store()).len(),
        1,
        "published before the pause"
    );
    let out = unrm_ok(&sb, &w, &["--last"]);
    let status = worker.wait().expect("wait for the worker");
    assert!(!status.success(), "the worker was stopped: {status:?}");
    assert_eq!(snapshot(&w.join("t")), before, "{}", out.stdout_text());
    assert!(staged_is_empty(&sb));
    // Beside the deletion's manifest, the note that it was restored.
    let deletions: Vec<PathBuf> = manifests(&sb.store())
        .into_iter()
        .filter(|m| !m.to_string_lossy().ends_with(".restored.json"))
        .collect();
    assert_eq!(deletions.len(), 1, "one deletion: {deletions:?}");
}

#[test]
fn a_staged_deletion_is_restored_by_every_name_form_the_whole_operand_by_rename() {
    use std::os::unix::fs::MetadataExt;
    let sb = Sandbox::new();
    let w = sb.work("w");
    let elsewhere = sb.work("elsewhere");
    std::os::unix::fs::symlink(&w, sb.root().join("link")).expect("symlink");
    let make = || {
        fs::create_dir_all(w.join("t/sub")).expect("mkdir");
        fs::write(w.join("t/sub/deep-name"), b"inside").expect("write");
        fs::write(w.join("t/top"), b"top").expect("write");
    };
    let ino = || fs::metadata(w.join("t/sub")).expect("stat").ino();
    let abs = w.join("t").to_string_lossy().into_owned();
    let via_link = sb.root().join("link/t").to_string_lossy().into_owned();
    // Each NAME of the whole operand: renamed back, the same inodes, nothing archived.
    for (cwd, name) in [
        (&w, "t"),
        (&elsewhere, abs.as_str()),
        (&elsewhere, via_link.as_str()),
    ] {
        make();
        let before = full_snapshot(&w.join("t"));
        let inode = ino();
        saferm_instant(&sb, &w, &["-r", "t"], &[("SAFERM_FAULT", "no-worker")]);
        assert_eq!(staged(&sb).len(), 1, "{name}");
        let out = unrm_ok(&sb, cwd, &[name]);
        assert!(
            out.stdout_text().starts_with("restored "),
            "{name}: {}",
            out.stdout_text()
        );
        assert_eq!(full_snapshot(&w.join("t")), before, "{name}");
        assert_eq!(ino(), inode, "{name}: not renamed back");
        assert!(
            staged_is_empty(&sb) && manifests(&sb.store()).is_empty(),
            "{name}"
        );
    }
    // A path inside it, a name found anywhere, a glob, and its id (the staging's, which
    // its deletion keeps): from its archive, made first.
    let id_of = |sb: &Sandbox| {
        let dir = staged(sb).pop().expect("a staging");
        dir.file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned()
    };
    for (cwd, name, restored) in [
        (&w, "t/sub/deep-name", "t/sub/deep-name"),
        (&elsewhere, "deep-name", "t/sub/deep-name"),
        (&w, "t*", "t/top"),
        (&w, "ID", "t/top"),
    ] {
        make();
        let content = fs::read(w.join(restored)).expect("read");
        saferm_instant(&sb, &w, &["-r", "t"], &[("SAFERM_FAULT", "no-worker")]);
        let staging_id = id_of(&sb);
        let name = if name == "ID" {
            staging_id.as_str()
        } else {
            name
        };
        // The id the staging has is the archived deletion's too.
        unrm_ok(&sb, cwd, &[name]);
        assert_eq!(
            fs::read(w.join(restored)).expect("restored"),
            content,
            "{name}"
        );
        assert!(staged_is_empty(&sb), "{name}");
        fs::remove_dir_all(w.join("t")).expect("clean up");
    }
}

#[test]
fn a_path_deleted_again_since_it_was_staged_restores_its_newest_version() {
    let sb = Sandbox::new();
    let w = sb.work("w");
    fs::write(w.join("f"), b"old, staged").expect("write");
    saferm_instant(&sb, &w, &["f"], &[("SAFERM_FAULT", "no-worker")]);
    fs::write(w.join("f"), b"new, archived").expect("write");
    saferm_instant(&sb, &w, &["--sync", "f"], &[("SAFERM_FAULT", "no-worker")]);
    assert_eq!(staged(&sb).len(), 1);
    unrm_ok(&sb, &w, &["f"]);
    assert_eq!(fs::read(w.join("f")).expect("restored"), b"new, archived");
}

#[test]
fn unrm_path_stops_a_worker_at_the_deletion_and_renames_it_back() {
    let sb = Sandbox::new();
    let w = sb.work("w");
    fs::create_dir_all(w.join("t/sub")).expect("mkdir");
    fs::write(w.join("t/sub/f"), noise(9, 100_000)).expect("write");
    fs::write(w.join("u"), b"staged beside it").expect("write");
    saferm_instant(&sb, &w, &["-r", "t", "u"], &[("SAFERM_FAULT", "no-worker")]);
    put_back_from_a_held_worker(&sb, &w, &["t"]);
    // `u`, staged with it, is left staged, and a new worker archives it.
    assert!(!w.join("u").exists());
    wait_until(
        60,
        || format!("u was not archived: {:?}", staged(&sb)),
        || staged_is_empty(&sb) && manifests(&sb.store()).len() == 1,
    );
    unrm_ok(&sb, &w, &["u"]);
    assert_eq!(
        fs::read(w.join("u")).expect("restored"),
        b"staged beside it"
    );
}

#[test]
fn max_size_counts_what_is_staged_and_never_purges_it() {
    let sb = Sandbox::new();
    let w = sb.work("w");
    // Three archived deletions of 100 KiB each (incompressible), then 2 MiB staged.
    for i in 0..3 {
        fs::write(w.join(format!("old{i}")), noise(i, 100 << 10)).expect("write");
        saferm_instant(&sb, &w, &["--sync", &format!("old{i}")], &[]);
    }
    fs::create_dir(w.join("big")).expect("mkdir");
    fs::write(w.join("big/f"), noise(9, 2 << 20)).expect("write");
    let before = snapshot(&w.join("big"));
    saferm_instant(&sb, &w, &["-r", "big"], &[("SAFERM_FAULT", "no-worker")]);
    assert_eq!(staged(&sb).len(), 1);
    // The next run checks the store in full (as it does every few minutes): 300 KiB of
    // archives alone are within 1 MiB, with what is staged they are not.
    fs::write(sb.store().join("retention.json"), b"{}").expect("write retention.json");
    fs::write(w.join("tiny"), b"t").expect("write");
    let limits = [
        ("SAFERM_FAULT", "no-worker"),
        ("SAFERM_MAX_SIZE", "1M"),
        ("SAFERM_KEEP_LAST", "1"),
    ];
    let out = saferm_instant(&sb, &w, &["--sync", "tiny"], &limits);
    assert!(
        out.stderr_text().contains("max_size"),
        "{}",
        out.stderr_text()
    );
    assert_eq!(
        manifests(&sb.store()).len(),
        1,
        "only the deletion just made is left"
    );
    assert_eq!(staged(&sb).len(), 1, "what is staged is never purged");
    unrm_ok(&sb, &w, &["big"]);
    assert_eq!(snapshot(&w.join("big")), before);
}

#[test]
fn a_staging_left_without_a_worker_is_finished_after_the_next_saferm() {
    let sb = Sandbox::new();
    let w = sb.work("w");
    fs::create_dir_all(w.join("left/sub")).expect("mkdir");
    fs::write(w.join("left/sub/f"), b"left behind").expect("write");
    fs::write(w.join("next"), b"the next one").expect("write");
    saferm_instant(&sb, &w, &["-r", "left"], &[("SAFERM_FAULT", "no-worker")]);
    assert_eq!(staged(&sb).len(), 1);
    // The next saferm (here one that is not staged: -v) starts a worker for it.
    saferm_instant(&sb, &w, &["-v", "next"], &[]);
    wait_until(60, || format!("{:?}", staged(&sb)), || staged_is_empty(&sb));
    assert_eq!(crate::common::archives(&sb.store()).len(), 2);
    unrm_ok(&sb, &w, &["left"]);
    assert_eq!(
        fs::read(w.join("left/sub/f")).expect("restored"),
        b"left behind"
    );
}

/// Fields of /proc/PID/stat after the command name: state is [0], session [3], nice [16].
fn proc_stat(pid: &str) -> Option<Vec<String>> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = text.rsplit_once(')')?.1;
    Some(after.split_whitespace().map(str::to_string).collect())
}

#[test]
fn the_worker_runs_in_a_session_of_its_own_at_a_lower_priority() {
    let sb = Sandbox::new();
    let w = sb.work("w");
    fs::create_dir_all(w.join("t")).expect("mkdir");
    fs::write(w.join("t/f"), b"x").expect("write");
    let pause = sb.work("pause");
    let pause_text = pause.to_str().expect("utf-8 path").to_string();
    saferm_instant(
        &sb,
        &w,
        &["-r", "t"],
        &[
            ("SAFERM_FAULT", "drain"),
            ("SAFERM_TEST_PAUSE_DIR", &pause_text),
        ],
    );
    wait_paused(&pause, "the worker");
    // The worker is the process started with this test's pause directory.
    let worker = fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|pid| pid.bytes().all(|b| b.is_ascii_digit()))
        .find(|pid| {
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let environ = fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            cmdline.split(|&b| b == 0).any(|a| a == b"---drain-staging")
                && environ
                    .split(|&b| b == 0)
                    .any(|v| v == format!("SAFERM_TEST_PAUSE_DIR={pause_text}").as_bytes())
        })
        .expect("the worker's process");
    let stat = proc_stat(&worker).expect("the worker's stat");
    let mine = proc_stat("self").expect("this process's stat");
    // Its I/O priority, as util-linux's ionice reads it (ioprio_get).
    let io_priority = tool("ionice", "the worker's I/O priority").map(|ionice| {
        let out = sb
            .std_command(ionice)
            .args(["-p", &worker])
            .output()
            .expect("run ionice");
        assert!(out.status.success(), "ionice -p: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    });
    fs::write(pause.join("resume"), b"").expect("resume");
    assert_eq!(stat[3], worker, "the worker leads a session of its own");
    let nice = |s: &[String]| s[16].parse::<i32>().expect("nice");
    assert_eq!(
        nice(&stat),
        (nice(&mine) + 10).min(19),
        "lower CPU priority"
    );
    if let Some(io_priority) = io_priority {
        assert_eq!(io_priority, "best-effort: prio 7", "lowest best-effort I/O");
    }
    wait_until(60, || format!("{:?}", staged(&sb)), || staged_is_empty(&sb));
}

#[test]
fn a_staging_being_made_is_left_alone_until_its_saferm_is_done() {
    let sb = Sandbox::new();
    let w = sb.work("w");
    fs::create_dir_all(w.join("t")).expect("mkdir");
    fs::write(w.join("t/f"), b"being staged").expect("write");
    let pause = sb.work("pause");
    // saferm held after it made the staging and wrote its origin, before the rename.
    let mut saferm = spawn_quiet(
        sb.std_command(saferm_bin())
            .args(["-r", "t"])
            .current_dir(&w)
            .env("SAFERM_INSTANT", "1")
            .env("SAFERM_INSTANT_MIN", "0")
            .env("SAFERM_FAULT", "staging")
            .env("SAFERM_TEST_PAUSE_DIR", &pause),
    );
    wait_paused(&pause, "saferm");
    // unrm, meanwhile, finishes what is staged: it must wait for this one, not take it
    // for an empty staging and remove it under saferm's feet.
    let mut unrm = spawn_quiet(
        sb.std_command(crate::common::unrm_bin())
            .arg("--list")
            .current_dir(&w),
    );
    std::thread::sleep(Duration::from_millis(300));
    let staging = staged(&sb);
    assert_eq!(staging.len(), 1, "the staging is still there");
    assert!(staging[0].join("origin.json").is_file());
    fs::write(pause.join("resume"), b"").expect("resume");
    assert!(saferm.wait().expect("saferm").success());
    assert!(unrm.wait().expect("unrm").success());
    assert!(!w.join("t").exists());
    unrm_ok(&sb, &w, &["--list"]);
    assert!(staged_is_empty(&sb), "{:?}", staged(&sb));
    unrm_ok(&sb, &w, &["t"]);
    assert_eq!(fs::read(w.join("t/f")).expect("restored"), b"being staged");
}

#[test]
fn a_staged_file_that_cannot_be_read_stays_staged_with_its_origin_and_is_archived_later() {
    let sb = Sandbox::new();
    let w = sb.work("w");
    fs::create_dir_all(w.join("t/sub")).expect("mkdir");
    fs::write(w.join("t/a"), b"archived first").expect("write");
    fs::write(w.join("t/sub/f"), b"read only the second time").expect("write");
    let before = snapshot(&w.join("t"));
    saferm_instant(&sb, &w, &["-r", "t"], &[("SAFERM_FAULT", "no-worker")]);
    // unrm archives what is staged, but f cannot be read: the rest is archived and
    // unlinked; f stays staged, and so does where it came from (it used to be removed
    // with the staging's notes, leaving f to be restored by hand).
    let out = sb
        .command(crate::common::unrm_bin())
        .arg("--list")
        .current_dir(&w)
        .env("SAFERM_FAULT", "read=f")
        .run();
    assert_eq!(out.code(), Some(0), "{}", out.stderr_text());
    assert!(
        out.stderr_text()
            .contains("could not be archived yet: some of what it holds could not be archived"),
        "{}",
        out.stderr_text()
    );
    let staging = staged(&sb);
    assert_eq!(staging.len(), 1, "{staging:?}");
    assert!(staging[0].join("origin.json").is_file());
    assert!(!staging[0].join("published").exists());
    assert!(
        !staging[0].join("0/a").exists(),
        "a is archived and unlinked"
    );
    assert_eq!(
        fs::read(staging[0].join("0/sub/f")).expect("f is kept"),
        b"read only the second time"
    );
    assert_eq!(manifests(&sb.store()).len(), 1);
    // The next unrm archives what is left, beside the first deletion, and --last undoes
    // the one command they both are (not only what was left staged, by a rename).
    let out = unrm_ok(&sb, &w, &["--last"]);
    assert!(staged_is_empty(&sb), "{:?}", staged(&sb));
    assert_eq!(
        crate::common::archives(&sb.store()).len(),
        2,
        "{}",
        out.stdout_text()
    );
    assert_eq!(snapshot(&w.join("t")), before);
}

/// The id of the one staged deletion.
fn only_staged_id(sb: &Sandbox) -> String {
    let staging = staged(sb);
    assert_eq!(staging.len(), 1, "{staging:?}");
    staging[0]
        .file_name()
        .and_then(|n| n.to_str())
        .expect("a staging id")
        .to_string()
}

#[test]
fn unrm_list_and_check_show_a_staged_deletion_that_could_not_be_archived() {
    let sb = Sandbox::new();
    let w = sb.work("w");
    fs::write(w.join("old"), b"archived before").expect("write");
    crate::common::saferm_ok(&sb, &w, &["old"]);
    fs::create_dir_all(w.join("t")).expect("mkdir");
    fs::write(w.join("t/f"), b"staged").expect("write");
    saferm_instant(&sb, &w, &["-r", "t"], &[("SAFERM_FAULT", "no-worker")]);
    let id = only_staged_id(&sb);
    // The store looks full to unrm: the staging cannot be archived.
    let full = |args: &[&str]| {
        sb.command(crate::common::unrm_bin())
            .args(args)
            .current_dir(&w)
            .env("SAFERM_FAULT", "space")
            .run()
    };
    let out = full(&["--list"]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr_text());
    let text = out.stdout_text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    // Newest first: the staged deletion, then the archived one, in the listing's columns.
    let short = lines[1].split(' ').next().unwrap_or_default();
    assert!(id.starts_with(short) && short.len() >= 8, "{text}");
    assert!(
        lines[1].contains(" ?  staged  't'  (not archived yet: could not be archived: not enough space in the store"),
        "{text}"
    );
    assert!(lines[2].ends_with("       'old'"), "no state: {text}");
    let long = full(&["--list", "--long"]).stdout_text();
    assert!(
        long.lines()
            .nth(1)
            .is_some_and(|l| l.starts_with(&format!("{id}  "))),
        "{long}"
    );
    assert!(
        out.stderr_text().contains(&format!(
            "unrm: staged deletion {id} could not be archived yet: not enough space"
        )),
        "{}",
        out.stderr_text()
    );

    let out = full(&["--list", "--json"]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr_text());
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let items = &doc["deletions"];
    let item = &items[0];
    assert_eq!(item["id"].as_str(), Some(id.as_str()), "{items:#}");
    assert_eq!(item["state"].as_str(), Some("staged"));
    assert_eq!(
        item["staged"]["status"].as_str(),
        Some("could_not_be_archived")
    );
    assert!(item["staged"]["why"]
        .as_str()
        .is_some_and(|w| w.starts_with("not enough space")));
    assert!(item["files"].is_null() && item["archive_bytes"].is_null());
    let t = w.canonicalize().expect("canonical").join("t");
    assert_eq!(item["operands"][0]["absolute"]["path"].as_str(), t.to_str());
    assert_eq!(items[1]["state"].as_str(), Some("archived"));
    // A pattern finds it by its path, as it finds archived ones.
    let out = full(&["--list", t.to_str().expect("utf-8 path")]);
    assert_eq!(
        out.stdout_text().lines().count(),
        2,
        "{}",
        out.stdout_text()
    );

    // --check fails for it, saying why, once.
    let out = full(&["--check"]);
    assert_eq!(out.code(), Some(1), "{}", out.stderr_text());
    assert_eq!(
        out.stderr_text()
            .matches(&format!(
                "unrm: staged deletion {id} could not be archived: not enough space"
            ))
            .count(),
        1,
        "{}",
        out.stderr_text()
    );
    assert_eq!(
        out.stdout_text(),
        "checked 1 deletion and 1 staged one not archived yet: 1 problem\n"
    );
    // Named by its id, too.
    let out = full(&["--check", &id]);
    assert_eq!(out.code(), Some(1), "{}", out.stderr_text());
    assert!(!out.stderr_text().contains("no deletion has that id"));

    // With room again, it is archived and listed as any other deletion.
    let out = unrm_ok(&sb, &w, &["--list"]);
    assert!(staged_is_empty(&sb));
    assert!(
        !out.stdout_text().contains("staged"),
        "{}",
        out.stdout_text()
    );
    assert_eq!(
        out.stdout_text().lines().count(),
        3,
        "a header and two rows"
    );
    let out = unrm_ok(&sb, &w, &["--check"]);
    assert_eq!(
        out.stdout_text(),
        "checked 2 deletions: no problems found\n"
    );
}

#[test]
fn unrm_check_reports_staged_deletions_waiting_or_being_archived_without_failing() {
    use std::process::Stdio;
    let sb = Sandbox::new();
    let w = sb.work("w");
    fs::create_dir_all(w.join("t")).expect("mkdir");
    fs::write(w.join("t/f"), b"staged").expect("write");

    // Waiting: staged after unrm --check has finished what was staged (held there by a
    // fault), with no worker.
    let pause = sb.work("pause-unrm");
    let check = sb
        .std_command(crate::common::unrm_bin())
        .arg("--check")
        .current_dir(&w)
        .env("SAFERM_FAULT", "drained")
        .env("SAFERM_TEST_PAUSE_DIR", &pause)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start unrm --check");
    wait_paused(&pause, "unrm --check");
    saferm_instant(&sb, &w, &["-r", "t"], &[("SAFERM_FAULT", "no-worker")]);
    let id = only_staged_id(&sb);
    fs::write(pause.join("resume"), b"").expect("resume");
    let out = check.wait_with_output().expect("unrm --check");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}{stderr}");
    assert_eq!(
        stdout,
        format!(
            "staged deletion {id}: waiting to be archived\nchecked 0 deletions and 1 staged one not archived yet: no problems found\n"
        ),
        "{stderr}"
    );

    // Being archived: a worker at it (held by a fault before it archives); --check does
    // not wait for it.
    let pause = sb.work("pause-worker");
    let mut worker = spawn_quiet(
        sb.std_command(saferm_bin())
            .arg("---drain-staging")
            .env("SAFERM_FAULT", "drain")
            .env("SAFERM_TEST_PAUSE_DIR", &pause),
    );
    wait_paused(&pause, "the worker");
    let out = crate::common::unrm(&sb, &w, &["--check"]);
    fs::write(pause.join("resume"), b"").expect("resume");
    assert_eq!(out.code(), Some(0), "{}", out.stderr_text());
    assert_eq!(
        out.stdout_text(),
        format!(
            "staged deletion {id}: being archived by worker {}\nchecked 0 deletions and 1 staged one not archived yet: no problems found\n",
            worker.id()
        ),
        "{}",
        out.stderr_text()
    );
    assert!(worker.wait().expect("the worker").success());
    assert!(staged_is_empty(&sb));
    let out = unrm_ok(&sb, &w, &["--check"]);
    assert_eq!(out.stdout_text(), "checked 1 deletion: no problems found\n");
}
