//! Filling the archive: every object of the plan, parents first, read once through
//! directory descriptors, appended by type, with its manifest entry recorded.

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;

use anyhow::{anyhow, Context, Result};

use super::entries::{blake3s_from_verifier, record, typed_path, Entries, Names, Streaming};
use super::faults::FaultyRead;
use super::pipeline::Archiving;
use super::space::content_bytes;
use crate::archive::{AppendError, ArchiveWriter, EntryMeta, Hashing};
use crate::dirstack::DirStack;
use crate::manifest::{self, Entry, Kind, Manifest, PathBytes};
use crate::output::stderr_write;
use crate::quote::quote;
use crate::restat::unchanged;
use crate::rules;
use crate::sys::{self, Stat};
use crate::walk::{self, Plan};

/// Files up to this size are read whole, in one call, into a reused buffer.
pub(super) const WHOLE_READ_BYTES: u64 = 4 << 20;

/// Compress on worker threads above this much data.
pub(super) const MULTITHREAD_BYTES: u64 = 8 << 20;

pub(super) enum Filled<'p> {
    /// The archive and its manifest.
    Sealed(Box<(crate::archive::Sealed, Manifest<Entries<'p>>)>),
    /// These nodes could not be archived, for these reasons.
    SourceFailed(Vec<(usize, String)>),
}

/// A source that could not be archived: its node, and why. It keeps that object (and what
/// is above it); the archive is written again without it.
pub(super) type Failure = (usize, String);

/// How appending one node ended when the archive itself is fine: `Err` is a source's
/// failure, which fails only that node; the pass goes on.
type Step = std::result::Result<(), Failure>;

/// Stream every object to archive into `file`, parents first, through directory fds.
///
/// A source that fails (unreadable, changed) fails only its entry: its subtree is skipped,
/// the pass goes on, and every failure of the pass is reported at once; the caller then
/// writes the archive again without them.
pub(super) fn fill_archive<'p>(
    ctx: &Archiving<'_>,
    plan: &'p Plan,
    order: &[usize],
    file: File,
    id: &str,
    now: chrono::DateTime<chrono::Utc>,
    stream: Option<&Streaming>,
) -> Result<Filled<'p>> {
    let needed = needed_nodes(plan, order);
    // The operands this archive holds something of: one whose objects are all kept is not
    // named in the manifest, so that unrm never offers it.
    let roots: Vec<usize> = plan.roots.iter().copied().filter(|&r| needed[r]).collect();
    let mut filler = Filler::new(ctx, plan, order, file, &roots, stream)?;
    let mut failures: Vec<Failure> = Vec::new();
    let mut dead = vec![false; plan.nodes.len()];
    let mut first = true;
    for (idx, &need) in needed.iter().enumerate() {
        if !need {
            continue;
        }
        if plan.nodes[idx].parent().is_some_and(|p| dead[p]) {
            dead[idx] = true;
            continue;
        }
        if crate::signal::caught().is_some() {
            return Err(anyhow!("interrupted"));
        }
        if first && crate::fault::active("signal") {
            crate::signal::raise_interrupt();
        }
        first = false;
        let step = match filler.climb_to(idx) {
            Ok(()) => filler.visit(idx)?,
            Err((top, e)) => {
                // A directory above is not the one that was there: this operand's tree
                // moved while it was archived, and all of it stays. This node is below it
                // (else, a root, it comes in the next pass).
                dead[idx] = plan.nodes[idx].parent().is_some();
                Err(source_failed(top, &e))
            }
        };
        if let Err(failure) = step {
            dead[failure.0] = true;
            failures.push(failure);
        }
    }
    if !failures.is_empty() {
        return Ok(Filled::SourceFailed(failures));
    }
    filler.finish(id, now, &roots)
}

