//! Power cuts (issue 12): saferm and unrm are run on a loop-mounted ext4, the filesystem is
//! shut down without flushing its log (`FS_IOC_SHUTDOWN` with `NOLOGFLUSH`, as xfstests
//! simulates a power cut: what was not on the disk is gone), then unmounted, mounted again
//! (the journal is replayed) and checked:
//! - saferm: every original is still in place, byte-identical, or is in an archive that GNU
//!   tar and unrm both restore byte-identical;
//! - unrm: once it has printed "restored", the restored files are byte-identical (not
//!   zeros, not empty); if it has not, `unrm --last` still offers the deletion and restores
//!   it.
//!
//! The campaign is bounded (a fixed number of rounds, a fresh filesystem each) and runs in a
//! private mount namespace of its own thread, so that its mounts are gone whatever happens;
//! the loop device is detached when the test ends, also on failure. It needs root, loop
//! devices, `losetup`, `mkfs.ext4`, GNU tar and zstd: without them it skips loudly, or fails
//! under `SAFERM_TEST_REQUIRE_ALL=1` (CI).

use std::collections::BTreeMap;
use std::fs;
use std::io::Write as _;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::{is_root, noise, saferm_bin, tool, unmount, unrm_bin, Sandbox};

/// Rounds of each campaign: one calibration run that is not cut, then cuts spread over the
/// run and right after it.
const SAFERM_ROUNDS: usize = 10;
const UNRM_ROUNDS: usize = 10;
const INSTANT_ROUNDS: usize = 10;
/// Files in the tree deleted and restored (about 8 MiB).
const FILES: usize = 240;

/// `FS_IOC_SHUTDOWN` (`_IOR('X', 125, __u32)`), which ext4 and xfs implement, and its
/// "do not flush the log" flag: everything the filesystem had not written is lost.
const FS_IOC_SHUTDOWN: libc::c_ulong = 0x8004_587d;
const FS_SHUTDOWN_FLAGS_NOLOGFLUSH: u32 = 2;

/// Skip loudly, or fail when `SAFERM_TEST_REQUIRE_ALL=1` (as `common::tool` does).
fn unavailable(why: &str) {
    if std::env::var_os("SAFERM_TEST_REQUIRE_ALL").is_some_and(|v| v == "1") {
        panic!("{why}, and SAFERM_TEST_REQUIRE_ALL=1 makes the power-cut campaign mandatory");
    }
    let _ = writeln!(
        std::io::stderr(),
        "\n*** SKIPPED: {why}: the power-cut campaign is not run. CI (SAFERM_TEST_REQUIRE_ALL=1) requires it. ***"
    );
}

/// What the campaign needs, or why it cannot run.
fn prerequisites() -> bool {
    if !is_root() {
        unavailable("not root (loop devices and mounts need it)");
        return false;
    }
    if !Path::new("/dev/loop-control").exists() {
        unavailable("no loop devices (/dev/loop-control is missing)");
        return false;
    }
    let tools = [
        ("losetup", "the power-cut campaign"),
        ("mkfs.ext4", "the power-cut campaign"),
        ("mount", "the power-cut campaign"),
        ("umount", "the power-cut campaign"),
        ("tar", "recovery with GNU tar after a power cut"),
        ("zstd", "recovery with GNU tar after a power cut"),
    ];
    tools.iter().all(|(name, what)| tool(name, what).is_some())
}

