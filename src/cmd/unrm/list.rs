//! `unrm --list` and `unrm --show`.

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;

use crate::catalog::{unique_prefixes, Catalog, Header, IdMatch, SHORT_ID_MIN};
use crate::manifest::{Kind, PathBytes};
use crate::output::{count, human, local_time, stderr_write, stdout_write};
use crate::paths::display;
use crate::quote::quote;
use crate::store::staging::{Staged, StagedState};
use crate::unrm_cli::{Options, Sort};

use super::filter::TimeRange;
use super::find::matches_pattern;

/// One row of the listing: an archived deletion, or one still staged (instant mode) with
/// what its origin says of it.
enum Row<'a> {
    Archived(&'a Header),
    Staged(&'a Staged, &'a Header),
}

impl Row<'_> {
    fn header(&self) -> &Header {
        match self {
            Row::Archived(h) => h,
            Row::Staged(_, h) => h,
        }
    }
}

/// What a staged deletion's origin says, as a header (no totals, no archive yet).
fn staged_header(s: &Staged) -> Header {
    let origin = s.origin.as_ref();
    Header {
        id: s.id.clone(),
        month: String::new(),
        created: origin.map_or_else(|| "?".to_string(), |o| o.created.clone()),
        cwd: origin.map_or_else(|| PathBytes::new(b"/"), |o| o.cwd.clone()),
        run: None,
        operands: origin.map(|o| o.operands.clone()).unwrap_or_default(),
        totals: Default::default(),
        archive: None,
        restored: false,
        partly_restored: false,
        kept: false,
        partly_kept: false,
    }
}

pub(super) fn list(
    opts: &Options,
    headers: &[Header],
    staged: &[Staged],
    cwd: &[u8],
    patterns: &[OsString],
) -> i32 {
    let range = match TimeRange::of(&opts.filter) {
        Ok(r) => r,
        Err(msg) => {
            stderr_write(format!("unrm: could not list: {msg}\n").as_bytes());
            return 1;
        }
    };
    let wanted = |h: &Header| {
        range.holds(h)
            && (patterns.is_empty()
                || patterns
                    .iter()
                    .any(|p| matches_pattern(h, cwd, p.as_bytes())))
    };
    print_rows(opts, headers, staged, cwd, &wanted, None);
    0
}

/// How many deletions `unrm` alone shows.
const RECENT: usize = 5;

/// `unrm` alone: the newest deletions as `--list` shows them, and how to restore them; or
/// that there is nothing to restore.
pub(super) fn recent(opts: &Options, headers: &[Header], staged: &[Staged], cwd: &[u8]) -> i32 {
    let total = headers.len() + staged.len();
    if total == 0 && !opts.json {
        stdout_write(b"nothing to restore: the store holds no deletions\n");
        return 0;
    }
    print_rows(opts, headers, staged, cwd, &|_| true, Some(RECENT));
    if !opts.json {
        let more = if total > RECENT {
            format!("all {total} deletions: unrm --list")
        } else {
            "more: unrm --list (--since, --sort), unrm --help".to_string()
        };
        stdout_write(
            format!(
                "restore: unrm NAME (a path, a name or an id), unrm --last (the last command)\n\
                 what one holds: unrm --show NAME; {more}\n"
            )
            .as_bytes(),
        );
    }
    0
}

