//! Retention: which deletions to purge, oldest first, and purging them.
//!
//! Rules (from the configuration, or from `unrm --purge`'s options):
//! - `max_age`: deletions older than this go;
//! - `max_size`: while the archives add up to more than this, the oldest go (a percentage is
//!   of the store filesystem's size);
//! - `min_free`: while the store's filesystem has less free space than this, the oldest go;
//! - `keep_last`: the newest N deletions never go to any of these rules, and neither does
//!   the deletion the current saferm run just made.
//!
//! Explicit ids (`unrm --purge ID`) go whatever the rules say: the user named them.
//!
//! Purging takes the store's exclusive lock, so no deletion is purged while it is written or
//! restored from; the crash-safe order (marker, manifest, archive) is [`Store::purge_deletions`].
//! After each saferm run, [`after_saferm_run`] looks at directory listings and `statfs` only,
//! and takes the lock (without waiting) only when a limit is exceeded or there is
//! housekeeping to do.

use anyhow::{bail, Result};

use crate::catalog::{self, Header};
use crate::config::{Config, Size};
use crate::quote::quote;
use crate::store::{layout, LockGuard, PurgeTarget, Store};

/// What to purge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rules {
    /// Seconds; None is never.
    pub max_age: Option<u64>,
    pub max_size: Size,
    pub min_free: Size,
    /// Keep only the newest N (`unrm --purge --keep N` on its own).
    pub max_count: Option<usize>,
    /// The newest N are safe from the rules above.
    pub protect_newest: usize,
    /// Full ids purged whatever the rules say.
    pub ids: Vec<String>,
}

impl Rules {
    /// The configured limits.
    pub fn from_config(c: &Config) -> Rules {
        Rules {
            max_age: c.max_age.value,
            max_size: c.max_size.value,
            min_free: c.min_free.value,
            max_count: None,
            protect_newest: c.keep_last.value,
            ids: Vec::new(),
        }
    }
}

/// Why a deletion is purged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reason {
    /// Named by the user.
    Asked,
    /// Older than `max_age`.
    Age,
    /// Beyond the newest `max_count`.
    Count,
    /// The store was larger than `max_size`.
    Size,
    /// The filesystem had less than `min_free` free.
    Free,
}

/// One deletion as the rules see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub id: String,
    /// Seconds since the epoch.
    pub created: i64,
    pub archive_bytes: u64,
}

/// The store filesystem's size and free space, in bytes, and what is staged in the store
/// (instant mode) and not archived yet, which `max_size` counts with the archives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Space {
    pub total: u64,
    pub available: u64,
    pub staged: u64,
}

impl Space {
    /// The space of `store` now.
    fn of(store: &Store) -> Result<Space> {
        let fs = store.fs_stat()?;
        Ok(Space {
            total: fs.total,
            available: fs.available,
            staged: store.staged_bytes(),
        })
    }
}

/// The deletions to purge (indexes into `cands`, which is sorted oldest first), oldest
/// first, with the reason. Pure: tested without a store.
pub fn select(
    cands: &[Candidate],
    rules: &Rules,
    now: i64,
    space: Space,
    just_made: Option<&str>,
) -> Vec<(usize, Reason)> {
    let n = cands.len();
    let protected =
        |i: usize| i + rules.protect_newest >= n || Some(cands[i].id.as_str()) == just_made;
    let mut chosen: Vec<Option<Reason>> = vec![None; n];
    for (i, c) in cands.iter().enumerate() {
        if rules.ids.contains(&c.id) {
            chosen[i] = Some(Reason::Asked);
        } else if protected(i) {
            continue;
        } else if rules
            .max_age
            .is_some_and(|age| now.saturating_sub(c.created) > age as i64)
        {
            chosen[i] = Some(Reason::Age);
        } else if rules.max_count.is_some_and(|keep| i + keep < n) {
            chosen[i] = Some(Reason::Count);
        }
    }
    let freed = |chosen: &[Option<Reason>]| -> u64 {
        chosen
            .iter()
            .zip(cands)
            .filter(|(r, _)| r.is_some())
            .map(|(_, c)| c.archive_bytes)
            .fold(0u64, u64::saturating_add)
    };
    if let Some(limit) = rules.max_size.bytes_of(space.total) {
        // Sizes come from the index, a cache anyone can damage: saturate, never overflow.
        let total = cands
            .iter()
            .map(|c| c.archive_bytes)
            .fold(space.staged, u64::saturating_add);
        let mut left = total.saturating_sub(freed(&chosen));
        for i in 0..n {
            if left <= limit {
                break;
            }
            if chosen[i].is_none() && !protected(i) {
                chosen[i] = Some(Reason::Size);
                left = left.saturating_sub(cands[i].archive_bytes);
            }
        }
    }
    if let Some(floor) = rules.min_free.bytes_of(space.total) {
        let mut free = space.available.saturating_add(freed(&chosen));
        for i in 0..n {
            if free >= floor {
                break;
            }
            if chosen[i].is_none() && !protected(i) {
                chosen[i] = Some(Reason::Free);
                free = free.saturating_add(cands[i].archive_bytes);
            }
        }
    }
    chosen
        .into_iter()
        .enumerate()
        .filter_map(|(i, r)| r.map(|r| (i, r)))
        .collect()
}

