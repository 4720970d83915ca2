//! The store over time: retention rules and `unrm --purge` (dry run, explicit ids,
//! keep_last), automatic retention after a saferm run (never the deletion just made, never
//! waiting for the lock), crash-safe purging, stale temp files and incomplete archives,
//! concurrent saferm processes beside a purge, kill -9 at random moments, `unrm --stats`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use saferm::config::{Config, Size};

use crate::common::{
    archives, manifests, noise, saferm_bin, saferm_ok as saferm, snapshot, unrm, unrm_bin, unrm_ok,
    Outcome, Sandbox,
};

fn unrm_env(sb: &Sandbox, args: &[&str], env: &[(&str, &str)]) -> Outcome {
    let mut c = sb.command(unrm_bin()).args(args);
    for (k, v) in env {
        c = c.env(k, v);
    }
    c.run()
}

/// Ids in the store, oldest first.
fn ids(sb: &Sandbox) -> Vec<String> {
    let out = unrm_ok(sb, sb.root(), &["--list", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("list json");
    let mut ids: Vec<String> = v["deletions"]
        .as_array()
        .expect("array")
        .iter()
        .map(|d| d["id"].as_str().expect("id").to_string())
        .collect();
    ids.sort();
    ids
}

/// `n` deletions of one 100 KiB file each, made in order; returns their ids, oldest first.
fn make_deletions(sb: &Sandbox, n: usize) -> Vec<String> {
    let w = sb.work("w");
    for i in 0..n {
        let name = format!("f{i}");
        fs::write(w.join(&name), noise(i as u64 + 1, 100 * 1024)).expect("write");
        saferm(sb, &w, &[&name]);
    }
    let got = ids(sb);
    assert_eq!(got.len(), n);
    got
}

/// The archive and manifest files of deletion `id`.
fn store_files(sb: &Sandbox, id: &str) -> Vec<PathBuf> {
    archives(&sb.store())
        .into_iter()
        .chain(manifests(&sb.store()))
        .filter(|f| {
            f.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(id))
        })
        .collect()
}

#[test]
fn purge_dry_run_prints_and_keeps_everything() {
    let sb = Sandbox::new();
    let before = make_deletions(&sb, 4);
    let out = unrm_ok(&sb, sb.root(), &["--purge", "--keep", "1", "--dry-run"]);
    let text = out.stdout_text();
    for id in &before[..3] {
        assert!(text.contains(&format!("would purge {id}")), "{text}");
    }
    assert!(!text.contains(&before[3]), "{text}");
    assert!(text.contains("would purge 3 deletions"), "{text}");
    assert!(text.contains("nothing was purged"), "{text}");
    assert_eq!(ids(&sb), before);
}

#[test]
fn purge_by_age_spares_the_newer_and_the_kept() {
    let sb = Sandbox::new();
    let old = make_deletions(&sb, 3);
    std::thread::sleep(Duration::from_millis(2100));
    // Ages are measured against a fixed clock (SAFERM_TEST_NOW, debug builds) set 100 s after
    // this moment: every old deletion is then at least 102 s old, the new one at most 100 s,
    // however long the runs below take.
    let before_new = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    let now = (before_new + 100).to_string();
    let w = sb.work("w");
    fs::write(w.join("new"), b"new").expect("write");
    saferm(&sb, &w, &["new"]);
    let all = ids(&sb);
    // --keep 3 protects the newest three: of the old ones only the oldest goes.
    let out = unrm_env(
        &sb,
        &["--purge", "--older-than", "101s", "--keep", "3"],
        &[("SAFERM_TEST_NOW", &now)],
    );
    assert_eq!(out.code(), Some(0), "{}", out.stderr_text());
    assert!(out.stdout_text().contains(&format!("purged {}", old[0])));
    assert_eq!(ids(&sb), all[1..].to_vec());
    assert!(store_files(&sb, &old[0]).is_empty(), "files left behind");
    // The configured max_age, without options.
    unrm_ok(&sb, sb.root(), &["--purge"]); // defaults: 30 days, nothing that old
    assert_eq!(ids(&sb).len(), 3);
    let out = unrm_env(
        &sb,
        &["--purge"],
        &[
            ("SAFERM_MAX_AGE", "101s"),
            ("SAFERM_KEEP_LAST", "0"),
            ("SAFERM_TEST_NOW", &now),
        ],
    );
    assert_eq!(out.code(), Some(0), "{}", out.stderr_text());
    assert_eq!(ids(&sb), vec![all[3].clone()]);
}

#[test]
fn purge_by_size_goes_oldest_first_until_the_store_fits() {
    let sb = Sandbox::new();
    let all = make_deletions(&sb, 5);
    // Each archive holds 100 KiB of noise: a little over 100 KiB.
    let out = unrm_ok(
        &sb,
        sb.root(),
        &["--purge", "--max-size", "250K", "--keep", "0"],
    );
    assert!(
        out.stdout_text().contains("purged 3 deletions"),
        "{}",
        out.stdout_text()
    );
    assert_eq!(ids(&sb), all[3..].to_vec());
    // The configured max_size, as SAFERM_MAX_SIZE; keep_last still protects.
    let out = unrm_env(
        &sb,
        &["--purge"],
        &[("SAFERM_MAX_SIZE", "1"), ("SAFERM_KEEP_LAST", "1")],
    );
    assert_eq!(out.code(), Some(0), "{}", out.stderr_text());
    assert_eq!(ids(&sb), all[4..].to_vec());
}

#[test]
fn purge_for_free_space_keeps_the_last_ones() {
    let sb = Sandbox::new();
    let all = make_deletions(&sb, 4);
    // 100% free can never be reached: everything but keep_last goes.
    let out = unrm_env(
        &sb,
        &["--purge"],
        &[("SAFERM_MIN_FREE", "100%"), ("SAFERM_KEEP_LAST", "2")],
    );
    assert_eq!(out.code(), Some(0), "{}", out.stderr_text());
    assert_eq!(ids(&sb), all[2..].to_vec());
}

#[test]
fn purge_named_ids_even_within_keep_last_and_nothing_on_a_typo() {
    let sb = Sandbox::new();
    let all = make_deletions(&sb, 3);
    let out = unrm(&sb, sb.root(), &["--purge", &all[2], "nosuchid"]);
    assert_eq!(out.code(), Some(1));
    assert!(out
        .stderr_text()
        .contains("nosuchid: no deletion has that id"));
    assert!(out.stderr_text().contains("nothing was purged"));
    assert_eq!(ids(&sb), all);
    // A whole id and a prefix; keep_last (10 by default) does not protect a named one.
    let prefix = &all[0][..all[0].len() - 3];
    let out = unrm_ok(&sb, sb.root(), &["--purge", &all[2], prefix]);
    assert!(out.stdout_text().contains("purged 2 deletions"));
    assert_eq!(ids(&sb), vec![all[1].clone()]);
    unrm_ok(&sb, sb.root(), &["--check"]);
}

/// Make the next `after_saferm_run` check in full, as it does every few minutes (between
/// full checks it looks only at the free space and the archive just made).
fn forget_last_check(sb: &Sandbox) {
    fs::write(sb.store().join("retention.json"), b"{}").expect("write retention.json");
}

fn config_with(f: impl FnOnce(&mut Config)) -> Config {
    let mut c = Config::defaults();
    f(&mut c);
    c
}

#[test]
fn automatic_retention_spares_keep_last_and_the_deletion_just_made() {
    let sb = Sandbox::new();
    let all = make_deletions(&sb, 5);
    let store = sb.open_store();
    forget_last_check(&sb);
    // Within the limits: nothing happens, nothing is printed.
    let lines = saferm::retention::after_saferm_run(&store, &Config::defaults(), Some(&all[4]));
    assert!(lines.is_empty(), "{lines:?}");
    assert_eq!(ids(&sb), all);
    // A store limit of 1 byte: everything goes but the newest two and the one just made
    // (here the oldest, as if its clock were behind).
    let config = config_with(|c| {
        c.max_size.value = Size::Bytes(1);
        c.keep_last.value = 2;
    });
    let lines = saferm::retention::after_saferm_run(&store, &config, Some(&all[0]));
    assert!(
        lines
            .first()
            .is_some_and(|l| l.starts_with("saferm: purged 2 old deletions (")),
        "{lines:?}"
    );
    assert!(lines.iter().any(|l| l.contains(&all[1])), "{lines:?}");
    assert_eq!(
        ids(&sb),
        vec![all[0].clone(), all[3].clone(), all[4].clone()]
    );
    unrm_ok(&sb, sb.root(), &["--check"]);
}

#[test]
fn between_full_checks_only_free_space_and_size_are_looked_at() {
    let sb = Sandbox::new();
    let all = make_deletions(&sb, 3);
    let store = sb.open_store();
    forget_last_check(&sb);
    assert!(saferm::retention::after_saferm_run(&store, &Config::defaults(), None).is_empty());
    // A stale temp file waits for the next full check...
    let tmp = sb.store().join("tmp").join("old.tmp");
    fs::write(&tmp, b"x").expect("write");
    age(&tmp, 7200);
    saferm::retention::after_saferm_run(&store, &Config::defaults(), Some(&all[2]));
    assert!(tmp.exists());
    // ...but a store over its size, counting the archive just made, is checked at once.
    let config = config_with(|c| {
        c.max_size.value = Size::Bytes(150 * 1024);
        c.keep_last.value = 0;
    });
    let lines = saferm::retention::after_saferm_run(&store, &config, Some(&all[2]));
    assert!(!lines.is_empty());
    assert!(!tmp.exists());
    assert_eq!(ids(&sb), all[2..].to_vec());
}

#[test]
fn automatic_retention_never_waits_for_the_lock() {
    let sb = Sandbox::new();
    let all = make_deletions(&sb, 3);
    let store = sb.open_store();
    let config = config_with(|c| {
        c.max_size.value = Size::Bytes(1);
        c.keep_last.value = 0;
    });
    let writer = store.lock_shared().expect("lock");
    // Were it to wait for the lock this thread holds, it would never return: give it a
    // thread and a generous bound, so that a wait fails the test instead of hanging it.
    let (tx, rx) = std::sync::mpsc::channel();
    let (bg_store, bg_config) = (sb.open_store(), config.clone());
    std::thread::spawn(move || {
        let _ = tx.send(saferm::retention::after_saferm_run(
            &bg_store, &bg_config, None,
        ));
    });
    let lines = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("retention returns while another process writes, without waiting");
    assert!(lines.is_empty(), "{lines:?}");
    assert_eq!(ids(&sb), all);
    drop(writer);
    saferm::retention::after_saferm_run(&store, &config, None);
    assert!(ids(&sb).is_empty());
}

/// Starts `program args` in `cwd` while the test holds the store lock, waits for the line
/// that says it waits, interrupts it with SIGINT and requires it to die of it within 5 s
/// (generous: the lock stays held for the whole test, so without the fix it would never go).
/// Returns that line.
fn interrupt_while_waiting(sb: &Sandbox, program: &Path, args: &[&str], cwd: &Path) -> String {
    use std::io::{BufRead, BufReader};
    use std::os::unix::process::ExitStatusExt;
    let mut child = sandboxed(sb, program)
        .args(args)
        .current_dir(cwd)
        .spawn()
        .expect("spawn");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let line = rx.recv_timeout(Duration::from_secs(30));
    let pid = i32::try_from(child.id()).expect("pid");
    // SAFETY: kill has no memory effects; pid is our child, not yet reaped.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let line =
        line.unwrap_or_else(|_| panic!("{program:?} says nothing while it waits for the lock"));
    let status = status.unwrap_or_else(|| panic!("{program:?} still waits 5 s after Ctrl-C"));
    assert_eq!(status.signal(), Some(libc::SIGINT), "{status:?}");
    let more: Vec<String> = rx.try_iter().collect();
    assert!(more.is_empty(), "{more:?}");
    line
}

/// saferm once waited for a held store lock in silence and ignored Ctrl-C until the other
/// process let go. It must say that it waits and for whom, and Ctrl-C must end it at once,
/// dying of SIGINT (the shell's 130) with the file still there and no temp file left.
/// unrm says so too while a restore waits (Ctrl-C kills it there: it has done nothing).
#[test]
fn ctrl_c_ends_a_wait_for_the_store_lock() {
    let sb = Sandbox::new();
    let work = sb.work("w");
    fs::write(work.join("g"), b"deleted").expect("g");
    saferm(&sb, &work, &["g"]);
    fs::write(work.join("f"), b"keep").expect("f");
    let store = sb.open_store();
    let purge = store
        .lock_exclusive()
        .expect("hold the lock as a purge does");
    let me = std::process::id();
    let line = interrupt_while_waiting(&sb, &saferm_bin(), &["f"], &work);
    assert!(
        line.contains(": waiting for the saferm store, locked by process ")
            && line.contains(&format!("process {me} ("))
            && line.ends_with("Ctrl-C stops without removing anything"),
        "{line}"
    );
    assert_eq!(fs::read(work.join("f")).expect("f is kept"), b"keep");
    let line = interrupt_while_waiting(&sb, &unrm_bin(), &["g"], &work);
    assert!(
        line.starts_with(&format!(
            "unrm: waiting for the store lock, held by process {me} ("
        )),
        "{line}"
    );
    assert!(!work.join("g").exists());
    drop(purge);
    let tmp: Vec<_> = fs::read_dir(sb.store().join("tmp"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(tmp.is_empty(), "{tmp:?}");
    assert_eq!(ids(&sb).len(), 1, "only g's deletion");
}

/// Runs `program args` as root with root's passwd home (/root) replaced, in a private
/// mount namespace, by `root_home`: the test sees where root's store goes without touching
/// the real /root. None (and a loud skip) when not root or namespaces are not allowed,
/// unless SAFERM_TEST_REQUIRE_ALL=1.
fn as_root_with_home(
    sb: &Sandbox,
    root_home: &Path,
    env: &[(&str, &Path)],
    cwd: &Path,
    program: &Path,
    args: &[&str],
) -> Option<std::process::Output> {
    let required = std::env::var_os("SAFERM_TEST_REQUIRE_ALL").is_some_and(|v| v == "1");
    let skip = |why: String| {
        assert!(!required, "{why} and SAFERM_TEST_REQUIRE_ALL=1");
        eprintln!("SKIPPED: {why}");
        None
    };
    if !crate::common::is_root() {
        return skip("this test runs saferm as root: run the tests as root".to_string());
    }
    // /root is mounted over: a checkout under it (and so the binary) would vanish. The
    // sandbox is never under /root (tests/common), so the program runs from there.
    let exe_dir = sb.work("exe");
    let exe = exe_dir.join(program.file_name().expect("a program name"));
    if fs::symlink_metadata(&exe).is_err() {
        fs::hard_link(program, &exe)
            .or_else(|_| fs::copy(program, &exe).map(|_| ()))
            .expect("put the program in the sandbox");
    }
    let program = exe.as_path();
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "--"])
        .args([
            "sh",
            "-c",
            "mount --bind \"$1\" /root && shift && exec \"$@\"",
            "sh",
        ])
        .arg(root_home)
        .arg(program)
        .args(args)
        .current_dir(cwd)
        .env_clear()
        .env("PATH", "/usr/bin:/bin:/usr/sbin:/sbin")
        .env("LC_ALL", "C")
        .env("SAFERM_MIN_FREE", "0");
    crate::common::sandbox_waivers(&mut cmd, sb.root());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run unshare");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.starts_with("unshare:") || stderr.starts_with("mount:") {
        return skip(format!(
            "no private mount namespace here ({})",
            stderr.trim()
        ));
    }
    Some(out)
}

