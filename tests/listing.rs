//! `unrm --list` for people: golden tables at 80 and 200 columns on a fixed clock, short ids
//! that the commands taking an id accept, only what was archived, colour only on a terminal.

use std::fs;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::Path;

use crate::common::{
    build_tree, edit_manifest, manifests, openpty, saferm_bin, saferm_ok as saferm, unrm_bin,
    unrm_ok, Outcome, Sandbox,
};

/// 2026-06-10T12:30:00Z, the clock the listings are read with.
const NOW: &str = "1781094600";

/// The deletions of [`store_for_people`]: the first operand as given, the id and the time
/// each is given instead of its real ones.
const DELETIONS: [(&str, &str, &str); 5] = [
    (
        "proj",
        "20260610T120000.100000000Z-100-00000001-proj",
        "2026-06-10T12:00:00.1Z",
    ),
    (
        "lone",
        "20260610T120005.200000000Z-101-00000002-lone",
        "2026-06-10T12:00:05.2Z",
    ),
    (
        "old",
        "20260301T090000.000000000Z-102-00000003-old",
        "2026-03-01T09:00:00Z",
    ),
    (
        "a directory with a rather long name indeed",
        "20260609T080000.000000000Z-103-00000004-a_directory_with_a_rather_long_name_ind",
        "2026-06-09T08:00:00Z",
    ),
    (
        "yes",
        "20260610T122950.000000000Z-104-00000005-yes",
        "2026-06-10T12:29:50Z",
    ),
];

/// A store of five deletions with fixed ids and times (one restored, one of two operands,
/// one made by `rm -i` that declined an operand); returns the directory they came from.
fn store_for_people(sb: &Sandbox) -> std::path::PathBuf {
    let w = sb.work("w");
    build_tree(
        &w,
        &[
            "proj/a=12345",
            "proj/b=6",
            "lone=x",
            "old=1",
            "a directory with a rather long name indeed/f=hi",
            "and a second operand with a long name/g=1",
            "yes=1",
            "no=2",
        ],
    );
    saferm(sb, &w, &["-r", "proj"]);
    saferm(sb, &w, &["lone"]);
    saferm(sb, &w, &["old"]);
    saferm(
        sb,
        &w,
        &[
            "-r",
            "a directory with a rather long name indeed",
            "and a second operand with a long name",
        ],
    );
    let asked = sb
        .command(saferm_bin())
        .args(["-i", "yes", "no"])
        .stdin("y\nn\n")
        .current_dir(&w)
        .run();
    assert_eq!(asked.code(), Some(0), "{}", asked.stderr_text());
    assert!(w.join("no").exists(), "declined, so kept");
    unrm_ok(sb, &w, &["lone"]);
    // Each deletion gets its fixed id and time; its notes follow it.
    let files = manifests(&sb.store());
    for m in files.iter().filter(|p| {
        let name = p.to_string_lossy();
        name.ends_with(".json") && !name.contains(".restored") && !name.contains(".kept")
    }) {
        let v: serde_json::Value =
            serde_json::from_slice(&fs::read(m).expect("read")).expect("json");
        let given = v["operands"][0]["given"]["path"].as_str().expect("given");
        let old_id = v["id"].as_str().expect("id").to_string();
        let (_, id, created) = DELETIONS
            .iter()
            .find(|(g, _, _)| *g == given)
            .expect("a deletion of the test");
        edit_manifest(m, |v| {
            v["id"] = (*id).into();
            v["created"] = (*created).into();
        });
        for f in &files {
            let name = f.file_name().expect("name").to_string_lossy().into_owned();
            if let Some(rest) = name.strip_prefix(&old_id) {
                fs::rename(f, f.with_file_name(format!("{id}{rest}"))).expect("rename");
            }
        }
    }
    let _ = fs::remove_file(sb.store().join("index.jsonl"));
    w
}

fn list(sb: &Sandbox, w: &Path, columns: &str, args: &[&str]) -> Outcome {
    let out = sb
        .command(unrm_bin())
        .arg("--list")
        .args(args)
        .current_dir(w)
        .env("SAFERM_TEST_NOW", NOW)
        .env("TZ", "UTC")
        .env("COLUMNS", columns)
        .run();
    assert_eq!(out.code(), Some(0), "{}", out.stderr_text());
    out
}

#[test]
fn the_listing_fits_80_columns_cutting_only_what_was_deleted() {
    let sb = Sandbox::new();
    let w = store_for_people(&sb);
    let text = list(&sb, &w, "80", &[]).stdout_text();
    // 'no' was declined at the prompt: only 'yes' is in its deletion.
    assert_eq!(
        text,
        concat!(
            "ID               DELETED            FILES  SIZE  STATE     WHAT\n",
            "20260610T122     10 s ago          1 file   1 B            'yes'\n",
            "20260610T120005  29 min ago        1 file   1 B  restored  'lone'\n",
            "20260610T120000  29 min ago       2 files   6 B            'proj'\n",
            "20260609         yesterday 08:00  2 files   3 B            'a directory with a …\n",
            "20260301         Mar 01 09:00      1 file   1 B            'old'\n",
        )
    );
    assert!(text.lines().all(|l| l.chars().count() <= 80), "{text}");
}

