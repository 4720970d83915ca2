//! One deleted regular file's content, written to a stream (`unrm --cat`) and checked
//! against the hash its manifest records.
//!
//! The check can only be made after the last byte is read, and a stream cannot be taken
//! back, so what is written is held back: a file of up to [`HOLD`] bytes is written only
//! once its hash matches, and nothing at all when it does not. A bigger one is written as it
//! is read, less its last [`TAIL`] bytes at least, which are written only once it matches:
//! when it does not, the reader has an incomplete prefix (never the whole file), and the
//! caller says how much of it was written.

use std::io::{self, Read, Seek, SeekFrom, Write};

use anyhow::{anyhow, Context, Result};

use crate::hash::ContentHash;
use crate::manifest::{Kind, Manifest};
use crate::quote::quote;
use crate::store::Backend;

/// A file up to this size is written whole or not at all.
pub const HOLD: usize = 8 << 20;
/// At least this much of the end of a bigger file is held back until it is checked.
pub const TAIL: usize = 256 << 10;

/// What was written, and how the writing ended.
pub struct Catted {
    /// Bytes written to the stream (all of the file when `result` is Ok).
    pub written: u64,
    pub result: Result<(), CatError>,
}

/// Why a cat stopped.
#[derive(Debug)]
pub enum CatError {
    /// The archive could not be read, or what it holds is not what the manifest records.
    Damaged(String),
    /// The stream would take no more (a closed pipe, a full disk).
    Write(io::Error),
}

/// Write the content of entry `i` of `manifest` (a regular file) to `out`, checked.
pub fn cat(store: &dyn Backend, manifest: &Manifest, i: usize, out: &mut dyn Write) -> Catted {
    let mut sink = Held {
        out,
        pending: Vec::new(),
        written: 0,
    };
    let result = stream(store, manifest, i, &mut sink).and_then(|()| sink.finish());
    Catted {
        written: sink.written,
        result,
    }
}

fn damaged(e: anyhow::Error) -> CatError {
    CatError::Damaged(format!("{e:#}"))
}

/// Decode the archive from the frame holding entry `i` to it, and feed its data to `sink`.
fn stream(
    store: &dyn Backend,
    manifest: &Manifest,
    i: usize,
    sink: &mut Held<'_>,
) -> Result<(), CatError> {
    let e = &manifest.entries[i];
    if e.kind != Kind::File {
        return Err(CatError::Damaged("it is not a regular file".into()));
    }
    let archive = manifest
        .archive
        .as_ref()
        .ok_or_else(|| CatError::Damaged(format!("deletion {} has no archive", manifest.id)))?;
    let (first, offset) = manifest.start_frame(i);
    let mut file = store.open_archive(&archive.path).map_err(damaged)?;
    file.seek(SeekFrom::Start(offset))
        .with_context(|| format!("cannot read {}", quote(archive.path.as_bytes())))
        .map_err(damaged)?;
    let decoder = zstd::stream::read::Decoder::new(file)
        .context("cannot start decoding the archive")
        .map_err(damaged)?;
    let mut tar = tar::Archive::new(decoder);
    let entries = tar
        .entries()
        .context("cannot read the archive")
        .map_err(damaged)?;
    let want = e.path.bytes().unwrap_or_default();
    for (n, entry) in (first..=i).zip(entries) {
        let mut entry = entry
            .map_err(|err| anyhow!("the archive is damaged at entry {n}: {err}"))
            .map_err(damaged)?;
        if n < i {
            continue;
        }
        if entry.path_bytes().as_ref() != want.get(1..).unwrap_or_default() {
            return Err(damaged(anyhow!(
                "the archive does not match its manifest at entry {i} ({} instead of {})",
                quote(&entry.path_bytes()),
                quote(&want)
            )));
        }
        let (_, sparse) = super::restorer::pax_xattrs(&mut entry);
        let sparse = sparse
            .map_err(|err| damaged(err.into()))?
            .map(|(size, _)| size);
        let stored = entry.size();
        let mut hash = ContentHash::of(e);
        let read = match sparse {
            None => copy(&mut entry, &mut hash, sink),
            Some(size) => copy_sparse(&mut entry, stored, size, &mut hash, sink),
        };
        read.map_err(|err| match err {
            Fed::Read(err) => damaged(anyhow!(
                "cannot read it from the archive ({})",
                crate::sys::strerror(&err)
            )),
            Fed::Write(err) => CatError::Write(err),
        })?;
        if !hash.matches(e.size) {
            return Err(CatError::Damaged(
                "the archived copy is damaged (blake3 mismatch)".into(),
            ));
        }
        return Ok(());
    }
    Err(damaged(anyhow!(
        "the archive ends before entry {i} of its manifest"
    )))
}

