//! The archive pipeline ([`run`]): for the plan's objects, write one archive into the store,
//! seal it, verify it against what was read, make it durable and publish its manifest; a
//! source that fails keeps its object and the archive is written again without it.
//!
//! ```text
//! Plan ─fill (fill.rs)─▶ archives/<month>/<id>.tar.zst ─seal─▶ ─verify (verify.rs) ‖ fsync─▶
//!      ─manifest to tmp/─▶ ─publish into manifests/<month>/─▶ Done(id): the caller unlinks
//! ```
//! Until the manifest is published the archive is a [`store::PendingArchive`], removed if the
//! attempt fails; nothing is unlinked before [`run`] returns `Yes`.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fs::File;
use std::sync::{mpsc, Arc};

use anyhow::{anyhow, bail, Context, Result};

use super::entries::{logical_cwd, Entries, Streaming};
use super::faults::{damage_last_byte, simulate_replacement, Damaged};
use super::fill::Failure;
use super::fill::{accept_own_changes, fill_archive, Filled, OwnChange};
use super::space::{check_space, content_bytes, large_deletion_allowed};
use crate::archive::{Growth, Sealed};
use crate::manifest::{self, Kind, Manifest};
use crate::output::stderr_write;
use crate::quote::quote;
use crate::rules::Options;
use crate::store::{self, Backend, PendingArchive};
use crate::sys;
use crate::walk::{self, Plan};

/// Archives up to this size are verified in memory, on the calling thread.
pub(super) const SMALL_ARCHIVE_BYTES: u64 = 1 << 20;

/// Verify while writing above this much file content.
pub(super) const STREAM_VERIFY_BYTES: u64 = 8 << 20;

/// At most this much source content waits for the streamed verifier to compare it byte
/// for byte (beyond that, files are compared by their blake3).
pub(super) const HELD_BYTES: usize = 8 << 20;

/// One run's archiving: what it was asked, and what it learns on the way (kept across the
/// attempts that [`run`] makes).
pub struct Archiving<'a> {
    pub(super) prog: &'a str,
    pub(super) cwd: &'a [u8],
    /// The current directory as the shell names it ([`logical_cwd`]).
    pub(super) logical_cwd: Vec<u8>,
    pub(super) opts_operands: &'a [OsString],
    pub(super) config: &'a crate::config::Config,
    /// Whether a person can be asked (stdin is a terminal, or ---presume-input-tty).
    pub(super) interactive: bool,
    pub(super) euid: u32,
    /// ctimes saferm changed itself while archiving ([`OwnChange`]).
    pub(super) own_changes: std::sync::Mutex<Vec<OwnChange>>,
    /// Nodes warned about (sockets), so that writing the archive again does not repeat it.
    pub(super) warned: std::sync::Mutex<HashSet<usize>>,
    /// Regular files that were open for writing elsewhere when they were read, or that the
    /// kernel would not say about ([`sys::writers`]): their content is hashed again just
    /// before their unlink ([`walk::Plan::recheck`]).
    pub(super) written_elsewhere: std::sync::Mutex<HashSet<usize>>,
    /// A staged deletion's origin, recorded when it was staged (instant mode): its id,
    /// time and command line, and each operand's path as typed, instead of this process's.
    pub(super) origin: Option<Origin>,
    /// The command this deletion is part of, when it made more than one ([`Manifest::run`]).
    ///
    /// [`Manifest::run`]: crate::manifest::Manifest::run
    pub(super) run: Option<String>,
}

/// Where a staged deletion comes from, as recorded when it was staged.
#[derive(Clone, Debug)]
pub struct Origin {
    pub id: String,
    pub created: chrono::DateTime<chrono::Utc>,
    pub argv: Vec<Vec<u8>>,
    /// Each operand's path as typed, made absolute, when it differs from the resolved one.
    pub typed: Vec<Option<Vec<u8>>>,
}