/// The creation time an id starts with (`20261126T105853.123456789Z-...`), in seconds.
pub fn id_time(id: &str) -> Option<i64> {
    let stamp = id.get(..15)?;
    chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%S")
        .ok()
        .map(|t| t.and_utc().timestamp())
}

/// A deletion that was (or, in a dry run, would be) purged.
#[derive(Clone, Debug)]
pub struct Purged {
    pub header: Header,
    pub archive_bytes: u64,
    pub reason: Reason,
}

/// Select and (unless `dry_run`) purge, under `lock`, which must be exclusive unless this is
/// a dry run. `ids` in the rules must be full ids.
pub fn purge(
    store: &Store,
    lock: Option<&LockGuard>,
    rules: &Rules,
    just_made: Option<&str>,
    dry_run: bool,
) -> Result<Vec<Purged>> {
    if !dry_run && !lock.is_some_and(|l| l.is_exclusive()) {
        bail!("purging needs the store's exclusive lock");
    }
    let (mut headers, _) = catalog::headers(store)?;
    headers.reverse(); // oldest first
    let scan = store.scan()?;
    let size_of = |h: &Header| {
        h.archive.as_ref().map(|a| a.size).unwrap_or_else(|| {
            scan.archives
                .iter()
                .find(|a| a.id == h.id)
                .map(|a| a.size)
                .unwrap_or(0)
        })
    };
    let cands: Vec<Candidate> = headers
        .iter()
        .map(|h| Candidate {
            id: h.id.clone(),
            created: id_time(&h.id)
                .or_else(|| {
                    chrono::DateTime::parse_from_rfc3339(&h.created)
                        .ok()
                        .map(|t| t.timestamp())
                })
                .unwrap_or(0),
            archive_bytes: size_of(h),
        })
        .collect();
    let space = Space::of(store)?;
    let now = crate::fault::now();
    let chosen = select(&cands, rules, now, space, just_made);
    let purged: Vec<Purged> = chosen
        .iter()
        .map(|&(i, reason)| Purged {
            header: headers[i].clone(),
            archive_bytes: cands[i].archive_bytes,
            reason,
        })
        .collect();
    if dry_run || purged.is_empty() {
        return Ok(purged);
    }
    let targets: Vec<PurgeTarget> = purged
        .iter()
        .map(|p| PurgeTarget {
            id: p.header.id.clone(),
            manifest_month: p.header.month.clone(),
            archive_month: scan
                .archives
                .iter()
                .find(|a| a.id == p.header.id)
                .map(|a| a.month.clone()),
        })
        .collect();
    if let Some(lock) = lock {
        store.purge_deletions(lock, &targets)?;
    }
    // Drop the purged headers from the listing cache now (best effort: it heals itself).
    let _ = catalog::headers(store);
    Ok(purged)
}

/// Housekeeping and automatic retention at the end of a saferm run; returns the lines to
/// print on stderr. Cheap when there is nothing to do: directory listings, stats and one
/// `statfs`, no manifest read. It never waits for the lock: when another saferm, a restore
/// or a purge holds it, this run does nothing. Call it after the run's shared lock is
/// released (flock would make the two locks of one process conflict).
pub fn after_saferm_run(store: &Store, config: &Config, just_made: Option<&str>) -> Vec<String> {
    match housekeeping(store, config, just_made) {
        Ok(lines) => lines,
        Err(e) => vec![format!(
            "saferm: warning: could not apply the store's retention limits: {e:#}"
        )],
    }
}

/// The last full retention check, cached in the store (`retention.json`): between full
/// checks (every [`FULL_CHECK_SECS`]), a saferm run looks only at the free space and at the
/// size of the archive it just made, not at every archive.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Checked {
    /// When (seconds since the epoch).
    at: i64,
    /// Total bytes of the archives then.
    archive_bytes: u64,
}

