//! Verification: decode a sealed archive end to end and compare every entry with what was
//! read from the source (DESIGN §1.1).
//!
//! `tar::Archive::entries` stops at the end-of-archive blocks and never reaches the zstd
//! frame checksum, so the decoder is drained to EOF afterwards: truncation and checksum
//! damage are caught too.

use std::io::{self, Read};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use anyhow::{bail, Context, Result};

use crate::archive::sparse::SparseRead;
use crate::hash::ContentHash;
use crate::manifest::{Entry, Kind};

/// Read the archive from `reader` and check it holds exactly `expected`, in order, and,
/// when `file_hash` is given, that the file's bytes (the manifest copy included, which the
/// decoder skips) have that blake3.
///
/// Decoding runs on its own thread, feeding the tar parser and the hashing on this one, so
/// verification takes about as long as decompression alone (`zstd -t`).
pub fn verify_archive(
    reader: impl Read + Send,
    expected: &[Entry],
    file_hash: Option<&str>,
) -> Result<()> {
    verify_archive_against(reader, &mut Listed::new(expected), file_hash)
}

/// [`verify_archive`] against entries handed out one at a time.
pub fn verify_archive_against(
    reader: impl Read + Send,
    expected: &mut dyn Expected,
    file_hash: Option<&str>,
) -> Result<()> {
    let hash = verify_stream(reader, expected)?;
    if let Some(want) = file_hash {
        if hash != want {
            bail!("the archive file differs from what was written (blake3 mismatch)");
        }
    }
    Ok(())
}

/// Entries whose archive copy differs from what was read (type, mode, link target, size
/// or content), in a stream otherwise sound: their objects are kept, and the others can be
/// archived again without them. Any other verification error leaves nothing to trust.
#[derive(Debug)]
pub struct Mismatch {
    /// The index of each such entry among those expected, and what differs.
    pub entries: Vec<(usize, String)>,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.entries.first() {
            Some((_, what)) if self.entries.len() == 1 => f.write_str(what),
            Some((_, what)) => write!(f, "{what} (and {} more)", self.entries.len() - 1),
            None => f.write_str("no entry differs"),
        }
    }
}

impl std::error::Error for Mismatch {}

/// An expected entry, the bytes read from its source if they were kept, and for a sparse
/// file, what was read of it.
pub type Next<'a> = (&'a Entry, Option<&'a [u8]>, Option<&'a SparseRead>);

/// The entries an archive must hold, in order.
pub trait Expected {
    /// The next one, if any, with the bytes read from the source when they were kept (a
    /// file's content is then compared byte for byte; otherwise by its hash), and for a
    /// sparse file, its map as read.
    fn next_entry(&mut self) -> Option<Next<'_>>;
    /// How many are left after the ones taken.
    fn left(&mut self) -> usize;
    /// The blake3 of the last entry's content, when it came with its content and no blake3
    /// (`None`: the archive's copy differs from that content).
    fn hashed(&mut self, _hash: Option<String>) {}
}

/// A manifest's entries.
struct Listed<'a> {
    entries: &'a [Entry],
    next: usize,
}

impl Listed<'_> {
    fn new(entries: &[Entry]) -> Listed<'_> {
        Listed { entries, next: 0 }
    }
}

impl Expected for Listed<'_> {
    fn next_entry(&mut self) -> Option<Next<'_>> {
        self.next += 1;
        self.entries.get(self.next - 1).map(|e| (e, None, None))
    }

    fn left(&mut self) -> usize {
        self.entries.len().saturating_sub(self.next)
    }
}

/// An entry as the writer hands it to the verifier, with the file's content as it was
/// read when the writer could spare the memory ([`Held`]). If the entry has no blake3
/// yet, the verifier works it out from that content, once it has found the archive's
/// copy identical, and sends it back with `index`.
pub struct Written {
    pub index: usize,
    pub entry: Entry,
    pub content: Option<Vec<u8>>,
    pub sparse: Option<SparseRead>,
}

/// How many used buffers [`Held`] keeps, and how large each may be: at most 4 MiB kept
/// for reuse, on top of what is held.
const SPARE_BUFFERS: usize = 64;
const SPARE_CAPACITY: usize = 64 << 10;

/// How many bytes of source content are on their way to the verifier, at most `limit`:
/// comparing bytes costs a fraction of hashing them again, but memory is bounded.
pub struct Held {
    bytes: AtomicUsize,
    limit: usize,
    /// Buffers the verifier is done with, for the writer to read into again.
    spare: Mutex<Vec<Vec<u8>>>,
}

impl Held {
    pub fn new(limit: usize) -> Held {
        Held {
            bytes: AtomicUsize::new(0),
            limit,
            spare: Mutex::new(Vec::new()),
        }
    }

    /// An empty buffer, one used before if there is one.
    pub fn buffer(&self) -> Vec<u8> {
        self.spare
            .lock()
            .ok()
            .and_then(|mut spare| spare.pop())
            .unwrap_or_default()
    }

    /// Reserve `n` bytes; false if that would pass the limit.
    pub fn reserve(&self, n: usize) -> bool {
        self.bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(n).filter(|&total| total <= self.limit)
            })
            .is_ok()
    }

    fn release(&self, mut buf: Vec<u8>) {
        self.bytes.fetch_sub(buf.len(), Ordering::AcqRel);
        buf.clear();
        if buf.capacity() > SPARE_CAPACITY {
            return; // a large one is freed, not kept
        }
        if let Ok(mut spare) = self.spare.lock() {
            if spare.len() < SPARE_BUFFERS {
                spare.push(buf);
            }
        }
    }
}

