//! `--since`, `--until`, `--today`: which deletions `--list` and `--purge` take, by when
//! they were made (the manifest's `created`), read with the parser `--at` uses.

use crate::catalog::{Catalog, Header};
use crate::output::stderr_write;
use crate::unrm_cli::Filter;

use super::find::parse_time_as;

/// The times a deletion must be made between (both ends included); either may be open.
#[derive(Default)]
pub(super) struct TimeRange {
    since: Option<chrono::DateTime<chrono::Utc>>,
    until: Option<chrono::DateTime<chrono::Utc>>,
}

const FORMS: &str = "YYYY-MM-DD[ HH:MM[:SS]], HH:MM, 10m, 2h, 3d, today, yesterday";

impl TimeRange {
    /// The range `filter` gives: a day is from its start (`--since`) or to its end
    /// (`--until`); a time that does not parse is an error that names it.
    pub(super) fn of(filter: &Filter) -> Result<TimeRange, String> {
        let read = |option: &str, text: &Option<String>, start: bool| match text {
            None => Ok(None),
            Some(t) => parse_time_as(t, start)
                .map(Some)
                .ok_or_else(|| format!("{option} '{t}' is not a time ({FORMS})")),
        };
        Ok(TimeRange {
            since: read("--since", &filter.since, true)?,
            until: read("--until", &filter.until, false)?,
        })
    }

    /// Whether `h` was made in the range; a deletion whose time is unknown (a staged one
    /// that lost its origin) is in no range but the whole one.
    pub(super) fn holds(&self, h: &Header) -> bool {
        if self.since.is_none() && self.until.is_none() {
            return true;
        }
        let Ok(t) = chrono::DateTime::parse_from_rfc3339(&h.created) else {
            return false;
        };
        let t = t.with_timezone(&chrono::Utc);
        self.since.is_none_or(|s| t >= s) && self.until.is_none_or(|u| t <= u)
    }
}

/// `--purge` by time: `--since`, `--until`, `--today` name deletions, those of the NAMEs
/// (`ids`, when `named`) made in the range, or all made in it; the range chooses, as the
/// limits do, so the configured limits are not applied (an empty range purges nothing).
/// Nothing changes without them; false (said on stderr) when a time does not parse.
pub(super) fn choose_by_time(
    filter: &Filter,
    catalog: &Catalog,
    named: bool,
    ids: &mut Vec<String>,
) -> bool {
    if !filter.by_time() {
        return true;
    }
    let range = match TimeRange::of(filter) {
        Ok(r) => r,
        Err(msg) => {
            stderr_write(format!("unrm: could not purge: {msg}\n").as_bytes());
            return false;
        }
    };
    let in_range: Vec<&str> = catalog
        .headers
        .iter()
        .filter(|h| range.holds(h))
        .map(|h| h.id.as_str())
        .collect();
    if named {
        ids.retain(|id| in_range.contains(&id.as_str()));
    } else {
        *ids = in_range.iter().map(|id| id.to_string()).collect();
    }
    true
}