/// Print the deletions `wanted` lets through (archived and staged), in `--sort` order, at
/// most `limit` of them: a table, or `--json`.
fn print_rows(
    opts: &Options,
    headers: &[Header],
    staged: &[Staged],
    cwd: &[u8],
    wanted: &dyn Fn(&Header) -> bool,
    limit: Option<usize>,
) {
    let staged_headers: Vec<Header> = staged.iter().map(staged_header).collect();
    // Short ids are unique in the whole store, whatever the patterns leave.
    let all_ids: Vec<&str> = headers
        .iter()
        .chain(&staged_headers)
        .map(|h| h.id.as_str())
        .collect();
    let short: HashMap<&str, &str> = all_ids
        .iter()
        .copied()
        .zip(unique_prefixes(&all_ids, SHORT_ID_MIN))
        .collect();
    let mut rows: Vec<Row> = headers
        .iter()
        .map(Row::Archived)
        .chain(
            staged
                .iter()
                .zip(&staged_headers)
                .map(|(s, h)| Row::Staged(s, h)),
        )
        .filter(|r| wanted(r.header()))
        .collect();
    // Newest first, as the catalog is: ids begin with their time. By size, the biggest
    // first (a staged deletion's size is not known yet: last), the newest of equals first.
    rows.sort_by(|a, b| b.header().id.cmp(&a.header().id));
    if opts.filter.sort == Sort::Size {
        rows.sort_by_key(|r| std::cmp::Reverse(size_of(r)));
    }
    rows.truncate(limit.unwrap_or(usize::MAX));
    let short_of = |r: &Row| -> String {
        let id = r.header().id.as_str();
        short.get(id).copied().unwrap_or(id).to_string()
    };
    if opts.json {
        let items: Vec<serde_json::Value> =
            rows.iter().map(|r| json_row(r, &short_of(r))).collect();
        crate::output::print_json("list", serde_json::json!({ "deletions": items }));
        return;
    }
    let now = chrono::DateTime::from_timestamp(crate::fault::now(), 0).unwrap_or_default();
    let cells: Vec<Cells> = rows
        .iter()
        .map(|r| Cells::of(r, &short_of(r), cwd, opts.long, now.into()))
        .collect();
    let table = Table::new(
        &cells,
        opts.long,
        crate::output::stdout_width(),
        crate::output::stdout_colour(),
    );
    // An empty store lists nothing, not a header over nothing.
    let mut out = if cells.is_empty() {
        String::new()
    } else {
        table.line(&Cells::header(), true)
    };
    for c in &cells {
        out.push_str(&table.line(c, false));
        if flush_full(&mut out) {
            return; // the reader went away
        }
    }
    stdout_write(out.as_bytes());
}

/// What `--sort size` orders by: the bytes deleted; none for a staged deletion.
fn size_of(row: &Row) -> Option<u64> {
    match row {
        Row::Archived(h) => Some(h.totals.bytes),
        Row::Staged(..) => None,
    }
}

/// A row of `--list --json`: `state` is `archived`, or `staged` with `staged` saying what
/// is becoming of it (and its counts unknown yet: null); `short_id` is what the listing
/// shows (the shortest prefix unique in the store).
fn json_row(row: &Row, short_id: &str) -> serde_json::Value {
    match row {
        Row::Archived(m) => serde_json::json!({
            "id": m.id,
            "short_id": short_id,
            "state": "archived",
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
        }),
        Row::Staged(s, m) => {
            let (pids, why) = match &s.state {
                StagedState::Archiving(holders) => (holders.iter().map(|h| h.0).collect(), None),
                StagedState::Failed(why) => (Vec::new(), Some(why.as_str())),
                StagedState::Waiting => (Vec::new(), None),
            };
            serde_json::json!({
                "id": m.id,
                "short_id": short_id,
                "state": "staged",
                "staged": { "status": s.state.name(), "pids": pids, "why": why },
                "created": s.origin.as_ref().map(|o| &o.created),
                "cwd": s.origin.as_ref().map(|o| &o.cwd),
                "operands": m.operands,
                "entries": null,
                "files": null,
                "dirs": null,
                "bytes": null,
                "archive_bytes": null,
                "restored": false,
                "partly_restored": false,
                "partly_kept": false,
            })
        }
    }
}

/// A row of the text listing, cell by cell, before it is laid out: the short id (or the
/// whole one with `--long`), when (relative, or absolute with `--long`), files, bytes,
/// archive bytes (`--long` only), the state, and what was deleted, relative to the
/// current directory. A staged deletion's counts are not known yet (`?`), and what is
/// becoming of it follows what was deleted.
struct Cells {
    id: String,
    when: String,
    files: String,
    size: String,
    stored: String,
    state: &'static str,
    what: String,
}

impl Cells {
    fn header() -> Cells {
        Cells {
            id: "ID".into(),
            when: "DELETED".into(),
            files: "FILES".into(),
            size: "SIZE".into(),
            stored: "STORED".into(),
            state: "STATE",
            what: "WHAT".into(),
        }
    }

