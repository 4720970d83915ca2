//! Progress people can trust, on a pseudo-terminal: saferm's archiving, unrm's restores and
//! `unrm --check` move their bar by bytes within one large file, never draw it when stderr
//! is not a terminal, and Ctrl-C takes the bar off the line and says what was and was not
//! done, in numbers that match what is on disk.
//!
//! `SAFERM_TEST_PROGRESS_NOW` (debug builds) shows the bar at once and draws a frame at
//! each sixteenth of the total as well as every 100 ms, so that the frames a test sees do
//! not depend on how fast the machine is. Interruptions land at a fixed point:
//! `SAFERM_FAULT=archive-pause=NAME` / `restore-pause=NAME` stop after the first chunk of
//! NAME (src/fault.rs), the test sends SIGINT, then lets them go on.

use std::fs;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::{
    archives, files_under, manifests, noise, openpty, saferm_bin, saferm_ok, snapshot, unrm_bin,
    unrm_ok, Sandbox,
};

const MIB: usize = 1 << 20;

/// A terminal wide enough for the whole bar line.
const WIDE: libc::winsize = libc::winsize {
    ws_row: 24,
    ws_col: 200,
    ws_xpixel: 0,
    ws_ypixel: 0,
};

/// A program running with stdin, stdout and stderr on a pseudo-terminal, and everything it
/// wrote there so far.
struct OnTty {
    child: Child,
    screen: Arc<Mutex<Vec<u8>>>,
    reader: std::thread::JoinHandle<()>,
}

impl OnTty {
    /// Start `cmd` on a new pseudo-terminal; a thread reads the terminal as it goes, so that
    /// a long run never blocks on a full one.
    fn spawn(mut cmd: Command) -> OnTty {
        let (master, slave) = openpty(Some(WIDE));
        let dup = |fd: &OwnedFd| fd.try_clone().expect("dup the pty");
        cmd.env("TERM", "xterm")
            .env("SAFERM_TEST_PROGRESS_NOW", "1")
            .stdin(Stdio::from(dup(&slave)))
            .stdout(Stdio::from(dup(&slave)))
            .stderr(Stdio::from(slave));
        let child = cmd.spawn().expect("spawn on the pty");
        // The terminal reads EIO once no one holds its other side: ours must go.
        drop(cmd);
        let screen = Arc::new(Mutex::new(Vec::new()));
        let into = Arc::clone(&screen);
        let reader = std::thread::spawn(move || {
            let mut tty = fs::File::from(master);
            let mut buf = [0u8; 4096];
            while let Ok(n) = tty.read(&mut buf) {
                if n == 0 {
                    break;
                }
                into.lock().expect("screen").extend_from_slice(&buf[..n]);
            }
        });
        OnTty {
            child,
            screen,
            reader,
        }
    }

    /// What is on the terminal so far.
    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.screen.lock().expect("screen")).into_owned()
    }

    fn wait(mut self) -> (ExitStatus, String) {
        let status = self.child.wait().expect("wait");
        let screen = Arc::clone(&self.screen);
        self.reader.join().expect("the pty reader");
        let screen = String::from_utf8_lossy(&screen.lock().expect("screen")).into_owned();
        (status, screen)
    }

    fn interrupt(&self) {
        let pid = i32::try_from(self.child.id()).expect("pid");
        // SAFETY: kill has no memory effects; pid is our child, not yet reaped.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    }
}

/// The byte counts of the frames labelled `label` (`unrm: restoring`): `(done, total)` of
/// each `done/total`, in bytes as the bar shows them (`512 B`, `12.0 MiB`).
fn frames(screen: &str, label: &str) -> Vec<(f64, f64)> {
    screen
        .split(['\r', '\n'])
        .filter_map(|frame| frame.strip_prefix(label))
        .filter_map(|rest| {
            // `BAR 12.0 MiB/64.0 MiB 40.0 MiB/s ETA 2s`
            let words: Vec<&str> = rest.split_whitespace().collect();
            let (unit, total) = words.get(2)?.split_once('/')?;
            Some((bytes(words.get(1)?, unit), bytes(total, words.get(3)?)))
        })
        .collect()
}

