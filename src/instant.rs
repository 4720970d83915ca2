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
//! What is not staged takes today's path, whole: another filesystem than the store's, `-v`,
//! anything the plan keeps (declined, refused, failed), trees more than 128 levels deep,
//! unreadable directories, files of another user, sockets, pseudo-filesystems, immutable
//! or append-only objects, and deletions above the confirmation limits.

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use anyhow::{anyhow, Result};

use crate::archive;
use crate::config::{Config, Size};
use crate::manifest::PathBytes;
use crate::output::stderr_write;
use crate::rules::{InteractiveMode, Options};
use crate::store::staging::{StagedOrigin, Staging};
use crate::store::{self, Store};
use crate::sys;
use crate::walk::{Fate, Plan, Walker};

/// The deepest tree that is staged (levels below its operand).
const MAX_STAGED_DEPTH: usize = 128;

/// Whether this run may be staged: instant mode on, not `--sync`, and every object of the
/// plan removable by a rename of its operand (see the module doc).
fn may_stage(opts: &Options, config: &Config, store: &Store, plan: &Plan) -> bool {
    if !config.instant.value || opts.sync || opts.no_archive || opts.verbose {
        return false;
    }
    if plan.roots.is_empty() || plan.roots.iter().any(|&r| !plan.nodes[r].archive_self) {
        return false;
    }
    // Each object's attributes are looked up by path: a deep tree takes the synchronous
    // path (its paths would cost their depth each, and outgrow PATH_MAX).
    let mut depth = vec![0usize; plan.nodes.len()];
    for (i, n) in plan.nodes.iter().enumerate() {
        if let Some(p) = n.parent() {
            depth[i] = depth[p] + 1;
            if depth[i] > MAX_STAGED_DEPTH {
                return false;
            }
        }
    }
    let euid = sys::geteuid();
    let mut bytes = 0u64;
    let all = plan.nodes.iter().enumerate().all(|(i, n)| {
        bytes = bytes.saturating_add(crate::estimate::stored_bound(&n.st));
        n.fate == Fate::Remove
            && n.st.dev == store.dev_ino.0
            && n.unreadable.is_none()
            && !n.pseudo
            && !n.repeat
            // A socket is removed with a warning that the synchronous path gives.
            && n.st.file_type() != libc::S_IFSOCK
            && (euid == 0 || n.st.uid == euid)
            && not_pinned(&plan.abs(i))
    });
    // Above a limit the question (or the refusal) is the synchronous path's.
    let fs = store.fs_bytes().unwrap_or(u64::MAX);
    let under = |s: Size| s.bytes_of(fs).is_none_or(|l| bytes <= l);
    all && under(config.confirm_above.value) && under(config.refuse_above.value)
}

/// Whether the object at `path` is free of the `chattr` attributes that forbid removing
/// it (checked before staging: the worker could not unlink it).
fn not_pinned(path: &[u8]) -> bool {
    let Ok(c) = sys::cstr(path) else {
        return false;
    };
    matches!(
        sys::removal_attributes(sys::AT_FDCWD, &c),
        Ok((false, false))
    )
}

