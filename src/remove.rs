//! Deleting as rm does: plan, archive, verify, and only then unlink ([`delete`]; the command
//! line is `cmd::rm`'s).
//!
//! ```text
//! argv ─parse─▶ Options ─plan (walk.rs)─▶ Plan ─archive─▶ tmp/<id>.tar.zst
//!      ─seal (fsync, rename, fsync dir)─▶ ─verify─▶ manifest ─unlink (post-order, re-stat)─▶
//! ```
//! Anything that fails before the unlink phase keeps every original (DESIGN §1.3).

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::{mpsc, Arc};

use anyhow::{anyhow, bail, Context, Result};

use crate::archive::{AppendError, ArchiveWriter, EntryMeta, Growth, Hashing};
use crate::dirstack::DirStack;
use crate::manifest::{self, Entry, Kind, Manifest, PathBytes};
use crate::output::{human, stderr_write};
use crate::quote::quote;
use crate::restat::unchanged;
use crate::rules;
use crate::rules::Options;
use crate::store::{self, Store};
use crate::sys::{self, Stat};
use crate::walk::{self, Fate, Plan, Walker};

/// Archives up to this size are verified in memory, on the calling thread.
const SMALL_ARCHIVE_BYTES: u64 = 1 << 20;
/// Files up to this size are read whole, in one call, into a reused buffer.
const WHOLE_READ_BYTES: u64 = 4 << 20;
/// Verify while writing above this much file content.
const STREAM_VERIFY_BYTES: u64 = 8 << 20;
/// At most this much source content waits for the streamed verifier to compare it byte
/// for byte (beyond that, files are compared by their blake3).
const HELD_BYTES: usize = 8 << 20;
/// Compress on worker threads above this much data.
const MULTITHREAD_BYTES: u64 = 8 << 20;

/// What a run archived and what of that it then removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Objects in the verified archive.
    pub archived: usize,
    /// Of those, the ones still in place after the unlink phase.
    pub kept: usize,
}

/// Remove what `opts` names as rm would, archiving and verifying it first; messages are
/// `prog`'s. Returns the exit status, and says in `outcome` what was archived and what of
/// it was kept.
pub fn delete(prog: &str, opts: &Options, outcome: &mut Outcome) -> i32 {
    sys::raise_open_file_limit();
    crate::timing::start();
    if opts.prompt_once && rules::prompt_once_applies(opts.operands.len(), opts.recursive) {
        let text = rules::prompt_once_text(prog, opts.operands.len(), opts.recursive);
        if !walk::yes_no(&text) {
            return 0;
        }
    }
    let root_dev_ino = if opts.recursive && opts.preserve_root {
        match sys::fstatat(sys::AT_FDCWD, c"/", false) {
            Ok(st) => Some((st.dev, st.ino)),
            Err(e) => {
                stderr_write(
                    format!(
                        "{prog}: failed to get attributes of '/': {}\n",
                        sys::strerror(&e)
                    )
                    .as_bytes(),
                );
                return 1;
            }
        }
    } else {
        None
    };
    // Open the store before walking, so that `saferm -rf ~` meets it (and skips it) even on
    // the first run, when this is what creates it.
    let config = if opts.no_archive {
        None
    } else {
        Some(crate::config::Config::load())
    };
    let store = config.as_ref().map(|c| match c {
        Ok(c) => store::location_with(c).and_then(|root| Store::open_at(&root)),
        Err(e) => Err(anyhow!("{e:#}")),
    });
    let (store_dev_ino, store_path, store_dirs) = match &store {
        Some(Ok(s)) => (
            Some(s.dev_ino),
            Some(s.canonical.clone()),
            s.directory_ids(),
        ),
        _ => (None, None, HashSet::new()),
    };
    let cwd = std::env::current_dir()
        .map(|p| p.as_os_str().as_bytes().to_vec())
        .unwrap_or_else(|_| b".".to_vec());
    let mut walker = Walker {
        opts,
        prog,
        stdin_tty: opts.presume_input_tty || sys::stdin_is_tty(),
        euid: sys::geteuid(),
        root_dev_ino,
        store_dev_ino,
        store_path,
        store_dirs,
        store_above_cache: HashMap::new(),
        archiving: !opts.no_archive,
        cwd: cwd.clone(),
        plan: Plan::default(),
        seen_dirs: HashMap::new(),
        seen_names: HashMap::new(),
        more_operands: false,
        uncertain: HashSet::new(),
    };
    for (i, operand) in opts.operands.iter().enumerate() {
        walker.more_operands = i + 1 < opts.operands.len();
        walker.operand(i, operand.as_bytes());
    }
    let mut plan = walker.plan;
    crate::timing::mark("walk");
    let mut failed = plan.failed;

    let config = config
        .and_then(|c| c.ok())
        .unwrap_or_else(crate::config::Config::defaults);
    // The store and the id of this run's deletion, for retention after the unlinks.
    let mut made: Option<(Store, String)> = None;
    if let Some(store) = store {
        let anything = plan.to_archive().next().is_some();
        if anything {
            let result = store.map_err(|e| anyhow!("{e:#}")).and_then(|store| {
                let logical = logical_cwd(&cwd);
                let ctx = ArchiveContext {
                    prog,
                    cwd: &cwd,
                    logical_cwd: &logical,
                    opts_operands: &opts.operands,
                    config: &config,
                    interactive: opts.presume_input_tty || sys::stdin_is_tty(),
                    euid: sys::geteuid(),
                    own_changes: std::sync::Mutex::new(Vec::new()),
                    written_elsewhere: std::sync::Mutex::new(HashSet::new()),
                    warned: std::sync::Mutex::new(HashSet::new()),
                };
                let archived = archive_plan(&ctx, &store, &mut plan);
                if let Ok(Archived::Yes(Some(id))) = &archived {
                    made = Some((store, id.clone()));
                }
                archived
            });
            match result {
                Ok(Archived::Yes(_)) => {}
                // The user said no to archiving a large deletion: nothing is removed, and, as
                // with rm -I, that is not an error.
                Ok(Archived::Declined) => return 0,
                Err(e) => {
                    if let Some(sig) = crate::signal::caught() {
                        crate::signal::reraise(sig);
                    }
                    let reason = format!("{e:#}");
                    for &r in &plan.roots.clone() {
                        if subtree_has_removal(&plan, r) {
                            let msg = format!(
                                "{prog}: cannot remove {}: could not archive: {reason}\n",
                                quote(&plan.display(r))
                            );
                            stderr_write(msg.as_bytes());
                        }
                    }
                    return 1;
                }
            }
            if plan.failed {
                failed = true;
            }
        }
    }
    crate::timing::mark("archiving done");
    crate::signal::restore();
    simulate_concurrent_change(&plan);

    let archived: Vec<usize> = match &made {
        Some(_) => plan.to_archive().collect(),
        None => Vec::new(),
    };
    failed |= crate::sweep::unlink_plan(prog, opts, &mut plan);
    crate::timing::mark("unlinked");
    outcome.archived = archived.len();
    outcome.kept = archived
        .iter()
        .filter(|&&i| plan.nodes[i].fate == Fate::Keep)
        .count();
    if let Some((store, id)) = &made {
        if let Some(line) = record_kept(store, id, &plan, &archived) {
            stderr_write(format!("{prog}: {line}\n").as_bytes());
        }
    }
    // Retention: cheap unless a limit is exceeded; never waits for a busy store.
    if let Some((store, id)) = &made {
        for line in crate::retention::after_saferm_run(store, &config, Some(id)) {
            stderr_write(format!("{line}\n").as_bytes());
        }
    }
    if failed {
        1
    } else {
        0
    }
}