impl<'a> Archiving<'a> {
    /// The archiving of what `opts` names, run by `prog` in `cwd` (physical) under `config`.
    pub fn new(
        prog: &'a str,
        cwd: &'a [u8],
        opts: &'a Options,
        config: &'a crate::config::Config,
    ) -> Self {
        Archiving {
            prog,
            cwd,
            logical_cwd: logical_cwd(cwd),
            opts_operands: &opts.operands,
            config,
            interactive: opts.presume_input_tty || sys::stdin_is_tty(),
            euid: sys::geteuid(),
            own_changes: std::sync::Mutex::new(Vec::new()),
            warned: std::sync::Mutex::new(HashSet::new()),
            written_elsewhere: std::sync::Mutex::new(HashSet::new()),
            origin: None,
            run: None,
        }
    }

    /// Recorded as part of command `run` (see [`Archiving::run`]).
    pub fn in_run(mut self, run: &str) -> Self {
        self.run = Some(run.to_string());
        self
    }

    /// The archiving of a staged deletion: recorded with the id, time, command line and
    /// typed paths of `origin` rather than the worker's own.
    pub fn staged(mut self, origin: Origin) -> Self {
        self.origin = Some(origin);
        self
    }
}

/// How [`run`] ended without an error.
pub enum Archived {
    /// Archived (with the deletion's id, unless there was nothing left to archive).
    Yes(Option<String>),
    Declined,
}

/// Archive everything the plan removes, seal it, verify it and write its manifest. A source
/// that fails (unreadable, changed) keeps that object and its ancestors, and the archive is
/// written again without it; a store failure fails the whole run.
pub fn run(ctx: &Archiving<'_>, store: &dyn Backend, plan: &mut Plan) -> Result<Archived> {
    let first: Vec<usize> = plan.to_archive().collect();
    if !large_deletion_allowed(ctx, store, plan, &first)? {
        return Ok(Archived::Declined);
    }
    drop(first);
    // Signals are caught from here on: Ctrl-C while waiting for the lock ends the wait, and
    // the run dies of it with nothing removed.
    crate::signal::catch();
    sys::ignore_lease_breaks();
    let _lock = store.lock(false, &mut |holder| {
        stderr_write(
            format!(
                "{}: waiting for the saferm store, locked by {holder}; Ctrl-C stops without removing anything\n",
                ctx.prog
            )
            .as_bytes(),
        )
    })?;
    let mut space_checked = false;
    // Each retry keeps at least one more object, so this ends.
    loop {
        let order: Vec<usize> = plan.to_archive().collect();
        if order.is_empty() {
            return Ok(Archived::Yes(None));
        }
        if !space_checked {
            check_space(ctx, store, plan, &order)?;
            space_checked = true;
        }
        let attempt = write_archive(ctx, store, plan, &order);
        // Also after an attempt that failed: the next one meets the files as they are now.
        if let Ok(mut changes) = ctx.own_changes.lock() {
            accept_own_changes(plan, std::mem::take(&mut *changes));
        }
        match attempt? {
            Attempt::Done(id, recheck) => {
                plan.recheck = recheck;
                return Ok(Archived::Yes(Some(id)));
            }
            Attempt::Retry(mut failures) => {
                failures.sort_by_key(|&(node, _)| node);
                for (node, reason) in failures {
                    let msg = format!(
                        "{}: cannot remove {}: {reason}\n",
                        ctx.prog,
                        quote(&plan.display(node))
                    );
                    stderr_write(msg.as_bytes());
                    plan.keep_subtree(node);
                }
                plan.failed = true;
            }
        }
    }
}

pub(super) enum Attempt {
    /// Archived as this deletion, with the archived hashes of the files to hash again
    /// before their unlink.
    Done(String, HashMap<usize, walk::ArchivedHash>),
    /// These nodes could not be archived (or verified), for these reasons.
    Retry(Vec<(usize, String)>),
}