const CHECKED: &str = layout::RETENTION;
/// How long before the last full check a manifest may have been written and still lose its
/// data in a crash after that check (the kernel writes dirty data back within about 30 s).
const RECENT_SECS: i64 = 600;
/// How often a saferm run lists and stats every archive (the only check that costs
/// anything with thousands of deletions: ~3 ms per 1,000).
pub const FULL_CHECK_SECS: i64 = 300;

fn housekeeping(store: &Store, config: &Config, just_made: Option<&str>) -> Result<Vec<String>> {
    let rules = Rules::from_config(config);
    let space = Space::of(store)?;
    let now = crate::fault::now();
    let checked: Option<Checked> = store
        .read_cache(CHECKED)
        .and_then(|b| serde_json::from_slice(&b).ok());
    let last_full = checked.as_ref().map(|c| c.at);
    if let Some(c) = checked.filter(|c| (0..FULL_CHECK_SECS).contains(&now.saturating_sub(c.at))) {
        let total = c
            .archive_bytes
            .saturating_add(space.staged)
            .saturating_add(just_made.and_then(|id| store.archive_size(id)).unwrap_or(0));
        let over_size = rules
            .max_size
            .bytes_of(space.total)
            .is_some_and(|limit| total > limit);
        let over_free = rules
            .min_free
            .bytes_of(space.total)
            .is_some_and(|floor| space.available < floor);
        // Ages move slowly: max_age waits for the next full check.
        if !over_size && !over_free {
            return Ok(Vec::new());
        }
    }
    let scan = store.scan()?;
    // Best effort: without the cache, the next run checks in full again.
    let remember = |archive_bytes: u64| {
        let _ = serde_json::to_vec(&Checked {
            at: now,
            archive_bytes,
        })
        .map_err(anyhow::Error::new)
        .and_then(|b| store.write_cache(CHECKED, &b));
    };
    remember(scan.archive_bytes());
    let stale = crate::check::STALE_TEMP_SECS as i64;
    let cands: Vec<Candidate> = scan
        .archives
        .iter()
        .filter(|a| scan.manifests.contains_key(&a.id))
        .map(|a| Candidate {
            id: a.id.clone(),
            created: id_time(&a.id).unwrap_or(a.mtime),
            archive_bytes: a.size,
        })
        .collect();
    let over = !select(&cands, &rules, now, space, just_made).is_empty();
    let stale_orphans = scan
        .orphans()
        .any(|a| now.saturating_sub(a.mtime) >= stale && Some(a.id.as_str()) != just_made);
    // Only a manifest written shortly before a crash can have lost its data: those since a
    // while before the last full check (all of them when it is not known).
    // Ids start with their UTC time and sort by it: compared as text, not parsed.
    let since = last_full
        .and_then(|at| chrono::DateTime::from_timestamp(at.saturating_sub(RECENT_SECS), 0))
        .map(|t| t.format("%Y%m%dT%H%M%S").to_string());
    let empty_manifests = store.empty_manifests(&|id| since.as_deref().is_none_or(|s| id >= s))?;
    let work = over
        || stale_orphans
        || !empty_manifests.is_empty()
        || !scan.purging.is_empty()
        || store.has_stale_temp(crate::check::STALE_TEMP_SECS)?;
    if !work {
        return Ok(Vec::new());
    }
    let Some(lock) = store.try_lock_exclusive()? else {
        return Ok(Vec::new()); // busy: the next run will do it
    };
    let mut lines = Vec::new();
    let scan = store.scan()?;
    let finished = store.finish_interrupted_purges(&lock, &scan)?;
    if !finished.is_empty() {
        lines.push(format!(
            "saferm: finished purging {} that an interrupted purge left behind",
            crate::output::count(finished.len() as u64, "deletion", "deletions")
        ));
    }
    store.sweep_temp(&lock, crate::check::STALE_TEMP_SECS)?;
    for line in crate::check::heal_manifests(store, &lock, &empty_manifests) {
        lines.push(format!("saferm: {line}"));
    }
    for a in scan.orphans() {
        if now.saturating_sub(a.mtime) < stale || Some(a.id.as_str()) == just_made {
            continue;
        }
        let rel = layout::archive_rel(&a.month, &a.id);
        let incomplete = store
            .open_published(&rel)
            .is_ok_and(|f| crate::check::is_incomplete(&f));
        if incomplete {
            store.remove_orphan_archive(&lock, &a.month, &a.id)?;
            lines.push(format!(
                "saferm: removed an incomplete archive ({}) left by an interrupted saferm, which removed nothing",
                crate::output::human(a.size)
            ));
        } else {
            match crate::check::rebuild_manifest(store, &a.month, &rel) {
                Ok(()) => lines.push(format!(
                    "saferm: rebuilt the lost manifest of deletion {} from its archive",
                    a.id
                )),
                Err(e) => {
                    // Kept for recovery by hand, and not read again after every run.
                    let aside = store.set_aside_archive(&lock, &a.month, &a.id)?;
                    lines.push(format!(
                        "saferm: warning: archive {} has no manifest and cannot be rebuilt ({e:#}); kept as '{}', see 'unrm --check'",
                        a.id,
                        store.root().join(&aside).display()
                    ))
                }
            }
        }
    }
    if over {
        let purged = purge(store, Some(&lock), &rules, just_made, false)?;
        if !purged.is_empty() {
            remember(store.scan()?.archive_bytes());
        }
        lines.extend(report_lines(&purged, config));
    }
    Ok(lines)
}

