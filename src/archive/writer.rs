//! The archive writer: one `.tar.zst` per saferm run, entries under their absolute path
//! without the leading `/`, so `tar --zstd -xpf ARCHIVE -C /` restores in place.
//!
//! The tar crate encodes headers (GNU long names for long or odd paths, PAX records for
//! nanosecond mtimes and `SCHILY.xattr.*`); this module drives it: it reads each source once,
//! hashing as it streams, refuses to let a file that changes size misframe the stream, rolls a
//! new zstd frame at an entry boundary every [`FRAME_BYTES`] so one file can be restored by
//! seeking, and appends a copy of the manifest in a skippable frame. Files with holes are
//! stored as PAX 1.0 sparse entries ([`crate::archive::sparse`]).

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Condvar, Mutex};

use crate::manifest::Frame;

/// Start a new zstd frame (at the next entry boundary) after this much tar data.
pub const FRAME_BYTES: u64 = 32 << 20;

/// The magic number of the skippable frame that carries the manifest copy.
pub const MANIFEST_FRAME_MAGIC: u32 = 0x184D_2A5B;
/// What the manifest copy starts with, so it can be told from other skippable frames. A
/// zstd frame of the manifest JSON follows (50,000 entries are 16 MB of JSON, 1-2 MB
/// compressed).
pub const MANIFEST_FRAME_TAG: &[u8] = b"saferm-manifest\n";

/// The manifest JSON from the bytes after [`MANIFEST_FRAME_TAG`] (plain JSON is accepted
/// too).
pub fn decode_manifest_copy(copy: &[u8]) -> io::Result<Vec<u8>> {
    if copy.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        zstd::stream::decode_all(copy)
    } else {
        Ok(copy.to_vec())
    }
}

/// Counts and hashes the compressed bytes on their way to the file (unless a reader
/// follows the file and hashes it as it reads it back).
struct Sink {
    file: File,
    written: u64,
    hasher: Option<blake3::Hasher>,
    growth: Option<Arc<Growth>>,
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        crate::fault::check("write")?;
        let n = self.file.write(buf)?;
        if let Some(h) = &mut self.hasher {
            h.update(&buf[..n]);
        }
        self.written += n as u64;
        if let Some(g) = &self.growth {
            g.set(self.written, Written::Growing);
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// How much of an archive being written is in its file, so that verification can read it
/// back while it grows, and whether the writer finished it or gave up.
#[derive(Default)]
pub struct Growth {
    state: Mutex<(u64, Written)>,
    changed: Condvar,
}

#[derive(Clone, Copy, PartialEq, Eq, Default)]
enum Written {
    #[default]
    Growing,
    Sealed,
    Abandoned,
}

impl Growth {
    fn set(&self, len: u64, what: Written) {
        if let Ok(mut st) = self.state.lock() {
            if st.1 == Written::Growing {
                *st = (len, what);
            }
        }
        self.changed.notify_all();
    }

    /// The writer stopped: unless the archive was sealed, readers get an error.
    pub fn abandon(&self) {
        self.set(0, Written::Abandoned);
    }

    /// Wait until the file is longer than `pos`, or finished; returns its length then.
    fn wait_past(&self, pos: u64) -> io::Result<u64> {
        let mut st = self
            .state
            .lock()
            .map_err(|_| io::Error::other("the archive writer failed"))?;
        loop {
            match *st {
                (_, Written::Abandoned) => {
                    return Err(io::Error::other("the archive was not finished"))
                }
                (len, Written::Sealed) => return Ok(len),
                (len, Written::Growing) if len > pos => return Ok(len),
                _ => {}
            }
            st = self
                .changed
                .wait(st)
                .map_err(|_| io::Error::other("the archive writer failed"))?;
        }
    }
}

/// Reads an archive from its start while another thread writes it: each read waits for
/// bytes that are in the file, and the end is where the writer sealed it.
pub struct Follow {
    pub file: File,
    pub pos: u64,
    pub growth: Arc<Growth>,
}

impl Read for Follow {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let len = self.growth.wait_past(self.pos)?;
        let want = buf.len().min(len.saturating_sub(self.pos) as usize);
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the archive file is shorter than what was written",
            ));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

/// The tar stream's destination: a sequence of zstd frames, from one compression context
/// (and, multithreaded, one pool of workers) reset between frames.
pub struct FrameWriter {
    encoder: Option<zstd::stream::raw::Encoder<'static>>,
    /// Compressed output on its way to `sink`.
    out: Vec<u8>,
    sink: Sink,
    /// Set once a write failed: the stream is then unusable.
    broken: bool,
    level: i32,
    threads: u32,
    /// Size of each multithreaded zstd job.
    job_bytes: u32,
    /// zstd's window and tables for a small deletion.
    small: Option<Small>,
    tar_pos: u64,
    frame_start: u64,
    frames: Vec<Frame>,
    /// Tar's many small writes (headers, padding, 8 KiB copies) gathered into large ones:
    /// each write into a multithreaded zstd encoder synchronises with its workers.
    pending: Vec<u8>,
}

/// zstd's window and tables (as powers of two) for a deletion smaller than level 1's
/// default window: a window larger than the data only costs memory and time (allocating and
/// clearing the tables was most of a one-file saferm's CPU time).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Small {
    window_log: u32,
    /// The hash table's: a quarter as many slots as the window has bytes. A 4 KiB file's
    /// table is then 8 KiB, two pages cleared instead of eight, for a few bytes more
    /// archive (3,131 bytes instead of 3,126 for the benchmark's 4 KiB text file).
    table_log: u32,
}

