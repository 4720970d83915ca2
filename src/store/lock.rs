//! The store's lock: an `flock` on `lock` in the store, held shared by every writer from its
//! first temp file to its last rename, and exclusively by whatever removes from the store
//! (collection, repair), so that it never sees a deletion half-written. A process that
//! waits for it says for whom (from /proc/locks) and stays interruptible.

use std::fs::File;
use std::os::fd::AsRawFd;

use anyhow::{bail, Context, Result};

use super::{layout, Store};
use crate::sys;

/// How often a process waiting for the lock tries it again, and looks for a signal.
const LOCK_POLL_MS: u64 = 50;

/// Waiting for the lock was given up because a signal (Ctrl-C) arrived; nothing was done.
#[derive(Debug)]
pub struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted while waiting for the store lock")
    }
}

impl std::error::Error for Interrupted {}

/// Who holds the `flock` on `file`, as /proc/locks tells (Linux): `process 1234 (unrm
/// --purge)`, several pids when several share it; `another process` when it cannot be
/// learnt (no /proc, another pid namespace).
fn lock_holders(file: &File) -> String {
    let pids = lock_holder_pids(file);
    if pids.is_empty() {
        return "another process".to_string();
    }
    let described: Vec<String> = pids
        .iter()
        .take(4)
        .map(|pid| match process_command(*pid) {
            Some(cmd) => format!("{pid} ({cmd})"),
            None => pid.to_string(),
        })
        .collect();
    let noun = if pids.len() == 1 {
        "process"
    } else {
        "processes"
    };
    let more = if pids.len() > 4 { ", ..." } else { "" };
    format!("{noun} {}{more}", described.join(", "))
}

/// Take the `flock` on `file`. When another process holds it, `waiting` is called once with
/// who that is, then the lock is tried again every few dozen milliseconds until it is free
/// or a signal was caught (`signal::caught`), which fails with [`Interrupted`]. A blocking
/// `flock` would not do: after an `SA_RESTART` handler the kernel restarts it, and Ctrl-C
/// would go unheard until the other process let go.
pub(super) fn flock_patiently(
    file: &File,
    exclusive: bool,
    waiting: impl FnOnce(&str),
) -> Result<()> {
    let mut waiting = Some(waiting);
    // Short waits first (a worker stopped by unrm lets go within milliseconds), then
    // every LOCK_POLL_MS.
    let mut pause = 1;
    loop {
        match sys::flock(file, exclusive, true) {
            Ok(()) => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => {}
            Err(e) => return Err(e.into()),
        }
        if let Some(tell) = waiting.take() {
            tell(&lock_holders(file));
        }
        if crate::signal::caught().is_some() {
            return Err(Interrupted.into());
        }
        std::thread::sleep(std::time::Duration::from_millis(pause));
        pause = (pause * 2).min(LOCK_POLL_MS);
    }
}

/// The processes other than this one that hold the `flock` on `file`, as the kernel's
/// /proc/locks tells (empty when it cannot be learnt).
pub(super) fn lock_holder_pids(file: &File) -> Vec<u32> {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = file.metadata() else {
        return Vec::new();
    };
    let locks = std::fs::read_to_string("/proc/locks").unwrap_or_default();
    let found: Vec<(u32, bool)> = locks
        .lines()
        .filter_map(|line| flock_holder(line, meta.dev(), meta.ino()))
        .collect();
    // The device number in /proc/locks is the superblock's, which st_dev is not on every
    // filesystem (btrfs subvolumes): the inode alone decides when no device matches.
    let any_dev = found.iter().any(|&(_, dev_matches)| dev_matches);
    let mut pids: Vec<u32> = found
        .iter()
        .filter(|&&(_, dev_matches)| dev_matches || !any_dev)
        .map(|&(pid, _)| pid)
        .collect();
    pids.sort_unstable();
    pids.dedup();
    let mine = std::process::id();
    pids.retain(|&p| p != mine);
    pids
}

/// The pid of a line of /proc/locks that is a granted FLOCK on inode `ino`, and whether its
/// device is `dev`, as in `3: FLOCK  ADVISORY  WRITE 1234 08:01:56789 0 EOF` (waiters read
/// `3: -> FLOCK ...`).
fn flock_holder(line: &str, dev: u64, ino: u64) -> Option<(u32, bool)> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    if fields.get(1) != Some(&"FLOCK") {
        return None;
    }
    let pid: u32 = fields.get(4)?.parse().ok()?;
    let mut id = fields.get(5)?.split(':');
    let major = u64::from_str_radix(id.next()?, 16).ok()?;
    let minor = u64::from_str_radix(id.next()?, 16).ok()?;
    let inode: u64 = id.next()?.parse().ok()?;
    let (want_major, want_minor) = (libc::major(dev) as u64, libc::minor(dev) as u64);
    (inode == ino).then_some((pid, major == want_major && minor == want_minor))
}