/// Run `body` on a thread of its own in a private mount namespace: mounts made there are
/// not seen outside, and go when the thread ends, whatever happens.
fn in_private_mount_namespace(body: impl FnOnce() + Send + 'static) {
    let joined = thread::spawn(move || {
        // SAFETY: plain syscalls; unshare(CLONE_NEWNS) moves only this thread (it gets its
        // own filesystem attributes), and everything it spawns, into the new namespace.
        let private = unsafe {
            libc::unshare(libc::CLONE_NEWNS) == 0
                && libc::mount(
                    c"none".as_ptr(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ) == 0
        };
        if !private {
            let err = std::io::Error::last_os_error();
            unavailable(&format!("no private mount namespace ({err})"));
            return;
        }
        body();
    })
    .join();
    if let Err(panic) = joined {
        std::panic::resume_unwind(panic);
    }
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A loop device on an image file, detached when dropped.
struct Loop {
    dev: String,
}

impl Loop {
    fn attach(image: &Path) -> Result<Loop, String> {
        let out = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(image)
            .output()
            .map_err(|e| format!("run losetup: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "losetup --find: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Loop {
            dev: String::from_utf8_lossy(&out.stdout).trim().to_string(),
        })
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.dev]).status();
    }
}

/// A mounted filesystem, unmounted when dropped (lazily if it is busy).
struct Mounted {
    dir: PathBuf,
}

impl Mounted {
    /// Mounted with a journal commit every second (ext4's default is 5 s), so that a cut a
    /// second or two into a run finds the states between saferm's own syncs on the disk too.
    fn mount(dev: &str, dir: &Path) -> Mounted {
        run_ok(
            Command::new("mount")
                .args(["-t", "ext4", "-o", "commit=1", dev])
                .arg(dir),
        );
        Mounted {
            dir: dir.to_path_buf(),
        }
    }

    /// The power cut: nothing the filesystem has not written yet reaches the disk.
    fn shut_down(&self) {
        let dir = fs::File::open(&self.dir).expect("open the mount point");
        let flags = FS_SHUTDOWN_FLAGS_NOLOGFLUSH;
        // SAFETY: the ioctl reads one u32 from a valid pointer.
        let ret = unsafe { libc::ioctl(dir.as_raw_fd(), FS_IOC_SHUTDOWN, &flags) };
        assert_eq!(
            ret,
            0,
            "FS_IOC_SHUTDOWN: {}",
            std::io::Error::last_os_error()
        );
    }

    fn unmount(self) {
        run_ok(Command::new("umount").arg(&self.dir));
        std::mem::forget(self);
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        unmount(&self.dir);
    }
}

/// `sync -f`: make the test's own setup durable (it is not what is tested).
fn sync_fs(dir: &Path) {
    let f = fs::File::open(dir).expect("open for syncfs");
    // SAFETY: plain syscall on a valid descriptor.
    assert_eq!(unsafe { libc::syncfs(f.as_raw_fd()) }, 0, "syncfs");
}

/// The tree deleted and restored: relative path -> content (some empty, some text, most
/// incompressible), in a few directories.
fn tree_spec() -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    for i in 0..FILES {
        let dir = PathBuf::from(format!("d{}/s{}", i % 6, i % 4));
        let len = (i * 7919) % (64 * 1024);
        let content = match i % 5 {
            0 => Vec::new(),
            1 => format!("line {i}\n").repeat(len / 8 + 1).into_bytes(),
            _ => noise(i as u64 + 1, len),
        };
        files.insert(dir.join(format!("f{i}")), content);
    }
    files
}

fn build(root: &Path, spec: &BTreeMap<PathBuf, Vec<u8>>) {
    for (rel, content) in spec {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().expect("a parent")).expect("create a directory");
        fs::write(&path, content).expect("write a file");
    }
}

/// A fresh ext4 on the loop device, mounted at `mnt`.
fn fresh_fs(lo: &Loop, mnt: &Path) -> Mounted {
    run_ok(Command::new("mkfs.ext4").args([
        "-q",
        "-F",
        "-E",
        "lazy_itable_init=0,lazy_journal_init=0,nodiscard",
        &lo.dev,
    ]));
    Mounted::mount(&lo.dev, mnt)
}

/// saferm or unrm started in the sandbox, its output going to files outside the loop fs.
fn spawn(
    sb: &Sandbox,
    program: PathBuf,
    args: &[&std::ffi::OsStr],
    env: &[(&str, &str)],
    out: &Path,
) -> Child {
    let mut cmd = sb.std_command(program);
    cmd.args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(fs::File::create(out.with_extension("out")).expect("stdout file"))
        .stderr(fs::File::create(out.with_extension("err")).expect("stderr file"));
    cmd.spawn().expect("spawn")
}