fn bytes(number: &str, unit: &str) -> f64 {
    let n: f64 = number.parse().unwrap_or(f64::NAN);
    let scale = match unit {
        "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        _ => f64::NAN,
    };
    n * scale
}

/// At least three frames for `label` whose counts are above zero and below the total, in
/// increasing order: the bar moved within one file, by its bytes.
fn assert_moves_within(screen: &str, label: &str, total: usize) {
    let seen = frames(screen, label);
    let total = total as f64;
    let inside: Vec<f64> = seen
        .iter()
        .map(|&(done, _)| done)
        .filter(|&d| d > 0.0 && d < total * 0.99)
        .collect();
    assert!(
        inside.len() >= 3,
        "{label}: too few frames inside the file: {seen:?}\n{screen:?}"
    );
    assert!(
        inside.windows(2).all(|w| w[0] <= w[1]),
        "{label}: the count went back: {inside:?}"
    );
    assert!(
        seen.iter().all(|&(_, t)| (t - total).abs() <= total * 0.01),
        "{label}: the total is not the file's size: {seen:?}"
    );
}

/// The bar was taken off the line, and after that the terminal holds exactly `tail`.
fn assert_ends_with_after_clear(screen: &str, tail: &str) {
    let cleared = screen
        .rfind("\r\x1b[K")
        .unwrap_or_else(|| panic!("the bar was never cleared: {screen:?}"));
    assert_eq!(
        &screen[cleared + 4..],
        tail,
        "what follows the cleared bar: {screen:?}"
    );
}

fn saferm_command(sb: &Sandbox, cwd: &Path, args: &[&str]) -> Command {
    let mut cmd = sb.std_command(saferm_bin());
    cmd.args(args).current_dir(cwd);
    cmd
}

fn unrm_command(sb: &Sandbox, cwd: &Path, args: &[&str]) -> Command {
    let mut cmd = sb.std_command(unrm_bin());
    cmd.args(args).current_dir(cwd);
    cmd
}

/// A directory for the pause handshake of `SAFERM_FAULT=...-pause=NAME`.
fn pause_dir(sb: &Sandbox) -> PathBuf {
    let dir = sb.root().join("pause");
    fs::create_dir_all(&dir).expect("pause dir");
    dir
}

