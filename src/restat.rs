//! The re-stat rule (DESIGN §1.2): just before a name is unlinked, what is there must still
//! be the object that was archived. Its identity is compared; for a file open for writing
//! elsewhere (where a write through a shared mapping changes no time), its content too.

use std::fs::File;
use std::os::fd::{AsRawFd, RawFd};

use crate::sys::{self, Stat};

/// Whether the regular file `name` below `dirfd` is still the object `st` describes and
/// still holds the content that was archived, by `want`, the hash its manifest entry
/// records. For a file that was open for writing elsewhere: a write through a shared mapping
/// changes neither its mtime nor its ctime.
pub fn content_unchanged(
    dirfd: RawFd,
    name: &std::ffi::CStr,
    st: &Stat,
    want: &crate::walk::ArchivedHash,
) -> bool {
    let Ok(fd) = sys::open_file_nofollow(dirfd, name) else {
        return false;
    };
    match sys::fstat(fd.as_raw_fd()) {
        Ok(now) if now.is_file() && (now.dev, now.ino, now.size) == (st.dev, st.ino, st.size) => {}
        _ => return false,
    }
    let hex = blake3::Hash::from(want.hash).to_hex();
    let mut hash = if want.blocks {
        crate::hash::ContentHash::new(None, Some(hex.as_str()))
    } else {
        crate::hash::ContentHash::new(Some(hex.as_str()), None)
    };
    let mut file = File::from(fd);
    let mut buf = vec![0u8; 256 << 10];
    loop {
        match std::io::Read::read(&mut file, &mut buf) {
            Ok(0) => break,
            Ok(n) => hash.data(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    hash.matches(st.size)
}

/// The identity DESIGN §1.2 names: dev, ino, type, size, mtime, ctime.
pub fn unchanged(now: &Stat, then: &Stat) -> bool {
    unchanged_but_ctime(now, then) && (now.ctime, now.ctime_nsec) == (then.ctime, then.ctime_nsec)
}

/// [`unchanged`] without the ctime, which unlinking another name of the inode changes.
pub fn unchanged_but_ctime(now: &Stat, then: &Stat) -> bool {
    (
        now.dev,
        now.ino,
        now.file_type(),
        now.size,
        now.mtime,
        now.mtime_nsec,
    ) == (
        then.dev,
        then.ino,
        then.file_type(),
        then.size,
        then.mtime,
        then.mtime_nsec,
    )
}