/// Which nodes must be visited: the ones to archive and the directories above them.
fn needed_nodes(plan: &Plan, order: &[usize]) -> Vec<bool> {
    let mut needed = vec![false; plan.nodes.len()];
    for &i in order {
        let mut cur = Some(i);
        while let Some(c) = cur {
            if needed[c] {
                break;
            }
            needed[c] = true;
            cur = plan.nodes[c].parent();
        }
    }
    needed
}

/// The archive being filled, and what is known on the way through the plan.
struct Filler<'c, 'p, 's> {
    ctx: &'c Archiving<'c>,
    plan: &'p Plan,
    stream: Option<&'s Streaming>,
    writer: ArchiveWriter,
    entries: Entries<'p>,
    /// Whether each node is archived (the others are directories passed through).
    archived: Vec<bool>,
    /// A small file's content, kept for the verifier, which works out its blake3.
    content: Vec<u8>,
    /// The first path archived of each inode with several links.
    hard_links: HashMap<(u64, u64), Vec<u8>>,
    /// Many files: watch for a cold tree, and read ahead when it is one.
    prefetch: Option<crate::archive::prefetch::Prefetch>,
    not_archived: Vec<Entry>,
    totals: manifest::Totals,
    /// The directories above the node being archived: (node, length of its path in
    /// `path`), and their descriptors, a bounded number of them open.
    stack: Vec<(usize, usize)>,
    fds: DirStack,
    path: Vec<u8>,
    progress: crate::progress::Progress,
}

impl<'c, 'p, 's> Filler<'c, 'p, 's> {
    fn new(
        ctx: &'c Archiving<'c>,
        plan: &'p Plan,
        order: &[usize],
        file: File,
        roots: &[usize],
        stream: Option<&'s Streaming>,
    ) -> Result<Self> {
        let total = content_bytes(plan, order);
        let threads = if total >= MULTITHREAD_BYTES {
            std::thread::available_parallelism()
                .map(|n| n.get() as u32)
                .unwrap_or(1)
                .min(4)
        } else {
            0
        };
        // Tar data: contents padded to 512 bytes, plus a header and a PAX record per entry.
        let expected = order.iter().fold(0u64, |acc, &i| {
            let n = &plan.nodes[i];
            let content = if n.st.is_file() {
                n.st.size.div_ceil(512) * 512
            } else {
                0
            };
            acc.saturating_add(content + 1536)
        });
        let level = ctx.config.zstd_level.value;
        let mut writer = ArchiveWriter::new(file, level, threads, expected, order.len())
            .context("cannot start the archive")?;
        if let Some(s) = stream {
            writer
                .report_growth(s.growth.clone())
                .context("cannot start the archive")?;
        }
        let mut archived = vec![false; plan.nodes.len()];
        for &i in order {
            archived[i] = true;
        }
        let operand_pos: HashMap<usize, usize> = roots
            .iter()
            .enumerate()
            .map(|(pos, &r)| (plan.nodes[r].operand, pos))
            .collect();
        Ok(Filler {
            ctx,
            plan,
            stream,
            writer,
            entries: Entries {
                plan,
                names: Names::default(),
                operand_pos,
                list: Vec::with_capacity(order.len()),
            },
            archived,
            content: Vec::new(),
            hard_links: HashMap::new(),
            prefetch: (order.len() >= 2 * crate::archive::prefetch::PROBE_EVERY)
                .then(|| crate::archive::prefetch::Prefetch::new(plan, order, WHOLE_READ_BYTES)),
            not_archived: Vec::new(),
            totals: manifest::Totals::default(),
            stack: Vec::new(),
            fds: DirStack::new(sys::AT_FDCWD),
            path: Vec::new(),
            progress: crate::progress::Progress::new("saferm: archiving", total),
        })
    }

    /// Close the directories below `idx`'s parent. `Err` names the operand's top directory
    /// when one of them is not the directory that was there.
    fn climb_to(&mut self, idx: usize) -> std::result::Result<(), (usize, std::io::Error)> {
        let parent = self.plan.nodes[idx].parent();
        while self
            .stack
            .last()
            .is_some_and(|(top, _)| Some(*top) != parent)
        {
            self.stack.pop();
            if let Err(e) = self.fds.pop() {
                let top = self.stack.first().map_or(idx, |&(top, _)| top);
                self.stack.clear();
                self.fds = DirStack::new(sys::AT_FDCWD);
                return Err((top, e));
            }
        }
        Ok(())
    }

