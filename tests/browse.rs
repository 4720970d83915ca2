//! Seeing what the store holds before restoring: `unrm --show` as a tree, `unrm --cat` of one
//! deleted file (checked, held back when damaged), `--list` and `--purge` by time
//! (`--since`, `--until`, `--today`) and `--sort`, and `unrm` alone.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::common::{
    archives, build_tree, edit_manifest, manifests, noise, saferm_ok as saferm, unrm, unrm_bin,
    unrm_ok, Outcome, Sandbox,
};

/// 2026-06-10T12:30:00Z, the clock every command here reads.
const NOW: &str = "1781094600";

/// unrm in `w` on the fixed clock, in UTC, at 80 columns.
fn at_now(sb: &Sandbox, w: &Path, args: &[&str]) -> Outcome {
    sb.command(unrm_bin())
        .args(args)
        .current_dir(w)
        .env("SAFERM_TEST_NOW", NOW)
        .env("TZ", "UTC")
        .env("COLUMNS", "80")
        .run()
}

fn at_now_ok(sb: &Sandbox, w: &Path, args: &[&str]) -> Outcome {
    let out = at_now(sb, w, args);
    assert_eq!(
        out.code(),
        Some(0),
        "unrm {args:?}: {}{}",
        out.stdout_text(),
        out.stderr_text()
    );
    out
}

/// Give each deletion whose first operand was given as `given` the time `created`
/// (RFC 3339) instead of its real one; the header cache is dropped so it is read again.
fn set_created(sb: &Sandbox, times: &[(&str, &str)]) {
    for m in manifests(&sb.store()).iter().filter(|p| {
        let name = p.to_string_lossy();
        name.ends_with(".json") && !name.contains(".restored") && !name.contains(".kept")
    }) {
        let v: serde_json::Value =
            serde_json::from_slice(&fs::read(m).expect("read")).expect("json");
        let given = v["operands"][0]["given"]["path"].as_str().expect("given");
        if let Some((_, created)) = times.iter().find(|(g, _)| *g == given) {
            edit_manifest(m, |v| v["created"] = (*created).into());
        }
    }
    let _ = fs::remove_file(sb.store().join("index.jsonl"));
}

/// What each row of a text listing deleted (its last column), top to bottom.
fn listed(out: &Outcome) -> Vec<String> {
    out.stdout_text()
        .lines()
        .skip(1)
        .map(|l| l.rsplit(' ').next().unwrap_or_default().to_string())
        .collect()
}

/// The short id `unrm --list` shows for the only deletion of the store.
fn only_short_id(sb: &Sandbox, w: &Path) -> String {
    let out = at_now_ok(sb, w, &["--list"]);
    let text = out.stdout_text();
    let rows: Vec<&str> = text.lines().skip(1).collect();
    assert_eq!(rows.len(), 1, "{text}");
    rows[0].split(' ').next().expect("an id").to_string()
}