impl Small {
    /// For about `expected_bytes` of tar data; `None` when level 1's 2^19 window fits.
    fn for_bytes(expected_bytes: u64) -> Option<Small> {
        if expected_bytes >= 1 << 19 {
            return None;
        }
        let bits = 64 - expected_bytes.max(1024).saturating_sub(1).leading_zeros();
        let window_log = bits.clamp(10, 19);
        Some(Small {
            window_log,
            table_log: window_log.saturating_sub(2).max(6),
        })
    }
}

/// Hand data to the zstd encoder in pieces of about this size.
const PENDING_BYTES: usize = 256 << 10;

impl FrameWriter {
    fn usable(&self) -> io::Result<()> {
        if self.broken {
            return Err(io::Error::other("archive writer used after failure"));
        }
        Ok(())
    }

    /// Run `step` on the encoder until it says it is done, writing what it outputs.
    fn drive(
        &mut self,
        mut step: impl FnMut(
            &mut zstd::stream::raw::Encoder<'static>,
            &mut zstd::stream::raw::OutBuffer<'_, Vec<u8>>,
        ) -> io::Result<bool>,
    ) -> io::Result<()> {
        self.usable()?;
        let result = (|| loop {
            let enc = self
                .encoder
                .as_mut()
                .ok_or_else(|| io::Error::other("archive writer used outside a frame"))?;
            let mut dst = zstd::stream::raw::OutBuffer::around(&mut self.out);
            let done = step(enc, &mut dst)?;
            let n = dst.pos();
            self.sink.write_all(&self.out[..n])?;
            if done {
                return Ok(());
            }
        })();
        self.broken = result.is_err();
        result
    }

    /// Compress `data` into the current frame.
    fn compress(&mut self, data: &[u8]) -> io::Result<()> {
        let mut src = zstd::stream::raw::InBuffer::around(data);
        self.drive(|enc, dst| {
            use zstd::stream::raw::Operation;
            enc.run(&mut src, dst)?;
            Ok(src.pos == src.src.len())
        })
    }

    fn flush_pending(&mut self) -> io::Result<()> {
        if !self.pending.is_empty() {
            let pending = std::mem::take(&mut self.pending);
            let result = self.compress(&pending);
            self.pending = pending;
            self.pending.clear();
            result?;
        }
        Ok(())
    }

    fn start_frame(&mut self) -> io::Result<()> {
        self.usable()?;
        self.frames.push(Frame {
            compressed_offset: self.sink.written,
            tar_offset: self.tar_pos,
        });
        self.frame_start = self.tar_pos;
        if let Some(enc) = &mut self.encoder {
            use zstd::stream::raw::Operation;
            // Same parameters, same workers: only the frame starts over.
            return enc.reinit();
        }
        use zstd::stream::raw::CParameter;
        let mut enc = zstd::stream::raw::Encoder::new(self.level)?;
        enc.set_parameter(CParameter::ChecksumFlag(true))?;
        if let Some(Small {
            window_log,
            table_log,
        }) = self.small
        {
            enc.set_parameter(CParameter::WindowLog(window_log))?;
            enc.set_parameter(CParameter::HashLog(table_log))?;
            enc.set_parameter(CParameter::ChainLog(table_log))?;
        }
        if self.threads > 0 {
            enc.set_parameter(CParameter::NbWorkers(self.threads))?;
            enc.set_parameter(CParameter::JobSize(self.job_bytes))?;
        }
        self.encoder = Some(enc);
        Ok(())
    }