/// Wait until the program paused (it created `paused`), or ended without pausing.
fn wait_paused(run: &mut OnTty, pause: &Path) {
    while !pause.join("paused").exists() {
        if let Some(status) = run.child.try_wait().expect("try_wait") {
            panic!("it ended without pausing: {status:?}\n{:?}", run.screen());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Wait until the terminal shows the bar `label` (what the program wrote before it paused
/// may still be on its way through the terminal).
fn wait_for_bar(run: &OnTty, label: &str) {
    for _ in 0..6000 {
        if run.screen().contains(label) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("no bar when interrupted: {:?}", run.screen());
}

#[test]
fn saferm_moves_its_bar_by_bytes_within_one_large_file() {
    let sb = Sandbox::new();
    let w = sb.work("w");
    let size = 64 * MIB;
    fs::write(w.join("big"), noise(11, size)).expect("big");
    let (status, screen) = OnTty::spawn(saferm_command(&sb, &w, &["big"])).wait();
    assert_eq!(status.code(), Some(0), "{screen:?}");
    assert_moves_within(&screen, "saferm: archiving", size);
    // Nothing but the bar was written, and it is gone from the line.
    assert_ends_with_after_clear(&screen, "");
    assert!(!w.join("big").exists());
    assert_eq!(archives(&sb.store()).len(), 1);
}

#[test]
fn a_restore_and_a_check_move_their_bar_by_bytes_within_one_large_file() {
    let sb = Sandbox::new();
    let w = sb.work("w");
    let size = 64 * MIB;
    let content = noise(12, size);
    fs::write(w.join("big"), &content).expect("big");
    saferm_ok(&sb, &w, &["big"]);
    let (status, screen) = OnTty::spawn(unrm_command(&sb, &w, &["big"])).wait();
    assert_eq!(status.code(), Some(0), "{screen:?}");
    assert_moves_within(&screen, "unrm: restoring", size);
    assert!(fs::read(w.join("big")).expect("restored") == content);
    // The bar went before the line that says what was restored.
    let restored = screen.rfind("restored 'big'").expect("the restored line");
    assert!(
        !screen[restored..].contains("unrm: restoring"),
        "{screen:?}"
    );
    // --check reads the archive (about the file's size: noise does not compress).
    let (status, screen) = OnTty::spawn(unrm_command(&sb, &w, &["--check"])).wait();
    assert_eq!(status.code(), Some(0), "{screen:?}");
    assert_moves_within(&screen, "unrm: checking", size);
}

#[test]
fn no_bar_is_drawn_when_stderr_is_not_a_terminal() {
    let sb = Sandbox::new();
    let w = sb.work("w");
    let size = 16 * MIB;
    fs::write(w.join("big"), noise(13, size)).expect("big");
    // stdin and stdout on a terminal, stderr on a pipe: the bar goes to stderr, so none.
    let on_pipe = |mut cmd: Command| {
        let (master, slave) = openpty(None);
        let out = cmd
            .env("TERM", "xterm")
            .env("SAFERM_TEST_PROGRESS_NOW", "1")
            .stdin(Stdio::from(slave.try_clone().expect("dup")))
            .stdout(Stdio::from(slave))
            .stderr(Stdio::piped())
            .output()
            .expect("run");
        drop(master);
        out
    };
    let out = on_pipe(saferm_command(&sb, &w, &["big"]));
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    let out = on_pipe(unrm_command(&sb, &w, &["big"]));
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    let out = on_pipe(unrm_command(&sb, &w, &["--check"]));
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}

#[test]
fn ctrl_c_while_archiving_clears_the_bar_and_says_nothing_was_removed() {
    let sb = Sandbox::new();
    let w = sb.work("w");
    fs::create_dir(w.join("d")).expect("mkdir");
    fs::write(w.join("d/small"), b"small").expect("small");
    fs::write(w.join("d/big"), noise(14, 16 * MIB)).expect("big");
    let before = snapshot(&w);
    let pause = pause_dir(&sb);
    let mut cmd = saferm_command(&sb, &w, &["-r", "d"]);
    cmd.env("SAFERM_FAULT", "archive-pause=big")
        .env("SAFERM_TEST_PAUSE_DIR", &pause);
    let mut run = OnTty::spawn(cmd);
    wait_paused(&mut run, &pause);
    wait_for_bar(&run, "saferm: archiving");
    run.interrupt();
    fs::write(pause.join("resume"), b"").expect("resume");
    let (status, screen) = run.wait();
    assert_eq!(status.signal(), Some(libc::SIGINT), "{screen:?}");
    // In GNU's voice: the program as it was invoked.
    let line = format!(
        "{}: interrupted: nothing was removed\r\n",
        saferm_bin().display()
    );
    assert_ends_with_after_clear(&screen, &line);
    assert_eq!(snapshot(&w), before);
    assert!(archives(&sb.store()).is_empty());
    assert!(files_under(&sb.store().join("tmp")).is_empty());
}

#[test]
fn ctrl_c_during_a_restore_clears_the_bar_says_what_was_restored_and_a_rerun_finishes() {
    let sb = Sandbox::new();
    let w = sb.work("w");
    fs::create_dir(w.join("d")).expect("mkdir");
    let mut sizes = Vec::new();
    for (i, size) in [MIB, 2 * MIB, 3 * MIB, 4 * MIB].into_iter().enumerate() {
        fs::write(w.join(format!("d/f{i}")), noise(20 + i as u64, size)).expect("file");
        sizes.push((format!("f{i}"), size));
    }
    fs::write(w.join("d/big"), noise(30, 8 * MIB)).expect("big");
    sizes.push(("big".to_string(), 8 * MIB));
    let before = snapshot(&w);
    let originals: Vec<(String, Vec<u8>)> = sizes
        .iter()
        .map(|(n, _)| (n.clone(), fs::read(w.join("d").join(n)).expect("read")))
        .collect();
    saferm_ok(&sb, &w, &["-r", "d"]);
    // Interrupted in the last file the archive holds: the others are restored by then.
    let last = last_file_archived(&sb);
    let pause = pause_dir(&sb);
    let mut cmd = unrm_command(&sb, &w, &["d"]);
    cmd.env("SAFERM_FAULT", format!("restore-pause={last}"))
        .env("SAFERM_TEST_PAUSE_DIR", &pause);
    let mut run = OnTty::spawn(cmd);
    wait_paused(&mut run, &pause);
    wait_for_bar(&run, "unrm: restoring");
    run.interrupt();
    fs::write(pause.join("resume"), b"").expect("resume");
    let (status, screen) = run.wait();
    assert_eq!(status.signal(), Some(libc::SIGINT), "{screen:?}");
    // What is on disk: complete files identical to their originals, nothing else (the
    // file being written, big, is gone, temp name included).
    let present: Vec<String> = fs::read_dir(w.join("d"))
        .expect("d")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!present
        .iter()
        .any(|n| *n == last || n.starts_with(".unrm.")));
    assert_eq!(present.len(), 4, "{present:?}");
    let mut restored_bytes = 0;
    for name in &present {
        let (_, original) = originals
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("{name} is not one of the deleted files"));
        assert!(
            fs::read(w.join("d").join(name)).expect("read") == *original,
            "{name}"
        );
        restored_bytes += original.len() as u64;
    }
    let all: u64 = sizes.iter().map(|(_, s)| *s as u64).sum();
    let line = format!(
        "unrm: interrupted: restored {} of 5 files ({} of {}); run the same command again to finish\r\n",
        present.len(),
        saferm::output::human(restored_bytes),
        saferm::output::human(all),
    );
    assert_ends_with_after_clear(&screen, &line);
    // Again: the rest comes back, and all of it is as it was.
    unrm_ok(&sb, &w, &["d"]);
    assert_eq!(snapshot(&w), before);
}

/// The name of the last regular file in the only deletion's manifest (archive order).
fn last_file_archived(sb: &Sandbox) -> String {
    let manifests = manifests(&sb.store());
    assert_eq!(manifests.len(), 1, "{manifests:?}");
    let json: serde_json::Value =
        serde_json::from_slice(&fs::read(&manifests[0]).expect("manifest")).expect("json");
    let entries = json["entries"].as_array().expect("entries");
    let path = entries
        .iter()
        .rev()
        .filter(|e| e["type"] == "file")
        .find_map(|e| e["path"].as_str())
        .expect("a file entry");
    path.rsplit('/').next().unwrap_or(path).to_string()
}

#[test]
fn ctrl_c_during_a_check_clears_the_bar_and_says_how_many_archives_were_checked() {
    let sb = Sandbox::new();
    let w = sb.work("w");
    for name in ["a", "b", "c"] {
        fs::write(w.join(name), noise(40, 2 * MIB)).expect("file");
        saferm_ok(&sb, &w, &[name]);
    }
    let mut cmd = unrm_command(&sb, &w, &["--check"]);
    cmd.env("SAFERM_FAULT", "check-signal");
    let (status, screen) = OnTty::spawn(cmd).wait();
    assert_eq!(status.signal(), Some(libc::SIGINT), "{screen:?}");
    assert_ends_with_after_clear(
        &screen,
        "unrm: interrupted: checked 0 of 3 archives; nothing was changed\r\n",
    );
}