/// One attempt: archive `order` (the plan's nodes to archive) into a new archive, verify
/// it, make it durable and publish its manifest. The archive is a [`PendingArchive`] until
/// then: any way out of here before that removes it.
pub(super) fn write_archive(
    ctx: &Archiving<'_>,
    store: &dyn Backend,
    plan: &Plan,
    order: &[usize],
) -> Result<Attempt> {
    simulate_replacement(plan);
    let (now, id) = match &ctx.origin {
        Some(o) => (o.created, o.id.clone()),
        None => {
            let now = chrono::Utc::now();
            let first = plan
                .roots
                .iter()
                .find(|&&r| plan.subtree_has_removal(r))
                .map(|&r| plan.display(r))
                .unwrap_or_default();
            (now, store::new_id(now, &first))
        }
    };
    let month = store::month_of(now);
    let mut pending = store.create_archive(&month, &id)?;
    let checked = match write_and_check(ctx, store, plan, order, &mut pending, &id, now)? {
        Written::Sealed(b) => *b,
        Written::Retry(failures) => return Ok(Attempt::Retry(failures)),
    };
    crate::timing::mark("archive verified");
    let Verified {
        sealed,
        manifest,
        synced,
    } = match verdict(checked, &pending)? {
        Ok(verified) => verified,
        Err(failures) => return Ok(Attempt::Retry(failures)),
    };
    // Ctrl-C during verification or the sync: the deletion is not published, and nothing
    // is removed.
    if crate::signal::caught().is_some() {
        bail!("interrupted");
    }
    publish(store, &pending, &month, sealed, synced, &manifest)?;
    pending.keep();
    crate::timing::mark("archive durable, manifest published");
    Ok(Attempt::Done(
        manifest.id.clone(),
        hashes_to_recheck(ctx, &manifest),
    ))
}

/// Make the archive durable: fsync the file, then its directory.
fn make_durable(file: &File, pending: &PendingArchive) -> Result<()> {
    crate::fault::check("fsync").context("cannot sync the archive")?;
    sys::fsync(file).context("cannot sync the archive")?;
    pending.sync_dir()
}

/// Fill the archive and seal it, verifying it and making it durable: a large archive is
/// read back and checked while it is written, on another thread; a small one after it is
/// sealed (a thread costs more than decoding it).
fn write_and_check<'p>(
    ctx: &Archiving<'_>,
    store: &dyn Backend,
    plan: &'p Plan,
    order: &[usize],
    pending: &mut PendingArchive,
    id: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Written<'p>> {
    let file = pending.take_file()?;
    let pending = &*pending;
    let rel = &pending.rel;
    let streamed = content_bytes(plan, order) >= STREAM_VERIFY_BYTES;
    std::thread::scope(|scope| -> Result<Written> {
        let (stream, verifier) = if streamed {
            let (stream, verifier) = start_verifier(scope, store, rel)?;
            (Some(stream), Some(verifier))
        } else {
            (None, None)
        };
        let result = fill_archive(ctx, plan, order, file, id, now, stream.as_ref());
        // Unless it was sealed, the verifier stops at the end of what was written (and the
        // scope waits for it).
        if let Some(s) = stream {
            s.growth.abandon();
        }
        crate::timing::mark("archive written");
        let (mut sealed, manifest) = match result? {
            Filled::Sealed(b) => *b,
            Filled::SourceFailed(failures) => return Ok(Written::Retry(failures)),
        };
        if crate::fault::active("verify-copy") {
            damage_last_byte(&store.open_archive(rel)?, &sealed.file, sealed.size)?;
        }
        // Making the archive durable and reading it back are independent, so they overlap;
        // both must succeed before the manifest is published and anything is unlinked.
        // What verification reads is the file's bytes as the kernel holds them either way.
        let (durable, verified) = match (verifier, sealed.blake3.as_deref()) {
            // The verifier is reading the last of the archive: sync meanwhile. It hashed
            // the file as it read it, all but the manifest copy, which its decoder skips:
            // that is compared here.
            (Some(v), _) => {
                let durable = Some(make_durable(&sealed.file, pending));
                let verified = v
                    .join()
                    .unwrap_or_else(|_| Err(anyhow!("the archive verifier failed")))
                    .and_then(|hash| {
                        let back = store.open_archive(rel)?;
                        if !sealed.copy_reads_back(&back)? {
                            bail!(
                                "the archive's copy of the manifest differs from what was written"
                            );
                        }
                        Ok(hash)
                    });
                let verified = verified.map(|hash| sealed.blake3 = Some(hash));
                (durable, verified)
            }
            (None, Some(hash)) if sealed.size > SMALL_ARCHIVE_BYTES => {
                let file = sealed.file.try_clone()?;
                // Without a thread for it (none to be had), the sync comes after.
                let syncing = std::thread::Builder::new()
                    .spawn_scoped(scope, move || make_durable(&file, pending));
                let verified = read_back(store, rel, &sealed, &manifest, hash);
                let durable = match syncing {
                    Ok(t) => t
                        .join()
                        .unwrap_or_else(|_| Err(anyhow!("cannot sync the archive"))),
                    Err(_) => make_durable(&sealed.file, pending),
                };
                (Some(durable), verified)
            }
            // A thread costs more than decoding a small archive. Its bytes go to the disk
            // while it is read back and its manifest written; the fsync comes after that
            // ([`publish`]) and waits for less.
            (None, Some(hash)) => {
                crate::sys::start_writeback(&sealed.file);
                (None, read_back(store, rel, &sealed, &manifest, hash))
            }
            (None, None) => bail!("internal error: the archive was neither hashed nor read back"),
        };
        Ok(Written::Sealed(Box::new(Checked {
            sealed,
            manifest,
            durable,
            verified,
        })))
    })
}