/// `saferm: purged 3 old deletions (1.2 GiB): ...`, then one line per deletion (five at
/// most).
fn report_lines(purged: &[Purged], config: &Config) -> Vec<String> {
    if purged.is_empty() {
        return Vec::new();
    }
    let bytes = purged
        .iter()
        .map(|p| p.archive_bytes)
        .fold(0u64, u64::saturating_add);
    let mut reasons: Vec<Reason> = purged.iter().map(|p| p.reason).collect();
    reasons.sort();
    reasons.dedup();
    let why: Vec<String> = reasons
        .iter()
        .map(|r| match r {
            Reason::Asked => "asked for".to_string(),
            Reason::Age => format!(
                "older than max_age {}",
                config.max_age.value.map(duration_text).unwrap_or_default()
            ),
            Reason::Count => "more than the deletions to keep".to_string(),
            Reason::Size => format!(
                "the store was over max_size {}",
                size_text(config.max_size.value)
            ),
            Reason::Free => format!(
                "less than min_free {} was free",
                size_text(config.min_free.value)
            ),
        })
        .collect();
    let mut lines = vec![format!(
        "saferm: purged {} old deletion{} ({}): {}",
        purged.len(),
        if purged.len() == 1 { "" } else { "s" },
        crate::output::human(bytes),
        why.join("; ")
    )];
    for p in purged.iter().take(5) {
        lines.push(format!("saferm:   {}", line_of(p)));
    }
    if purged.len() > 5 {
        lines.push(format!("saferm:   and {} more", purged.len() - 5));
    }
    lines
}

/// `ID  YYYY-MM-DD HH:MM:SS  SIZE  OPERANDS` (local time, quoted operands).
pub fn line_of(p: &Purged) -> String {
    let operands: Vec<String> = p
        .header
        .operands
        .iter()
        .map(|o| quote(&o.absolute.bytes().unwrap_or_default()))
        .collect();
    let when = chrono::DateTime::parse_from_rfc3339(&p.header.created)
        .map(|t| {
            t.with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
        })
        .unwrap_or_else(|_| p.header.created.clone());
    format!(
        "{}  {}  {:>10}  {}",
        p.header.id,
        when,
        crate::output::human(p.archive_bytes),
        operands.join(" ")
    )
}

/// `30d`, `12h`, `90m`, `45s`.
pub fn duration_text(secs: u64) -> String {
    for (unit, n) in [("w", 7 * 86_400), ("d", 86_400), ("h", 3600), ("m", 60)] {
        if secs >= n && secs.is_multiple_of(n) {
            return format!("{}{unit}", secs / n);
        }
    }
    format!("{secs}s")
}

