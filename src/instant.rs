//! Instant mode (DESIGN §9, issue 14): when it is on, a deletion whose every object can be
//! is staged — each operand renamed whole into the store's staging area, which takes no
//! time and unlinks nothing — and saferm returns. A worker it starts (`saferm
//! ---drain-staging`, in a session of its own, at a lower priority) archives each staged deletion through
//! the same pipeline as the synchronous path (`archive::run`), recorded under the paths it
//! was deleted from, and only once that archive is verified and durable and its manifest
//! published does it unlink the staged objects (`sweep`). `unrm` first finishes what is
//! staged (waiting for a worker that is at it), so it answers about every deletion; but
//! `unrm --last` of a deletion still staged renames its objects back ([`undo_newest`]).
//!
//! A deletion smaller than `instant_min` (256 KiB, each object counted as at least 16 KiB)
//! is archived before saferm returns, which takes no longer than staging it.
//! What is not staged takes today's path, operand by operand: one on another filesystem
//! than the store's, holding anything the plan keeps (declined, refused, failed), more than
//! 128 levels deep, an unreadable directory, a file of another user, a socket, a
//! pseudo-filesystem, an immutable or append-only object, or one whose rename fails. A run
//! is not staged at all with `-v`, when an object is met under two operands, or above the
//! confirmation limits. A run that stages some operands and archives the others makes two
//! deletions, recorded as one command (the manifest's `run`): `unrm --last` undoes both.

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use anyhow::{anyhow, Result};

use crate::archive;
use crate::config::{Config, Size, INSTANT_OBJECT_MIN};
use crate::manifest::PathBytes;
use crate::output::stderr_write;
use crate::rules::{InteractiveMode, Options};
use crate::store::staging::{StagedOrigin, Staging};
use crate::store::{self, Store};
use crate::sys;
use crate::walk::{Fate, Plan, Walker};

/// The deepest tree that is staged (levels below its operand).
const MAX_STAGED_DEPTH: usize = 128;

/// The operands of this run that are staged (as indices into `plan.roots`): none when
/// instant mode is off, with `--sync`, `--no-archive` or `-v`, when an object is met under
/// two operands, or when the deletion is above a confirmation limit; otherwise each whose
/// every object can be removed by a rename of the operand (see the module doc). The others
/// take the synchronous path.
fn stageable(opts: &Options, config: &Config, store: &Store, plan: &Plan) -> Vec<usize> {
    if !config.instant.value || opts.sync || opts.no_archive || opts.verbose {
        return Vec::new();
    }
    // Met twice: which operand removes it is for the unlink phase to find out.
    if plan.nodes.iter().any(|n| n.repeat) {
        return Vec::new();
    }
    let euid = sys::geteuid();
    // Each object's attributes are looked up by path: a deep tree takes the synchronous
    // path (its paths would cost their depth each, and outgrow PATH_MAX).
    let mut depth = vec![0usize; plan.nodes.len()];
    let mut refused = std::collections::HashSet::new();
    let (mut bytes, mut counted) = (0u64, 0u64);
    for (i, n) in plan.nodes.iter().enumerate() {
        let bound = crate::estimate::stored_bound(&n.st);
        bytes = bytes.saturating_add(bound);
        counted = counted.saturating_add(bound.max(INSTANT_OBJECT_MIN));
        if let Some(p) = n.parent() {
            depth[i] = depth[p] + 1;
        }
        if refused.contains(&n.operand) {
            continue;
        }
        let ok = depth[i] <= MAX_STAGED_DEPTH
            && n.fate == Fate::Remove
            && n.archive_self
            && n.st.dev == store.dev_ino.0
            && n.unreadable.is_none()
            && !n.pseudo
            // A socket is removed with a warning that the synchronous path gives.
            && n.st.file_type() != libc::S_IFSOCK
            && (euid == 0 || n.st.uid == euid)
            && !n.pinned;
        if !ok {
            refused.insert(n.operand);
        }
    }
    // Above a limit the question (or the refusal) is the synchronous path's; below
    // instant_min, archiving at once costs no more than staging (one fsync either way).
    let fs = store.fs_bytes().unwrap_or(u64::MAX);
    let under = |s: Size| s.bytes_of(fs).is_none_or(|l| bytes <= l);
    if !under(config.confirm_above.value) || !under(config.refuse_above.value) {
        return Vec::new();
    }
    if config
        .instant_min
        .value
        .bytes_of(fs)
        .is_some_and(|min| counted < min)
    {
        return Vec::new();
    }
    (0..plan.roots.len())
        .filter(|&k| !refused.contains(&plan.nodes[plan.roots[k]].operand))
        .collect()
}

