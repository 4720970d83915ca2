//! saferm's own guarantees, beyond rm compatibility: what lands in the archive and how it
//! restores with GNU tar alone, failure at every pipeline step, the store's refusals and its
//! protection, and objects that change while they are being archived.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::full::{full_snapshot, set_xattr};
use crate::common::rich::rich_tree_for_tar;
use crate::common::{
    archives, build_tree, files_under, is_root, manifests, noise, openpty, paths, saferm,
    saferm_bin, snapshot, unrm_bin, unrm_ok, Outcome, Sandbox, Tmpfs, GNU_RM, NOBODY,
};

/// Run saferm with `SAFERM_FAULT` set to `step` (honoured by debug builds only).
fn with_fault(sb: &Sandbox, cwd: &Path, args: &[&str], step: &str) -> Outcome {
    sb.command(saferm_bin())
        .current_dir(cwd)
        .args(args)
        .env("SAFERM_FAULT", step)
        .run()
}

#[test]
fn round_trip_every_object_type_through_gnu_tar() {
    assert!(
        is_root(),
        "this test creates devices and other owners: run the tests as root"
    );
    let sb = Sandbox::new();
    let work = sb.work("w");
    rich_tree_for_tar(&work);
    let before = full_snapshot(&work.join("t"));
    let out = saferm(&sb, &work, &["-r", "t"]);
    assert_eq!(out.code(), Some(0), "saferm failed: {}", out.stderr_text());
    assert_eq!(out.stderr_text(), "");
    assert!(!work.join("t").exists(), "t was not removed");

    let found = archives(&sb.store());
    assert_eq!(found.len(), 1, "one archive per invocation: {found:?}");
    let scratch = sb.work("scratch");
    let tar = Command::new("tar")
        .args(["--zstd", "-xpf"])
        .arg(&found[0])
        .args(["--xattrs", "--xattrs-include=user.*", "-C"])
        .arg(&scratch)
        .output()
        .expect("run GNU tar");
    assert!(
        tar.status.success(),
        "GNU tar failed: {}",
        String::from_utf8_lossy(&tar.stderr)
    );
    let restored_root = scratch
        .join(work.strip_prefix("/").expect("absolute"))
        .join("t");
    let after = full_snapshot(&restored_root);
    // GNU tar does not set symlink mtimes, and the top directory's changes as it fills it.
    let tar_keeps = |mut v: Vec<crate::common::full::Full>| {
        for f in &mut v {
            if f.kind == 'l' || f.path == Path::new(".") {
                f.mtime_ns = 0;
            }
        }
        v
    };
    let (before, after) = (tar_keeps(before), tar_keeps(after));
    // The top directory's own mtime changes as GNU tar fills it; everything else must match.
    assert_eq!(before.len(), after.len(), "object count differs");
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(
            b,
            a,
            "object {} differs after the round trip",
            b.path.display()
        );
    }

    // The manifest names every entry with its blake3, which matches the content.
    let m = manifests(&sb.store());
    assert_eq!(m.len(), 1);
    let json: serde_json::Value =
        serde_json::from_slice(&fs::read(&m[0]).expect("read manifest")).expect("json");
    let entries = json["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), before.len(), "manifest entries");
    let small = entries
        .iter()
        .find(|e| e["path"].as_str().is_some_and(|p| p.ends_with("/t/small")))
        .expect("small in manifest");
    assert_eq!(
        small["blake3"].as_str(),
        Some(blake3::hash(b"hello").to_hex().as_str())
    );
    assert_eq!(
        json["archive"]["blake3"].as_str(),
        Some(
            blake3::hash(&fs::read(&found[0]).expect("archive"))
                .to_hex()
                .as_str()
        )
    );
    let non_utf8 = entries
        .iter()
        .filter(|e| e.get("path_b64").is_some())
        .count();
    assert_eq!(non_utf8, 1, "the non-UTF-8 name is kept as path_b64");
}

#[test]
fn gnu_tar_restores_in_place_from_the_root() {
    let sb = Sandbox::new();
    let work = sb.work("w");
    build_tree(
        &work,
        &[
            "proj/src/main.rs=fn main() {}",
            "proj/README=hi",
            "proj/empty/",
        ],
    );
    let before = snapshot(&work.join("proj"));
    let out = saferm(&sb, &work, &["-r", "proj"]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr_text());
    assert!(!work.join("proj").exists());
    let a = archives(&sb.store());
    let tar = Command::new("tar")
        .args(["--zstd", "-xpf"])
        .arg(&a[0])
        .args(["-C", "/"])
        .output()
        .expect("tar");
    assert!(
        tar.status.success(),
        "{}",
        String::from_utf8_lossy(&tar.stderr)
    );
    assert_eq!(snapshot(&work.join("proj")), before);
}

#[test]
fn the_store_is_private_and_versioned() {
    let sb = Sandbox::new();
    let work = sb.work("w");
    build_tree(&work, &["a=1"]);
    assert_eq!(saferm(&sb, &work, &["a"]).code(), Some(0));
    let store = sb.store();
    assert_eq!(
        fs::read_to_string(store.join("FORMAT")).expect("FORMAT"),
        "saferm-store 1\n"
    );
    for dir in [
        store.clone(),
        store.join("archives"),
        store.join("manifests"),
        store.join("tmp"),
    ] {
        assert_eq!(
            fs::metadata(&dir).expect("dir").mode() & 0o777,
            0o700,
            "{}",
            dir.display()
        );
    }
    for f in archives(&store).into_iter().chain(manifests(&store)) {
        assert_eq!(
            fs::metadata(&f).expect("file").mode() & 0o777,
            0o600,
            "{}",
            f.display()
        );
    }
    assert!(
        files_under(&store.join("tmp")).is_empty(),
        "temp files left behind"
    );
    // A store from a newer saferm is refused, and nothing is deleted.
    fs::write(store.join("FORMAT"), "saferm-store 99\n").expect("write FORMAT");
    build_tree(&work, &["b=2"]);
    let out = saferm(&sb, &work, &["b"]);
    assert_eq!(out.code(), Some(1));
    assert!(
        out.stderr_text()
            .contains("newer than this saferm supports"),
        "{}",
        out.stderr_text()
    );
    assert!(work.join("b").exists());
}

#[test]
fn one_archive_holds_every_operand() {
    let sb = Sandbox::new();
    let work = sb.work("w");
    build_tree(&work, &["a=1", "b=2", "d/c=3"]);
    let out = saferm(&sb, &work, &["-r", "a", "b", "d"]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr_text());
    assert_eq!(archives(&sb.store()).len(), 1);
    let list = Command::new("tar")
        .args(["--zstd", "-tf"])
        .arg(&archives(&sb.store())[0])
        .output()
        .expect("tar");
    let names = String::from_utf8_lossy(&list.stdout).into_owned();
    for n in ["/a\n", "/b\n", "/d/c\n"] {
        assert!(names.contains(&n[1..]), "{n:?} missing from {names}");
    }
}

/// A small tree, or with `large` one holding 10 MiB more: above 8 MiB of content the
/// archive is verified while it is written, by other threads (src/remove.rs).
fn fault_tree(work: &Path, large: bool) {
    build_tree(work, &["d/a=alpha", "d/s/b=beta", "f=solo"]);
    if large {
        for i in 0..5u64 {
            fs::write(work.join(format!("d/s/n{i}")), noise(i, 2 << 20)).expect("write noise");
        }
    }
}

/// Every step of the pipeline fails in turn: the originals stay, no temp file is left, and
/// the store holds no half deletion.
#[test]
fn failure_at_any_step_keeps_everything() {
    let steps = [
        "read",
        "write",
        "fsync",
        "rename",
        "dirsync",
        "verify",
        "verify-copy",
        "manifest",
        "space",
    ];
    for (step, large) in steps.iter().flat_map(|&s| [(s, false), (s, true)]) {
        let step = format!("{step}{}", if large { " (large)" } else { "" });
        let sb = Sandbox::new();
        let work = sb.work("w");
        fault_tree(&work, large);
        let before = snapshot(&work);
        let fault = step.split(' ').next().unwrap_or_default();
        let out = with_fault(&sb, &work, &["-r", "d", "f"], fault);
        assert_eq!(out.code(), Some(1), "step {step}: {}", out.status_text());
        assert_eq!(
            snapshot(&work),
            before,
            "step {step}: the originals changed"
        );
        let err = out.stderr_text();
        assert!(err.starts_with("rm: cannot remove "), "step {step}: {err}");
        assert!(err.contains("could not archive"), "step {step}: {err}");
        assert!(
            files_under(&sb.store().join("tmp")).is_empty(),
            "step {step}: temp files left"
        );
        assert_eq!(
            archives(&sb.store()).len(),
            manifests(&sb.store()).len(),
            "step {step}: an archive without a manifest (or the reverse)"
        );
        if fault != "read" {
            assert!(
                archives(&sb.store()).is_empty(),
                "step {step}: a failed archive was kept"
            );
        }
    }
}

#[test]
fn a_read_error_keeps_that_file_and_its_ancestors_only() {
    // The `read` fault fails every source read: each file is reported and kept, and a
    // directory holding a kept file is kept; an operand with no files still goes.
    let sb = Sandbox::new();
    let work = sb.work("w");
    build_tree(&work, &["d/a=alpha", "e/", "l->d"]);
    let out = with_fault(&sb, &work, &["-r", "d", "e", "l"], "read");
    assert_eq!(out.code(), Some(1));
    assert_eq!(
        out.stderr_text(),
        "rm: cannot remove 'd/a': could not archive: Input/output error\n"
    );
    assert!(work.join("d/a").exists());
    assert!(!work.join("e").exists());
    assert!(fs::symlink_metadata(work.join("l")).is_err());
    assert_eq!(archives(&sb.store()).len(), 1);
}

#[test]
fn ctrl_c_while_archiving_keeps_everything_and_dies_of_sigint() {
    for large in [false, true] {
        let sb = Sandbox::new();
        let work = sb.work("w");
        fault_tree(&work, large);
        let before = snapshot(&work);
        let out = with_fault(&sb, &work, &["-r", "d"], "signal");
        assert_eq!(out.status_text(), "signal 2", "large: {large}");
        assert_eq!(snapshot(&work), before, "large: {large}");
        assert!(
            files_under(&sb.store().join("tmp")).is_empty(),
            "temp file left after SIGINT"
        );
        assert!(archives(&sb.store()).is_empty(), "large: {large}");
    }
}

