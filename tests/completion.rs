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

/// `shell` (at `program`) on a pseudo-terminal in `work`, with `bin` first on its PATH, unrm's
/// completion loaded as installed and then `rc_extra` run; returned at its first prompt.
fn start_shell(
    sb: &Sandbox,
    shell: &Shell,
    program: &Path,
    work: &Path,
    bin: &Path,
    rc_extra: &str,
) -> Pty {
    let comp = sb.work("completions");
    let file = sb
        .std_command(unrm_bin())
        .args(["--completions", shell.name])
        .output()
        .expect("unrm --completions");
    fs::write(comp.join("_unrm"), &file.stdout).expect("write _unrm");
    let rc = sb.root().join("rc");
    let rc_text = shell.rc.replace("{dir}", &comp.display().to_string()) + rc_extra;
    fs::write(&rc, rc_text).expect("rc");
    let mut cmd = sb.std_command_with_path(program, format!("{}:/usr/bin:/bin", bin.display()));
    cmd.args(&shell.argv[1..])
        .current_dir(work)
        .env("TERM", "xterm")
        .env("LC_ALL", "C.UTF-8");
    let mut pty = Pty::spawn(cmd);
    pty.send(format!("source {}\n", rc.display()).as_bytes());
    pty.wait_for(&format!("{}: first prompt", shell.name), |p| {
        p.prompts() >= 1
    });
    pty
}

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
        let mut pty = start_shell(&sb, shell, &program, &work, &bin, "");
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

/// `unrm --complete-names SHELL -- TEXT LINE`: the words offered for the line up to the
/// cursor, NUL-separated (bash: the replies, quoted to continue the word).
fn complete(sb: &Sandbox, work: &Path, shell: &str, text: &str, line: &[u8]) -> Vec<Vec<u8>> {
    let out = sb
        .command(unrm_bin())
        .current_dir(work)
        .args(["--complete-names", shell, "--", text])
        .arg(OsString::from_vec(line.to_vec()))
        .run();
    assert_eq!(out.code(), Some(0), "{}", out.stderr_text());
    let mut got = fields(&out.stdout);
    got.sort();
    got
}

fn sorted(words: &[&[u8]]) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = words.iter().map(|w| w.to_vec()).collect();
    v.sort();
    v
}

/// Deletes the tree `t` (`t/obj/a.o`, `t/obj/sub/x`, `t/README`, `t/g*lob`, and a file
/// whose name would run as code in a careless completion) from `work`.
fn delete_tree(sb: &Sandbox, work: &Path) {
    fs::create_dir_all(work.join("t/obj/sub")).expect("mkdir");
    for f in [
        "t/obj/a.o",
        "t/obj/sub/x",
        "t/README",
        "t/g*lob",
        "t/obj/$(touch PWNED)",
    ] {
        fs::write(work.join(f), b"x").expect("write");
    }
    let out = sb
        .command(saferm_bin())
        .current_dir(work)
        .args(["-r", "t"])
        .run();
    assert_eq!(out.code(), Some(0), "{}", out.stderr_text());
}

/// Once the word holds a `/`, what was inside the deleted directory it names is offered, a
/// level at a time, directories with a trailing `/`, as typed before the last `/`; a name
/// unrm would read as a glob is not offered; nothing ran.
#[test]
fn names_inside_a_deleted_tree_are_offered_a_level_at_a_time() {
    let sb = Sandbox::new();
    let work = sb.work("w");
    delete_tree(&sb, &work);
    let zsh = |line: &str| complete(&sb, &work, "zsh", "", line.as_bytes());
    let top: &[&[u8]] = &[b"t"];
    assert_eq!(zsh("unrm "), sorted(top));
    assert_eq!(
        zsh("unrm t/"),
        sorted(&[b"t", b"t/obj/", b"t/README"]),
        "the operand and its children, not t/g*lob"
    );
    assert_eq!(
        zsh("unrm 't/obj/a"),
        sorted(&[b"t", b"t/obj/a.o", b"t/obj/sub/", b"t/obj/$(touch PWNED)"])
    );
    // Typed another way, offered that way: resolving the word gives the same path.
    assert_eq!(zsh("unrm ./t/obj/sub/"), sorted(&[b"t", b"./t/obj/sub/x"]));
    let abs = format!("{}/t/obj/sub/", work.display());
    assert!(zsh(&format!("unrm {abs}")).contains(&format!("{abs}x").into_bytes()));
    // --cat's PATH completes as a NAME does.
    assert_eq!(
        zsh("unrm --cat t/obj/sub/"),
        sorted(&[b"t", b"t/obj/sub/x"])
    );
    // A path that is not inside a deleted tree offers only the names.
    assert_eq!(zsh("unrm elsewhere/"), sorted(top));
    // bash: the reply continues the word, quoted; no name ran.
    let bash = complete(&sb, &work, "bash", "t/obj/$", b"unrm t/obj/$");
    assert_eq!(bash, sorted(&[b"'t/obj/$(touch PWNED)'"]));
    // And each offered path restores what it names.
    let out = sb
        .command(unrm_bin())
        .current_dir(&work)
        .arg("t/obj/sub/x")
        .run();
    assert_eq!(out.code(), Some(0), "{}", out.stderr_text());
    assert_eq!(fs::read(work.join("t/obj/sub/x")).expect("restored"), b"x");
    assert!(
        !work.join("t/README").exists(),
        "only the one file came back"
    );
    assert_nothing_ran(&sb);
}

