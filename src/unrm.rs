//! The `unrm` command: parse, resolve names against the catalog, then restore, list, show
//! or check.
//!
//! ```text
//! argv ─parse (unrm_cli)─▶ Options ─resolve (catalog)─▶ (deletion, source path)…
//!      ─group by deletion─▶ restore::restore (one pass over each archive) ─▶ summary
//! ```
//! Errors read `unrm: could not …` on stderr; problems with one NAME do not stop the others,
//! and any of them makes the exit status 1.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;

use anyhow::{Context, Result};

use crate::catalog::{self, Catalog, Header, IdMatch, Restored};
use crate::manifest::{Kind, PathBytes};
use crate::output::{local_time, stderr_write, stdout_write};
use crate::paths::{display, has_glob, is_under, split_parent, PathMap};
use crate::quote::quote;
use crate::restore::{self, Report, RestoreOptions, Target};
use crate::store::Store;
use crate::sys;
use crate::unrm_cli::{self, Action, Options, Parsed};

/// Run unrm with `args` (without argv[0]); returns the exit status.
pub fn run(args: &[OsString]) -> i32 {
    // Restoring holds a directory descriptor per level, like removing.
    crate::sys::raise_open_file_limit();
    let opts = match unrm_cli::parse(args) {
        Parsed::Run(o) => o,
        Parsed::Exit { text, code } => {
            if code == 0 {
                stdout_write(text.as_bytes());
            } else {
                stderr_write(text.as_bytes());
            }
            return code;
        }
    };
    match &opts.action {
        Action::Completions(shell) => {
            let text = crate::docs::completions(crate::docs::Program::Unrm, shell);
            stdout_write(text.unwrap_or_default().as_bytes());
            return 0;
        }
        Action::Man => {
            let mut page = Vec::new();
            let _ = crate::docs::man_page(crate::docs::Program::Unrm, &mut page);
            stdout_write(&page);
            return 0;
        }
        _ => {}
    }
    match execute(&opts) {
        Ok(code) => code,
        Err(e) => {
            stderr_write(format!("unrm: {e:#}\n").as_bytes());
            1
        }
    }
}

fn execute(opts: &Options) -> Result<i32> {
    let store = Store::open().context("could not open the store")?;
    let cwd = std::env::current_dir()
        .map(|p| p.as_os_str().as_bytes().to_vec())
        .unwrap_or_else(|_| b"/".to_vec());
    // A damaged manifest (a power cut soon after `rm` can leave one empty) hides its
    // deletion, and the answer would be about the others: it is rebuilt from the copy in its
    // archive first, then the catalog read again. `--check` reports instead (`--repair`
    // rebuilds), and completion never waits for a lock.
    let heals = !matches!(
        opts.action,
        Action::Check { .. } | Action::CompleteNames { .. }
    );
    let mut healed = false;
    loop {
        // Restores hold the lock shared from reading the catalog on, so a purge cannot
        // remove a deletion between resolving a name and reading its archive.
        let restore_lock = if matches!(opts.action, Action::Restore(_) | Action::Last(_)) {
            Some(
                store
                    .lock_shared_patiently(|holder| {
                        stderr_write(
                            format!("unrm: waiting for the store lock, held by {holder}...\n")
                                .as_bytes(),
                        )
                    })
                    .context("could not lock the store")?,
            )
        } else {
            None
        };
        let catalog = Catalog::open(&store).context("could not read the store")?;
        let may_heal = heals && !healed;
        let result = if may_heal && !catalog.unreadable.is_empty() {
            Err(NeedsHealing.into())
        } else {
            act(opts, &store, &catalog, &cwd, may_heal)
        };
        match result {
            Err(e) if e.is::<NeedsHealing>() => {
                let damaged = catalog.damaged();
                drop(catalog);
                drop(restore_lock);
                heal(&store, &damaged)?;
                healed = true;
            }
            other => return other,
        }
    }
}

/// An action met a damaged manifest before doing anything: heal it and start again.
#[derive(Debug)]
struct NeedsHealing;

impl std::fmt::Display for NeedsHealing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a manifest is damaged")
    }
}

impl std::error::Error for NeedsHealing {}

/// Fail with [`NeedsHealing`] when healing is allowed and the catalog has met a damaged
/// manifest.
fn met_damage(catalog: &Catalog, may_heal: bool) -> Result<()> {
    if may_heal && !catalog.damaged().is_empty() {
        return Err(NeedsHealing.into());
    }
    Ok(())
}

/// Rebuild `damaged` manifests under the exclusive lock (`check::heal_manifests`).
fn heal(store: &Store, damaged: &[(String, String)]) -> Result<()> {
    let lock = store
        .lock_exclusive_patiently(|holder| {
            stderr_write(
                format!("unrm: a manifest is damaged; waiting for other saferm and unrm processes to finish ({holder} holds the store lock) to rebuild it...\n")
                    .as_bytes(),
            )
        })
        .context("could not lock the store")?;
    for line in crate::check::heal_manifests(store, &lock, damaged) {
        stderr_write(format!("unrm: {line}\n").as_bytes());
    }
    Ok(())
}