#[test]
fn the_advice_for_a_full_store_is_a_command_that_makes_room() {
    // The newest 10 deletions are spared by a plain `unrm --purge`; the advice must be a
    // command that really frees enough when they are all there is.
    let sb = Sandbox::new();
    let work = sb.work("w");
    let store_fs = sb.work("store-fs");
    let _mount = Tmpfs::mount_sized(&store_fs, "8m").expect("mount an 8 MiB tmpfs");
    let store = store_fs.join("s");
    let run = |cmd: crate::common::TestCommand| {
        cmd.current_dir(&work)
            .env("SAFERM_STORE", &store)
            .env("SAFERM_TEST_ALLOW_VOLATILE_STORE", "1")
            .env("SAFERM_MAX_SIZE", "never")
            .env("SAFERM_MAX_AGE", "never")
            .run()
    };
    for i in 0..12 {
        fs::write(work.join(format!("old{i}")), noise(i, 400_000)).expect("write noise");
        let out = run(sb.command(saferm_bin()).arg(format!("old{i}")));
        assert_eq!(out.code(), Some(0), "old{i}: {}", out.stderr_text());
    }
    fs::write(work.join("big"), noise(99, 2_500_000)).expect("write noise");
    let out = run(sb.command(saferm_bin()).arg("big"));
    assert_eq!(out.code(), Some(1), "{}", out.stderr_text());
    assert!(work.join("big").exists());
    let stderr = out.stderr_text();
    let advice = stderr
        .split("make room with '")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .unwrap_or_else(|| panic!("no command in the advice: {stderr}"));
    let words: Vec<&str> = advice.split_whitespace().collect();
    assert_eq!(words.first(), Some(&"unrm"), "{stderr}");
    let out = run(sb.command(unrm_bin()).args(&words[1..]));
    assert_eq!(out.code(), Some(0), "{advice}: {}", out.stderr_text());
    assert!(
        out.stdout_text().contains("purged "),
        "{advice}: {}",
        out.stdout_text()
    );
    let out = run(sb.command(saferm_bin()).arg("big"));
    assert_eq!(
        out.code(),
        Some(0),
        "after '{advice}': {}",
        out.stderr_text()
    );
    assert!(!work.join("big").exists());
}

#[test]
fn enospc_during_the_write_keeps_everything() {
    let sb = Sandbox::new();
    let work = sb.work("w");
    let store = sb.work("smallstore");
    let _mount = Tmpfs::mount(&store).expect("mount a 1 MiB tmpfs");
    build_tree(&work, &["d/"]);
    // 3 MB: verified after the write; 9 MB: verified while it is written (by a thread that
    // must stop when the write fails).
    let cases = [3_000_000, 9_000_000].into_iter().flat_map(|size| {
        [
            (size, "space", "not enough space in the store"),
            (size, "skip-space-check", "No space left on device"),
        ]
    });
    for (size, fault, expect) in cases {
        fs::write(work.join("d/noise"), noise(0, size)).expect("write noise");
        let before = snapshot(&work);
        let fault_name = format!("{fault} ({size} bytes)");
        let fault = fault_name.split(' ').next().unwrap_or_default();
        let out = sb
            .command(saferm_bin())
            .current_dir(&work)
            .args(["-r", "d"])
            .env("SAFERM_STORE", store.join("s"))
            .env("SAFERM_TEST_ALLOW_VOLATILE_STORE", "1")
            .env("SAFERM_FAULT", fault)
            .run();
        assert_eq!(out.code(), Some(1), "{fault_name}");
        assert!(
            out.stderr_text().contains(expect),
            "{fault_name}: {}",
            out.stderr_text()
        );
        assert_eq!(snapshot(&work), before, "{fault_name}");
        assert!(
            files_under(&store.join("s/tmp")).is_empty(),
            "{fault_name}: temp left"
        );
        assert!(
            files_under(&store.join("s/archives")).is_empty(),
            "{fault_name}: a failed archive was kept"
        );
    }
    // Without any fault, the real free-space check refuses before writing.
    let before = snapshot(&work);
    let out = sb
        .command(saferm_bin())
        .current_dir(&work)
        .args(["-r", "d"])
        .env("SAFERM_STORE", store.join("s"))
        .env("SAFERM_TEST_ALLOW_VOLATILE_STORE", "1")
        .run();
    assert_eq!(out.code(), Some(1));
    assert!(
        out.stderr_text().contains("not enough space in the store"),
        "{}",
        out.stderr_text()
    );
    assert!(
        out.stderr_text().contains("--no-archive"),
        "{}",
        out.stderr_text()
    );
    assert_eq!(snapshot(&work), before);
}

#[test]
fn volatile_and_foreign_stores_are_refused() {
    let sb = Sandbox::new();
    let work = sb.work("w");
    build_tree(&work, &["a=1"]);
    let mnt = sb.work("mnt");
    let _mount = Tmpfs::mount(&mnt).expect("mount tmpfs");
    let foreign = sb.work("foreign");
    std::os::unix::fs::chown(&foreign, Some(NOBODY), Some(NOBODY)).expect("chown");
    // Each refusal is proven without the debug builds' overrides: never with
    // SAFERM_TEST_ALLOW_VOLATILE_STORE, and with SAFERM_TEST_SANDBOX (which commands carry
    // when the sandbox is under /tmp, tests/common) only where it is named: for the tmpfs
    // store and the foreign one, whose paths must pass for their filesystem and owner to be
    // looked at (it waives the path rule inside the sandbox, never the others), and for a
    // store under /tmp outside the sandbox, which it must not save.
    let waiver = Some(sb.root());
    let cases: Vec<(PathBuf, &str, Option<&Path>)> = vec![
        (
            PathBuf::from("/tmp/saferm-test-store"),
            "is under /tmp",
            None,
        ),
        (
            PathBuf::from("/tmp/saferm-test-store"),
            "is under /tmp",
            waiver,
        ),
        (
            PathBuf::from("/dev/shm/saferm-test-store"),
            "is under /dev/shm",
            None,
        ),
        (mnt.join("store"), "memory filesystem", waiver),
        (foreign.clone(), "belongs to uid 65534", waiver),
        (
            PathBuf::from("relative/store"),
            "must be an absolute path",
            None,
        ),
    ];
    for (store, why, waiver) in cases {
        let mut cmd = sb
            .command(saferm_bin())
            .current_dir(&work)
            .arg("a")
            .env("SAFERM_STORE", &store)
            .env_remove("SAFERM_TEST_ALLOW_VOLATILE_STORE")
            .env_remove("SAFERM_TEST_SANDBOX");
        if let Some(dir) = waiver {
            cmd = cmd.env("SAFERM_TEST_SANDBOX", dir);
        }
        let out = cmd.run();
        assert_eq!(out.code(), Some(1), "{}", store.display());
        let err = out.stderr_text();
        assert!(
            err.starts_with("rm: cannot remove 'a': could not archive: "),
            "{err}"
        );
        assert!(err.contains(why), "{}: {err}", store.display());
        assert!(
            err.contains("SAFERM_STORE"),
            "the message names SAFERM_STORE: {err}"
        );
        assert!(
            work.join("a").exists(),
            "a was deleted with store {}",
            store.display()
        );
    }
    assert!(!Path::new("/tmp/saferm-test-store").exists());
    // Nothing to archive, nothing to refuse: `rm -f missing` stays silent and successful.
    let out = sb
        .command(saferm_bin())
        .current_dir(&work)
        .args(["-f", "missing"])
        .env("SAFERM_STORE", "/tmp/x")
        .run();
    assert_eq!((out.code(), out.stderr_text()), (Some(0), String::new()));
}

#[test]
fn rm_rf_home_keeps_the_store_and_everything_goes_into_it() {
    let sb = Sandbox::new();
    let home = sb.home();
    build_tree(&home, &["notes.txt=n", "proj/a.rs=a", ".config/x=1"]);
    let data = home.join(".local/share");
    let run = |args: &[&str]| {
        sb.command(saferm_bin())
            .current_dir(sb.root())
            .args(args)
            .env("XDG_DATA_HOME", &data)
            .run()
    };
    // First use: the store does not exist yet and is created inside the tree being removed.
    let out = run(&["-rf", "home"]);
    assert_eq!(
        out.code(),
        Some(1),
        "the skipped store makes it a partial removal"
    );
    assert_eq!(
        out.stderr_text(),
        "rm: skipping 'home/.local/share/saferm', since it is the saferm store\n"
    );
    let left = snapshot(&home);
    let names: Vec<String> = left.iter().map(|e| e.path.display().to_string()).collect();
    assert!(
        names.iter().all(|n| n == "." || n.starts_with(".local")),
        "left: {names:?}"
    );
    let store = data.join("saferm");
    assert_eq!(archives(&store).len(), 1);
    // The archive has the user's files and none of the store's.
    let list = Command::new("tar")
        .args(["--zstd", "-tf"])
        .arg(&archives(&store)[0])
        .output()
        .expect("tar");
    let names = String::from_utf8_lossy(&list.stdout).into_owned();
    assert!(
        names.contains("home/notes.txt") && names.contains("home/proj/a.rs"),
        "{names}"
    );
    // Tar names are relative; the checkout's own path may hold "saferm/" anywhere.
    let store_name = store.to_string_lossy().trim_start_matches('/').to_string();
    assert!(
        !names.lines().any(|l| l.starts_with(&store_name)),
        "the store archived itself: {names}"
    );
    // Still usable, and deleting inside it is refused.
    build_tree(&home, &["again=1"]);
    assert_eq!(run(&["home/again"]).code(), Some(0));
    assert_eq!(archives(&store).len(), 2);
    let inside = archives(&store)[0].clone();
    let out = run(&[inside.to_str().expect("utf-8 path")]);
    assert_eq!(out.code(), Some(1));
    assert!(
        out.stderr_text().contains("it is inside the saferm store"),
        "{}",
        out.stderr_text()
    );
    assert!(inside.exists());
}

#[test]
fn a_file_changed_after_archiving_is_kept() {
    let sb = Sandbox::new();
    let work = sb.work("w");
    build_tree(&work, &["d/a=alpha", "d/e/"]);
    let out = with_fault(&sb, &work, &["-rv", "d"], "mutate");
    assert_eq!(out.code(), Some(1));
    assert_eq!(
        out.stderr_text(),
        "rm: cannot remove 'd/a': changed while it was being archived\n"
    );
    assert_eq!(fs::read(work.join("d/a")).expect("kept"), b"alpha+");
    assert!(!work.join("d/e").exists());
    assert_eq!(out.stdout_text(), "removed directory 'd/e'\n");
}

