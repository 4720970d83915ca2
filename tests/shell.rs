//! Shell integration: the snippets in `shell/` in their real shells, `--shell-init`,
//! completions, man pages, and the opt-in `rm` link for scripts.
//!
//! A shell or shellcheck the machine lacks skips the part that needs it, loudly
//! ([`tool`]); `.ci/run` sets `SAFERM_TEST_REQUIRE_ALL=1`, which makes it a failure.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use crate::common::{archives, saferm_bin, tool, unrm_bin, Sandbox};

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// The shells, their snippet, and how each is run non-interactively in strict mode.
const SNIPPETS: &[(&str, &str, &[&str])] = &[
    (
        "bash",
        "shell/saferm.bash",
        &["bash", "--norc", "--noprofile", "-euo", "pipefail", "-c"],
    ),
    ("zsh", "shell/saferm.zsh", &["zsh", "--no-rcs", "-eu", "-c"]),
    ("fish", "shell/saferm.fish", &["fish", "--no-config", "-c"]),
    ("sh", "shell/saferm.sh", &["dash", "-eu", "-c"]),
];

/// Run a shell with a clean environment: the sandbox's HOME and store, the binaries on PATH.
/// `None` (after saying so) when the machine has no such shell: see [`tool`].
fn shell(sb: &Sandbox, argv: &[&str], stdin: &str, cwd: &Path) -> Option<Output> {
    let words: Vec<&str> = argv
        .iter()
        .copied()
        .take_while(|a| !a.contains(' '))
        .collect();
    let program = tool(argv[0], &format!("`{} ...`", words.join(" ")))?;
    let path = format!("{}:/usr/bin:/bin", sb.bin_dir().display());
    let mut child = sb
        .std_command_with_path(program, path)
        .args(&argv[1..])
        .current_dir(cwd)
        .env("TERM", "dumb")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {}: {e} (CI installs it with apt)", argv[0]));
    {
        use std::io::Write;
        let mut pipe = child.stdin.take().expect("stdin");
        let _ = pipe.write_all(stdin.as_bytes());
    }
    Some(child.wait_with_output().expect("wait for the shell"))
}

#[test]
fn snippets_are_silent_in_strict_non_interactive_shells() {
    let sb = Sandbox::new();
    for (name, file, argv) in SNIPPETS {
        let path = repo(file);
        let source = if *name == "sh" { ". " } else { "source " };
        let script = format!("{source}'{}'", path.display());
        let mut full: Vec<&str> = argv.to_vec();
        full.push(&script);
        let Some(out) = shell(&sb, &full, "", sb.root()) else {
            continue;
        };
        assert!(out.status.success(), "{name}: {:?}", out);
        assert!(
            out.stdout.is_empty() && out.stderr.is_empty(),
            "{name} printed: {out:?}"
        );
    }
}