fn act(
    opts: &Options,
    store: &Store,
    catalog: &Catalog,
    cwd: &[u8],
    may_heal: bool,
) -> Result<i32> {
    match &opts.action {
        Action::Restore(names) => restore_names(opts, store, catalog, cwd, names, may_heal),
        Action::Last(n) => {
            // The newest commands not undone yet: `unrm --last` twice undoes two commands.
            let newest: Vec<usize> = (0..catalog.len())
                .filter(|&d| !catalog.headers[d].restored)
                .take(*n)
                .collect();
            for &d in &newest {
                let _ = catalog.load(d);
            }
            met_damage(catalog, may_heal)?;
            let mut picks: Vec<(usize, Vec<u8>)> = Vec::new();
            for d in newest {
                match catalog.load(d) {
                    Ok(del) => picks.extend(del.roots().into_iter().map(|r| (d, r))),
                    Err(e) => stderr_write(format!("unrm: could not restore: {e}\n").as_bytes()),
                }
            }
            if picks.is_empty() {
                stderr_write(b"unrm: could not restore: no deletion is left to undo\n");
                return Ok(1);
            }
            Ok(restore_picks(
                opts,
                store,
                catalog,
                cwd,
                picks,
                &HashMap::new(),
                false,
            ))
        }
        Action::List(patterns) => Ok(list(opts, &catalog.headers, cwd, patterns)),
        Action::Show(id) => {
            if let IdMatch::One(d) = catalog.find_id(id) {
                let _ = catalog.load(d);
                met_damage(catalog, may_heal)?;
            }
            Ok(show(opts, catalog, id))
        }
        Action::Check { ids, repair } => crate::check::run(store, catalog, ids, *repair),
        Action::Purge(p) => purge(opts, store, catalog, p),
        Action::Stats => crate::stats::run(store, catalog, opts.json),
        Action::CompleteNames { shell, word } => {
            let names = crate::complete::names(&catalog.headers, cwd);
            let out = match (shell.as_str(), word) {
                ("bash", Some((text, line))) => crate::complete::bash_replies(&names, text, line),
                ("bash", None) => crate::complete::bash_replies(&names, b"", b""),
                _ => crate::complete::nul_list(&names, shell),
            };
            stdout_write(&out);
            Ok(0)
        }
        Action::Completions(_) | Action::Man => Ok(0), // answered before the store is opened
    }
}

/// `unrm --purge`: the configured limits, or those the options give, or the ids named.
/// Ids that do not resolve purge nothing at all (a typo must not go with the rest).
fn purge(
    opts: &Options,
    store: &Store,
    catalog: &Catalog,
    p: &crate::unrm_cli::PurgeOptions,
) -> Result<i32> {
    use crate::config::Size;
    use crate::retention::{self, Rules};
    let config = crate::config::Config::load()?;
    let mut ids = Vec::new();
    let mut bad = false;
    for id in &p.ids {
        match catalog.find_id(id) {
            IdMatch::One(d) => ids.push(catalog.id(d).to_string()),
            IdMatch::None => {
                stderr_write(
                    format!("unrm: could not purge {id}: no deletion has that id\n").as_bytes(),
                );
                bad = true;
            }
            IdMatch::Several(_) => {
                stderr_write(
                    format!(
                        "unrm: could not purge {id}: it is the start of several deletion ids\n"
                    )
                    .as_bytes(),
                );
                bad = true;
            }
        }
    }
    if bad {
        stderr_write(b"unrm: nothing was purged\n");
        return Ok(1);
    }
    let limits_given = p.older_than.is_some() || p.max_size.is_some();
    let rules = if !limits_given && ids.is_empty() && p.keep.is_none() {
        Rules::from_config(&config)
    } else {
        Rules {
            max_age: p.older_than.flatten(),
            max_size: p.max_size.unwrap_or(Size::Unlimited),
            min_free: Size::Unlimited,
            max_count: if !limits_given && ids.is_empty() {
                p.keep
            } else {
                None
            },
            protect_newest: p.keep.unwrap_or(config.keep_last.value),
            ids,
        }
    };
    let lock = if p.dry_run {
        None
    } else {
        let lock = store.lock_exclusive_patiently(|holder| {
            stderr_write(
                format!("unrm: waiting for other saferm and unrm processes to finish ({holder} holds the store lock)...\n")
                    .as_bytes(),
            )
        })?;
        let scan = store.scan()?;
        for id in store.finish_interrupted_purges(&lock, &scan)? {
            stdout_write(format!("finished the interrupted purge of {id}\n").as_bytes());
        }
        Some(lock)
    };
    let purged = retention::purge(store, lock.as_ref(), &rules, None, p.dry_run)?;
    let bytes = purged
        .iter()
        .map(|x| x.archive_bytes)
        .fold(0u64, u64::saturating_add);
    if opts.json {
        let items: Vec<serde_json::Value> = purged
            .iter()
            .map(|x| {
                serde_json::json!({
                    "id": x.header.id,
                    "created": x.header.created,
                    "operands": x.header.operands,
                    "archive_bytes": x.archive_bytes,
                    "reason": format!("{:?}", x.reason).to_lowercase(),
                    "purged": !p.dry_run,
                })
            })
            .collect();
        let mut text = serde_json::to_string_pretty(&items).unwrap_or_default();
        text.push('\n');
        stdout_write(text.as_bytes());
        return Ok(0);
    }
    let verb = if p.dry_run { "would purge" } else { "purged" };
    let mut out = String::new();
    for x in &purged {
        out.push_str(&format!("{verb} {}\n", retention::line_of(x)));
    }
    if purged.is_empty() {
        out.push_str("nothing to purge\n");
    } else {
        out.push_str(&format!(
            "{verb} {} deletion(s), {}{}\n",
            purged.len(),
            crate::output::human(bytes),
            if p.dry_run {
                "; nothing was purged"
            } else {
                ""
            }
        ));
    }
    stdout_write(out.as_bytes());
    Ok(0)
}

