//! The archive writer: one `.tar.zst` per saferm run, entries under their absolute path
//! without the leading `/`, so `tar --zstd -xpf ARCHIVE -C /` restores in place.
//!
//! The tar crate encodes headers (GNU long names for long or odd paths, PAX records for
//! nanosecond mtimes and `SCHILY.xattr.*`); this module drives it: it reads each source once,
//! hashing as it streams, refuses to let a file that changes size misframe the stream, rolls a
//! new zstd frame at an entry boundary every [`FRAME_BYTES`] so one file can be restored by
//! seeking, and appends a copy of the manifest in a skippable frame.

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

/// Counts and hashes the compressed bytes on their way to the file.
struct Sink {
    file: File,
    written: u64,
    hasher: blake3::Hasher,
    growth: Option<Arc<Growth>>,
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        crate::fault::check("write")?;
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
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

/// The tar stream's destination: a sequence of zstd frames.
pub struct FrameWriter {
    encoder: Option<zstd::stream::write::Encoder<'static, Sink>>,
    sink: Option<Sink>,
    level: i32,
    threads: u32,
    /// Size of each multithreaded zstd job.
    job_bytes: u32,
    /// zstd window for small deletions: a window larger than the data only costs memory
    /// and time (allocating and clearing it is most of a one-file saferm's CPU time).
    window_log: Option<u32>,
    tar_pos: u64,
    frame_start: u64,
    frames: Vec<Frame>,
    /// Tar's many small writes (headers, padding, 8 KiB copies) gathered into large ones:
    /// each write into a multithreaded zstd encoder synchronises with its workers.
    pending: Vec<u8>,
}

/// Hand data to the zstd encoder in pieces of about this size.
const PENDING_BYTES: usize = 256 << 10;

impl FrameWriter {
    fn flush_pending(&mut self) -> io::Result<()> {
        if !self.pending.is_empty() {
            let enc = self
                .encoder
                .as_mut()
                .ok_or_else(|| io::Error::other("archive writer used after failure"))?;
            enc.write_all(&self.pending)?;
            self.pending.clear();
        }
        Ok(())
    }

    fn start_frame(&mut self) -> io::Result<()> {
        let sink = self
            .sink
            .take()
            .ok_or_else(|| io::Error::other("archive writer used after failure"))?;
        self.frames.push(Frame {
            compressed_offset: sink.written,
            tar_offset: self.tar_pos,
        });
        let mut enc = zstd::stream::write::Encoder::new(sink, self.level)?;
        enc.include_checksum(true)?;
        if let Some(log) = self.window_log {
            enc.window_log(log)?;
            // Tables sized for the window: a small deletion then allocates and clears a few
            // KiB instead of level 1's few hundred.
            enc.set_parameter(zstd::stream::raw::CParameter::HashLog(log.max(6)))?;
            enc.set_parameter(zstd::stream::raw::CParameter::ChainLog(log.max(6)))?;
        }
        if self.threads > 0 {
            enc.multithread(self.threads)?;
            enc.set_parameter(zstd::stream::raw::CParameter::JobSize(self.job_bytes))?;
        }
        self.encoder = Some(enc);
        self.frame_start = self.tar_pos;
        Ok(())
    }

    /// Finish the current frame; `more` if another follows.
    fn end_frame(&mut self, more: bool) -> io::Result<()> {
        self.flush_pending()?;
        if let Some(enc) = self.encoder.take() {
            let sink = enc.finish()?;
            // Start writing this frame out now, so the fsync at the end does not have to
            // write the whole archive while nothing else happens. (After the last frame the
            // fsync comes next anyway.)
            if more {
                crate::sys::start_writeback(&sink.file);
            }
            self.sink = Some(sink);
        }
        Ok(())
    }

    fn encoder(&mut self) -> io::Result<&mut zstd::stream::write::Encoder<'static, Sink>> {
        self.encoder
            .as_mut()
            .ok_or_else(|| io::Error::other("archive writer used after failure"))
    }
}

impl Write for FrameWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.pending.len() + buf.len() > PENDING_BYTES {
            self.flush_pending()?;
        }
        if buf.len() >= PENDING_BYTES {
            let n = self.encoder()?.write(buf)?;
            self.tar_pos += n as u64;
            return Ok(n);
        }
        self.pending.extend_from_slice(buf);
        self.tar_pos += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_pending()?;
        self.encoder()?.flush()
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
    pub blake3: String,
    pub frames: Vec<Frame>,
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

pub struct ArchiveWriter {
    builder: tar::Builder<FrameWriter>,
}