/// Entries sent one by one by the thread writing the archive, as it writes them.
pub struct Streamed {
    rx: mpsc::Receiver<Written>,
    /// The blake3s the writer left to verification, by entry index (`None` for an entry
    /// that differs).
    hashes: mpsc::Sender<(usize, Option<String>)>,
    current: Option<Written>,
    held: Arc<Held>,
    /// Files handed over with and without their content, for `SAFERM_TIMINGS`.
    with_content: usize,
    without: usize,
}

impl Streamed {
    pub fn new(
        rx: mpsc::Receiver<Written>,
        hashes: mpsc::Sender<(usize, Option<String>)>,
        held: Arc<Held>,
    ) -> Streamed {
        Streamed {
            rx,
            hashes,
            current: None,
            held,
            with_content: 0,
            without: 0,
        }
    }

    fn drop_current(&mut self) {
        if let Some(Written {
            content: Some(c), ..
        }) = self.current.take()
        {
            self.held.release(c);
        }
    }
}

impl Expected for Streamed {
    fn next_entry(&mut self) -> Option<Next<'_>> {
        self.drop_current();
        self.current = self.rx.recv().ok();
        if let Some(w) = &self.current {
            match (&w.content, w.entry.kind) {
                (Some(_), _) => self.with_content += 1,
                (None, Kind::File) => self.without += 1,
                _ => {}
            }
        }
        self.current
            .as_ref()
            .map(|w| (&w.entry, w.content.as_deref(), w.sparse.as_ref()))
    }

    fn left(&mut self) -> usize {
        self.drop_current();
        self.rx.iter().count()
    }

    fn hashed(&mut self, hash: Option<String>) {
        if let Some(w) = &self.current {
            // The writer may have given up already: it learns why when it joins.
            let _ = self.hashes.send((w.index, hash));
        }
    }
}

impl Drop for Streamed {
    fn drop(&mut self) {
        crate::timing::note(&format!(
            "compared {} files byte for byte, {} by blake3",
            self.with_content, self.without
        ));
        self.drop_current();
        for w in self.rx.try_iter() {
            if let Some(c) = w.content {
                self.held.release(c);
            }
        }
    }
}

/// Decode the archive `reader` yields to its end and compare its entries with `expected`;
/// returns the blake3 of all the bytes read (the manifest copy included).
pub fn verify_stream(reader: impl Read + Send, expected: &mut dyn Expected) -> Result<String> {
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::sync_channel::<io::Result<Vec<u8>>>(2);
        let (recycle_tx, recycle_rx) = mpsc::channel::<Vec<u8>>();
        // Out of threads or memory for one: an error, never a panic.
        let decoding = std::thread::Builder::new()
            .spawn_scoped(scope, move || decode_into(reader, tx, recycle_rx))
            .context("cannot start the archive decoder")?;
        let mut chunks = ChannelReader {
            rx,
            chunk: Vec::new(),
            pos: 0,
            recycle: recycle_tx,
        };
        let parsed = compare_entries(&mut chunks, expected);
        // Past the end-of-archive blocks: the rest of the frame, its checksum, the manifest
        // copy. Reading on to the end also lets the decoding thread finish.
        let drained = parsed.and_then(|()| {
            io::copy(&mut chunks, &mut io::sink())
                .map(|_| ())
                .context("the archive is damaged after its last entry")
        });
        drop(chunks);
        let hash = decoding
            .join()
            .map_err(|_| anyhow::anyhow!("the archive decoder failed"))?;
        drained?;
        hash.context("cannot read the archive")
    })
}

/// [`verify_archive`] for an archive already in memory (a small one): no thread.
pub fn verify_in_memory(bytes: &[u8], expected: &[Entry], file_hash: &str) -> Result<()> {
    verify_in_memory_against(bytes, &mut Listed::new(expected), file_hash)
}

/// [`verify_in_memory`] against entries handed out one at a time.
pub fn verify_in_memory_against(
    bytes: &[u8],
    expected: &mut dyn Expected,
    file_hash: &str,
) -> Result<()> {
    if blake3::hash(bytes).to_hex().as_str() != file_hash {
        bail!("the archive file differs from what was written (blake3 mismatch)");
    }
    // Decodes every frame to the end (checksums included) and skips the manifest copy.
    let tar_stream = decode_frames(bytes).context("the archive is damaged")?;
    compare_entries(&mut &tar_stream[..], expected)
}

/// Every frame of `bytes` decoded (checksums checked, skippable frames skipped), straight
/// from the slice: `zstd::stream::decode_all` would copy it through a 128 KiB buffer first.
fn decode_frames(bytes: &[u8]) -> io::Result<Vec<u8>> {
    use zstd::stream::raw::{Decoder, InBuffer, Operation, OutBuffer};
    let mut decoder = Decoder::new()?;
    let mut src = InBuffer::around(bytes);
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len().saturating_mul(4).max(4096));
    loop {
        if out.len() == out.capacity() {
            out.reserve(out.len().max(4096));
        }
        let (read, len) = (src.pos, out.len());
        let mut dst = OutBuffer::around_pos(&mut out, len);
        // zstd's hint: 0 once a frame is complete (and its checksum checked).
        let hint = decoder.run(&mut src, &mut dst)?;
        let produced = dst.pos() > len;
        if hint == 0 && src.pos == bytes.len() {
            return Ok(out);
        }
        if !produced && src.pos == read {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the archive ends in the middle of a zstd frame",
            ));
        }
    }
}