/// The absolute path a NAME stands for: lexically normalised against the cwd (the deleted
/// object is gone, so it cannot be canonicalised).
pub fn absolute(cwd: &[u8], name: &[u8]) -> Vec<u8> {
    crate::rules::lexical_absolute(cwd, name)
}

/// `fnmatch(3)` with `FNM_PATHNAME`: `*` does not cross `/`.
pub fn glob_match(pattern: &[u8], path: &[u8]) -> bool {
    let (Ok(p), Ok(s)) = (sys::cstr(pattern), sys::cstr(path)) else {
        return false;
    };
    // SAFETY: both are NUL-terminated.
    unsafe { libc::fnmatch(p.as_ptr(), s.as_ptr(), libc::FNM_PATHNAME) == 0 }
}

/// What a NAME resolved to.
enum Resolution {
    /// These (deletion, path) pairs.
    Found(Vec<(usize, Vec<u8>)>),
    /// These (deletion, path) pairs, from several deletions that each removed part of the
    /// path (newest deletion first, the newest version of each object), with the directory
    /// whose names below it `--to` keeps (the parent of the operand that held it).
    Pieces(Vec<(usize, Vec<u8>, Vec<u8>)>),
    /// One of these, which the user must choose (several objects or versions).
    Choose(Vec<(usize, Vec<u8>)>),
}

/// Which deletions and paths a NAME means, newest deletion first, among the deletions
/// `allowed` lets through (`--at`).
fn resolve(
    catalog: &Catalog,
    allowed: &dyn Fn(usize) -> bool,
    cwd: &[u8],
    name: &[u8],
    pick: bool,
) -> Result<Resolution, String> {
    let abs = absolute(cwd, name);
    // The deletion's top objects; a manifest that cannot be read is said to be damaged.
    let roots_of = |d: usize| -> Result<Resolution, String> {
        let del = catalog
            .load(d)
            .map_err(|e| format!("the manifest of deletion {} is damaged: {e}", catalog.id(d)))?;
        let roots: Vec<(usize, Vec<u8>)> = del.roots().into_iter().map(|r| (d, r)).collect();
        if roots.is_empty() {
            return Err(format!(
                "deletion {} holds nothing to restore",
                catalog.id(d)
            ));
        }
        Ok(Resolution::Found(roots))
    };
    // A whole id is an id (nobody names a file like that); reading no manifest for it.
    if let Some(d) = catalog.headers.iter().position(|h| h.id.as_bytes() == name) {
        return roots_of(d);
    }
    // Newest first; manifests are read as they are reached.
    let deletions = || {
        (0..catalog.len())
            .filter(|&d| allowed(d))
            .filter_map(|d| catalog.get(d).map(|del| (d, del)))
    };
    // 1. An original path, or a path inside a deleted tree, by the path it was removed
    //    under or the one the user typed (through a symlink): every deletion that set out
    //    to remove it and holds part of it (`pieces`), or with --pick the versions of the
    //    path itself to choose from.
    let physical = physical_path(&abs);
    let found = attempts(catalog, allowed, &abs, physical.as_deref(), !pick);
    if pick {
        let versions: Vec<(usize, Vec<u8>)> = found
            .iter()
            .filter(|a| {
                a.del
                    .removed()
                    .any(|e| e.path.bytes().as_ref() == Some(&a.path))
            })
            .map(|a| (a.d, a.path.clone()))
            .collect();
        match versions.len() {
            0 => {}
            1 => return Ok(Resolution::Found(versions)),
            _ => return Ok(Resolution::Choose(versions)),
        }
    } else {
        let picks = pieces(&found);
        let deletions: HashSet<usize> = picks.iter().map(|(d, _, _)| *d).collect();
        match deletions.len() {
            0 => {}
            1 => {
                let found = picks.into_iter().map(|(d, p, _)| (d, p)).collect();
                return Ok(Resolution::Found(found));
            }
            _ => return Ok(Resolution::Pieces(picks)),
        }
    }
    // 2. A deletion id or an unambiguous prefix of one.
    if let Ok(text) = std::str::from_utf8(name) {
        match catalog.find_id(text) {
            IdMatch::One(d) => return roots_of(d),
            IdMatch::Several(ds) => {
                let mut msg = String::from("it is the start of several deletion ids:");
                for d in ds {
                    msg.push_str("\n  ");
                    msg.push_str(catalog.id(d));
                }
                return Err(msg);
            }
            IdMatch::None => {}
        }
    }
    // 3. A glob: every matching deleted path (the newest deletion of each).
    if has_glob(name) {
        let pattern = absolute(cwd, name);
        let mut found: Vec<(usize, Vec<u8>)> = Vec::new();
        for (d, del) in deletions() {
            for e in del.removed() {
                let Some(p) = e.path.bytes() else { continue };
                if glob_match(&pattern, &p) && !found.iter().any(|(_, f)| is_under(&p, f)) {
                    found.retain(|(_, f)| !is_under(f, &p));
                    found.push((d, p));
                }
            }
        }
        if found.is_empty() {
            return Err("no deleted path matches".to_string());
        }
        return Ok(Resolution::Found(found));
    }
    // 4. A bare name: the one deleted object of that name, wherever it was.
    if !name.contains(&b'/') {
        let mut found: Vec<(usize, Vec<u8>)> = Vec::new();
        for (d, del) in deletions() {
            for e in del.removed() {
                let Some(p) = e.path.bytes() else { continue };
                if split_parent(&p).1 == name && (pick || !found.iter().any(|(_, f)| *f == p)) {
                    found.push((d, p));
                }
            }
        }
        match found.len() {
            0 => {}
            1 => return Ok(Resolution::Found(found)),
            _ => return Ok(Resolution::Choose(found)),
        }
    }
    Err("no deletion in the store holds it".to_string())
}