/// The verifier of an archive being written at `rel`: a thread that follows the file as it
/// grows, and what the writer tells it through.
fn start_verifier<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    store: &dyn Backend,
    rel: &str,
) -> Result<(
    Streaming,
    std::thread::ScopedJoinHandle<'scope, Result<String>>,
)> {
    let file = store.open_archive(rel)?;
    let growth = Arc::new(Growth::default());
    let (tx, rx) = mpsc::channel();
    let (hash_tx, hash_rx) = mpsc::channel();
    // Fault `hold-nothing`: every file goes by its blake3, hashed by the writer.
    let limit = if crate::fault::active("hold-nothing") {
        0
    } else {
        HELD_BYTES
    };
    let held = Arc::new(crate::archive::verify::Held::new(limit));
    let follow = crate::archive::Follow {
        file,
        pos: 0,
        growth: growth.clone(),
    };
    let held_by_verifier = held.clone();
    let spawned = std::thread::Builder::new().spawn_scoped(scope, move || {
        let mut expected = crate::archive::verify::Streamed::new(rx, hash_tx, held_by_verifier);
        if crate::fault::active("verify") {
            let damaged = Damaged {
                inner: follow,
                pos: 0,
                flip_at: 4096,
            };
            return crate::archive::verify::verify_stream(damaged, &mut expected);
        }
        crate::archive::verify::verify_stream(follow, &mut expected)
    });
    // Out of threads or memory for one: an error (nothing is removed), not a panic.
    let verifier = spawned.context("cannot start the archive verifier")?;
    let stream = Streaming {
        growth,
        entries: tx,
        held,
        hashes: hash_rx,
        left_to_verifier: std::cell::Cell::new(0),
    };
    Ok((stream, verifier))
}

/// Read the sealed archive back from the store and compare it with its manifest and with
/// `written_hash`, the blake3 of the bytes as they were written.
fn read_back(
    store: &dyn Backend,
    rel: &str,
    sealed: &crate::archive::Sealed,
    manifest: &Manifest<Entries<'_>>,
    written_hash: &str,
) -> Result<()> {
    let file = store.open_archive(rel)?;
    if crate::fault::active("verify") {
        let damaged = Damaged::new(file);
        return crate::archive::verify::verify_archive_against(
            damaged,
            &mut manifest.entries.replay(),
            Some(written_hash),
        );
    }
    if sealed.size <= SMALL_ARCHIVE_BYTES {
        let mut bytes = Vec::with_capacity(sealed.size as usize);
        std::io::Read::read_to_end(&mut &file, &mut bytes)?;
        return crate::archive::verify::verify_in_memory_against(
            &bytes,
            &mut manifest.entries.replay(),
            written_hash,
        );
    }
    let capacity = sealed.size.clamp(64 << 10, 1 << 20) as usize;
    let reader = std::io::BufReader::with_capacity(capacity, file);
    crate::archive::verify::verify_archive_against(
        reader,
        &mut manifest.entries.replay(),
        Some(written_hash),
    )
}