/// Decompressed data comes in chunks of this size.
const CHUNK: usize = 256 << 10;

/// Decode everything `reader` holds into `tx`, then read the file to its end; returns the
/// blake3 of the file's bytes. Stops early when the receiver is gone.
fn decode_into(
    reader: impl Read,
    tx: mpsc::SyncSender<io::Result<Vec<u8>>>,
    recycle: mpsc::Receiver<Vec<u8>>,
) -> io::Result<String> {
    let hashed = crate::archive::Hashing {
        inner: reader,
        hasher: blake3::Hasher::new(),
    };
    let mut decoder = zstd::stream::read::Decoder::new(hashed)?;
    loop {
        let mut buf = recycle.try_recv().unwrap_or_default();
        buf.resize(CHUNK, 0);
        // What one read decodes goes on at once: while the archive is being written, the
        // next read may wait for the writer, and the writer may be waiting for this.
        let filled = loop {
            match decoder.read(&mut buf) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let copy = io::Error::new(e.kind(), e.to_string());
                    let _ = tx.send(Err(e));
                    return Err(copy);
                }
            }
        };
        if filled == 0 {
            break;
        }
        buf.truncate(filled);
        if tx.send(Ok(buf)).is_err() {
            return Err(io::Error::other("verification stopped"));
        }
    }
    drop(tx);
    let mut hashed = decoder.finish().into_inner();
    io::copy(&mut hashed, &mut io::sink())?;
    Ok(hashed.hasher.finalize().to_hex().to_string())
}