    /// Append node `idx` (its parent's directory is open), or pass through it.
    fn visit(&mut self, idx: usize) -> Result<Step> {
        let plan = self.plan;
        match (plan.nodes[idx].parent(), self.stack.last()) {
            (None, _) => {
                self.path.clear();
                let root = plan
                    .archived_as
                    .get(&idx)
                    .or_else(|| plan.root_abs.get(&idx))
                    .map_or(&[][..], |p| p);
                self.path.extend_from_slice(root);
            }
            (Some(_), Some(&(_, len))) => {
                self.path.truncate(len);
                rules::push_child(&mut self.path, plan.nodes[idx].name.as_bytes());
            }
            (Some(_), None) => return Err(anyhow!("internal error: lost the parent directory")),
        }
        let dirfd: RawFd = match self.fds.top() {
            Ok(fd) => fd,
            Err(e) => return Ok(Err(source_failed(idx, &e))),
        };
        self.writer
            .entry_boundary()
            .context("cannot write the archive")?;
        let abs = std::mem::take(&mut self.path);
        let step = self.append_node(idx, dirfd, &abs);
        self.path = abs;
        step
    }

    fn append_node(&mut self, idx: usize, dirfd: RawFd, abs: &[u8]) -> Result<Step> {
        let st = self.plan.nodes[idx].st;
        let offset = self.writer.position();
        let mut entry = self.entries.base(idx, abs, offset);
        if st.is_dir() {
            return self.directory(idx, dirfd, abs, entry);
        }
        if !self.archived[idx] {
            return Ok(Ok(()));
        }
        let ft = st.file_type();
        if ft == libc::S_IFSOCK {
            self.socket(idx, entry);
            return Ok(Ok(()));
        }
        if st.nlink > 1 {
            if let Some(first) = self.hard_links.get(&(st.dev, st.ino)) {
                let target = first.clone();
                entry.kind = Kind::Hardlink;
                entry.size = 0;
                let meta = meta_for(
                    &entry,
                    abs,
                    tar::EntryType::Link,
                    Some(&target[1..]),
                    None,
                    &[],
                );
                append(&mut self.writer, &meta, None, idx)?;
                entry.link = Some(PathBytes::new(&target));
                self.record(idx, entry, false, None);
                return Ok(Ok(()));
            }
            self.hard_links.insert((st.dev, st.ino), abs.to_vec());
        }
        match ft {
            libc::S_IFREG => self.regular(idx, dirfd, abs, entry),
            libc::S_IFLNK => self.symlink(idx, dirfd, abs, entry),
            libc::S_IFIFO | libc::S_IFCHR | libc::S_IFBLK => self.special(idx, abs, entry),
            _ => Ok(Err(source_failed(
                idx,
                &std::io::Error::other("unknown file type"),
            ))),
        }
    }

    /// Add `entry` to the manifest (and to what the verifier expects), with the content
    /// read into [`Filler::content`] when it was `handed_over` to the verifier.
    fn record(
        &mut self,
        idx: usize,
        entry: Entry,
        handed_over: bool,
        sparse: Option<crate::archive::sparse::SparseRead>,
    ) {
        let content = handed_over.then_some(&mut self.content);
        record(&mut self.entries, idx, self.stream, entry, content, sparse);
    }