#[test]
fn snippets_pass_shellcheck_and_parse_in_their_shells() {
    let sb = Sandbox::new();
    // Each on its own, as an editor's shellcheck runs it: the file names its dialect.
    if let Some(shellcheck) = tool("shellcheck", "linting shell/saferm.{bash,sh}") {
        for file in ["shell/saferm.bash", "shell/saferm.sh"] {
            let out = sb
                .std_command(&shellcheck)
                .arg(repo(file))
                .output()
                .expect("run shellcheck");
            assert!(
                out.status.success(),
                "shellcheck {file}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    for (shell, flag, file) in [
        ("zsh", "-n", "shell/saferm.zsh"),
        ("fish", "--no-execute", "shell/saferm.fish"),
    ] {
        let Some(program) = tool(shell, &format!("parsing {file}")) else {
            continue;
        };
        let out = sb
            .std_command(program)
            .arg(flag)
            .arg(repo(file))
            .output()
            .expect("run the shell");
        assert!(out.status.success(), "{shell} {flag} {file}: {out:?}");
    }
}

#[test]
fn shell_init_prints_the_files_in_shell_dir() {
    let sb = Sandbox::new();
    for (name, file, _) in SNIPPETS {
        let out = sb
            .std_command(saferm_bin())
            .args(["--shell-init", name])
            .output()
            .expect("run");
        assert!(out.status.success());
        assert_eq!(
            out.stdout,
            fs::read(repo(file)).expect("read snippet"),
            "{name}"
        );
    }
    let out = sb
        .std_command(saferm_bin())
        .args(["--shell-init", "tcsh"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Valid arguments are:"));
}

/// In an interactive shell of each kind: `rm f` archives f, `unrm f` brings it back, the
/// bypass removes g without archiving it, and SAFERM_ALIAS names the shell.
#[test]
fn rm_is_saferm_in_interactive_shells_and_the_bypass_is_real_rm() {
    let cases: &[(&str, &[&str], &str)] = &[
        ("bash", &["bash", "--norc", "--noprofile", "-i"], "\\rm g"),
        ("zsh", &["zsh", "--no-rcs", "-i"], "\\rm g"),
        ("sh", &["dash", "-i"], "\\rm g"),
        ("fish", &["fish", "--no-config", "-i"], "command rm g"),
    ];
    for (name, argv, bypass) in cases {
        let sb = Sandbox::new();
        let work = sb.work("w");
        fs::write(work.join("f"), b"keep me").expect("f");
        fs::write(work.join("g"), b"throw me").expect("g");
        let script = format!(
            "saferm --shell-init {name} | source\n\
             rm f\n\
             echo \"alias=$SAFERM_ALIAS\"\n\
             test -e f || echo f-gone\n\
             unrm f\n\
             {bypass}\n"
        );
        // fish sources from a pipe; the others eval.
        let script = if *name == "fish" {
            script
        } else {
            script.replacen(
                &format!("saferm --shell-init {name} | source"),
                &format!("eval \"$(saferm --shell-init {name})\""),
                1,
            )
        };
        let out = if *name == "fish" {
            let one_line = script.trim_end().replace('\n', "; ");
            let mut full: Vec<&str> = argv.to_vec();
            full.push("-c");
            full.push(&one_line);
            shell(&sb, &full, "", &work)
        } else {
            shell(&sb, argv, &script, &work)
        };
        let Some(out) = out else {
            continue;
        };
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains(&format!("alias={name}")), "{name}: {out:?}");
        assert!(
            stdout.contains("f-gone"),
            "{name}: rm did not remove f: {out:?}"
        );
        assert_eq!(
            fs::read(work.join("f")).ok().as_deref(),
            Some(&b"keep me"[..]),
            "{name}: f not restored: {out:?}"
        );
        assert!(
            !work.join("g").exists(),
            "{name}: the bypass did not remove g"
        );
        assert_eq!(
            archives(&sb.store()).len(),
            1,
            "{name}: only f is archived, not g"
        );
    }
}

/// `unrm --stats` once said "rm runs saferm in this shell" after `unalias rm` and in
/// `bash -c`, trusting the exported SAFERM_ALIAS. A child process cannot see its shell's
/// aliases: it may say only that the snippet was loaded in a parent shell.
#[test]
fn stats_claims_no_alias_it_cannot_see() {
    let sb = Sandbox::new();
    let script = "eval \"$(saferm --shell-init bash)\"\n\
                  unalias rm\n\
                  unrm --stats\n\
                  bash -c 'unrm --stats --json'\n";
    let Some(out) = shell(
        &sb,
        &["bash", "--norc", "--noprofile", "-i"],
        script,
        sb.root(),
    ) else {
        return;
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(
            "shell snippet:  the bash snippet was loaded in a parent shell (SAFERM_ALIAS=bash); \
             whether rm is aliased there cannot be seen from unrm"
        ),
        "{out:?}"
    );
    assert!(
        !stdout.contains("rm runs saferm") && !stdout.contains("alias_active"),
        "claims an alias: {stdout}"
    );
    assert!(stdout.contains("\"shell_snippet\": \"bash\""), "{stdout}");
}

#[test]
fn completions_load_in_each_shell() {
    let sb = Sandbox::new();
    let work = sb.work("w");
    fs::write(work.join("notes.txt"), b"n").expect("notes");
    let out = sb
        .std_command(saferm_bin())
        .arg("notes.txt")
        .current_dir(&work)
        .output()
        .expect("saferm");
    assert!(out.status.success());
    // bash: both load; unrm offers the deleted name.
    let bash = "source <(saferm --completions bash); source <(unrm --completions bash)\n\
                complete -p saferm unrm >/dev/null\n\
                COMP_WORDS=(unrm no); COMP_CWORD=1; COMP_LINE='unrm no'; COMP_POINT=7\n\
                _saferm_unrm_complete unrm no unrm\n\
                printf '%s\\n' \"${COMPREPLY[@]}\"";
    // Completion functions are not written for `set -e`; errors show on stderr.
    if let Some(out) = shell(
        &sb,
        &["bash", "--norc", "--noprofile", "-c", bash],
        "",
        &work,
    ) {
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "bash: {out:?}"
        );
        assert!(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|l| l == "notes.txt"),
            "bash: {out:?}"
        );
    }
    // zsh: the completion functions define and register without errors.
    let zsh = "autoload -U compinit && compinit -u -D\n\
               source <(saferm --completions zsh) && source <(unrm --completions zsh)\n\
               (( $+functions[_unrm] && $+functions[_saferm] && $+functions[_saferm_unrm_names] )) && echo loaded";
    if let Some(out) = shell(&sb, &["zsh", "--no-rcs", "-c", zsh], "", &work) {
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "zsh: {out:?}"
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "loaded",
            "zsh: {out:?}"
        );
    }
    // fish: complete offers an option and the deleted name.
    let fish = "saferm --completions fish | source; unrm --completions fish | source; \
                complete -C'unrm --la'; complete -C'unrm no'";
    let Some(out) = shell(&sb, &["fish", "--no-config", "-c", fish], "", &work) else {
        return;
    };
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "fish: {out:?}"
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("--last"), "fish: {text}");
    assert!(
        text.lines().any(|l| l.starts_with("notes.txt")),
        "fish: {text}"
    );
}

