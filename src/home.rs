//! The user's own directories: `HOME`, `XDG_DATA_HOME`, `XDG_CONFIG_HOME`, and the rule
//! that keeps root out of other users' trees.
//!
//! `sudo -E rm` (or a root shell that kept a user's environment) runs saferm as root with
//! another user's `HOME` and `XDG_*`. Followed, they made root create `~/.local/share/saferm`
//! owned by root in that user's home, after which every `rm` the user ran failed. So, as
//! root (euid 0), a directory named by the environment is used only if it **belongs to
//! root**: the directory, or when it does not exist its nearest existing ancestor, with
//! symlinks resolved, is owned by uid 0. Then everything saferm creates for it is created
//! inside a directory root owns. Otherwise the variable is ignored, silently (rm prints
//! nothing about it either), as if unset: root's store and config come from root's home in
//! the password database. `SAFERM_STORE` (or `store` in root's own config) puts root's store
//! anywhere else, and is taken as given.
//!
//! Why the nearest existing directory and not every ancestor: a directory root made for
//! itself is root's wherever it is (a test sandbox in a user's checkout, `/home/x/build`
//! made by `sudo make`), and refusing it would send root's deletions to a store the caller
//! never named. The cost: a root-owned `~/.local/share` that an older saferm left in a
//! user's home is still taken as root's (the user's own `rm` is broken by it already; the
//! fix is `chown`). Other users follow their variables as the XDG spec says (only absolute
//! values count).

use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use crate::sys;

/// `$XDG_DATA_HOME`, `$XDG_CONFIG_HOME`...: the value when absolute and, as root, when it
/// belongs to root (see the module's doc).
pub fn xdg_dir(var: &str) -> Option<PathBuf> {
    env_dir(std::env::var_os(var))
}

/// The user's home: `$HOME` (as root, only when it belongs to root), else the password
/// database's.
pub fn home() -> Result<PathBuf> {
    if let Some(h) = env_dir(std::env::var_os("HOME")) {
        return Ok(h);
    }
    let euid = sys::geteuid();
    match crate::users::user(euid) {
        Some(user) => Ok(user.home),
        None => bail!("cannot find the home directory of uid {euid}; set SAFERM_STORE"),
    }
}

fn env_dir(value: Option<OsString>) -> Option<PathBuf> {
    let path = PathBuf::from(value.filter(|v| !v.is_empty())?);
    if !path.is_absolute() {
        return None;
    }
    if sys::geteuid() == 0 && !belongs_to(&path, 0) {
        return None;
    }
    Some(path)
}

/// Whether `path`, or its nearest existing ancestor, resolved, is owned by `uid`. A path
/// nothing of which can be examined belongs to nobody.
pub fn belongs_to(path: &Path, uid: u32) -> bool {
    path.ancestors()
        .find(|p| p.metadata().is_ok())
        .and_then(|existing| existing.metadata().ok())
        .is_some_and(|m| m.uid() == uid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ownership_is_checked_up_to_the_root() {
        // A made-up path is judged by its nearest existing ancestor, `/`, which is root's.
        assert!(belongs_to(Path::new("/nonexistent-saferm-dir/a/b"), 0));
        assert!(!belongs_to(Path::new("/nonexistent-saferm-dir/a/b"), 12345));
        assert!(!belongs_to(Path::new("relative-and-missing"), 0));
    }
}