    /// Finish the current frame; `more` if another follows.
    fn end_frame(&mut self, more: bool) -> io::Result<()> {
        self.flush_pending()?;
        self.drive(|enc, dst| {
            use zstd::stream::raw::Operation;
            Ok(enc.finish(dst, false)? == 0)
        })?;
        // Start writing this frame out now, so the fsync at the end does not have to
        // write the whole archive while nothing else happens. (After the last frame the
        // fsync comes next anyway.)
        if more {
            crate::sys::start_writeback(&self.sink.file);
        }
        Ok(())
    }
}

impl Write for FrameWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.pending.len() + buf.len() > PENDING_BYTES {
            self.flush_pending()?;
        }
        if buf.len() >= PENDING_BYTES {
            self.compress(buf)?;
            self.tar_pos += buf.len() as u64;
            return Ok(buf.len());
        }
        self.pending.extend_from_slice(buf);
        self.tar_pos += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_pending()?;
        self.drive(|enc, dst| {
            use zstd::stream::raw::Operation;
            Ok(enc.flush(dst)? == 0)
        })?;
        self.sink.flush()
    }
}

/// What went wrong while appending an entry: the source (this object stays) or the archive
/// (nothing can be removed).
#[derive(Debug)]
pub enum AppendError {
    Source(io::Error),
    Changed,
    Archive(io::Error),
}

/// The finished archive file and what the manifest records about it.
pub struct Sealed {
    pub file: File,
    pub size: u64,
    /// The blake3 of the file's bytes as they were written; `None` when a reader followed
    /// the file ([`ArchiveWriter::report_growth`]): it hashes them as it reads them back.
    pub blake3: Option<String>,
    pub frames: Vec<Frame>,
    /// Where the frame with the manifest copy starts, its length and the blake3 of its
    /// bytes as written: a decoder skips that frame, so [`Sealed::copy_reads_back`] checks
    /// it. (Not the bytes: for 200,000 entries they are 3 MB.)
    copy_at: u64,
    copy_len: u64,
    copy_hash: blake3::Hash,
}

impl Sealed {
    /// Whether the file, read through `from`, holds the manifest copy's frame as it was
    /// written, and nothing after.
    pub fn copy_reads_back(&self, from: &File) -> io::Result<bool> {
        if self.copy_at + self.copy_len != self.size || from.metadata()?.len() != self.size {
            return Ok(false);
        }
        let mut back = vec![0u8; self.copy_len.min(64 << 10) as usize];
        let mut hasher = blake3::Hasher::new();
        let mut at = self.copy_at;
        while at < self.size {
            let n = (self.size - at).min(back.len() as u64) as usize;
            from.read_exact_at(&mut back[..n], at)?;
            hasher.update(&back[..n]);
            at += n as u64;
        }
        Ok(hasher.finalize() == self.copy_hash)
    }
}

/// Header fields of one entry.
pub struct EntryMeta<'a> {
    pub tar_path: &'a [u8],
    pub kind: tar::EntryType,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub user: Option<&'a str>,
    pub group: Option<&'a str>,
    pub size: u64,
    pub mtime: i64,
    pub mtime_nsec: u32,
    pub link: Option<&'a [u8]>,
    pub device: Option<(u32, u32)>,
    pub xattrs: &'a [(Vec<u8>, Vec<u8>)],
}

#[cfg(test)]
impl<'a> EntryMeta<'a> {
    /// A regular file's header fields (mode 0644, owned by root), for tests.
    pub fn test_file(tar_path: &'a [u8], size: u64, mtime: i64, mtime_nsec: u32) -> Self {
        EntryMeta {
            tar_path,
            kind: tar::EntryType::Regular,
            mode: 0o644,
            uid: 0,
            gid: 0,
            user: None,
            group: None,
            size,
            mtime,
            mtime_nsec,
            link: None,
            device: None,
            xattrs: &[],
        }
    }
}

pub struct ArchiveWriter {
    builder: tar::Builder<FrameWriter>,
}