#[test]
fn man_pages_come_from_the_command_definitions() {
    let sb = Sandbox::new();
    for (bin, name, option) in [
        (saferm_bin(), "saferm", "\\-\\-no\\-archive"),
        (unrm_bin(), "unrm", "\\-\\-last"),
    ] {
        let out = sb.std_command(&bin).arg("--man").output().expect("run");
        assert!(out.status.success());
        let page = String::from_utf8_lossy(&out.stdout);
        assert!(page.contains(&format!(".TH {name} 1")), "{name}: {page}");
        for needle in [
            ".SH OPTIONS",
            ".SH EXAMPLES",
            ".SH FILES",
            "archives/YYYY\\-MM",
            option,
        ] {
            assert!(page.contains(needle), "{name}(1) lacks {needle}");
        }
    }
}

/// Scripts and tools that run `rm` by name (make, npm) opt in with a directory holding an
/// `rm` link to saferm, first on their PATH; saferm then speaks as `rm`.
#[test]
fn an_rm_link_on_path_puts_scripts_through_saferm() {
    let sb = Sandbox::new();
    let work = sb.work("w");
    fs::create_dir_all(work.join("build/obj")).expect("build");
    fs::write(work.join("build/obj/a.o"), b"obj").expect("a.o");
    let optin = sb.work("optin");
    std::os::unix::fs::symlink(saferm_bin(), optin.join("rm")).expect("link");
    let path = format!("{}:/usr/bin:/bin", optin.display());
    let out = sb
        .std_command_with_path("/bin/sh", path)
        .args(["-c", "rm -rf build && rm missing"])
        .current_dir(&work)
        .output()
        .expect("sh");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "rm: cannot remove 'missing': No such file or directory\n"
    );
    assert!(!work.join("build").exists());
    assert_eq!(archives(&sb.store()).len(), 1);
}