    /// A directory: opened (and checked to be the one the walk saw) when its children come
    /// next, archived with its extended attributes when it is to be removed.
    fn directory(
        &mut self,
        idx: usize,
        dirfd: RawFd,
        abs: &[u8],
        mut entry: Entry,
    ) -> Result<Step> {
        let node = &self.plan.nodes[idx];
        let st = node.st;
        let is_archived = self.archived[idx];
        let mut xattrs = Vec::new();
        if node.unreadable.is_none() {
            let fd = match sys::open_dir_nofollow(dirfd, &node.name)
                .and_then(|fd| same_object(fd, &st))
            {
                Ok(fd) => fd,
                Err(e) => return Ok(Err(source_failed(idx, &e))),
            };
            if is_archived {
                xattrs = match sys::xattrs(fd.as_raw_fd()) {
                    Ok(x) => x,
                    Err(e) => return Ok(Err(source_failed(idx, &e))),
                };
            }
            if node.has_children() {
                self.stack.push((idx, abs.len()));
                self.fds.push(fd, (st.dev, st.ino));
            }
        } else if is_archived && st.uid == self.ctx.euid {
            match owners_dir_xattrs(dirfd, node, idx) {
                Ok(x) => xattrs = x,
                Err(failed) => return Ok(Err(failed)),
            }
        }
        if is_archived {
            entry.xattrs = xattr_names(&xattrs);
            let meta = meta_for(&entry, abs, tar::EntryType::Directory, None, None, &xattrs);
            append(&mut self.writer, &meta, None, idx)?;
            self.totals.dirs += 1;
            self.record(idx, entry, false, None);
        }
        Ok(Ok(()))
    }

    /// A socket holds no data: it is listed as not archived, with a warning (once, however
    /// many times the archive is written).
    fn socket(&mut self, idx: usize, mut entry: Entry) {
        entry.kind = Kind::Socket;
        let msg = format!(
            "{}: warning: {} is a socket: removed without an archive copy (it holds no data)\n",
            self.ctx.prog,
            quote(&self.plan.display(idx))
        );
        if self.ctx.warned.lock().is_ok_and(|mut w| w.insert(idx)) {
            self.progress.clear();
            stderr_write(msg.as_bytes());
        }
        self.not_archived.push(entry);
    }

