//! unrm's completion of deleted names in the real shells, with names that are hostile to a
//! shell: `$(touch PWNED)`, backticks, quotes, spaces, newlines, globs, a leading `-`,
//! bytes that are not UTF-8. Each name must be offered quoted so that the shell reads back
//! exactly its bytes, and no name may ever run as code (the PWNED files).
//!
//! bash is driven at the function level (COMP_WORDS, COMP_LINE, the completion function,
//! COMPREPLY) and, like zsh and fish, interactively on a pseudo-terminal: the test types
//! `unrm ` and Tab, then puts a command in front of the completed line that writes its
//! arguments to a file, and compares them with the name.

use std::ffi::OsString;
use std::fs;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::{openpty, saferm_bin, tool, unrm_bin, Sandbox};

/// How long a shell may take to reach a step before the test gives up (not a timing
/// assertion: each wait ends as soon as its event happens).
const PATIENCE: Duration = Duration::from_secs(30);

/// Names no shell may run or mangle.
const HOSTILE: &[&[u8]] = &[
    b"$(touch PWNED)",
    b"`touch PWNED_BT`",
    b"it's",
    b"a b  c",
    b"\"dq\" $HOME",
    b"new\nline",
    b"tab\there",
    b"g*l?o[b]",
    b"bad\xffname",
    b"x!y;z&|<>",
    b"~tilde",
    b"back\\slash",
];

/// The word each name is offered as, from the directory it was deleted in.
fn offered(name: &[u8]) -> Vec<u8> {
    if name.starts_with(b"-") {
        [b"./", name].concat()
    } else {
        name.to_vec()
    }
}

/// The shell `name`, by absolute path; `None` when it is not installed, after saying so
/// loudly (a failure with SAFERM_TEST_REQUIRE_ALL=1, as in CI): see [`tool`].
fn require(name: &str) -> Option<PathBuf> {
    tool(name, "completing deleted names in it")
}

/// A directory with `saferm`, `unrm`, and `words OUT ARGS...`, which writes each ARG
/// followed by a NUL to OUT (atomically, so a waiting test never reads half of it).
fn bin_dir(sb: &Sandbox) -> PathBuf {
    let bin = sb.bin_dir();
    let words = bin.join("words");
    fs::write(
        &words,
        "#!/bin/sh\nout=$1; shift\nfor a; do printf '%s\\0' \"$a\"; done > \"$out.tmp\"\nmv \"$out.tmp\" \"$out\"\n",
    )
    .expect("write words");
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&words, fs::Permissions::from_mode(0o755)).expect("chmod words");
    bin
}

/// Deletes `names` with saferm from `work` into the store under `data`.
fn delete_into(sb: &Sandbox, data: &Path, work: &Path, names: &[&[u8]]) {
    for n in names {
        fs::write(work.join(OsString::from_vec(n.to_vec())), b"x").expect("create a name");
    }
    let out = sb
        .std_command(saferm_bin())
        .arg("--")
        .args(names.iter().map(|n| OsString::from_vec(n.to_vec())))
        .current_dir(work)
        .env("XDG_DATA_HOME", data)
        .output()
        .expect("run saferm");
    assert!(out.status.success(), "saferm: {out:?}");
}

/// Fails if any name ran as code: a PWNED file anywhere in the sandbox.
fn assert_nothing_ran(sb: &Sandbox) {
    let mut stack = vec![sb.root().to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = e.file_name();
            assert!(
                !name.as_bytes().starts_with(b"PWNED"),
                "a deleted name ran as code: {}",
                e.path().display()
            );
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(e.path());
            }
        }
    }
}

/// NUL-terminated fields.
fn fields(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = bytes.split(|&b| b == 0).map(<[u8]>::to_vec).collect();
    v.pop();
    v
}

fn show(v: &[Vec<u8>]) -> Vec<String> {
    v.iter()
        .map(|b| format!("{:?}", String::from_utf8_lossy(b)))
        .collect()
}

