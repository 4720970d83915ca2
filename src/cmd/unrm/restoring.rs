//! Restoring what the names resolved to: group the picks by deletion, restore each
//! deletion's targets in one pass over its archive, say what came back, note it in the
//! store, and sum up.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;

use anyhow::{Context, Result};

use crate::catalog::{self, Catalog, Deletion, Restored};
use crate::manifest::PathBytes;
use crate::output::{count, stderr_write, stdout_write};
use crate::paths::{display, split_parent, PathMap};
use crate::quote::quote;
use crate::restore::{self, Conflict, Report, RestoreOptions, Tally, Target};
use crate::store::Store;
use crate::sys;
use crate::unrm_cli::Options;

use super::account::Account;
use super::find::{absolute, at_filter, candidates_text, choose, resolve, Resolution};
use super::met_damage;

pub(super) fn restore_names(
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
                if opts.json {
                    Account::default().print(1, false);
                }
                return Ok(1);
            }
        },
    };
    let tty = sys::stdin_is_tty();
    let mut picks = Vec::new();
    let mut bases = HashMap::new();
    // Names that come to nothing, for the JSON document (and the exit status).
    let mut account = Account::default();
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
        let mut fail = |msg: &str| {
            stderr_write(format!("unrm: could not restore {}: {msg}\n", quote(name)).as_bytes());
            account.unresolved(name, msg);
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
                // (The JSON document lists each deletion.)
                if !opts.json {
                    stdout_write(
                        format!(
                            "{} was removed in parts by {} deletions; restoring from each, the newest version of each object: {}\n",
                            quote(&display(cwd, &absolute(cwd, name))),
                            ids.len(),
                            ids.join(", ")
                        )
                        .as_bytes(),
                    );
                }
                for (d, p, base) in found {
                    bases.insert((d, p.clone()), base);
                    picks.push((d, p));
                }
            }
            Ok(Resolution::Choose(found)) if tty => match choose(catalog, name, &found) {
                Some(n) => picks.push(found[n].clone()),
                None => fail("nothing was chosen"),
            },
            Ok(Resolution::Choose(found)) => {
                fail(&format!(
                    "it matches several deleted objects; give the path, or choose with --at ID (or on a terminal):\n{}",
                    candidates_text(catalog, &found).trim_end()
                ));
            }
            Err(msg) => fail(&msg),
        }
    }
    if picks.is_empty() {
        if opts.json {
            account.print(1, false);
        }
        return Ok(1);
    }
    let code = restore_picks(opts, store, catalog, cwd, picks, &bases, account);
    Ok(code)
}

/// Restore every (deletion, source path), one pass over each archive; print the summary,
/// or with `--json` the one document of `account` (which holds the names that came to
/// nothing: the status is 1 if there are any).
pub(super) fn restore_picks(
    opts: &Options,
    store: &Store,
    catalog: &Catalog,
    cwd: &[u8],
    picks: Vec<(usize, Vec<u8>)>,
    bases: &HashMap<(usize, Vec<u8>), Vec<u8>>,
    mut account: Account,
) -> i32 {
    let mut failed = account.has_unresolved();
    let give_up = |e: &anyhow::Error, account: Account| {
        stderr_write(format!("unrm: {e:#}\n").as_bytes());
        if opts.json {
            account.print(1, false);
        }
        1
    };
    // Held shared, as writers do, so that a collector (exclusive) never removes an archive
    // that is being restored from.
    let _lock = match store.lock_shared() {
        Ok(l) => l,
        Err(e) => return give_up(&e.context("could not restore"), account),
    };
    // Ctrl-C stops after the current object (a file being written is removed), leaves what
    // is complete in place, and dies of the signal.
    crate::signal::catch();
    let anchor = match &opts.to {
        None => b"/".to_vec(),
        Some(dir) => match prepare_to(dir) {
            Ok(a) => a,
            Err(e) => return give_up(&e, account),
        },
    };
    let ropts = RestoreOptions {
        conflict: opts.conflict,
        anchor: anchor.clone(),
        euid: sys::geteuid(),
        cwd: cwd.to_vec(),
        // The -v lines would be more than the one JSON document on stdout.
        verbose: opts.verbose && !opts.json,
        record: opts.json,
    };
    let (order, by_deletion) = group_by_deletion(opts, catalog, &anchor, picks, bases);
    let mut tally = Tally::new("unrm: restoring", wanted(catalog, &order, &by_deletion));
    let mut total = Report::default();
    for &d in &order {
        let del = match catalog.load(d) {
            Ok(del) => del,
            Err(e) => {
                tally.bar.clear();
                stderr_write(format!("unrm: could not restore: {e}\n").as_bytes());
                failed = true;
                continue;
            }
        };
        let targets = &by_deletion[&d];
        let mut report = Report::default();
        let result = restore::restore(
            store,
            &del.manifest,
            targets,
            &ropts,
            &mut report,
            &mut tally,
        );
        tally.bar.clear();
        let interrupted = crate::signal::caught();
        let mut error = None;
        match result {
            // Ctrl-C: said below, in one line.
            Err(_) if interrupted.is_some() && !report.not_durable => {}
            Err(e) => {
                stderr_write(
                    format!(
                        "unrm: could not restore from deletion {}: {e:#}\n",
                        del.id()
                    )
                    .as_bytes(),
                );
                failed = true;
                error = Some(format!("{e:#}"));
            }
            Ok(()) => {}
        }
        if opts.json {
            account.deletion(catalog, (d, &order), targets, &report, error);
        } else if interrupted.is_none() {
            say_restored(opts, cwd, catalog, (d, &order), targets, &report);
        }
        // Found all there already counts too: else `unrm --last` would stop at that
        // deletion for good, never reaching the command before it.
        if (report.restored > 0 || report.already > 0) && !report.not_durable {
            note_restored(store, del, targets, &report);
        }
        if let Some(sig) = interrupted {
            let objects = total.restored + report.restored;
            stderr_write(interrupted_line(&tally, objects, opts.conflict).as_bytes());
            if opts.json {
                account.print(1, true);
            }
            crate::signal::reraise(sig);
        }
        add_up(&mut total, report);
    }
    tally.bar.finish();
    let code = sum_up(&total, failed);
    if opts.json {
        account.print(code, false);
    }
    code
}