    /// A regular file: read once, hashed (here, or by the verifier it is handed to), stored
    /// sparse when it has holes, and checked afterwards to be the file the walk saw.
    fn regular(&mut self, idx: usize, dirfd: RawFd, abs: &[u8], mut entry: Entry) -> Result<Step> {
        let ctx = self.ctx;
        let node = &self.plan.nodes[idx];
        let st = node.st;
        // Not checked against the walk's stat until after the read (below): an object
        // swapped in meanwhile is caught there, without an fstat per file. The user's own
        // file they may not read: its xattrs come with it.
        let (fd, st, owners_xattrs) = match sys::open_file_nofollow(dirfd, &node.name) {
            Ok(fd) => (fd, st, None),
            Err(e) if e.raw_os_error() == Some(libc::EACCES) && st.uid == ctx.euid => {
                match open_as_owner(ctx, dirfd, node, idx, &e) {
                    Ok((fd, st, xattrs)) => (fd, st, Some(xattrs)),
                    Err(failed) => return Ok(Err(failed)),
                }
            }
            Err(e) => return Ok(Err(source_failed(idx, &e))),
        };
        // A writable shared mapping changes the content without a new mtime or ctime: a
        // file open for writing elsewhere is hashed again before its unlink.
        if sys::writers(fd.as_raw_fd()) != sys::Writers::None {
            if let Ok(mut nodes) = ctx.written_elsewhere.lock() {
                nodes.insert(idx);
            }
        }
        // Something other than the file the walk saw fails to read as one: say so.
        let failed = |e: &std::io::Error, fd: RawFd| match sys::fstat(fd) {
            Ok(now) if !unchanged(&now, &st) => changed(idx),
            _ => source_failed(idx, e),
        };
        let xattrs = match owners_xattrs.map_or_else(|| sys::xattrs(fd.as_raw_fd()), Ok) {
            Ok(x) => x,
            Err(e) => return Ok(Err(failed(&e, fd.as_raw_fd()))),
        };
        entry.xattrs = xattr_names(&xattrs);
        let meta = meta_for(&entry, abs, tar::EntryType::Regular, None, None, &xattrs);
        let file = File::from(fd);
        if let Some(p) = self.prefetch.as_mut() {
            p.reading(self.plan, idx, &file);
        }
        let mut hasher = blake3::Hasher::new();
        let mut handed_over = false;
        let mut sparse = None;
        // Fewer blocks than the size needs: maybe holes, stored as such.
        let regions = if st.blocks.saturating_mul(512) < st.size {
            match crate::archive::sparse::data_map(&file, st.size) {
                Ok(r) => r,
                Err(e) => return Ok(Err(failed(&e, file.as_raw_fd()))),
            }
        } else {
            None
        };
        let appended = if let Some(regions) = regions {
            crate::archive::sparse::append(&mut self.writer, &meta, &file, regions).map(
                |(hash, read)| {
                    entry.blake3_blocks = Some(hash);
                    sparse = Some(read);
                },
            )
        } else if st.size <= WHOLE_READ_BYTES {
            // Small files in one read. When verification runs alongside and there is room,
            // it gets the content to compare and hashes it; otherwise it is hashed here, in
            // one call.
            handed_over = self
                .stream
                .is_some_and(|s| s.held.reserve(st.size as usize));
            self.content.clear();
            self.content.reserve_exact(st.size as usize);
            let mut limited = std::io::Read::take(FaultyRead::new(&file, &node.name), st.size);
            if let Err(e) = std::io::Read::read_to_end(&mut limited, &mut self.content) {
                return Ok(Err(failed(&e, file.as_raw_fd())));
            }
            if !handed_over {
                hasher.update(&self.content);
            }
            self.writer.append(&meta, Some(&mut &self.content[..]))
        } else {
            let buffered =
                std::io::BufReader::with_capacity(1 << 20, FaultyRead::new(&file, &node.name));
            let watched = Watched {
                inner: buffered,
                progress: &mut self.progress,
                pause: crate::fault::names("archive-pause", node.name.as_bytes()),
            };
            let mut reader = Hashing {
                inner: watched,
                hasher,
            };
            let r = self.writer.append(&meta, Some(&mut reader));
            hasher = reader.hasher;
            r
        };
        match appended {
            Ok(()) => {}
            Err(AppendError::Source(e)) => return Ok(Err(failed(&e, file.as_raw_fd()))),
            Err(AppendError::Changed) => return Ok(Err(changed(idx))),
            Err(AppendError::Archive(e)) => {
                return Err(anyhow::Error::new(e).context("cannot write the archive"))
            }
        }
        // Modified in place while it was read (same size): what we hold is not it.
        match sys::fstat(file.as_raw_fd()) {
            Ok(now) if unchanged(&now, &st) => {}
            Ok(_) => return Ok(Err(changed(idx))),
            Err(e) => return Ok(Err(source_failed(idx, &e))),
        }
        if !handed_over && sparse.is_none() {
            entry.blake3 = Some(hasher.finalize().to_hex().to_string());
        }
        if st.size <= WHOLE_READ_BYTES || sparse.is_some() {
            // (A large file moved the bar as it was read.)
            self.progress.advance(st.size);
        }
        self.totals.files += 1;
        self.totals.bytes += st.size;
        self.record(idx, entry, handed_over, sparse);
        Ok(Ok(()))
    }

    /// A symbolic link: its target, byte for byte.
    fn symlink(&mut self, idx: usize, dirfd: RawFd, abs: &[u8], mut entry: Entry) -> Result<Step> {
        let target = match sys::readlinkat(dirfd, &self.plan.nodes[idx].name) {
            Ok(t) => t,
            Err(e) => return Ok(Err(source_failed(idx, &e))),
        };
        entry.size = 0;
        let meta = meta_for(
            &entry,
            abs,
            tar::EntryType::Symlink,
            Some(&target),
            None,
            &[],
        );
        append(&mut self.writer, &meta, None, idx)?;
        entry.link = Some(PathBytes::new(&target));
        self.record(idx, entry, false, None);
        Ok(Ok(()))
    }