/// A process's command line, printable and short, for a message.
fn process_command(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let text: String = String::from_utf8_lossy(&raw)
        .trim_end_matches('\0')
        .chars()
        .map(|c| if c == '\0' || c.is_control() { ' ' } else { c })
        .take(60)
        .collect();
    (!text.is_empty()).then_some(text)
}

/// A held store lock; released on drop.
pub struct LockGuard {
    _file: File,
    exclusive: bool,
}

impl LockGuard {
    /// Whether no writer or reader can be active beside its holder.
    pub fn is_exclusive(&self) -> bool {
        self.exclusive
    }
}

impl Store {
    /// Hold the lock shared, as every writer does.
    pub fn lock_shared(&self) -> Result<LockGuard> {
        self.lock(false)
    }

    /// Hold the lock exclusively (collection, repair).
    pub fn lock_exclusive(&self) -> Result<LockGuard> {
        self.lock(true)
    }

    /// Take the lock exclusively, calling `waiting` first if that means waiting for other
    /// processes (so that a user knows why `unrm --purge` or `--check` does not return).
    pub fn lock_exclusive_patiently(&self, waiting: impl FnOnce(&str)) -> Result<LockGuard> {
        self.lock_patiently(true, waiting)
    }

    /// Take the lock shared, calling `waiting` first if another process holds it exclusively.
    pub fn lock_shared_patiently(&self, waiting: impl FnOnce(&str)) -> Result<LockGuard> {
        self.lock_patiently(false, waiting)
    }

    /// Take the lock. When another process holds it, `waiting` is called once with who that
    /// is (`process 1234 (unrm --purge)`, from /proc/locks), then the lock is tried again
    /// every few dozen milliseconds until it is free or a signal was caught
    /// (`signal::caught`), which fails with [`Interrupted`]. A blocking `flock` would not do:
    /// after an `SA_RESTART` handler the kernel restarts it, and Ctrl-C would go unheard
    /// until the other process let go.
    fn lock_patiently(&self, exclusive: bool, waiting: impl FnOnce(&str)) -> Result<LockGuard> {
        let file = self.lock_file()?;
        flock_patiently(&file, exclusive, waiting).map_err(|e| {
            if e.is::<Interrupted>() {
                e
            } else {
                e.context(format!(
                    "cannot lock '{}'",
                    self.root.join(layout::LOCK).display()
                ))
            }
        })?;
        Ok(LockGuard {
            _file: file,
            exclusive,
        })
    }

    /// Take the lock exclusively only if nobody holds it: None when a writer, a restore or
    /// another collector is active (automatic retention never makes an `rm` wait).
    pub fn try_lock_exclusive(&self) -> Result<Option<LockGuard>> {
        let file = self.lock_file()?;
        match sys::flock(&file, true, true) {
            Ok(()) => Ok(Some(LockGuard {
                _file: file,
                exclusive: true,
            })),
            Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => Ok(None),
            Err(e) => Err(e).with_context(|| {
                format!("cannot lock '{}'", self.root.join(layout::LOCK).display())
            }),
        }
    }

    fn lock_file(&self) -> Result<File> {
        let fd = sys::openat(
            self.fd(),
            layout::LOCK_C,
            libc::O_RDWR | libc::O_CREAT | libc::O_NOFOLLOW | libc::O_NONBLOCK,
            0o600,
        )
        .with_context(|| format!("cannot open '{}'", self.root.join(layout::LOCK).display()))?;
        if !sys::fstat(fd.as_raw_fd())?.is_file() {
            bail!(
                "cannot lock '{}': it is not a regular file",
                self.root.join(layout::LOCK).display()
            );
        }
        Ok(File::from(fd))
    }

    fn lock(&self, exclusive: bool) -> Result<LockGuard> {
        let file = self.lock_file()?;
        sys::flock(&file, exclusive, false)
            .with_context(|| format!("cannot lock '{}'", self.root.join(layout::LOCK).display()))?;
        Ok(LockGuard {
            _file: file,
            exclusive,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_locks_lines_name_the_flock_holders() {
        let dev = libc::makedev(8, 1);
        let held = "3: FLOCK  ADVISORY  WRITE 1234 08:01:56789 0 EOF";
        assert_eq!(flock_holder(held, dev, 56789), Some((1234, true)));
        assert_eq!(
            flock_holder(held, libc::makedev(0, 0x2b), 56789),
            Some((1234, false))
        );
        assert_eq!(flock_holder(held, dev, 56788), None);
        let waiter = "3: -> FLOCK  ADVISORY  WRITE 99 08:01:56789 0 EOF";
        assert_eq!(flock_holder(waiter, dev, 56789), None);
        let posix = "1: POSIX  ADVISORY  WRITE 77 08:01:56789 0 EOF";
        assert_eq!(flock_holder(posix, dev, 56789), None);
        assert_eq!(flock_holder("garbage", dev, 1), None);
    }
}