/// `abs` with its deepest existing ancestor resolved (symlinks followed), when that differs:
/// the place a path typed through a symlink names, for manifests that did not record it.
fn physical_path(abs: &[u8]) -> Option<Vec<u8>> {
    let mut head = abs;
    while head != b"/" {
        if let Ok(canon) = std::fs::canonicalize(std::ffi::OsStr::from_bytes(head)) {
            let mut p = canon.as_os_str().as_bytes().to_vec();
            p.extend_from_slice(&abs[head.len()..]);
            return (p != abs).then_some(p);
        }
        head = split_parent(head).0;
    }
    None
}

/// A deletion that set out to remove a path: the path as it records it, and the operand's.
struct Attempt<'c> {
    d: usize,
    path: Vec<u8>,
    operand: Vec<u8>,
    del: &'c catalog::Deletion,
}

/// The deletions (allowed, newest first) that set out to remove `abs`, which is one of
/// their operands or inside one, and removed at least part of it: with the path `abs` is
/// recorded under in each (itself, through the typed path of an operand, or `physical`).
/// Only headers are read for the others. With `this_life`, only those since the object was
/// last made: the list ends before an older deletion that removed the path itself (what it
/// and the older ones hold is of an object that was removed whole and made again since),
/// so `unrm build` after a hundred `rm -rf build` reads two manifests.
fn attempts<'c>(
    catalog: &'c Catalog,
    allowed: &dyn Fn(usize) -> bool,
    abs: &[u8],
    physical: Option<&[u8]>,
    this_life: bool,
) -> Vec<Attempt<'c>> {
    let mut out = Vec::new();
    for d in (0..catalog.len()).filter(|&d| allowed(d)) {
        let h = &catalog.headers[d];
        let mut candidates: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        for o in &h.operands {
            let Some(absolute) = o.absolute.bytes() else {
                continue;
            };
            let typed = o.typed.as_ref().and_then(|t| t.bytes());
            let mapped = typed.filter(|t| is_under(abs, t)).map(|t| {
                let mut m = absolute.clone();
                m.extend_from_slice(&abs[t.len()..]);
                m
            });
            for c in [Some(abs.to_vec()), mapped, physical.map(<[u8]>::to_vec)]
                .into_iter()
                .flatten()
            {
                if is_under(&c, &absolute) && !candidates.iter().any(|(x, _)| *x == c) {
                    candidates.push((c, absolute.clone()));
                }
            }
        }
        if candidates.is_empty() {
            continue;
        }
        let Some(del) = catalog.get(d) else { continue };
        let hit = candidates.into_iter().find(|(c, _)| {
            del.removed()
                .any(|e| e.path.bytes().is_some_and(|p| is_under(&p, c)))
        });
        if let Some((path, operand)) = hit {
            let whole = || {
                del.removed()
                    .any(|e| e.path.bytes().as_ref() == Some(&path))
            };
            if this_life && !out.is_empty() && whole() {
                break;
            }
            out.push(Attempt {
                d,
                path,
                operand,
                del,
            });
        }
    }
    out
}