/// The regular files (and their bytes) the run restores: what its progress counts.
fn wanted(
    catalog: &Catalog,
    order: &[usize],
    by_deletion: &HashMap<usize, Vec<Target>>,
) -> (u64, u64) {
    order
        .iter()
        .filter_map(|d| Some((catalog.load(*d).ok()?, &by_deletion[d])))
        .map(|(del, targets)| Tally::wanted(&del.manifest, targets))
        .fold((0, 0), |(n, b), (dn, db)| (n + dn, b + db))
}

/// What Ctrl-C left: `unrm: interrupted: restored 120 of 5000 files (3.1 MiB of 290.0 MiB);
/// run the same command again to finish`. The files counted are complete under their real
/// names (the one being written is removed), and a run again finds them there, identical,
/// and restores the rest. Without regular files, the `objects` made are counted.
fn interrupted_line(tally: &Tally, objects: u64, conflict: Conflict) -> String {
    let again = match conflict {
        Conflict::Skip => "run the same command again to finish",
        // Again with --rename would restore all of it beside what is there now.
        Conflict::Rename => "run it again without --rename to finish",
        // What was in the way is archived and gone: again, it would archive this part.
        Conflict::Overwrite => "run it again without --overwrite to finish",
    };
    let (files, wanted) = (tally.files, tally.files_wanted.max(tally.files));
    if wanted == 0 {
        let objects = crate::output::count(objects, "object", "objects");
        return format!("unrm: interrupted: restored {objects}; {again}\n");
    }
    let noun = if wanted == 1 { "file" } else { "files" };
    let (human, bytes_wanted) = (crate::output::human, tally.bytes_wanted.max(tally.bytes));
    format!(
        "unrm: interrupted: restored {files} of {wanted} {noun} ({} of {}); {again}\n",
        human(tally.bytes),
        human(bytes_wanted)
    )
}

/// The picks as restore targets, grouped by deletion in the order of first mention, each
/// with its destination. Everything here is looked up, never scanned: `unrm --last` after
/// `rm d/*` has one pick per file (issue 12).
fn group_by_deletion(
    opts: &Options,
    catalog: &Catalog,
    anchor: &[u8],
    picks: Vec<(usize, Vec<u8>)>,
    bases: &HashMap<(usize, Vec<u8>), Vec<u8>>,
) -> (Vec<usize>, HashMap<usize, Vec<Target>>) {
    let mut order: Vec<usize> = Vec::new();
    let mut by_deletion: HashMap<usize, Vec<Target>> = HashMap::new();
    let mut seen: HashSet<(usize, Vec<u8>)> = HashSet::new();
    let mut roots_of: HashMap<usize, PathMap<()>> = HashMap::new();
    for (d, source) in picks {
        if !seen.insert((d, source.clone())) {
            continue;
        }
        let dest = if opts.to.is_some() {
            let base = match bases.get(&(d, source.clone())) {
                Some(b) => b.clone(),
                None => {
                    let roots = roots_of
                        .entry(d)
                        .or_insert_with(|| roots_of_deletion(catalog, d));
                    let root = root_holding(roots, &source).unwrap_or_else(|| source.clone());
                    split_parent(&root).0.to_vec()
                }
            };
            under_to(anchor, &base, &source)
        } else {
            source.clone()
        };
        let list = by_deletion.entry(d).or_insert_with(|| {
            order.push(d);
            Vec::new()
        });
        list.push(Target { source, dest });
    }
    (order, by_deletion)
}