/// The current directory as the shell names it: `$PWD` when it is an absolute path without
/// `.` or `..` that is the current directory (as `pwd -L` decides), else `physical`. It is
/// only recorded, never opened for anything but that check.
fn logical_cwd(physical: &[u8]) -> Vec<u8> {
    let Some(pwd) = std::env::var_os("PWD") else {
        return physical.to_vec();
    };
    let pwd = pwd.as_bytes();
    let plain = pwd.starts_with(b"/") && pwd.split(|&b| b == b'/').all(|c| c != b"." && c != b"..");
    let same = || {
        let (Ok(a), Ok(b)) = (sys::cstr(pwd), sys::cstr(b".")) else {
            return false;
        };
        match (
            sys::fstatat(sys::AT_FDCWD, &a, true),
            sys::fstatat(sys::AT_FDCWD, &b, true),
        ) {
            (Ok(x), Ok(y)) => (x.dev, x.ino) == (y.dev, y.ino),
            _ => false,
        }
    };
    if plain && pwd != physical && same() {
        pwd.to_vec()
    } else {
        physical.to_vec()
    }
}

/// The operand `given` as typed, made absolute lexically against `cwd`,
/// when that differs from the `resolved` path it was archived under and still names the
/// same object now (the directories above it resolve to those above `resolved`; for
/// `link/`, the link resolves to `resolved`). A lexical `..` after a symlink names
/// another place than the kernel's: such a path is not recorded. `canonical` caches the
/// directories resolved (`rm d/*` in a symlinked directory resolves `d` once).
fn typed_path(
    cwd: &[u8],
    given: &[u8],
    resolved: &[u8],
    canonical: &mut HashMap<Vec<u8>, Option<Vec<u8>>>,
) -> Option<Vec<u8>> {
    let typed = rules::lexical_absolute(cwd, given);
    if typed == resolved || typed == b"/" {
        return None;
    }
    let mut canon = |p: &[u8]| {
        canonical
            .entry(p.to_vec())
            .or_insert_with(|| {
                std::fs::canonicalize(std::ffi::OsStr::from_bytes(p))
                    .ok()
                    .map(|c| c.as_os_str().as_bytes().to_vec())
            })
            .clone()
    };
    let through_link = given.ends_with(b"/");
    let same = if through_link {
        canon(&typed).as_deref() == Some(resolved)
    } else {
        let (tp, tn) = crate::paths::split_parent(&typed);
        let (rp, rn) = crate::paths::split_parent(resolved);
        tn == rn && canon(tp).as_deref() == Some(rp)
    };
    same.then_some(typed)
}

/// What the unlink phase left in place of what deletion `id` archived (an immutable file,
/// an append-only directory, an object that changed): no listing may count it as deleted.
/// When nothing was removed the deletion is withdrawn (its archive holds only what is still
/// there), if the store's exclusive lock is free; otherwise, and when part of it was
/// removed, a note beside the manifest names what was kept (`catalog::mark_kept`).
/// Returns a warning to print when neither could be done.
fn record_kept(store: &Store, id: &str, plan: &Plan, archived: &[usize]) -> Option<String> {
    let kept: Vec<Vec<u8>> = archived
        .iter()
        .filter(|&&i| plan.nodes[i].fate == Fate::Keep)
        .map(|&i| plan.abs(i))
        .collect();
    if kept.is_empty() {
        return None;
    }
    // The manifest is filed under the month of its id's time (`store::month_of`).
    let month = crate::id::month(id)?;
    let all = kept.len() == archived.len();
    if all {
        if let Ok(Some(lock)) = store.try_lock_exclusive() {
            let target = store::PurgeTarget {
                id: id.to_string(),
                manifest_month: month.clone(),
                archive_month: Some(month.clone()),
            };
            if store.purge_deletions(&lock, &[target]).is_ok() {
                return None;
            }
        }
    }
    match crate::catalog::mark_kept(store, &month, id, &kept, all) {
        Ok(()) => None,
        Err(e) => Some(format!(
            "warning: deletion {id} lists {} object(s) that are still in place: {e:#}",
            kept.len()
        )),
    }
}

/// Failure injection for the re-stat rule (DESIGN §1.2): between sealing and unlinking,
/// `mutate` appends to the first archived file, `chmod` sets the first archived file's mode
/// to what it is (only its ctime changes) and `swap` replaces the first archived
/// subdirectory by a symlink to it, as another process could.
fn simulate_concurrent_change(plan: &Plan) {
    crate::fault::pause("pause");
    let archived = || plan.to_archive();
    if crate::fault::active("chmod") {
        if let Some(i) = archived().find(|&i| plan.nodes[i].st.is_file()) {
            let abs = plan.abs(i);
            let path = std::ffi::OsStr::from_bytes(&abs);
            let mode = plan.nodes[i].st.mode & 0o7777;
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
        }
    }
    if crate::fault::active("mutate") {
        if let Some(i) = archived().find(|&i| plan.nodes[i].st.is_file()) {
            let abs = plan.abs(i);
            let path = std::ffi::OsStr::from_bytes(&abs);
            if let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(path) {
                let _ = std::io::Write::write_all(&mut f, b"+");
            }
        }
    }
    if crate::fault::active("swap") {
        let found =
            archived().find(|&i| plan.nodes[i].st.is_dir() && plan.nodes[i].parent().is_some());
        if let Some(i) = found {
            let path = std::path::PathBuf::from(std::ffi::OsStr::from_bytes(&plan.abs(i)));
            let mut moved = path.clone().into_os_string();
            moved.push(".moved");
            if std::fs::rename(&path, &moved).is_ok() {
                let _ = std::os::unix::fs::symlink(&moved, &path);
            }
        }
    }
}

/// Failure injection (`verify-copy`): flip the archive's last byte, in the manifest copy,
/// which a zstd decoder skips.
fn damage_last_byte(read: &File, write: &File, size: u64) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let mut last = [0u8];
    read.read_exact_at(&mut last, size.saturating_sub(1))?;
    write.write_all_at(&[!last[0]], size.saturating_sub(1))
}

/// Failure injection for a change between the walk and the archiving (DESIGN §1.2): once
/// per run, `replace-file`, `replace-dir` and `replace-fifo` put another file of the same
/// size, a directory or a FIFO in place of the first file to archive (moved to `NAME.moved`).
fn simulate_replacement(plan: &Plan) {
    static DONE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let Some(step) = ["replace-file", "replace-dir", "replace-fifo"]
        .into_iter()
        .find(|step| crate::fault::active(step))
    else {
        return;
    };
    if DONE.swap(true, std::sync::atomic::Ordering::Relaxed) {
        return;
    }
    let Some(i) = plan.to_archive().find(|&i| plan.nodes[i].st.is_file()) else {
        return;
    };
    let path = std::path::PathBuf::from(std::ffi::OsStr::from_bytes(&plan.abs(i)));
    let size = plan.nodes[i].st.size as usize;
    let mut moved = path.clone().into_os_string();
    moved.push(".moved");
    if std::fs::rename(&path, &moved).is_err() {
        return;
    }
    let _ = match step {
        "replace-file" => std::fs::write(&path, vec![b'#'; size]),
        "replace-dir" => std::fs::create_dir(&path),
        _ => nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o644))
            .map_err(std::io::Error::from),
    };
}

