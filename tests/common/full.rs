//! A full description of a tree (type, content, mode, owner, ns mtime, symlink target,
//! device number, user xattrs, hard-link groups), for round-trip tests of saferm and unrm,
//! and the helpers that set those attributes.

use std::collections::HashMap;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Everything a restore must preserve about one object.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord, Clone)]
pub struct Full {
    pub path: PathBuf,
    pub kind: char,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime_ns: i128,
    pub content: Option<Vec<u8>>,
    pub link: Option<PathBuf>,
    pub rdev: u64,
    pub xattrs: Vec<(String, Vec<u8>)>,
    /// The first path of its hard-link group (None when nlink == 1).
    pub link_group: Option<PathBuf>,
}

/// Every object under `root` (itself included as `.`), sorted by path.
pub fn full_snapshot(root: &Path) -> Vec<Full> {
    fs::symlink_metadata(root).expect("lstat");
    let paths = super::paths(root);
    let mut inodes: HashMap<(u64, u64), PathBuf> = HashMap::new();
    let mut out = Vec::new();
    for rel in paths {
        let p = root.join(&rel);
        let m = fs::symlink_metadata(&p).expect("lstat");
        let ft = m.file_type();
        let kind = if ft.is_dir() {
            'd'
        } else if ft.is_file() {
            'f'
        } else if ft.is_symlink() {
            'l'
        } else if ft.is_fifo() {
            'p'
        } else if ft.is_char_device() {
            'c'
        } else if ft.is_block_device() {
            'b'
        } else {
            's'
        };
        let link_group = (!ft.is_dir() && m.nlink() > 1).then(|| {
            inodes
                .entry((m.dev(), m.ino()))
                .or_insert_with(|| rel.clone())
                .clone()
        });
        out.push(Full {
            kind,
            mode: if ft.is_symlink() {
                0
            } else {
                m.mode() & 0o7777
            },
            uid: m.uid(),
            gid: m.gid(),
            mtime_ns: m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
            content: ft.is_file().then(|| fs::read(&p).expect("read")),
            link: ft
                .is_symlink()
                .then(|| fs::read_link(&p).expect("readlink")),
            rdev: m.rdev(),
            xattrs: if ft.is_file() || ft.is_dir() {
                user_xattrs(&p)
            } else {
                Vec::new()
            },
            link_group,
            path: rel,
        });
    }
    out
}

pub fn c_path(p: &Path) -> std::ffi::CString {
    std::ffi::CString::new(p.as_os_str().as_bytes()).expect("no NUL in test paths")
}

pub fn user_xattrs(p: &Path) -> Vec<(String, Vec<u8>)> {
    let c = c_path(p);
    let mut names = vec![0u8; 4096];
    // SAFETY: valid path and buffer.
    let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    assert!(n >= 0, "llistxattr {}", p.display());
    names.truncate(n as usize);
    let mut out = Vec::new();
    for name in names.split(|&b| b == 0).filter(|n| n.starts_with(b"user.")) {
        let cname = std::ffi::CString::new(name).expect("xattr name");
        let mut val = vec![0u8; 65536];
        // SAFETY: valid path, name and buffer.
        let n = unsafe {
            libc::lgetxattr(
                c.as_ptr(),
                cname.as_ptr(),
                val.as_mut_ptr().cast(),
                val.len(),
            )
        };
        assert!(n >= 0, "lgetxattr");
        val.truncate(n as usize);
        out.push((String::from_utf8_lossy(name).into_owned(), val));
    }
    out.sort();
    out
}

pub fn xattr(p: &Path, name: &str) -> Vec<u8> {
    let c = c_path(p);
    let cname = std::ffi::CString::new(name).expect("name");
    let mut val = vec![0u8; 65536];
    // SAFETY: valid path, name and buffer.
    let n = unsafe {
        libc::lgetxattr(
            c.as_ptr(),
            cname.as_ptr(),
            val.as_mut_ptr().cast(),
            val.len(),
        )
    };
    assert!(
        n >= 0,
        "lgetxattr {name}: {}",
        std::io::Error::last_os_error()
    );
    val.truncate(n as usize);
    val
}

pub fn set_xattr(p: &Path, name: &str, value: &[u8]) {
    let c = c_path(p);
    let cname = std::ffi::CString::new(name).expect("name");
    // SAFETY: valid path, name and buffer.
    let r = unsafe {
        libc::lsetxattr(
            c.as_ptr(),
            cname.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(
        r,
        0,
        "setxattr {}: {}",
        p.display(),
        std::io::Error::last_os_error()
    );
}

pub fn set_mtime(p: &Path, sec: i64, nsec: i64) {
    let c = c_path(p);
    let ts = [
        libc::timespec {
            tv_sec: sec,
            tv_nsec: nsec,
        },
        libc::timespec {
            tv_sec: sec,
            tv_nsec: nsec,
        },
    ];
    // SAFETY: valid path and times.
    let r = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            ts.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    assert_eq!(r, 0, "utimensat {}", p.display());
}