#[test]
fn show_draws_a_deletion_as_a_tree_with_sizes_counts_and_link_targets() {
    let sb = Sandbox::new();
    let w = sb.work("w");
    let main = "m".repeat(1500);
    let util = "u".repeat(400);
    build_tree(
        &w,
        &[
            "proj/a.txt=hello",
            "proj/link->a.txt",
            &format!("proj/src/main.rs={main}"),
            &format!("proj/src/util.rs={util}"),
            "proj/src/empty/",
            "proj/nested/deeper/",
            "proj/two words=12",
            "notes=abc",
        ],
    );
    saferm(&sb, &w, &["-r", "proj", "notes"]);
    set_created(&sb, &[("proj", "2026-06-10T12:00:00Z")]);
    let short = only_short_id(&sb, &w);
    let expected = format!(
        "deletion {short} (deleted 30 min ago, 2026-06-10 12:00:00): 'proj' 'notes'\n\
         notes  3 B\n\
         proj/  4 files, 1.9 KiB\n\
         ├── a.txt  5 B\n\
         ├── link -> a.txt\n\
         ├── nested/  no files\n\
         │   └── deeper/  empty\n\
         ├── src/  2 files, 1.9 KiB\n\
         │   ├── empty/  empty\n\
         │   ├── main.rs  1.5 KiB\n\
         │   └── util.rs  400 B\n\
         └── 'two words'  2 B\n"
    );
    // By a name it removed, and by its short id: the same tree.
    assert_eq!(
        at_now_ok(&sb, &w, &["--show", "proj"]).stdout_text(),
        expected
    );
    assert_eq!(
        at_now_ok(&sb, &w, &["--show", &short]).stdout_text(),
        expected
    );
    // --long: a line per object with its whole path; --json: the manifest, as before.
    let long = at_now_ok(&sb, &w, &["--show", "proj", "--long"]).stdout_text();
    assert_eq!(long.lines().count(), 1 + 11, "{long}");
    let main_path = w.join("proj/src/main.rs");
    assert!(
        long.lines().any(|l| l.starts_with("-0644 ")
            && l.contains(" 1500 ")
            && l.ends_with(&format!("'{}'", main_path.display()))),
        "{long}"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&at_now_ok(&sb, &w, &["--show", "proj", "--json"]).stdout)
            .expect("json");
    assert_eq!(json["entries"].as_array().map(Vec::len), Some(11));
    assert!(!w.join("proj").exists(), "showing restores nothing");
}

#[test]
fn show_escapes_names_that_would_reach_the_terminal_raw() {
    let sb = Sandbox::new();
    let w = sb.work("w");
    fs::create_dir(w.join("d")).expect("mkdir");
    let bad = std::ffi::OsStr::from_bytes(b"bad\nname\x1b[31m");
    fs::write(w.join("d").join(bad), b"x").expect("write");
    std::os::unix::fs::symlink(bad, w.join("d/link")).expect("symlink");
    saferm(&sb, &w, &["-r", "d"]);
    let text = at_now_ok(&sb, &w, &["--show", "d"]).stdout_text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "one line per object: {text}");
    assert_eq!(lines[2], "├── 'bad'$'\\n''name'$'\\033''[31m'  1 B");
    assert_eq!(lines[3], "└── link -> 'bad'$'\\n''name'$'\\033''[31m'");
    assert!(!text.contains('\x1b'), "{text:?}");
}

/// Bytes of every value, and noise: nothing a text conversion would keep as it is.
fn binary_content(seed: u64, len: usize) -> Vec<u8> {
    let mut content: Vec<u8> = (0..=255u8).collect();
    content.extend_from_slice(b"\r\n\0\x1b[2J");
    content.extend(noise(seed, len));
    content
}