fn subtree_has_removal(plan: &Plan, idx: usize) -> bool {
    let mut stack = vec![idx];
    while let Some(i) = stack.pop() {
        if plan.nodes[i].fate == Fate::Remove {
            return true;
        }
        stack.extend(plan.children(i));
    }
    false
}

struct ArchiveContext<'a> {
    prog: &'a str,
    cwd: &'a [u8],
    /// The current directory as the shell names it ([`logical_cwd`]).
    logical_cwd: &'a [u8],
    opts_operands: &'a [OsString],
    config: &'a crate::config::Config,
    /// Whether a person can be asked (stdin is a terminal, or ---presume-input-tty).
    interactive: bool,
    euid: u32,
    /// ctimes saferm changed itself while archiving ([`OwnChange`]).
    own_changes: std::sync::Mutex<Vec<OwnChange>>,
    /// Nodes warned about (sockets), so that writing the archive again does not repeat it.
    warned: std::sync::Mutex<HashSet<usize>>,
    /// Regular files that were open for writing elsewhere when they were read, or that the
    /// kernel would not say about ([`sys::writers`]): their content is hashed again just
    /// before their unlink ([`walk::Plan::recheck`]).
    written_elsewhere: std::sync::Mutex<HashSet<usize>>,
}

enum Archived {
    /// Archived (with the deletion's id, unless there was nothing left to archive).
    Yes(Option<String>),
    Declined,
}

