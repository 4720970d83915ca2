//! What saferm and unrm print about themselves: the shell snippets that alias `rm`, shell
//! completions and man pages. Completions and man pages are generated from the clap
//! definitions (`cli::command`, `unrm_cli::command`), so they cannot drift from the code;
//! the snippets are the files in `shell/`, compiled in, so `saferm --shell-init SHELL` and
//! the repository say the same thing.

use std::io::{self, Write};

/// The snippet that makes `rm` run saferm in an interactive SHELL.
pub fn shell_init(shell: &str) -> Option<&'static str> {
    match shell {
        "bash" => Some(include_str!("../shell/saferm.bash")),
        "zsh" => Some(include_str!("../shell/saferm.zsh")),
        "fish" => Some(include_str!("../shell/saferm.fish")),
        "sh" | "dash" | "ksh" => Some(include_str!("../shell/saferm.sh")),
        _ => None,
    }
}

/// Which program's completions or man page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Program {
    Saferm,
    Unrm,
}

impl Program {
    fn command(self) -> clap::Command {
        match self {
            Program::Saferm => crate::cli::command(),
            Program::Unrm => crate::unrm_cli::command(),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Program::Saferm => "saferm",
            Program::Unrm => "unrm",
        }
    }
}

/// Completions for `program` in `shell`. unrm's also offer the names in the store
/// (`unrm --complete-names`), not only files on disk.
pub fn completions(program: Program, shell: &str) -> Option<String> {
    let generator = match shell {
        "bash" => clap_complete::Shell::Bash,
        "zsh" => clap_complete::Shell::Zsh,
        "fish" => clap_complete::Shell::Fish,
        _ => return None,
    };
    let mut cmd = program.command();
    let mut out = Vec::new();
    clap_complete::generate(generator, &mut cmd, program.name(), &mut out);
    let mut text = String::from_utf8_lossy(&out).into_owned();
    if program == Program::Unrm {
        text = add_deleted_names(shell, text)?;
    }
    Some(text)
}

/// Make unrm's NAME arguments complete from the store too. The names never pass through
/// anything that expands them (`compgen -W`, `eval`, an unquoted `$(...)`): the scripts copy
/// the words `unrm --complete-names SHELL` prints, NUL-separated (see `crate::complete`).
fn add_deleted_names(shell: &str, generated: String) -> Option<String> {
    match shell {
        "bash" => Some(format!(
            "{generated}\n\
             # A NAME completes from the deleted names in the saferm store (files on disk when\n\
             # none matches); options and their values as clap generated them. unrm prints\n\
             # each reply already quoted for this word; nothing here expands it.\n\
             _saferm_unrm_complete() {{\n    \
                 local prev=\"$3\" reply\n    \
                 if [[ $prev == = && $COMP_CWORD -ge 2 ]]; then\n        \
                     prev=\"${{COMP_WORDS[COMP_CWORD-2]}}\"\n    \
                 fi\n    \
                 case $prev in\n        \
                     {value_options}) _unrm \"$@\"; return 0 ;;\n    \
                 esac\n    \
                 if [[ $2 == -* ]]; then\n        \
                     _unrm \"$@\"; return 0\n    \
                 fi\n    \
                 COMPREPLY=()\n    \
                 while IFS= read -r -d '' reply; do\n        \
                     COMPREPLY+=(\"$reply\")\n    \
                 done < <(unrm --complete-names bash -- \"$2\" \"${{COMP_LINE:0:COMP_POINT}}\" 2>/dev/null)\n    \
                 # A directory inside a deleted tree: no space after it, to go on into it.\n    \
                 if [[ ${{#COMPREPLY[@]}} -eq 1 ]]; then\n        \
                     case ${{COMPREPLY[0]}} in */ | */\\' | */\\\") compopt -o nospace ;; esac\n    \
                 fi\n\
             }}\n\
             complete -F _saferm_unrm_complete -o bashdefault -o default unrm\n",
            value_options = value_options(&Program::Unrm.command()).join("|")
        )),
        "zsh" => {
            // clap completes NAME with files (`_default`); offer deleted names as well. The
            // helper is defined before the file's last lines, which call `_unrm` at once when
            // the file is autoloaded from $fpath (the first Tab of a shell).
            let names_line = generated
                .lines()
                .find(|l| l.contains("'*::names") && l.contains(":_default"))?;
            let replaced_line = names_line.replace(":_default'", ":_saferm_unrm_names'");
            let mut body = generated.replacen(names_line, &replaced_line, 1);
            // --show and --at complete deletion ids (and --show names) from the store, --cat
            // the names a NAME completes to.
            for long in crate::complete::ValueOf::LONG {
                let line = body
                    .lines()
                    .find(|l| l.starts_with(&format!("'--{long}=[")) && l.contains(":_default'"))?
                    .to_string();
                let action = if long == "cat" {
                    ":_saferm_unrm_names'"
                } else {
                    ":_saferm_unrm_ids'"
                };
                body = body.replacen(&line, &line.replace(":_default'", action), 1);
            }
            let dispatch = "if [ \"$funcstack[1]\" = \"_unrm\" ]; then";
            let at = body.find(dispatch)?;
            let helper = "# Deleted names from the saferm store, besides files on disk: NUL-separated,\n\
                 # kept as they are; compadd quotes what it inserts. unrm reads the line up to\n\
                 # the cursor to see what is asked (a value of --show, a path inside a deleted\n\
                 # directory); directories inside deleted trees end in / and take no space.\n\
                 (( $+functions[_saferm_unrm_names] )) ||\n\
                 _saferm_unrm_names() {\n    \
                     local -a deleted dirs\n    \
                     deleted=(${(0)\"$(unrm --complete-names zsh -- '' \"$LBUFFER\" 2>/dev/null)\"})\n    \
                     dirs=(${(M)deleted:#*/})\n    \
                     deleted=(${deleted:#*/})\n    \
                     _alternative 'deleted:deleted name:compadd -a deleted' \\\n        \
                         'dirs:deleted directory:compadd -S \"\" -a dirs' 'files:file:_files'\n\
                 }\n\n\
                 (( $+functions[_saferm_unrm_ids] )) ||\n\
                 _saferm_unrm_ids() {\n    \
                     local -a ids\n    \
                     ids=(${(0)\"$(unrm --complete-names zsh -- '' \"$LBUFFER\" 2>/dev/null)\"})\n    \
                     compadd -a ids\n\
                 }\n\n";
            Some(format!("{}{helper}{}", &body[..at], &body[at..]))
        }
        "fish" => Some(format!(
            "{generated}\n\
             # Deleted names from the saferm store, besides files on disk: NUL-separated, kept\n\
             # as they are; fish escapes what it inserts.\n\
             complete -c unrm -a '(unrm --complete-names fish -- \"\" (commandline -cp | string collect) 2>/dev/null | string split0)' -d 'deleted'\n\
             complete -c unrm -l show -x -a '(unrm --complete-names fish -- \"\" (commandline -cp | string collect) 2>/dev/null | string split0)' -d 'deletion'\n\
             complete -c unrm -l at -x -a '(unrm --complete-names fish -- \"\" (commandline -cp | string collect) 2>/dev/null | string split0)' -d 'deletion'\n\
             complete -c unrm -l cat -x -a '(unrm --complete-names fish -- \"\" (commandline -cp | string collect) 2>/dev/null | string split0)' -d 'deleted'\n"
        )),
        _ => None,
    }
}