impl ArchiveWriter {
    /// Start writing into `file` (the new archive, empty) at zstd `level`, with `threads` workers
    /// (0: compress on the calling thread). `expected_bytes` is about how much tar data will
    /// come (it only sizes the compression window); `entries` how many entries.
    pub fn new(
        file: File,
        level: i32,
        threads: u32,
        expected_bytes: u64,
        entries: usize,
    ) -> io::Result<ArchiveWriter> {
        // 2 MiB jobs compress fastest, but keep more buffers in flight than a deletion of
        // many files can afford under its memory bound: many entries, small jobs
        // (doc/benchmarks.md, "Choices the code makes").
        let job_bytes = if entries > 20_000 { 512 << 10 } else { 2 << 20 };
        // Buffers no larger than the data needs: a one-file deletion then does not map
        // (and unmap) a few hundred KiB it writes a few KiB of.
        let expected = usize::try_from(expected_bytes).unwrap_or(usize::MAX);
        let mut fw = FrameWriter {
            encoder: None,
            out: Vec::with_capacity(
                zstd::zstd_safe::CCtx::out_size().min(expected.saturating_add(4096)),
            ),
            sink: Sink {
                file,
                written: 0,
                hasher: Some(blake3::Hasher::new()),
                growth: None,
            },
            broken: false,
            level,
            threads,
            job_bytes,
            small: Small::for_bytes(expected_bytes),
            tar_pos: 0,
            frame_start: 0,
            frames: Vec::new(),
            pending: Vec::with_capacity(PENDING_BYTES.min(expected.saturating_add(4096))),
        };
        fw.start_frame()?;
        let mut builder = tar::Builder::new(fw);
        builder.follow_symlinks(false);
        Ok(ArchiveWriter { builder })
    }

    /// Report how far the file is written to `growth`, for a reader that follows it
    /// ([`Follow`]). Whoever reports to it calls [`Growth::abandon`] when the writer stops,
    /// sealed or not: unless it was sealed, the reader then gets an error.
    pub fn report_growth(&mut self, growth: Arc<Growth>) -> io::Result<()> {
        let fw = self.builder.get_mut();
        fw.usable()?;
        let sink = &mut fw.sink;
        sink.growth = Some(growth);
        sink.hasher = None;
        Ok(())
    }

    /// The offset in the tar stream where the next entry starts.
    pub fn position(&mut self) -> u64 {
        self.builder.get_mut().tar_pos
    }

    /// Call between entries: start a new frame once the current one is large enough.
    pub fn entry_boundary(&mut self) -> io::Result<()> {
        let fw = self.builder.get_mut();
        if fw.tar_pos - fw.frame_start >= FRAME_BYTES {
            fw.end_frame(true)?;
            fw.start_frame()?;
        }
        Ok(())
    }

    /// Append one entry. `data` is read for regular files only; it must yield exactly
    /// `meta.size` bytes, or the entry fails (`Changed` when it ends early, `Source` when a
    /// read fails). The header has committed to the size by then: the rest of the entry is
    /// padded with zeros, so the stream stays framed and the next entries can follow, but
    /// the failed entry is not what the file holds: the caller must not record it, and
    /// writes the archive again without that object.
    pub fn append(
        &mut self,
        meta: &EntryMeta<'_>,
        data: Option<&mut dyn Read>,
    ) -> Result<(), AppendError> {
        self.append_stored(meta, data, None)
    }

    /// Append a sparse regular file (`meta.size` its real size) as PAX 1.0 sparse
    /// (`crate::archive::sparse`): `data` must yield exactly `stored` bytes, the map and the data
    /// regions.
    pub fn append_sparse(
        &mut self,
        meta: &EntryMeta<'_>,
        stored: u64,
        data: &mut dyn Read,
    ) -> Result<(), AppendError> {
        self.append_stored(meta, Some(data), Some(stored))
    }

