//! Trees holding every kind of object rm can remove, with the attributes a restore must
//! keep, for round trips through saferm and back (by GNU tar or by unrm).
//!
//! Both trees share [`every_kind`] and [`times`]; each adds what its round trip tests.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::full::{c_path, set_mtime, set_xattr};
use super::{build_tree, is_root, NOBODY};

/// The tree GNU tar must restore from saferm's archive, as `root/t`: [`every_kind`] and a
/// sparse file (an 8 MiB hole), a path longer than a tar header's name field, a name
/// with quotes and a newline, and a setgid file. Needs root (devices, other owners).
pub fn rich_tree_for_tar(root: &Path) {
    let t = every_kind(root, &[]);
    let f = fs::File::create(t.join("sparse")).expect("sparse");
    f.set_len(8 << 20).expect("set_len");
    drop(f);
    let deep_long = t.join("d".repeat(90)).join("e".repeat(90));
    fs::create_dir_all(&deep_long).expect("deep long");
    fs::write(deep_long.join("f".repeat(60)), b"long path").expect("long path");
    fs::write(t.join("it's a \"name\" with\nnewline"), b"odd").expect("odd");
    fs::write(t.join("setgid"), b"x").expect("setgid");
    fs::set_permissions(t.join("setgid"), fs::Permissions::from_mode(0o2750)).expect("chmod");
    times(&t, &[]);
}

/// The tree unrm must restore, as `root/t`: [`every_kind`] and a read-only directory with
/// contents (mode and ns mtime set last), a symlink of another owner, and `t`'s own mtime.
/// Devices and other owners only as root.
pub fn rich_tree_for_unrm(root: &Path) {
    let t = every_kind(root, &["t/ro/inside=read-only parent"]);
    if is_root() {
        std::os::unix::fs::lchown(t.join("link"), Some(NOBODY), Some(NOBODY)).expect("chown");
    }
    times(&t, &["ro/inside"]);
    fs::set_permissions(t.join("ro"), fs::Permissions::from_mode(0o555)).expect("chmod");
    set_mtime(&t.join("ro"), 1_400_000_000, 999_999_999);
    set_mtime(&t, 1_300_000_000, 1);
}

/// `root/t` (returned) with `spec` and every kind of object: empty, small and 3 MB files,
/// an empty and a nested directory, symlinks (one dangling), hard links, a FIFO, a long
/// and a non-UTF-8 name, setuid, sticky and 0600 modes, user xattrs on a file and a
/// directory; as root also other owners and character and block devices.
fn every_kind(root: &Path, spec: &[&str]) -> PathBuf {
    let mut items = vec![
        "t/empty=",
        "t/small=hello",
        "t/sub/deep/file=deep",
        "t/emptydir/",
    ];
    items.extend_from_slice(spec);
    build_tree(root, &items);
    let t = root.join("t");
    let big: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    fs::write(t.join("big"), &big).expect("big");
    std::os::unix::fs::symlink("small", t.join("link")).expect("symlink");
    std::os::unix::fs::symlink("/nonexistent/target", t.join("dangling")).expect("symlink");
    fs::hard_link(t.join("small"), t.join("hardlink")).expect("hard link");
    fs::hard_link(t.join("small"), t.join("sub/hardlink2")).expect("hard link");
    nix::unistd::mkfifo(
        &t.join("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o640),
    )
    .expect("mkfifo");
    fs::write(t.join("n".repeat(150)), b"long name").expect("long name");
    fs::write(t.join(OsStr::from_bytes(b"bad\xffname")), b"not utf-8").expect("non-utf8");
    fs::write(t.join("setuid"), b"#!/bin/sh\n").expect("setuid");
    fs::set_permissions(t.join("setuid"), fs::Permissions::from_mode(0o4755)).expect("chmod");
    fs::create_dir(t.join("sticky")).expect("sticky");
    fs::set_permissions(t.join("sticky"), fs::Permissions::from_mode(0o1777)).expect("chmod");
    fs::write(t.join("secret"), b"key").expect("secret");
    fs::set_permissions(t.join("secret"), fs::Permissions::from_mode(0o600)).expect("chmod");
    if is_root() {
        std::os::unix::fs::lchown(t.join("secret"), Some(1234), Some(5678)).expect("chown");
        std::os::unix::fs::lchown(t.join("sub"), Some(NOBODY), Some(NOBODY)).expect("chown");
        let dev = |p: &Path, kind: libc::mode_t, major: u32, minor: u32| {
            let c = c_path(p);
            // SAFETY: valid path.
            let r = unsafe { libc::mknod(c.as_ptr(), kind | 0o660, libc::makedev(major, minor)) };
            assert_eq!(r, 0, "mknod {}", p.display());
        };
        dev(&t.join("chardev"), libc::S_IFCHR, 1, 3);
        dev(&t.join("blockdev"), libc::S_IFBLK, 7, 200);
    }
    set_xattr(&t.join("small"), "user.origin", b"test\x00binary\xff");
    set_xattr(&t.join("sub"), "user.dir", b"on a directory");
    t
}

/// Distinct ns mtimes for the objects of [`every_kind`] and then those of `extra`, and one
/// for the symlink; set once every object is made, so that none moves them again.
fn times(t: &Path, extra: &[&str]) {
    let objects = [
        "small",
        "big",
        "sub/deep/file",
        "fifo",
        "sub/deep",
        "emptydir",
        "sub",
        "sticky",
    ];
    for (i, p) in objects.iter().chain(extra).enumerate() {
        set_mtime(&t.join(p), 1_600_000_000 + i as i64, 123_456_789 + i as i64);
    }
    set_mtime(&t.join("link"), 1_500_000_000, 5);
}