    /// A FIFO or a device: its type and device number, no content.
    fn special(&mut self, idx: usize, abs: &[u8], mut entry: Entry) -> Result<Step> {
        let st = self.plan.nodes[idx].st;
        let (kind, etype) = match st.file_type() {
            libc::S_IFIFO => (Kind::Fifo, tar::EntryType::Fifo),
            libc::S_IFCHR => (Kind::Char, tar::EntryType::Char),
            _ => (Kind::Block, tar::EntryType::Block),
        };
        entry.kind = kind;
        entry.size = 0;
        let device = if kind == Kind::Fifo {
            None
        } else {
            Some(sys::dev_major_minor(st.rdev))
        };
        if let Some((ma, mi)) = device {
            entry.rdev_major = Some(ma);
            entry.rdev_minor = Some(mi);
        }
        let meta = meta_for(&entry, abs, etype, None, device, &[]);
        append(&mut self.writer, &meta, None, idx)?;
        self.record(idx, entry, false, None);
        Ok(Ok(()))
    }

    /// Every node appended: end the data, and seal the archive with its manifest's copy.
    fn finish(
        self,
        id: &str,
        now: chrono::DateTime<chrono::Utc>,
        roots: &[usize],
    ) -> Result<Filled<'p>> {
        let Filler {
            ctx,
            plan,
            stream,
            writer,
            mut entries,
            not_archived,
            mut totals,
            fds,
            progress,
            ..
        } = self;
        drop(fds);
        totals.entries = entries.list.len() as u64;
        let mut canonical = HashMap::new();
        let uid = sys::geteuid();
        let user = entries.names.user(uid).map(|u| u.to_string());
        let mut manifest = Manifest {
            format: manifest::MANIFEST_VERSION,
            id: id.to_string(),
            created: now.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
            host: nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default(),
            user: user.unwrap_or_default(),
            uid,
            cwd: PathBytes::new(ctx.cwd),
            argv: match &ctx.origin {
                Some(o) => o.argv.iter().map(|a| PathBytes::new(a)).collect(),
                None => std::env::args_os()
                    .map(|a| PathBytes::new(a.as_bytes()))
                    .collect(),
            },
            run: ctx.run.clone(),
            operands: roots
                .iter()
                .map(|&r| {
                    let operand = plan.nodes[r].operand;
                    let given = ctx.opts_operands[operand].as_bytes();
                    let absolute = plan.recorded(r);
                    let typed = match &ctx.origin {
                        Some(o) => o.typed.get(operand).cloned().flatten(),
                        None => typed_path(&ctx.logical_cwd, given, &absolute, &mut canonical),
                    };
                    manifest::Operand {
                        given: PathBytes::new(given),
                        typed: typed.map(|t| PathBytes::new(&t)),
                        absolute: PathBytes::new(&absolute),
                    }
                })
                .collect(),
            totals,
            archive: None,
            zstd_level: ctx.config.zstd_level.value,
            frames: Vec::new(),
            not_archived,
            entries,
        };
        progress.finish();
        let end = writer.end_data().context("cannot finish the archive")?;
        blake3s_from_verifier(&mut manifest.entries.list, stream);
        // The copy inside the archive has the frame table too, so a manifest rebuilt from it
        // can still seek.
        manifest.frames = end.frames().to_vec();
        let compress_copy = manifest.entries.list.len() >= 64;
        let sealed = end
            .seal(compress_copy, |w| manifest.write_json(w))
            .context("cannot finish the archive")?;
        Ok(Filled::Sealed(Box::new((sealed, manifest))))
    }
}

/// A large file's reader, as its bytes go into the archive: moves the progress bar chunk by
/// chunk, and ends the copy once Ctrl-C has arrived (a 300 MiB file is not read to its end
/// first).
struct Watched<'a, R> {
    inner: R,
    progress: &'a mut crate::progress::Progress,
    /// Failure injection (debug builds): pause after the first chunk (`archive-pause`).
    pause: bool,
}