/// Archive everything the plan removes, seal it, verify it and write its manifest. A source
/// that fails (unreadable, changed) keeps that object and its ancestors, and the archive is
/// written again without it; a store failure fails the whole run.
fn archive_plan(ctx: &ArchiveContext<'_>, store: &Store, plan: &mut Plan) -> Result<Archived> {
    let first: Vec<usize> = plan.to_archive().collect();
    if !large_deletion_allowed(ctx, store, plan, &first)? {
        return Ok(Archived::Declined);
    }
    drop(first);
    // Signals are caught from here on: Ctrl-C while waiting for the lock ends the wait, and
    // the run dies of it with nothing removed.
    crate::signal::catch();
    sys::ignore_lease_breaks();
    let _lock = store.lock_shared_patiently(|holder| {
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

/// Bytes of file content among these nodes.
fn content_bytes(plan: &Plan, order: &[usize]) -> u64 {
    order
        .iter()
        .filter(|&&i| plan.nodes[i].st.is_file())
        .map(|&i| plan.nodes[i].st.size)
        .sum()
}

/// Above `confirm_above`, ask a person once before archiving; above `refuse_above`, refuse
/// when nobody can be asked. Scripts never get a surprise prompt.
fn large_deletion_allowed(
    ctx: &ArchiveContext<'_>,
    store: &Store,
    plan: &Plan,
    order: &[usize],
) -> Result<bool> {
    // What the archive will hold: a sparse file's data, not its holes.
    let total = order
        .iter()
        .map(|&i| crate::estimate::stored_bound(&plan.nodes[i].st))
        .sum();
    let limits = (
        ctx.config.confirm_above.value,
        ctx.config.refuse_above.value,
    );
    if matches!(
        limits,
        (
            crate::config::Size::Unlimited,
            crate::config::Size::Unlimited
        )
    ) {
        return Ok(true);
    }
    let fs = store.fs_bytes().unwrap_or(u64::MAX);
    if ctx.interactive {
        if let Some(limit) = ctx.config.confirm_above.value.bytes_of(fs) {
            if total > limit {
                let question = format!(
                    "{}: archive {} before removing? [y/N] ",
                    ctx.prog,
                    human(total)
                );
                return Ok(walk::yes_no(&question));
            }
        }
    } else if let Some(limit) = ctx.config.refuse_above.value.bytes_of(fs) {
        if total > limit {
            return Err(anyhow!(
                "{} is more than refuse_above ({}, from {}) allows without a terminal; delete for good with --no-archive, or raise refuse_above",
                human(total),
                human(limit),
                ctx.config.refuse_above.source
            ));
        }
    }
    Ok(true)
}

/// Refuse before writing when the archive could not fit, leaving `min_free` free: its size
/// is at most the data (holes not included) plus headers (zstd never grows data by more
/// than a few bytes per block). When that is more than is free, a sample of the data says
/// how well it compresses ([`crate::estimate`]); if that estimate is wrong, the write
/// fails with ENOSPC and nothing is lost.
fn check_space(
    ctx: &ArchiveContext<'_>,
    store: &Store,
    plan: &Plan,
    order: &[usize],
) -> Result<()> {
    let headers = 1u64 << 20;
    let mut need = headers;
    for &i in order {
        let data = crate::estimate::stored_bound(&plan.nodes[i].st);
        need = need.saturating_add(data.div_ceil(512) * 512 + 2048);
    }
    if crate::fault::active("skip-space-check") {
        return Ok(()); // to test ENOSPC during the write itself
    }
    let free = if crate::fault::active("space") {
        0
    } else {
        store.free_bytes()?
    };
    let fs_bytes = store.fs_bytes().unwrap_or(0);
    let floor = ctx
        .config
        .min_free
        .value
        .bytes_of(fs_bytes)
        .unwrap_or_default();
    if free < need.saturating_add(floor) {
        let files: Vec<(usize, &crate::sys::Stat)> = order
            .iter()
            .filter(|&&i| plan.nodes[i].st.is_file())
            .map(|&i| (i, &plan.nodes[i].st))
            .collect();
        let level = ctx.config.zstd_level.value;
        let packed = crate::estimate::compressed_bound(&files, &|i| plan.abs(i), level);
        need = headers.saturating_add(packed);
        for &i in order {
            need = need.saturating_add(2048);
            if plan.nodes[i].st.is_file() {
                need = need.saturating_add(512); // padding
            }
        }
    }
    if free < need.saturating_add(floor) {
        let deficit = need.saturating_add(floor) - free;
        return Err(anyhow!(
            "not enough space in the store {} (needs up to {}, {} free, {} to be left free); {}",
            store.root().display(),
            human(need),
            human(free),
            human(floor),
            room_advice(store, deficit)
        ));
    }
    Ok(())
}

/// What the user can run to make `deficit` bytes of room: a purge that frees that much if
/// the store holds it (`--keep 0`, since the newest deletions are otherwise spared and may be
/// all there is), else the truth that purging is not enough.
fn room_advice(store: &Store, deficit: u64) -> String {
    let held = store.scan().map(|s| s.archive_bytes()).unwrap_or(0);
    let no_archive = "or delete for good with --no-archive";
    if held >= deficit {
        format!(
            "make room with 'unrm --purge --keep 0 --max-size {}' (the oldest deletions go \
             first; add --dry-run to see which), {no_archive}",
            size_at_most(held - deficit)
        )
    } else if held > 0 {
        format!(
            "the store holds only {} of deletions: free space on its filesystem, {no_archive}",
            human(held)
        )
    } else {
        format!("free space on the store's filesystem, {no_archive}")
    }
}

/// `bytes` rounded down to a size `unrm --max-size` takes (`812MiB`), so that a purge to it
/// frees at least as much as asked.
fn size_at_most(bytes: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (unit, name) in UNITS {
        if bytes / unit >= 10 {
            return format!("{}{name}", bytes / unit);
        }
    }
    bytes.to_string()
}

enum Attempt {
    /// Archived as this deletion, with the archived hashes of the files to hash again
    /// before their unlink.
    Done(String, HashMap<usize, walk::ArchivedHash>),
    /// These nodes could not be archived (or verified), for these reasons.
    Retry(Vec<(usize, String)>),
}

/// One attempt at writing, sealing and verifying the archive.
/// Archive `order` (the plan's nodes to archive), verify it and make it durable.
fn write_archive(
    ctx: &ArchiveContext<'_>,
    store: &Store,
    plan: &Plan,
    order: &[usize],
) -> Result<Attempt> {
    simulate_replacement(plan);
    let now = chrono::Utc::now();
    let first = plan
        .roots
        .iter()
        .find(|&&r| subtree_has_removal(plan, r))
        .map(|&r| plan.display(r))
        .unwrap_or_default();
    let id = store::new_id(now, &first);
    let month = store::month_of(now);
    let archive_name = store::layout::archive_name(&id);
    let mut pending = store.create_archive(&month, &archive_name)?;
    let file = pending
        .file
        .take()
        .ok_or_else(|| anyhow!("archive file already taken"))?;
    let rel = pending.rel.clone();
    // A large archive is read back and checked while it is written, on other threads; a
    // small one after it is sealed (a thread costs more than decoding it).
    let streamed = content_bytes(plan, order) >= STREAM_VERIFY_BYTES;
    let make_durable = |file: &File| -> Result<()> {
        crate::fault::check("fsync").context("cannot sync the archive")?;
        sys::fsync(file).context("cannot sync the archive")?;
        pending.sync_dir()
    };
    let written = std::thread::scope(|scope| -> Result<Written> {
        let mut stream = None;
        let mut verifier = None;
        if streamed {
            let file = store.open_published(&rel)?;
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
                let mut expected =
                    crate::archive::verify::Streamed::new(rx, hash_tx, held_by_verifier);
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
            verifier = Some(spawned.context("cannot start the archive verifier")?);
            stream = Some(Streaming {
                growth,
                entries: tx,
                held,
                hashes: hash_rx,
                left_to_verifier: std::cell::Cell::new(0),
            });
        }
        let result = fill_archive(ctx, plan, order, file, &id, now, stream.as_ref());
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
            damage_last_byte(&store.open_published(&rel)?, &sealed.file, sealed.size)?;
        }
        // Making the archive durable (fsync the file, then its directory) and reading it
        // back are independent, so they overlap; both must succeed before the manifest is
        // published and anything is unlinked. What verification reads is the file's bytes
        // as the kernel holds them either way.
        let read_back = |written_hash: &str| -> Result<()> {
            let file = store.open_published(&rel)?;
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
        };
        let (durable, verified) = match (verifier, sealed.blake3.as_deref()) {
            // The verifier is reading the last of the archive: sync meanwhile. It hashed
            // the file as it read it, all but the manifest copy, which its decoder skips:
            // that is compared here.
            (Some(v), _) => {
                let durable = Some(make_durable(&sealed.file));
                let verified = v
                    .join()
                    .unwrap_or_else(|_| Err(anyhow!("the archive verifier failed")))
                    .and_then(|hash| {
                        let back = store.open_published(&rel)?;
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
                let syncing =
                    std::thread::Builder::new().spawn_scoped(scope, move || make_durable(&file));
                let verified = read_back(hash);
                let durable = match syncing {
                    Ok(t) => t
                        .join()
                        .unwrap_or_else(|_| Err(anyhow!("cannot sync the archive"))),
                    Err(_) => make_durable(&sealed.file),
                };
                (Some(durable), verified)
            }
            // A thread costs more than decoding a small archive. Its bytes go to the disk
            // while it is read back and its manifest written; the fsync comes after that
            // (below) and waits for less.
            (None, Some(hash)) => {
                crate::sys::start_writeback(&sealed.file);
                (None, read_back(hash))
            }
            (None, None) => bail!("internal error: the archive was neither hashed nor read back"),
        };
        Ok(Written::Sealed(Box::new(Checked {
            sealed,
            manifest,
            durable,
            verified,
        })))
    });
    let Checked {
        sealed,
        mut manifest,
        durable,
        verified,
    } = match written {
        Ok(Written::Sealed(b)) => *b,
        Ok(Written::Retry(failures)) => {
            store.discard_archive(&pending);
            return Ok(Attempt::Retry(failures));
        }
        Err(e) => {
            store.discard_archive(&pending);
            return Err(e);
        }
    };
    crate::timing::mark("archive verified");
    if let Some(Err(e)) = durable {
        store.discard_archive(&pending);
        return Err(e);
    }
    if let Err(e) = verified {
        store.discard_archive(&pending);
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
                return Ok(Attempt::Retry(failures));
            }
        }
        return Err(e.context("the archive did not verify"));
    }
    let Some(blake3) = sealed.blake3 else {
        store.discard_archive(&pending);
        bail!("internal error: the archive's blake3 is unknown");
    };
    if manifest
        .entries
        .list
        .iter()
        .any(|e| e.kind == Kind::File && e.blake3.is_none())
    {
        store.discard_archive(&pending);
        bail!("internal error: a file's blake3 is unknown");
    }
    manifest.archive = Some(manifest::ArchiveInfo {
        path: rel.clone(),
        size: sealed.size,
        blake3,
    });
    manifest.frames = sealed.frames;
    let tmp = match write_manifest(store, &manifest) {
        Ok(tmp) => tmp,
        Err(e) => {
            store.discard_archive(&pending);
            return Err(e);
        }
    };
    // Published only once the archive is durable (a small one is made so only now).
    let published = match durable {
        Some(_) => Ok(()),
        None => make_durable(&sealed.file),
    }
    .and_then(|()| {
        store
            .publish(
                &tmp,
                store::layout::MANIFESTS,
                &month,
                &store::layout::manifest_name(&manifest.id),
            )
            .map(|_| ())
    });
    drop(sealed.file);
    if let Err(e) = published {
        store.discard_temp(&tmp);
        store.discard_archive(&pending);
        return Err(e);
    }
    crate::timing::mark("archive durable, manifest published");
    let recheck = ctx
        .written_elsewhere
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
        .unwrap_or_default();
    Ok(Attempt::Done(manifest.id.clone(), recheck))
}

/// Write the manifest to a temp file in the store, to be published (renamed into
/// `manifests/`) once the archive is durable; returns the temp file's name.
fn write_manifest(store: &Store, manifest: &Manifest<Entries>) -> Result<std::ffi::CString> {
    use std::io::Write;
    let (tmp, mut file) =
        store.create_temp(store::layout::manifest_name(&manifest.id).as_bytes())?;
    let written = (|| -> Result<()> {
        crate::fault::check("manifest")?;
        {
            // About 300 bytes of JSON per entry; no 256 KiB buffer for a one-file deletion.
            let capacity = manifest
                .entries
                .list
                .len()
                .saturating_mul(512)
                .clamp(8 << 10, 256 << 10);
            let mut w = std::io::BufWriter::with_capacity(capacity, &mut file);
            manifest.write_json(&mut w)?;
            w.flush()?;
        }
        Ok(())
    })();
    if let Err(e) = written {
        store.discard_temp(&tmp);
        return Err(e.context("cannot write the manifest"));
    }
    Ok(tmp)
}

/// A reader that flips one byte in the middle, for the `verify` failure-injection test.
struct Damaged<R> {
    inner: R,
    pos: u64,
    flip_at: u64,
}

impl Damaged<std::io::BufReader<File>> {
    fn new(file: File) -> Self {
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        Damaged {
            inner: std::io::BufReader::new(file),
            pos: 0,
            flip_at: len / 2,
        }
    }
}

impl<R: std::io::Read> std::io::Read for Damaged<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if self.flip_at >= self.pos && self.flip_at < self.pos + n as u64 {
            buf[(self.flip_at - self.pos) as usize] ^= 0x20;
        }
        self.pos += n as u64;
        Ok(n)
    }
}