/// What to restore of the path each deletion of `found` holds (newest first): each object
/// from the newest deletion holding it, and an older deletion's objects only where no newer
/// one removed them or a directory above them that the older one had removed too (that
/// directory was made again since, and what was in it before is another story). A partial
/// `rm -rf proj` and the run that finished it give back the whole of `proj`; two removals
/// of a `proj` made again in between give back the newer one. Returns (deletion, target
/// root, the operand's parent) triples, newest deletion first, each target a subtree to
/// restore whole.
fn pieces(found: &[Attempt<'_>]) -> Vec<(usize, Vec<u8>, Vec<u8>)> {
    // What each deletion holds of the path, in manifest order (parents before children).
    let held: Vec<Vec<Vec<u8>>> = found
        .iter()
        .map(|a| {
            a.del
                .removed()
                .filter_map(|e| e.path.bytes())
                .filter(|p| is_under(p, &a.path))
                .collect()
        })
        .collect();
    // The newest deletion holding each path (not needed for one deletion alone).
    let mut owner: HashMap<&[u8], usize> = HashMap::new();
    if found.len() > 1 {
        for (a, paths) in found.iter().zip(&held) {
            for p in paths {
                owner.entry(p.as_slice()).or_insert(a.d);
            }
        }
    }
    let mut out = Vec::new();
    for (a, paths) in found.iter().zip(&held) {
        let base = split_parent(&a.operand).0.to_vec();
        let pos: HashMap<&[u8], usize> = paths
            .iter()
            .enumerate()
            .map(|(i, p)| (p.as_slice(), i))
            .collect();
        // Each object's parent among them (none for the top one).
        let parent: Vec<Option<usize>> = paths
            .iter()
            .map(|p| {
                (p.as_slice() != a.path.as_slice())
                    .then(|| pos.get(split_parent(p).0).copied())
                    .flatten()
            })
            .collect();
        // Excluded: an object a newer deletion removed again, or one below a directory of
        // this deletion that a newer one removed again. One pass, parents first.
        let mut excluded = vec![false; paths.len()];
        for (i, p) in paths.iter().enumerate() {
            let again = owner.get(p.as_slice()).is_some_and(|&o| o != a.d);
            excluded[i] = again || parent[i].is_some_and(|q| q < i && excluded[q]);
        }
        // Directories with an excluded object below them are not restored whole: their
        // other objects are, and they come back as those objects' recorded parents.
        let mut dirty = vec![false; paths.len()];
        for i in (0..paths.len()).rev() {
            if let Some(q) = parent[i] {
                if excluded[i] || dirty[i] {
                    dirty[q] = true;
                }
            }
        }
        let whole = |i: usize| !excluded[i] && !dirty[i];
        for (i, p) in paths.iter().enumerate() {
            if whole(i) && parent[i].is_none_or(|q| !whole(q)) {
                out.push((a.d, p.clone(), base.clone()));
            }
        }
    }
    out
}

/// The candidates of a choice, numbered, newest first.
fn candidates_text(catalog: &Catalog, found: &[(usize, Vec<u8>)]) -> String {
    let mut text = String::new();
    for (n, (d, p)) in found.iter().enumerate() {
        text.push_str(&format!(
            "  {}) {}  {}  ({})\n",
            n + 1,
            local_time(&catalog.headers[*d].created),
            quote(p),
            catalog.id(*d)
        ));
    }
    text
}

/// Ask on the terminal which candidate to restore; None when the answer picks none.
fn choose(catalog: &Catalog, name: &[u8], found: &[(usize, Vec<u8>)]) -> Option<usize> {
    stderr_write(
        format!(
            "unrm: {} matches several deleted objects:\n{}unrm: restore which? [1-{}] ",
            quote(name),
            candidates_text(catalog, found),
            found.len()
        )
        .as_bytes(),
    );
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).ok()?;
    let n: usize = line.trim().parse().ok()?;
    (1..=found.len()).contains(&n).then(|| n - 1)
}

/// The deletions `--at ID|TIME` allows: that deletion, or those made at or before TIME
/// (RFC 3339, or local `YYYY-MM-DD[ HH:MM[:SS]]`).
fn at_filter(catalog: &Catalog, at: &str) -> Result<Box<dyn Fn(usize) -> bool>, String> {
    if let IdMatch::One(d) = catalog.find_id(at) {
        return Ok(Box::new(move |i| i == d));
    }
    let time = parse_time(at).ok_or_else(|| {
        format!("'{at}' is neither a deletion id nor a time (YYYY-MM-DD[ HH:MM[:SS]])")
    })?;
    let created: Vec<Option<chrono::DateTime<chrono::Utc>>> = catalog
        .headers
        .iter()
        .map(|h| {
            chrono::DateTime::parse_from_rfc3339(&h.created)
                .ok()
                .map(|t| t.with_timezone(&chrono::Utc))
        })
        .collect();
    Ok(Box::new(move |i| created[i].is_some_and(|c| c <= time)))
}

fn parse_time(text: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    use chrono::TimeZone;
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&chrono::Utc));
    }
    let naive = ["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"]
        .iter()
        .find_map(|f| chrono::NaiveDateTime::parse_from_str(text, f).ok())
        .or_else(|| {
            chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(23, 59, 59))
        })?;
    chrono::Local
        .from_local_datetime(&naive)
        .earliest()
        .map(|t| t.with_timezone(&chrono::Utc))
}

fn restore_names(
    opts: &Options,
    store: &Store,
    catalog: &Catalog,
    cwd: &[u8],
    names: &[OsString],
    may_heal: bool,
) -> Result<i32> {
    let allowed: Box<dyn Fn(usize) -> bool> = match &opts.at {
        None => Box::new(|_| true),
        Some(at) => match at_filter(catalog, at) {
            Ok(f) => f,
            Err(msg) => {
                stderr_write(format!("unrm: could not restore: --at {msg}\n").as_bytes());
                return Ok(1);
            }
        },
    };
    let tty = sys::stdin_is_tty();
    let mut picks = Vec::new();
    let mut bases = HashMap::new();
    let mut failed = false;
    // Every name is resolved before anything is asked or restored: a damaged manifest met
    // on the way is rebuilt first, and the names resolved again.
    let resolved: Vec<(&[u8], _)> = names
        .iter()
        .map(|name| {
            let name = name.as_bytes();
            (name, resolve(catalog, &*allowed, cwd, name, opts.pick))
        })
        .collect();
    met_damage(catalog, may_heal)?;
    for (name, resolution) in resolved {
        let fail = |msg: &str| {
            stderr_write(format!("unrm: could not restore {}: {msg}\n", quote(name)).as_bytes());
        };
        match resolution {
            Ok(Resolution::Found(found)) => picks.extend(found),
            Ok(Resolution::Pieces(found)) => {
                let mut ids: Vec<&str> = Vec::new();
                for (d, _, _) in &found {
                    if !ids.contains(&catalog.id(*d)) {
                        ids.push(catalog.id(*d));
                    }
                }
                stdout_write(
                    format!(
                        "{} was removed in parts by {} deletions; restoring from each, the newest version of each object: {}\n",
                        quote(&display(cwd, &absolute(cwd, name))),
                        ids.len(),
                        ids.join(", ")
                    )
                    .as_bytes(),
                );
                for (d, p, base) in found {
                    bases.insert((d, p.clone()), base);
                    picks.push((d, p));
                }
            }
            Ok(Resolution::Choose(found)) if tty => match choose(catalog, name, &found) {
                Some(n) => picks.push(found[n].clone()),
                None => {
                    fail("nothing was chosen");
                    failed = true;
                }
            },
            Ok(Resolution::Choose(found)) => {
                fail(&format!(
                    "it matches several deleted objects; give the path, or choose with --at ID (or on a terminal):\n{}",
                    candidates_text(catalog, &found).trim_end()
                ));
                failed = true;
            }
            Err(msg) => {
                fail(&msg);
                failed = true;
            }
        }
    }
    if picks.is_empty() {
        return Ok(1);
    }
    let code = restore_picks(opts, store, catalog, cwd, picks, &bases, failed);
    Ok(code)
}

