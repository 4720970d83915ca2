//! Decoding an archive on a thread of its own, so that a restore decompresses the next
//! entries while it creates the files of the last ones: what `tar --zstd -x` gets from
//! running `zstd -d` as a second process. On two cores this takes the decoding (a third of
//! a restore of many small files) off the path that creates files.

use std::io::{self, Read};
use std::sync::mpsc::{sync_channel, Receiver};
use std::thread::JoinHandle;

/// How much is decoded ahead at most: `AHEAD` chunks of `CHUNK` bytes (512 KiB: more buys
/// no speed, and a restore stays within its memory budget).
const CHUNK: usize = 64 * 1024;
const AHEAD: usize = 8;
/// The thread needs little stack: it only reads.
const STACK: usize = 256 * 1024;

/// A reader of what a decoding thread reads from `source`, chunk by chunk. Dropping it
/// stops the thread (its next send fails) and waits for it.
pub(super) struct Decoded {
    chunks: Option<Receiver<io::Result<Vec<u8>>>>,
    chunk: Vec<u8>,
    at: usize,
    thread: Option<JoinHandle<()>>,
}

impl Decoded {
    /// Read `source` on a new thread (an error if no thread can be started).
    pub(super) fn start(mut source: impl Read + Send + 'static) -> io::Result<Decoded> {
        let (to, chunks) = sync_channel::<io::Result<Vec<u8>>>(AHEAD);
        let thread = std::thread::Builder::new()
            .name("unrm-decode".into())
            .stack_size(STACK)
            .spawn(move || loop {
                let mut chunk = vec![0u8; CHUNK];
                let read = loop {
                    match source.read(&mut chunk) {
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        other => break other,
                    }
                };
                let last = !matches!(read, Ok(n) if n > 0);
                let sent = to.send(read.map(|n| {
                    chunk.truncate(n);
                    chunk
                }));
                if last || sent.is_err() {
                    return;
                }
            })?;
        Ok(Decoded {
            chunks: Some(chunks),
            chunk: Vec::new(),
            at: 0,
            thread: Some(thread),
        })
    }
}

impl Read for Decoded {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.at == self.chunk.len() {
            let Some(chunks) = &self.chunks else {
                return Ok(0);
            };
            match chunks.recv() {
                Ok(Ok(chunk)) if !chunk.is_empty() => {
                    self.chunk = chunk;
                    self.at = 0;
                }
                // The end, an error (said once), or a thread that is gone.
                Ok(Ok(_)) | Err(_) => {
                    self.chunks = None;
                    return Ok(0);
                }
                Ok(Err(e)) => {
                    self.chunks = None;
                    return Err(e);
                }
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

impl Drop for Decoded {
    fn drop(&mut self) {
        self.chunks = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that gives `n` bytes of a pattern, then fails if `fails`.
    struct Source {
        left: usize,
        fails: bool,
    }

    impl Read for Source {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.left == 0 {
                return if self.fails {
                    Err(io::Error::other("damaged"))
                } else {
                    Ok(0)
                };
            }
            let n = buf.len().min(self.left).min(1000);
            for (i, b) in buf[..n].iter_mut().enumerate() {
                *b = ((self.left - i) % 251) as u8;
            }
            self.left -= n;
            Ok(n)
        }
    }

    fn expected(n: usize) -> Vec<u8> {
        (0..n).map(|i| ((n - i) % 251) as u8).collect()
    }

    #[test]
    fn everything_comes_through_in_order_and_an_error_after_it() {
        let n = 3 * CHUNK + 17;
        let mut got = Vec::new();
        Decoded::start(Source {
            left: n,
            fails: false,
        })
        .expect("start")
        .read_to_end(&mut got)
        .expect("read");
        assert_eq!(got, expected(n));
        let mut d = Decoded::start(Source {
            left: 5000,
            fails: true,
        })
        .expect("start");
        let mut got = Vec::new();
        let err = d
            .read_to_end(&mut got)
            .expect_err("the error comes through");
        assert_eq!(err.to_string(), "damaged");
        assert_eq!(got, expected(5000), "after what was read before it");
    }

    #[test]
    fn dropping_the_reader_early_stops_the_thread() {
        // More than AHEAD chunks: the thread is blocked sending when the reader goes.
        let mut d = Decoded::start(Source {
            left: (AHEAD + 4) * CHUNK,
            fails: false,
        })
        .expect("start");
        let mut some = [0u8; 10];
        d.read_exact(&mut some).expect("read");
        drop(d); // joins: returns only once the thread is gone
    }
}
