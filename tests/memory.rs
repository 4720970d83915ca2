//! Memory: running out of it is rm's error (`rm: memory exhausted`, exit 1), with nothing
//! removed and nothing left in the store that a later run does not sweep.

use std::fs;
use std::path::{Path, PathBuf};

use crate::common::full::set_mtime;
use crate::common::{files_under, manifests, saferm_bin, saferm_ok, Sandbox};

/// `work/many`, holding `n` empty files named by `name`.
fn empty_files(work: &Path, n: usize, name: impl Fn(usize) -> String) -> PathBuf {
    let many = work.join("many");
    fs::create_dir(&many).expect("mkdir");
    for i in 0..n {
        fs::write(many.join(name(i)), b"").expect("create");
    }
    many
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
    let out = sb
        .command(saferm_bin())
        .current_dir(&work)
        .args(["-rf", "many"])
        .limit(libc::RLIMIT_AS, SMALL_AS)
        .run();
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

/// What 100,000 entries in one directory may add to the resident memory of removing one
/// file. They add about 28 MiB here (debug build, two cores: 9 MiB for one file, 37 MiB for
/// all); before manifest entries, plan nodes and unlink jobs were made compact (issue 11
/// §1.4) they added 50 to 80 MiB.
///
/// Resident memory, not an address-space limit as GNU's `many-dir-entries-vs-OOM` sets: what
/// a threaded program reserves (a 2 MiB stack per thread, glibc's 64 MiB heap per thread
/// arena, which it falls back from when the limit refuses it) differs from one machine and
/// one run to the next, and under such a limit the same run passed at 52 MiB and failed at
/// 50, 47 and 44 MiB here, while CI's machine failed at 60.
const HUGE_DIRECTORY_BUDGET: u64 = 40 << 20;

/// A huge directory is removed in memory bounded by what removing one file needs plus a
/// fixed budget, rather than in memory that grows with whatever the walk meets.
#[test]
fn a_huge_directory_is_removed_in_bounded_memory() {
    let sb = Sandbox::new();
    let work = sb.work("w");
    fs::write(work.join("one"), b"1").expect("create");
    let baseline = saferm_ok(&sb, &work, &["one"])
        .peak_rss
        .expect("the run exited");

    let many = empty_files(&work, 100_000, |i| format!("file{i:06}"));
    let out = saferm_ok(&sb, &work, &["-rf", "many"]);
    assert_eq!(out.stderr_text(), "");
    assert!(!many.exists(), "many is removed");
    let manifests = manifests(&sb.store());
    assert_eq!(manifests.len(), 2, "two deletions: {manifests:?}");
    let peak = out.peak_rss.expect("the run exited");
    assert!(
        peak <= baseline + HUGE_DIRECTORY_BUDGET,
        "100,000 entries took {} MiB resident, one file {} MiB: more than {} MiB apart",
        peak >> 20,
        baseline >> 20,
        HUGE_DIRECTORY_BUDGET >> 20
    );
}