/// Restore every (deletion, source path), one pass over each archive; print the summary.
fn restore_picks(
    opts: &Options,
    store: &Store,
    catalog: &Catalog,
    cwd: &[u8],
    picks: Vec<(usize, Vec<u8>)>,
    bases: &HashMap<(usize, Vec<u8>), Vec<u8>>,
    mut failed: bool,
) -> i32 {
    // Held shared, as writers do, so that a collector (exclusive) never removes an archive
    // that is being restored from.
    let _lock = match store.lock_shared() {
        Ok(l) => l,
        Err(e) => {
            stderr_write(format!("unrm: could not restore: {e:#}\n").as_bytes());
            return 1;
        }
    };
    // Ctrl-C stops after the current object (a file being written is removed), leaves what
    // is complete in place, and dies of the signal.
    crate::signal::catch();
    let anchor = match &opts.to {
        None => b"/".to_vec(),
        Some(dir) => match prepare_to(dir) {
            Ok(a) => a,
            Err(e) => {
                stderr_write(format!("unrm: {e:#}\n").as_bytes());
                return 1;
            }
        },
    };
    let ropts = RestoreOptions {
        conflict: opts.conflict,
        anchor: anchor.clone(),
        euid: sys::geteuid(),
        cwd: cwd.to_vec(),
        verbose: opts.verbose,
    };
    // Group by deletion, keeping the order of first mention. Everything here is looked up,
    // never scanned: `unrm --last` after `rm d/*` has one pick per file (issue 12).
    let mut order: Vec<usize> = Vec::new();
    let mut by_deletion: HashMap<usize, Vec<Target>> = HashMap::new();
    let mut seen: HashSet<(usize, Vec<u8>)> = HashSet::new();
    let mut roots_of: HashMap<usize, PathMap<()>> = HashMap::new();
    for (d, source) in picks {
        if !seen.insert((d, source.clone())) {
            continue;
        }
        let dest = if opts.to.is_some() {
            // Under DIR, the names below the parent of the deleted operand are kept:
            // `--to out proj/src/a.rs` makes out/proj/src/a.rs.
            // Pieces of several deletions: the parent of the operand they were removed under.
            let base = match bases.get(&(d, source.clone())) {
                Some(b) => b.clone(),
                None => {
                    let roots = roots_of.entry(d).or_insert_with(|| {
                        catalog
                            .get(d)
                            .map(|del| {
                                let mut roots = PathMap::default();
                                for r in del.roots() {
                                    roots.insert_first(r, ());
                                }
                                roots
                            })
                            .unwrap_or_default()
                    });
                    let root = root_holding(roots, &source).unwrap_or_else(|| source.clone());
                    split_parent(&root).0.to_vec()
                }
            };
            let base = base.as_slice();
            // A damaged manifest may hold a path that is not absolute: it keeps its name
            // here, and restoring refuses the manifest.
            let skip = if base == b"/" { 1 } else { base.len() + 1 };
            let rel = source.get(skip..).unwrap_or(source.as_slice());
            let mut p = anchor.clone();
            if !p.ends_with(b"/") {
                p.push(b'/');
            }
            p.extend_from_slice(rel);
            p
        } else {
            source.clone()
        };
        let list = by_deletion.entry(d).or_insert_with(|| {
            order.push(d);
            Vec::new()
        });
        list.push(Target { source, dest });
    }
    let mut total = Report::default();
    for d in order {
        let del = match catalog.load(d) {
            Ok(del) => del,
            Err(e) => {
                stderr_write(format!("unrm: could not restore: {e}\n").as_bytes());
                failed = true;
                continue;
            }
        };
        let targets = &by_deletion[&d];
        let mut report = Report::default();
        if let Err(e) = restore::restore(store, &del.manifest, targets, &ropts, &mut report) {
            stderr_write(
                format!(
                    "unrm: could not restore from deletion {}: {e:#}\n",
                    del.id()
                )
                .as_bytes(),
            );
            failed = true;
        }
        let renamed_to: HashMap<&[u8], &Vec<u8>> = report
            .renamed
            .iter()
            .map(|(w, u)| (w.as_slice(), u))
            .collect();
        let restored: HashSet<&[u8]> = report.roots_restored.iter().map(|r| &r[..]).collect();
        let replaced: HashSet<&[u8]> = report.replaced.iter().map(|r| &r[..]).collect();
        // `restore` returns once what it made is durable; if it could not make it so, nothing
        // is said to be restored and no note is written (`unrm --last` still offers it).
        for t in targets {
            let renamed = renamed_to.get(t.dest.as_slice()).copied();
            let used = renamed.unwrap_or(&t.dest);
            if opts.verbose || report.not_durable || !restored.contains(used.as_slice()) {
                continue;
            }
            let line = match renamed {
                Some(used) => format!(
                    "restored {} as {}\n",
                    quote(&display(cwd, &t.dest)),
                    quote(&display(cwd, used))
                ),
                None if replaced.contains(t.dest.as_slice()) => format!(
                    "restored {} (what was there is archived in the store)\n",
                    quote(&display(cwd, &t.dest))
                ),
                None => format!("restored {}\n", quote(&display(cwd, &t.dest))),
            };
            stdout_write(line.as_bytes());
        }
        if report.restored > 0 && !report.not_durable {
            let roots: HashSet<Vec<u8>> = del.roots().into_iter().collect();
            let whole =
                targets.len() == roots.len() && targets.iter().all(|t| roots.contains(&t.source));
            let note = Restored {
                at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                to: targets.iter().map(|t| PathBytes::new(&t.dest)).collect(),
                objects: report.restored,
                complete: whole && report.ok(),
            };
            if let Err(e) = catalog::mark_restored(store, del, &note) {
                stderr_write(
                    format!(
                        "unrm: warning: could not note that {} was restored: {e:#}\n",
                        del.id()
                    )
                    .as_bytes(),
                );
            }
        }
        if let Some(sig) = crate::signal::caught() {
            stderr_write(
                format!(
                    "unrm: interrupted after restoring {} object(s)\n",
                    total.restored + report.restored
                )
                .as_bytes(),
            );
            crate::signal::reraise(sig);
        }
        if report.not_durable {
            // Made, but a crash could still take it: not counted as restored.
            total.failed += report.restored;
        } else {
            total.restored += report.restored;
        }
        total.failed += report.failed;
        total.conflicts.extend(report.conflicts);
        total.renamed.extend(report.renamed);
        total.ownership_not_set += report.ownership_not_set;
        total.xattrs_not_set += report.xattrs_not_set;
    }
    if total.ownership_not_set > 0 {
        stderr_write(
            format!(
                "unrm: could not give {} restored object(s) their recorded owner (only root can); they belong to you\n",
                total.ownership_not_set
            )
            .as_bytes(),
        );
    }
    if total.xattrs_not_set > 0 {
        stderr_write(
            format!(
                "unrm: could not restore {} extended attribute(s) (not permitted or not supported here)\n",
                total.xattrs_not_set
            )
            .as_bytes(),
        );
    }
    if !total.ok() || failed {
        let mut parts = vec![format!("restored {} object(s)", total.restored)];
        if !total.conflicts.is_empty() {
            parts.push(format!(
                "{} left alone because they exist",
                total.conflicts.len()
            ));
        }
        if total.failed > 0 {
            parts.push(format!("{} could not be restored", total.failed));
        }
        stderr_write(format!("unrm: {}\n", parts.join("; ")).as_bytes());
        return 1;
    }
    0
}

