//! `unrm --list` and `unrm --show`.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;

use crate::catalog::{Catalog, Header, IdMatch};
use crate::manifest::{Kind, PathBytes};
use crate::output::{local_time, stderr_write, stdout_write};
use crate::paths::display;
use crate::quote::quote;
use crate::store::staging::{Staged, StagedState};
use crate::unrm_cli::Options;

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
    let staged_headers: Vec<Header> = staged.iter().map(staged_header).collect();
    let mut rows: Vec<Row> = headers
        .iter()
        .map(Row::Archived)
        .chain(
            staged
                .iter()
                .zip(&staged_headers)
                .map(|(s, h)| Row::Staged(s, h)),
        )
        .filter(|r| {
            patterns.is_empty()
                || patterns
                    .iter()
                    .any(|p| matches_pattern(r.header(), cwd, p.as_bytes()))
        })
        .collect();
    // Newest first, as the catalog is: ids begin with their time.
    rows.sort_by(|a, b| b.header().id.cmp(&a.header().id));
    if opts.json {
        let items: Vec<serde_json::Value> = rows.iter().map(json_row).collect();
        let mut text = serde_json::to_string_pretty(&items).unwrap_or_default();
        text.push('\n');
        stdout_write(text.as_bytes());
        return 0;
    }
    let mut out = String::new();
    for row in &rows {
        out.push_str(&text_row(row, cwd));
        if flush_full(&mut out) {
            return 0; // the reader went away
        }
    }
    stdout_write(out.as_bytes());
    0
}

/// A row of `--list --json`: `state` is `archived`, or `staged` with `staged` saying what
/// is becoming of it (and its counts unknown yet: null).
fn json_row(row: &Row) -> serde_json::Value {
    match row {
        Row::Archived(m) => serde_json::json!({
            "id": m.id,
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

/// A line of `--list`: id, time, files, bytes -> archive bytes, restored or not, the
/// operands; a staged deletion's counts are not known yet (`?`), and what is becoming of
/// it follows the operands.
fn text_row(row: &Row, cwd: &[u8]) -> String {
    let m = row.header();
    let mut operands: Vec<String> = m
        .operands
        .iter()
        .map(|o| quote(&display(cwd, &o.absolute.bytes().unwrap_or_default())))
        .collect();
    match row {
        Row::Archived(m) => format!(
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
        ),
        Row::Staged(s, _) => {
            if s.origin.is_none() {
                operands.push("(where it came from is lost)".to_string());
            }
            format!(
                "{}  {:<19}  {:>6} files  {:>10} -> {:<10}  {:<8}  {}  (not archived yet: {})\n",
                m.id,
                local_time(&m.created),
                "?",
                "?",
                "?",
                "staged",
                operands.join(" "),
                s.state.describe()
            )
        }
    }
}

pub(super) fn show(opts: &Options, catalog: &Catalog, id: &str) -> i32 {
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
pub(super) fn flush_full(out: &mut String) -> bool {
    if out.len() >= 64 * 1024 {
        stdout_write(out.as_bytes());
        out.clear();
    }
    crate::output::stdout_closed()
}