    fn append_stored(
        &mut self,
        meta: &EntryMeta<'_>,
        data: Option<&mut dyn Read>,
        sparse: Option<u64>,
    ) -> Result<(), AppendError> {
        let mut pax: Vec<(String, Vec<u8>)> = Vec::with_capacity(4 + meta.xattrs.len());
        if let Some(stored) = sparse {
            for (k, v) in [("major", 1), ("minor", 0), ("realsize", meta.size)] {
                pax.push((format!("GNU.sparse.{k}"), v.to_string().into_bytes()));
            }
            // Past 11 octal digits the header's size field would need base-256.
            if stored > 0o77_777_777_777 {
                pax.push(("size".to_string(), stored.to_string().into_bytes()));
            }
        }
        pax.push((
            "mtime".to_string(),
            pax_time(meta.mtime, meta.mtime_nsec).into_bytes(),
        ));
        for (name, value) in meta.xattrs {
            pax.push((
                format!("SCHILY.xattr.{}", String::from_utf8_lossy(name)),
                value.clone(),
            ));
        }
        self.builder
            .append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
            .map_err(AppendError::Archive)?;

        // GNU tar reads the GNU.sparse records only with a POSIX header.
        let mut header = match sparse {
            Some(_) => tar::Header::new_ustar(),
            None => tar::Header::new_gnu(),
        };
        header.set_entry_type(meta.kind);
        header.set_mode(meta.mode & 0o7777);
        header.set_uid(meta.uid as u64);
        header.set_gid(meta.gid as u64);
        header.set_mtime(meta.mtime.max(0) as u64);
        if let Some(u) = meta.user {
            let _ = header.set_username(u);
        }
        if let Some(g) = meta.group {
            let _ = header.set_groupname(g);
        }
        if let Some((major, minor)) = meta.device {
            header
                .set_device_major(major)
                .map_err(AppendError::Archive)?;
            header
                .set_device_minor(minor)
                .map_err(AppendError::Archive)?;
        }
        let path = std::path::Path::new(
            <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(meta.tar_path),
        );
        if let Some(target) = meta.link {
            header.set_size(0);
            self.set_link_name(&mut header, target)
                .map_err(AppendError::Archive)?;
            return self
                .builder
                .append_data(&mut header, path, io::empty())
                .map_err(AppendError::Archive);
        }
        let size = sparse.unwrap_or(meta.size);
        header.set_size(size);
        match data {
            None => self
                .builder
                .append_data(&mut header, path, io::empty())
                .map_err(AppendError::Archive),
            Some(reader) => {
                let mut guarded = Exact {
                    inner: reader,
                    remaining: size,
                    failure: None,
                };
                let result = self.builder.append_data(&mut header, path, &mut guarded);
                match (guarded.failure, result) {
                    (_, Err(e)) => Err(AppendError::Archive(e)),
                    (Some(f), Ok(())) => Err(f),
                    (None, Ok(())) => Ok(()),
                }
            }
        }
    }

    /// Put a link's target in `header` byte for byte, as readlink gave it (`/`, `x/.`,
    /// `a//b` and non-UTF-8 bytes included): the tar crate's `set_link_name` would rewrite
    /// it through `Path::components()`. A target longer than the header's 100 bytes goes
    /// before it in a GNU long-link entry (`././@LongLink`, type `K`), whose bytes GNU tar
    /// takes as they are (a PAX `linkpath` would have to be UTF-8).
    fn set_link_name(&mut self, header: &mut tar::Header, target: &[u8]) -> io::Result<()> {
        let field = header.as_old().linkname.len();
        if target.len() > field {
            let mut long = tar::Header::new_gnu();
            // By hand: `set_path` would make it `@LongLink`.
            let name = b"././@LongLink";
            if let Some(gnu) = long.as_gnu_mut() {
                gnu.name[..name.len()].copy_from_slice(name);
            }
            long.set_mode(0o644);
            long.set_uid(0);
            long.set_gid(0);
            long.set_mtime(0);
            long.set_size(target.len() as u64 + 1);
            long.set_entry_type(tar::EntryType::GNULongLink);
            long.set_cksum();
            let data = target.chain(&[0u8][..]);
            self.builder.append(&long, data)?;
        }
        header.set_link_name_literal(&target[..target.len().min(field)])
    }

    /// Finish the tar stream and the last frame, and append the manifest copy (written by
    /// `write_copy`, so it is streamed rather than held in memory). The file is not synced:
    /// that is the caller's.
    pub fn finish(
        self,
        write_copy: impl FnOnce(&mut dyn Write) -> io::Result<()>,
    ) -> io::Result<Sealed> {
        self.end_data()?.seal(true, write_copy)
    }

    /// Finish the tar stream and its last frame; the frame table is then complete, for the
    /// manifest copy that [`DataEnd::seal`] appends.
    pub fn end_data(self) -> io::Result<DataEnd> {
        let mut fw = self.builder.into_inner()?;
        fw.end_frame(false)?;
        Ok(DataEnd { fw })
    }
}

/// An archive whose data is complete, waiting for its manifest copy.
pub struct DataEnd {
    fw: FrameWriter,
}

impl DataEnd {
    /// Where each zstd frame starts.
    pub fn frames(&self) -> &[Frame] {
        &self.fw.frames
    }