/// A sealed archive, its manifest, and how far it got.
struct Checked<'p> {
    sealed: crate::archive::Sealed,
    manifest: Manifest<Entries<'p>>,
    /// Whether it was made durable (`None`: not synced yet).
    durable: Option<Result<()>>,
    verified: Result<()>,
}

/// How writing an archive ended.
enum Written<'p> {
    Sealed(Box<Checked<'p>>),
    Retry(Vec<(usize, String)>),
}

enum Filled<'p> {
    /// The archive and its manifest.
    Sealed(Box<(crate::archive::Sealed, Manifest<Entries<'p>>)>),
    /// These nodes could not be archived, for these reasons.
    SourceFailed(Vec<(usize, String)>),
}

/// Stream every object to archive into `file`, parents first, through directory fds.
fn fill_archive<'p>(
    ctx: &ArchiveContext<'_>,
    plan: &'p Plan,
    order: &[usize],
    file: File,
    id: &str,
    now: chrono::DateTime<chrono::Utc>,
    stream: Option<&Streaming>,
) -> Result<Filled<'p>> {
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
    let mut progress = crate::progress::Progress::new(total);
    let level = ctx.config.zstd_level.value;
    let mut writer = ArchiveWriter::new(file, level, threads, expected, order.len())
        .context("cannot start the archive")?;
    if let Some(s) = stream {
        writer
            .report_growth(s.growth.clone())
            .context("cannot start the archive")?;
    }
    // Which nodes must be visited: archived ones and the directories above them.
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
    let mut archived = vec![false; plan.nodes.len()];
    for &i in order {
        archived[i] = true;
    }
    let mut content: Vec<u8> = Vec::new();
    // The operands this archive holds something of: one whose objects are all kept is not
    // named in the manifest, so that unrm never offers it.
    let roots: Vec<usize> = plan.roots.iter().copied().filter(|&r| needed[r]).collect();
    let operand_pos: HashMap<usize, usize> = roots
        .iter()
        .enumerate()
        .map(|(pos, &r)| (plan.nodes[r].operand, pos))
        .collect();
    let mut entries = Entries {
        plan,
        names: Names::default(),
        operand_pos,
        list: Vec::with_capacity(order.len()),
    };
    let mut hard_links: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
    // Many files: watch for a cold tree, and read ahead when it is one.
    let mut prefetch = (order.len() >= 2 * crate::archive::prefetch::PROBE_EVERY)
        .then(|| crate::archive::prefetch::Prefetch::new(plan, order, WHOLE_READ_BYTES));
    let mut not_archived: Vec<Entry> = Vec::new();
    let mut totals = manifest::Totals::default();
    // The directories above the node being archived: (node, length of its path in `path`),
    // and their descriptors, a bounded number of them open.
    let mut stack: Vec<(usize, usize)> = Vec::new();
    let mut fds = DirStack::new(sys::AT_FDCWD);
    let mut path: Vec<u8> = Vec::new();
    let mut buf_first = true;

    // A source that fails (unreadable, changed) fails only its entry: its subtree is
    // skipped, the pass goes on, and every failure of the pass is reported at once; the
    // caller then writes the archive again without them.
    let mut failures: Vec<(usize, String)> = Vec::new();
    let mut dead = vec![false; plan.nodes.len()];
    macro_rules! fail {
        ($failure:expr) => {{
            let failure: (usize, String) = $failure;
            dead[failure.0] = true;
            failures.push(failure);
            continue;
        }};
    }

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
        if buf_first && crate::fault::active("signal") {
            crate::signal::raise_interrupt();
        }
        buf_first = false;
        let parent = plan.nodes[idx].parent();
        let mut moved = None;
        while stack.last().is_some_and(|(top, _)| Some(*top) != parent) {
            stack.pop();
            if let Err(e) = fds.pop() {
                moved = Some(e);
                break;
            }
        }
        if let Some(e) = moved {
            // A directory above is not the one that was there: this operand's tree moved
            // while it was archived, and all of it stays.
            let top = stack.first().map_or(idx, |&(top, _)| top);
            stack.clear();
            fds = DirStack::new(sys::AT_FDCWD);
            // This node is below it (else, a root, it comes in the next pass).
            dead[idx] = parent.is_some();
            fail!(source_failed(top, &e));
        }
        match (parent, stack.last()) {
            (None, _) => {
                path.clear();
                path.extend_from_slice(plan.root_abs.get(&idx).map_or(&[][..], |p| p));
            }
            (Some(_), Some(&(_, len))) => {
                path.truncate(len);
                rules::push_child(&mut path, plan.nodes[idx].name.as_bytes());
            }
            (Some(_), None) => return Err(anyhow!("internal error: lost the parent directory")),
        }
        let dirfd: RawFd = match fds.top() {
            Ok(fd) => fd,
            Err(e) => fail!(source_failed(idx, &e)),
        };
        let node = &plan.nodes[idx];
        let st = node.st;
        let is_archived = archived[idx];
        writer
            .entry_boundary()
            .context("cannot write the archive")?;
        let offset = writer.position();
        let abs: &[u8] = &path;
        let mut entry = entries.base(idx, abs, offset);

        if st.is_dir() {
            let mut xattrs = Vec::new();
            if node.unreadable.is_none() {
                let fd = match sys::open_dir_nofollow(dirfd, &node.name)
                    .and_then(|fd| same_object(fd, &st))
                {
                    Ok(fd) => fd,
                    Err(e) => fail!(source_failed(idx, &e)),
                };
                if is_archived {
                    xattrs = match sys::xattrs(fd.as_raw_fd()) {
                        Ok(x) => x,
                        Err(e) => fail!(source_failed(idx, &e)),
                    };
                }
                if node.has_children() {
                    stack.push((idx, abs.len()));
                    fds.push(fd, (st.dev, st.ino));
                }
            } else if is_archived && st.uid == ctx.euid {
                match owners_dir_xattrs(dirfd, node, idx) {
                    Ok(x) => xattrs = x,
                    Err(failed) => fail!(failed),
                }
            }
            if is_archived {
                entry.xattrs = xattr_names(&xattrs);
                let meta = meta_for(&entry, abs, tar::EntryType::Directory, None, None, &xattrs);
                append(&mut writer, &meta, None, idx)?;
                totals.dirs += 1;
                record(&mut entries, idx, stream, entry, None, None);
            }
            continue;
        }
        if !is_archived {
            continue;
        }
        let ft = st.file_type();
        if ft == libc::S_IFSOCK {
            entry.kind = Kind::Socket;
            let msg = format!(
                "{}: warning: {} is a socket: removed without an archive copy (it holds no data)\n",
                ctx.prog,
                quote(&plan.display(idx))
            );
            // Once, however many times the archive is written.
            if ctx.warned.lock().is_ok_and(|mut w| w.insert(idx)) {
                stderr_write(msg.as_bytes());
            }
            not_archived.push(entry);
            continue;
        }
        if st.nlink > 1 {
            if let Some(first) = hard_links.get(&(st.dev, st.ino)) {
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
                append(&mut writer, &meta, None, idx)?;
                entry.link = Some(PathBytes::new(&target));
                record(&mut entries, idx, stream, entry, None, None);
                continue;
            }
            hard_links.insert((st.dev, st.ino), abs.to_vec());
        }
        // A small file's content, kept for the verifier, which works out its blake3.
        let mut handed_over = false;
        let mut sparse = None;
        match ft {
            libc::S_IFREG => {
                // Not checked against the walk's stat until after the read (below): an
                // object swapped in meanwhile is caught there, without an fstat per file.
                // The user's own file they may not read: its xattrs come with it.
                let (fd, st, owners_xattrs) = match sys::open_file_nofollow(dirfd, &node.name) {
                    Ok(fd) => (fd, st, None),
                    Err(e) if e.raw_os_error() == Some(libc::EACCES) && st.uid == ctx.euid => {
                        match open_as_owner(ctx, dirfd, node, idx, &e) {
                            Ok((fd, st, xattrs)) => (fd, st, Some(xattrs)),
                            Err(failed) => fail!(failed),
                        }
                    }
                    Err(e) => fail!(source_failed(idx, &e)),
                };
                // A writable shared mapping changes the content without a new mtime or
                // ctime: a file open for writing elsewhere is hashed again before its unlink.
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
                    Err(e) => fail!(failed(&e, fd.as_raw_fd())),
                };
                entry.xattrs = xattr_names(&xattrs);
                let meta = meta_for(&entry, abs, tar::EntryType::Regular, None, None, &xattrs);
                let file = File::from(fd);
                if let Some(p) = prefetch.as_mut() {
                    p.reading(plan, idx, &file);
                }
                let mut hasher = blake3::Hasher::new();
                // Fewer blocks than the size needs: maybe holes, stored as such.
                let regions = if st.blocks.saturating_mul(512) < st.size {
                    match crate::archive::sparse::data_map(&file, st.size) {
                        Ok(r) => r,
                        Err(e) => fail!(failed(&e, file.as_raw_fd())),
                    }
                } else {
                    None
                };
                let appended = if let Some(regions) = regions {
                    crate::archive::sparse::append(&mut writer, &meta, &file, regions).map(
                        |(hash, read)| {
                            entry.blake3_blocks = Some(hash);
                            sparse = Some(read);
                        },
                    )
                } else if st.size <= WHOLE_READ_BYTES {
                    // Small files in one read. When verification runs alongside and there
                    // is room, it gets the content to compare and hashes it; otherwise it
                    // is hashed here, in one call.
                    handed_over = stream.is_some_and(|s| s.held.reserve(st.size as usize));
                    content.clear();
                    content.reserve_exact(st.size as usize);
                    let mut limited =
                        std::io::Read::take(FaultyRead::new(&file, &node.name), st.size);
                    if let Err(e) = std::io::Read::read_to_end(&mut limited, &mut content) {
                        fail!(failed(&e, file.as_raw_fd()));
                    }
                    if !handed_over {
                        hasher.update(&content);
                    }
                    writer.append(&meta, Some(&mut &content[..]))
                } else {
                    let buffered = std::io::BufReader::with_capacity(
                        1 << 20,
                        FaultyRead::new(&file, &node.name),
                    );
                    let mut reader = Hashing {
                        inner: buffered,
                        hasher,
                    };
                    let r = writer.append(&meta, Some(&mut reader));
                    hasher = reader.hasher;
                    r
                };
                match appended {
                    Ok(()) => {}
                    Err(AppendError::Source(e)) => fail!(failed(&e, file.as_raw_fd())),
                    Err(AppendError::Changed) => fail!(changed(idx)),
                    Err(AppendError::Archive(e)) => {
                        return Err(anyhow::Error::new(e).context("cannot write the archive"))
                    }
                }
                // Modified in place while it was read (same size): what we hold is not it.
                match sys::fstat(file.as_raw_fd()) {
                    Ok(now) if unchanged(&now, &st) => {}
                    Ok(_) => fail!(changed(idx)),
                    Err(e) => fail!(source_failed(idx, &e)),
                }
                if !handed_over && sparse.is_none() {
                    entry.blake3 = Some(hasher.finalize().to_hex().to_string());
                }
                progress.advance(st.size);
                totals.files += 1;
                totals.bytes += st.size;
            }
            libc::S_IFLNK => {
                let target = match sys::readlinkat(dirfd, &node.name) {
                    Ok(t) => t,
                    Err(e) => fail!(source_failed(idx, &e)),
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
                append(&mut writer, &meta, None, idx)?;
                entry.link = Some(PathBytes::new(&target));
            }
            libc::S_IFIFO | libc::S_IFCHR | libc::S_IFBLK => {
                let (kind, etype) = match ft {
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
                append(&mut writer, &meta, None, idx)?;
            }
            _ => {
                fail!(source_failed(
                    idx,
                    &std::io::Error::other("unknown file type"),
                ))
            }
        }
        record(
            &mut entries,
            idx,
            stream,
            entry,
            handed_over.then_some(&mut content),
            sparse,
        );
    }
    drop(fds);
    if !failures.is_empty() {
        return Ok(Filled::SourceFailed(failures));
    }
    totals.entries = entries.list.len() as u64;
    let mut canonical = HashMap::new();
    let mut manifest = Manifest {
        format: manifest::MANIFEST_VERSION,
        id: id.to_string(),
        created: now.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        host: nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default(),
        user: entries
            .names
            .user(sys::geteuid())
            .map(|u| u.to_string())
            .unwrap_or_default(),
        uid: sys::geteuid(),
        cwd: PathBytes::new(ctx.cwd),
        argv: std::env::args_os()
            .map(|a| PathBytes::new(a.as_bytes()))
            .collect(),
        operands: roots
            .iter()
            .map(|&r| {
                let given = ctx.opts_operands[plan.nodes[r].operand].as_bytes();
                let absolute = plan.abs(r);
                manifest::Operand {
                    given: PathBytes::new(given),
                    typed: typed_path(ctx.logical_cwd, given, &absolute, &mut canonical)
                        .map(|t| PathBytes::new(&t)),
                    absolute: PathBytes::new(&absolute),
                }
            })
            .collect(),
        totals,
        archive: None,
        zstd_level: level,
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

/// What the archive is being verified against while it is written: how far it is in its
/// file, and its entries as they are written.
struct Streaming {
    growth: Arc<Growth>,
    entries: mpsc::Sender<crate::archive::verify::Written>,
    /// Source content on its way to the verifier.
    held: Arc<crate::archive::verify::Held>,
    /// The blake3s of content handed over unhashed, worked out by the verifier.
    hashes: mpsc::Receiver<(usize, Option<String>)>,
    /// How many of those to wait for.
    left_to_verifier: std::cell::Cell<usize>,
}

/// Add an entry to the manifest, and pass it on to verification when that runs alongside,
/// with the file's `content` as read (taken, leaving an empty buffer) if it holds it: room
/// for it was reserved in [`Streaming::held`]. If the entry has no blake3 yet, the
/// verifier works it out ([`blake3s_from_verifier`]). A sparse file comes with its map,
/// which the verifier compares with the archive's.
fn record(
    entries: &mut Entries<'_>,
    node: usize,
    stream: Option<&Streaming>,
    mut entry: Entry,
    content: Option<&mut Vec<u8>>,
    sparse: Option<crate::archive::sparse::SparseRead>,
) {
    // Fault `verify-entry=NAME`: the manifest says another mode than the archive holds.
    let mode_flip = entry
        .path
        .bytes()
        .is_some_and(|p| crate::fault::names("verify-entry", &p));
    if mode_flip {
        entry.mode ^= 0o001;
    }
    let recorded = Recorded {
        node,
        kind: entry.kind,
        mode_flip,
        blake3: entry
            .blake3_blocks
            .as_deref()
            .or(entry.blake3.as_deref())
            .and_then(hash_bytes),
        blocks: entry.blake3_blocks.is_some(),
        offset: entry.offset,
        extra: (entry.link.is_some()
            || !entry.xattrs.is_empty()
            || entry.rdev_major.is_some()
            || entry.rdev_minor.is_some())
        .then(|| {
            Box::new(Extra {
                link: entry.link.clone(),
                xattrs: entry.xattrs.clone(),
                rdev: (entry.rdev_major, entry.rdev_minor),
            })
        }),
    };
    // What is kept must give back the entry exactly.
    debug_assert_eq!(entries.entry(&recorded), entry);
    if let Some(s) = stream {
        let content = content.map(|c| std::mem::replace(c, s.held.buffer()));
        if content.is_some() && entry.blake3.is_none() {
            s.left_to_verifier.set(s.left_to_verifier.get() + 1);
        }
        // A closed channel means verification has already failed; the writer learns that
        // when it joins it.
        let _ = s.entries.send(crate::archive::verify::Written {
            index: entries.list.len(),
            entry,
            content,
            sparse,
        });
    }
    entries.list.push(recorded);
}

/// A blake3 in hex as its 32 bytes.
fn hash_bytes(hex: &str) -> Option<[u8; 32]> {
    blake3::Hash::from_hex(hex).ok().map(|h| *h.as_bytes())
}

/// Fill in the blake3s left to the verifier, once every entry has been written. If it
/// stops early, some stay missing: it failed, and the writer learns why when it joins it.
fn blake3s_from_verifier(entries: &mut [Recorded], stream: Option<&Streaming>) {
    let Some(s) = stream else {
        return;
    };
    for _ in 0..s.left_to_verifier.get() {
        let Ok((i, hash)) = s.hashes.recv() else {
            return;
        };
        // None: that entry differs in the archive, which verification reports.
        if let Some(e) = entries.get_mut(i) {
            e.blake3 = hash.as_deref().and_then(hash_bytes);
        }
    }
}

/// A manifest entry as the writer keeps it until the manifest is written out: only what
/// its plan node does not say. The path, the stat fields and the owner names come from the
/// node when it is written ([`Entries::entry`]). About 64 bytes, where an [`Entry`] with
/// its strings takes over 400: 200,000 files in one directory would otherwise hold 80 MB
/// of manifest in memory (issue 11 §1.4).
struct Recorded {
    node: usize,
    kind: Kind,
    /// Fault `verify-entry=NAME`: the manifest says another mode than the archive holds.
    mode_flip: bool,
    /// The content's hash: its `blake3`, or for a sparse file its `blake3_blocks`.
    blake3: Option<[u8; 32]>,
    blocks: bool,
    offset: u64,
    /// What few entries have: a link target, extended attributes, a device number.
    extra: Option<Box<Extra>>,
}

struct Extra {
    link: Option<PathBytes>,
    xattrs: Vec<String>,
    rdev: (Option<u32>, Option<u32>),
}

/// The entries of the archive being written, kept compact ([`Recorded`]), with what it
/// takes to give them back as manifest entries: they serialise as the list of [`Entry`].
pub(crate) struct Entries<'p> {
    plan: &'p Plan,
    names: Names,
    /// Each command-line operand's index among the manifest's operands (the roots).
    operand_pos: HashMap<usize, usize>,
    list: Vec<Recorded>,
}