#[test]
fn cat_writes_a_file_from_inside_a_deleted_tree_byte_for_byte_in_every_name_form() {
    let sb = Sandbox::new();
    let w = sb.work("w");
    let old = binary_content(1, 70_000);
    let new = binary_content(2, 50_000);
    fs::create_dir_all(w.join("tree/sub")).expect("mkdir");
    fs::write(w.join("tree/sub/blob.bin"), &old).expect("write");
    saferm(&sb, &w, &["-r", "tree"]);
    let first = crate::common::newest_id(&sb);
    fs::create_dir_all(w.join("tree/sub")).expect("mkdir");
    fs::write(w.join("tree/sub/blob.bin"), &new).expect("write");
    fs::hard_link(w.join("tree/sub/blob.bin"), w.join("tree/twin")).expect("link");
    saferm(&sb, &w, &["-r", "tree"]);
    let abs = w.join("tree/sub/blob.bin");
    let sub = w.join("tree/sub");
    // Relative, absolute, from another directory, by its name alone: the newest version.
    for (cwd, name) in [
        (&w, "tree/sub/blob.bin"),
        (&w, abs.to_str().expect("utf-8")),
        (&sub, "blob.bin"),
        (&w, "blob.bin"),
        (&w, "tree/twin"),
    ] {
        fs::create_dir_all(cwd).expect("mkdir");
        let out = unrm_ok(&sb, cwd, &["--cat", name]);
        assert!(out.stdout == new, "{name}: {} bytes", out.stdout.len());
        assert_eq!(out.stderr_text(), "", "{name}");
    }
    // --at chooses the older version, by id or by time.
    let out = unrm_ok(&sb, &w, &["--cat", "tree/sub/blob.bin", "--at", &first]);
    assert!(out.stdout == old, "{} bytes", out.stdout.len());
    // --pick chooses on a terminal; without one, it lists the versions.
    let out = unrm(&sb, &w, &["--cat", "tree/sub/blob.bin", "--pick"]);
    assert_eq!(out.code(), Some(1));
    assert_eq!(out.stdout, b"");
    let err = out.stderr_text();
    assert!(
        err.contains("it matches several deleted objects") && err.contains(&first),
        "{err}"
    );
    // By time: the first made yesterday, the second half an hour ago.
    for m in manifests(&sb.store()) {
        let name = m.to_string_lossy().into_owned();
        if name.ends_with(".json") && !name.contains(".restored") {
            let created = if name.contains(&first) {
                "2026-06-09T10:00:00Z"
            } else {
                "2026-06-10T12:00:00Z"
            };
            edit_manifest(&m, |v| v["created"] = created.into());
        }
    }
    let _ = fs::remove_file(sb.store().join("index.jsonl"));
    for (at, want) in [("yesterday", &old), ("1h", &old), ("10m", &new)] {
        let out = at_now_ok(&sb, &w, &["--cat", "tree/sub/blob.bin", "--at", at]);
        assert!(out.stdout == *want, "--at {at}");
    }
    assert!(
        !abs.exists() && !w.join("tree/twin").exists(),
        "--cat restores nothing"
    );
}

#[test]
fn cat_refuses_what_is_not_one_regular_file_and_to_dash_points_to_it() {
    let sb = Sandbox::new();
    let w = sb.work("w");
    build_tree(&w, &["t/f=1", "t/l->f", "t/p|", "t/d/"]);
    saferm(&sb, &w, &["-r", "t"]);
    for (name, why) in [
        ("t", "it is a directory"),
        ("t/d", "it is a directory"),
        ("t/l", "it is a symbolic link to 'f'"),
        ("t/p", "it is a fifo"),
        ("t/missing", "no deletion in the store holds it"),
    ] {
        let out = unrm(&sb, &w, &["--cat", name]);
        assert_eq!(out.code(), Some(1), "{name}");
        assert_eq!(out.stdout, b"", "{name}");
        assert!(
            out.stderr_text()
                .starts_with(&format!("unrm: could not cat '{name}': {why}")),
            "{name}: {}",
            out.stderr_text()
        );
    }
    let out = unrm(&sb, &w, &["t", "--to", "-"]);
    assert_eq!(out.code(), Some(1));
    assert_eq!(
        out.stderr_text(),
        "unrm: --to - is not supported: to write a deleted file to stdout, use --cat PATH\n\
         Try 'unrm --help' for more information.\n"
    );
    assert!(!w.join("-").exists() && !w.join("t").exists());
}

#[test]
fn cat_of_a_damaged_archive_exits_1_and_writes_nothing_of_a_small_file() {
    let sb = Sandbox::new();
    let w = sb.work("w");
    let content = binary_content(3, 200_000);
    fs::create_dir(w.join("d")).expect("mkdir");
    fs::write(w.join("d/f"), &content).expect("write");
    saferm(&sb, &w, &["-r", "d"]);
    let all = archives(&sb.store());
    let archive = all
        .iter()
        .find(|p| p.to_string_lossy().ends_with(".tar.zst"))
        .expect("an archive");
    let mut bytes = fs::read(archive).expect("read");
    // In the middle of the file's data (noise is stored as it is).
    let at = bytes.len() / 2;
    bytes[at] ^= 0x55;
    fs::write(archive, &bytes).expect("damage");
    let out = unrm(&sb, &w, &["--cat", "d/f"]);
    assert_eq!(out.code(), Some(1), "{}", out.stderr_text());
    assert_eq!(out.stdout.len(), 0, "nothing of a damaged copy is written");
    // zstd stores noise as it is: the damage reaches the bytes, and their hash finds it.
    assert_eq!(
        out.stderr_text(),
        "unrm: could not cat 'd/f': the archived copy is damaged (blake3 mismatch); nothing \
         was written\n"
    );
}