fn wait(mut child: Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("a run did not end within 60 s after the power cut");
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// When a round cuts: `During` the run, that long after its start, or `AfterExit`, that
/// long after it ended.
#[derive(Clone, Copy, Debug)]
enum Cut {
    During(Duration),
    AfterExit(Duration),
}

/// Start `child` (a [`spawn`]), cut the power as `cut` says, wait for it, unmount and
/// mount again.
fn cut_round(lo: &Loop, fs_: Mounted, mut child: Child, cut: Cut) -> Mounted {
    let mnt = fs_.dir.clone();
    match cut {
        Cut::During(delay) => {
            thread::sleep(delay);
            fs_.shut_down();
            wait(child);
        }
        Cut::AfterExit(delay) => {
            child.wait().expect("wait");
            thread::sleep(delay);
            fs_.shut_down();
        }
    }
    fs_.unmount();
    Mounted::mount(&lo.dev, &mnt)
}

/// A campaign's cuts: spread over a run that took `took`, then these delays after exit.
fn cuts(rounds: usize, after_exit_ms: &[u64], took: Duration) -> Vec<Cut> {
    let spread = rounds - after_exit_ms.len();
    let mut cuts: Vec<Cut> = (0..spread)
        .map(|k| Cut::During(took.mul_f64(k as f64 / spread as f64)))
        .collect();
    cuts.extend(
        after_exit_ms
            .iter()
            .map(|&ms| Cut::AfterExit(Duration::from_millis(ms))),
    );
    cuts
}

fn os(p: &Path) -> &std::ffi::OsStr {
    p.as_os_str()
}

/// Which files of `spec` are at `root`, byte-identical: (identical, missing, damaged).
fn compare(root: &Path, spec: &BTreeMap<PathBuf, Vec<u8>>) -> (usize, Vec<PathBuf>, Vec<String>) {
    let (mut same, mut missing, mut damaged) = (0, Vec::new(), Vec::new());
    for (rel, content) in spec {
        match fs::read(root.join(rel)) {
            Ok(got) if got == *content => same += 1,
            Ok(got) => damaged.push(format!(
                "{}: {} bytes{} instead of {} bytes",
                rel.display(),
                got.len(),
                if !got.is_empty() && got.iter().all(|&b| b == 0) {
                    " of zeros"
                } else {
                    ""
                },
                content.len()
            )),
            Err(_) => missing.push(rel.clone()),
        }
    }
    (same, missing, damaged)
}

/// The archives in the store, each extracted by GNU tar into a directory of its own; only
/// those tar extracts without an error.
fn extract_archives(store: &Path, scratch: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(months) = fs::read_dir(store.join("archives")) else {
        return out;
    };
    for month in months.flatten() {
        for archive in fs::read_dir(month.path()).into_iter().flatten().flatten() {
            let dir = scratch.join(archive.file_name());
            fs::create_dir_all(&dir).expect("create a scratch directory");
            let ok = Command::new("tar")
                .args(["--zstd", "-xf"])
                .arg(archive.path())
                .arg("-C")
                .arg(&dir)
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                out.push(dir);
            }
        }
    }
    out
}

fn report_line(line: &str) {
    let _ = writeln!(std::io::stderr(), "powercut: {line}");
}

#[test]
fn power_cut_campaign() {
    if !prerequisites() {
        return;
    }
    in_private_mount_namespace(|| {
        let sb = Sandbox::new();
        let image = sb.root().join("fs.img");
        fs::File::create(&image)
            .and_then(|f| f.set_len(256 << 20))
            .expect("create the image");
        let lo = match Loop::attach(&image) {
            Ok(lo) => lo,
            Err(why) => return unavailable(&format!("no loop device ({why})")),
        };
        let started = Instant::now();
        let saferm = saferm_campaign(&sb, &lo);
        let instant = instant_campaign(&sb, &lo);
        let unrm = unrm_campaign(&sb, &lo);
        report_line(&format!(
            "{} saferm rounds ({saferm}), {} instant-mode rounds ({instant}), {} unrm rounds ({unrm}), in {:.1} s",
            SAFERM_ROUNDS,
            INSTANT_ROUNDS,
            UNRM_ROUNDS,
            started.elapsed().as_secs_f64()
        ));
    });
}