    fn of(
        row: &Row,
        short_id: &str,
        cwd: &[u8],
        long: bool,
        now: chrono::DateTime<chrono::Local>,
    ) -> Cells {
        let m = row.header();
        let mut what: Vec<String> = m
            .operands
            .iter()
            .map(|o| quote(&display(cwd, &o.absolute.bytes().unwrap_or_default())))
            .collect();
        let id = if long {
            m.id.clone()
        } else {
            short_id.to_string()
        };
        let when = if long {
            local_time(&m.created)
        } else {
            crate::output::ago(&m.created, now)
        };
        match row {
            Row::Archived(m) => Cells {
                id,
                when,
                files: count(m.totals.files, "file", "files"),
                size: human(m.totals.bytes),
                stored: m
                    .archive
                    .as_ref()
                    .map_or_else(|| "?".to_string(), |a| human(a.size)),
                state: if m.restored {
                    "restored"
                } else if m.partly_restored {
                    "partly"
                } else {
                    ""
                },
                what: what.join(" "),
            },
            Row::Staged(s, _) => {
                if s.origin.is_none() {
                    what.push("(where it came from is lost)".to_string());
                }
                Cells {
                    id,
                    when,
                    files: "?".into(),
                    size: "?".into(),
                    stored: "?".into(),
                    state: "staged",
                    what: format!(
                        "{}  (not archived yet: {})",
                        what.join(" "),
                        s.state.describe()
                    ),
                }
            }
        }
    }
}

/// How a cell is drawn on a terminal.
#[derive(Clone, Copy)]
enum Paint {
    Plain,
    Bold,
    Dim,
    Underline,
    Green,
    Yellow,
}

impl Paint {
    fn start(self) -> &'static str {
        match self {
            Paint::Plain => "",
            Paint::Bold => "\x1b[1m",
            Paint::Dim => "\x1b[2m",
            Paint::Underline => "\x1b[4m",
            Paint::Green => "\x1b[32m",
            Paint::Yellow => "\x1b[33m",
        }
    }
}

/// The listing's layout: every column as wide as its widest cell, two spaces apart; only
/// the last one (what was deleted) is cut, with `…`, to fit `width`, and never to less
/// than [`Table::MIN_WHAT`] characters.
struct Table {
    long: bool,
    colour: bool,
    /// Widths of the columns before the last, in characters.
    widths: Vec<usize>,
    /// Room for the last column, when the width is limited.
    room: Option<usize>,
}

impl Table {
    const MIN_WHAT: usize = 12;

    fn new(rows: &[Cells], long: bool, width: Option<usize>, colour: bool) -> Table {
        let mut table = Table {
            long,
            colour,
            widths: Vec::new(),
            room: None,
        };
        for c in std::iter::once(&Cells::header()).chain(rows) {
            let cols = table.columns(c, false);
            table.widths.resize(cols.len(), 0);
            for (w, (text, _, _)) in table.widths.iter_mut().zip(cols) {
                *w = (*w).max(text.chars().count());
            }
        }
        let fixed: usize = table.widths.iter().map(|w| w + 2).sum();
        table.room = width.map(|w| w.saturating_sub(fixed).max(Self::MIN_WHAT));
        table
    }

    /// The cells before the last, each with whether it is right-aligned and its paint.
    fn columns<'c>(&self, c: &'c Cells, header: bool) -> Vec<(&'c str, bool, Paint)> {
        let paint = |p: Paint| if header { Paint::Underline } else { p };
        let mut cols = vec![
            (c.id.as_str(), false, paint(Paint::Bold)),
            (c.when.as_str(), false, paint(Paint::Dim)),
            (c.files.as_str(), true, paint(Paint::Plain)),
            (c.size.as_str(), true, paint(Paint::Plain)),
        ];
        if self.long {
            cols.push((c.stored.as_str(), true, paint(Paint::Plain)));
        }
        let state = match c.state {
            "staged" => Paint::Yellow,
            "restored" => Paint::Green,
            _ => Paint::Plain,
        };
        cols.push((c.state, false, paint(state)));
        cols
    }

    /// One line of the listing, `\n` included.
    fn line(&self, c: &Cells, header: bool) -> String {
        let mut out = String::new();
        for ((text, right, paint), &width) in self.columns(c, header).into_iter().zip(&self.widths)
        {
            let pad = " ".repeat(width.saturating_sub(text.chars().count()));
            if right {
                out.push_str(&pad);
            }
            self.paint(&mut out, text, paint);
            if !right {
                out.push_str(&pad);
            }
            out.push_str("  ");
        }
        let what = fit(&c.what, self.room);
        self.paint(
            &mut out,
            &what,
            if header {
                Paint::Underline
            } else {
                Paint::Plain
            },
        );
        // No trailing blanks (a header of a table with nothing deleted, a blank state).
        out.truncate(out.trim_end_matches(' ').len());
        out.push('\n');
        out
    }

    fn paint(&self, out: &mut String, text: &str, paint: Paint) {
        if self.colour && !matches!(paint, Paint::Plain) && !text.is_empty() {
            out.push_str(paint.start());
            out.push_str(text);
            out.push_str("\x1b[0m");
        } else {
            out.push_str(text);
        }
    }
}