impl Entries<'_> {
    /// The entry of plan node `idx` at `abs`, starting at `offset` in the tar stream, as
    /// its stat gives it; the writer adds the rest.
    fn base(&mut self, idx: usize, abs: &[u8], offset: u64) -> Entry {
        let node = &self.plan.nodes[idx];
        let user = self.names.user(node.st.uid);
        let group = self.names.group(node.st.gid);
        self.of_node(idx, abs, user, group, offset)
    }

    fn of_node(
        &self,
        idx: usize,
        abs: &[u8],
        user: Option<Arc<str>>,
        group: Option<Arc<str>>,
        offset: u64,
    ) -> Entry {
        let node = &self.plan.nodes[idx];
        let st = node.st;
        let kind = match st.file_type() {
            libc::S_IFDIR => Kind::Dir,
            libc::S_IFLNK => Kind::Symlink,
            _ => Kind::File,
        };
        Entry {
            path: PathBytes::new(abs),
            kind,
            mode: st.mode & 0o7777,
            uid: st.uid,
            gid: st.gid,
            user,
            group,
            size: if st.is_file() { st.size } else { 0 },
            mtime: st.mtime,
            mtime_nsec: st.mtime_nsec.clamp(0, 999_999_999) as u32,
            dev: st.dev,
            ino: st.ino,
            nlink: st.nlink,
            rdev_major: None,
            rdev_minor: None,
            blake3: None,
            blake3_blocks: None,
            link: None,
            xattrs: Vec::new(),
            offset,
            // Index into the manifest's operands (the roots), not the command line's.
            operand: self.operand_pos.get(&node.operand).copied().unwrap_or(0),
        }
    }

    /// A recorded entry as the manifest holds it.
    fn entry(&self, r: &Recorded) -> Entry {
        let st = &self.plan.nodes[r.node].st;
        // Every owner name was looked up when its entry was written.
        let user = self.names.known_user(st.uid);
        let group = self.names.known_group(st.gid);
        let mut e = self.of_node(r.node, &self.plan.abs(r.node), user, group, r.offset);
        e.kind = r.kind;
        if r.kind != Kind::File {
            e.size = 0;
        }
        if r.mode_flip {
            e.mode ^= 0o001;
        }
        let hash = r.blake3.map(|b| blake3::Hash::from(b).to_hex().to_string());
        if r.blocks {
            e.blake3_blocks = hash;
        } else {
            e.blake3 = hash;
        }
        if let Some(x) = &r.extra {
            e.link = x.link.clone();
            e.xattrs = x.xattrs.clone();
            (e.rdev_major, e.rdev_minor) = x.rdev;
        }
        e
    }

    /// The entries one at a time, for verification.
    fn replay(&self) -> Replay<'_, '_> {
        Replay {
            entries: self,
            next: 0,
            current: None,
        }
    }
}

