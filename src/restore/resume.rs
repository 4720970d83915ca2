//! Finishing a restore that was killed (`kill -9`, a crash): the journal a restore keeps in
//! the store (`restoring/<id>`, `Store::open_restore_journal`) says which directories it
//! made and which processes wrote temp files, so that running `unrm` again gives those
//! directories their recorded mode, owner and mtime (a directory that was there before is
//! only restored into, and keeps its own) and removes the temp files left behind.
//!
//! The journal holds lines `pid <pid>` (one per run) and `dir <dev> <ino>` (one per
//! directory made, written just after `mkdirat`: a kill between the two leaves that one
//! directory as it was). A line that cannot be read is ignored. The journal is removed once
//! a restore of that deletion ends without being killed (Ctrl-C included: it finishes the
//! directories before it dies).

use std::collections::HashSet;
use std::fs::File;
use std::io::Write;
use std::os::fd::RawFd;

use crate::store::Backend;
use crate::sys;

/// What earlier, killed restores of one deletion left, and this run's record.
#[derive(Default)]
pub struct Resume {
    file: Option<File>,
    /// `(dev, ino)` of the directories restores of this deletion made.
    made: HashSet<(u64, u64)>,
    /// Processes that wrote temp files (earlier runs only).
    pids: HashSet<u32>,
    /// Directories already swept in this run.
    swept: HashSet<(u64, u64)>,
}

impl Resume {
    /// Read the journal of deletion `id` and record this run in it. Without a journal (the
    /// store cannot hold one), the restore goes on: a kill then leaves what it leaves today.
    pub fn start(store: &dyn Backend, id: &str) -> Resume {
        let Ok((held, mut file)) = store.open_restore_journal(id) else {
            return Resume::default();
        };
        let mut r = Resume::parse(&held);
        r.pids.remove(&std::process::id());
        if writeln!(file, "pid {}", std::process::id()).is_ok() {
            r.file = Some(file);
        }
        r
    }

    fn parse(held: &[u8]) -> Resume {
        let mut r = Resume::default();
        for line in held.split(|&b| b == b'\n') {
            let Ok(line) = std::str::from_utf8(line) else {
                continue;
            };
            let words: Vec<&str> = line.split(' ').collect();
            match words[..] {
                ["pid", pid] => {
                    if let Ok(pid) = pid.parse() {
                        r.pids.insert(pid);
                    }
                }
                ["dir", dev, ino] => {
                    if let (Ok(dev), Ok(ino)) = (dev.parse(), ino.parse()) {
                        r.made.insert((dev, ino));
                    }
                }
                _ => {}
            }
        }
        r
    }

    /// This run made the directory `(dev, ino)`.
    pub fn made_dir(&mut self, id: (u64, u64)) {
        if let Some(file) = &mut self.file {
            // One write per directory, so a kill loses none that were written.
            if writeln!(file, "dir {} {}", id.0, id.1).is_err() {
                self.file = None;
            }
        }
    }

    /// Whether an earlier restore of this deletion made the directory `(dev, ino)`.
    pub fn made_before(&self, id: (u64, u64)) -> bool {
        self.made.contains(&id)
    }

    /// Remove, once per directory, the temp files that earlier runs (gone now) left in the
    /// directory open at `dirfd`.
    pub fn sweep(&mut self, dirfd: RawFd) {
        if self.pids.is_empty() {
            return;
        }
        let Ok(st) = sys::fstat(dirfd) else { return };
        if !self.swept.insert((st.dev, st.ino)) {
            return;
        }
        let Ok(entries) = sys::read_dir(dirfd) else {
            return;
        };
        let euid = sys::geteuid();
        for e in entries {
            let Some(pid) = temp_pid(e.name.as_bytes()) else {
                continue;
            };
            if !self.pids.contains(&pid) || alive(pid) {
                continue;
            }
            let Ok(cname) = sys::cstr(e.name.as_bytes()) else {
                continue;
            };
            let ours =
                sys::fstatat(dirfd, &cname, false).is_ok_and(|st| st.is_file() && st.uid == euid);
            if ours {
                let _ = crate::unlink::remove_stale_restore_temp(dirfd, &cname);
            }
        }
    }

    /// The restore ended without being killed: nothing is left to finish.
    pub fn done(self, store: &dyn Backend, id: &str) {
        if self.file.is_some() {
            store.remove_restore_journal(id);
        }
    }
}

/// The pid in a temp file name `.unrm.<pid>.<8 hex digits>.tmp`
/// (`restore::create::create_temp_file`).
fn temp_pid(name: &[u8]) -> Option<u32> {
    let rest = name.strip_prefix(b".unrm.")?.strip_suffix(b".tmp")?;
    let text = std::str::from_utf8(rest).ok()?;
    let (pid, random) = text.split_once('.')?;
    if random.len() != 8 || !random.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

/// Whether process `pid` exists (EPERM: it does, and is someone else's).
fn alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return true; // never a process group
    }
    // No signal: only whether the process exists.
    let pid = nix::unistd::Pid::from_raw(pid);
    nix::sys::signal::kill(pid, None) != Err(nix::errno::Errno::ESRCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unrm_temp_names_are_taken_for_temp_files() {
        assert_eq!(temp_pid(b".unrm.4242.0a1b2c3d.tmp"), Some(4242));
        assert_eq!(temp_pid(b".unrm.4242.0a1b2c3.tmp"), None);
        assert_eq!(temp_pid(b".unrm..0a1b2c3d.tmp"), None);
        assert_eq!(temp_pid(b".unrm.-1.0a1b2c3d.tmp"), None);
        assert_eq!(temp_pid(b"unrm.4242.0a1b2c3d.tmp"), None);
        assert_eq!(temp_pid(b".unrm.4242.0a1b2c3d.tmp.x"), None);
    }

    #[test]
    fn the_journal_is_read_line_by_line_and_damage_is_ignored() {
        let r = Resume::parse(b"pid 12\ndir 5 77\ndir x 1\ngarbage\npid \xff\ndir 5 78");
        assert_eq!(r.pids, HashSet::from([12]));
        assert!(r.made_before((5, 77)) && r.made_before((5, 78)));
        assert!(!r.made_before((5, 1)));
    }
}