/// What [`stage`] staged: the deletion's id, and the roots of the plan it took.
pub struct Staged {
    pub id: String,
    pub roots: Vec<usize>,
}

/// Stage what of the plan instant mode may ([`stageable`]): each such operand renamed
/// into `staging/<id>/`, and the worker started. `None` when nothing was staged, and the
/// synchronous path is to be taken for every operand; otherwise the roots not in
/// [`Staged::roots`] are (an operand whose rename failed is among them).
pub fn stage(
    opts: &Options,
    cwd: &[u8],
    config: &Config,
    store: &Store,
    plan: &Plan,
) -> Option<Staged> {
    let roots: Vec<usize> = stageable(opts, config, store, plan)
        .into_iter()
        .map(|k| plan.roots[k])
        .collect();
    let first = *roots.first()?;
    let now = chrono::Utc::now();
    let id = store::new_id(now, &plan.display(first));
    let operands = roots
        .iter()
        .map(|&r| {
            let given = opts.operands[plan.nodes[r].operand].as_bytes();
            let absolute = plan.abs(r);
            crate::manifest::Operand {
                given: PathBytes::new(given),
                typed: archive::typed_operand(cwd, given, &absolute).map(|t| PathBytes::new(&t)),
                absolute: PathBytes::new(&absolute),
            }
        })
        .collect();
    let staged: std::collections::HashSet<usize> =
        roots.iter().map(|&r| plan.nodes[r].operand).collect();
    let bytes = plan
        .nodes
        .iter()
        .filter(|n| staged.contains(&n.operand))
        .map(|n| crate::estimate::stored_bound(&n.st))
        .fold(0, u64::saturating_add);
    let origin = StagedOrigin::new(&id, now, cwd, operands, bytes);
    let staging = store.begin_staging(&origin).ok()?;
    crate::fault::pause("staging");
    // One whose rename fails (a directory the user may not write, a mount point) takes the
    // synchronous path; the worker archives the slots that are there.
    let taken: Vec<usize> = roots
        .iter()
        .enumerate()
        .filter(|&(slot, &r)| {
            staging
                .take(sys::AT_FDCWD, &plan.nodes[r].name, slot)
                .is_ok()
        })
        .map(|(_, &r)| r)
        .collect();
    if taken.is_empty() {
        let _ = store.end_staging(staging);
        return None;
    }
    crate::fault::pause("staged");
    drop(staging); // made: a worker may take it
    if !crate::fault::active("no-worker") {
        start_worker();
    }
    Some(Staged { id, roots: taken })
}

/// With instant mode on, start a worker when stagings wait and none is at them (one was
/// killed, or could not be started): the synchronous runs between finish them too.
pub fn resume(config: &Config, store: &Store) {
    if !config.instant.value || store.stagings().map_or(true, |s| s.is_empty()) {
        return;
    }
    if store.drain_workers().is_empty() && !crate::fault::active("no-worker") {
        start_worker();
    }
}

/// Start `saferm ---drain-staging` (or `unrm ---drain-staging`: this program, whichever
/// it is) with nothing of this terminal (it makes itself a session of its own:
/// [`drain_staging`]). If it cannot be started, the next saferm or
/// unrm finishes the staging.
fn start_worker() {
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let _ = std::process::Command::new(exe)
        .arg("---drain-staging")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
}