/// Reads what the decoding thread sends.
struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    pos: usize,
    recycle: mpsc::Sender<Vec<u8>>,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.chunk.len() {
            match self.rx.recv() {
                Ok(Ok(next)) => {
                    let used = std::mem::replace(&mut self.chunk, next);
                    let _ = self.recycle.send(used);
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0), // the decoder is done
            }
        }
        let n = out.len().min(self.chunk.len() - self.pos);
        out[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Entries' content is read back in pieces of at most this size.
const READ_BUFFER: usize = 128 << 10;

/// Walk the tar stream and compare each entry with the manifest's. An entry that differs
/// (see [`Mismatch`]) does not stop the walk: every one is found in one pass.
fn compare_entries(tar_stream: &mut impl Read, expected: &mut dyn Expected) -> Result<()> {
    let mut archive = tar::Archive::new(tar_stream);
    let mut count = 0usize;
    let mut differ = Vec::new();
    // Grown to what the entries need, up to READ_BUFFER: zeroing 128 KiB to check a 4 KiB
    // file was a quarter of a one-file saferm's page faults.
    let mut buf = Vec::new();
    {
        let entries = archive.entries().context("cannot read the archive")?;
        for (i, entry) in entries.enumerate() {
            let mut entry =
                entry.with_context(|| format!("cannot read entry {i} of the archive"))?;
            let Some((want, source, sparse)) = expected.next_entry() else {
                bail!("the archive has more entries than were written");
            };
            let path = entry.path_bytes();
            let want_path = want.path.bytes().unwrap_or_default();
            // Stored without the leading '/' of the absolute path the manifest records.
            if want_path.strip_prefix(b"/") != Some(&path[..]) {
                bail!(
                    "entry {i} is '{}', expected '{}'",
                    String::from_utf8_lossy(&path),
                    String::from_utf8_lossy(&want_path)
                );
            }
            let compared = compare_entry(&mut entry, want, source, sparse, &want_path, &mut buf)?;
            // The writer waits for the blake3 of content it handed over unhashed.
            let hash = match (&compared, source) {
                (_, Some(_)) if want.blake3.is_some() => None,
                (Compared::Same, Some(read)) => Some(Some(blake3::hash(read).to_hex().to_string())),
                (Compared::Differs(_), Some(_)) => Some(None),
                (_, None) => None,
            };
            if let Some(hash) = hash {
                expected.hashed(hash);
            }
            if let Compared::Differs(what) = compared {
                differ.push((i, what));
            }
            count += 1;
        }
    }
    let left = expected.left();
    if left > 0 {
        bail!(
            "the archive has {count} entries, {} were written",
            count + left
        );
    }
    if !differ.is_empty() {
        return Err(Mismatch { entries: differ }.into());
    }
    Ok(())
}

/// How one entry compared.
enum Compared {
    Same,
    /// What differs.
    Differs(String),
}

/// Compare one entry, whose path matched, with what was written. An error is a stream
/// that cannot be read on.
fn compare_entry(
    entry: &mut tar::Entry<'_, impl Read>,
    want: &Entry,
    source: Option<&[u8]>,
    sparse: Option<&SparseRead>,
    path: &[u8],
    buf: &mut Vec<u8>,
) -> Result<Compared> {
    let name = || String::from_utf8_lossy(path).into_owned();
    let header = entry.header();
    let kind = kind_of(header.entry_type());
    if kind != Some(want.kind) {
        return Ok(Compared::Differs(format!(
            "'{}' has the wrong type in the archive",
            name()
        )));
    }
    let mode = header
        .mode()
        .with_context(|| format!("'{}': bad mode", name()))?;
    if mode != want.mode & 0o7777 {
        return Ok(Compared::Differs(format!(
            "'{}' has mode {mode:o} in the archive, {:o} on disk",
            name(),
            want.mode & 0o7777
        )));
    }
    // saferm records a target for links and only for them.
    match (
        matches!(want.kind, Kind::Symlink | Kind::Hardlink),
        &want.link,
    ) {
        (true, None) => {
            return Ok(Compared::Differs(format!(
                "'{}' is a link without a target in its manifest",
                name()
            )))
        }
        (false, Some(_)) => {
            return Ok(Compared::Differs(format!(
                "'{}' is not a link but has a link target in its manifest",
                name()
            )))
        }
        _ => {}
    }
    if let Some(link) = &want.link {
        let got = entry
            .link_name_bytes()
            .map(|l| l.into_owned())
            .unwrap_or_default();
        let want_link = link.bytes().unwrap_or_default();
        // A hard link names an entry, stored relative like every path.
        let want_link = match want.kind {
            Kind::Hardlink => match want_link.strip_prefix(b"/") {
                Some(relative) => relative.to_vec(),
                None => {
                    return Ok(Compared::Differs(format!(
                        "'{}' is a hard link to {}, not an absolute path, in its manifest",
                        name(),
                        crate::quote::quote(&want_link)
                    )))
                }
            },
            _ => want_link,
        };
        if got != want_link {
            return Ok(Compared::Differs(format!(
                "'{}' has the wrong link target in the archive",
                name()
            )));
        }
    }
    if want.kind != Kind::File {
        return Ok(Compared::Same);
    }
    let realsize = match entry.pax_extensions() {
        Ok(Some(exts)) => crate::archive::sparse::realsize(
            exts.flatten().map(|r| (r.key_bytes(), r.value_bytes())),
        ),
        Ok(None) => Ok(None),
        Err(e) => Err(e),
    }
    .with_context(|| format!("'{}': bad PAX header", name()))?;
    if realsize.is_some() || sparse.is_some() {
        let stored = entry.size();
        let same = same_sparse(entry, want, realsize, stored, sparse)
            .with_context(|| format!("cannot read '{}' from the archive", name()))?;
        if !same {
            return Ok(Compared::Differs(format!(
                "'{}' in the archive differs from what was read",
                name()
            )));
        }
        return Ok(Compared::Same);
    }
    let size = entry
        .header()
        .size()
        .with_context(|| format!("'{}': bad size", name()))?;
    if size != want.size {
        return Ok(Compared::Differs(format!(
            "'{}' has {size} bytes in the archive, {} on disk",
            name(),
            want.size
        )));
    }
    let needed = usize::try_from(size).map_or(READ_BUFFER, |s| s.clamp(1, READ_BUFFER));
    if buf.len() < needed {
        buf.resize(needed, 0);
    }
    let same = match source {
        Some(read) => same_bytes(entry, read, buf),
        None => same_hash(entry, want, buf),
    }
    .with_context(|| format!("cannot read '{}' from the archive", name()))?;
    if !same {
        return Ok(Compared::Differs(format!(
            "'{}' in the archive differs from what was read",
            name()
        )));
    }
    Ok(Compared::Same)
}

/// Whether `entry`'s content is `read`, byte for byte.
fn same_bytes(entry: &mut impl Read, read: &[u8], buf: &mut [u8]) -> io::Result<bool> {
    let mut rest = read;
    loop {
        let n = entry.read(buf)?;
        if n == 0 {
            return Ok(rest.is_empty());
        }
        match rest.split_at_checked(n) {
            Some((head, tail)) if head == &buf[..n] => rest = tail,
            _ => return Ok(false),
        }
    }
}

/// Whether a sparse entry (`realsize`, `stored` bytes of map and data in the archive) holds
/// what was read: its logical content, zeros in the holes, must have the hash the manifest
/// records ([`ContentHash`]: `blake3_blocks`, which the writer worked out from the bytes it
/// read and which costs nothing for the holes, or an older manifest's plain blake3). With
/// the map the writer read (`read`, while the archive is written), the archive's map must
/// also be that map.
fn same_sparse(
    entry: &mut impl Read,
    want: &Entry,
    realsize: Option<u64>,
    stored: u64,
    read: Option<&SparseRead>,
) -> io::Result<bool> {
    if realsize != Some(want.size) {
        return Ok(false); // not sparse in the archive, or not that size
    }
    let regions = crate::archive::sparse::read_map(entry, stored, want.size)?;
    if read.is_some_and(|r| {
        let mut theirs = r.regions.as_slice();
        while theirs.last().is_some_and(|x| x.len == 0) {
            theirs = &theirs[..theirs.len() - 1];
        }
        theirs != regions.as_slice()
    }) {
        return Ok(false);
    }
    let mut hash = ContentHash::of(want);
    if !crate::archive::sparse::hash_stored(entry, &regions, want.size, &mut hash, None)? {
        return Ok(false);
    }
    let mut rest = [0u8; 1];
    if entry.read(&mut rest)? != 0 {
        return Ok(false);
    }
    Ok(hash.matches(want.size))
}

/// Whether `entry`'s content has the size and hash `want` records.
fn same_hash(entry: &mut impl Read, want: &Entry, buf: &mut [u8]) -> io::Result<bool> {
    let mut hash = ContentHash::of(want);
    loop {
        let n = entry.read(buf)?;
        if n == 0 {
            break;
        }
        hash.data(&buf[..n]);
    }
    Ok(hash.matches(want.size))
}

pub fn kind_of(t: tar::EntryType) -> Option<Kind> {
    Some(match t {
        tar::EntryType::Regular | tar::EntryType::Continuous => Kind::File,
        tar::EntryType::Directory => Kind::Dir,
        tar::EntryType::Symlink => Kind::Symlink,
        tar::EntryType::Link => Kind::Hardlink,
        tar::EntryType::Fifo => Kind::Fifo,
        tar::EntryType::Char => Kind::Char,
        tar::EntryType::Block => Kind::Block,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::{ArchiveWriter, EntryMeta};
    use crate::manifest::PathBytes;

    /// One archive holding one file, and the entry the manifest would record for it.
    fn one_file_archive(content: &[u8]) -> (Vec<u8>, Vec<Entry>) {
        let file = tempfile::tempfile().expect("temp file");
        let mut w = ArchiveWriter::new(file, 1, 0, content.len() as u64, 1).expect("writer");
        let meta =
            EntryMeta::test_file(b"home/u/notes.txt", content.len() as u64, 1_700_000_000, 1);
        let mut data: &[u8] = content;
        assert!(w.append(&meta, Some(&mut data)).is_ok());
        let sealed = w.finish(|out| out.write_all(b"{}")).expect("finish");
        let mut f = sealed.file;
        use std::io::Seek;
        f.rewind().expect("rewind");
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes).expect("read back");
        let entry = Entry {
            path: PathBytes::new(b"/home/u/notes.txt"),
            kind: Kind::File,
            mode: 0o644,
            uid: 0,
            gid: 0,
            user: None,
            group: None,
            size: content.len() as u64,
            mtime: 1_700_000_000,
            mtime_nsec: 1,
            dev: 0,
            ino: 0,
            nlink: 1,
            rdev_major: None,
            rdev_minor: None,
            blake3: Some(blake3::hash(content).to_hex().to_string()),
            blake3_blocks: None,
            link: None,
            xattrs: Vec::new(),
            offset: 0,
            operand: 0,
        };
        (bytes, vec![entry])
    }

    /// Where the zstd data ends and the skippable frame with the manifest copy begins.
    fn data_end(bytes: &[u8]) -> usize {
        let magic = crate::archive::MANIFEST_FRAME_MAGIC.to_le_bytes();
        bytes
            .windows(4)
            .rposition(|w| w == magic)
            .expect("manifest frame")
    }

    #[test]
    fn a_sound_archive_verifies() {
        let (bytes, entries) = one_file_archive(&[7u8; 10_000]);
        let hash = blake3::hash(&bytes).to_hex().to_string();
        assert!(verify_archive(&bytes[..], &entries, Some(&hash)).is_ok());
        assert!(verify_in_memory(&bytes, &entries, &hash).is_ok());
    }

    #[test]
    fn checking_a_small_file_allocates_no_buffer_larger_than_it() {
        // A 128 KiB read buffer, zeroed for every archive, was a quarter of the page
        // faults of a one-file saferm (issue 11 §5).
        let (bytes, entries) = one_file_archive(&[7u8; 4096]);
        let hash = blake3::hash(&bytes).to_hex().to_string();
        let (checked, largest) =
            crate::alloc::largest::during(|| verify_in_memory(&bytes, &entries, &hash));
        assert!(checked.is_ok());
        // The decoded tar stream (headers and the file) is the largest block needed.
        assert!(largest <= 32 << 10, "a {largest}-byte block to check 4 KiB");
        // Large entries are still read in pieces of READ_BUFFER.
        let (bytes, entries) = one_file_archive(&vec![7u8; 1 << 20]);
        let hash = blake3::hash(&bytes).to_hex().to_string();
        assert!(verify_in_memory(&bytes, &entries, &hash).is_ok());
    }

    #[test]
    fn entries_that_differ_are_all_named_and_the_rest_still_checked() {
        let file = tempfile::tempfile().expect("temp file");
        let mut w = ArchiveWriter::new(file, 1, 0, 1 << 16, 3).expect("writer");
        let (_, template) = one_file_archive(b"");
        let mut entries = Vec::new();
        for (i, name) in ["a", "b", "c", "d"].iter().enumerate() {
            let content = name.repeat(100 + i);
            let path = format!("home/u/{name}");
            let meta = EntryMeta::test_file(path.as_bytes(), content.len() as u64, 1, 0);
            assert!(w.append(&meta, Some(&mut content.as_bytes())).is_ok());
            let mut e = template[0].clone();
            e.path = PathBytes::new(format!("/{path}").as_bytes());
            e.size = content.len() as u64;
            e.mtime = 1;
            e.mtime_nsec = 0;
            e.blake3 = Some(blake3::hash(content.as_bytes()).to_hex().to_string());
            entries.push(e);
        }
        let sealed = w.finish(|out| out.write_all(b"{}")).expect("finish");
        let mut bytes = vec![0u8; sealed.size as usize];
        std::os::unix::fs::FileExt::read_exact_at(&sealed.file, &mut bytes, 0).expect("read");
        let hash = blake3::hash(&bytes).to_hex().to_string();
        assert!(verify_in_memory(&bytes, &entries, &hash).is_ok());

        let mut wrong = entries.clone();
        wrong[1].mode = 0o600;
        wrong[3].blake3 = Some(blake3::hash(b"other").to_hex().to_string());
        for result in [
            verify_in_memory(&bytes, &wrong, &hash),
            verify_archive(&bytes[..], &wrong, Some(&hash)),
        ] {
            let e = result.expect_err("two entries differ");
            let m = e.downcast_ref::<Mismatch>().expect("a mismatch of entries");
            let which: Vec<usize> = m.entries.iter().map(|(i, _)| *i).collect();
            assert_eq!(which, [1, 3], "{e:#}");
            assert!(m.entries[0]
                .1
                .contains("has mode 644 in the archive, 600 on disk"));
        }
        // A stream that does not hold what was written is no mismatch of entries.
        let mut missing = entries.clone();
        missing.push(entries[0].clone());
        let e = verify_in_memory(&bytes, &missing, &hash).expect_err("one entry missing");
        assert!(e.downcast_ref::<Mismatch>().is_none(), "{e:#}");
        let e = verify_in_memory(&bytes, &entries[..3], &hash).expect_err("one too many");
        assert!(e.downcast_ref::<Mismatch>().is_none(), "{e:#}");
    }

    #[test]
    fn in_memory_verification_catches_the_same_damage() {
        let content: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
        let (bytes, entries) = one_file_archive(&content);
        let end = data_end(&bytes);
        for at in (6..end).step_by(11) {
            let mut bad = bytes.clone();
            bad[at] ^= 0x01;
            // Same file hash as written: only decoding and comparing can tell.
            let hash = blake3::hash(&bad).to_hex().to_string();
            assert!(
                verify_in_memory(&bad, &entries, &hash).is_err(),
                "flip at {at} went unnoticed"
            );
        }
        let hash = blake3::hash(&bytes).to_hex().to_string();
        let mut other = entries.clone();
        other[0].mode = 0o600;
        assert!(verify_in_memory(&bytes, &other, &hash).is_err());
        assert!(verify_in_memory(&bytes, &entries, "0").is_err());
    }

    #[test]
    fn damage_anywhere_in_the_data_is_caught_without_the_file_hash() {
        let content: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
        let (bytes, entries) = one_file_archive(&content);
        // The zstd frame runs up to the skippable frame holding the manifest copy.
        let data_end = data_end(&bytes);
        for at in (6..data_end).step_by(7) {
            let mut bad = bytes.clone();
            bad[at] ^= 0x01;
            assert!(
                verify_archive(&bad[..], &entries, None).is_err(),
                "flip at {at} went unnoticed"
            );
        }
    }

    /// Verify `bytes` against `entry` handed over as the writer does, with `content`.
    fn verify_streamed(bytes: &[u8], entry: &Entry, content: Option<&[u8]>) -> Result<String> {
        verify_streamed_hashes(bytes, entry, content).0
    }

    /// [`verify_streamed`], and the blake3s sent back.
    fn verify_streamed_hashes(
        bytes: &[u8],
        entry: &Entry,
        content: Option<&[u8]>,
    ) -> (Result<String>, Vec<(usize, Option<String>)>) {
        let held = Arc::new(Held::new(1 << 20));
        let (tx, rx) = mpsc::channel();
        let (hash_tx, hash_rx) = mpsc::channel();
        let content = content.map(<[u8]>::to_vec);
        if let Some(c) = &content {
            assert!(held.reserve(c.len()));
        }
        tx.send(Written {
            index: 7,
            entry: entry.clone(),
            content,
            sparse: None,
        })
        .expect("send");
        drop(tx);
        let result = verify_stream(bytes, &mut Streamed::new(rx, hash_tx, held.clone()));
        assert_eq!(
            held.bytes.load(Ordering::Acquire),
            0,
            "held bytes not given back"
        );
        (result, hash_rx.iter().collect())
    }

    /// An archive holding one sparse file (3 MiB, data at 4 KiB and at 2 MiB), its entry,
    /// what the writer read of it, and the plain blake3 of its logical content.
    fn sparse_archive() -> (Vec<u8>, Entry, crate::archive::sparse::SparseRead, String) {
        use crate::archive::sparse::Region;
        use std::os::unix::fs::FileExt;
        let size = 3u64 << 20;
        let src = tempfile::tempfile().expect("temp file");
        src.set_len(size).expect("truncate");
        let regions = vec![
            Region {
                offset: 4096,
                len: 4096,
            },
            Region {
                offset: 2 << 20,
                len: 10_000,
            },
        ];
        for (k, r) in regions.iter().enumerate() {
            src.write_all_at(&vec![k as u8 + 1; r.len as usize], r.offset)
                .expect("write");
        }
        let file = tempfile::tempfile().expect("temp file");
        let mut w = ArchiveWriter::new(file, 1, 0, 1 << 20, 1).expect("writer");
        let meta = EntryMeta::test_file(b"home/u/disk.img", size, 1_700_000_000, 1);
        let (hash, read) =
            crate::archive::sparse::append(&mut w, &meta, &src, regions).expect("append");
        let sealed = w.finish(|out| out.write_all(b"{}")).expect("finish");
        let mut bytes = Vec::new();
        let mut f = sealed.file;
        use std::io::Seek;
        f.rewind().expect("rewind");
        f.read_to_end(&mut bytes).expect("read back");
        let mut whole = vec![0u8; size as usize];
        src.read_exact_at(&mut whole, 0).expect("read source");
        let each: Vec<u8> = whole
            .chunks(1 << 20)
            .flat_map(|b| *blake3::hash(b).as_bytes())
            .collect();
        assert_eq!(hash, blake3::hash(&each).to_hex().to_string());
        let (_, mut entry) = one_file_archive(b"");
        let mut entry = entry.remove(0);
        entry.path = PathBytes::new(b"/home/u/disk.img");
        entry.size = size;
        entry.blake3 = None;
        entry.blake3_blocks = Some(hash);
        (
            bytes,
            entry,
            read,
            blake3::hash(&whole).to_hex().to_string(),
        )
    }

    #[test]
    fn a_sparse_entry_is_checked_by_its_map_and_its_block_hash() {
        let (bytes, entry, read, plain) = sparse_archive();
        // After sealing (and `unrm --check`): the logical content's blake3_blocks.
        assert!(verify_archive(&bytes[..], std::slice::from_ref(&entry), None).is_ok());
        let mut other = entry.clone();
        other.blake3_blocks = Some(blake3::hash(b"x").to_hex().to_string());
        assert!(verify_archive(&bytes[..], &[other], None).is_err());
        let mut none = entry.clone();
        none.blake3_blocks = None;
        assert!(verify_archive(&bytes[..], &[none], None).is_err());
        // An older manifest's plain blake3 of the logical content still checks.
        let mut old = entry.clone();
        old.blake3_blocks = None;
        old.blake3 = Some(plain.clone());
        assert!(verify_archive(&bytes[..], &[old.clone()], None).is_ok());
        old.blake3 = entry.blake3_blocks.clone();
        assert!(verify_archive(&bytes[..], &[old], None).is_err());
        let mut longer = entry.clone();
        longer.size += 1;
        assert!(verify_archive(&bytes[..], &[longer], None).is_err());
        // While written: the map as the writer read it, and the hash it worked out.
        let streamed = |bytes: &[u8], entry: &Entry, read: crate::archive::sparse::SparseRead| {
            let held = Arc::new(Held::new(0));
            let (tx, rx) = mpsc::channel();
            let (hash_tx, _hash_rx) = mpsc::channel();
            tx.send(Written {
                index: 0,
                entry: entry.clone(),
                content: None,
                sparse: Some(read),
            })
            .expect("send");
            drop(tx);
            verify_stream(bytes, &mut Streamed::new(rx, hash_tx, held))
        };
        assert!(streamed(&bytes, &entry, read.clone()).is_ok());
        let mut moved = read.clone();
        moved.regions[1].offset += 512;
        assert!(streamed(&bytes, &entry, moved).is_err());
        let mut wrong = entry.clone();
        wrong.blake3_blocks = Some(plain);
        assert!(streamed(&bytes, &wrong, read.clone()).is_err());
        // Damage in the stored data is caught either way.
        let mut tar = zstd::stream::decode_all(&bytes[..]).expect("decode");
        let at = tar
            .windows(4)
            .position(|w| w == [1, 1, 1, 1])
            .expect("the first region's data");
        tar[at] = 9;
        let damaged = zstd::bulk::compress(&tar, 1).expect("compress");
        assert!(verify_archive(&damaged[..], std::slice::from_ref(&entry), None).is_err());
        assert!(streamed(&damaged, &entry, read).is_err());
    }

    #[test]
    fn a_blake3_left_to_verification_is_sent_back_once_the_bytes_match() {
        let content = b"left to the verifier".to_vec();
        let (bytes, entries) = one_file_archive(&content);
        let mut entry = entries[0].clone();
        entry.blake3 = None;
        let (result, hashes) = verify_streamed_hashes(&bytes, &entry, Some(&content));
        assert!(result.is_ok());
        assert_eq!(
            hashes,
            [(7, Some(blake3::hash(&content).to_hex().to_string()))]
        );
        let (result, hashes) = verify_streamed_hashes(&bytes, &entry, Some(b"something else"));
        assert!(result.is_err());
        // The writer, waiting for it, learns that it differs.
        assert_eq!(hashes, [(7, None)], "a hash for content that did not match");
        // With a blake3 already, none is sent back.
        let (result, hashes) = verify_streamed_hashes(&bytes, &entries[0], Some(&content));
        assert!(result.is_ok() && hashes.is_empty());
    }

    #[test]
    fn kept_content_is_compared_byte_for_byte() {
        let content: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
        let (bytes, entries) = one_file_archive(&content);
        let want = blake3::hash(&bytes).to_hex().to_string();
        assert_eq!(
            verify_streamed(&bytes, &entries[0], Some(&content)).ok(),
            Some(want)
        );
        // The blake3 matches the archive; only the bytes the writer read do not.
        let mut other = content.clone();
        other[40_000] ^= 1;
        assert!(verify_streamed(&bytes, &entries[0], Some(&other)).is_err());
        assert!(verify_streamed(&bytes, &entries[0], Some(&content[1..])).is_err());
        let mut longer = content.clone();
        longer.push(0);
        assert!(verify_streamed(&bytes, &entries[0], Some(&longer)).is_err());
        // Without the content, the blake3 decides.
        assert!(verify_streamed(&bytes, &entries[0], None).is_ok());
        let mut wrong = entries[0].clone();
        wrong.blake3 = Some(blake3::hash(&other).to_hex().to_string());
        assert!(verify_streamed(&bytes, &wrong, None).is_err());
    }

    #[test]
    fn held_content_is_bounded() {
        let held = Held::new(100);
        assert!(held.reserve(60));
        assert!(!held.reserve(41));
        assert!(held.reserve(40));
        assert!(!held.reserve(1));
        held.release(vec![0; 60]);
        assert!(held.reserve(60));
        // The released buffer comes back, empty, to be read into again.
        let again = held.buffer();
        assert!(again.is_empty() && again.capacity() >= 60);
        assert_eq!(held.buffer().capacity(), 0, "only one was given back");
        // Large ones are not kept (their memory would stay taken).
        let large = Held::new(1 << 30);
        assert!(large.reserve(SPARE_CAPACITY + 1));
        large.release(vec![0; SPARE_CAPACITY + 1]);
        assert_eq!(large.bytes.load(Ordering::Acquire), 0);
        assert_eq!(large.buffer().capacity(), 0);
    }

    /// A zstd-compressed tar of one symlink `home/u/l` and one hard link `home/u/h` to
    /// `home/u/f`, and their manifest entries.
    fn link_archive() -> (Vec<u8>, Vec<Entry>) {
        let mut tar_bytes = Vec::new();
        {
            let mut b = tar::Builder::new(&mut tar_bytes);
            for (path, kind, target) in [
                ("home/u/l", tar::EntryType::Symlink, "f"),
                ("home/u/h", tar::EntryType::Link, "home/u/f"),
            ] {
                let mut h = tar::Header::new_gnu();
                h.set_entry_type(kind);
                h.set_mode(0o777);
                h.set_size(0);
                assert!(h.set_path(path).is_ok() && h.set_link_name(target).is_ok());
                h.set_cksum();
                assert!(b.append(&h, &[][..]).is_ok());
            }
            assert!(b.finish().is_ok());
        }
        let bytes = zstd::encode_all(&tar_bytes[..], 1).expect("compress");
        let (_, entries) = one_file_archive(b"");
        let entry = |path: &[u8], kind, link: &[u8]| Entry {
            path: PathBytes::new(path),
            kind,
            mode: 0o777,
            size: 0,
            blake3: None,
            link: Some(PathBytes::new(link)),
            ..entries[0].clone()
        };
        let entries = vec![
            entry(b"/home/u/l", Kind::Symlink, b"f"),
            entry(b"/home/u/h", Kind::Hardlink, b"/home/u/f"),
        ];
        (bytes, entries)
    }

    /// Found by the fuzz campaign (the first one by hand: `unrm --check` panicked): a
    /// manifest's link that is missing, empty or relative where it must be absolute is
    /// damage to report.
    #[test]
    fn links_without_a_sound_target_in_the_manifest_do_not_verify() {
        let (bytes, entries) = link_archive();
        assert!(verify_archive(&bytes[..], &entries, None).is_ok());
        for (i, link) in [
            (0, None),
            (1, None),
            (1, Some(&b""[..])),
            (1, Some(&b"home/u/f"[..])),
        ] {
            let mut bad = entries.clone();
            bad[i].link = link.map(PathBytes::new);
            assert!(
                verify_archive(&bytes[..], &bad, None).is_err(),
                "entry {i} with link {link:?}"
            );
        }
    }

    /// Found by the fuzz campaign: only the bytes after the first were compared, so a
    /// manifest whose absolute path had turned relative (`/` flipped to `.`) verified.
    #[test]
    fn a_manifest_path_that_is_not_absolute_does_not_verify() {
        let (bytes, entries) = one_file_archive(b"x");
        assert!(verify_archive(&bytes[..], &entries, None).is_ok());
        for path in [&b".home/u/notes.txt"[..], b"xhome/u/notes.txt", b"", b"/"] {
            let mut bad = entries.clone();
            bad[0].path = PathBytes::new(path);
            assert!(
                verify_archive(&bytes[..], &bad, None).is_err(),
                "{}",
                String::from_utf8_lossy(path)
            );
        }
    }

    #[test]
    fn truncation_and_a_damaged_manifest_copy_are_caught() {
        let (bytes, entries) = one_file_archive(b"hello");
        let hash = blake3::hash(&bytes).to_hex().to_string();
        let data_end = data_end(&bytes);
        assert!(verify_archive(&bytes[..data_end - 3], &entries, None).is_err());
        let mut bad = bytes.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0x01; // inside the manifest copy, which the decoder skips
        assert!(verify_archive(&bad[..], &entries, Some(&hash)).is_err());
        let mut other = entries.clone();
        other[0].blake3 = Some(blake3::hash(b"HELLO").to_hex().to_string());
        assert!(verify_archive(&bytes[..], &other, Some(&hash)).is_err());
    }

    #[test]
    fn frames_decode_from_a_slice_to_the_end_or_fail() {
        let part = |data: &[u8]| zstd::bulk::compress(data, 1).expect("compress");
        let one: Vec<u8> = (0..300_000u32).map(|i| (i / 3 % 256) as u8).collect();
        let mut stream = part(&one);
        // A skippable frame between two frames, as the manifest copy sits after the data.
        stream.extend_from_slice(&0x184D_2A50u32.to_le_bytes());
        stream.extend_from_slice(&3u32.to_le_bytes());
        stream.extend_from_slice(b"xyz");
        stream.extend_from_slice(&part(b"two"));
        let mut expected = one.clone();
        expected.extend_from_slice(b"two");
        assert_eq!(decode_frames(&stream).expect("decode"), expected);
        // Cut anywhere inside a frame: an error, never a short result.
        let first = part(&one).len();
        for cut in [1, 4, 5, first / 2, first - 1, stream.len() - 1] {
            assert!(decode_frames(&stream[..cut]).is_err(), "cut at {cut}");
        }
        assert!(decode_frames(&[]).is_err());
        assert!(decode_frames(b"not zstd at all").is_err());
    }
}