/// The spellings of the options whose value is not a NAME (`--to`, `-x`) nor completed from
/// the store (`--show`: `crate::complete::ValueOf`), for bash's `case`.
fn value_options(cmd: &clap::Command) -> Vec<String> {
    let mut out = Vec::new();
    for arg in cmd.get_arguments() {
        let from_store = arg
            .get_long()
            .is_some_and(|l| crate::complete::ValueOf::LONG.contains(&l));
        if !arg.get_action().takes_values() || arg.is_positional() || from_store {
            continue;
        }
        out.extend(
            arg.get_long_and_visible_aliases()
                .into_iter()
                .flatten()
                .map(|l| format!("--{l}")),
        );
        out.extend(
            arg.get_short_and_visible_aliases()
                .into_iter()
                .flatten()
                .map(|c| format!("-{c}")),
        );
    }
    out
}

/// The man page, generated from the clap definition, with examples and the store layout.
pub fn man_page(program: Program, w: &mut dyn Write) -> io::Result<()> {
    let cmd = program.command();
    let man = clap_mangen::Man::new(cmd)
        .section("1")
        .manual("User Commands");
    man.render_title(w)?;
    man.render_name_section(w)?;
    man.render_synopsis_section(w)?;
    man.render_description_section(w)?;
    man.render_options_section(w)?;
    let examples = match program {
        Program::Saferm => SAFERM_EXAMPLES,
        Program::Unrm => UNRM_EXAMPLES,
    };
    w.write_all(examples.as_bytes())?;
    w.write_all(FILES_AND_ENVIRONMENT.as_bytes())?;
    let see_also = match program {
        Program::Saferm => {
            ".SH \"SEE ALSO\"\n\\fBunrm\\fR(1), \\fBrm\\fR(1), \\fBtar\\fR(1), \\fBzstd\\fR(1)\n"
        }
        Program::Unrm => ".SH \"SEE ALSO\"\n\\fBsaferm\\fR(1), \\fBtar\\fR(1), \\fBzstd\\fR(1)\n",
    };
    w.write_all(see_also.as_bytes())?;
    man.render_version_section(w)
}

