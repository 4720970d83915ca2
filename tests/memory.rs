//! Memory: running out of it is rm's error (`rm: memory exhausted`, exit 1), with nothing
//! removed and nothing left in the store that a later run does not sweep.

use std::fs;
use std::path::{Path, PathBuf};

use crate::common::full::set_mtime;
use crate::common::{files_under, manifests, saferm_bin, Sandbox};

/// `work/many`, holding `n` empty files named by `name`.
fn empty_files(work: &Path, n: usize, name: impl Fn(usize) -> String) -> PathBuf {
    let many = work.join("many");
    fs::create_dir(&many).expect("mkdir");
    for i in 0..n {
        fs::write(many.join(name(i)), b"").expect("create");
    }
    many
}

/// `saferm -rf many` in `work`, in an address space of `limit` bytes.
fn rm_rf_many_within(sb: &Sandbox, work: &Path, limit: u64) -> crate::common::Outcome {
    sb.command(saferm_bin())
        .current_dir(work)
        .args(["-rf", "many"])
        .limit(libc::RLIMIT_AS, limit)
        .run()
}

/// What saferm needs to start and remove one file fits in this address space; 50,000
/// entries with long names do not, and the first allocation to fail is one of Rust's, in
/// the walk (with short names the plan fits, and zstd's own malloc fails first, which is
/// "could not archive", also exit 1).
const SMALL_AS: u64 = 28 << 20;

#[test]
fn running_out_of_memory_is_rms_error_and_removes_nothing() {
    let sb = Sandbox::new();
    let work = sb.work("w");
    let many = empty_files(&work, 50_000, |i| format!("f{i:05}{}", "n".repeat(200)));
    let out = rm_rf_many_within(&sb, &work, SMALL_AS);
    assert_eq!(out.code(), Some(1), "{}", out.stderr_text());
    assert_eq!(out.stderr_text(), "rm: memory exhausted\n");
    assert_eq!(fs::read_dir(&many).expect("kept").count(), 50_000);
    let manifests = manifests(&sb.store());
    assert!(manifests.is_empty(), "nothing published: {manifests:?}");

    // What the failed run left is swept once it is stale (an hour old), by the next run.
    let left: Vec<PathBuf> = ["archives", "tmp"]
        .iter()
        .flat_map(|d| files_under(&sb.store().join(d)))
        .collect();
    for f in &left {
        set_mtime(f, 1_000_000_000, 0);
    }
    fs::write(work.join("one"), b"1").expect("create");
    let out = sb
        .command(saferm_bin())
        .current_dir(&work)
        .arg("one")
        .limit(libc::RLIMIT_AS, SMALL_AS)
        .run();
    assert_eq!(out.code(), Some(0), "{}", out.stderr_text());
    for f in &left {
        assert!(!f.exists(), "{} was not swept", f.display());
    }
}

/// GNU's `many-dir-entries-vs-OOM`, in saferm's terms: a huge directory is removed in a
/// bounded address space. 100,000 entries in one directory need about 52 MiB of address
/// space (debug build, two cores: thread stacks and zstd's workers included); before
/// manifest entries, plan nodes and unlink jobs were made compact (issue 11 §1.4) they
/// needed between 64 and 96 MiB, and this run ended in `memory exhausted`.
#[test]
fn a_huge_directory_is_removed_in_bounded_memory() {
    let sb = Sandbox::new();
    let work = sb.work("w");
    let many = empty_files(&work, 100_000, |i| format!("file{i:06}"));
    let out = rm_rf_many_within(&sb, &work, 64 << 20);
    assert_eq!(out.code(), Some(0), "{}", out.stderr_text());
    assert_eq!(out.stderr_text(), "");
    assert!(!many.exists(), "many is removed");
    let manifests = manifests(&sb.store());
    assert_eq!(manifests.len(), 1, "one deletion: {manifests:?}");
}
