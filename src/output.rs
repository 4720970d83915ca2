//! Writing to stdout and stderr without panicking, and reporting stdout's write errors as
//! GNU's `close_stdout` does.
//!
//! Rust ignores SIGPIPE, so `println!` panics when a reader closes the pipe
//! (`saferm -rv d | head -1`). rm dies quietly there; saferm stops printing instead, and the
//! removal itself, which is already archived, goes on.
//!
//! Any other write error (`saferm -v f >/dev/full`) also stops the printing, and is reported
//! once at exit by [`finish`]: `rm: write error: No space left on device`, exit 1, as GNU
//! does. The work itself is not undone: rm too removes the file and then reports.

use std::io::{self, IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);
/// The first write error on stdout other than a closed pipe.
static STDOUT_ERROR: OnceLock<io::Error> = OnceLock::new();

/// Write to stdout; after a broken pipe or a write error, further output is dropped.
pub fn stdout_write(bytes: &[u8]) {
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = io::stdout().lock();
    if let Err(e) = out.write_all(bytes).and_then(|_| out.flush()) {
        STDOUT_CLOSED.store(true, Ordering::Relaxed);
        if e.kind() != io::ErrorKind::BrokenPipe {
            let _ = STDOUT_ERROR.set(e);
        }
    }
}

/// Write to stderr, unbuffered as C's stderr is, so prompts appear before stdin is read.
pub fn stderr_write(bytes: &[u8]) {
    let mut err = io::stderr().lock();
    let _ = err.write_all(bytes);
    let _ = err.flush();
}

/// Whether stdout can take no more output (a closed pipe or a write error): stop producing it.
pub fn stdout_closed() -> bool {
    STDOUT_CLOSED.load(Ordering::Relaxed)
}

/// The exit status to end with: `code`, or 1 after reporting `PROG: write error: REASON` when
/// a write to stdout failed for any reason but a closed pipe (GNU's `close_stdout`).
pub fn finish(prog: &str, code: i32) -> i32 {
    match STDOUT_ERROR.get() {
        None => code,
        Some(e) => {
            stderr_write(format!("{prog}: write error: {}\n", crate::sys::strerror(e)).as_bytes());
            if code == 0 {
                1
            } else {
                code
            }
        }
    }
}

/// How wide stdout is, in columns: `COLUMNS` when it is set to a number, else the
/// terminal's when stdout is one, else unlimited (`None`: a pipe gets whole lines).
pub fn stdout_width() -> Option<usize> {
    let from_env = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<usize>().ok())
        .filter(|&n| n > 0);
    if from_env.is_some() {
        return from_env;
    }
    let out = io::stdout();
    if !out.is_terminal() {
        return None;
    }
    rustix::termios::tcgetwinsize(&out)
        .ok()
        .map(|w| usize::from(w.ws_col))
        .filter(|&n| n > 0)
}

/// Whether to colour stdout: only on a terminal, and never when `NO_COLOR` is set to
/// anything but the empty string (<https://no-color.org>).
pub fn stdout_colour() -> bool {
    colour_wanted(
        io::stdout().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    )
}

/// [`stdout_colour`]'s rule, given whether stdout is a terminal and `NO_COLOR`'s value.
pub fn colour_wanted(terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

/// An RFC 3339 time as local `YYYY-MM-DD HH:MM:SS`.
pub fn local_time(rfc3339: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| {
            t.with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
        })
        .unwrap_or_else(|_| rfc3339.to_string())
}