    /// Append the manifest copy, written by `write_copy` (through a zstd encoder when
    /// `compress`). The file is not fsynced yet: that is the caller's next step.
    pub fn seal(
        self,
        compress: bool,
        write_copy: impl FnOnce(&mut dyn Write) -> io::Result<()>,
    ) -> io::Result<Sealed> {
        let mut packed = Vec::new();
        if compress {
            let mut enc = zstd::stream::write::Encoder::new(&mut packed, 1)?;
            enc.include_checksum(true)?;
            // The JSON comes in pieces of a few bytes, and each write into the encoder is a
            // zstd call: they are gathered first, on this thread (doc/benchmarks.md,
            // "Choices the code makes").
            let mut gathered = io::BufWriter::with_capacity(256 << 10, &mut enc);
            write_copy(&mut gathered)?;
            gathered.flush()?;
            drop(gathered);
            enc.finish()?;
        } else {
            // A few entries: plain JSON (creating an encoder costs more than it saves).
            write_copy(&mut packed)?;
        }
        let copy_len = packed.len() as u64;
        let fw = self.fw;
        fw.usable()?;
        // The workers are done with the data; free them before writing the rest.
        drop(fw.encoder);
        let mut sink = fw.sink;
        let len = MANIFEST_FRAME_TAG.len() as u64 + copy_len;
        let len32 =
            u32::try_from(len).map_err(|_| io::Error::other("manifest too large for its frame"))?;
        let mut head = Vec::with_capacity(8 + MANIFEST_FRAME_TAG.len());
        head.extend_from_slice(&MANIFEST_FRAME_MAGIC.to_le_bytes());
        head.extend_from_slice(&len32.to_le_bytes());
        head.extend_from_slice(MANIFEST_FRAME_TAG);
        let mut copy_hash = blake3::Hasher::new();
        copy_hash.update(&head);
        copy_hash.update(&packed);
        let copy_at = sink.written;
        sink.write_all(&head)?;
        sink.write_all(&packed)?;
        sink.flush()?;
        if let Some(g) = sink.growth.take() {
            g.set(sink.written, Written::Sealed);
        }
        // The caller fsyncs the file (alongside verification, see archive::pipeline).
        Ok(Sealed {
            size: sink.written,
            blake3: sink.hasher.map(|h| h.finalize().to_hex().to_string()),
            file: sink.file,
            frames: fw.frames,
            copy_at,
            copy_len: (head.len() + packed.len()) as u64,
            copy_hash: copy_hash.finalize(),
        })
    }
}

/// A PAX time value: seconds, a dot, nine digits of nanoseconds (negative times included).
pub fn pax_time(sec: i64, nsec: u32) -> String {
    if sec < 0 && nsec > 0 {
        format!("-{}.{:09}", -(sec + 1), 1_000_000_000 - nsec)
    } else {
        format!("{sec}.{nsec:09}")
    }
}

/// Yields exactly `remaining` bytes of the source, and records a failure when the source
/// has fewer (it shrank) or cannot be read; after a failure, zeros up to the size the
/// header promised.
struct Exact<'a> {
    inner: &'a mut dyn Read,
    remaining: u64,
    failure: Option<AppendError>,
}

impl Read for Exact<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            // Growth past the recorded size is caught by the caller's fstat after the read
            // (size, mtime, ctime), which saves a read call per file.
            return Ok(0);
        }
        let want = buf
            .len()
            .min(self.remaining.min(usize::MAX as u64) as usize);
        if self.failure.is_some() {
            return Ok(self.pad(&mut buf[..want]));
        }
        match self.inner.read(&mut buf[..want]) {
            Ok(0) => self.fail(AppendError::Changed, &mut buf[..want]),
            Ok(n) => {
                self.remaining -= n as u64;
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            // Ctrl-C: the whole archive is abandoned, not padded out.
            Err(e) if crate::signal::is_stop(&e) => Err(e),
            Err(e) => self.fail(AppendError::Source(e), &mut buf[..want]),
        }
    }
}

impl Exact<'_> {
    fn fail(&mut self, f: AppendError, buf: &mut [u8]) -> io::Result<usize> {
        self.failure = Some(f);
        Ok(self.pad(buf))
    }

    fn pad(&mut self, buf: &mut [u8]) -> usize {
        buf.fill(0);
        self.remaining -= buf.len() as u64;
        buf.len()
    }
}