/// The worker (`saferm ---drain-staging`): archive every staged deletion, oldest first,
/// while holding the staging area's lock; another worker at it already is enough.
pub fn drain_staging(prog: &str) -> i32 {
    // A session of its own, so that closing the terminal (SIGHUP) or Ctrl-C in it does not
    // reach it, and a lower CPU and I/O priority than the commands the user runs meanwhile.
    // Best-effort 7, not the idle class: an idle-class request waits while anyone else
    // uses the disk (up to 10 s each under mq-deadline), and on a busy disk the worker
    // would crawl while holding the staging lock that `unrm` waits for. Set before any
    // thread starts (the archive's compressors inherit it).
    let _ = rustix::process::setsid();
    let _ = rustix::process::nice(10);
    let _ = sys::set_io_priority_best_effort(7);
    let config = Config::load().unwrap_or_else(|_| Config::defaults());
    let store = match store::location_with(&config).and_then(|root| Store::open_at(&root)) {
        Ok(s) => s,
        Err(e) => {
            stderr_write(format!("{prog}: {e:#}\n").as_bytes());
            return 1;
        }
    };
    match drain(prog, &store, &config, false) {
        Ok(_) => 0,
        Err(e) => {
            stderr_write(format!("{prog}: {e:#}\n").as_bytes());
            1
        }
    }
}