#[test]
fn a_directory_swapped_for_a_symlink_is_not_followed() {
    let sb = Sandbox::new();
    let work = sb.work("w");
    build_tree(&work, &["d/s/a=alpha", "d/s/b=beta", "d/c=gamma"]);
    let out = with_fault(&sb, &work, &["-r", "d"], "swap");
    assert_eq!(out.code(), Some(1));
    assert_eq!(
        out.stderr_text(),
        "rm: cannot remove 'd/s': changed while it was being archived\n"
    );
    // What the symlink points to is untouched; the link itself was not archived, so it stays.
    assert_eq!(fs::read(work.join("d/s.moved/a")).expect("a"), b"alpha");
    assert_eq!(fs::read(work.join("d/s.moved/b")).expect("b"), b"beta");
    assert!(fs::symlink_metadata(work.join("d/s"))
        .expect("link")
        .file_type()
        .is_symlink());
}

#[test]
fn sockets_are_removed_with_a_warning() {
    let sb = Sandbox::new();
    let work = sb.work("w");
    build_tree(&work, &["d/a=1"]);
    let _sock = std::os::unix::net::UnixListener::bind(work.join("d/sock")).expect("bind");
    let out = saferm(&sb, &work, &["-r", "d"]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr_text());
    assert_eq!(
        out.stderr_text(),
        "rm: warning: 'd/sock' is a socket: removed without an archive copy (it holds no data)\n"
    );
    assert!(!work.join("d").exists());
}

#[test]
fn no_archive_deletes_for_real() {
    let sb = Sandbox::new();
    let work = sb.work("w");
    build_tree(&work, &["d/a=1"]);
    let out = saferm(&sb, &work, &["-r", "--no-archive", "d"]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr_text());
    assert!(!work.join("d").exists());
    assert!(archives(&sb.store()).is_empty());
}

/// `--no-a` once deleted without keeping anything. The option that deletes for good is
/// refused abbreviated, with the message and exit GNU rm gives for `--no-pres` (compared
/// against /usr/bin/rm), and nothing is removed.
#[test]
fn no_archive_may_not_be_abbreviated() {
    let sb = Sandbox::new();
    let work = sb.work("w");
    build_tree(&work, &["d/a=1"]);
    let gnu = sb
        .command(crate::common::GNU_RM)
        .current_dir(&work)
        .args(["-r", "--no-pres", "d"])
        .run();
    for abbreviated in ["--no-a", "--no-archiv"] {
        let out = saferm(&sb, &work, &["-r", abbreviated, "d"]);
        assert_eq!(out.status_text(), gnu.status_text(), "{abbreviated}");
        assert_eq!(
            out.stderr_text(),
            gnu.stderr_text()
                .replace("--no-preserve-root", "--no-archive"),
            "{abbreviated}"
        );
        assert!(out.stdout.is_empty());
        assert!(work.join("d/a").exists(), "{abbreviated} removed d");
    }
    assert!(archives(&sb.store()).is_empty());
}

#[test]
fn closed_stdout_does_not_stop_the_removal() {
    let sb = Sandbox::new();
    let work = sb.work("w");
    build_tree(&work, &["d/a=1", "d/b=2", "d/c=3"]);
    let mut child = sb
        .std_command(saferm_bin())
        .args(["-rv", "d"])
        .current_dir(&work)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    drop(child.stdout.take()); // the reader went away (`| head -0`)
    let out = child.wait_with_output().expect("wait");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!work.join("d").exists());
}

#[test]
fn saferm_loads_no_math_library() {
    // Loading libm cost 0.13 ms of every call on the benchmark VM (issue 11 §5), for one
    // `powf` in the progress bar's crate. Its mappings are looked at while saferm waits at
    // a prompt.
    use std::io::{BufRead, Write};
    let sb = Sandbox::new();
    let work = sb.work("w");
    build_tree(&work, &["f=1"]);
    let mut child = sb
        .std_command(saferm_bin())
        .args(["-i", "f"])
        .current_dir(&work)
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn saferm");
    let mut prompt = Vec::new();
    let mut stderr = std::io::BufReader::new(child.stderr.take().expect("stderr"));
    stderr
        .read_until(b'?', &mut prompt)
        .expect("read the prompt");
    assert!(prompt.ends_with(b"remove regular file 'f'?"), "{prompt:?}");
    let maps = fs::read_to_string(format!("/proc/{}/maps", child.id())).expect("maps");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(b"n\n").expect("answer");
    drop(stdin);
    assert_eq!(child.wait().expect("wait").code(), Some(0));
    assert!(work.join("f").exists(), "the answer was no");
    let libm: Vec<&str> = maps.lines().filter(|l| l.contains("/libm.so")).collect();
    assert!(libm.is_empty(), "{libm:#?}");
}

#[test]
fn closed_stdout_and_stderr_are_not_taken_by_the_files_saferm_opens() {
    // saferm has no std `main` (src/bin/saferm.rs): it opens fds 0-2 on /dev/null itself
    // when they are closed. Else the store's lock or the archive would get fd 1 or 2, and
    // `removed 'f'` or a message would be written into it.
    use std::os::unix::process::CommandExt;
    let sb = Sandbox::new();
    let work = sb.work("w");
    build_tree(&work, &["f=kept in the archive", "g"]);
    // Its warning is written while the store's files are open.
    let _sock = std::os::unix::net::UnixListener::bind(work.join("sock")).expect("bind");
    let mut cmd = sb.std_command(saferm_bin());
    cmd.args(["-v", "f", "sock", "g/missing"])
        .current_dir(&work);
    // SAFETY: close(2) is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::close(1);
            libc::close(2);
            Ok(())
        });
    }
    let status = cmd.status().expect("run saferm");
    assert_eq!(status.code(), Some(1), "g/missing does not exist");
    assert!(!work.join("f").exists());
    assert!(!work.join("sock").exists());
    let checked = sb
        .command(unrm_bin())
        .current_dir(&work)
        .arg("--check")
        .run();
    assert_eq!(checked.code(), Some(0), "{}", checked.stderr_text());
    let restored = sb.command(unrm_bin()).current_dir(&work).arg("f").run();
    assert_eq!(restored.code(), Some(0), "{}", restored.stderr_text());
    assert_eq!(fs::read(work.join("f")).expect("f"), b"kept in the archive");
    assert_eq!(fs::read(sb.store().join("lock")).expect("lock"), b"");
}

#[test]
fn write_errors_on_stdout_are_reported_as_gnu_does() {
    // `rm -v f >/dev/full` removes f, then says `rm: write error: ...` and exits 1; so do
    // --help and --version. (A closed pipe stays quiet: the test above.)
    let sb = Sandbox::new();
    for (i, args) in [
        &["--help"][..],
        &["--version"],
        &["-v", "f"],
        &["-v", "f", "nonexist", "g"],
        &["-rv", "d"],
        &["f"],
    ]
    .into_iter()
    .enumerate()
    {
        let mut results = Vec::new();
        for (name, program) in [("gnu", PathBuf::from(GNU_RM)), ("saferm", saferm_bin())] {
            let work = sb.work(&format!("full-{i}-{name}"));
            build_tree(&work, &["f=1", "g=2", "d/a=3", "d/s/b=4"]);
            let out = sb
                .command(&program)
                .current_dir(&work)
                .args(args)
                .stdout_to("/dev/full")
                .run();
            results.push((out.code(), out.stderr_text(), snapshot(&work)));
        }
        assert_eq!(
            results[0], results[1],
            "rm {args:?} >/dev/full: gnu, then saferm"
        );
    }
    let out = sb
        .command(unrm_bin())
        .args(["--list"])
        .stdout_to("/dev/full")
        .run();
    assert_eq!(
        (out.code(), out.stderr_text().as_str()),
        (Some(1), "unrm: write error: No space left on device\n")
    );
}

#[test]
fn the_program_name_is_argv0_as_invoked() {
    let sb = Sandbox::new();
    let work = sb.work("w");
    let bin = sb.work("bin");
    std::os::unix::fs::symlink(saferm_bin(), bin.join("rm")).expect("symlink");
    let full = bin.join("rm");
    let out = sb
        .std_command(&full)
        .arg("missing")
        .current_dir(&work)
        .output()
        .expect("run");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "{}: cannot remove 'missing': No such file or directory\n",
            full.display()
        )
    );
    let out = sb
        .std_command(saferm_bin())
        .arg("missing")
        .current_dir(&work)
        .output()
        .expect("run");
    assert!(String::from_utf8_lossy(&out.stderr)
        .starts_with(&format!("{}: cannot remove", saferm_bin().display())));
}

#[test]
fn help_and_version_exit_zero_on_stdout() {
    let sb = Sandbox::new();
    let out = saferm(&sb, sb.root(), &["--help"]);
    assert_eq!(out.code(), Some(0));
    let help = out.stdout_text();
    for needle in [
        "Usage:",
        "--recursive",
        "--interactive",
        "--no-archive",
        "unrm",
    ] {
        assert!(help.contains(needle), "--help lacks {needle}: {help}");
    }
    // --help wins over what follows it, as with getopt; an error before it wins.
    assert_eq!(saferm(&sb, sb.root(), &["--help", "-z"]).code(), Some(0));
    assert_eq!(saferm(&sb, sb.root(), &["-z", "--help"]).code(), Some(1));
    let out = saferm(&sb, sb.root(), &["--vers"]);
    assert_eq!(out.code(), Some(0));
    assert!(
        out.stdout_text().starts_with("saferm "),
        "{}",
        out.stdout_text()
    );
    assert!(out.stderr.is_empty());
}