/// `sudo -E rm f` once made root create a root-owned ~/.local/share/saferm in the user's
/// home, which broke the user's own rm from then on. As root, XDG_DATA_HOME,
/// XDG_CONFIG_HOME and HOME that belong to another user are ignored: the deletion lands
/// in root's store (root's passwd home), the user's config is not read, and nothing is
/// created in the user's home. unrm finds it there too. SAFERM_STORE still wins.
#[test]
fn sudo_e_leaves_the_users_home_alone() {
    let sb = Sandbox::new();
    let work = sb.work("w");
    fs::write(work.join("f"), b"root's file").expect("f");
    let user_home = sb.work("user-home");
    // The user's config would move the store; root must not read it.
    let decoy = sb.root().join("decoy-store");
    fs::create_dir_all(user_home.join(".config/saferm")).expect("config dir");
    fs::write(
        user_home.join(".config/saferm/config.toml"),
        format!("store = \"{}\"\n", decoy.display()),
    )
    .expect("config");
    crate::common::chown_path_tree(&user_home, crate::common::NOBODY, crate::common::NOBODY);
    let before = snapshot(&user_home);
    let root_home = sb.work("root-home");
    let env = [
        ("HOME", user_home.as_path()),
        ("XDG_DATA_HOME", &user_home.join(".local/share")),
        ("XDG_CONFIG_HOME", &user_home.join(".config")),
    ];
    let Some(out) = as_root_with_home(&sb, &root_home, &env, &work, &saferm_bin(), &["f"]) else {
        return;
    };
    assert!(out.status.success(), "{out:?}");
    assert!(!work.join("f").exists());
    assert_eq!(
        snapshot(&user_home),
        before,
        "root wrote in the user's home"
    );
    assert!(!decoy.exists(), "root read the user's config");
    let root_store = root_home.join(".local/share/saferm");
    assert!(root_store.join("archives").is_dir(), "not in root's store");
    // unrm follows the same rule: it finds the deletion in root's store and restores it.
    let out = as_root_with_home(&sb, &root_home, &env, &work, &unrm_bin(), &["f"]).expect("unrm");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(fs::read(work.join("f")).expect("restored"), b"root's file");
    assert_eq!(
        snapshot(&user_home),
        before,
        "unrm wrote in the user's home"
    );
    // An explicit SAFERM_STORE is taken as given.
    let explicit = sb.root().join("explicit");
    let env_explicit = [
        ("HOME", user_home.as_path()),
        ("SAFERM_STORE", explicit.as_path()),
    ];
    let out = as_root_with_home(&sb, &root_home, &env_explicit, &work, &saferm_bin(), &["f"])
        .expect("saferm");
    assert!(out.status.success(), "{out:?}");
    assert!(explicit.join("archives").is_dir());
}