/// The root in `roots` that is `path` or holds it.
fn root_holding(roots: &PathMap<()>, path: &[u8]) -> Option<Vec<u8>> {
    roots.nearest(path).map(|(root, _)| root.to_vec())
}

/// The `--to` directory, created if missing, as a canonical absolute path.
fn prepare_to(dir: &std::path::Path) -> Result<Vec<u8>> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("could not create '{}'", dir.display()))?;
    let canon = std::fs::canonicalize(dir)
        .with_context(|| format!("could not resolve '{}'", dir.display()))?;
    Ok(canon.as_os_str().as_bytes().to_vec())
}

fn matches_pattern(del: &Header, cwd: &[u8], pattern: &[u8]) -> bool {
    if del.id.as_bytes().starts_with(pattern) {
        return true;
    }
    let glob = has_glob(pattern);
    let abs_pattern = absolute(cwd, pattern);
    del.operands.iter().any(|o| {
        let given = o.given.bytes().unwrap_or_default();
        // By the path it was removed under, or the one typed (through a symlink).
        let paths = [Some(&o.absolute), o.typed.as_ref()];
        paths.into_iter().flatten().any(|p| {
            let abs = p.bytes().unwrap_or_default();
            if glob {
                glob_match(&abs_pattern, &abs)
                    || glob_match(pattern, &given)
                    || glob_match(pattern, split_parent(&abs).1)
            } else {
                is_under(&abs, &abs_pattern)
                    || abs.windows(pattern.len().max(1)).any(|w| w == pattern)
            }
        })
    })
}