#[test]
fn the_listing_at_200_columns_is_whole() {
    let sb = Sandbox::new();
    let w = store_for_people(&sb);
    let text = list(&sb, &w, "200", &[]).stdout_text();
    assert_eq!(
        text,
        concat!(
        "ID               DELETED            FILES  SIZE  STATE     WHAT\n",
        "20260610T122     10 s ago          1 file   1 B            'yes'\n",
        "20260610T120005  29 min ago        1 file   1 B  restored  'lone'\n",
        "20260610T120000  29 min ago       2 files   6 B            'proj'\n",
        "20260609         yesterday 08:00  2 files   3 B            'a directory with a rather long name indeed' 'and a second operand with a long name'\n",
        "20260301         Mar 01 09:00      1 file   1 B            'old'\n",
    )
    );
}

#[test]
fn the_long_listing_has_whole_ids_and_times_and_json_the_short_ids() {
    let sb = Sandbox::new();
    let w = store_for_people(&sb);
    let text = list(&sb, &w, "200", &["--long"]).stdout_text();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("ID  ") && lines[0].contains(" STORED "),
        "{text}"
    );
    assert!(
        lines[2].starts_with(DELETIONS[1].1)
            && lines[2].contains("  2026-06-10 12:00:05   1 file   1 B  ")
            && lines[2].ends_with("  restored  'lone'"),
        "{text}"
    );
    let doc: serde_json::Value =
        serde_json::from_slice(&list(&sb, &w, "80", &["--json"]).stdout).expect("json");
    let json = &doc["deletions"];
    assert_eq!(json[0]["short_id"], "20260610T122");
    assert_eq!(json[0]["id"], DELETIONS[4].1);
    assert_eq!(json[4]["short_id"], "20260301");
}

#[test]
fn the_short_ids_listed_are_taken_by_every_option_that_takes_an_id() {
    let sb = Sandbox::new();
    let w = store_for_people(&sb);
    let run = |args: &[&str]| unrm_ok(&sb, &w, args).stdout_text();
    assert!(run(&["--show", "20260610T120000"]).contains("\nproj/  2 files, 6 B\n├── a  5 B\n"));
    assert!(run(&["--purge", "--dry-run", "20260301"])
        .starts_with(&format!("would purge {}", DELETIONS[2].1)));
    run(&["--check", "20260609"]);
    run(&["proj", "--at", "20260610T120000"]);
    assert_eq!(fs::read(w.join("proj/a")).expect("restored"), b"12345");
    run(&["20260301"]);
    assert_eq!(fs::read(w.join("old")).expect("restored"), b"1");
}

/// `unrm --list` with stdout on a pseudo-terminal of 80 columns (no `COLUMNS`).
fn list_on_a_terminal(sb: &Sandbox, w: &Path, env: &[(&str, &str)]) -> String {
    let (master, slave) = openpty(Some(libc::winsize {
        ws_row: 24,
        ws_col: 80,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }));
    let mut cmd = sb.std_command(unrm_bin());
    cmd.arg("--list")
        .current_dir(w)
        .env("SAFERM_TEST_NOW", NOW)
        .env("TZ", "UTC")
        .stdout(std::process::Stdio::from(slave))
        .stderr(std::process::Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().expect("spawn unrm");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Everything written is in the terminal's buffer by now; read it without blocking.
    // SAFETY: fcntl on a descriptor this function owns.
    unsafe {
        let flags = libc::fcntl(master.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(master.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK);
    }
    let mut tty = fs::File::from(master);
    let mut bytes = Vec::new();
    let _ = tty.read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).replace("\r\n", "\n")
}

#[test]
fn colour_only_on_a_terminal_and_never_with_no_color() {
    let sb = Sandbox::new();
    let w = store_for_people(&sb);
    let coloured = list_on_a_terminal(&sb, &w, &[]);
    assert!(
        coloured.contains("\x1b[1m20260610T120005\x1b[0m"),
        "{coloured:?}"
    );
    assert!(
        coloured.contains("\x1b[2m29 min ago\x1b[0m"),
        "{coloured:?}"
    );
    assert!(
        coloured.contains("'a directory with a …"),
        "the terminal's width: {coloured:?}"
    );
    let plain = list_on_a_terminal(&sb, &w, &[("NO_COLOR", "1")]);
    assert!(!plain.contains('\x1b'), "{plain:?}");
    assert!(plain.contains("'a directory with a …"), "{plain:?}");
    // In a pipe, neither colour nor a width: whole lines.
    let piped = unrm_ok(&sb, &w, &["--list"]).stdout_text();
    assert!(!piped.contains('\x1b'), "{piped}");
    assert!(
        piped.contains("'and a second operand with a long name'"),
        "{piped}"
    );
}