#[test]
fn a_purge_that_crashes_after_the_manifest_is_finished_by_check_not_resurrected() {
    let sb = Sandbox::new();
    let all = make_deletions(&sb, 3);
    let out = unrm_env(
        &sb,
        &["--purge", &all[0]],
        &[("SAFERM_FAULT", "purge-crash")],
    );
    assert_eq!(
        out.code(),
        None,
        "the fault hook kills unrm: {}",
        out.status_text()
    );
    // The deletion is gone from every listing; its archive is still there, with a marker.
    assert_eq!(ids(&sb), all[1..].to_vec());
    let left = store_files(&sb, &all[0]);
    assert!(
        left.iter()
            .any(|p| p.to_string_lossy().ends_with(".tar.zst")),
        "{left:?}"
    );
    assert!(
        left.iter()
            .any(|p| p.to_string_lossy().ends_with(".purging")),
        "{left:?}"
    );
    // --repair must not rebuild its manifest from the archive: the marker says why.
    let out = unrm_ok(&sb, sb.root(), &["--check", "--repair"]);
    assert!(
        out.stdout_text()
            .contains(&format!("removed what was left of deletion {}", all[0])),
        "{}",
        out.stdout_text()
    );
    assert!(
        !out.stdout_text().contains("rebuilt"),
        "{}",
        out.stdout_text()
    );
    assert!(store_files(&sb, &all[0]).is_empty());
    assert_eq!(ids(&sb), all[1..].to_vec());
    unrm_ok(&sb, sb.root(), &["--check"]);

    // The same crash, then a plain --check, then the next purge.
    let out = unrm_env(
        &sb,
        &["--purge", &all[1]],
        &[("SAFERM_FAULT", "purge-crash")],
    );
    assert_eq!(out.code(), None);
    let out = unrm_ok(&sb, sb.root(), &["--check"]);
    assert!(out.stdout_text().contains("its purge was interrupted"));
    assert!(store_files(&sb, &all[1]).is_empty());
    assert_eq!(ids(&sb), all[2..].to_vec());
}