/// `text`, cut to `room` characters with `…` at the end when it is longer.
fn fit(text: &str, room: Option<usize>) -> std::borrow::Cow<'_, str> {
    match room {
        Some(room) if text.chars().count() > room => {
            let mut cut: String = text.chars().take(room.saturating_sub(1)).collect();
            cut.push('…');
            cut.into()
        }
        _ => text.into(),
    }
}

/// `unrm --show`: a tree with sizes ([`super::tree`]); with `--long`, a line per object
/// with its type, mode, owner, size, mtime and whole path; with `--json`, the manifest.
pub(super) fn show(opts: &Options, catalog: &Catalog, cwd: &[u8], id: &str) -> i32 {
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
        // The manifest as it is, its own `format` field included.
        crate::output::print_json(
            "show",
            serde_json::to_value(&d.manifest).unwrap_or_default(),
        );
        return 0;
    }
    let ids: Vec<&str> = catalog.headers.iter().map(|h| h.id.as_str()).collect();
    let short = unique_prefixes(&ids, SHORT_ID_MIN)
        .into_iter()
        .zip(&ids)
        .find(|(_, id)| **id == d.id())
        .map_or(d.id(), |(s, _)| s);
    let created = &d.manifest.created;
    let mut out = super::tree::header(short, &super::ago(created), &local_time(created), cwd, d);
    if !opts.long {
        super::tree::draw(d, cwd, &mut |line| {
            out.push_str(line);
            flush_full(&mut out)
        });
        stdout_write(out.as_bytes());
        return 0;
    }
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
pub(super) fn flush_full(out: &mut String) -> bool {
    if out.len() >= 64 * 1024 {
        stdout_write(out.as_bytes());
        out.clear();
    }
    crate::output::stdout_closed()
}

#[cfg(test)]
mod tests {
    use super::{Cells, Table};

    fn cells(id: &str, state: &'static str, what: &str) -> Cells {
        Cells {
            id: id.into(),
            when: "3 min ago".into(),
            files: "2 files".into(),
            size: "6 B".into(),
            stored: "1.5 KiB".into(),
            state,
            what: what.into(),
        }
    }

    #[test]
    fn colour_bolds_ids_dims_times_and_pads_outside_the_codes() {
        let rows = [cells("20260610T1200", "restored", "'proj'")];
        let table = Table::new(&rows, false, None, true);
        assert_eq!(
            table.line(&rows[0], false),
            "\x1b[1m20260610T1200\x1b[0m  \x1b[2m3 min ago\x1b[0m  2 files   6 B  \
             \x1b[32mrestored\x1b[0m  'proj'\n"
        );
        assert!(table
            .line(&Cells::header(), true)
            .starts_with("\x1b[4mID\x1b[0m   "));
        let plain = Table::new(&rows, false, None, false);
        assert_eq!(
            plain.line(&rows[0], false),
            "20260610T1200  3 min ago  2 files   6 B  restored  'proj'\n"
        );
    }

    #[test]
    fn only_what_was_deleted_is_cut_to_the_width() {
        let rows = [
            cells(
                "20260610T1200",
                "",
                "'a rather long name' 'and another one'",
            ),
            cells("20260610T1201", "staged", "'b'"),
        ];
        let table = Table::new(&rows, false, Some(64), false);
        let line = table.line(&rows[0], false);
        assert_eq!(
            line,
            "20260610T1200  3 min ago  2 files   6 B          'a rather long…\n"
        );
        assert_eq!(line.trim_end().chars().count(), 64);
        assert_eq!(
            table.line(&rows[1], false),
            "20260610T1201  3 min ago  2 files   6 B  staged  'b'\n"
        );
        // Too narrow: the other columns stay whole, and a little of what was deleted.
        let narrow = Table::new(&rows, true, Some(20), false);
        assert_eq!(
            narrow.line(&rows[0], false),
            "20260610T1200  3 min ago  2 files   6 B  1.5 KiB          'a rather l…\n"
        );
    }
}