/// When `rfc3339` was, for people, seen from `now` in the local time zone: `just now`,
/// `12 s ago`, `3 min ago`, `today 14:02`, `yesterday 14:02`, `Mon 14:02` (this week),
/// `Mar 14 14:02` (this year), `2025-03-14`; a time that does not parse as itself.
pub fn ago(rfc3339: &str, now: chrono::DateTime<chrono::Local>) -> String {
    let Ok(t) = chrono::DateTime::parse_from_rfc3339(rfc3339) else {
        return rfc3339.to_string();
    };
    let t = t.with_timezone(&chrono::Local);
    let secs = (now - t).num_seconds();
    let days = (now.date_naive() - t.date_naive()).num_days();
    match (secs, days) {
        (s, _) if s < 0 => t.format("%Y-%m-%d %H:%M").to_string(),
        (0..=4, _) => "just now".to_string(),
        (5..=59, _) => format!("{secs} s ago"),
        (60..=3599, _) => format!("{} min ago", secs / 60),
        (_, 0) => t.format("today %H:%M").to_string(),
        (_, 1) => t.format("yesterday %H:%M").to_string(),
        (_, 2..=6) => t.format("%a %H:%M").to_string(),
        _ if t.format("%Y").to_string() == now.format("%Y").to_string() => {
            t.format("%b %d %H:%M").to_string()
        }
        _ => t.format("%Y-%m-%d").to_string(),
    }
}

/// A byte count for people: `512 B`, `4.0 KiB`, `1.5 GiB`.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// `n` and its noun, singular for one: `1 file`, `2 files`, `0 files`.
pub fn count(n: u64, singular: &str, plural: &str) -> String {
    format!("{n} {}", if n == 1 { singular } else { plural })
}

/// The version of unrm's JSON documents (doc/json.md): within a version, fields are only
/// ever added, so a script written against it keeps working.
pub const JSON_VERSION: u32 = 1;

/// Print one JSON document on stdout: the object `fields` with `version` and `kind` (what
/// printed it: `list`, `show`, `check`, `purge`, `restore`, `stats`) added, so that every
/// document unrm prints has the same top (doc/json-schema.json).
pub fn print_json(kind: &str, fields: serde_json::Value) {
    let mut doc = match fields {
        serde_json::Value::Object(map) => map,
        _ => serde_json::Map::new(),
    };
    doc.insert("version".into(), JSON_VERSION.into());
    doc.insert("kind".into(), kind.into());
    let mut text = serde_json::to_string_pretty(&doc).unwrap_or_default();
    text.push('\n');
    stdout_write(text.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::{ago, colour_wanted, count};
    use std::ffi::OsStr;

    #[test]
    fn colour_only_on_a_terminal_and_never_with_no_color() {
        assert!(colour_wanted(true, None));
        assert!(
            colour_wanted(true, Some(OsStr::new(""))),
            "NO_COLOR= is unset"
        );
        assert!(!colour_wanted(true, Some(OsStr::new("1"))));
        assert!(!colour_wanted(false, None), "not in a pipe");
    }

    #[test]
    fn counts_have_their_plurals() {
        assert_eq!(count(1, "file", "files"), "1 file");
        assert_eq!(count(0, "file", "files"), "0 files");
        assert_eq!(count(2, "file", "files"), "2 files");
    }
    use chrono::{Duration, Local, TimeZone};

    #[test]
    fn times_read_as_people_say_them() {
        let now = Local
            .with_ymd_and_hms(2026, 6, 10, 15, 0, 0)
            .single()
            .expect("a local time");
        let at = |d: Duration| ago(&(now - d).to_rfc3339(), now);
        assert_eq!(at(Duration::seconds(2)), "just now");
        assert_eq!(at(Duration::seconds(42)), "42 s ago");
        assert_eq!(at(Duration::minutes(3)), "3 min ago");
        assert_eq!(at(Duration::hours(2)), "today 13:00");
        assert_eq!(at(Duration::hours(24)), "yesterday 15:00");
        assert_eq!(at(Duration::days(3)), "Sun 15:00");
        assert_eq!(at(Duration::days(30)), "May 11 15:00");
        assert_eq!(at(Duration::days(400)), "2025-05-06");
        assert_eq!(at(Duration::seconds(-90)), "2026-06-10 15:01");
        assert_eq!(ago("not a time", now), "not a time");
    }
}
