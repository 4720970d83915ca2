//! A store that is crafted, damaged, misplaced or reached by another path: ids that climb
//! out of the store, special files in place of store files, a store directory that is not
//! empty, and the store seen through a bind mount.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::{
    archives, build_tree, edit_manifest, files_under, manifests, saferm_bin, saferm_ok as saferm,
    unrm_bin, Outcome, Sandbox,
};

/// Long enough for any of these runs on a loaded machine; short enough that a run that
/// hangs (a FIFO opened for reading) fails the test instead of holding up the suite.
const HANG: Duration = Duration::from_secs(20);

/// unrm given at most [`HANG`]: a run that hangs fails the test instead of the suite.
fn unrm_in_time(sb: &Sandbox, cwd: &Path, args: &[&str]) -> Outcome {
    sb.command(unrm_bin())
        .current_dir(cwd)
        .args(args)
        .timeout(HANG)
        .run()
}

/// The one manifest in the store.
fn only_manifest(sb: &Sandbox) -> PathBuf {
    let all: Vec<PathBuf> = manifests(&sb.store())
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .filter(|p| !p.to_string_lossy().ends_with(".restored.json"))
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
    assert_eq!(unrm_in_time(&sb, &w, &["--list"]).code(), Some(0));
    let manifest = only_manifest(&sb);
    // From manifests/<month>/ three levels up is the sandbox's data/ directory.
    edit_manifest(&manifest, |json| {
        json["id"] = serde_json::Value::from("../../../escaped");
    });
    // The lying manifest is damage: it is set aside and rebuilt from the copy inside the
    // archive (issue 12 §5), which holds the real id; the restore then uses that.
    let out = unrm_in_time(&sb, &w, &["f"]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr_text());
    assert!(
        out.stderr_text()
            .contains("rebuilt it from the copy inside its archive"),
        "{}",
        out.stderr_text()
    );
    let escaped: Vec<PathBuf> = files_under(sb.root())
        .into_iter()
        .filter(|p| p.to_string_lossy().contains("escaped"))
        .collect();
    assert!(escaped.is_empty(), "written outside the store: {escaped:?}");
    assert_eq!(fs::read(w.join("f")).expect("f back"), b"1");
}

#[test]
fn a_crafted_listing_cache_with_a_bad_id_is_ignored() {
    let sb = Sandbox::new();
    let w = sb.work("w");
    build_tree(&w, &["f=1"]);
    saferm(&sb, &w, &["f"]);
    assert_eq!(unrm_in_time(&sb, &w, &["--list"]).code(), Some(0));
    let index = sb.store().join("index.jsonl");
    let text = fs::read_to_string(&index).expect("index");
    let mut line: serde_json::Value =
        serde_json::from_str(text.lines().next().expect("a line")).expect("json");
    line["id"] = serde_json::Value::from("../../../escaped");
    fs::write(&index, format!("{line}\n{text}")).expect("craft");
    let out = unrm_in_time(&sb, &w, &["--list", "--json"]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr_text());
    assert!(
        !out.stdout_text().contains("escaped"),
        "{}",
        out.stdout_text()
    );
    let out = unrm_in_time(&sb, &w, &["f"]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr_text());
    assert_eq!(fs::read(w.join("f")).expect("restored"), b"1");
    assert!(files_under(sb.root())
        .iter()
        .all(|p| !p.to_string_lossy().contains("escaped")));
}

/// What takes the place of a store file in the tests of special files.
#[derive(Clone, Copy, Debug)]
enum Special {
    Fifo,
    /// A symlink to `/dev/zero`: endless bytes for a reader that follows it.
    Zeros,
}