#[test]
fn cat_of_a_big_file_that_does_not_match_holds_its_end_back_and_says_so() {
    let sb = Sandbox::new();
    let w = sb.work("w");
    // Bigger than what is held back whole (8 MiB): it is written as it is read.
    let content = noise(4, (9 << 20) + 12345);
    fs::write(w.join("big"), &content).expect("write");
    saferm(&sb, &w, &["big"]);
    let m = manifests(&sb.store())
        .into_iter()
        .find(|p| p.to_string_lossy().ends_with(".json"))
        .expect("a manifest");
    // The manifest says another content: the archive no longer matches it.
    edit_manifest(&m, |v| {
        let e = &mut v["entries"][0];
        assert_eq!(e["type"], "file");
        e["blake3"] = "0".repeat(64).into();
    });
    let out = unrm(&sb, &w, &["--cat", "big"]);
    assert_eq!(out.code(), Some(1), "{}", out.stderr_text());
    let written = out.stdout.len();
    assert!(
        written > 0 && content.len() - written >= 256 << 10,
        "{written} of {} bytes",
        content.len()
    );
    assert!(
        content.starts_with(&out.stdout),
        "what was written is a prefix"
    );
    let mib = written as f64 / f64::from(1 << 20);
    assert_eq!(
        out.stderr_text(),
        format!(
            "unrm: could not cat 'big': the archived copy is damaged (blake3 mismatch); the \
             first {written} bytes ({mib:.1} MiB) were written before it was found, and are not \
             the file: the rest was held back\n"
        )
    );
}

/// Four deletions made at fixed times on [`NOW`]'s clock: two days ago, yesterday, this
/// morning and ten minutes ago, of 4000, 10, 300 and 1 bytes. The names are words no
/// sandbox path holds: a NAME matches any part of a path.
fn store_by_time(sb: &Sandbox) -> std::path::PathBuf {
    let w = sb.work("w");
    let a = "a".repeat(4000);
    let c = "c".repeat(300);
    build_tree(
        &w,
        &[
            &format!("alpha={a}"),
            "bravo=0123456789",
            &format!("charlie={c}"),
            "delta=1",
        ],
    );
    for f in ["alpha", "bravo", "charlie", "delta"] {
        saferm(sb, &w, &[f]);
    }
    set_created(
        sb,
        &[
            ("alpha", "2026-06-08T10:00:00Z"),
            ("bravo", "2026-06-09T15:00:00Z"),
            ("charlie", "2026-06-10T09:00:00Z"),
            ("delta", "2026-06-10T12:20:00Z"),
        ],
    );
    w
}