impl serde::Serialize for Entries<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.list.iter().map(|r| self.entry(r)))
    }
}

/// [`Entries`] handed to the verifier one at a time, each made when it is asked for.
struct Replay<'e, 'p> {
    entries: &'e Entries<'p>,
    next: usize,
    current: Option<Entry>,
}

impl crate::archive::verify::Expected for Replay<'_, '_> {
    fn next_entry(&mut self) -> Option<crate::archive::verify::Next<'_>> {
        let r = self.entries.list.get(self.next)?;
        self.next += 1;
        self.current = Some(self.entries.entry(r));
        self.current.as_ref().map(|e| (e, None, None))
    }

    fn left(&mut self) -> usize {
        self.entries.list.len().saturating_sub(self.next)
    }
}

fn append(
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
fn open_as_owner(
    ctx: &ArchiveContext<'_>,
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
        Err(sys::OwnerOpen::Failed(_)) => Err(source_failed(idx, denied)),
        Err(sys::OwnerOpen::Read(e)) => Err(source_failed(idx, &e)),
        Err(sys::OwnerOpen::ModeLeft(e)) => Err((
            idx,
            format!(
                "could not archive: could not put its mode back: {}",
                sys::strerror(&e)
            ),
        )),
    }
}

/// The extended attributes of a directory of the user's that the walk could not read (an
/// empty one, or rmdir fails as rm's does): read as its owner could after `chmod u+r`
/// ([`sys::open_as_owner`]). Directories are not compared by ctime before unlinking, so
/// the change is not recorded. Without `/proc`, or if it cannot be opened, it is archived
/// without them, as before.
fn owners_dir_xattrs(
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
        Err(sys::OwnerOpen::Failed(_)) => Ok(Vec::new()),
        Err(sys::OwnerOpen::NotExpected) => Err(changed(idx)),
        Err(sys::OwnerOpen::Read(e)) => Err(source_failed(idx, &e)),
        Err(sys::OwnerOpen::ModeLeft(e)) => Err((
            idx,
            format!(
                "could not archive: could not put its mode back: {}",
                sys::strerror(&e)
            ),
        )),
    }
}