impl<R: std::io::Read> std::io::Read for Watched<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if crate::signal::caught().is_some() {
            return Err(crate::signal::stop_error());
        }
        let n = self.inner.read(buf)?;
        self.progress.advance(n as u64);
        if std::mem::take(&mut self.pause) {
            crate::fault::wait_for_resume();
        }
        Ok(n)
    }
}

pub(super) fn append(
    writer: &mut ArchiveWriter,
    meta: &EntryMeta<'_>,
    data: Option<&mut dyn std::io::Read>,
    _idx: usize,
) -> Result<()> {
    writer.append(meta, data).map_err(|e| match e {
        AppendError::Archive(e) | AppendError::Source(e) => {
            anyhow::Error::new(e).context("cannot write the archive")
        }
        AppendError::Changed => anyhow!("cannot write the archive"),
    })
}

/// Open a file the user owns but may not read, as rm's user could after `chmod u+r`
/// ([`sys::open_as_owner`]), with its extended attributes (read while it is readable), and
/// note the ctime that changes as saferm's own: the unlink phase accepts exactly that
/// change ([`accept_own_changes`]). `denied` is the error the plain open got, reported if
/// this fails too.
pub(super) fn open_as_owner(
    ctx: &Archiving<'_>,
    dirfd: RawFd,
    node: &walk::Node,
    idx: usize,
    denied: &std::io::Error,
) -> Result<(OwnedFd, Stat, Xattrs), (usize, String)> {
    let st = node.st;
    let opened = sys::open_as_owner(
        dirfd,
        &node.name,
        false,
        |now| unchanged(now, &st) && now.mode == st.mode && now.uid == st.uid,
        sys::xattrs,
    );
    match opened {
        Ok((fd, after, xattrs)) => {
            if let Ok(mut changes) = ctx.own_changes.lock() {
                changes.push(OwnChange {
                    dev: st.dev,
                    ino: st.ino,
                    before: (st.ctime, st.ctime_nsec),
                    after: (after.ctime, after.ctime_nsec),
                });
            }
            Ok((fd, after, xattrs))
        }
        Err(sys::OwnerOpen::NotExpected) => Err(changed(idx)),
        Err(sys::OwnerOpen::Failed) => Err(source_failed(idx, denied)),
        Err(sys::OwnerOpen::Read(e)) => Err(source_failed(idx, &e)),
        Err(sys::OwnerOpen::ModeLeft(e)) => Err(mode_left(idx, &e)),
    }
}

/// The extended attributes of a directory of the user's that the walk could not read (an
/// empty one, or rmdir fails as rm's does): read as its owner could after `chmod u+r`
/// ([`sys::open_as_owner`]). Directories are not compared by ctime before unlinking, so
/// the change is not recorded. Without `/proc`, or if it cannot be opened, it is archived
/// without them, as before.
pub(super) fn owners_dir_xattrs(
    dirfd: RawFd,
    node: &walk::Node,
    idx: usize,
) -> Result<Xattrs, (usize, String)> {
    let st = node.st;
    let opened = sys::open_as_owner(
        dirfd,
        &node.name,
        true,
        |now| (now.dev, now.ino, now.mode, now.uid) == (st.dev, st.ino, st.mode, st.uid),
        sys::xattrs,
    );
    match opened {
        Ok((_, _, xattrs)) => Ok(xattrs),
        Err(sys::OwnerOpen::Failed) => Ok(Vec::new()),
        Err(sys::OwnerOpen::NotExpected) => Err(changed(idx)),
        Err(sys::OwnerOpen::Read(e)) => Err(source_failed(idx, &e)),
        Err(sys::OwnerOpen::ModeLeft(e)) => Err(mode_left(idx, &e)),
    }
}

/// Extended attributes: names and values.
pub(super) type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