fn age(path: &Path, secs: u64) {
    let f = fs::File::options().write(true).open(path).expect("open");
    f.set_modified(SystemTime::now() - Duration::from_secs(secs))
        .expect("set mtime");
}

#[test]
fn stale_temp_files_are_swept_fresh_ones_kept() {
    let sb = Sandbox::new();
    make_deletions(&sb, 1);
    let tmp = sb.store().join("tmp");
    fs::write(tmp.join("old.1.tmp"), b"x").expect("write");
    fs::write(tmp.join("new.1.tmp"), b"x").expect("write");
    age(&tmp.join("old.1.tmp"), 7200);
    let out = unrm_ok(&sb, sb.root(), &["--check"]);
    assert!(out.stdout_text().contains("removed 1 stale temp file"));
    assert!(!tmp.join("old.1.tmp").exists());
    assert!(tmp.join("new.1.tmp").exists());
    // And after a saferm run.
    fs::write(tmp.join("old.2.tmp"), b"x").expect("write");
    age(&tmp.join("old.2.tmp"), 7200);
    let store = sb.open_store();
    forget_last_check(&sb);
    saferm::retention::after_saferm_run(&store, &Config::defaults(), None);
    assert!(!tmp.join("old.2.tmp").exists());
    assert!(tmp.join("new.1.tmp").exists());
}