/// saferm `rm -r tree`, cut: every original in place or restorable from its archive.
fn saferm_campaign(sb: &Sandbox, lo: &Loop) -> String {
    let spec = tree_spec();
    // The store is the default one, below XDG_DATA_HOME: the loop fs is mounted there.
    let mnt = sb.data();
    let mut took = Duration::ZERO;
    let mut outcomes: BTreeMap<&str, usize> = BTreeMap::new();
    for round in 0..=SAFERM_ROUNDS {
        let fs_ = fresh_fs(lo, &mnt);
        let tree = mnt.join("work/tree");
        build(&tree, &spec);
        sync_fs(&mnt);
        let out = sb.root().join(format!("saferm-{round}"));
        let args = [os(Path::new("-r")), os(&tree)];
        if round == 0 {
            // Calibration: how long a run takes here, uncut.
            let t = Instant::now();
            wait(spawn(sb, saferm_bin(), &args, &[], &out));
            took = t.elapsed();
            assert!(
                !tree.exists(),
                "the uncut saferm run did not remove the tree"
            );
            drop(fs_);
            continue;
        }
        // saferm's unlinks come last and are durable at the next journal commit (within a
        // second here): the cuts after exit find them undone, then done.
        let cut = cuts(SAFERM_ROUNDS, &[0, 700, 1200, 1600, 2200, 3000], took)[round - 1];
        let fs_ = cut_round(lo, fs_, spawn(sb, saferm_bin(), &args, &[], &out), cut);
        let (same, missing, damaged) = compare(&tree, &spec);
        assert!(
            damaged.is_empty(),
            "round {round} ({cut:?}): originals damaged: {damaged:?}"
        );
        let outcome = if missing.is_empty() {
            "all in place"
        } else {
            match check_archived(sb, &mnt, &tree, &spec, &missing, round, cut) {
                "unrm restores it" if same == 0 => "all removed, GNU tar and unrm restore it",
                "unrm restores it" => "partly removed, GNU tar and unrm restore the rest",
                _ if same == 0 => {
                    "all removed, GNU tar and unrm --check --repair + unrm restore it"
                }
                _ => "partly removed, GNU tar and unrm --check --repair + unrm restore the rest",
            }
        };
        *outcomes.entry(outcome).or_default() += 1;
        report_line(&format!(
            "saferm round {round} ({cut:?}): {same} in place, {} removed: {outcome}",
            missing.len()
        ));
        drop(fs_);
    }
    outcomes
        .iter()
        .map(|(k, v)| format!("{v} {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// saferm in instant mode, `rm -r tree` staged (and no worker started, so that the cut
/// finds it staged), cut: every original in place, or staged where unrm finds it, and
/// restored byte-identical (unrm archives it first).
fn instant_campaign(sb: &Sandbox, lo: &Loop) -> String {
    let spec = tree_spec();
    let mnt = sb.data();
    let env = [("SAFERM_INSTANT", "1"), ("SAFERM_FAULT", "no-worker")];
    let mut took = Duration::ZERO;
    let mut outcomes: BTreeMap<&str, usize> = BTreeMap::new();
    for round in 0..=INSTANT_ROUNDS {
        let fs_ = fresh_fs(lo, &mnt);
        let tree = mnt.join("work/tree");
        build(&tree, &spec);
        sync_fs(&mnt);
        let out = sb.root().join(format!("instant-{round}"));
        let args = [os(Path::new("-r")), os(&tree)];
        if round == 0 {
            let t = Instant::now();
            wait(spawn(sb, saferm_bin(), &args, &env, &out));
            took = t.elapsed();
            assert!(!tree.exists(), "the uncut run did not stage the tree");
            drop(fs_);
            continue;
        }
        // A staging is a rename, durable at the next journal commit (ext4 commits every 5
        // s): the cuts after exit find it undone, then done.
        let cut = cuts(INSTANT_ROUNDS, &[0, 700, 3000, 5500, 6500], took)[round - 1];
        let fs_ = cut_round(lo, fs_, spawn(sb, saferm_bin(), &args, &env, &out), cut);
        let (same, missing, damaged) = compare(&tree, &spec);
        assert!(
            damaged.is_empty(),
            "round {round} ({cut:?}): originals damaged: {damaged:?}"
        );
        let outcome = if missing.is_empty() {
            "all in place"
        } else {
            assert_eq!(
                same, 0,
                "round {round} ({cut:?}): an operand is staged whole"
            );
            let to = mnt.join(format!("check/unrm-{round}"));
            let unrm = sb
                .std_command(unrm_bin())
                .arg("--to")
                .arg(&to)
                .arg(&tree)
                .stdin(Stdio::null())
                .output()
                .expect("run unrm");
            let (same, missing, damaged) = compare(&to.join("tree"), &spec);
            assert!(
                unrm.status.success() && missing.is_empty() && damaged.is_empty(),
                "round {round} ({cut:?}): the staged tree is not restored ({}; {same} identical, {} missing, {} damaged): {}",
                unrm.status,
                missing.len(),
                damaged.len(),
                String::from_utf8_lossy(&unrm.stderr)
            );
            "staged, unrm restores it"
        };
        *outcomes.entry(outcome).or_default() += 1;
        report_line(&format!("instant round {round} ({cut:?}): {outcome}"));
        drop(fs_);
    }
    outcomes
        .iter()
        .map(|(k, v)| format!("{v} {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every original missing after a cut is in an archive GNU tar restores byte-identical, and
/// unrm restores it byte-identical too.
fn check_archived(
    sb: &Sandbox,
    mnt: &Path,
    tree: &Path,
    spec: &BTreeMap<PathBuf, Vec<u8>>,
    missing: &[PathBuf],
    round: usize,
    cut: Cut,
) -> &'static str {
    let scratch = mnt.join(format!("check/tar-{round}"));
    let extracted = extract_archives(&sb.store(), &scratch);
    let in_tar = |rel: &PathBuf| {
        let stored = tree.join(rel);
        let stored = Path::new(std::ffi::OsStr::from_bytes(
            &stored.as_os_str().as_bytes()[1..],
        ));
        extracted
            .iter()
            .any(|dir| fs::read(dir.join(stored)).is_ok_and(|got| got == spec[rel]))
    };
    let lost: Vec<&PathBuf> = missing.iter().filter(|rel| !in_tar(rel)).collect();
    assert!(
        lost.is_empty(),
        "round {round} ({cut:?}): removed, but in no archive GNU tar restores: {lost:?}"
    );
    let unrm_to = |attempt: &str| {
        let to = mnt.join(format!("check/unrm-{round}-{attempt}"));
        let out = sb
            .std_command(unrm_bin())
            .arg("--to")
            .arg(&to)
            .arg(tree)
            .stdin(Stdio::null())
            .output()
            .expect("run unrm");
        let restored = to.join("tree");
        let lost: Vec<PathBuf> = missing
            .iter()
            .filter(|rel| fs::read(restored.join(rel)).map_or(true, |got| got != spec[*rel]))
            .cloned()
            .collect();
        (out, lost)
    };
    let (out, lost) = unrm_to("first");
    if out.status.success() && lost.is_empty() {
        return "unrm restores it";
    }
    // A manifest is published without fsync (the archive holds a copy): a cut can leave it
    // empty, and until saferm and unrm rebuild it themselves (issue 12 item 5), `unrm
    // --check --repair` does.
    report_line(&format!(
        "round {round} ({cut:?}): unrm could not restore the removed files ({}, {} not restored): {}",
        out.status,
        lost.len(),
        String::from_utf8_lossy(&out.stderr).trim()
    ));
    let repair = sb
        .std_command(unrm_bin())
        .args(["--check", "--repair"])
        .stdin(Stdio::null())
        .output()
        .expect("run unrm --check --repair");
    let (out, lost) = unrm_to("repaired");
    assert!(
        out.status.success() && lost.is_empty(),
        "round {round} ({cut:?}): unrm --to does not restore what was removed, even after unrm --check --repair ({}: {}) ({}): {lost:?}\n{}",
        repair.status,
        String::from_utf8_lossy(&repair.stderr),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    "unrm restores it after unrm --check --repair"
}

/// `unrm --last` of a saferm'd tree, cut: "restored" means byte-identical and durable; not
/// restored means `unrm --last` still offers it.
fn unrm_campaign(sb: &Sandbox, lo: &Loop) -> String {
    let spec = tree_spec();
    let mnt = sb.data();
    let mut took = Duration::ZERO;
    let mut outcomes: BTreeMap<&str, usize> = BTreeMap::new();
    let mut failures = Vec::new();
    for round in 0..=UNRM_ROUNDS {
        let fs_ = fresh_fs(lo, &mnt);
        let tree = mnt.join("work/tree");
        build(&tree, &spec);
        let status = sb
            .std_command(saferm_bin())
            .arg("-r")
            .arg(&tree)
            .stdin(Stdio::null())
            .status()
            .expect("run saferm");
        assert!(status.success() && !tree.exists(), "saferm -r: {status}");
        // The deletion is the setup: made durable before the restore is cut.
        sync_fs(&mnt);
        let out = sb.root().join(format!("unrm-{round}"));
        let args = [os(Path::new("--last"))];
        if round == 0 {
            let t = Instant::now();
            wait(spawn(sb, unrm_bin(), &args, &[], &out));
            took = t.elapsed();
            let (same, _, _) = compare(&tree, &spec);
            assert_eq!(
                same,
                spec.len(),
                "the uncut unrm run did not restore the tree"
            );
            drop(fs_);
            continue;
        }
        // Half the cuts come right after unrm has said "restored": the window a durable
        // note over files not yet written leaves (one after the next journal commit).
        let cut = cuts(UNRM_ROUNDS, &[0, 0, 0, 300, 1500], took)[round - 1];
        let fs_ = cut_round(lo, fs_, spawn(sb, unrm_bin(), &args, &[], &out), cut);
        let said = fs::read_to_string(out.with_extension("out")).unwrap_or_default();
        let said_restored = said.lines().any(|l| l.starts_with("restored "));
        let (same, missing, damaged) = compare(&tree, &spec);
        let outcome = if said_restored {
            if !missing.is_empty() || !damaged.is_empty() {
                failures.push(format!(
                    "round {round} ({cut:?}): unrm said {said:?}, but after the power cut {} files are missing and {} damaged: {:?}",
                    missing.len(),
                    damaged.len(),
                    damaged.iter().take(3).collect::<Vec<_>>()
                ));
                "said restored, but lost"
            } else {
                "said restored, all identical"
            }
        } else {
            check_still_offered(sb, &mnt, &spec, round, cut, &mut failures)
        };
        *outcomes.entry(outcome).or_default() += 1;
        report_line(&format!(
            "unrm round {round} ({cut:?}): {same} identical, {} missing, {} damaged: {outcome}",
            missing.len(),
            damaged.len()
        ));
        drop(fs_);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    outcomes
        .iter()
        .map(|(k, v)| format!("{v} {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A restore cut before it said "restored": `unrm --last` still offers the deletion, and
/// restores it byte-identical (to a fresh directory: what the cut left in place may be
/// partial).
fn check_still_offered(
    sb: &Sandbox,
    mnt: &Path,
    spec: &BTreeMap<PathBuf, Vec<u8>>,
    round: usize,
    cut: Cut,
    failures: &mut Vec<String>,
) -> &'static str {
    let to = mnt.join(format!("check/again-{round}"));
    let out = sb
        .std_command(unrm_bin())
        .args([os(Path::new("--last")), os(Path::new("--to")), os(&to)])
        .stdin(Stdio::null())
        .output()
        .expect("run unrm --last");
    let (same, missing, damaged) = compare(&to.join("tree"), spec);
    if out.status.success() && same == spec.len() {
        return "not said restored, still offered";
    }
    failures.push(format!(
        "round {round} ({cut:?}): unrm had not said \"restored\", and unrm --last then: {} ({} identical, {} missing, {} damaged)\n{}",
        out.status,
        same,
        missing.len(),
        damaged.len(),
        String::from_utf8_lossy(&out.stderr).trim()
    ));
    "not said restored, no longer offered"
}

// Kept apart from the campaign: a failed sync is a failed restore.
#[test]
fn a_restore_that_cannot_be_made_durable_is_not_said_restored_nor_noted() {
    let sb = Sandbox::new();
    let dir = sb.work("w");
    fs::write(dir.join("a"), b"data").expect("write");
    let rm = sb.command(saferm_bin()).current_dir(&dir).arg("a").run();
    assert_eq!(rm.code(), Some(0), "{}", rm.stderr_text());
    let out = sb
        .command(unrm_bin())
        .current_dir(&dir)
        .arg("--last")
        .env("SAFERM_FAULT", "restore-sync")
        .run();
    assert_eq!(out.code(), Some(1), "{}", out.stderr_text());
    assert!(
        !out.stdout_text().contains("restored"),
        "stdout: {}",
        out.stdout_text()
    );
    assert!(
        out.stderr_text()
            .contains("could not make what was restored durable"),
        "stderr: {}",
        out.stderr_text()
    );
    // No note: `unrm --last` still offers it (and finds the file already there).
    let again = sb.command(unrm_bin()).current_dir(&dir).arg("--last").run();
    assert_eq!(again.code(), Some(0), "{}", again.stderr_text());
    assert_eq!(
        crate::common::when_blanked(&again.stdout_text()),
        "'a' is there already, as it was (deleted WHEN)\n"
    );
    assert_eq!(fs::read(dir.join("a")).expect("read"), b"data");
}