/// What a checked archive comes to: sealed with its manifest (the archive's size, blake3
/// and frames filled in), or entries to keep and write again without (a verification that
/// found only entries that differ, in a sound stream). Anything else is an error.
fn verdict<'p>(
    checked: Checked<'p>,
    pending: &PendingArchive,
) -> Result<std::result::Result<Verified<'p>, Vec<Failure>>> {
    let Checked {
        mut sealed,
        mut manifest,
        durable,
        verified,
    } = checked;
    if let Some(Err(e)) = durable {
        return Err(e);
    }
    if let Err(e) = verified {
        // Entries that differ in a sound stream keep their objects; the rest go again.
        if let Some(m) = e.downcast_ref::<crate::archive::verify::Mismatch>() {
            let failures = m
                .entries
                .iter()
                .filter_map(|(i, what)| {
                    let node = manifest.entries.list.get(*i)?.node;
                    Some((
                        node,
                        format!("could not archive: the archive did not verify: {what}"),
                    ))
                })
                .collect::<Vec<_>>();
            if failures.len() == m.entries.len() {
                return Ok(Err(failures));
            }
        }
        return Err(e.context("the archive did not verify"));
    }
    let Some(blake3) = sealed.blake3.take() else {
        bail!("internal error: the archive's blake3 is unknown");
    };
    if manifest
        .entries
        .list
        .iter()
        .any(|e| e.kind == Kind::File && e.blake3.is_none())
    {
        bail!("internal error: a file's blake3 is unknown");
    }
    manifest.archive = Some(manifest::ArchiveInfo {
        path: pending.rel.clone(),
        size: sealed.size,
        blake3,
    });
    manifest.frames = std::mem::take(&mut sealed.frames);
    Ok(Ok(Verified {
        sealed,
        manifest,
        synced: durable.is_some(),
    }))
}

/// A verified archive and its finished manifest.
struct Verified<'p> {
    sealed: Sealed,
    manifest: Manifest<Entries<'p>>,
    /// Made durable alongside the verification; a small archive is synced in [`publish`],
    /// once its manifest is written, and waits for less.
    synced: bool,
}

/// Write the manifest, make the archive durable if it is not yet, and publish the manifest
/// under `month`: from then on the deletion is in the store.
fn publish(
    store: &dyn Backend,
    pending: &PendingArchive,
    month: &str,
    sealed: Sealed,
    synced: bool,
    manifest: &Manifest<Entries<'_>>,
) -> Result<()> {
    let mut write = |out: &mut dyn std::io::Write| -> Result<()> {
        write_manifest(out, manifest).context("cannot write the manifest")?;
        // A small archive's bytes went to the disk while the manifest was written; its
        // fsync waits for less now. Published only once the archive is durable.
        if !synced {
            make_durable(&sealed.file, pending)?;
        }
        Ok(())
    };
    store.publish_manifest(month, &manifest.id, &mut write)
}

/// The archived hashes of the files that were open for writing elsewhere when they were
/// read: they are hashed again just before their unlink ([`walk::Plan::recheck`]).
fn hashes_to_recheck(
    ctx: &Archiving<'_>,
    manifest: &Manifest<Entries<'_>>,
) -> HashMap<usize, walk::ArchivedHash> {
    ctx.written_elsewhere
        .lock()
        .map(|nodes| {
            manifest
                .entries
                .list
                .iter()
                .filter(|e| e.kind == Kind::File && nodes.contains(&e.node))
                .filter_map(|e| {
                    let hash = e.blake3?;
                    Some((
                        e.node,
                        walk::ArchivedHash {
                            hash,
                            blocks: e.blocks,
                        },
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Write the manifest's JSON to `out`.
fn write_manifest(out: &mut dyn std::io::Write, manifest: &Manifest<Entries>) -> Result<()> {
    use std::io::Write;
    crate::fault::check("manifest")?;
    // About 300 bytes of JSON per entry; no 256 KiB buffer for a one-file deletion.
    let capacity = manifest
        .entries
        .list
        .len()
        .saturating_mul(512)
        .clamp(8 << 10, 256 << 10);
    let mut w = std::io::BufWriter::with_capacity(capacity, out);
    manifest.write_json(&mut w)?;
    w.flush()?;
    Ok(())
}

/// A sealed archive, its manifest, and how far it got.
pub(super) struct Checked<'p> {
    pub(super) sealed: crate::archive::Sealed,
    pub(super) manifest: Manifest<Entries<'p>>,
    /// Whether it was made durable (`None`: not synced yet).
    pub(super) durable: Option<Result<()>>,
    pub(super) verified: Result<()>,
}

/// How writing an archive ended.
pub(super) enum Written<'p> {
    Sealed(Box<Checked<'p>>),
    Retry(Vec<(usize, String)>),
}