/// The roots of deletion `d` (what it removed at the top), to look paths up in.
fn roots_of_deletion(catalog: &Catalog, d: usize) -> PathMap<()> {
    let mut roots = PathMap::default();
    if let Some(del) = catalog.get(d) {
        for r in del.roots() {
            roots.insert_first(r, ());
        }
    }
    roots
}

/// Where `source` goes under `--to` (`anchor`): the names below `base` are kept, `base`
/// being the parent of the deleted operand (for pieces of several deletions, of the operand
/// they were removed under): `--to out proj/src/a.rs` makes out/proj/src/a.rs.
fn under_to(anchor: &[u8], base: &[u8], source: &[u8]) -> Vec<u8> {
    // A damaged manifest may hold a path that is not absolute: it keeps its name here, and
    // restoring refuses the manifest.
    let skip = if base == b"/" { 1 } else { base.len() + 1 };
    let rel = source.get(skip..).unwrap_or(source);
    let mut p = anchor.to_vec();
    if !p.ends_with(b"/") {
        p.push(b'/');
    }
    p.extend_from_slice(rel);
    p
}

/// One `restored ...` line per target root that came back (without -v, which printed each
/// object), saying which version it is (when deletion `d` was made, and how many older
/// deletions removed the same path: `--pick` chooses among them), or that it was there
/// already. `restore` returns once what it made is durable; if it could not make it so,
/// nothing is said to be restored.
fn say_restored(
    opts: &Options,
    cwd: &[u8],
    catalog: &Catalog,
    (d, restoring): (usize, &[usize]),
    targets: &[Target],
    report: &Report,
) {
    let renamed_to: HashMap<&[u8], &Vec<u8>> = report
        .renamed
        .iter()
        .map(|(w, u)| (w.as_slice(), u))
        .collect();
    let restored: HashSet<&[u8]> = report.roots_restored.iter().map(|r| &r[..]).collect();
    let replaced: HashSet<&[u8]> = report.replaced.iter().map(|r| &r[..]).collect();
    let deleted = format!("deleted {}", super::ago(&catalog.headers[d].created));
    // Each target's line; the plain ones (restored, or there already) are summed up when
    // there are many of them (`rm d/*` of thousands of files).
    let mut lines: Vec<Said> = Vec::new();
    for t in targets {
        let renamed = renamed_to.get(t.dest.as_slice()).copied();
        let used = renamed.unwrap_or(&t.dest);
        if opts.verbose || report.not_durable || !restored.contains(used.as_slice()) {
            continue;
        }
        let shown = quote(&display(cwd, &t.dest));
        // Nothing was written: all of it was there already, identical.
        if report.restored == 0 && report.already > 0 && renamed.is_none() {
            lines.push(Said::Already(shown));
            continue;
        }
        let older = older_versions(catalog, d, restoring, &t.source);
        let replaced = replaced.contains(t.dest.as_slice());
        if renamed.is_none() && !replaced {
            lines.push(Said::Restored { shown, older });
            continue;
        }
        let mut notes = vec![deleted.clone()];
        if replaced {
            notes.push("what was there is archived in the store".to_string());
        }
        if older > 0 {
            notes.push(older_note(older));
        }
        lines.push(Said::Other(match renamed {
            Some(used) => format!(
                "restored {shown} as {} ({})\n",
                quote(&display(cwd, used)),
                notes.join("; ")
            ),
            None => format!("restored {shown} ({})\n", notes.join("; ")),
        }));
    }
    let mut out = String::new();
    if lines.len() <= LISTED {
        for line in &lines {
            match line {
                Said::Restored { shown, older: 0 } => {
                    out.push_str(&format!("restored {shown} ({deleted})\n"))
                }
                Said::Restored { shown, older } => out.push_str(&format!(
                    "restored {shown} ({deleted}; {})\n",
                    older_note(*older)
                )),
                Said::Already(shown) => out.push_str(&format!(
                    "{shown} is there already, as it was ({deleted})\n"
                )),
                Said::Other(text) => out.push_str(text),
            }
        }
        stdout_write(out.as_bytes());
        return;
    }
    let mut restored_names = Vec::new();
    let mut already_names = Vec::new();
    let mut with_older = 0u64;
    for line in &lines {
        match line {
            Said::Restored { shown, older } => {
                restored_names.push(shown.as_str());
                with_older += u64::from(*older > 0);
            }
            Said::Already(shown) => already_names.push(shown.as_str()),
            Said::Other(text) => out.push_str(text),
        }
    }
    if !restored_names.is_empty() {
        let older = match with_older {
            0 => String::new(),
            k => format!("; {} older versions: --pick", count(k, "has", "have")),
        };
        out.push_str(&format!(
            "restored {}: {} ({deleted}{older}; -v lists every object)\n",
            count(restored_names.len() as u64, "operand", "operands"),
            first_names(&restored_names)
        ));
    }
    if !already_names.is_empty() {
        let n = already_names.len() as u64;
        out.push_str(&format!(
            "{} there already, as {} ({deleted}): {}\n",
            count(n, "operand was", "operands were"),
            if n == 1 { "it was" } else { "they were" },
            first_names(&already_names)
        ));
    }
    stdout_write(out.as_bytes());
}