fn list(opts: &Options, headers: &[Header], cwd: &[u8], patterns: &[OsString]) -> i32 {
    let shown: Vec<&Header> = headers
        .iter()
        .filter(|d| {
            patterns.is_empty()
                || patterns
                    .iter()
                    .any(|p| matches_pattern(d, cwd, p.as_bytes()))
        })
        .collect();
    if opts.json {
        let items: Vec<serde_json::Value> = shown
            .iter()
            .map(|m| {
                serde_json::json!({
                    "id": m.id,
                    "created": m.created,
                    "cwd": m.cwd,
                    "operands": m.operands,
                    "entries": m.totals.entries,
                    "files": m.totals.files,
                    "dirs": m.totals.dirs,
                    "bytes": m.totals.bytes,
                    "archive_bytes": m.archive.as_ref().map(|a| a.size),
                    "restored": m.restored,
                    "partly_restored": m.partly_restored && !m.restored,
                    "partly_kept": m.partly_kept,
                })
            })
            .collect();
        let mut text = serde_json::to_string_pretty(&items).unwrap_or_default();
        text.push('\n');
        stdout_write(text.as_bytes());
        return 0;
    }
    let mut out = String::new();
    for m in shown {
        let operands: Vec<String> = m
            .operands
            .iter()
            .map(|o| quote(&display(cwd, &o.absolute.bytes().unwrap_or_default())))
            .collect();
        let line = format!(
            "{}  {}  {:>6} files  {:>10} -> {:<10}  {:<8}  {}\n",
            m.id,
            local_time(&m.created),
            m.totals.files,
            crate::output::human(m.totals.bytes),
            m.archive
                .as_ref()
                .map(|a| crate::output::human(a.size))
                .unwrap_or_else(|| "?".to_string()),
            if m.restored {
                "restored"
            } else if m.partly_restored {
                "partly"
            } else {
                "-"
            },
            operands.join(" ")
        );
        out.push_str(&line);
        if flush_full(&mut out) {
            return 0; // the reader went away
        }
    }
    stdout_write(out.as_bytes());
    0
}

fn show(opts: &Options, catalog: &Catalog, id: &str) -> i32 {
    let d = match catalog.find_id(id) {
        IdMatch::One(d) => match catalog.load(d) {
            Ok(del) => del,
            Err(e) => {
                stderr_write(format!("unrm: could not show {id}: {e}\n").as_bytes());
                return 1;
            }
        },
        IdMatch::None => {
            stderr_write(
                format!("unrm: could not show {id}: no deletion has that id\n").as_bytes(),
            );
            return 1;
        }
        IdMatch::Several(_) => {
            stderr_write(
                format!("unrm: could not show {id}: it is the start of several deletion ids\n")
                    .as_bytes(),
            );
            return 1;
        }
    };
    if opts.json {
        let mut text = serde_json::to_string_pretty(&d.manifest).unwrap_or_default();
        text.push('\n');
        stdout_write(text.as_bytes());
        return 0;
    }
    let mut out = String::new();
    // Sockets were removed without an archive entry (they hold no data): listed last.
    for e in d.manifest.entries.iter().chain(&d.manifest.not_archived) {
        let tag = match e.kind {
            Kind::File => '-',
            Kind::Dir => 'd',
            Kind::Symlink => 'l',
            Kind::Hardlink => 'h',
            Kind::Fifo => 'p',
            Kind::Char => 'c',
            Kind::Block => 'b',
            Kind::Socket => 's',
        };
        let time = chrono::DateTime::from_timestamp(e.mtime, e.mtime_nsec)
            .map(|t| {
                t.with_timezone(&chrono::Local)
                    .format("%Y-%m-%d %H:%M")
                    .to_string()
            })
            .unwrap_or_default();
        let mut line = format!(
            "{tag}{:04o} {:>8} {:>8} {:>12} {time} {}",
            e.mode & 0o7777,
            e.user
                .as_deref()
                .map_or_else(|| e.uid.to_string(), str::to_string),
            e.group
                .as_deref()
                .map_or_else(|| e.gid.to_string(), str::to_string),
            e.size,
            quote(&e.path.bytes().unwrap_or_default())
        );
        if let Some(l) = &e.link {
            let arrow = if e.kind == Kind::Hardlink {
                " => "
            } else {
                " -> "
            };
            line.push_str(arrow);
            line.push_str(&quote(&l.bytes().unwrap_or_default()));
        }
        if e.kind == Kind::Socket {
            line.push_str("  (not archived: a socket holds no data)");
        } else if e.path.bytes().is_some_and(|p| d.kept.contains(&p)) {
            line.push_str("  (not removed: it could not be, and is still in place)");
        }
        line.push('\n');
        out.push_str(&line);
        if flush_full(&mut out) {
            return 0; // the reader went away
        }
    }
    stdout_write(out.as_bytes());
    0
}

/// Write `out` to stdout once it holds 64 KiB; true when stdout is closed (`| head`).
fn flush_full(out: &mut String) -> bool {
    if out.len() >= 64 * 1024 {
        stdout_write(out.as_bytes());
        out.clear();
    }
    crate::output::stdout_closed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_normal_absolute_paths() {
        assert_eq!(absolute(b"/home/u", b"a/b"), b"/home/u/a/b");
        assert_eq!(absolute(b"/home/u", b"./a/../b/"), b"/home/u/b");
        assert_eq!(absolute(b"/home/u", b"/x//y"), b"/x/y");
        assert_eq!(absolute(b"/", b".."), b"/");
    }

    #[test]
    fn globs_do_not_cross_slashes() {
        assert!(glob_match(b"/a/*.log", b"/a/x.log"));
        assert!(!glob_match(b"/a/*.log", b"/a/b/x.log"));
    }
}