/// A ctime saferm changed itself, giving its user read permission on a file of theirs for
/// as long as it took to open it: the inode `(dev, ino)` had ctime `before` when the walk
/// saw it, `after` once its mode was back.
pub(super) struct OwnChange {
    pub(super) dev: u64,
    pub(super) ino: u64,
    pub(super) before: (i64, i64),
    pub(super) after: (i64, i64),
}

/// Let the identity check before each unlink (DESIGN §1.2) accept saferm's own changes
/// and no other: every name of such an inode that the walk saw with the ctime from before
/// the change is expected with the ctime from after it. Size, mtime, mode and the rest are
/// still compared as they were.
pub(super) fn accept_own_changes(plan: &mut Plan, changes: Vec<OwnChange>) {
    if changes.is_empty() {
        return;
    }
    let by_inode: HashMap<(u64, u64), &OwnChange> =
        changes.iter().map(|c| ((c.dev, c.ino), c)).collect();
    for node in &mut plan.nodes {
        let st = &mut node.st;
        if let Some(c) = by_inode.get(&(st.dev, st.ino)) {
            if (st.ctime, st.ctime_nsec) == c.before {
                (st.ctime, st.ctime_nsec) = c.after;
            }
        }
    }
}

/// Node `idx` was opened as its owner, and its mode could not be put back.
fn mode_left(idx: usize, e: &std::io::Error) -> Failure {
    (
        idx,
        format!(
            "could not archive: could not put its mode back: {}",
            sys::strerror(e)
        ),
    )
}

/// Node `idx` could not be archived, and why.
pub(super) fn source_failed(idx: usize, e: &std::io::Error) -> (usize, String) {
    let reason = if e.raw_os_error() == Some(libc::ESTALE) {
        "changed while it was being archived".to_string()
    } else {
        format!("could not archive: {}", sys::strerror(e))
    };
    (idx, reason)
}

pub(super) fn changed(idx: usize) -> (usize, String) {
    (idx, "changed while it was being archived".to_string())
}

/// Check that an fd opened by name is still the object the walk saw.
pub(super) fn same_object(fd: OwnedFd, st: &Stat) -> std::io::Result<OwnedFd> {
    let now = sys::fstat(fd.as_raw_fd())?;
    if (now.dev, now.ino, now.file_type()) != (st.dev, st.ino, st.file_type()) {
        return Err(std::io::Error::from_raw_os_error(libc::ESTALE));
    }
    if !now.is_dir() && !unchanged(&now, st) {
        return Err(std::io::Error::from_raw_os_error(libc::ESTALE));
    }
    Ok(fd)
}

pub(super) fn xattr_names(xattrs: &[(Vec<u8>, Vec<u8>)]) -> Vec<String> {
    xattrs
        .iter()
        .map(|(n, _)| String::from_utf8_lossy(n).into_owned())
        .collect()
}

pub(super) fn meta_for<'a>(
    entry: &'a Entry,
    abs: &'a [u8],
    kind: tar::EntryType,
    link: Option<&'a [u8]>,
    device: Option<(u32, u32)>,
    xattrs: &'a [(Vec<u8>, Vec<u8>)],
) -> EntryMeta<'a> {
    EntryMeta {
        tar_path: tar_path(abs),
        kind,
        mode: entry.mode,
        uid: entry.uid,
        gid: entry.gid,
        user: entry.user.as_deref(),
        group: entry.group.as_deref(),
        size: entry.size,
        mtime: entry.mtime,
        mtime_nsec: entry.mtime_nsec,
        link,
        device,
        xattrs,
    }
}

/// The archive path: the absolute path without its leading slash.
pub(super) fn tar_path(abs: &[u8]) -> &[u8] {
    let mut p = abs;
    while let Some(rest) = p.strip_prefix(b"/") {
        p = rest;
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tar_paths_drop_the_leading_slash() {
        assert_eq!(tar_path(b"/home/u/x"), b"home/u/x");
        assert_eq!(tar_path(b"//x"), b"x");
    }
}