#[test]
fn list_filters_by_relative_and_absolute_times_and_today() {
    let sb = Sandbox::new();
    let w = store_by_time(&sb);
    for (args, want) in [
        (
            &["--list"][..],
            &["'delta'", "'charlie'", "'bravo'", "'alpha'"][..],
        ),
        (&["--list", "--since", "1h"], &["'delta'"]),
        (&["--list", "--since", "15m"], &["'delta'"]),
        (&["--list", "--since", "5m"], &[]),
        (&["--list", "--today"], &["'delta'", "'charlie'"]),
        (&["--list", "--since", "today"], &["'delta'", "'charlie'"]),
        (
            &["--list", "--since", "yesterday"],
            &["'delta'", "'charlie'", "'bravo'"],
        ),
        (&["--list", "--until", "yesterday"], &["'bravo'", "'alpha'"]),
        (
            &["--list", "--until", "09:30"],
            &["'charlie'", "'bravo'", "'alpha'"],
        ),
        (&["--list", "--since", "09:00"], &["'delta'", "'charlie'"]),
        (
            &["--list", "--since", "3d"],
            &["'delta'", "'charlie'", "'bravo'", "'alpha'"],
        ),
        (
            &[
                "--list",
                "--since",
                "2026-06-09 12:00",
                "--until",
                "2026-06-10 10:00",
            ],
            &["'charlie'", "'bravo'"],
        ),
        (
            &["--list", "--until", "2026-06-09"],
            &["'bravo'", "'alpha'"],
        ),
        (
            &["--list", "--since", "2026-06-09"],
            &["'delta'", "'charlie'", "'bravo'"],
        ),
        // Filters and patterns together.
        (&["--list", "--today", "charlie"], &["'charlie'"]),
    ] {
        let out = at_now_ok(&sb, &w, args);
        assert_eq!(listed(&out), want, "{args:?}: {}", out.stdout_text());
    }
    let out = at_now(&sb, &w, &["--list", "--since", "last tuesday"]);
    assert_eq!(out.code(), Some(1));
    assert_eq!(out.stdout, b"");
    assert!(
        out.stderr_text()
            .starts_with("unrm: could not list: --since 'last tuesday' is not a time ("),
        "{}",
        out.stderr_text()
    );
    // A filter goes with --list or --purge.
    let out = at_now(&sb, &w, &["delta", "--today"]);
    assert_eq!(out.code(), Some(1));
    assert!(!w.join("delta").exists());
}

#[test]
fn list_sorts_by_size_biggest_first_or_by_time_newest_first() {
    let sb = Sandbox::new();
    let w = store_by_time(&sb);
    let by = |args: &[&str]| listed(&at_now_ok(&sb, &w, args));
    assert_eq!(
        by(&["--list", "--sort", "size"]),
        ["'alpha'", "'charlie'", "'bravo'", "'delta'"]
    );
    assert_eq!(
        by(&["--list", "--sort", "time"]),
        ["'delta'", "'charlie'", "'bravo'", "'alpha'"]
    );
    assert_eq!(
        by(&["--list", "--sort", "size", "--since", "yesterday"]),
        ["'charlie'", "'bravo'", "'delta'"]
    );
    let out = at_now_ok(&sb, &w, &["--list", "--sort", "size"]);
    assert_eq!(
        out.stdout_text()
            .lines()
            .nth(1)
            .map(|l| l.contains("3.9 KiB")),
        Some(true),
        "{}",
        out.stdout_text()
    );
    let out = at_now(&sb, &w, &["--list", "--sort", "name"]);
    assert_eq!(out.code(), Some(1));
}

#[test]
fn purge_takes_the_same_time_filters_alone_or_with_names() {
    let sb = Sandbox::new();
    let w = store_by_time(&sb);
    let dry = at_now_ok(&sb, &w, &["--purge", "--dry-run", "--until", "yesterday"]).stdout_text();
    let lines: Vec<&str> = dry.lines().collect();
    assert_eq!(lines.len(), 3, "{dry}");
    let mut gone: Vec<&str> = lines[..2]
        .iter()
        .map(|l| {
            assert!(l.starts_with("would purge "), "{dry}");
            l.rsplit('/').next().unwrap_or_default()
        })
        .collect();
    gone.sort_unstable();
    assert_eq!(gone, ["alpha'", "bravo'"], "{dry}");
    assert!(lines[2].starts_with("would purge 2 deletions"), "{dry}");
    // A name outside the range purges nothing.
    let none = at_now_ok(&sb, &w, &["--purge", "--today", "bravo"]).stdout_text();
    assert_eq!(none, "nothing to purge\n");
    at_now_ok(&sb, &w, &["--purge", "--until", "yesterday"]);
    assert_eq!(
        listed(&at_now_ok(&sb, &w, &["--list"])),
        ["'delta'", "'charlie'"]
    );
    let out = at_now(&sb, &w, &["--purge", "--today", "--older-than", "1d"]);
    assert_eq!(out.code(), Some(1));
    assert!(
        out.stderr_text()
            .starts_with("unrm: --since, --until and --today choose"),
        "{}",
        out.stderr_text()
    );
    let out = at_now(&sb, &w, &["--purge", "--since", "soon"]);
    assert_eq!(out.code(), Some(1));
    assert!(
        out.stderr_text()
            .starts_with("unrm: could not purge: --since 'soon' is not a time (")
            && out.stderr_text().ends_with("\nunrm: nothing was purged\n"),
        "{}",
        out.stderr_text()
    );
    assert_eq!(listed(&at_now_ok(&sb, &w, &["--list"])).len(), 2);
}