#[test]
fn large_deletions_are_split_into_seekable_frames() {
    let sb = Sandbox::new();
    let work = sb.work("w");
    build_tree(&work, &["d/"]);
    // 80 MiB in three files: frames roll at entry boundaries every 32 MiB of tar data.
    fs::write(work.join("d/a"), noise(0, 30 << 20)).expect("a");
    fs::write(work.join("d/b"), vec![b'x'; 30 << 20]).expect("b");
    fs::write(work.join("d/c"), noise(0, 20 << 20)).expect("c");
    let before = snapshot(&work);
    let out = saferm(&sb, &work, &["-r", "d"]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr_text());
    let m = manifests(&sb.store());
    let json: serde_json::Value =
        serde_json::from_slice(&fs::read(&m[0]).expect("manifest")).expect("json");
    let frames = json["frames"].as_array().expect("frames");
    assert!(frames.len() >= 2, "expected several frames: {frames:?}");
    let archive = fs::read(&archives(&sb.store())[0]).expect("archive");
    for f in frames {
        let at = f["compressed_offset"].as_u64().expect("offset") as usize;
        assert_eq!(
            &archive[at..at + 4],
            &[0x28, 0xb5, 0x2f, 0xfd],
            "no zstd frame at {at}"
        );
        // Each frame starts at an entry: its tar offset is some entry's offset.
        let tar_at = f["tar_offset"].as_u64().expect("tar offset");
        let starts_entry = json["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .any(|e| e["offset"].as_u64() == Some(tar_at));
        assert!(
            starts_entry,
            "frame at tar offset {tar_at} does not start an entry"
        );
    }
    // GNU tar reads the concatenated frames as one stream.
    let tar = Command::new("tar")
        .args(["--zstd", "-xpf"])
        .arg(&archives(&sb.store())[0])
        .args(["-C", "/"])
        .output()
        .expect("tar");
    assert!(
        tar.status.success(),
        "{}",
        String::from_utf8_lossy(&tar.stderr)
    );
    assert_eq!(snapshot(&work), before);
}

#[test]
fn the_manifest_copy_in_the_archive_matches_and_operands_line_up() {
    let sb = Sandbox::new();
    let work = sb.work("w");
    build_tree(&work, &["d/a=1", "e=2"]);
    let out = saferm(&sb, &work, &["-r", "missing", "d", "e"]);
    assert_eq!(out.code(), Some(1));
    let external: serde_json::Value =
        serde_json::from_slice(&fs::read(&manifests(&sb.store())[0]).expect("manifest"))
            .expect("json");
    let operands = external["operands"].as_array().expect("operands");
    assert_eq!(operands.len(), 2, "only what was removed: {operands:?}");
    for e in external["entries"].as_array().expect("entries") {
        let idx = e["operand"].as_u64().expect("operand") as usize;
        let root = operands[idx]["absolute"]["path"]
            .as_str()
            .expect("root path");
        let path = e["path"].as_str().expect("path");
        assert!(
            path.starts_with(root),
            "{path} is not under its operand {root}"
        );
    }
    // The copy after the data: magic, length, tag, JSON.
    let archive = fs::read(&archives(&sb.store())[0]).expect("archive");
    let tag = b"saferm-manifest\n";
    let at = archive
        .windows(tag.len())
        .rposition(|w| w == tag)
        .expect("tag")
        + tag.len();
    // A few entries are kept as plain JSON; 64 or more as a zstd frame.
    assert_eq!(archive[at], b'{', "a small manifest copy is plain JSON");
    let copy: serde_json::Value = serde_json::from_slice(&archive[at..]).expect("copy json");
    assert_eq!(copy["entries"], external["entries"]);
    assert_eq!(copy["frames"], external["frames"]);
    assert!(!copy["frames"].as_array().expect("frames").is_empty());
    assert!(
        copy.get("archive").is_none(),
        "the copy cannot know its own hash"
    );

    // A larger deletion's copy is compressed.
    let many: Vec<String> = (0..70).map(|i| format!("m/f{i}={i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    build_tree(&work, &many);
    assert_eq!(saferm(&sb, &work, &["-r", "m"]).code(), Some(0));
    let newest = archives(&sb.store())
        .into_iter()
        .find(|p| p.to_string_lossy().ends_with("-m.tar.zst"))
        .expect("the archive of m");
    let archive = fs::read(newest).expect("archive");
    let at = archive
        .windows(tag.len())
        .rposition(|w| w == tag)
        .expect("tag")
        + tag.len();
    let json = zstd::stream::decode_all(&archive[at..]).expect("the copy is a zstd frame");
    let copy: serde_json::Value = serde_json::from_slice(&json).expect("copy json");
    assert_eq!(copy["entries"].as_array().map(Vec::len), Some(71));
}

fn manifest_json(sb: &Sandbox) -> serde_json::Value {
    let m = manifests(&sb.store());
    let newest = m.last().expect("a manifest");
    serde_json::from_slice(&fs::read(newest).expect("read manifest")).expect("json")
}

#[test]
fn large_deletions_ask_a_person_and_never_a_script() {
    let sb = Sandbox::new();
    let work = sb.work("w");
    build_tree(&work, &["d/"]);
    fs::write(work.join("d/big"), vec![b'x'; 3000]).expect("big");
    let run = |args: &[&str], stdin: Option<&str>| {
        let mut c = sb
            .command(saferm_bin())
            .current_dir(&work)
            .args(args)
            .env("SAFERM_CONFIRM_ABOVE", "2KiB");
        if let Some(s) = stdin {
            c = c.stdin(s);
        }
        c.run()
    };
    // A person (a terminal) is asked once; "no" removes nothing and is not an error.
    let out = run(&["-r", "---presume-input-tty", "d"], Some("n\n"));
    assert_eq!(out.code(), Some(0));
    assert_eq!(
        out.stderr_text(),
        "rm: archive 2.9 KiB (more than confirm_above, 2.0 KiB) and then remove it? y: archive and remove; n: keep everything where it is [y/N] "
    );
    assert!(work.join("d/big").exists());
    assert!(archives(&sb.store()).is_empty());
    let out = run(&["-r", "---presume-input-tty", "d"], Some("y\n"));
    assert_eq!(out.code(), Some(0), "{}", out.stderr_text());
    assert!(!work.join("d").exists());
    // A script is never asked.
    build_tree(&work, &["d/"]);
    fs::write(work.join("d/big"), vec![b'x'; 3000]).expect("big");
    let out = run(&["-r", "d"], None);
    assert_eq!((out.code(), out.stderr_text()), (Some(0), String::new()));
    assert!(!work.join("d").exists());
    // Unless configured to refuse above a size.
    build_tree(&work, &["d/"]);
    fs::write(work.join("d/big"), vec![b'x'; 3000]).expect("big");
    let out = sb
        .command(saferm_bin())
        .current_dir(&work)
        .args(["-r", "d"])
        .env("SAFERM_REFUSE_ABOVE", "1KiB")
        .run();
    assert_eq!(out.code(), Some(1));
    assert!(
        out.stderr_text().starts_with("rm: cannot remove 'd': could not archive: 2.9 KiB is more than refuse_above (1.0 KiB, from $SAFERM_REFUSE_ABOVE)"),
        "{}",
        out.stderr_text()
    );
    assert!(work.join("d/big").exists());
}

#[test]
fn configuration_comes_from_the_file_and_the_environment() {
    let sb = Sandbox::new();
    let work = sb.work("w");
    let conf = sb.config().join("saferm");
    fs::create_dir_all(&conf).expect("config dir");
    fs::write(conf.join("config.toml"), "zstd_level = 3\n").expect("config");
    build_tree(&work, &["a=1", "b=2", "c=3"]);
    assert_eq!(saferm(&sb, &work, &["a"]).code(), Some(0));
    assert_eq!(manifest_json(&sb)["zstd_level"], 3);
    let out = sb
        .command(saferm_bin())
        .current_dir(&work)
        .arg("b")
        .env("SAFERM_ZSTD_LEVEL", "19")
        .run();
    assert_eq!(out.code(), Some(0), "{}", out.stderr_text());
    assert_eq!(manifest_json(&sb)["zstd_level"], 19);
    // A mistake in the file stops saferm before anything is removed, and says where.
    fs::write(conf.join("config.toml"), "zstd_levl = 3\n").expect("config");
    let out = saferm(&sb, &work, &["c"]);
    assert_eq!(out.code(), Some(1));
    let err = out.stderr_text();
    assert!(
        err.contains("unknown setting 'zstd_levl'") && err.contains("config.toml"),
        "{err}"
    );
    assert!(work.join("c").exists());
    // The free-space floor is part of the space check.
    fs::write(conf.join("config.toml"), "min_free = \"100%\"\n").expect("config");
    let out = sb
        .command(saferm_bin())
        .current_dir(&work)
        .arg("c")
        .env("SAFERM_MIN_FREE", "") // empty: the file decides
        .run();
    assert_eq!(out.code(), Some(1));
    assert!(
        out.stderr_text().contains("to be left free"),
        "{}",
        out.stderr_text()
    );
    assert!(work.join("c").exists());
}

/// Run saferm with stdin, stdout and stderr on a pseudo-terminal; returns what it wrote.
fn saferm_on_a_tty(sb: &Sandbox, cwd: &Path, args: &[&str]) -> (Option<i32>, String) {
    use std::io::Read;
    use std::os::fd::OwnedFd;
    let (master, slave) = openpty(None);
    let dup = |fd: &OwnedFd| fd.try_clone().expect("dup the pty");
    let mut child = sb
        .std_command(saferm_bin())
        .args(args)
        .current_dir(cwd)
        .env("TERM", "xterm")
        .env("SAFERM_TEST_PROGRESS_NOW", "1")
        .stdin(std::process::Stdio::from(dup(&slave)))
        .stdout(std::process::Stdio::from(dup(&slave)))
        .stderr(std::process::Stdio::from(slave))
        .spawn()
        .expect("spawn saferm");
    let status = child.wait().expect("wait");
    let mut screen = Vec::new();
    let mut tty = fs::File::from(master);
    let mut buf = [0u8; 4096];
    // Read what is buffered; the pty reports EIO once the child's side is closed.
    while let Ok(n) = tty.read(&mut buf) {
        if n == 0 {
            break;
        }
        screen.extend_from_slice(&buf[..n]);
    }
    (status.code(), String::from_utf8_lossy(&screen).into_owned())
}

#[test]
fn a_progress_bar_shows_on_a_terminal_only() {
    let sb = Sandbox::new();
    let work = sb.work("w");
    build_tree(&work, &["d/"]);
    for i in 0..20 {
        fs::write(work.join(format!("d/f{i}")), vec![b'x'; 100_000]).expect("file");
    }
    let (code, screen) = saferm_on_a_tty(&sb, &work, &["-r", "d"]);
    assert_eq!(code, Some(0), "{screen}");
    assert!(
        screen.contains("saferm: archiving"),
        "no progress on the terminal: {screen:?}"
    );
    assert!(!work.join("d").exists());
    // The same run with stderr on a pipe (a script, a log) shows nothing.
    build_tree(&work, &["d/"]);
    for i in 0..20 {
        fs::write(work.join(format!("d/f{i}")), vec![b'x'; 100_000]).expect("file");
    }
    let out = sb
        .command(saferm_bin())
        .current_dir(&work)
        .args(["-r", "d"])
        .env("SAFERM_TEST_PROGRESS_NOW", "1")
        .run();
    assert_eq!((out.code(), out.stderr_text()), (Some(0), String::new()));
}

#[test]
fn retention_runs_after_a_removal_and_spares_the_new_deletion() {
    let sb = Sandbox::new();
    let work = sb.work("w");
    build_tree(&work, &["a=1", "b=2", "c=3", "d=4"]);
    for f in ["a", "b", "c"] {
        assert_eq!(saferm(&sb, &work, &[f]).code(), Some(0));
    }
    assert_eq!(archives(&sb.store()).len(), 3);
    // A store limited to one byte, keeping nothing by count: the older deletions go, the one
    // just made stays, and saferm says so on stderr.
    let out = sb
        .command(saferm_bin())
        .current_dir(&work)
        .arg("d")
        .env("SAFERM_MAX_SIZE", "1")
        .env("SAFERM_KEEP_LAST", "0")
        .run();
    assert_eq!(out.code(), Some(0), "{}", out.stderr_text());
    assert!(
        out.stderr_text().contains("purged"),
        "{}",
        out.stderr_text()
    );
    let left = archives(&sb.store());
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(
        left[0].to_string_lossy().ends_with("-d.tar.zst"),
        "{left:?}"
    );
    assert_eq!(
        manifests(&sb.store())
            .iter()
            .filter(|m| m.extension().is_some_and(|e| e == "json"))
            .count(),
        1
    );
}

/// 4,800 empty files in 80 directories under `big/t`, on a tmpfs mounted at `work/big`
/// (creating that many files there is quick), and with `links` 50 hard links between
/// directories far apart. That is enough objects for the unlink phase to run on several
/// threads (src/sweep.rs), and the linked names end up in parts different threads take.
fn big_tmpfs_tree(work: &Path, links: bool) -> Tmpfs {
    let big = work.join("big");
    fs::create_dir(&big).expect("mkdir big");
    let mount = Tmpfs::mount(&big).expect("mount a tmpfs");
    for d in 0..16 {
        for s in 0..4 {
            fs::create_dir_all(big.join(format!("t/d{d:02}/s{s}"))).expect("mkdir");
        }
        for f in 0..300 {
            fs::write(big.join(format!("t/d{d:02}/s{}/f{f:03}", f % 4)), b"").expect("write");
        }
    }
    for h in (0..50).filter(|_| links) {
        fs::hard_link(
            big.join(format!("t/d00/s0/f{:03}", h * 4)),
            big.join(format!("t/d15/s3/h{h:02}")),
        )
        .expect("hard link");
    }
    mount
}

/// A file replaced between the walk and its archiving (by another file of the same size, a
/// directory or a FIFO; the original moved to `a.moved`) is reported as changed and kept,
/// and the rest goes, in a small deletion and in a large one (archive verified as it is
/// written).
#[test]
fn a_file_replaced_before_it_is_read_is_kept() {
    for (fault, large) in ["replace-file", "replace-dir", "replace-fifo"]
        .into_iter()
        .flat_map(|f| [(f, false), (f, true)])
    {
        let case = format!("{fault}{}", if large { " (large)" } else { "" });
        let sb = Sandbox::new();
        let work = sb.work("w");
        fault_tree(&work, large);
        let contents: Vec<(PathBuf, Vec<u8>)> = paths(&work)
            .into_iter()
            .filter_map(|p| fs::read(work.join(&p)).ok().map(|c| (p, c)))
            .collect();
        let out = with_fault(&sb, &work, &["-r", "d", "f"], fault);
        assert_eq!(out.code(), Some(1), "{case}: {}", out.stderr_text());
        let err = out.stderr_text();
        let changed = the_one_changed(&err);
        let (_, original) = contents
            .iter()
            .find(|(p, _)| p == Path::new(changed))
            .unwrap_or_else(|| panic!("{case}: {changed} was not a file"));
        let kept = fs::symlink_metadata(work.join(changed)).expect("the replacement stays");
        let kind = kept.file_type();
        match fault {
            "replace-file" => assert_eq!(
                fs::read(work.join(changed)).expect("read"),
                vec![b'#'; original.len()]
            ),
            "replace-dir" => assert!(kind.is_dir(), "{case}"),
            _ => assert!(kind.is_fifo(), "{case}"),
        }
        let moved = work.join(format!("{changed}.moved"));
        assert_eq!(&fs::read(moved).expect("moved"), original, "{case}");
        // What stays: the replacement, the original under its new name, the directories
        // above them.
        let mut expected = vec![PathBuf::from(".")];
        for stays in [changed.to_string(), format!("{changed}.moved")] {
            expected.extend(
                Path::new(&stays)
                    .ancestors()
                    .filter(|p| !p.as_os_str().is_empty())
                    .map(Path::to_path_buf),
            );
        }
        expected.sort();
        expected.dedup();
        assert_eq!(paths(&work), expected, "{case}");
        // The archive holds what was removed, and not the replacement.
        let list = Command::new("tar")
            .args(["--zstd", "-tf"])
            .arg(&archives(&sb.store())[0])
            .output()
            .expect("tar");
        let listing = String::from_utf8_lossy(&list.stdout).into_owned();
        assert!(
            listing.lines().any(|l| l.ends_with("/f")),
            "{case}: {listing}"
        );
        let tail = format!("/{changed}");
        assert!(
            !listing.lines().any(|l| l.ends_with(&tail)),
            "{case}: {listing}"
        );
    }
}

/// A tree deeper than the limit on open files: saferm and unrm keep a bounded number of
/// directories open, so the hard limit does not matter (tests/deep.rs goes deeper).
#[test]
fn a_tree_deeper_than_the_open_file_limit() {
    const DEPTH: usize = 200;
    let sb = Sandbox::new();
    let work = sb.work("w");
    let leaf_dir = work.join("deep").join(["d"; DEPTH].join("/"));
    fs::create_dir_all(&leaf_dir).expect("deep tree");
    fs::write(leaf_dir.join("leaf"), b"bottom").expect("leaf");
    let limited = |limit: &str, bin: PathBuf, args: &[&str]| {
        sb.command("sh")
            .current_dir(&work)
            .arg("-c")
            .arg(format!("ulimit {limit} 64 && exec \"$0\" \"$@\""))
            .arg(bin)
            .args(args)
            .run()
    };
    for limit in ["-n", "-Sn"] {
        let out = limited(limit, saferm_bin(), &["-rf", "deep"]);
        assert_eq!(out.code(), Some(0), "ulimit {limit}: {}", out.stderr_text());
        assert!(!work.join("deep").exists());
        let out = limited(limit, unrm_bin(), &["--last"]);
        assert_eq!(out.code(), Some(0), "ulimit {limit}: {}", out.stderr_text());
        assert_eq!(
            fs::read(leaf_dir.join("leaf")).expect("restored"),
            b"bottom"
        );
    }
}

/// In a large deletion the streamed verifier gets small files' content, compares it byte
/// for byte and works out their blake3; with `hold-nothing` the writer hashes every file and
/// the verifier compares blake3s. Either way the manifest records every file's blake3, and
/// says how verification went in SAFERM_TIMINGS.
#[test]
fn every_file_in_a_large_deletion_has_its_blake3() {
    for fault in ["", "hold-nothing"] {
        let sb = Sandbox::new();
        let work = sb.work("w");
        fault_tree(&work, true);
        for i in 0..40 {
            fs::write(
                work.join(format!("d/s/m{i}")),
                noise(100 + i, 3000 + 97 * i as usize),
            )
            .expect("write");
        }
        let contents: Vec<(String, Vec<u8>)> = paths(&work)
            .into_iter()
            .filter_map(|p| {
                fs::read(work.join(&p))
                    .ok()
                    .map(|c| (p.display().to_string(), c))
            })
            .collect();
        let out = sb
            .command(saferm_bin())
            .current_dir(&work)
            .args(["-r", "d", "f"])
            .env("SAFERM_FAULT", fault)
            .env("SAFERM_TIMINGS", "1")
            .run();
        assert_eq!(out.code(), Some(0), "{fault}: {}", out.stderr_text());
        let err = out.stderr_text();
        // "compared N files byte for byte, M by blake3"
        let counts: Vec<usize> = err
            .lines()
            .find_map(|l| l.strip_prefix("saferm: timing: compared "))
            .unwrap_or_else(|| panic!("{fault}: {err}"))
            .split_whitespace()
            .filter_map(|word| word.parse().ok())
            .collect();
        let [bytes, hashed] = counts[..] else {
            panic!("{fault}: {err}")
        };
        assert_eq!(bytes + hashed, contents.len(), "{fault}: {err}");
        if fault.is_empty() {
            // At most 8 MiB waits at a time: most of the files, not the 2 MiB ones all.
            assert!(bytes > contents.len() / 2, "{err}");
        } else {
            assert_eq!(bytes, 0, "{err}");
        }
        let m = manifests(&sb.store());
        let json: serde_json::Value =
            serde_json::from_slice(&fs::read(&m[0]).expect("manifest")).expect("json");
        let entries = json["entries"].as_array().expect("entries");
        for (path, content) in &contents {
            let tail = format!("/w/{path}");
            let entry = entries
                .iter()
                .find(|e| e["path"].as_str().is_some_and(|p| p.ends_with(&tail)))
                .unwrap_or_else(|| panic!("{fault}: {path} not in the manifest"));
            assert_eq!(
                entry["blake3"].as_str(),
                Some(blake3::hash(content).to_hex().as_str()),
                "{fault}: {path}"
            );
        }
        assert_eq!(contents.len(), 48, "the tree's files");
    }
}

/// The path in stderr when it is exactly one "changed while it was being archived" line.
fn the_one_changed(stderr: &str) -> &str {
    stderr
        .strip_prefix("rm: cannot remove '")
        .and_then(|rest| rest.strip_suffix("': changed while it was being archived\n"))
        .unwrap_or_else(|| panic!("unexpected stderr: {stderr:?}"))
}

/// `tar --zstd -tvf` of the store's first archive: GNU tar's long listing.
fn first_archive_listing(sb: &Sandbox) -> String {
    let list = Command::new("tar")
        .args(["--zstd", "-tvf"])
        .arg(&archives(&sb.store())[0])
        .output()
        .expect("tar");
    assert!(list.status.success(), "tar -tvf failed");
    String::from_utf8_lossy(&list.stdout).into_owned()
}

#[test]
fn large_deletions_unlink_on_several_threads() {
    let sb = Sandbox::new();
    let work = sb.work("w");
    let _mount = big_tmpfs_tree(&work, true);
    let out = saferm(&sb, &work, &["-r", "big/t"]);
    // Unlinking one name of a hard-linked file changes the other's ctime: that is not a
    // change by someone else, whichever thread gets there first.
    assert_eq!(out.code(), Some(0), "{}", out.stderr_text());
    assert_eq!(out.stderr_text(), "");
    assert_eq!(paths(&work.join("big")), [PathBuf::from(".")]);
    let listing = first_archive_listing(&sb);
    assert_eq!(listing.lines().filter(|l| l.starts_with('h')).count(), 50);
    assert_eq!(listing.lines().filter(|l| l.starts_with('-')).count(), 4800);
}

#[test]
fn a_change_in_a_large_deletion_keeps_only_what_changed() {
    let sb = Sandbox::new();
    let work = sb.work("w");
    let _mount = big_tmpfs_tree(&work, false);
    let out = with_fault(&sb, &work, &["-r", "big/t"], "mutate");
    assert_eq!(out.code(), Some(1));
    let err = out.stderr_text();
    let changed = the_one_changed(&err);
    // What stays is the changed file and the directories above it.
    let kept = Path::new(changed).strip_prefix("big").expect("under big/");
    let mut expected: Vec<PathBuf> = kept.ancestors().map(Path::to_path_buf).collect();
    expected.retain(|p| !p.as_os_str().is_empty());
    expected.push(PathBuf::from("."));
    expected.sort();
    assert_eq!(paths(&work.join("big")), expected);
    assert_eq!(fs::read(work.join(changed)).expect("kept"), b"+");
}

#[test]
fn a_directory_swapped_in_a_large_deletion_is_not_followed() {
    let sb = Sandbox::new();
    let work = sb.work("w");
    let _mount = big_tmpfs_tree(&work, true);
    let out = with_fault(&sb, &work, &["-r", "big/t"], "swap");
    assert_eq!(out.code(), Some(1));
    let err = out.stderr_text();
    let swapped = the_one_changed(&err);
    assert!(fs::symlink_metadata(work.join(swapped))
        .expect("the symlink stays")
        .file_type()
        .is_symlink());
    // Everything the directory held is still there, under its new name.
    let moved = work.join(format!("{swapped}.moved"));
    let files = paths(&moved).len();
    assert!(files > 1, "{} holds {files} objects", moved.display());
}

/// A tree that is not in the page cache is read ahead by a second thread (src/prefetch.rs).
/// What is archived, and removed, is the same in every case. The page cache's real state
/// depends on memory pressure and `RWF_NOWAIT` now and then refuses a cached page, so the
/// hooks decide what is cached, and every count is exact: `cold`, nothing is (all files but
/// the first, which showed that the tree is cold, are read ahead); `cold-start`, the thread
/// starts and then finds every file cached, and gives up after 256 in a row; `warm`,
/// everything is (the thread never starts).
#[test]
fn cold_trees_are_read_ahead() {
    for fault in ["cold", "cold-start", "warm"] {
        let sb = Sandbox::new();
        let work = sb.work("w");
        for i in 0..400u64 {
            let path = work.join(format!("t/d{}/f{i:03}", i % 4));
            fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            fs::write(&path, noise(i, 3000 + i as usize)).expect("write");
        }
        let before = snapshot(&work.join("t"));
        let out = sb
            .command(saferm_bin())
            .current_dir(&work)
            .args(["-r", "t"])
            .env("SAFERM_TIMINGS", "1")
            .env("SAFERM_FAULT", fault)
            .run();
        assert_eq!(out.code(), Some(0), "{}", out.stderr_text());
        assert!(!work.join("t").exists());
        let err = out.stderr_text();
        // "read ahead: ASKED of 400 files (QUEUED queued)[; gave up: they were cached]"
        let read_ahead = err
            .lines()
            .find_map(|l| l.strip_prefix("saferm: timing: read ahead: "));
        let counts: Option<Vec<usize>> = read_ahead.map(|rest| {
            rest.split(|c: char| !c.is_ascii_digit())
                .filter_map(|n| n.parse().ok())
                .collect()
        });
        match fault {
            "cold" => {
                assert_eq!(counts, Some(vec![399, 400, 399]), "{err}");
                assert!(!err.contains("gave up"), "{err}");
            }
            "cold-start" => {
                let counts = counts.unwrap_or_else(|| panic!("no read-ahead: {err}"));
                // How many were queued before it gave up depends on the scheduling.
                assert_eq!((counts[0], counts[1]), (0, 400), "{err}");
                assert!(
                    read_ahead.is_some_and(|r| r.ends_with("; gave up: they were cached")),
                    "{err}"
                );
            }
            _ => assert_eq!(read_ahead, None, "{err}"),
        }
        let restored = sb.work("restored");
        let tar = Command::new("tar")
            .args(["--zstd", "-xf"])
            .arg(&archives(&sb.store())[0])
            .arg("-C")
            .arg(&restored)
            .status()
            .expect("tar");
        assert!(tar.success());
        let inside = restored.join(work.join("t").strip_prefix("/").expect("absolute"));
        assert_eq!(snapshot(&inside), before, "fault: {fault:?}");
    }
}

/// Owners the system's user and group databases do not know are archived by number alone,
/// as GNU tar does; names come from the system's own lookup (`getpwuid_r`, nsswitch.conf),
/// never from a `getent` process per call. A stand-in `getent` that knows these ids must
/// never be asked (the statically linked build did ask it, through `SAFERM_GETENT`).
#[test]
fn owners_unknown_to_the_system_are_archived_by_number_without_running_getent() {
    assert!(
        is_root(),
        "this test gives files to unknown owners: run the tests as root"
    );
    const UID: u32 = 48_213;
    const GID: u32 = 48_214;
    let sb = Sandbox::new();
    let work = sb.work("w");
    build_tree(&work, &["t/a=alpha", "t/sub/b=beta"]);
    for p in ["t", "t/a", "t/sub", "t/sub/b"] {
        std::os::unix::fs::lchown(work.join(p), Some(UID), Some(GID)).expect("lchown");
    }
    let asked = sb.root().join("getent-was-run");
    let getent = sb.root().join("getent");
    fs::write(
        &getent,
        format!(
            "#!/bin/sh\n: > '{}'\ncase \"$1 $2\" in\n\
             \"passwd {UID}\") echo 'dirann:x:{UID}:{GID}:Ann:/home/dirann:/bin/sh' ;;\n\
             \"group {GID}\") echo 'dirstaff:x:{GID}:dirann' ;;\n\
             *) exit 2 ;;\nesac\n",
            asked.display()
        ),
    )
    .expect("write getent");
    fs::set_permissions(&getent, fs::Permissions::from_mode(0o755)).expect("chmod getent");
    let out = sb
        .command(saferm_bin())
        .current_dir(&work)
        .args(["-r", "t"])
        .env("SAFERM_GETENT", &getent)
        .run();
    assert_eq!(out.code(), Some(0), "{}", out.stderr_text());
    assert_eq!(out.stderr_text(), "");
    assert!(!work.join("t").exists());
    assert!(!asked.exists(), "saferm ran a getent process");
    let list = first_archive_listing(&sb);
    assert_eq!(list.lines().count(), 4, "{list}");
    for line in list.lines() {
        assert!(line.contains(&format!(" {UID}/{GID} ")), "{line}");
    }
    // Known owners have their names: root's, from the same lookup.
    let sb = Sandbox::new();
    let work = sb.work("w");
    build_tree(&work, &["r=root's"]);
    let out = saferm(&sb, &work, &["r"]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr_text());
    let list = first_archive_listing(&sb);
    assert!(list.contains(" root/root "), "{list}");
}

/// The build is cargo's standard one (DESIGN §8): no cargo config in the repository that
/// changes the target directory (`build.target` sent artifacts to `target/<host tuple>/`,
/// where `cargo build --release` users and scripts do not look) or how libc is linked
/// (`rustflags`, which `RUSTFLAGS` silently replaces and `cargo install` from a registry
/// never reads). Static binaries are a release-artifact concern.
#[test]
fn the_repository_keeps_cargo_s_standard_build() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for name in [".cargo/config.toml", ".cargo/config"] {
        let path = root.join(name);
        let Ok(text) = fs::read_to_string(&path) else {
            continue;
        };
        let config: toml::Table = toml::from_str(&text).expect("parse the cargo config");
        let build = config.get("build").and_then(|b| b.as_table());
        for key in ["target", "target-dir", "rustflags"] {
            assert!(
                build.is_none_or(|b| !b.contains_key(key)),
                "{name} sets build.{key}"
            );
        }
        assert!(
            !config.contains_key("target"),
            "{name} has [target.*] settings (rustflags, linker)"
        );
    }
}

/// Symlink targets are kept byte for byte however untidy they are (issue 11 §1.1): the tar
/// crate's `set_link_name` rewrote `/` as empty, `x/.` as `x`, `a//b` as `a/b`, and
/// verification then refused to let any of them go. GNU tar extracts the same bytes, and so
/// does unrm; hard links below a long directory name keep their link name too.
#[test]
fn untidy_symlink_targets_are_archived_byte_for_byte() {
    let sb = Sandbox::new();
    let work = sb.work("w");
    let long = "ab/./c//".repeat(40);
    let mut targets: Vec<Vec<u8>> = [
        "/", "x/.", "a//b", "a/./b", "//x", "/.", "x/", "..", "../", "./", "a/b//",
    ]
    .iter()
    .map(|t| t.as_bytes().to_vec())
    .collect();
    targets.push(b"bad\xff/./name".to_vec());
    targets.push([&b"long/"[..], &[0xfe; 150], b"/./x"].concat());
    for len in [99, 100, 101, 320] {
        targets.push(long.as_bytes()[..len].to_vec());
    }
    let names: Vec<String> = (0..targets.len()).map(|i| format!("l{i}")).collect();
    for (name, target) in names.iter().zip(&targets) {
        std::os::unix::fs::symlink(OsStr::from_bytes(target), work.join(name)).expect("symlink");
    }
    let deep = format!("hl/{}", "n".repeat(120));
    build_tree(&work, &[&format!("{deep}/a=same inode")]);
    fs::hard_link(work.join(&deep).join("a"), work.join(&deep).join("b")).expect("link");
    let mut args: Vec<&str> = names.iter().map(String::as_str).collect();
    args.extend(["-r", "hl"]);

    let out = saferm(&sb, &work, &args);
    assert_eq!(out.stderr_text(), "");
    assert_eq!(out.code(), Some(0), "{}", out.status_text());
    for name in &names {
        assert!(
            fs::symlink_metadata(work.join(name)).is_err(),
            "{name} kept"
        );
    }
    assert!(!work.join("hl").exists());

    let readlinks = |dir: &Path| -> Vec<Vec<u8>> {
        names
            .iter()
            .map(|n| {
                fs::read_link(dir.join(n))
                    .unwrap_or_else(|e| panic!("readlink {n}: {e}"))
                    .into_os_string()
                    .into_vec()
            })
            .collect()
    };
    let same_inode = |dir: &Path| {
        let a = fs::metadata(dir.join(&deep).join("a")).expect("a");
        let b = fs::metadata(dir.join(&deep).join("b")).expect("b");
        a.ino() == b.ino() && a.nlink() == 2
    };
    let found = archives(&sb.store());
    assert_eq!(found.len(), 1);
    let scratch = sb.work("scratch");
    let tar = Command::new("tar")
        .args(["--zstd", "-xpf"])
        .arg(&found[0])
        .arg("-C")
        .arg(&scratch)
        .output()
        .expect("run GNU tar");
    assert!(
        tar.status.success(),
        "GNU tar failed: {}",
        String::from_utf8_lossy(&tar.stderr)
    );
    let extracted = scratch.join(work.strip_prefix("/").expect("absolute"));
    assert_eq!(readlinks(&extracted), targets, "GNU tar's extraction");
    assert!(same_inode(&extracted), "GNU tar's hard link");

    let back = sb
        .command(unrm_bin())
        .current_dir(&work)
        .arg("--last")
        .run();
    assert_eq!(back.code(), Some(0), "unrm: {}", back.stderr_text());
    assert_eq!(readlinks(&work), targets, "unrm's restore");
    assert!(same_inode(&work), "unrm's hard link");
}

/// A file its owner may not read (mode 0000, 0200) is archived as rm's user could read it
/// after `chmod u+r`: saferm gives itself that permission for as long as an open takes and
/// puts the mode back (issue 11 §1.3). The archive and the restore keep the mode; the
/// ctime that changes is accepted as saferm's own, for every name of the inode; when the
/// deletion fails, the files are left with their modes as they were.
#[test]
fn the_owners_unreadable_files_are_archived_with_their_mode() {
    assert!(
        is_root(),
        "this test switches to uid {NOBODY}: run the tests as root"
    );
    let big = noise(11, 9 << 20);
    let build = |work: &Path| {
        build_tree(
            work,
            &["d/zero=secret@0644", "d/wo=write only@0200", "d/ok=ok"],
        );
        // Reading an xattr checks the mode again, after the open.
        set_xattr(&work.join("d/zero"), "user.note", b"kept too");
        fs::set_permissions(work.join("d/zero"), fs::Permissions::from_mode(0o000)).expect("chmod");
        fs::write(work.join("d/big"), &big).expect("write big");
        fs::set_permissions(work.join("d/big"), fs::Permissions::from_mode(0o000)).expect("chmod");
        fs::hard_link(work.join("d/zero"), work.join("d/zero2")).expect("link");
    };
    let modes = |work: &Path| -> Vec<(String, u32)> {
        ["zero", "zero2", "wo", "big", "ok"]
            .iter()
            .map(|n| {
                let m = fs::symlink_metadata(work.join("d").join(n)).expect("stat");
                (n.to_string(), m.mode() & 0o7777)
            })
            .collect()
    };
    let want = [
        ("zero", 0),
        ("zero2", 0),
        ("wo", 0o200),
        ("big", 0),
        ("ok", 0o644),
    ]
    .map(|(n, m)| (n.to_string(), m))
    .to_vec();

    // A failure after the files were read: everything stays, modes as they were.
    let sb = Sandbox::new();
    let work = sb.work("w");
    build(&work);
    sb.chown_all(NOBODY, NOBODY);
    let out = sb
        .command(saferm_bin())
        .args(["-r", "d"])
        .current_dir(&work)
        .env("SAFERM_FAULT", "verify")
        .unprivileged()
        .run();
    assert_eq!(out.code(), Some(1), "{}", out.stderr_text());
    assert_eq!(modes(&work), want);

    let sb = Sandbox::new();
    let work = sb.work("w");
    build(&work);
    sb.chown_all(NOBODY, NOBODY);
    let out = sb
        .command(saferm_bin())
        .args(["-r", "d"])
        .current_dir(&work)
        .unprivileged()
        .run();
    assert_eq!(out.stderr_text(), "");
    assert_eq!(out.code(), Some(0), "{}", out.status_text());
    assert!(!work.join("d").exists(), "d was not removed");
    let back = sb
        .command(unrm_bin())
        .arg("--last")
        .current_dir(&work)
        .unprivileged()
        .run();
    assert_eq!(back.code(), Some(0), "unrm: {}", back.stderr_text());
    assert_eq!(modes(&work), want, "restored modes");
    // Read as root, whom the modes do not stop.
    assert_eq!(fs::read(work.join("d/zero")).expect("zero"), b"secret");
    assert_eq!(
        crate::common::full::xattr(&work.join("d/zero"), "user.note"),
        b"kept too"
    );
    assert_eq!(fs::read(work.join("d/wo")).expect("wo"), b"write only");
    assert!(
        fs::read(work.join("d/big")).expect("big") == big,
        "big differs"
    );
    let (a, b) = (
        fs::metadata(work.join("d/zero")).expect("zero"),
        fs::metadata(work.join("d/zero2")).expect("zero2"),
    );
    assert_eq!(
        (a.ino(), a.nlink()),
        (b.ino(), 2),
        "zero2 is a link to zero"
    );
}

/// As uid 65534, `saferm zero other` on its own `zero` (mode 0) and `other`, with the fault
/// `fault` injected; returns the sandbox (which must outlive the checks), the work
/// directory and the outcome.
fn own_unreadable_file_with_fault(fault: &str) -> (Sandbox, PathBuf, Outcome) {
    assert!(
        is_root(),
        "this test switches to uid {NOBODY}: run the tests as root"
    );
    let sb = Sandbox::new();
    let work = sb.work("w");
    build_tree(&work, &["zero=secret@0000", "other=x"]);
    sb.chown_all(NOBODY, NOBODY);
    let out = sb
        .command(saferm_bin())
        .args(["zero", "other"])
        .current_dir(&work)
        .env("SAFERM_FAULT", fault)
        .unprivileged()
        .run();
    (sb, work, out)
}

/// The ctime saferm accepts for a file it gave itself read permission on is the one its own
/// `chmod` left, not any later one: a `chmod` by someone else after the archive was sealed
/// (the `chmod` fault: same mode, new ctime) keeps the file.
#[test]
fn a_change_after_saferms_own_chmod_keeps_the_file() {
    let (_sb, work, out) = own_unreadable_file_with_fault("chmod");
    assert_eq!(
        out.stderr_text(),
        "rm: cannot remove 'zero': changed while it was being archived\n"
    );
    assert_eq!(out.code(), Some(1));
    let m = fs::symlink_metadata(work.join("zero")).expect("zero is kept");
    assert_eq!(m.mode() & 0o7777, 0);
    assert!(!work.join("other").exists(), "other was not removed");
}

/// When the mode of a file saferm gave itself read permission on cannot be put back (the
/// `mode-back` fault), the file is kept and the message says what is left: owner read
/// permission added, nothing else. The other operands still go.
#[test]
fn a_mode_that_cannot_be_put_back_keeps_the_file_and_says_so() {
    let (_sb, work, out) = own_unreadable_file_with_fault("mode-back");
    assert_eq!(
        out.stderr_text(),
        "rm: cannot remove 'zero': could not archive: could not put its mode back: Input/output error\n"
    );
    assert_eq!(out.code(), Some(1));
    let m = fs::symlink_metadata(work.join("zero")).expect("zero is kept");
    assert_eq!(m.mode() & 0o7777, 0o400, "u+r added, nothing else");
    assert!(!work.join("other").exists(), "other was not removed");
}

/// One entry that does not verify keeps only its own operand (issue 11 §1.2): the others
/// are archived again without it, verified, removed and restorable, and the manifest never
/// names it. Small deletions (verified once sealed) and large ones (verified while written).
#[test]
fn an_entry_that_does_not_verify_keeps_only_its_operand() {
    for large in [false, true] {
        let sb = Sandbox::new();
        let work = sb.work("w");
        build_tree(&work, &["a=alpha", "bad=b", "c/d=delta", "dangle->nowhere"]);
        if large {
            fs::write(work.join("c/big"), noise(3, 9 << 20)).expect("write big");
        }
        let before = snapshot(&work);
        let out = with_fault(
            &sb,
            &work,
            &["-r", "a", "bad", "c", "dangle"],
            "verify-entry=bad",
        );
        assert_eq!(
            out.stderr_text(),
            format!(
                "rm: cannot remove 'bad': could not archive: the archive did not verify: '{}' has mode 644 in the archive, 645 on disk\n",
                work.join("bad").display()
            ),
            "large: {large}"
        );
        assert_eq!(out.code(), Some(1));
        assert_eq!(paths(&work), [PathBuf::from("."), PathBuf::from("bad")]);
        assert_eq!(archives(&sb.store()).len(), 1, "one archive per invocation");
        let m = manifests(&sb.store());
        assert_eq!(m.len(), 1);
        let manifest = fs::read_to_string(&m[0]).expect("manifest");
        assert!(!manifest.contains("/bad\""), "the manifest names bad");
        unrm_ok(&sb, &work, &["--last"]);
        assert_eq!(snapshot(&work), before, "large: {large}");
    }
}

/// Inside one tree, a subtree that cannot be archived is kept with the directories above
/// it, and its siblings go: what GNU rm does when a subtree cannot be removed (here a
/// directory nobody may read), one message for the subtree and none for its ancestors.
#[test]
fn a_subtree_that_does_not_verify_is_kept_with_its_ancestors_only() {
    assert!(
        is_root(),
        "this test switches to uid {NOBODY}: run the tests as root"
    );
    let tree = ["d/x=1", "d/s/bad/in=2", "d/s/y=3", "d/t/z=4", "e=5"];
    let sb = Sandbox::new();
    let ours = sb.work("saferm");
    let gnu = sb.work("gnu");
    build_tree(&ours, &tree);
    build_tree(&gnu, &tree);
    fs::set_permissions(gnu.join("d/s/bad"), fs::Permissions::from_mode(0o000)).expect("chmod");
    sb.chown_all(NOBODY, NOBODY);
    let run = |program: PathBuf, cwd: &Path, fault: &str| {
        sb.command(program)
            .args(["-r", "d", "e"])
            .current_dir(cwd)
            .env("SAFERM_FAULT", fault)
            .unprivileged()
            .run()
    };
    let theirs = run(PathBuf::from("/usr/bin/rm"), &gnu, "");
    assert_eq!(
        theirs.stderr_text(),
        "rm: cannot remove 'd/s/bad': Permission denied\n"
    );
    let out = run(saferm_bin(), &ours, "verify-entry=bad");
    assert_eq!(
        out.stderr_text(),
        format!(
            "rm: cannot remove 'd/s/bad': could not archive: the archive did not verify: '{}' has mode 755 in the archive, 754 on disk\n",
            ours.join("d/s/bad").display()
        )
    );
    assert_eq!(out.code(), theirs.code());
    let kept = [".", "d", "d/s", "d/s/bad", "d/s/bad/in"].map(PathBuf::from);
    assert_eq!(paths(&gnu), kept);
    assert_eq!(paths(&ours), kept);
}

/// A read error in the middle of a large file (the tar header has committed to its size)
/// keeps that file only; the archive is written again without it, and GNU tar finds every
/// other file in it. Two files that fail are both reported, in the walk's order.
#[test]
fn a_read_error_midway_through_a_file_keeps_only_that_file() {
    let sb = Sandbox::new();
    let work = sb.work("w");
    build_tree(&work, &["d/a=alpha", "d/b=beta", "d/e/f=phi", "g=gamma"]);
    let big = noise(5, 6 << 20);
    fs::write(work.join("d/big"), &big).expect("write big");
    let before = snapshot(&work);
    let out = with_fault(&sb, &work, &["-r", "d", "g"], "read-late=big");
    assert_eq!(
        out.stderr_text(),
        "rm: cannot remove 'd/big': could not archive: Input/output error\n"
    );
    assert_eq!(out.code(), Some(1));
    let left: Vec<PathBuf> = paths(&work);
    assert_eq!(left, [".", "d", "d/big"].map(PathBuf::from));
    assert!(
        fs::read(work.join("d/big")).expect("big") == big,
        "big changed"
    );
    let listing = Command::new("tar")
        .args(["--zstd", "-tf"])
        .arg(&archives(&sb.store())[0])
        .output()
        .expect("run GNU tar");
    assert!(listing.status.success());
    let listing = String::from_utf8_lossy(&listing.stdout).into_owned();
    assert!(
        listing.contains("/d/e/f\n") && listing.contains("/g\n"),
        "{listing}"
    );
    assert!(!listing.contains("/d/big"), "{listing}");
    unrm_ok(&sb, &work, &["--last"]);
    assert_eq!(snapshot(&work), before);

    let sb = Sandbox::new();
    let work = sb.work("w");
    build_tree(&work, &["d/a=alpha", "d/b=beta", "d/e/f=phi", "g=gamma"]);
    let out = with_fault(&sb, &work, &["-r", "d", "g"], "read=f,a");
    // In readdir order, as rm would meet them.
    let mut lines: Vec<String> = out.stderr_text().lines().map(String::from).collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "rm: cannot remove 'd/a': could not archive: Input/output error",
            "rm: cannot remove 'd/e/f': could not archive: Input/output error"
        ]
    );
    assert_eq!(
        paths(&work),
        [".", "d", "d/a", "d/e", "d/e/f"].map(PathBuf::from)
    );
}