/// A failure while feeding: reading the archive, or writing the stream.
enum Fed {
    Read(io::Error),
    Write(io::Error),
}

/// Feed everything `src` gives to `hash` and `sink`.
fn copy(src: &mut dyn Read, hash: &mut ContentHash, sink: &mut Held<'_>) -> Result<(), Fed> {
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Fed::Read(e)),
        };
        hash.data(&buf[..n]);
        sink.data(&buf[..n]).map_err(Fed::Write)?;
    }
}

/// Feed a sparse entry's logical content (zeros in the holes) to `hash` and `sink`.
fn copy_sparse(
    src: &mut dyn Read,
    stored: u64,
    size: u64,
    hash: &mut ContentHash,
    sink: &mut Held<'_>,
) -> Result<(), Fed> {
    let regions = crate::archive::sparse::read_map(src, stored, size).map_err(Fed::Read)?;
    let mut buf = vec![0u8; 256 << 10];
    for r in &regions {
        let gap = r.offset.saturating_sub(hash.len());
        hash.zeros(gap);
        sink.zeros(gap).map_err(Fed::Write)?;
        let mut left = r.len;
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = match src.read(&mut buf[..want]) {
                Ok(0) => return Err(Fed::Read(io::Error::other("its sparse entry is short"))),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Fed::Read(e)),
            };
            hash.data(&buf[..n]);
            sink.data(&buf[..n]).map_err(Fed::Write)?;
            left -= n as u64;
        }
    }
    let end = size.saturating_sub(hash.len());
    hash.zeros(end);
    sink.zeros(end).map_err(Fed::Write)
}

/// The stream, with what is not yet known to be right held back (see the module's comment).
struct Held<'a> {
    out: &'a mut dyn Write,
    pending: Vec<u8>,
    written: u64,
}

impl Held<'_> {
    fn data(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.pending.extend_from_slice(bytes);
        if self.pending.len() > HOLD {
            let n = self.pending.len() - TAIL;
            self.out.write_all(&self.pending[..n])?;
            self.written += n as u64;
            self.pending.drain(..n);
        }
        Ok(())
    }

    fn zeros(&mut self, mut n: u64) -> io::Result<()> {
        let zeros = [0u8; 64 << 10];
        while n > 0 {
            let k = n.min(zeros.len() as u64) as usize;
            self.data(&zeros[..k])?;
            n -= k as u64;
        }
        Ok(())
    }

    /// The content checked: write what was held back.
    fn finish(&mut self) -> Result<(), CatError> {
        self.out
            .write_all(&self.pending)
            .and_then(|()| self.out.flush())
            .map_err(CatError::Write)?;
        self.written += self.pending.len() as u64;
        self.pending.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{Held, HOLD, TAIL};

    #[test]
    fn a_big_file_is_written_as_it_comes_less_its_tail_and_a_small_one_not_at_all() {
        let mut out = Vec::new();
        let mut held = Held {
            out: &mut out,
            pending: Vec::new(),
            written: 0,
        };
        held.data(&vec![7u8; HOLD]).expect("write");
        assert_eq!(held.written, 0, "up to HOLD bytes are held");
        held.data(&[1u8; 10]).expect("write");
        assert_eq!(held.written, (HOLD + 10 - TAIL) as u64);
        held.zeros(5).expect("write");
        assert_eq!(held.pending.len(), TAIL + 5);
        held.finish().expect("finish");
        assert_eq!(held.written, (HOLD + 15) as u64);
        assert_eq!(out.len(), HOLD + 15);
        assert!(out.ends_with(&[1, 1, 0, 0, 0, 0, 0]));
    }
}