/// `N older version(s): --pick`.
fn older_note(older: usize) -> String {
    format!(
        "{}: --pick",
        count(older as u64, "older version", "older versions")
    )
}

/// The first three of `names`, and how many more.
fn first_names(names: &[&str]) -> String {
    let shown = names[..names.len().min(3)].join(", ");
    match names.len() {
        n if n <= 3 => shown,
        n => format!("{shown} and {} more", n - 3),
    }
}

/// More lines than this for one deletion are summed up.
const LISTED: usize = 10;

/// What a restore line says of its target.
enum Said {
    /// Restored in place, nothing more to say but when it was deleted and how many older
    /// versions there are.
    Restored { shown: String, older: usize },
    /// All of it was there already, identical.
    Already(String),
    /// A line of its own (renamed, replaced).
    Other(String),
}

/// How many deletions older than `d` removed `path` itself (as one of their operands),
/// are still in the store, and are not restored from in this run (`restoring`): the other
/// versions `--pick` offers.
pub(super) fn older_versions(
    catalog: &Catalog,
    d: usize,
    restoring: &[usize],
    path: &[u8],
) -> usize {
    catalog
        .headers
        .iter()
        .enumerate()
        .skip(d + 1)
        .filter(|(i, h)| !h.kept && !restoring.contains(i))
        .map(|(_, h)| h)
        .filter(|h| {
            h.operands
                .iter()
                .any(|o| o.absolute.bytes().as_deref() == Some(path))
        })
        .count()
}

/// Note in the store that `del` was restored (whole, or in part), so that `unrm --last`
/// moves on to the deletion before it. Only for what is durable.
fn note_restored(store: &Store, del: &Deletion, targets: &[Target], report: &Report) {
    let roots: HashSet<Vec<u8>> = del.roots().into_iter().collect();
    let whole = targets.len() == roots.len() && targets.iter().all(|t| roots.contains(&t.source));
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

/// Add one deletion's report to the total.
fn add_up(total: &mut Report, report: Report) {
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

/// What could not be done as recorded, and the summary line when anything failed; the exit
/// status.
fn sum_up(total: &Report, failed: bool) -> i32 {
    if total.ownership_not_set > 0 {
        stderr_write(
            format!(
                "unrm: could not give {} their recorded owner (only root can); they belong to you\n",
                count(total.ownership_not_set, "restored object", "restored objects")
            )
            .as_bytes(),
        );
    }
    if total.xattrs_not_set > 0 {
        stderr_write(
            format!(
                "unrm: could not restore {} (not permitted or not supported here)\n",
                count(
                    total.xattrs_not_set,
                    "extended attribute",
                    "extended attributes"
                )
            )
            .as_bytes(),
        );
    }
    if !total.ok() || failed {
        let mut parts = vec![format!(
            "restored {}",
            count(total.restored, "object", "objects")
        )];
        if !total.conflicts.is_empty() {
            parts.push(format!(
                "{} not restored: something else is in the way",
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
pub(super) fn root_holding(roots: &PathMap<()>, path: &[u8]) -> Option<Vec<u8>> {
    roots.nearest(path).map(|(root, _)| root.to_vec())
}

/// The `--to` directory, created if missing, as a canonical absolute path.
pub(super) fn prepare_to(dir: &std::path::Path) -> Result<Vec<u8>> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("could not create '{}'", dir.display()))?;
    let canon = std::fs::canonicalize(dir)
        .with_context(|| format!("could not resolve '{}'", dir.display()))?;
    Ok(canon.as_os_str().as_bytes().to_vec())
}