/// A setgid file of the user's whose group they are not in cannot be given read permission
/// without losing its setgid bit (chmod by a non-member drops it): it is kept as it is, and
/// reported as unreadable, rather than changed.
#[test]
fn an_unreadable_setgid_file_of_another_group_is_kept_unchanged() {
    assert!(
        is_root(),
        "this test switches to uid {NOBODY}: run the tests as root"
    );
    let sb = Sandbox::new();
    let work = sb.work("w");
    build_tree(&work, &["sg=x", "other=y"]);
    sb.chown_all(NOBODY, NOBODY);
    std::os::unix::fs::chown(work.join("sg"), Some(NOBODY), Some(0)).expect("chown");
    fs::set_permissions(work.join("sg"), fs::Permissions::from_mode(0o2000)).expect("chmod");
    let out = sb
        .command(saferm_bin())
        .args(["sg", "other"])
        .current_dir(&work)
        .unprivileged()
        .run();
    assert_eq!(
        out.stderr_text(),
        "rm: cannot remove 'sg': could not archive: Permission denied\n"
    );
    assert_eq!(out.code(), Some(1));
    let m = fs::symlink_metadata(work.join("sg")).expect("sg is kept");
    assert_eq!(m.mode() & 0o7777, 0o2000, "its mode is unchanged");
    assert!(!work.join("other").exists());
}

