//! Making a restore durable: a descriptor on each filesystem it writes to, opened before
//! anything was written there, synced in the background while the restore goes on and once
//! at its end (see the module doc of `restore`).

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use crate::sys;

/// The filesystems a restore wrote to, to sync at its end.
pub(super) struct Filesystems {
    /// A descriptor on each filesystem a directory was opened on, by device, opened before
    /// anything was written there.
    by_dev: HashMap<u64, OwnedFd>,
    /// A filesystem that could not be noted for the sync: the restore cannot be durable.
    error: Option<io::Error>,
    /// Writes back in the background while the restore goes on.
    flusher: Flusher,
}

impl Filesystems {
    /// None noted yet; the writeback thread runs.
    pub(super) fn start() -> Filesystems {
        Filesystems {
            by_dev: HashMap::new(),
            error: None,
            flusher: Flusher::start(),
        }
    }

    /// Remember the filesystem of the directory `fd`, to sync it at the end.
    pub(super) fn note(&mut self, fd: &OwnedFd) {
        let noted = sys::fstat(fd.as_raw_fd()).and_then(|st| {
            if let std::collections::hash_map::Entry::Vacant(slot) = self.by_dev.entry(st.dev) {
                // A duplicate shares the open file, and with it the point from which
                // syncfs reports writeback errors.
                slot.insert(fd.try_clone()?);
                self.flusher.add(fd.try_clone()?);
            }
            Ok(())
        });
        if let Err(err) = noted {
            self.error.get_or_insert(err);
        }
    }

    /// Make everything this restore made durable: one `syncfs` per filesystem it wrote to
    /// (see the doc of `restore`). A failure is not retried.
    pub(super) fn sync(&mut self) -> io::Result<()> {
        if let Some(err) = self.error.take() {
            return Err(err);
        }
        self.flusher.stop()?;
        for fd in self.by_dev.values() {
            crate::fault::check("restore-sync")?;
            sys::syncfs(fd)?;
        }
        Ok(())
    }
}

/// A thread that syncs the filesystems a restore writes to every [`Flusher::PERIOD`] while
/// it goes on, so that the data is written back while the next files are decoded and the
/// final sync has little left to wait for. Its errors are the restore's.
struct Flusher {
    to: Option<std::sync::mpsc::Sender<OwnedFd>>,
    thread: Option<std::thread::JoinHandle<io::Result<()>>>,
}

impl Flusher {
    const PERIOD: std::time::Duration = std::time::Duration::from_millis(300);

    fn start() -> Flusher {
        let (to, from) = std::sync::mpsc::channel::<OwnedFd>();
        let thread = std::thread::Builder::new()
            .name("unrm-flush".into())
            .spawn(move || {
                use std::sync::mpsc::RecvTimeoutError;
                let mut fds = Vec::new();
                let mut next = std::time::Instant::now() + Self::PERIOD;
                loop {
                    let wait = next.saturating_duration_since(std::time::Instant::now());
                    match from.recv_timeout(wait) {
                        Ok(fd) => fds.push(fd),
                        Err(RecvTimeoutError::Timeout) => {
                            for fd in &fds {
                                sys::syncfs(fd)?;
                            }
                            next = std::time::Instant::now() + Self::PERIOD;
                        }
                        Err(RecvTimeoutError::Disconnected) => return Ok(()),
                    }
                }
            })
            .ok();
        Flusher {
            to: thread.is_some().then_some(to),
            thread,
        }
    }

    fn add(&mut self, fd: OwnedFd) {
        if let Some(to) = &self.to {
            let _ = to.send(fd);
        }
    }

    /// Stop the thread; the first error it met.
    fn stop(&mut self) -> io::Result<()> {
        self.to = None;
        match self.thread.take().map(|t| t.join()) {
            None | Some(Ok(Ok(()))) => Ok(()),
            Some(Ok(Err(err))) => Err(err),
            Some(Err(_)) => Err(io::Error::other("the writeback thread failed")),
        }
    }
}
