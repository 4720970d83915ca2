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

/// The least address space, to the MiB, in which `saferm -rf one` removes one small file
/// here: the binary, the loader, thread stacks and allocator set-up, which differ from one
/// machine and build to the next. GNU's test measures the same baseline (`get_min_ulimit_v_`).
fn least_address_space(sb: &Sandbox, work: &Path) -> u64 {
    let (mut fails, mut fits) = (1u64 << 20, 512u64 << 20);
    while fits - fails > 1 << 20 {
        let mid = (fails + fits) / 2;
        let one = work.join("one");
        fs::write(&one, b"1").expect("create");
        let out = sb
            .command(saferm_bin())
            .current_dir(work)
            .args(["-rf", "one"])
            .limit(libc::RLIMIT_AS, mid)
            .run();
        if out.code() == Some(0) && !one.exists() {
            fits = mid;
        } else {
            fails = mid;
        }
    }
    fits
}

/// What 100,000 entries in one directory may add to the baseline. They add about 38 MiB
/// here (debug build, two cores: a baseline of 12 MiB, about 50 MiB in all); before manifest
/// entries, plan nodes and unlink jobs were made compact (issue 11 §1.4) they added 50 to
/// 80 MiB, and this run ended in `memory exhausted`.
const HUGE_DIRECTORY_BUDGET: u64 = 48 << 20;

/// GNU's `many-dir-entries-vs-OOM`, in saferm's terms: a huge directory is removed in an
/// address space bounded by what removing one file needs plus a fixed budget.
#[test]
fn a_huge_directory_is_removed_in_bounded_memory() {
    let sb = Sandbox::new();
    let work = sb.work("w");
    let probe = Sandbox::new();
    let baseline = least_address_space(&probe, &probe.work("w"));
    let many = empty_files(&work, 100_000, |i| format!("file{i:06}"));
    let out = rm_rf_many_within(&sb, &work, baseline + HUGE_DIRECTORY_BUDGET);
    assert_eq!(
        out.code(),
        Some(0),
        "baseline {} MiB: {}",
        baseline >> 20,
        out.stderr_text()
    );
    assert_eq!(out.stderr_text(), "");
    assert!(!many.exists(), "many is removed");
    let manifests = manifests(&sb.store());
    assert_eq!(manifests.len(), 1, "one deletion: {manifests:?}");
}