/// The short ids of `unrm --list`, newest first.
fn short_ids(sb: &Sandbox, work: &Path) -> Vec<Vec<u8>> {
    let out = sb
        .command(unrm_bin())
        .current_dir(work)
        .args(["--list", "--json"])
        .run();
    assert_eq!(out.code(), Some(0), "{}", out.stderr_text());
    let text = out.stdout_text();
    let mut ids: Vec<Vec<u8>> = text
        .split("\"short_id\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').nth(1))
        .map(|id| id.as_bytes().to_vec())
        .collect();
    assert!(!ids.is_empty(), "no short_id in {text}");
    ids.sort();
    ids
}

/// `--at` completes the short ids `unrm --list` shows; `--show` ids and names; NAMEs after
/// `--purge` ids too; a plain NAME no ids. `--show=` in bash keeps the option in the word.
#[test]
fn ids_are_offered_for_show_at_and_purge() {
    let sb = Sandbox::new();
    let work = sb.work("w");
    delete_tree(&sb, &work);
    fs::write(work.join("f"), b"x").expect("write");
    let out = sb.command(saferm_bin()).current_dir(&work).arg("f").run();
    assert_eq!(out.code(), Some(0), "{}", out.stderr_text());
    let ids = short_ids(&sb, &work);
    assert_eq!(ids.len(), 2);
    let names = sorted(&[b"f", b"t"]);
    let with = |extra: &[Vec<u8>]| {
        let mut v = [ids.clone(), extra.to_vec()].concat();
        v.sort();
        v
    };
    for shell in ["zsh", "fish"] {
        let c = |line: &str| complete(&sb, &work, shell, "", line.as_bytes());
        assert_eq!(c("unrm --at "), ids, "{shell}");
        assert_eq!(c("unrm --at=2"), ids, "{shell}: the value alone");
        assert_eq!(c("unrm --show "), with(&names), "{shell}");
        assert_eq!(c("unrm --purge --dry-run "), with(&names), "{shell}");
        assert_eq!(c("unrm "), names, "{shell}");
        assert_eq!(
            c("unrm -- --at "),
            names,
            "{shell}: after --, --at is a NAME"
        );
        assert_eq!(
            c("true; unrm --at x; unrm "),
            names,
            "{shell}: another command"
        );
    }
    let first = String::from_utf8(ids[0][..4].to_vec()).expect("ascii id");
    let bash = complete(
        &sb,
        &work,
        "bash",
        &first,
        format!("unrm --at={first}").as_bytes(),
    );
    let want: Vec<Vec<u8>> = ids
        .iter()
        .filter(|i| i.starts_with(first.as_bytes()))
        .cloned()
        .collect();
    assert_eq!(bash, want, "readline replaces the value after '='");
}

/// In each real shell: Tab goes into a deleted directory a level at a time (no space after
/// a directory, so the next Tab goes on), also as --cat's PATH, and
/// `--at ` Tab (and `--show 2` Tab) complete the only deletion's short id.
#[test]
fn tab_goes_into_deleted_trees_and_completes_ids_in_bash_zsh_and_fish() {
    for shell in SHELLS {
        let Some(program) = require(shell.name) else {
            continue;
        };
        let sb = Sandbox::new();
        let work = sb.work("w");
        let bin = bin_dir(&sb);
        fs::create_dir_all(work.join("tree/sub dir")).expect("mkdir");
        fs::write(work.join("tree/sub dir/file one"), b"1").expect("write");
        fs::write(work.join("tree/other"), b"2").expect("write");
        let out = sb
            .command(saferm_bin())
            .current_dir(&work)
            .args(["-r", "tree"])
            .run();
        assert_eq!(out.code(), Some(0), "{}", out.stderr_text());
        let id = short_ids(&sb, &work).remove(0);
        let set_data = format!("{}{}\n", shell.set_data, sb.data().display());
        let mut pty = start_shell(&sb, shell, &program, &work, &bin, &set_data);
        let cases: &[(&str, &[&[u8]])] = &[
            ("unrm tree/s\tf\t", &[b"unrm", b"tree/sub dir/file one"]),
            ("unrm --at \t", &[b"unrm", b"--at", &id]),
            (
                "unrm --cat tree/s\tf\t",
                &[b"unrm", b"--cat", b"tree/sub dir/file one"],
            ),
            // --show offers names too: `tree` and the id, until a digit is typed.
            ("unrm --show 2\t", &[b"unrm", b"--show", &id]),
        ];
        for (i, (keys, want)) in cases.iter().enumerate() {
            let out = sb.root().join(format!("out{i}"));
            // Each Tab is sent on its own, once the shell has had time to finish the last.
            for (n, part) in keys.split_inclusive('\t').enumerate() {
                let before = pty.transcript().len();
                pty.send(part.as_bytes());
                pty.wait_for(
                    &format!("{}: case {i}, key group {n} echoed", shell.name),
                    |p| p.transcript().len() > before,
                );
                thread::sleep(Duration::from_millis(300));
            }
            pty.send(format!("\x01words {} \r", out.display()).as_bytes());
            pty.wait_for(&format!("{}: case {i} run", shell.name), |_| out.exists());
            let got = fields(&fs::read(&out).expect("read the words"));
            let want: Vec<Vec<u8>> = want.iter().map(|w| w.to_vec()).collect();
            assert_eq!(
                show(&got),
                show(&want),
                "{}: {keys:?}\nthe terminal showed:\n{}",
                shell.name,
                pty.transcript()
            );
        }
        pty.send(b"exit\n");
        assert_nothing_ran(&sb);
    }
}