impl ArchiveWriter {
    /// Start writing into `file` (a fresh temp file) at zstd `level`, with `threads` workers
    /// (0: compress on the calling thread). `expected_bytes` is about how much tar data will
    /// come (it only sizes the compression window); `entries` how many entries.
    pub fn new(
        file: File,
        level: i32,
        threads: u32,
        expected_bytes: u64,
        entries: usize,
    ) -> io::Result<ArchiveWriter> {
        // Jobs of 2 MiB compress 1 GB of mixed data in 1.8 s here, zstd's default jobs in
        // 2.0 s and 512 KiB ones in 3.3 s; but with two workers 2 MiB jobs keep ~25 MB of
        // buffers in flight, which a deletion of many files (each ~1 KiB of plan and
        // manifest) cannot afford under 64 MiB. Many entries: small jobs.
        let job_bytes = if entries > 20_000 { 512 << 10 } else { 2 << 20 };
        // zstd's default window at level 1 is 2^19; below that, fit it to the data.
        let window_log = (expected_bytes < 1 << 19).then(|| {
            let bits = 64 - expected_bytes.max(1024).saturating_sub(1).leading_zeros();
            bits.clamp(10, 19)
        });
        let mut fw = FrameWriter {
            encoder: None,
            sink: Some(Sink {
                file,
                written: 0,
                hasher: blake3::Hasher::new(),
                growth: None,
            }),
            level,
            threads,
            job_bytes,
            window_log,
            tar_pos: 0,
            frame_start: 0,
            frames: Vec::new(),
            pending: Vec::with_capacity(PENDING_BYTES),
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
        let sink = match (&mut fw.sink, &mut fw.encoder) {
            (Some(sink), _) => sink,
            (None, Some(enc)) => enc.get_mut(),
            (None, None) => return Err(io::Error::other("archive writer used after failure")),
        };
        sink.growth = Some(growth);
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
    /// `meta.size` bytes, or the entry fails with `Changed` and the stream is unusable (the
    /// caller starts again without that object).
    pub fn append(
        &mut self,
        meta: &EntryMeta<'_>,
        data: Option<&mut dyn Read>,
    ) -> Result<(), AppendError> {
        let mut pax: Vec<(String, Vec<u8>)> = Vec::with_capacity(1 + meta.xattrs.len());
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

        let mut header = tar::Header::new_gnu();
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
            let target = std::path::Path::new(
                <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(target),
            );
            return self
                .builder
                .append_link(&mut header, path, target)
                .map_err(AppendError::Archive);
        }
        header.set_size(meta.size);
        match data {
            None => self
                .builder
                .append_data(&mut header, path, io::empty())
                .map_err(AppendError::Archive),
            Some(reader) => {
                let mut guarded = Exact {
                    inner: reader,
                    remaining: meta.size,
                    failure: None,
                };
                let result = self.builder.append_data(&mut header, path, &mut guarded);
                match (guarded.failure, result) {
                    (Some(f), _) => Err(f),
                    (None, Err(e)) => Err(AppendError::Archive(e)),
                    (None, Ok(())) => Ok(()),
                }
            }
        }
    }

    /// Finish the tar stream and the last frame, append the manifest copy (`copy_len` bytes,
    /// written by `write_copy`, so it is streamed rather than held in memory), and fsync.
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
            write_copy(&mut enc)?;
            enc.finish()?;
        } else {
            // A few entries: plain JSON (creating an encoder costs more than it saves).
            write_copy(&mut packed)?;
        }
        let copy_len = packed.len() as u64;
        let mut fw = self.fw;
        let mut sink = fw
            .sink
            .take()
            .ok_or_else(|| io::Error::other("archive writer used after failure"))?;
        let len = MANIFEST_FRAME_TAG.len() as u64 + copy_len;
        let len32 =
            u32::try_from(len).map_err(|_| io::Error::other("manifest too large for its frame"))?;
        sink.write_all(&MANIFEST_FRAME_MAGIC.to_le_bytes())?;
        sink.write_all(&len32.to_le_bytes())?;
        sink.write_all(MANIFEST_FRAME_TAG)?;
        sink.write_all(&packed)?;
        sink.flush()?;
        if let Some(g) = sink.growth.take() {
            g.set(sink.written, Written::Sealed);
        }
        // The caller fsyncs the file (alongside verification, see remove.rs).
        Ok(Sealed {
            size: sink.written,
            blake3: sink.hasher.finalize().to_hex().to_string(),
            file: sink.file,
            frames: fw.frames,
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
/// has fewer (it shrank), more (it grew) or cannot be read.
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
        match self.inner.read(&mut buf[..want]) {
            Ok(0) => self.fail(AppendError::Changed),
            Ok(n) => {
                self.remaining -= n as u64;
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(e) => self.fail(AppendError::Source(e)),
        }
    }
}

impl Exact<'_> {
    fn fail(&mut self, f: AppendError) -> io::Result<usize> {
        let text = match &f {
            AppendError::Source(e) => e.to_string(),
            AppendError::Changed => "changed while it was being archived".to_string(),
            AppendError::Archive(e) => e.to_string(),
        };
        self.failure = Some(f);
        Err(io::Error::other(text))
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
    use super::pax_time;

    #[test]
    fn pax_times_carry_nanoseconds() {
        assert_eq!(pax_time(1_700_000_000, 5), "1700000000.000000005");
        assert_eq!(pax_time(0, 0), "0.000000000");
        assert_eq!(pax_time(-2, 500_000_000), "-1.500000000");
    }
}