/// Archive every staged deletion, oldest first, under the staging lock: with `wait`, after
/// any worker at it has finished (saying so once); without, none if one is at it. Returns
/// the staged deletions that could not be finished, with why.
pub fn drain(
    prog: &str,
    store: &Store,
    config: &Config,
    wait: bool,
) -> Result<Vec<(String, String)>> {
    if store.stagings()?.is_empty() {
        return Ok(Vec::new());
    }
    let mut failed: HashMap<String, String> = HashMap::new();
    loop {
        let lock = match store.drain_lock()? {
            Some(lock) => lock,
            None if !wait => return Ok(Vec::new()),
            None => wait_for_worker(prog, store)?,
        };
        let pending: Vec<String> = store
            .stagings()?
            .into_iter()
            .filter(|id| !failed.contains_key(id))
            .collect();
        if pending.is_empty() {
            drop(lock);
            // A saferm may have staged after the listing and found the lock held.
            let left = store.stagings()?;
            if left.iter().all(|id| failed.contains_key(id)) {
                return Ok(failed.into_iter().collect());
            }
            continue;
        }
        let mut busy = false;
        for id in pending {
            match drain_one(prog, store, config, &id) {
                Ok(done) => busy |= !done,
                Err(e) => {
                    if crate::signal::caught().is_some() {
                        return Err(e);
                    }
                    failed.insert(id, format!("{e:#}"));
                }
            }
        }
        drop(lock);
        if busy {
            // A staging being made: its saferm is done with it in a few milliseconds.
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}

/// Wait for the worker that holds the staging lock, interruptibly, and take the lock.
fn wait_for_worker(prog: &str, store: &Store) -> Result<std::fs::File> {
    store.drain_lock_patiently(|_| {
        stderr_write(format!("{prog}: waiting for the deletions being archived...\n").as_bytes())
    })
}

/// Archive staged deletion `id` and unlink what it staged; then remove the staging.
/// `false` when it was left alone: the saferm that makes it is still at it.
fn drain_one(prog: &str, store: &Store, config: &Config, id: &str) -> Result<bool> {
    let Some((staging, origin)) = store.open_staging(id)? else {
        return Ok(false); // its saferm is still making it
    };
    crate::fault::pause("drain");
    let present = staging.slots()?;
    let Some(origin) = origin else {
        if present.is_empty() {
            // Made and left before anything was staged in it.
            return store.end_staging(staging).map(|()| true);
        }
        return Err(anyhow!(
            "staged deletion {id} has lost where it came from; its objects are kept in '{}'",
            staging.path.display()
        ));
    };
    let slots: Vec<usize> = present
        .into_iter()
        .filter(|&s| s < origin.operands.len())
        .collect();
    if slots.is_empty() {
        return store.end_staging(staging).map(|()| true);
    }
    let (mut plan, opts) = plan_staged(prog, store, &staging, &origin, &slots)?;
    // Archived by a worker that was stopped while it unlinked: only that is left to do.
    if store.published(&staging).is_some() {
        crate::sweep::unlink_plan(prog, &opts, &mut plan);
        return store.end_staging(staging).map(|()| true);
    }
    let operand = |k: usize| &origin.operands[slots[k]];
    for (k, &r) in plan.roots.clone().iter().enumerate() {
        if let Some(abs) = operand(k).absolute.bytes() {
            plan.archived_as.insert(r, abs);
        }
    }
    let created = chrono::DateTime::parse_from_rfc3339(&origin.created)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| anyhow!("staged deletion {id}: bad time: {e}"))?;
    let cwd = origin.cwd.bytes().unwrap_or_default();
    // The first attempt's deletion has the staging's id (what `unrm --list` showed for it
    // still names it); a later one, an id of its own at the time it was staged, since the
    // attempt before may have left an unpublished archive of that name (the store's
    // housekeeping removes it).
    let archive_id = if store.mark_attempted(&staging)? {
        let first = operand(0).given.bytes().unwrap_or_default();
        store::new_id(created, &first)
    } else {
        id.to_string()
    };
    let ctx = archive::Archiving::new(prog, &cwd, &opts, config)
        .in_run(id)
        .staged(archive::Origin {
            id: archive_id,
            created,
            argv: origin.argv.iter().filter_map(PathBytes::bytes).collect(),
            typed: (0..slots.len())
                .map(|k| operand(k).typed.as_ref().and_then(PathBytes::bytes))
                .collect(),
        });
    let made = match archive::run(&ctx, store, &mut plan)? {
        archive::Archived::Yes(made) => made,
        archive::Archived::Declined => None,
    };
    crate::fault::pause("published");
    // What could not be archived (a file that cannot be read) is kept: `made` does not
    // hold everything staged, and the staging stays, with its origin, for a retry to
    // archive what is left beside it.
    let kept = plan.nodes.iter().any(|n| n.fate == Fate::Keep);
    // Before anything is unlinked: a retry must not archive what is left (the directories'
    // times change as their entries go) beside the deletion that holds it all.
    let marked = match (&made, kept) {
        (Some(made), false) => {
            store.mark_published(&staging, made)?;
            true
        }
        _ => false,
    };
    // Signals stay caught until the mark is made: `unrm` stops a worker with SIGTERM, and
    // one that died between publishing and marking would leave a deletion its staging does
    // not name, which the retry archived a second time. Stopped here, the retry unlinks.
    crate::signal::restore();
    if marked && crate::signal::caught().is_some() {
        return Err(crate::signal::stop_error().into());
    }
    crate::sweep::unlink_plan(prog, &opts, &mut plan);
    if let Some(made) = &made {
        for line in crate::retention::after_saferm_run(store, config, Some(made)) {
            stderr_write(format!("{line}\n").as_bytes());
        }
    }
    if kept {
        return Err(anyhow!(
            "some of what it holds could not be archived, and is kept in '{}'",
            staging.path.display()
        ));
    }
    store.end_staging(staging).map(|()| true)
}

/// The plan of what staging `staging` holds in `slots`, walked from where it is and to be
/// archived under the paths it came from; and the options it is removed with (as `rm -rf`
/// of the operands as given).
fn plan_staged(
    prog: &str,
    store: &Store,
    staging: &Staging,
    origin: &StagedOrigin,
    slots: &[usize],
) -> Result<(Plan, Options)> {
    let opts = Options {
        interactive: InteractiveMode::Never,
        ignore_missing: true,
        recursive: true,
        operands: slots
            .iter()
            .map(|&s| OsString::from_vec(origin.operands[s].given.bytes().unwrap_or_default()))
            .collect(),
        ..Default::default()
    };
    let st = sys::fstat(staging.fd())?;
    let cwd = staging.path.as_os_str().as_bytes().to_vec();
    let mut walker = Walker::new(&opts, prog, cwd, Some(store));
    walker.stdin_tty = false;
    walker.staged = Some((st.dev, st.ino));
    for (k, &slot) in slots.iter().enumerate() {
        let path = staging.path.join(slot.to_string());
        walker.operand(k, path.as_os_str().as_bytes());
    }
    let plan = walker.plan;
    Ok((plan, opts))
}

/// An object renamed back where it was deleted from.
pub struct PutBack {
    /// Where it is again.
    pub dest: Vec<u8>,
    /// When it was deleted (RFC 3339).
    pub created: String,
    /// The id of the deletion that staged it.
    pub id: String,
}

/// A staged object to rename back: the staging, its slot, and where it came from.
struct Back {
    staging: usize,
    slot: usize,
    dest: Vec<u8>,
}

/// The stagings `undo` considers, oldest first: each opened (with its lock), its origin,
/// and the slots still in it.
struct Open {
    staging: Staging,
    origin: StagedOrigin,
    slots: Vec<usize>,
}

/// `unrm --last` of a deletion still staged (not archived yet): rename each of its objects
/// back where it was, which is instant and exact (the same inodes, every time and
/// attribute as they were). `None` when that is not the case — the newest deletion is an
/// archived one, a worker has already published it, or something is in the way of one of
/// its objects — and the ordinary restore is to be taken (after the staging is archived).
/// Returns the restored paths, each with when it was deleted.
pub fn undo_newest(store: &Store) -> Result<Option<Vec<PutBack>>> {
    undo(store, |open, headers| {
        let (k, newest) = open.iter().enumerate().next_back()?;
        // A command that staged some operands and archived the others, or a staging that
        // is archived in part (what the worker could read), is undone whole by the
        // ordinary restore, once its staging is archived.
        let id = &newest.origin.id;
        if headers.first().is_some_and(|h| h.id > *id)
            || headers
                .iter()
                .any(|h| h.id == *id || h.run.as_ref() == Some(id))
        {
            return None;
        }
        Some(newest.slots.iter().map(|&slot| (k, slot)).collect())
    })
}

/// `unrm PATH...` where each PATH (given as the absolute forms it may stand for: as
/// typed, and through the symlinks of its parents) is the whole of an operand still
/// staged, in no deletion since: rename them back, as [`undo_newest`] does. `None` when
/// any PATH is not such (a path inside a staged tree, a bare name, a glob, one deleted
/// again since): the ordinary restore is to be taken for all.
pub fn undo_paths(store: &Store, paths: &[Vec<Vec<u8>>]) -> Result<Option<Vec<PutBack>>> {
    if paths.is_empty() {
        return Ok(None);
    }
    undo(store, |open, headers| {
        let mut picked = Vec::new();
        for forms in paths {
            let is = |p: Option<Vec<u8>>| p.is_some_and(|p| forms.contains(&p));
            // The newest staging that removed it, newest first.
            let (k, slot) = open.iter().enumerate().rev().find_map(|(k, o)| {
                o.slots
                    .iter()
                    .find(|&&s| {
                        let op = &o.origin.operands[s];
                        is(op.absolute.bytes()) || is(op.typed.as_ref().and_then(PathBytes::bytes))
                    })
                    .map(|&s| (k, s))
            })?;
            // Deleted again since (the path, a tree holding it, or part of it): that is
            // the version to restore, and the ordinary restore finds it.
            let since = headers.iter().take_while(|h| h.id > open[k].origin.id);
            let related = |p: &[u8]| {
                forms
                    .iter()
                    .any(|f| crate::paths::is_under(f, p) || crate::paths::is_under(p, f))
            };
            if since
                .flat_map(|h| &h.operands)
                .filter_map(|op| op.absolute.bytes())
                .any(|p| related(&p))
            {
                return None;
            }
            if !picked.contains(&(k, slot)) {
                picked.push((k, slot));
            }
        }
        Some(picked)
    })
}

/// Rename back the staged objects `select` picks (indices into the stagings, oldest first,
/// and their slots), given the archived deletions' headers, newest first; all or none.
/// No worker is at them meanwhile: one that is, is stopped (what it had begun is thrown
/// away), and a new one is started for what is left.
fn undo(
    store: &Store,
    select: impl FnOnce(&[Open], &[crate::catalog::Header]) -> Option<Vec<(usize, usize)>>,
) -> Result<Option<Vec<PutBack>>> {
    if store.stagings()?.is_empty() {
        return Ok(None);
    }
    let lock = match store.drain_lock()? {
        Some(lock) => lock,
        None => {
            for pid in store.drain_workers() {
                if let Ok(pid) = i32::try_from(pid) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGTERM,
                    );
                }
            }
            // Stopped, not waited for: nothing to say while it lets go.
            store.drain_lock_patiently(|_| {})?
        }
    };
    let mut open = Vec::new();
    for id in store.stagings()? {
        // One being made, or published already (its archive is the deletion now).
        let Some((staging, Some(origin))) = store.open_staging(&id)? else {
            continue;
        };
        if store.published(&staging).is_some() {
            continue;
        }
        let slots: Vec<usize> = staging
            .slots()?
            .into_iter()
            .filter(|&s| s < origin.operands.len())
            .collect();
        open.push(Open {
            staging,
            origin,
            slots,
        });
    }
    let (mut headers, _) = crate::catalog::headers(store)?;
    headers.retain(|h| !h.restored && !h.kept);
    let Some(picked) = select(&open, &headers).filter(|p| !p.is_empty()) else {
        return Ok(None);
    };
    let mut back = Vec::new();
    for (k, slot) in picked {
        let Some(dest) = open[k].origin.operands[slot].absolute.bytes() else {
            return Ok(None);
        };
        // Its place must be free, in a directory that is still there.
        let free = sys::cstr(&dest).is_ok_and(|c| {
            sys::fstatat(sys::AT_FDCWD, &c, false)
                .is_err_and(|e| e.raw_os_error() == Some(libc::ENOENT))
        });
        let (parent, _) = crate::paths::split_parent(&dest);
        let parent_there = sys::cstr(parent)
            .is_ok_and(|c| sys::fstatat(sys::AT_FDCWD, &c, true).is_ok_and(|st| st.is_dir()));
        if !free || !parent_there {
            return Ok(None);
        }
        back.push(Back {
            staging: k,
            slot,
            dest,
        });
    }
    back.sort_by_key(|b| (b.staging, b.slot));
    let mut restored = Vec::new();
    for b in back {
        let o = &mut open[b.staging];
        let name = sys::cstr(&b.dest)?;
        o.staging
            .put_back(b.slot, sys::AT_FDCWD, &name)
            .map_err(|e| {
                anyhow!(
                    "could not put '{}' back: {e}",
                    String::from_utf8_lossy(&b.dest)
                )
            })?;
        o.slots.retain(|&s| s != b.slot);
        restored.push(PutBack {
            dest: b.dest,
            created: o.origin.created.clone(),
            id: o.origin.id.clone(),
        });
    }
    for o in open {
        if o.slots.is_empty() {
            store.end_staging(o.staging)?;
        }
    }
    drop(lock);
    if !store.stagings()?.is_empty() && !crate::fault::active("no-worker") {
        start_worker();
    }
    Ok(Some(restored))
}
