//! Whether what is in the way of a restore (`unrm --overwrite`) can be removed whole, found
//! before any of it is touched.
//!
//! An overwrite removes the obstacle through saferm's delete path, which archives it first;
//! but that path is rm's, and rm removes what it can. An obstacle only part of which can
//! go (an immutable file, an append-only directory, a mount point, for a user an entry they
//! may not unlink or read) would be left half removed, with nothing restored in its place.
//! So the whole obstacle is looked at first, without following a symlink or opening
//! anything but its directories, and one that cannot go whole is left exactly as it is.
//! What can still change between this look and the removal (another process setting an
//! attribute meanwhile) is reported for what it is by the caller.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, RawFd};

use crate::dirstack::DirStack;
use crate::quote::quote;
use crate::sys;

/// Why the entry `name` of the directory `dirfd` cannot be removed whole: the first
/// reason found, naming the entry by `shown` and the path below it. `None` when every
/// part of it can go.
pub fn why_not_removable(dirfd: RawFd, name: &CStr, shown: &[u8]) -> Option<String> {
    let euid = sys::geteuid();
    let parent = match sys::fstat(dirfd) {
        Ok(st) => st,
        Err(e) => {
            return Some(format!(
                "cannot look at its directory: {}",
                sys::strerror(&e)
            ))
        }
    };
    let above = crate::paths::split_parent(shown).0;
    if let Some(why) = forbids_unlinking(dirfd, euid, above) {
        return Some(why);
    }
    let mut path = shown.to_vec();
    let top = match check_entry(dirfd, name, &parent, euid, &path) {
        Ok(Some(st)) => st,
        Ok(None) => return None,
        Err(why) => return Some(why),
    };
    // Down the directories with a bounded number of them open; each level holds the
    // entries still to look at and the length of `path` above it.
    let mut fds = DirStack::new(dirfd);
    let mut levels: Vec<(Vec<sys::DirEntry>, usize, sys::Stat)> = Vec::new();
    if let Some(why) = enter(&mut fds, &mut levels, dirfd, name, top, euid, &path) {
        return Some(why);
    }
    while let Some((entries, base, dir)) = levels.last_mut() {
        let Some(entry) = entries.pop() else {
            path.truncate(*base);
            levels.pop();
            if fds.pop().is_err() {
                return Some(format!("{} moved while it was looked at", quote(shown)));
            }
            continue;
        };
        let dir = *dir;
        let cut = path.len();
        path.push(b'/');
        path.extend_from_slice(entry.name.as_bytes());
        let at = match fds.top() {
            Ok(fd) => fd,
            Err(_) => return Some(format!("{} moved while it was looked at", quote(shown))),
        };
        match check_entry(at, &entry.name, &dir, euid, &path) {
            Err(why) => return Some(why),
            Ok(Some(st)) => {
                let base = cut;
                if let Some(why) = enter(&mut fds, &mut levels, at, &entry.name, st, euid, &path) {
                    return Some(why);
                }
                if let Some(level) = levels.last_mut() {
                    level.1 = base;
                }
            }
            Ok(None) => path.truncate(cut),
        }
    }
    None
}

/// Open the directory `name` of `dirfd` (stat `st`), check its entries may be unlinked,
/// and put them on `levels` to look at.
fn enter(
    fds: &mut DirStack,
    levels: &mut Vec<(Vec<sys::DirEntry>, usize, sys::Stat)>,
    dirfd: RawFd,
    name: &CStr,
    st: sys::Stat,
    euid: u32,
    path: &[u8],
) -> Option<String> {
    let fd = match sys::open_dir_nofollow(dirfd, name) {
        Ok(fd) => fd,
        Err(e) => {
            return Some(format!(
                "cannot open {}: {}",
                quote(path),
                sys::strerror(&e)
            ))
        }
    };
    let now = match sys::fstat(fd.as_raw_fd()) {
        Ok(now) if (now.dev, now.ino) == (st.dev, st.ino) => now,
        _ => return Some(format!("{} changed while it was looked at", quote(path))),
    };
    let entries = match sys::read_dir(fd.as_raw_fd()) {
        Ok(entries) => entries,
        Err(e) => {
            return Some(format!(
                "cannot read {}: {}",
                quote(path),
                sys::strerror(&e)
            ))
        }
    };
    if !entries.is_empty() {
        if let Some(why) = forbids_unlinking(fd.as_raw_fd(), euid, path) {
            return Some(why);
        }
    }
    fds.push(fd, (now.dev, now.ino));
    levels.push((entries, path.len(), now));
    None
}