/// Stage the plan's operands when instant mode may (`None`: nothing was changed, and the
/// synchronous path is to be taken): renamed into `staging/<id>/`, the worker started.
/// Returns the id of the staged deletion.
pub fn stage(
    opts: &Options,
    cwd: &[u8],
    config: &Config,
    store: &Store,
    plan: &Plan,
) -> Option<String> {
    if !may_stage(opts, config, store, plan) {
        return None;
    }
    let now = chrono::Utc::now();
    let id = store::new_id(now, &plan.display(plan.roots[0]));
    let operands = plan
        .roots
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
    let origin = StagedOrigin::new(&id, now, cwd, operands);
    let staging = store.begin_staging(&origin).ok()?;
    crate::fault::pause("staging");
    for (slot, &r) in plan.roots.iter().enumerate() {
        if staging
            .take(sys::AT_FDCWD, &plan.nodes[r].name, slot)
            .is_err()
        {
            // Nothing of this run is staged, or the rest takes the synchronous path too.
            let back = (0..slot).rev().all(|s| {
                staging
                    .put_back(s, sys::AT_FDCWD, &plan.nodes[plan.roots[s]].name)
                    .is_ok()
            });
            if back {
                let _ = store.end_staging(staging);
            }
            return None;
        }
    }
    crate::fault::pause("staged");
    drop(staging); // made: a worker may take it
    if !crate::fault::active("no-worker") {
        start_worker();
    }
    Some(id)
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

/// Start `saferm ---drain-staging` with nothing of this terminal (it makes itself a
/// session of its own: [`drain_staging`]). If it cannot be started, the next saferm or
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
    let present: Vec<usize> = sys::read_dir(staging.fd())?
        .iter()
        .filter_map(|e| e.name.to_str().ok().and_then(|n| n.parse::<usize>().ok()))
        .collect();
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
    let mut slots: Vec<usize> = present
        .into_iter()
        .filter(|&s| s < origin.operands.len())
        .collect();
    slots.sort_unstable();
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
    // A deletion id of its own for each attempt, at the time it was staged: a worker killed
    // after publishing leaves a deletion that holds everything staged, and what it had not
    // unlinked yet is archived again beside it; one killed before leaves an unpublished
    // archive, which the store's housekeeping removes.
    let first = operand(0).given.bytes().unwrap_or_default();
    let ctx = archive::Archiving::new(prog, &cwd, &opts, config).staged(archive::Origin {
        id: store::new_id(created, &first),
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
    crate::signal::restore();
    // What could not be archived (a file that cannot be read) is kept: `made` does not
    // hold everything staged, and the staging stays, with its origin, for a retry to
    // archive what is left beside it.
    let kept = plan.nodes.iter().any(|n| n.fate == Fate::Keep);
    // Before anything is unlinked: a retry must not archive what is left (the directories'
    // times change as their entries go) beside the deletion that holds it all.
    if let (Some(made), false) = (&made, kept) {
        store.mark_published(&staging, made)?;
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

/// `unrm --last` of a deletion still staged (not archived yet): rename each of its objects
/// back where it was, which is instant and exact (the same inodes, every time and
/// attribute as they were). `None` when that is not the case — the newest deletion is an
/// archived one, a worker has already published it, or something is in the way of one of
/// its objects — and the ordinary restore is to be taken (after the staging is archived).
/// Returns the restored paths.
pub fn undo_newest(prog: &str, store: &Store) -> Result<Option<Vec<Vec<u8>>>> {
    let Some(newest) = store.stagings()?.pop() else {
        return Ok(None);
    };
    // No worker is at it (one that is, is stopped: what it had begun is thrown away, or,
    // if it had published, the ordinary restore follows), and none starts while this runs.
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
            wait_for_worker(prog, store)?
        }
    };
    let Some(newest) = store.stagings()?.pop().filter(|id| *id >= newest) else {
        return Ok(None);
    };
    let (mut headers, _) = crate::catalog::headers(store)?;
    headers.retain(|h| !h.restored && !h.kept);
    if headers.first().is_some_and(|h| h.id > newest) {
        return Ok(None);
    }
    let Some((staging, origin)) = store.open_staging(&newest)? else {
        return Ok(None);
    };
    let Some(origin) = origin.filter(|_| store.published(&staging).is_none()) else {
        return Ok(None);
    };
    let mut back: Vec<(usize, Vec<u8>)> = Vec::new();
    for e in sys::read_dir(staging.fd())?.iter() {
        let Some(slot) = e.name.to_str().ok().and_then(|n| n.parse::<usize>().ok()) else {
            continue;
        };
        let Some(dest) = origin.operands.get(slot).and_then(|o| o.absolute.bytes()) else {
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
        back.push((slot, dest));
    }
    back.sort();
    let mut restored = Vec::new();
    for (slot, dest) in back {
        let name = sys::cstr(&dest)?;
        staging.put_back(slot, sys::AT_FDCWD, &name).map_err(|e| {
            anyhow!(
                "could not put '{}' back: {e}",
                String::from_utf8_lossy(&dest)
            )
        })?;
        restored.push(dest);
    }
    store.end_staging(staging)?;
    drop(lock);
    Ok(Some(restored))
}
