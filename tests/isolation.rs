//! The tests themselves: they pass from any checkout, and no program they start reaches
//! the developer's own store or config (tests/common's `clean_env`).

use std::fs;
use std::process::Command;

use crate::common::{snapshot, Sandbox};

/// Tests that start saferm, unrm or a shell in each way the helpers offer: `TestCommand`,
/// `Differential`, `Sandbox::std_command` (a closed pipe, argv[0], a terminal, a shell, a
/// script's PATH), and the store opened in-process.
const SAMPLE: &[&str] = &[
    "differential::missing_operand",
    "saferm::closed_stdout_does_not_stop_the_removal",
    "saferm::the_program_name_is_argv0_as_invoked",
    "saferm::a_progress_bar_shows_on_a_terminal_only",
    "unrm::the_terminal_chooser_picks_among_same_named_objects_and_versions",
    "shell::completions_load_in_each_shell",
    "completion::complete_names_lists_every_name_whole",
    "shell::an_rm_link_on_path_puts_scripts_through_saferm",
    "store::stale_temp_files_are_swept_fresh_ones_kept",
];

/// The sample run again, in a test process whose environment is a developer's: a home,
/// data and config directory with a config file naming a store, `SAFERM_STORE`, and a
/// `SAFERM_FAULT` that would make any saferm run fail. They must all pass, and nothing in
/// the developer's directories may change.
#[test]
fn no_test_reaches_the_developers_store_or_config() {
    let sb = Sandbox::new();
    let dev = sb.work("developer");
    for d in ["home", "data", "config/saferm", "cache", "state"] {
        fs::create_dir_all(dev.join(d)).expect("mkdir");
    }
    let config = format!("store = {:?}\n", dev.join("configured-store"));
    fs::write(dev.join("config/saferm/config.toml"), config).expect("write the config");
    let before = snapshot(&dev);
    let exe = std::env::current_exe().expect("the test binary");
    let out = Command::new(exe)
        .args(SAMPLE)
        .args(["--exact", "--test-threads=2"])
        .env("HOME", dev.join("home"))
        .env("XDG_DATA_HOME", dev.join("data"))
        .env("XDG_CONFIG_HOME", dev.join("config"))
        .env("XDG_CACHE_HOME", dev.join("cache"))
        .env("XDG_STATE_HOME", dev.join("state"))
        .env("SAFERM_STORE", dev.join("store"))
        .env("SAFERM_FAULT", "write")
        .env("SAFERM_KEEP_LAST", "0")
        .output()
        .expect("run the sample");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("test result: ok. {} passed", SAMPLE.len())),
        "not every test of the sample ran: {stdout}"
    );
    assert_eq!(
        snapshot(&dev),
        before,
        "the developer's directories changed"
    );
}

/// Every program the test modules start goes through tests/common, which gives it the
/// sandbox's environment; `Command::new` elsewhere is for tools that never run saferm
/// (GNU tar, stat, mkfs.ext4, mount) and for store.rs's root-in-a-mount-namespace runs, which clear the
/// environment themselves.
#[test]
fn programs_are_started_through_the_helpers() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    // store.rs's `unshare` clears the environment itself and must not have the sandbox's
    // HOME: it tests which home root uses when HOME is not its own.
    let allowed = [
        "Command::new(\"tar\")",
        "Command::new(\"stat\")",
        "Command::new(\"unshare\")",
        "Command::new(\"mkfs.ext4\")",
        "Command::new(\"mount\")",
        "Command::new(\"umount\")",
        "Command::new(\"losetup\")",
    ];
    let mut found = Vec::new();
    for entry in fs::read_dir(&dir).expect("read tests/") {
        let path = entry.expect("an entry").path();
        // This module's own run of the test binary gives it a developer's environment.
        if path.extension().is_none_or(|e| e != "rs") || path.ends_with("isolation.rs") {
            continue;
        }
        let text = fs::read_to_string(&path).expect("read a test module");
        for (n, line) in text.lines().enumerate() {
            let mut rest = line;
            while let Some(at) = rest.find("Command::new(") {
                let call = &rest[at..];
                if !allowed.iter().any(|a| call.starts_with(a)) {
                    found.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
                }
                rest = &call[1..];
            }
        }
    }
    assert!(
        found.is_empty(),
        "start these through Sandbox::command or Sandbox::std_command:\n{}",
        found.join("\n")
    );
}