/// Why the directory `fd` (named `path`) lets no entry be unlinked from it.
fn forbids_unlinking(fd: RawFd, euid: u32, path: &[u8]) -> Option<String> {
    match sys::removal_attributes(fd, c".") {
        Ok((true, _)) => return Some(format!("{} is immutable", quote(path))),
        Ok((_, true)) => return Some(format!("{} is append-only", quote(path))),
        _ => {}
    }
    if euid != 0 && sys::access_effective(fd, c".", libc::W_OK | libc::X_OK).is_err() {
        return Some(format!(
            "{} does not let you remove its entries",
            quote(path)
        ));
    }
    None
}

/// Look at the entry `name` of `dirfd` (whose stat is `parent`): an error naming why it
/// cannot be removed, its stat when it is a directory to go into, or `None` when it can go.
fn check_entry(
    dirfd: RawFd,
    name: &CStr,
    parent: &sys::Stat,
    euid: u32,
    path: &[u8],
) -> Result<Option<sys::Stat>, String> {
    let st = match sys::fstatat(dirfd, name, false) {
        Ok(st) => st,
        Err(e) => {
            return Err(format!(
                "cannot look at {}: {}",
                quote(path),
                sys::strerror(&e)
            ))
        }
    };
    match sys::removal_attributes(dirfd, name) {
        Ok((true, _)) => return Err(format!("{} is immutable", quote(path))),
        Ok((_, true)) => return Err(format!("{} is append-only", quote(path))),
        _ => {}
    }
    if st.is_dir() && st.dev != parent.dev {
        return Err(format!("{} is a mount point", quote(path)));
    }
    if euid != 0 {
        // The sticky bit: only the owner of the entry or of the directory unlinks it.
        let sticky = parent.mode & libc::S_ISVTX != 0;
        if sticky && st.uid != euid && parent.uid != euid {
            return Err(format!(
                "{} belongs to someone else in a sticky directory",
                quote(path)
            ));
        }
        // saferm reads what it archives: the owner can always give themselves read
        // permission; anyone else needs it.
        let need = if st.is_dir() {
            libc::R_OK | libc::X_OK
        } else {
            libc::R_OK
        };
        let readable = st.uid == euid
            || st.is_symlink()
            || !(st.is_dir() || st.is_file())
            || sys::access_effective(dirfd, name, need).is_ok();
        if !readable {
            return Err(format!("{} cannot be read to be archived", quote(path)));
        }
    }
    Ok(st.is_dir().then_some(st))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_deeper_than_the_open_directories_kept_is_looked_at_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut p = dir.path().join("o");
        for level in 0..3 * crate::dirstack::MAX_OPEN {
            std::fs::create_dir(&p).expect("mkdir");
            std::fs::write(p.join(format!("f{level}")), b"x").expect("write");
            p.push("d");
        }
        let top = sys::open_dir_nofollow(
            sys::AT_FDCWD,
            &sys::cstr(dir.path().as_os_str().as_encoded_bytes()).expect("path"),
        )
        .expect("open");
        assert_eq!(why_not_removable(top.as_raw_fd(), c"o", b"o"), None);
        assert_eq!(
            why_not_removable(top.as_raw_fd(), c"missing", b"missing"),
            Some("cannot look at 'missing': No such file or directory".to_string())
        );
    }
}