#[test]
fn unrm_alone_with_an_empty_store_says_there_is_nothing_to_restore() {
    let sb = Sandbox::new();
    let w = sb.work("w");
    let out = at_now_ok(&sb, &w, &[]);
    assert_eq!(
        out.stdout_text(),
        "nothing to restore: the store holds no deletions\n"
    );
    assert_eq!(out.stderr_text(), "");
    let out = at_now_ok(&sb, &w, &["--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["kind"], "list", "{json}");
    assert_eq!(
        json["deletions"].as_array().map(Vec::len),
        Some(0),
        "{json}"
    );
}

#[test]
fn unrm_alone_shows_the_newest_five_deletions_and_how_to_restore() {
    let sb = Sandbox::new();
    let w = sb.work("w");
    let names = ["f1", "f2", "f3", "f4", "f5", "f6", "f7"];
    for (n, f) in names.iter().enumerate() {
        fs::write(w.join(f), "x".repeat(n + 1)).expect("write");
        saferm(&sb, &w, &[f]);
    }
    let times: Vec<String> = (0..names.len())
        .map(|n| format!("2026-06-10T12:0{n}:00Z"))
        .collect();
    let pairs: Vec<(&str, &str)> = names
        .iter()
        .copied()
        .zip(times.iter().map(String::as_str))
        .collect();
    set_created(&sb, &pairs);
    let out = at_now_ok(&sb, &w, &[]);
    let text = out.stdout_text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1 + 5 + 2, "{text}");
    assert!(
        lines[0].starts_with("ID ") && lines[0].ends_with(" WHAT"),
        "{text}"
    );
    for (line, name) in lines[1..6].iter().zip(["f7", "f6", "f5", "f4", "f3"]) {
        assert!(line.ends_with(&format!("  '{name}'")), "{text}");
    }
    assert!(
        lines[1].contains(" 24 min ago ") && lines[1].contains(" 7 B "),
        "{text}"
    );
    assert_eq!(
        lines[6],
        "restore: unrm NAME (a path, a name or an id), unrm --last (the last command)"
    );
    assert_eq!(
        lines[7],
        "what one holds: unrm --show NAME; all 7 deletions: unrm --list"
    );
    // The same rows as the listing's first five.
    let listing = at_now_ok(&sb, &w, &["--list"]).stdout_text();
    let first: Vec<&str> = listing.lines().take(6).collect();
    assert_eq!(&lines[..6], &first[..]);
    let json: serde_json::Value =
        serde_json::from_slice(&at_now_ok(&sb, &w, &["--json"]).stdout).expect("json");
    assert_eq!(json["kind"], "list", "{json}");
    assert_eq!(
        json["deletions"].as_array().map(Vec::len),
        Some(5),
        "{json}"
    );
    // A few deletions: all of them, and where to find more.
    let sb = Sandbox::new();
    let w = sb.work("w");
    fs::write(w.join("only"), "1").expect("write");
    saferm(&sb, &w, &["only"]);
    let text = at_now_ok(&sb, &w, &[]).stdout_text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(lines[1].ends_with("  'only'"), "{text}");
    assert_eq!(
        lines[3],
        "what one holds: unrm --show NAME; more: unrm --list (--since, --sort), unrm --help"
    );
    // A restoring option without a NAME is still a usage error.
    let out = at_now(&sb, &w, &["--to", "out"]);
    assert_eq!(out.code(), Some(1));
    assert!(
        out.stderr_text().starts_with("unrm: missing NAME"),
        "{}",
        out.stderr_text()
    );
}