/// A directory of the user's they may not read: empty, rm removes it, and saferm archives
/// it with its extended attributes (read after `chmod u+r`, the mode then put back), which
/// unrm restores; with something in it, rm cannot remove it, nor can saferm, and its mode
/// is as it was.
#[test]
fn the_owners_unreadable_empty_directory_keeps_its_xattrs() {
    assert!(
        is_root(),
        "this test switches to uid {NOBODY}: run the tests as root"
    );
    let sb = Sandbox::new();
    let work = sb.work("w");
    build_tree(&work, &["e/", "ne/f=x"]);
    set_xattr(&work.join("e"), "user.note", b"dir note");
    sb.chown_all(NOBODY, NOBODY);
    for d in ["e", "ne"] {
        fs::set_permissions(work.join(d), fs::Permissions::from_mode(0o000)).expect("chmod");
    }
    let out = sb
        .command(saferm_bin())
        .args(["-r", "e", "ne"])
        .current_dir(&work)
        .unprivileged()
        .run();
    assert_eq!(
        out.stderr_text(),
        "rm: cannot remove 'ne': Permission denied\n"
    );
    assert_eq!(out.code(), Some(1));
    assert!(
        fs::symlink_metadata(work.join("e")).is_err(),
        "e was not removed"
    );
    let ne = fs::symlink_metadata(work.join("ne")).expect("ne is kept");
    assert_eq!(ne.mode() & 0o7777, 0, "ne's mode is as it was");
    let back = sb
        .command(unrm_bin())
        .args(["e"])
        .current_dir(&work)
        .unprivileged()
        .run();
    assert_eq!(back.code(), Some(0), "unrm: {}", back.stderr_text());
    let e = fs::symlink_metadata(work.join("e")).expect("e restored");
    assert_eq!(e.mode() & 0o7777, 0);
    assert_eq!(
        crate::common::full::xattr(&work.join("e"), "user.note"),
        b"dir note"
    );
}