/// A copy of a real archive cut short, filed under a new id, as a killed saferm leaves it.
fn plant_incomplete_archive(sb: &Sandbox, id: &str, of: &str) -> PathBuf {
    let full = store_files(sb, of)
        .into_iter()
        .find(|p| p.to_string_lossy().ends_with(".tar.zst"))
        .expect("archive");
    let bytes = fs::read(&full).expect("read");
    let cut = full.with_file_name(format!("{id}.tar.zst"));
    fs::write(&cut, &bytes[..bytes.len() / 2]).expect("write");
    cut
}

#[test]
fn incomplete_archives_are_reported_and_removed_complete_orphans_rebuilt() {
    let sb = Sandbox::new();
    let all = make_deletions(&sb, 2);
    let cut = plant_incomplete_archive(&sb, "20200101T000000.000000000Z-1-00000000-cut", &all[0]);
    let out = unrm(&sb, sb.root(), &["--check"]);
    assert_eq!(out.code(), Some(1));
    assert!(
        out.stderr_text().contains("is incomplete"),
        "{}",
        out.stderr_text()
    );
    let out = unrm_ok(&sb, sb.root(), &["--check", "--repair"]);
    assert!(out.stdout_text().contains("removed the incomplete archive"));
    assert!(!cut.exists());
    // After a saferm run: an old incomplete archive goes, a lost manifest comes back.
    let cut = plant_incomplete_archive(&sb, "20200101T000000.000000000Z-2-00000000-cut", &all[0]);
    age(&cut, 7200);
    let manifest = store_files(&sb, &all[1])
        .into_iter()
        .find(|p| p.to_string_lossy().ends_with(".json"))
        .expect("manifest");
    fs::rename(&manifest, manifest.with_extension("lost")).expect("lose the manifest");
    let archive = store_files(&sb, &all[1])
        .into_iter()
        .find(|p| p.to_string_lossy().ends_with(".tar.zst"))
        .expect("archive");
    age(&archive, 7200);
    let store = sb.open_store();
    forget_last_check(&sb);
    let lines = saferm::retention::after_saferm_run(&store, &Config::defaults(), None);
    assert!(!cut.exists(), "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("rebuilt the lost manifest")),
        "{lines:?}"
    );
    assert_eq!(ids(&sb), all);
    unrm_ok(&sb, sb.root(), &["--check"]);
}