/// `10%`, `2.0 GiB`, `never`.
pub fn size_text(s: Size) -> String {
    match s {
        Size::Bytes(b) => crate::output::human(b),
        Size::PerMille(pm) if pm % 10 == 0 => format!("{}%", pm / 10),
        Size::PerMille(pm) => format!("{}.{}%", pm / 10, pm % 10),
        Size::Unlimited => "never".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;
    const NOW: i64 = 1_800_000_000;

    /// Deletions made `ages` days ago (oldest first), each `size` bytes.
    fn cands(ages: &[i64], size: u64) -> Vec<Candidate> {
        ages.iter()
            .enumerate()
            .map(|(i, a)| Candidate {
                id: format!("id{i:02}"),
                created: NOW - a * DAY,
                archive_bytes: size,
            })
            .collect()
    }

    fn rules() -> Rules {
        Rules {
            max_age: None,
            max_size: Size::Unlimited,
            min_free: Size::Unlimited,
            max_count: None,
            protect_newest: 0,
            ids: Vec::new(),
        }
    }

    /// Found by the fuzz campaign: sizes from a damaged index overflowed the total.
    #[test]
    fn sizes_that_add_up_past_u64_do_not_overflow() {
        let mut c = cands(&[3, 2], 0);
        c[0].archive_bytes = 1_302_585_527_159_884_862;
        c[1].archive_bytes = 17_144_158_546_549_666_754;
        let r = Rules {
            max_size: Size::Bytes(u64::MAX),
            ..rules()
        };
        assert!(select(&c, &r, NOW, ROOMY, None).is_empty());
        let r = Rules {
            max_size: Size::Bytes(0),
            ..rules()
        };
        assert_eq!(select(&c, &r, NOW, ROOMY, None).len(), 2);
    }

    const ROOMY: Space = Space {
        total: 1000,
        available: 900,
        staged: 0,
    };

    #[test]
    fn age_purges_what_is_older_oldest_first() {
        let c = cands(&[40, 35, 31, 29, 1], 10);
        let r = Rules {
            max_age: Some(30 * DAY as u64),
            ..rules()
        };
        let got = select(&c, &r, NOW, ROOMY, None);
        assert_eq!(
            got,
            vec![(0, Reason::Age), (1, Reason::Age), (2, Reason::Age)]
        );
    }

    #[test]
    fn keep_last_and_the_deletion_just_made_are_never_purged() {
        let c = cands(&[40, 39, 38, 37, 36], 10);
        let r = Rules {
            max_age: Some(DAY as u64),
            protect_newest: 2,
            ..rules()
        };
        let got = select(&c, &r, NOW, ROOMY, Some("id00"));
        assert_eq!(got, vec![(1, Reason::Age), (2, Reason::Age)]);
    }

    #[test]
    fn size_purges_the_oldest_until_the_store_fits() {
        let c = cands(&[5, 4, 3, 2, 1], 100);
        let r = Rules {
            max_size: Size::Bytes(250),
            protect_newest: 1,
            ..rules()
        };
        let got = select(&c, &r, NOW, ROOMY, None);
        assert_eq!(
            got,
            vec![(0, Reason::Size), (1, Reason::Size), (2, Reason::Size)]
        );
        // A percentage is of the filesystem: 30% of 1000 is 300.
        let r = Rules {
            max_size: Size::PerMille(300),
            ..rules()
        };
        assert_eq!(select(&c, &r, NOW, ROOMY, None).len(), 2);
    }

    #[test]
    fn free_space_purges_the_oldest_until_there_is_enough() {
        let c = cands(&[5, 4, 3, 2, 1], 100);
        let r = Rules {
            min_free: Size::Bytes(300),
            ..rules()
        };
        let tight = Space {
            total: 1000,
            available: 50,
            staged: 0,
        };
        let got = select(&c, &r, NOW, tight, None);
        assert_eq!(
            got,
            vec![(0, Reason::Free), (1, Reason::Free), (2, Reason::Free)]
        );
    }

    #[test]
    fn named_ids_go_even_when_protected_and_count_keeps_the_newest() {
        let c = cands(&[5, 4, 3, 2, 1], 1);
        let r = Rules {
            ids: vec!["id04".into()],
            protect_newest: 3,
            ..rules()
        };
        assert_eq!(select(&c, &r, NOW, ROOMY, None), vec![(4, Reason::Asked)]);
        let r = Rules {
            max_count: Some(2),
            protect_newest: 2,
            ..rules()
        };
        assert_eq!(
            select(&c, &r, NOW, ROOMY, None),
            vec![(0, Reason::Count), (1, Reason::Count), (2, Reason::Count)]
        );
    }

    #[test]
    fn nothing_is_purged_within_the_limits() {
        let c = cands(&[3, 2, 1], 10);
        let r = Rules {
            max_age: Some(30 * DAY as u64),
            max_size: Size::PerMille(100),
            min_free: Size::PerMille(50),
            protect_newest: 1,
            ..rules()
        };
        assert!(select(&c, &r, NOW, ROOMY, None).is_empty());
    }

    #[test]
    fn ids_carry_their_time() {
        assert_eq!(
            id_time("20261126T105853.123456789Z-4242-9f3a1c07-x"),
            Some(1_795_690_733)
        );
        assert_eq!(id_time("garbage"), None);
        assert_eq!(duration_text(30 * 86_400), "30d");
        assert_eq!(duration_text(90), "90s");
        assert_eq!(size_text(Size::PerMille(100)), "10%");
    }
}