/// A reader that hashes what passes through it.
pub struct Hashing<R> {
    pub inner: R,
    pub hasher: blake3::Hasher,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An archive of one 20 MB entry in frames of [`FRAME_BYTES`], its writer followed
    /// (`growth`) or not.
    fn framed_archive(followed: bool) -> Sealed {
        let file = tempfile::tempfile().expect("temp file");
        let data: Vec<u8> = (0..20_000_000u32).map(|i| (i / 7 % 251) as u8).collect();
        let mut w = ArchiveWriter::new(file, 1, 2, data.len() as u64, 3).expect("writer");
        if followed {
            w.report_growth(Arc::new(Growth::default()))
                .expect("growth");
        }
        for name in ["a", "b", "c"] {
            w.entry_boundary().expect("boundary");
            let meta = EntryMeta::test_file(name.as_bytes(), data.len() as u64, 0, 0);
            assert!(w.append(&meta, Some(&mut &data[..])).is_ok());
        }
        w.finish(|out| {
            // A manifest comes in small pieces, as serde_json writes it.
            out.write_all(b"{\"copy\": [")?;
            for i in 0..200_000 {
                write!(out, "{i},")?;
            }
            out.write_all(b"0]}")
        })
        .expect("finish")
    }

    /// What [`framed_archive`] wrote as its manifest copy.
    fn framed_copy() -> Vec<u8> {
        let mut json = b"{\"copy\": [".to_vec();
        for i in 0..200_000 {
            json.extend_from_slice(format!("{i},").as_bytes());
        }
        json.extend_from_slice(b"0]}");
        json
    }

    #[test]
    fn a_small_deletion_gets_tables_of_its_size() {
        // One 4 KiB file: its content, a header and a PAX record (fill_archive's estimate).
        let one_file = Small::for_bytes(4096 + 1536).expect("small");
        assert!(1u64 << one_file.window_log >= 4096 + 1536, "{one_file:?}");
        // zstd's fast strategy keeps 4 bytes a slot: at most two pages to clear.
        assert!(4u64 << one_file.table_log <= 8 << 10, "{one_file:?}");
        assert_eq!(Small::for_bytes(0).map(|s| s.table_log), Some(8));
        assert_eq!(Small::for_bytes(1 << 19), None);
    }

    #[test]
    fn frames_from_one_context_decode_as_one_stream() {
        let sealed = framed_archive(false);
        assert_eq!(
            sealed.frames.len(),
            2,
            "a new frame after {FRAME_BYTES} bytes"
        );
        let mut bytes = vec![0u8; sealed.size as usize];
        sealed.file.read_exact_at(&mut bytes, 0).expect("read");
        assert_eq!(
            sealed.blake3.as_deref(),
            Some(blake3::hash(&bytes).to_hex().as_str())
        );
        // Each frame starts where the table says, with zstd's magic number.
        for f in &sealed.frames {
            let at = f.compressed_offset as usize;
            assert_eq!(bytes[at..at + 4], [0x28, 0xb5, 0x2f, 0xfd]);
        }
        let tar = zstd::stream::decode_all(&bytes[..]).expect("decode");
        let mut archive = tar::Archive::new(&tar[..]);
        let names: Vec<String> = archive
            .entries()
            .expect("entries")
            .map(|e| {
                e.expect("entry")
                    .path()
                    .expect("path")
                    .display()
                    .to_string()
            })
            .collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert!(sealed.copy_reads_back(&sealed.file).expect("read back"));
        // The copy: a skippable frame holding the tag and the compressed JSON.
        let copy = &bytes[sealed.copy_at as usize..];
        assert_eq!(copy[..4], MANIFEST_FRAME_MAGIC.to_le_bytes());
        let body = &copy[8..];
        assert!(body.starts_with(MANIFEST_FRAME_TAG));
        let json = decode_manifest_copy(&body[MANIFEST_FRAME_TAG.len()..]).expect("decode");
        assert_eq!(json, framed_copy());
    }

    #[test]
    fn a_followed_archive_leaves_hashing_to_its_reader_but_the_copy_is_checked() {
        let sealed = framed_archive(true);
        assert_eq!(sealed.blake3, None);
        assert!(sealed.copy_reads_back(&sealed.file).expect("read back"));
        let last = sealed.size - 1;
        let mut byte = [0u8];
        sealed.file.read_exact_at(&mut byte, last).expect("read");
        sealed.file.write_all_at(&[!byte[0]], last).expect("damage");
        assert!(!sealed.copy_reads_back(&sealed.file).expect("read back"));
        sealed.file.write_all_at(&byte, last).expect("repair");
        sealed.file.write_all_at(b"x", sealed.size).expect("extend");
        assert!(!sealed.copy_reads_back(&sealed.file).expect("read back"));
    }