#[test]
fn an_orphan_that_cannot_be_rebuilt_is_set_aside_once() {
    let sb = Sandbox::new();
    let all = make_deletions(&sb, 1);
    let full = store_files(&sb, &all[0])
        .into_iter()
        .find(|p| p.to_string_lossy().ends_with(".tar.zst"))
        .expect("archive");
    let mut bytes = fs::read(&full).expect("read");
    bytes[50_000] ^= 0xff; // inside the (stored) data block: the frames still walk
    let bad = full.with_file_name("20200101T000000.000000000Z-3-00000000-bad.tar.zst");
    fs::write(&bad, &bytes).expect("write");
    age(&bad, 7200);
    let store = sb.open_store();
    forget_last_check(&sb);
    let lines = saferm::retention::after_saferm_run(&store, &Config::defaults(), None);
    assert!(
        lines.iter().any(|l| l.contains("cannot be rebuilt")),
        "{lines:?}"
    );
    let aside = bad.with_file_name("20200101T000000.000000000Z-3-00000000-bad.tar.zst.damaged");
    assert!(aside.exists() && !bad.exists());
    // Not looked at again.
    forget_last_check(&sb);
    assert!(saferm::retention::after_saferm_run(&store, &Config::defaults(), None).is_empty());
    let out = unrm(&sb, sb.root(), &["--check"]);
    assert_eq!(out.code(), Some(1));
    assert!(
        out.stderr_text().contains("set aside"),
        "{}",
        out.stderr_text()
    );
}

