//! Trees deeper than the stack, deeper than the open-file limit and longer than PATH_MAX:
//! built, walked and checked here through directory descriptors, never by path.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use crate::common::{saferm_bin, unrm_bin, Sandbox, GNU_RM};

/// Deeper than the stack of the code before (a debug build overflowed at 5,000 levels,
/// a release build at 15,000); a release build runs the 30,000 levels GNU rm removes.
const DEEP: usize = if cfg!(debug_assertions) {
    6_000
} else {
    30_000
};

fn c(name: &str) -> CString {
    CString::new(name).expect("no NUL")
}

fn open_dir(dirfd: RawFd, name: &str) -> Option<OwnedFd> {
    let name = c(name);
    // SAFETY: name is NUL-terminated; the descriptor is owned by the OwnedFd.
    let fd = unsafe {
        libc::openat(
            dirfd,
            name.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    // SAFETY: fd was just returned by openat.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
}

fn fstat(fd: RawFd) -> libc::stat {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: st is written by fstat.
    assert_eq!(unsafe { libc::fstat(fd, st.as_mut_ptr()) }, 0, "fstat");
    // SAFETY: fstat succeeded.
    unsafe { st.assume_init() }
}

/// `root/d/d/.../d` (`depth` levels below `root`), every 97th level mode 0700 and the rest
/// 0755, with a file `f` at the bottom.
fn build_deep(root: &Path, depth: usize) {
    std::fs::create_dir(root).expect("create the root");
    let root = CString::new(root.as_os_str().as_encoded_bytes()).expect("path");
    let mut fd = open_dir(libc::AT_FDCWD, root.to_str().expect("utf-8")).expect("open root");
    for level in 1..=depth {
        let mode = if level % 97 == 0 { 0o700 } else { 0o755 };
        // SAFETY: the name is NUL-terminated.
        assert_eq!(
            unsafe { libc::mkdirat(fd.as_raw_fd(), c"d".as_ptr(), mode) },
            0
        );
        fd = open_dir(fd.as_raw_fd(), "d").expect("open the new level");
    }
    let f = c("f");
    // SAFETY: the name is NUL-terminated; the descriptor is closed by the File.
    let file = unsafe {
        libc::openat(
            fd.as_raw_fd(),
            f.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC,
            0o640,
        )
    };
    assert!(file >= 0, "create the bottom file");
    // SAFETY: file was just returned by openat.
    let mut file = unsafe { std::fs::File::from_raw_fd(file) };
    std::io::Write::write_all(&mut file, b"at the bottom\n").expect("write");
}

/// Each level's mode and mtime from `root` down, and the bottom file's mode and content.
fn describe_deep(root: &Path) -> (Vec<(u32, i64, i64)>, u32, Vec<u8>) {
    let mut fd = open_dir(libc::AT_FDCWD, root.to_str().expect("utf-8")).expect("open root");
    let mut levels = Vec::new();
    loop {
        let st = fstat(fd.as_raw_fd());
        levels.push((st.st_mode, st.st_mtime, st.st_mtime_nsec));
        match open_dir(fd.as_raw_fd(), "d") {
            Some(next) => fd = next,
            None => break,
        }
    }
    let f = c("f");
    // SAFETY: the name is NUL-terminated.
    let file =
        unsafe { libc::openat(fd.as_raw_fd(), f.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    assert!(file >= 0, "the bottom file is there");
    // SAFETY: file was just returned by openat.
    let mut file = unsafe { std::fs::File::from_raw_fd(file) };
    let mode = fstat(file.as_raw_fd()).st_mode;
    let mut content = Vec::new();
    std::io::Read::read_to_end(&mut file, &mut content).expect("read");
    (levels, mode, content)
}

#[test]
fn a_tree_deeper_than_the_stack_and_the_open_file_limit_is_removed_and_restored() {
    let sb = Sandbox::new();
    let work = sb.work("w");
    let root = work.join("t");
    build_deep(&root, DEEP);
    let before = describe_deep(&root);
    assert_eq!(before.0.len(), DEEP + 1);
    let removed = sb
        .command(saferm_bin())
        .current_dir(&work)
        .args(["-r", "t"])
        .limit(libc::RLIMIT_NOFILE, 64)
        .run();
    assert_eq!(
        removed.code(),
        Some(0),
        "saferm -r t: {}",
        removed.stderr_text()
    );
    assert_eq!(removed.stderr_text(), "");
    assert!(!root.exists(), "the tree is gone");

    let restored = sb
        .command(unrm_bin())
        .current_dir(&work)
        .arg("t")
        .limit(libc::RLIMIT_NOFILE, 64)
        // About depth, not speed: a debug build restores the 6,000 levels in about 15 s
        // alone, and CI runs this beside every other test on two cores.
        .timeout(std::time::Duration::from_secs(300))
        .run();
    assert_eq!(
        restored.code(),
        Some(0),
        "unrm t: {}",
        restored.stderr_text()
    );
    assert_eq!(
        describe_deep(&root),
        before,
        "restored level by level as it was"
    );

    let checked = sb
        .command(unrm_bin())
        .current_dir(&work)
        .arg("--check")
        .limit(libc::RLIMIT_NOFILE, 64)
        .run();
    assert_eq!(
        checked.code(),
        Some(0),
        "unrm --check: {}",
        checked.stderr_text()
    );
}

#[test]
fn a_tree_deeper_than_the_open_file_limit_goes_as_rm_removes_it() {
    let sb = Sandbox::new();
    let mut runs = Vec::new();
    for (program, dir) in [
        (Path::new(GNU_RM).to_path_buf(), "gnu"),
        (saferm_bin(), "ours"),
    ] {
        let work = sb.work(dir);
        build_deep(&work.join("t"), 1_500);
        let out = sb
            .command(program)
            .current_dir(&work)
            .args(["-rv", "t"])
            .limit(libc::RLIMIT_NOFILE, 128)
            .run();
        assert!(!work.join("t").exists(), "{dir}: the tree is gone");
        runs.push(out);
    }
    let (gnu, ours) = (&runs[0], &runs[1]);
    assert_eq!(
        ours.code(),
        gnu.code(),
        "exit status: {}",
        ours.stderr_text()
    );
    assert_eq!(ours.stderr_text(), gnu.stderr_text());
    assert!(ours.stdout == gnu.stdout, "stdout differs from GNU rm's");
    assert_eq!(gnu.stdout.split(|&b| b == b'\n').count(), 1_500 + 3);
}