    #[test]
    fn link_targets_are_stored_byte_for_byte() {
        let long: Vec<u8> = (0..300).map(|i| b"ab/./c//"[i % 8]).collect();
        let targets: Vec<&[u8]> = vec![
            b"/",
            b"x/.",
            b"a//b",
            b"a/./b",
            b"//x",
            b"/.",
            b"x/",
            b"..",
            b"../",
            b"a/b/",
            b"bad\xff/./name",
            &long[..100],
            &long[..101],
            &long,
        ];
        let file = tempfile::tempfile().expect("temp file");
        let mut w = ArchiveWriter::new(file, 1, 0, 1 << 16, targets.len()).expect("writer");
        for (i, target) in targets.iter().enumerate() {
            let name = format!("l{i}");
            let mut meta = EntryMeta::test_file(name.as_bytes(), 0, 0, 0);
            meta.kind = if i % 2 == 0 {
                tar::EntryType::Symlink
            } else {
                tar::EntryType::Link
            };
            meta.link = Some(target);
            assert!(w.append(&meta, None).is_ok());
        }
        let sealed = w.finish(|out| out.write_all(b"{}")).expect("finish");
        let mut bytes = vec![0u8; sealed.size as usize];
        sealed.file.read_exact_at(&mut bytes, 0).expect("read");
        let tar = zstd::stream::decode_all(&bytes[..]).expect("decode");
        let mut archive = tar::Archive::new(&tar[..]);
        let got: Vec<Vec<u8>> = archive
            .entries()
            .expect("entries")
            .map(|e| {
                let e = e.expect("entry");
                assert_eq!(e.header().size().expect("size"), 0);
                e.link_name_bytes().expect("a link name").into_owned()
            })
            .collect();
        let want: Vec<Vec<u8>> = targets.iter().map(|t| t.to_vec()).collect();
        assert_eq!(got, want);
    }

    /// Fails after `ok` bytes.
    struct FailsAfter {
        ok: usize,
    }

    impl Read for FailsAfter {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.ok == 0 {
                return Err(io::Error::from_raw_os_error(libc::EIO));
            }
            let n = buf.len().min(self.ok);
            buf[..n].fill(b'x');
            self.ok -= n;
            Ok(n)
        }
    }

    #[test]
    fn a_source_that_fails_midway_leaves_the_stream_framed() {
        let file = tempfile::tempfile().expect("temp file");
        let mut w = ArchiveWriter::new(file, 1, 0, 1 << 20, 3).expect("writer");
        let failing = EntryMeta::test_file(b"bad", 100_000, 0, 0);
        let r = w.append(&failing, Some(&mut FailsAfter { ok: 30_000 }));
        assert!(matches!(r, Err(AppendError::Source(_))), "{r:?}");
        let short = EntryMeta::test_file(b"short", 100, 0, 0);
        let r = w.append(&short, Some(&mut &[b'y'; 60][..]));
        assert!(matches!(r, Err(AppendError::Changed)), "{r:?}");
        let good = EntryMeta::test_file(b"good", 5, 0, 0);
        assert!(w.append(&good, Some(&mut &b"hello"[..])).is_ok());
        let sealed = w.finish(|out| out.write_all(b"{}")).expect("finish");
        let mut bytes = vec![0u8; sealed.size as usize];
        sealed.file.read_exact_at(&mut bytes, 0).expect("read");
        let tar = zstd::stream::decode_all(&bytes[..]).expect("decode");
        let mut archive = tar::Archive::new(&tar[..]);
        let got: Vec<(String, Vec<u8>)> = archive
            .entries()
            .expect("entries")
            .map(|e| {
                let mut e = e.expect("entry");
                let path = e.path().expect("path").display().to_string();
                let mut data = Vec::new();
                e.read_to_end(&mut data).expect("data");
                (path, data)
            })
            .collect();
        let mut padded = vec![b'x'; 30_000];
        padded.resize(100_000, 0);
        let mut short_padded = vec![b'y'; 60];
        short_padded.resize(100, 0);
        assert_eq!(
            got,
            [
                ("bad".to_string(), padded),
                ("short".to_string(), short_padded),
                ("good".to_string(), b"hello".to_vec())
            ]
        );
    }

    #[test]
    fn pax_times_carry_nanoseconds() {
        assert_eq!(pax_time(1_700_000_000, 5), "1700000000.000000005");
        assert_eq!(pax_time(0, 0), "0.000000000");
        assert_eq!(pax_time(-2, 500_000_000), "-1.500000000");
    }
}