#[test]
fn stats_names_the_filesystem_the_settings_and_the_alias() {
    let sb = Sandbox::new();
    let all = make_deletions(&sb, 2);
    let cfg = sb.config().join("saferm");
    fs::create_dir_all(&cfg).expect("mkdir");
    fs::write(cfg.join("config.toml"), "keep_last = 4\n").expect("write config");
    let out = unrm_env(
        &sb,
        &["--stats"],
        &[("SAFERM_ALIAS", "bash"), ("SAFERM_MAX_AGE", "7d")],
    );
    assert_eq!(out.code(), Some(0), "{}", out.stderr_text());
    let text = out.stdout_text();
    let fstype = Command::new("stat")
        .args(["-f", "-c", "%T"])
        .arg(sb.store())
        .output()
        .expect("stat -f");
    let fstype = String::from_utf8_lossy(&fstype.stdout).trim().to_string();
    let expect_fs = if fstype == "ext2/ext3" {
        "ext4".to_string()
    } else {
        fstype
    };
    for want in [
        format!("store:          {}", sb.store().display()),
        format!("filesystem:     {expect_fs}"),
        "deletions:      2".to_string(),
        format!("({})", all[0]),
        format!("({})", all[1]),
        "shell snippet:  the bash snippet was loaded in a parent shell (SAFERM_ALIAS=bash)"
            .to_string(),
        "$SAFERM_MAX_AGE".to_string(),
        format!("{}", cfg.join("config.toml").display()),
    ] {
        assert!(text.contains(&want), "missing {want:?} in\n{text}");
    }
    assert!(
        text.lines()
            .any(|l| l.contains("keep_last") && l.contains("4") && l.contains("config.toml")),
        "{text}"
    );
    let out = unrm_ok(&sb, sb.root(), &["--doctor"]);
    assert!(out
        .stdout_text()
        .contains("shell snippet:  none loaded in a parent shell (SAFERM_ALIAS is unset)"));
    let out = unrm_ok(&sb, sb.root(), &["--stats", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["deletions"], 2);
    assert_eq!(v["shell_snippet"], serde_json::Value::Null);
    assert_eq!(v["oldest"]["id"], all[0].as_str());
    assert!(v["filesystem"]["size_bytes"]
        .as_u64()
        .is_some_and(|s| s > 0));
    assert!(v["settings"].as_array().is_some_and(|s| s
        .iter()
        .any(|x| x["name"] == "keep_last" && x["value"] == "4")));
}

/// The sandbox's environment for a `Command` that must be spawned, not run to completion.
fn sandboxed(sb: &Sandbox, program: &Path) -> Command {
    let mut c = sb.std_command(program);
    c.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

/// A tree of small files and one larger one, each with content unique to `seed`.
fn build_round_tree(dir: &Path, seed: u64, files: usize) {
    fs::create_dir_all(dir.join("sub/deeper")).expect("mkdir");
    for i in 0..files {
        let sub = if i % 3 == 0 { "sub/deeper" } else { "sub" };
        fs::write(
            dir.join(sub).join(format!("f{i}")),
            noise(seed * 1000 + i as u64, 2000 + i * 7),
        )
        .expect("write");
    }
    fs::write(dir.join("big"), noise(seed, 3 << 20)).expect("write");
}

/// Several first runs at once (parallel cleanup jobs on a new machine) all make, and use,
/// the same store: none may take another's half-made store for a foreign directory.
#[test]
fn first_runs_at_once_share_the_store_they_make() {
    const AT_ONCE: usize = 12;
    for round in 0..8 {
        let sb = Sandbox::new();
        let w = sb.work("w");
        for i in 0..AT_ONCE {
            fs::write(w.join(format!("f{i}")), format!("{round}-{i}")).expect("write");
        }
        assert!(
            !sb.store().exists(),
            "the store must not exist before the first run"
        );
        let children: Vec<_> = (0..AT_ONCE)
            .map(|i| {
                let mut c = sandboxed(&sb, &saferm_bin());
                c.current_dir(&w).arg(format!("f{i}"));
                c.spawn().expect("spawn saferm")
            })
            .collect();
        for (i, child) in children.into_iter().enumerate() {
            let out = child.wait_with_output().expect("wait");
            assert!(
                out.status.success(),
                "round {round}, f{i}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(!w.join(format!("f{i}")).exists());
        }
        assert_eq!(manifests(&sb.store()).len(), AT_ONCE, "round {round}");
    }
}

#[test]
fn concurrent_saferms_beside_a_purge_lose_nothing() {
    let sb = Sandbox::new();
    let w = sb.work("w");
    const WORKERS: u64 = 8;
    const ROUNDS: u64 = 3;
    let mut expected = std::collections::HashMap::new();
    for p in 0..WORKERS {
        for r in 0..ROUNDS {
            let dir = w.join(format!("t{p}-{r}"));
            build_round_tree(&dir, p * 100 + r + 1, 30);
            expected.insert(format!("t{p}-{r}"), snapshot(&dir));
        }
    }
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let purger = s.spawn(|| {
            let mut purges = 0;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                let out = unrm(&sb, sb.root(), &["--purge", "--keep", "6"]);
                assert_eq!(out.code(), Some(0), "{}", out.stderr_text());
                purges += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            purges
        });
        let workers: Vec<_> = (0..WORKERS)
            .map(|p| {
                let sb = &sb;
                let w = &w;
                s.spawn(move || {
                    for r in 0..ROUNDS {
                        saferm(sb, w, &["-r", &format!("t{p}-{r}")]);
                    }
                })
            })
            .collect();
        for h in workers {
            h.join().expect("worker");
        }
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(purger.join().expect("purger") > 0);
    });
    for name in expected.keys() {
        assert!(!w.join(name).exists(), "{name} was not removed");
    }
    let out = unrm_ok(&sb, sb.root(), &["--check"]);
    assert!(out.stdout_text().contains("no problems found"));
    // Every deletion left is restorable and holds what was removed.
    let left = ids(&sb);
    assert!(left.len() >= 6, "{left:?}");
    for id in &left {
        let label = id.rsplit('-').take(2).collect::<Vec<_>>();
        let name = format!("{}-{}", label[1], label[0]);
        unrm_ok(&sb, sb.root(), &[id.as_str()]);
        assert_eq!(
            snapshot(&w.join(&name)),
            expected[&name],
            "{name} from {id}"
        );
    }
}

#[test]
fn kill_9_at_random_moments_loses_nothing() {
    let sb = Sandbox::new();
    let w = sb.work("w");
    let started = Instant::now();
    let mut rounds = Vec::new();
    let mut seed = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(7)
        | 1;
    // How long one uninterrupted run takes, so that the kills spread over all of it.
    let probe = w.join("probe");
    build_round_tree(&probe, 999, 300);
    let t0 = Instant::now();
    saferm(&sb, &w, &["-r", "probe"]);
    let span = (t0.elapsed().as_micros() as u64 * 6 / 5).max(1000);
    for r in 0..30u64 {
        if started.elapsed() > Duration::from_secs(20) {
            break;
        }
        let name = format!("k{r}");
        let dir = w.join(&name);
        build_round_tree(&dir, r + 1, 300);
        let before = snapshot(&dir);
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let delay = Duration::from_micros(seed % span);
        let mut child = sandboxed(&sb, &saferm_bin())
            .current_dir(&w)
            .args(["-r", &name])
            .spawn()
            .expect("spawn saferm");
        std::thread::sleep(delay);
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        rounds.push((name, before));
    }
    // Where the kills landed: before anything was removed, during, or after.
    let (mut intact, mut gone, mut partly) = (0, 0, 0);
    for (name, before) in &rounds {
        let dir = w.join(name);
        if !dir.exists() {
            gone += 1;
        } else if snapshot(&dir) == *before {
            intact += 1;
        } else {
            partly += 1;
        }
    }
    eprintln!("kill -9: {intact} intact, {partly} partly removed, {gone} removed");
    // Whatever the kills left: repair, then a clean check.
    let out = unrm(&sb, sb.root(), &["--check", "--repair"]);
    assert_eq!(
        out.code(),
        Some(0),
        "{}\n{}",
        out.stdout_text(),
        out.stderr_text()
    );
    unrm_ok(&sb, sb.root(), &["--check"]);
    // Every original is in place or comes back.
    for (name, before) in &rounds {
        let dir = w.join(name);
        if dir.exists() && snapshot(&dir) == *before {
            continue;
        }
        let out = unrm(&sb, sb.root(), &[dir.to_str().expect("utf-8")]);
        assert_eq!(
            snapshot(&dir),
            *before,
            "{name} after unrm: {}",
            out.stderr_text()
        );
    }
    assert!(rounds.len() >= 5);
}