/// Extended attributes: names and values.
type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

/// A ctime saferm changed itself, giving its user read permission on a file of theirs for
/// as long as it took to open it: the inode `(dev, ino)` had ctime `before` when the walk
/// saw it, `after` once its mode was back.
struct OwnChange {
    dev: u64,
    ino: u64,
    before: (i64, i64),
    after: (i64, i64),
}

/// Let the identity check before each unlink (DESIGN §1.2) accept saferm's own changes
/// and no other: every name of such an inode that the walk saw with the ctime from before
/// the change is expected with the ctime from after it. Size, mtime, mode and the rest are
/// still compared as they were.
fn accept_own_changes(plan: &mut Plan, changes: Vec<OwnChange>) {
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

/// Node `idx` could not be archived, and why.
fn source_failed(idx: usize, e: &std::io::Error) -> (usize, String) {
    let reason = if e.raw_os_error() == Some(libc::ESTALE) {
        "changed while it was being archived".to_string()
    } else {
        format!("could not archive: {}", sys::strerror(e))
    };
    (idx, reason)
}

fn changed(idx: usize) -> (usize, String) {
    (idx, "changed while it was being archived".to_string())
}

/// Check that an fd opened by name is still the object the walk saw.
fn same_object(fd: OwnedFd, st: &Stat) -> std::io::Result<OwnedFd> {
    let now = sys::fstat(fd.as_raw_fd())?;
    if (now.dev, now.ino, now.file_type()) != (st.dev, st.ino, st.file_type()) {
        return Err(std::io::Error::from_raw_os_error(libc::ESTALE));
    }
    if !now.is_dir() && !unchanged(&now, st) {
        return Err(std::io::Error::from_raw_os_error(libc::ESTALE));
    }
    Ok(fd)
}

/// Reads a source file, failing like a bad disk where a fault says so: `read` at the first
/// read of every file, `read=NAME` at the first read of the file called NAME, `read-late=NAME`
/// once its first MiB has been read.
struct FaultyRead<'a> {
    file: &'a File,
    /// How many more bytes may be read before the injected error (`None`: no fault).
    fail_after: Option<u64>,
}

impl<'a> FaultyRead<'a> {
    fn new(file: &'a File, name: &std::ffi::CStr) -> Self {
        let name = name.to_bytes();
        let fail_after = if crate::fault::active("read") || crate::fault::names("read", name) {
            Some(0)
        } else if crate::fault::names("read-late", name) {
            Some(1 << 20)
        } else {
            None
        };
        FaultyRead { file, fail_after }
    }
}

impl std::io::Read for FaultyRead<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let len = buf.len();
        let buf = match self.fail_after {
            Some(0) => return Err(std::io::Error::from_raw_os_error(libc::EIO)),
            Some(left) => &mut buf[..len.min(usize::try_from(left).unwrap_or(usize::MAX))],
            None => buf,
        };
        let mut f = self.file;
        let n = f.read(buf)?;
        if let Some(left) = &mut self.fail_after {
            *left -= n as u64;
        }
        Ok(n)
    }
}

fn xattr_names(xattrs: &[(Vec<u8>, Vec<u8>)]) -> Vec<String> {
    xattrs
        .iter()
        .map(|(n, _)| String::from_utf8_lossy(n).into_owned())
        .collect()
}

fn meta_for<'a>(
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
fn tar_path(abs: &[u8]) -> &[u8] {
    let mut p = abs;
    while let Some(rest) = p.strip_prefix(b"/") {
        p = rest;
    }
    p
}

/// User and group names, looked up once per id and shared by every entry that has it.
#[derive(Default)]
struct Names {
    users: HashMap<u32, Option<Arc<str>>>,
    groups: HashMap<u32, Option<Arc<str>>>,
}

impl Names {
    fn user(&mut self, uid: u32) -> Option<Arc<str>> {
        self.users
            .entry(uid)
            .or_insert_with(|| crate::users::user(uid).map(|u| u.name.into()))
            .clone()
    }

    fn group(&mut self, gid: u32) -> Option<Arc<str>> {
        self.groups
            .entry(gid)
            .or_insert_with(|| crate::users::group_name(gid).map(Arc::from))
            .clone()
    }

    /// A name [`Names::user`] has already looked up.
    fn known_user(&self, uid: u32) -> Option<Arc<str>> {
        self.users.get(&uid).cloned().flatten()
    }

    fn known_group(&self, gid: u32) -> Option<Arc<str>> {
        self.groups.get(&gid).cloned().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purge_advice_sizes_round_down_to_a_parseable_size() {
        for (bytes, text) in [
            (0, "0"),
            (10_239, "10239"),
            (10_240, "10KiB"),
            (812 * (1 << 20) + 700_000, "812MiB"),
            (9 * (1 << 30), "9216MiB"),
            (12 * (1 << 30) + 5, "12GiB"),
        ] {
            assert_eq!(size_at_most(bytes), text);
            let parsed = crate::config::parse_size(text).expect("unrm takes it");
            assert!(parsed.bytes_of(0).is_some_and(|b| b <= bytes), "{text}");
        }
    }

    #[test]
    fn tar_paths_drop_the_leading_slash() {
        assert_eq!(tar_path(b"/home/u/x"), b"home/u/x");
        assert_eq!(tar_path(b"//x"), b"x");
    }

    #[test]
    fn sizes_read_like_people_write_them() {
        assert_eq!(human(512), "512 B");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(3 << 30), "3.0 GiB");
    }
}