/// bash: the completion function's replies, read by bash itself (`eval` of what the user
/// typed followed by each reply), are exactly the names, and nothing ran, after an empty
/// word and after an open quote.
#[test]
fn bash_offers_hostile_names_quoted_and_runs_none() {
    let Some(bash) = require("bash") else {
        return;
    };
    let sb = Sandbox::new();
    let work = sb.work("w");
    let mut names: Vec<&[u8]> = HOSTILE.to_vec();
    names.push(b"-dash");
    delete_into(&sb, &sb.data(), &work, &names);
    let bin = bin_dir(&sb);
    // Each case: what the user typed of the word, and readline's $2 for it.
    let cases: &[(&str, &str, &[&[u8]])] = &[
        ("", "", &names),
        ("'it", "it", &[b"it's"]),
        ("\"a", "a", &[b"a b  c"]),
        ("$'new", "new", &[b"new\nline"]),
        ("g\\*", "g\\*", &[b"g*l?o[b]"]),
        ("./-", "./-", &[b"-dash"]),
    ];
    for (typed, text, want) in cases {
        let script = "source <(unrm --completions bash)\n\
             COMP_LINE=\"unrm $TYPED\"; COMP_POINT=${#COMP_LINE}\n\
             COMP_WORDS=(unrm \"$TYPED\"); COMP_CWORD=1\n\
             _saferm_unrm_complete unrm \"$TEXT\" unrm\n\
             for reply in \"${COMPREPLY[@]}\"; do eval \"words out.$$ $LEAD$reply\"; cat out.$$; done\n";
        // Readline replaces $2: the word becomes what was typed before it, then the reply.
        let lead = &typed[..typed.len() - text.len()];
        let out = sb
            .std_command_with_path(&bash, format!("{}:/usr/bin:/bin", bin.display()))
            .args(["--norc", "--noprofile", "-c", script])
            .current_dir(&work)
            .env("LC_ALL", "C.UTF-8")
            .env("TYPED", typed)
            .env("TEXT", text)
            .env("LEAD", lead)
            .output()
            .expect("run bash");
        assert!(out.stderr.is_empty(), "{typed:?}: {out:?}");
        let mut got = fields(&out.stdout);
        let mut want: Vec<Vec<u8>> = want.iter().map(|n| offered(n)).collect();
        got.sort();
        want.sort();
        assert_eq!(show(&got), show(&want), "after {typed:?}");
    }
    assert_nothing_ran(&sb);
}

/// A shell on a pseudo-terminal, its output collected by a thread.
struct Pty {
    master: fs::File,
    child: std::process::Child,
    output: Arc<Mutex<Vec<u8>>>,
}