/// Put `what` in the place of `path` (made beside it, renamed over it).
fn plant(path: &Path, what: Special) {
    let new = path.with_extension("planted");
    match what {
        Special::Fifo => nix::unistd::mkfifo(&new, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .expect("mkfifo"),
        Special::Zeros => std::os::unix::fs::symlink("/dev/zero", &new).expect("symlink"),
    }
    fs::rename(&new, path).expect("rename over the store file");
}

/// A run bounded in time ([`HANG`]) and in address space, so that a regression that reads
/// `/dev/zero` to the end fails instead of taking the machine's memory.
fn bounded(sb: &Sandbox, program: PathBuf, cwd: &Path, args: &[&str]) -> Outcome {
    sb.command(program)
        .current_dir(cwd)
        .args(args)
        .timeout(HANG)
        .limit(libc::RLIMIT_AS, 4 << 30)
        .run()
}

/// A store that has been used (its `FORMAT`, listing cache and retention record written),
/// `f` deleted into it, and `g` still to delete.
fn used_store() -> (Sandbox, PathBuf) {
    let sb = Sandbox::new();
    let w = sb.work("w");
    build_tree(&w, &["f=1", "g=2"]);
    saferm(&sb, &w, &["f"]);
    assert_eq!(unrm_in_time(&sb, &w, &["--list"]).code(), Some(0));
    for name in ["FORMAT", "index.jsonl", "retention.json"] {
        assert!(sb.store().join(name).is_file(), "{name} written");
    }
    (sb, w)
}

#[test]
fn a_fifo_or_dev_zero_as_format_refuses_the_store_without_hanging() {
    for what in [Special::Fifo, Special::Zeros] {
        let (sb, w) = used_store();
        plant(&sb.store().join("FORMAT"), what);
        let out = bounded(&sb, saferm_bin(), &w, &["g"]);
        assert_eq!(out.code(), Some(1), "{what:?}: {}", out.status_text());
        let err = out.stderr_text();
        assert!(
            err.starts_with("rm: cannot remove 'g': "),
            "{what:?}: {err}"
        );
        assert!(err.contains("FORMAT"), "{what:?}: {err}");
        assert!(w.join("g").exists(), "{what:?}: g removed without a store");
        for args in [&["--list"][..], &["f"], &["--check"]] {
            let out = bounded(&sb, unrm_bin(), &w, args);
            assert_eq!(
                out.code(),
                Some(1),
                "{what:?} {args:?}: {}",
                out.status_text()
            );
            assert!(
                out.stderr_text().contains("FORMAT"),
                "{}",
                out.stderr_text()
            );
        }
    }
}

#[test]
fn a_fifo_or_dev_zero_as_a_cache_is_ignored_and_replaced() {
    for name in ["index.jsonl", "retention.json"] {
        for what in [Special::Fifo, Special::Zeros] {
            let (sb, w) = used_store();
            plant(&sb.store().join(name), what);
            let out = bounded(&sb, saferm_bin(), &w, &["g"]);
            assert_eq!(
                out.code(),
                Some(0),
                "{name} {what:?}: {}",
                out.status_text()
            );
            assert!(!w.join("g").exists());
            for args in [&["--list"][..], &["f"], &["g"]] {
                let out = bounded(&sb, unrm_bin(), &w, args);
                assert_eq!(
                    out.code(),
                    Some(0),
                    "{name} {what:?} {args:?}: {} {}",
                    out.status_text(),
                    out.stderr_text()
                );
            }
            assert_eq!(fs::read(w.join("f")).expect("f back"), b"1");
            assert_eq!(fs::read(w.join("g")).expect("g back"), b"2");
        }
    }
}

#[test]
fn a_fifo_or_dev_zero_as_a_manifest_is_reported_without_hanging() {
    for cached in [false, true] {
        for what in [Special::Fifo, Special::Zeros] {
            let sb = Sandbox::new();
            let w = sb.work("w");
            build_tree(&w, &["f=1"]);
            saferm(&sb, &w, &["f"]);
            if !cached {
                // No listing cache: the headers are read from the manifests.
                assert!(!sb.store().join("index.jsonl").exists());
            } else {
                assert_eq!(unrm_in_time(&sb, &w, &["--list"]).code(), Some(0));
            }
            plant(&only_manifest(&sb), what);
            for args in [&["--list"][..], &["f"], &["--check"]] {
                let out = bounded(&sb, unrm_bin(), &w, args);
                assert!(
                    out.code().is_some(),
                    "cached {cached} {what:?} {args:?}: {}",
                    out.status_text()
                );
                assert!(
                    !out.stderr_text().contains("panicked"),
                    "{}",
                    out.stderr_text()
                );
            }
            // `unrm f` set the special file aside and rebuilt the manifest from its archive.
            let check = bounded(&sb, unrm_bin(), &w, &["--check"]);
            assert_eq!(check.code(), Some(0), "{}", check.stderr_text());
            assert!(fs::symlink_metadata(only_manifest(&sb))
                .expect("manifest")
                .is_file());
            let out = bounded(&sb, saferm_bin(), &w, &["-f", "nothing"]);
            assert_eq!(out.code(), Some(0), "{}", out.status_text());
        }
    }
}

#[test]
fn a_fifo_or_dev_zero_as_the_config_file_is_refused_without_hanging() {
    for what in [Special::Fifo, Special::Zeros] {
        let sb = Sandbox::new();
        let w = sb.work("w");
        build_tree(&w, &["g=2"]);
        fs::create_dir_all(sb.config().join("saferm")).expect("mkdir");
        plant(&sb.config().join("saferm/config.toml"), what);
        let out = bounded(&sb, saferm_bin(), &w, &["g"]);
        assert_eq!(out.code(), Some(1), "{what:?}: {}", out.status_text());
        assert!(
            out.stderr_text().contains("config.toml"),
            "{}",
            out.stderr_text()
        );
        assert!(w.join("g").exists());
        let out = bounded(&sb, unrm_bin(), &w, &["--list"]);
        assert_eq!(out.code(), Some(1), "{what:?}: {}", out.status_text());
    }
}

/// Names and modes of everything below `dir`, to show that nothing changed.
fn listing(dir: &Path) -> Vec<(PathBuf, u32)> {
    use std::os::unix::fs::MetadataExt;
    let mut out = vec![(
        dir.to_path_buf(),
        fs::symlink_metadata(dir).expect("stat").mode(),
    )];
    for p in files_under(dir) {
        let mode = fs::symlink_metadata(&p).expect("stat").mode();
        out.push((p, mode));
    }
    out
}

#[test]
fn a_store_is_made_only_in_a_new_or_empty_directory() {
    use std::os::unix::fs::PermissionsExt;
    let sb = Sandbox::new();
    let w = sb.work("w");
    build_tree(&w, &["g=2"]);
    let home = sb.home();
    build_tree(
        &home,
        &["notes.txt=mine", "tmp/old-download=keep", "archives/"],
    );
    fs::set_permissions(&home, fs::Permissions::from_mode(0o755)).expect("chmod");
    let before = listing(&home);
    let home_text = home.to_str().expect("utf-8 sandbox path");
    let out = sb
        .command(saferm_bin())
        .current_dir(&w)
        .env("SAFERM_STORE", home_text)
        .args(["g"])
        .run();
    assert_eq!(out.code(), Some(1), "{}", out.stderr_text());
    let err = out.stderr_text();
    assert!(
        err.starts_with("rm: cannot remove 'g': ") && err.contains("is not a saferm store"),
        "{err}"
    );
    assert!(w.join("g").exists());
    let out = sb
        .command(unrm_bin())
        .env("SAFERM_STORE", home_text)
        .args(["--list"])
        .run();
    assert_eq!(out.code(), Some(1), "{}", out.stderr_text());
    assert!(
        out.stderr_text().contains("is not a saferm store"),
        "{}",
        out.stderr_text()
    );
    assert_eq!(listing(&home), before, "the directory was changed");

    // An empty directory, and a new one, become stores.
    for store in [sb.work("empty"), sb.root().join("new/store")] {
        if store.exists() {
            fs::set_permissions(&store, fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        build_tree(&w, &["g=2"]);
        let out = sb
            .command(saferm_bin())
            .current_dir(&w)
            .env("SAFERM_STORE", store.to_str().expect("utf-8"))
            .args(["g"])
            .run();
        assert_eq!(
            out.code(),
            Some(0),
            "{}: {}",
            store.display(),
            out.stderr_text()
        );
        assert!(!w.join("g").exists());
        assert!(store.join("FORMAT").is_file());
        use std::os::unix::fs::MetadataExt;
        assert_eq!(fs::metadata(&store).expect("stat").mode() & 0o777, 0o700);
    }
}

#[test]
fn a_store_whose_creation_was_cut_short_is_finished() {
    let sb = Sandbox::new();
    let w = sb.work("w");
    build_tree(&w, &["g=2"]);
    // What a saferm killed before FORMAT was in place leaves.
    fs::create_dir(sb.store()).expect("mkdir");
    build_tree(
        &sb.store(),
        &["tmp/small.4242.0badf00d.tmp=saferm-st", "archives/"],
    );
    let out = sb.command(saferm_bin()).current_dir(&w).args(["g"]).run();
    assert_eq!(out.code(), Some(0), "{}", out.stderr_text());
    assert!(sb.store().join("FORMAT").is_file());
}

/// Every file in the store and its content, to show that a run took nothing from it.
fn store_files(sb: &Sandbox) -> Vec<(PathBuf, Vec<u8>)> {
    let skip = ["lock", "index.jsonl", "retention.json"];
    files_under(&sb.store())
        .into_iter()
        .filter(|p| !p.starts_with(sb.store().join("tmp")))
        .filter(|p| !p.file_name().is_some_and(|n| skip.iter().any(|s| n == *s)))
        .map(|p| {
            let bytes = fs::read(&p).unwrap_or_default();
            (p, bytes)
        })
        .collect()
}

#[test]
fn the_store_seen_through_a_bind_mount_is_skipped_and_kept() {
    let sb = Sandbox::new();
    let w = sb.work("w");
    build_tree(&w, &["f=precious"]);
    saferm(&sb, &w, &["f"]);
    let before = store_files(&sb);
    let archive = before
        .iter()
        .map(|(p, _)| p.clone())
        .find(|p| p.to_string_lossy().ends_with(".tar.zst"))
        .expect("an archive");
    let month = archive.parent().and_then(|m| m.file_name()).expect("month");
    let mnt = sb.work("mnt");
    for sub in ["store", "archives", "other"] {
        fs::create_dir(mnt.join(sub)).expect("mkdir");
    }
    // Unmounted before the sandbox is removed (declared after it), even when a check fails.
    let _store = crate::common::BindMount::mount(&sb.store(), &mnt.join("store"))
        .expect("bind-mount the store");
    let _archives =
        crate::common::BindMount::mount(&sb.store().join("archives"), &mnt.join("archives"))
            .expect("bind-mount archives/");
    let rm = |args: &[&str]| {
        sb.command(saferm_bin())
            .current_dir(sb.root())
            .args(args)
            .timeout(HANG)
            .run()
    };

    let out = rm(&["-rf", "mnt/store"]);
    assert_eq!(out.code(), Some(1), "{}", out.stderr_text());
    assert_eq!(
        out.stderr_text(),
        "rm: skipping 'mnt/store', since it is the saferm store\n"
    );
    let out = rm(&["-rf", "mnt/archives"]);
    assert_eq!(out.code(), Some(1), "{}", out.stderr_text());
    assert_eq!(
        out.stderr_text(),
        "rm: skipping 'mnt/archives', since it is part of the saferm store\n"
    );
    // Everything in the store, named through the bind mounts (as `rm -rf mnt/store/*`).
    let mut names: Vec<String> = fs::read_dir(mnt.join("store"))
        .expect("list")
        .flatten()
        .map(|e| format!("mnt/store/{}", e.file_name().to_string_lossy()))
        .collect();
    names.push(format!("mnt/archives/{}", month.to_string_lossy()));
    names.push(format!(
        "mnt/archives/{}/{}",
        month.to_string_lossy(),
        archive.file_name().expect("name").to_string_lossy()
    ));
    names.sort();
    let mut args = vec!["-rf"];
    args.extend(names.iter().map(String::as_str));
    let out = rm(&args);
    assert_eq!(out.code(), Some(1), "{}", out.stderr_text());
    let err = out.stderr_text();
    for name in &names {
        assert!(
            err.contains(&format!(
                "rm: cannot remove '{name}': it is inside the saferm store (use 'unrm --purge')\n"
            )),
            "{name}: {err}"
        );
    }
    // The directory holding both mounts: the user's files go, the store stays.
    fs::write(mnt.join("other/mine"), b"x").expect("write");
    let out = rm(&["-rf", "mnt"]);
    assert_eq!(out.code(), Some(1), "{}", out.stderr_text());
    let err = out.stderr_text();
    assert!(
        err.contains("rm: skipping 'mnt/store', since it is the saferm store\n")
            && err.contains("rm: skipping 'mnt/archives', since it is part of the saferm store\n"),
        "{err}"
    );
    assert!(!mnt.join("other").exists(), "the user's files are removed");

    // Nothing of the store went or changed (the run on `mnt` added its own deletion).
    let after = store_files(&sb);
    for (path, bytes) in &before {
        assert!(
            after.iter().any(|(p, b)| p == path && b == bytes),
            "the store lost or changed {}",
            path.display()
        );
    }
    let check = unrm_in_time(&sb, &w, &["--check"]);
    assert_eq!(check.code(), Some(0), "{}", check.stderr_text());
    let out = unrm_in_time(&sb, &w, &["f"]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr_text());
    assert_eq!(fs::read(w.join("f")).expect("restored"), b"precious");
}

#[test]
fn another_store_is_recognised_by_its_format_marker() {
    let sb = Sandbox::new();
    let w = sb.work("w");
    build_tree(&w, &["f=1"]);
    // An old store, left where SAFERM_STORE used to point.
    let old = sb.work("old-store");
    let out = sb
        .command(saferm_bin())
        .current_dir(&w)
        .env("SAFERM_STORE", old.to_str().expect("utf-8"))
        .args(["f"])
        .run();
    assert_eq!(out.code(), Some(0), "{}", out.stderr_text());
    let before = files_under(&old);
    let out = sb.command(saferm_bin()).args(["-rf", "old-store"]).run();
    assert_eq!(out.code(), Some(1), "{}", out.stderr_text());
    assert_eq!(
        out.stderr_text(),
        "rm: skipping 'old-store', since it is a saferm store\n"
    );
    let out = sb.command(saferm_bin()).args(["old-store/FORMAT"]).run();
    assert_eq!(out.code(), Some(1), "{}", out.stderr_text());
    assert_eq!(
        out.stderr_text(),
        "rm: cannot remove 'old-store/FORMAT': it is inside a saferm store (use 'unrm --purge')\n"
    );
    assert_eq!(files_under(&old), before);
}

/// The one archive in the store.
fn only_archive(sb: &Sandbox) -> PathBuf {
    let all: Vec<PathBuf> = archives(&sb.store())
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".tar.zst"))
        .collect();
    assert_eq!(all.len(), 1, "{all:?}");
    all[0].clone()
}

#[test]
fn a_fifo_or_dev_zero_as_an_archive_is_reported_without_hanging() {
    for what in [Special::Fifo, Special::Zeros] {
        let sb = Sandbox::new();
        let w = sb.work("w");
        build_tree(&w, &["f=1"]);
        saferm(&sb, &w, &["f"]);
        plant(&only_archive(&sb), what);
        for args in [&["f"][..], &["--check"], &["--check", "--repair"]] {
            let out = bounded(&sb, unrm_bin(), &w, args);
            assert_eq!(
                out.code(),
                Some(1),
                "{what:?} {args:?}: {} {}",
                out.status_text(),
                out.stderr_text()
            );
        }
        assert!(!w.join("f").exists());
    }
}

#[test]
fn an_archive_month_replaced_by_a_symlink_is_not_followed() {
    let sb = Sandbox::new();
    let w = sb.work("w");
    build_tree(&w, &["f=1"]);
    saferm(&sb, &w, &["f"]);
    let archive = only_archive(&sb);
    let month = archive.parent().expect("month").to_path_buf();
    // The same archive, elsewhere, and the month made a link to it.
    let elsewhere = sb.work("elsewhere");
    fs::rename(&month, elsewhere.join("m")).expect("move the month");
    std::os::unix::fs::symlink(elsewhere.join("m"), &month).expect("symlink");
    let out = unrm_in_time(&sb, &w, &["f"]);
    assert_eq!(out.code(), Some(1), "{}", out.stderr_text());
    assert!(!w.join("f").exists(), "read through a symlink in the store");
}
