//! Which deletion holds a NAME: a path (typed, physical, or below a deleted tree), a name
//! found anywhere in the store, a glob, or an id; --at and --pick choose among versions.

use std::collections::{HashMap, HashSet};
use std::os::unix::ffi::OsStrExt;

use anyhow::Result;

use crate::catalog::{self, Catalog, Header, IdMatch};
use crate::output::{local_time, stderr_write};
use crate::paths::{has_glob, is_under, split_parent};
use crate::quote::quote;
use crate::sys;

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
    sys::fnmatch(&p, &s, libc::FNM_PATHNAME)
}

/// What a NAME resolved to.
pub(super) enum Resolution {
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
pub(super) fn resolve(
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
    // 3. A glob: every matching deleted path (the newest deletion of each). Without a `/`,
    //    as a bare name: in the current directory, else by the name anywhere.
    if has_glob(name) {
        let glob_found = |matches: &dyn Fn(&[u8]) -> bool| {
            let mut found: Vec<(usize, Vec<u8>)> = Vec::new();
            for (d, del) in deletions() {
                for e in del.removed() {
                    let Some(p) = e.path.bytes() else { continue };
                    if matches(&p) && !found.iter().any(|(_, f)| is_under(&p, f)) {
                        found.retain(|(_, f)| !is_under(f, &p));
                        found.push((d, p));
                    }
                }
            }
            found
        };
        let pattern = absolute(cwd, name);
        let mut found = glob_found(&|p| glob_match(&pattern, p));
        if found.is_empty() && !name.contains(&b'/') {
            found = glob_found(&|p| glob_match(name, split_parent(p).1));
            let deletions: HashSet<usize> = found.iter().map(|(d, _)| *d).collect();
            if deletions.len() > 1 {
                return Err(format!(
                    "it matches deleted objects of {} deletions; give a path, or choose with --at ID:\n{}",
                    deletions.len(),
                    candidates_text(catalog, &found).trim_end()
                ));
            }
        }
        if found.is_empty() {
            return Err(with_suggestion(
                "no deleted path matches",
                catalog,
                cwd,
                name,
            ));
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
    Err(with_suggestion(
        "no deletion in the store holds it",
        catalog,
        cwd,
        name,
    ))
}

/// `msg`, and the deleted operands whose name is close to NAME's (an edit or two away):
/// `...; did you mean 'build' (deleted 3 min ago)?`.
fn with_suggestion(msg: &str, catalog: &Catalog, cwd: &[u8], name: &[u8]) -> String {
    let mut trimmed = name;
    while trimmed.len() > 1 && trimmed.ends_with(b"/") {
        trimmed = &trimmed[..trimmed.len() - 1];
    }
    let typed = split_parent(trimmed).1;
    let most = (typed.len() / 4).clamp(1, 2);
    let mut close: Vec<(usize, usize, Vec<u8>)> = Vec::new();
    for (d, h) in catalog.headers.iter().enumerate() {
        if h.kept {
            continue;
        }
        for o in &h.operands {
            let Some(p) = o.absolute.bytes() else {
                continue;
            };
            let deleted = split_parent(&p).1;
            if deleted.len().abs_diff(typed.len()) > most || deleted.len() > 255 {
                continue;
            }
            let distance = edit_distance(deleted, typed);
            if distance <= most && !close.iter().any(|(_, _, q)| *q == p) {
                close.push((distance, d, p));
            }
        }
    }
    close.sort_by_key(|(distance, d, _)| (*distance, *d));
    let Some((_, d, p)) = close.first() else {
        return msg.to_string();
    };
    format!(
        "{msg}; did you mean {} (deleted {})?",
        quote(&crate::paths::display(cwd, p)),
        super::ago(&catalog.headers[*d].created)
    )
}

/// Edit distance between two names, in bytes: insertions, deletions, substitutions and
/// swaps of two neighbours (`biuld` is one from `build`).
fn edit_distance(a: &[u8], b: &[u8]) -> usize {
    let w = b.len() + 1;
    let mut m = vec![0usize; (a.len() + 1) * w];
    for i in 0..=a.len() {
        for j in 0..=b.len() {
            m[i * w + j] = if i == 0 || j == 0 {
                i + j
            } else {
                let cost = usize::from(a[i - 1] != b[j - 1]);
                let mut v = (m[(i - 1) * w + j] + 1)
                    .min(m[i * w + j - 1] + 1)
                    .min(m[(i - 1) * w + j - 1] + cost);
                if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                    v = v.min(m[(i - 2) * w + j - 2] + 1);
                }
                v
            };
        }
    }
    m[a.len() * w + b.len()]
}

/// `abs` with its deepest existing ancestor resolved (symlinks followed), when that differs:
/// the place a path typed through a symlink names, for manifests that did not record it.
pub(super) fn physical_path(abs: &[u8]) -> Option<Vec<u8>> {
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
pub(super) struct Attempt<'c> {
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
pub(super) fn attempts<'c>(
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
pub(super) fn pieces(found: &[Attempt<'_>]) -> Vec<(usize, Vec<u8>, Vec<u8>)> {
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
        // Each object's parent among them (none for the top one).
        let mut parent = crate::paths::parent_indices(paths);
        for (q, p) in parent.iter_mut().zip(paths.iter()) {
            if p.as_slice() == a.path.as_slice() {
                *q = None;
            }
        }
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
pub(super) fn candidates_text(catalog: &Catalog, found: &[(usize, Vec<u8>)]) -> String {
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
pub(super) fn choose(catalog: &Catalog, name: &[u8], found: &[(usize, Vec<u8>)]) -> Option<usize> {
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
pub(super) fn at_filter(catalog: &Catalog, at: &str) -> Result<Box<dyn Fn(usize) -> bool>, String> {
    if let IdMatch::One(d) = catalog.find_id(at) {
        return Ok(Box::new(move |i| i == d));
    }
    let time = parse_time(at).ok_or_else(|| {
        format!(
            "'{at}' is neither a deletion id nor a time (YYYY-MM-DD[ HH:MM[:SS]], HH:MM, 10m, 2h, 3d, yesterday)"
        )
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

/// A time as `--at` takes it: RFC 3339; `YYYY-MM-DD[ HH:MM[:SS]]` or `HH:MM` (today) in the
/// local time zone (a date alone is its end); `now`, `today`, `yesterday` (its end); or how
/// long ago, `10m`, `2h`, `3d`, `1w`, `45s` (`10m ago` too). The clock is the test clock
/// in debug builds (`SAFERM_TEST_NOW`).
pub(super) fn parse_time(text: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    parse_time_as(text, false)
}

/// [`parse_time`], with a day (`2026-12-01`, `today`, `yesterday`) read as its start when
/// `start` (`--since yesterday` is from yesterday's midnight on), else as its end.
pub(super) fn parse_time_as(text: &str, start: bool) -> Option<chrono::DateTime<chrono::Utc>> {
    use chrono::TimeZone;
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&chrono::Utc));
    }
    let now = chrono::DateTime::from_timestamp(crate::fault::now(), 0)?;
    let local_now = now.with_timezone(&chrono::Local);
    let lower = text.trim().to_ascii_lowercase();
    let word = lower.strip_suffix(" ago").unwrap_or(&lower).trim();
    let end_of = |days_back: i64| {
        let day = local_now.date_naive() - chrono::Duration::days(days_back);
        if start {
            return chrono::Local
                .from_local_datetime(&day.and_hms_opt(0, 0, 0)?)
                .earliest()
                .map(|t| t.with_timezone(&chrono::Utc));
        }
        chrono::Local
            .from_local_datetime(&day.and_hms_opt(23, 59, 59)?)
            .latest()
            .map(|t| t.with_timezone(&chrono::Utc).min(now))
    };
    match word {
        "now" => return Some(now),
        "today" if start => return end_of(0),
        "today" => return Some(now),
        "yesterday" => return end_of(1),
        _ => {}
    }
    // How long ago: a number and a unit (a number alone is not: `2026` is no time).
    let unit_at = word.find(|c: char| !c.is_ascii_digit());
    if unit_at.is_some_and(|i| i > 0) {
        if let Ok(Some(secs)) = crate::config::parse_duration(word) {
            return i64::try_from(secs)
                .ok()
                .and_then(|s| now.checked_sub_signed(chrono::Duration::try_seconds(s)?));
        }
    }
    if let Ok(hm) = chrono::NaiveTime::parse_from_str(word, "%H:%M") {
        return chrono::Local
            .from_local_datetime(&local_now.date_naive().and_time(hm))
            .earliest()
            .map(|t| t.with_timezone(&chrono::Utc));
    }
    let naive = ["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"]
        .iter()
        .find_map(|f| chrono::NaiveDateTime::parse_from_str(text, f).ok())
        .or_else(|| {
            let (h, m, sec) = if start { (0, 0, 0) } else { (23, 59, 59) };
            chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(h, m, sec))
        })?;
    chrono::Local
        .from_local_datetime(&naive)
        .earliest()
        .map(|t| t.with_timezone(&chrono::Utc))
}

pub(super) fn matches_pattern(del: &Header, cwd: &[u8], pattern: &[u8]) -> bool {
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

#[cfg(test)]
mod tests {
    use super::edit_distance;

    #[test]
    fn edit_distance_counts_swaps_of_neighbours_as_one() {
        assert_eq!(edit_distance(b"build", b"build"), 0);
        assert_eq!(edit_distance(b"biuld", b"build"), 1);
        assert_eq!(edit_distance(b"buld", b"build"), 1);
        assert_eq!(edit_distance(b"builds", b"build"), 1);
        assert_eq!(edit_distance(b"", b"ab"), 2);
        assert_eq!(edit_distance(b"kitten", b"sitting"), 3);
    }
}