impl Pty {
    fn spawn(mut cmd: Command) -> Pty {
        let (master, slave) = openpty(Some(libc::winsize {
            ws_row: 50,
            ws_col: 250,
            ws_xpixel: 0,
            ws_ypixel: 0,
        }));
        let io = |fd: &OwnedFd| Stdio::from(fd.try_clone().expect("dup the pty slave"));
        cmd.stdin(io(&slave)).stdout(io(&slave)).stderr(io(&slave));
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY as _, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn the shell on a pty");
        drop(slave);
        let master = fs::File::from(master);
        let output = Arc::new(Mutex::new(Vec::new()));
        let mut reader = master.try_clone().expect("dup the pty master");
        let sink = Arc::clone(&output);
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // Ends with EIO once the shell and its children closed the terminal.
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .expect("output lock")
                    .extend_from_slice(&buf[..n]);
            }
        });
        Pty {
            master,
            child,
            output,
        }
    }

    fn send(&mut self, keys: &[u8]) {
        self.master.write_all(keys).expect("type into the pty");
    }

    fn transcript(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().expect("output lock")).into_owned()
    }

    /// Waits until `done` holds, or fails with what the terminal showed.
    fn wait_for(&self, what: &str, done: impl Fn(&Pty) -> bool) {
        let deadline = Instant::now() + PATIENCE;
        while !done(self) {
            assert!(
                Instant::now() < deadline,
                "{what}: not reached within {PATIENCE:?}; the terminal showed:\n{}",
                self.transcript()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn prompts(&self) -> usize {
        self.transcript().matches(PROMPT).count()
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const PROMPT: &str = "@@READY@@";

/// How each shell is started on the terminal, and the line that sets `XDG_DATA_HOME`.
struct Shell {
    name: &'static str,
    argv: &'static [&'static str],
    /// Written to the rc file; `{dir}` is the directory holding the completion file.
    rc: &'static str,
    set_data: &'static str,
    /// What is typed before Tab for a name: fish lists `./-x` only after a `.`, as it
    /// does hidden files.
    typed: fn(&[u8]) -> &'static str,
}

fn nothing(_: &[u8]) -> &'static str {
    ""
}

fn dot_for_dash(name: &[u8]) -> &'static str {
    if name.starts_with(b"-") {
        "./-"
    } else {
        ""
    }
}

const SHELLS: &[Shell] = &[
    Shell {
        name: "bash",
        argv: &["bash", "--norc", "--noprofile", "-i"],
        rc: "source <(unrm --completions bash)\nPS1='@@READY@@ '\n",
        set_data: "export XDG_DATA_HOME=",
        typed: nothing,
    },
    // The completion as a file in $fpath, autoloaded on the first Tab, as installed.
    Shell {
        name: "zsh",
        argv: &["zsh", "-f", "-i"],
        rc: "fpath=({dir} $fpath)\nautoload -U compinit && compinit -u -D\nPS1='@@READY@@ '\n",
        set_data: "export XDG_DATA_HOME=",
        typed: nothing,
    },
    Shell {
        name: "fish",
        argv: &["fish", "--no-config", "-i"],
        rc: "unrm --completions fish | source\nset -g fish_autosuggestion_enabled 0\n\
             function fish_prompt; printf '@@READY@@ '; end\n",
        set_data: "set -gx XDG_DATA_HOME ",
        typed: dot_for_dash,
    },
];

/// In each real shell: with one deleted name in the store, `unrm ` and Tab complete the
/// word to that name, quoted so that the command line hands unrm exactly its bytes; and no
/// name ran as code. zsh loads the completion from $fpath on the first Tab, which once
/// failed with `command not found: _saferm_unrm_names`.
#[test]
fn tab_completes_hostile_names_in_bash_zsh_and_fish() {
    for shell in SHELLS {
        let Some(program) = require(shell.name) else {
            continue;
        };
        let sb = Sandbox::new();
        let work = sb.work("w");
        let bin = bin_dir(&sb);
        let mut names: Vec<&[u8]> = HOSTILE.to_vec();
        names.push(b"-dash");
        // One store per name, so that the name is the only completion.
        let data = |i: usize| sb.root().join(format!("data{i}"));
        for (i, n) in names.iter().enumerate() {
            delete_into(&sb, &data(i), &work, &[n]);
        }
        let comp = sb.work("completions");
        let file = sb
            .std_command(unrm_bin())
            .args(["--completions", shell.name])
            .output()
            .expect("unrm --completions");
        fs::write(comp.join("_unrm"), &file.stdout).expect("write _unrm");
        let rc = sb.root().join("rc");
        fs::write(&rc, shell.rc.replace("{dir}", &comp.display().to_string())).expect("rc");
        let mut cmd = sb.std_command_with_path(program, format!("{}:/usr/bin:/bin", bin.display()));
        cmd.args(&shell.argv[1..])
            .current_dir(&work)
            .env("TERM", "xterm")
            .env("LC_ALL", "C.UTF-8");
        let mut pty = Pty::spawn(cmd);
        pty.send(format!("source {}\n", rc.display()).as_bytes());
        pty.wait_for(&format!("{}: first prompt", shell.name), |p| {
            p.prompts() >= 1
        });
        let mut failures = Vec::new();
        for (i, n) in names.iter().enumerate() {
            let out = sb.root().join(format!("out{i}"));
            let prompts = pty.prompts();
            pty.send(format!("{}{}\n", shell.set_data, data(i).display()).as_bytes());
            pty.wait_for(&format!("{}: store {i} set", shell.name), |p| {
                p.prompts() > prompts
            });
            // Tab, then Ctrl-A and `words OUT ` before the completed line, then Enter.
            pty.send(format!("unrm {}\t", (shell.typed)(n)).as_bytes());
            pty.send(format!("\x01words {} \r", out.display()).as_bytes());
            pty.wait_for(&format!("{}: name {i} completed", shell.name), |_| {
                out.exists()
            });
            let got = fields(&fs::read(&out).expect("read the words"));
            // fish cannot offer a name holding a TAB (it starts the description): the word
            // stays empty rather than cut short.
            let want = if shell.name == "fish" && n.contains(&b'\t') {
                vec![b"unrm".to_vec()]
            } else {
                vec![b"unrm".to_vec(), offered(n)]
            };
            if got != want {
                failures.push(format!(
                    "{:?} came out as {:?}",
                    show(&want[1..]),
                    show(&got)
                ));
            }
        }
        pty.send(b"exit\n");
        let transcript = pty.transcript();
        assert!(
            failures.is_empty(),
            "{}: {failures:#?}\nthe terminal showed:\n{transcript}",
            shell.name
        );
        assert!(
            !transcript.contains("command not found"),
            "{}: {transcript}",
            shell.name
        );
        assert_nothing_ran(&sb);
    }
}

/// The names are listed through a NUL-separated channel for zsh and fish: a name with a
/// newline is one name, not two.
#[test]
fn complete_names_lists_every_name_whole() {
    let sb = Sandbox::new();
    let work = sb.work("w");
    let mut names: Vec<&[u8]> = HOSTILE.to_vec();
    names.push(b"-dash");
    delete_into(&sb, &sb.data(), &work, &names);
    let out = sb
        .command(unrm_bin())
        .current_dir(&work)
        .args(["--complete-names", "zsh"])
        .run();
    assert_eq!(out.code(), Some(0), "{}", out.stderr_text());
    let mut got = fields(&out.stdout);
    let mut want: Vec<Vec<u8>> = names.iter().map(|n| offered(n)).collect();
    got.sort();
    want.sort();
    assert_eq!(show(&got), show(&want));
}