const SAFERM_EXAMPLES: &str = r#".SH EXAMPLES
.TP
\fBsaferm \-rf build/\fR
Archive build/ in the store, verify the archive, then remove it, exactly as \fBrm \-rf\fR would.
.TP
\fBeval "$(saferm \-\-shell\-init bash)"\fR
In ~/.bashrc: make \fBrm\fR run saferm in interactive shells (\fB\e rm\fR or \fBcommand rm\fR bypass it).
.TP
\fBln \-s "$(command \-v saferm)" ~/.local/lib/saferm/rm; PATH=~/.local/lib/saferm:$PATH make clean\fR
Let a script or build tool that runs \fBrm\fR by name go through saferm; it speaks exactly as GNU rm.
.TP
\fBsaferm \-\-no\-archive big.iso\fR
Delete for real, keeping nothing.
"#;

const UNRM_EXAMPLES: &str = r#".SH EXAMPLES
.TP
\fBunrm notes.txt\fR
Restore the newest deletion of notes.txt (in the current directory, or anywhere if the name is unique).
.TP
\fBunrm \-\-last\fR
Undo the last saferm command.
.TP
\fBunrm proj/src/main.rs\fR
Restore one file from a deleted tree; missing parent directories come back with their modes.
.TP
\fBunrm \-\-to /tmp/old build/\fR
Restore under another directory.
.TP
\fBunrm\fR
Show the newest five deletions as \fBunrm \-\-list\fR does, and how to restore them.
.TP
\fBunrm \-\-show build\fR
Show what the newest deletion of build holds, as a tree with sizes, file counts and symlink targets (\fB\-l\fR: type, mode, owner, size and mtime of each object).
.TP
\fBunrm \-\-cat proj/src/main.rs | diff \- proj/src/main.rs\fR
Write one deleted file to stdout, checked against its blake3: up to 8 MiB nothing is written unless it matches; a bigger file holds back at least its last 256 KiB. A mismatch is exit 1. \fB\-\-to \-\fR is refused: \fB\-\-cat\fR writes a file to stdout.
.TP
\fBunrm \-\-list \-\-since yesterday \-\-sort size\fR, \fBunrm \-\-purge \-\-today\fR
Only the deletions made since the start of yesterday, biggest first; purge those made today. \fB\-\-since\fR, \fB\-\-until\fR take 10m, 2h, 3d (ago), 14:00, 2026\-12\-01 14:00, today, yesterday, in the local time zone.
.TP
\fBunrm \-\-list\fR, \fBunrm \-\-check\fR
List the deletions, newest first, one a line under a header: the shortest prefix of each id that is unique in the store (which every option taking an ID accepts), when (\fB29 min ago\fR, \fByesterday 08:00\fR), files, size, whether it was restored or is still staged, and what was deleted, relative to the current directory, cut with \fB…\fR to the terminal's width; \fB\-l\fR (\fB\-\-long\fR) shows whole ids, times and compressed sizes, \fB\-\-json\fR everything. Verify every archive against its manifest.
"#;

const FILES_AND_ENVIRONMENT: &str = r#".SH FILES
.TP
\fI$XDG_DATA_HOME/saferm/\fR (else \fI~/.local/share/saferm/\fR)
The store, mode 0700: \fBarchives/YYYY\-MM/ID.tar.zst\fR (one per saferm command, entries under their absolute path without the leading /), \fBmanifests/YYYY\-MM/ID.json\fR (what each archive holds, with a blake3 of every file), \fBFORMAT\fR, \fBlock\fR, \fBtmp/\fR.
Without saferm, restore with GNU tar: \fBtar \-\-zstd \-xpf ARCHIVE \-C /\fR.
As root, \fBXDG_DATA_HOME\fR, \fBXDG_CONFIG_HOME\fR and \fBHOME\fR are ignored when they belong to another user (the directory, or its nearest existing ancestor, is not owned by root): root's store and config are then under root's home from the password database (\fBsudo \-E\fR never writes into the caller's home).
.SH ENVIRONMENT
.TP
\fBCOLUMNS\fR
The width \fBunrm \-\-list\fR fits its lines to (else the terminal's; in a pipe, lines are whole).
.TP
\fBNO_COLOR\fR
When set and not empty, \fBunrm \-\-list\fR prints no colour on a terminal either (https://no\-color.org).
.TP
\fBSAFERM_STORE\fR
The store's path (absolute); it may not be on tmpfs or under /tmp, /var/tmp, /dev/shm, /run.
.TP
\fBSAFERM_ALIAS\fR
Exported by the shell snippets (the shell's name). It says that a snippet was loaded in a parent shell, not that \fBrm\fR is aliased there: it survives \fBunalias rm\fR and reaches scripts, where no alias applies; \fBtype rm\fR tells.
"#;