/// A writable `MAP_SHARED` mapping of `path`, held by this (test) process: writes through it
/// reach the file without a `write(2)`, and, once its page is dirty, without a new mtime or
/// ctime. Its descriptor is closed: the mapping alone keeps the file open for writing.
struct SharedMapping {
    ptr: *mut u8,
    len: usize,
}

impl SharedMapping {
    fn new(path: &Path) -> SharedMapping {
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .expect("open the file to map");
        let len = file.metadata().expect("stat").len() as usize;
        // SAFETY: a fresh shared mapping of an open file; checked below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                std::os::fd::AsRawFd::as_raw_fd(&file),
                0,
            )
        };
        assert_ne!(ptr, libc::MAP_FAILED, "mmap");
        SharedMapping {
            ptr: ptr.cast(),
            len,
        }
    }

    fn write(&self, at: usize, bytes: &[u8]) {
        assert!(at + bytes.len() <= self.len);
        // SAFETY: within the mapping, which lives as long as self.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.ptr.add(at), bytes.len()) };
    }
}

impl Drop for SharedMapping {
    fn drop(&mut self) {
        // SAFETY: the mapping made in new, unmapped once.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// Run saferm with the `pause` fault: it stops between sealing the archive and unlinking,
/// `during` runs, then it goes on.
fn saferm_paused(sb: &Sandbox, cwd: &Path, args: &[&str], during: impl FnOnce()) -> Outcome {
    let pause = sb.work("pause");
    let cmd = sb
        .command(saferm_bin())
        .current_dir(cwd)
        .args(args)
        .env("SAFERM_FAULT", "pause")
        .env("SAFERM_TEST_PAUSE_DIR", &pause);
    std::thread::scope(|s| {
        let run = s.spawn(|| cmd.run());
        while !pause.join("paused").exists() && !run.is_finished() {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(pause.join("paused").exists(), "saferm did not pause");
        during();
        fs::write(pause.join("resume"), b"").expect("resume");
        run.join().expect("saferm thread")
    })
}

#[test]
fn a_write_through_a_shared_mapping_during_the_deletion_keeps_the_file() {
    let sb = Sandbox::new();
    let work = sb.work("w");
    fs::write(work.join("f"), vec![b'a'; 8192]).expect("write");
    let map = SharedMapping::new(&work.join("f"));
    // Its page is dirty and writable before saferm looks: later writes fault no more, so
    // they change neither mtime nor ctime.
    map.write(0, b"b");
    let out = saferm_paused(&sb, &work, &["f"], || map.write(1, b"final"));
    assert_eq!(out.code(), Some(1), "{}", out.stderr_text());
    assert_eq!(
        out.stderr_text(),
        "rm: cannot remove 'f': changed while it was being archived\n"
    );
    let kept = fs::read(work.join("f")).expect("kept");
    assert_eq!(&kept[..6], b"bfinal");
}

#[test]
fn a_file_mapped_for_writing_elsewhere_but_unchanged_is_removed_as_archived() {
    let sb = Sandbox::new();
    let work = sb.work("w");
    fs::write(work.join("f"), vec![b'a'; 8192]).expect("write");
    let map = SharedMapping::new(&work.join("f"));
    map.write(0, b"mapped");
    let out = saferm_paused(&sb, &work, &["f"], || {});
    assert_eq!(out.code(), Some(0), "{}", out.stderr_text());
    assert_eq!(out.stderr_text(), "");
    assert!(!work.join("f").exists());
    drop(map);
    unrm_ok(&sb, &work, &["--last"]);
    let back = fs::read(work.join("f")).expect("restored");
    assert_eq!(&back[..6], b"mapped");
    assert_eq!(back.len(), 8192);
}
