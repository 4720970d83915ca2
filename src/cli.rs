//! saferm's command line: rm's grammar, parsed the way GNU `getopt_long` parses it.
//!
//! clap describes the options (for `--help`, completions and man pages), but it cannot parse
//! rm's command line faithfully: its usage errors exit 2 and read differently, it has no
//! "last of -f/-i/-I wins", and it rejects the hidden `---presume-input-tty`. So the parser
//! below follows glibc's getopt_long and coreutils' rm.c case by case (messages, exit 1,
//! abbreviations, permutation, `--`), and a test keeps it and the clap definition in step.
//! Nothing below this module sees either: they get a plain [`Options`].

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;

use clap::{Arg, ArgAction, Command};

use crate::quote::{locale_quote, quote, quote_if_needed};
pub use crate::rules::{InteractiveMode, Options};

/// The shells `--shell-init` knows (`docs.rs` has what each prints).
pub const INIT_SHELLS: &[&str] = &["bash", "zsh", "fish", "sh"];
/// The shells `--completions` knows (`docs.rs` has what each prints).
pub const COMPLETION_SHELLS: &[&str] = &["bash", "zsh", "fish"];

/// The outcome of parsing: run, or print something and exit.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    Run(Options),
    Help,
    Version,
    /// `--shell-init SHELL`: print the snippet that aliases `rm`.
    ShellInit(String),
    /// `--completions SHELL`.
    Completions(String),
    /// `--man`: print saferm(1).
    Man,
    /// Exit with this code; stderr has been written (a usage error), or nothing is to be done.
    Exit(i32),
    /// `---drain-staging`: be the worker that archives staged deletions (instant mode).
    DrainStaging,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum HasArg {
    No,
    Optional,
    Required,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Opt {
    Dir,
    Force,
    Interactive,
    OneFileSystem,
    NoPreserveRoot,
    PreserveRoot,
    PresumeInputTty,
    Recursive,
    Verbose,
    Help,
    Version,
    NoArchive,
    Sync,
    DrainStaging,
    ShellInit,
    Completions,
    Man,
}

struct LongOpt {
    name: &'static str,
    has_arg: HasArg,
    opt: Opt,
}

/// GNU rm 9.1's `long_opts`, in its order (the order of "possibilities" in messages).
const GNU_LONG: &[LongOpt] = &[
    LongOpt {
        name: "dir",
        has_arg: HasArg::No,
        opt: Opt::Dir,
    },
    LongOpt {
        name: "force",
        has_arg: HasArg::No,
        opt: Opt::Force,
    },
    LongOpt {
        name: "interactive",
        has_arg: HasArg::Optional,
        opt: Opt::Interactive,
    },
    LongOpt {
        name: "one-file-system",
        has_arg: HasArg::No,
        opt: Opt::OneFileSystem,
    },
    LongOpt {
        name: "no-preserve-root",
        has_arg: HasArg::No,
        opt: Opt::NoPreserveRoot,
    },
    LongOpt {
        name: "preserve-root",
        has_arg: HasArg::Optional,
        opt: Opt::PreserveRoot,
    },
    LongOpt {
        name: "-presume-input-tty",
        has_arg: HasArg::No,
        opt: Opt::PresumeInputTty,
    },
    LongOpt {
        name: "recursive",
        has_arg: HasArg::No,
        opt: Opt::Recursive,
    },
    LongOpt {
        name: "verbose",
        has_arg: HasArg::No,
        opt: Opt::Verbose,
    },
    LongOpt {
        name: "help",
        has_arg: HasArg::No,
        opt: Opt::Help,
    },
    LongOpt {
        name: "version",
        has_arg: HasArg::No,
        opt: Opt::Version,
    },
];

/// saferm's own long options. They are matched only when no GNU option matches, so every
/// abbreviation GNU rm accepts keeps its meaning (`--no` is still `--no-preserve-root`).
const OWN_LONG: &[LongOpt] = &[
    LongOpt {
        name: "no-archive",
        has_arg: HasArg::No,
        opt: Opt::NoArchive,
    },
    LongOpt {
        name: "sync",
        has_arg: HasArg::No,
        opt: Opt::Sync,
    },
    // Hidden: the instant-mode worker that saferm starts (`---drain-staging`, alone).
    LongOpt {
        name: "-drain-staging",
        has_arg: HasArg::No,
        opt: Opt::DrainStaging,
    },
    LongOpt {
        name: "shell-init",
        has_arg: HasArg::Required,
        opt: Opt::ShellInit,
    },
    LongOpt {
        name: "completions",
        has_arg: HasArg::Required,
        opt: Opt::Completions,
    },
    LongOpt {
        name: "man",
        has_arg: HasArg::No,
        opt: Opt::Man,
    },
];

/// `interactive_args` / `interactive_types` of rm.c.
const INTERACTIVE_WHEN: &[(&str, InteractiveWhen)] = &[
    ("never", InteractiveWhen::Never),
    ("no", InteractiveWhen::Never),
    ("none", InteractiveWhen::Never),
    ("once", InteractiveWhen::Once),
    ("always", InteractiveWhen::Always),
    ("yes", InteractiveWhen::Always),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum InteractiveWhen {
    Never,
    Once,
    Always,
}

/// A usage error: the getopt message (already formatted) and whether rm follows it with the
/// "Try ... --help" lines.
struct UsageError {
    message: String,
    try_help: bool,
}

fn usage(message: String) -> UsageError {
    UsageError {
        message,
        try_help: true,
    }
}

fn die(message: String) -> UsageError {
    UsageError {
        message,
        try_help: false,
    }
}

/// Parse rm's command line. `prog` is `argv[0]` as invoked; messages use it as GNU does.
/// Usage errors are written to stderr here, as rm writes them.
pub fn parse(prog: &str, args: &[OsString]) -> Parsed {
    match parse_inner(prog, args) {
        Ok(parsed) => parsed,
        Err(err) => {
            let mut text = format!("{prog}: {}\n", err.message);
            if err.try_help {
                text.push_str(&diagnose_leading_hyphen(prog, args));
                text.push_str(&format!("Try '{prog} --help' for more information.\n"));
            }
            crate::output::stderr_write(text.as_bytes());
            Parsed::Exit(1)
        }
    }
}

fn parse_inner(prog: &str, args: &[OsString]) -> Result<Parsed, UsageError> {
    let mut o = Options::default();
    let posixly_correct = std::env::var_os("POSIXLY_CORRECT").is_some();
    let mut operands_only = false;
    let mut rest_args = args.iter();
    while let Some(arg) = rest_args.next() {
        let bytes = arg.as_bytes();
        if operands_only || bytes.len() < 2 || bytes[0] != b'-' {
            o.operands.push(arg.clone());
            if posixly_correct {
                operands_only = true;
            }
            continue;
        }
        if bytes == b"--" {
            operands_only = true;
            continue;
        }
        if let Some(rest) = bytes.strip_prefix(b"--") {
            let (opt, mut value) = match_long(rest)?;
            if value.is_none() && own_required(opt) {
                // getopt takes a required argument from the next word.
                match rest_args.next() {
                    Some(next) => value = Some(next.as_bytes().to_vec()),
                    None => {
                        let name = long_name(opt);
                        return Err(usage(format!("option '--{name}' requires an argument")));
                    }
                }
            }
            if let Some(done) = apply(&mut o, opt, value, arg, prog)? {
                return Ok(done);
            }
        } else {
            for &c in &bytes[1..] {
                let opt = match c {
                    b'd' => Opt::Dir,
                    b'f' => Opt::Force,
                    b'i' => {
                        set_interactive(&mut o, InteractiveWhen::Always);
                        continue;
                    }
                    b'I' => {
                        set_interactive(&mut o, InteractiveWhen::Once);
                        continue;
                    }
                    b'r' | b'R' => Opt::Recursive,
                    b'v' => Opt::Verbose,
                    _ => {
                        let shown = String::from_utf8_lossy(&[c]).into_owned();
                        return Err(usage(format!("invalid option -- '{shown}'")));
                    }
                };
                if let Some(done) = apply(&mut o, opt, None, arg, prog)? {
                    return Ok(done);
                }
            }
        }
    }
    if o.operands.is_empty() {
        if o.ignore_missing {
            return Ok(Parsed::Exit(0));
        }
        return Err(usage("missing operand".to_string()));
    }
    Ok(Parsed::Run(o))
}

/// getopt_long's matching: an exact name wins, else a unique prefix; several prefixes that
/// name different options are ambiguous. GNU's table is tried before saferm's own.
fn match_long(rest: &[u8]) -> Result<(Opt, Option<Vec<u8>>), UsageError> {
    let (name, value) = match rest.iter().position(|&b| b == b'=') {
        Some(eq) => (&rest[..eq], Some(rest[eq + 1..].to_vec())),
        None => (rest, None),
    };
    let shown = String::from_utf8_lossy(rest);
    for table in [GNU_LONG, OWN_LONG] {
        let found = match table.iter().find(|o| o.name.as_bytes() == name) {
            Some(exact) => Some(exact),
            None => {
                let matches: Vec<&LongOpt> = table
                    .iter()
                    .filter(|o| o.name.as_bytes().starts_with(name))
                    .collect();
                if matches.len() > 1 {
                    let list: String = matches.iter().map(|o| format!(" '--{}'", o.name)).collect();
                    return Err(usage(format!(
                        "option '--{shown}' is ambiguous; possibilities:{list}"
                    )));
                }
                matches.first().copied()
            }
        };
        if let Some(o) = found {
            if value.is_some() && o.has_arg == HasArg::No {
                return Err(usage(format!(
                    "option '--{}' doesn't allow an argument",
                    o.name
                )));
            }
            return Ok((o.opt, value));
        }
    }
    Err(usage(format!("unrecognized option '--{shown}'")))
}

fn set_interactive(o: &mut Options, when: InteractiveWhen) {
    match when {
        InteractiveWhen::Never => {
            o.interactive = InteractiveMode::Never;
            o.prompt_once = false;
        }
        InteractiveWhen::Once => {
            o.interactive = InteractiveMode::Sometimes;
            o.ignore_missing = false;
            o.prompt_once = true;
        }
        InteractiveWhen::Always => {
            o.interactive = InteractiveMode::Always;
            o.ignore_missing = false;
            o.prompt_once = false;
        }
    }
}

/// The effect of one option, in command-line order. Returns Some for options that end
/// parsing (`--help`, `--version`).
fn apply(
    o: &mut Options,
    opt: Opt,
    value: Option<Vec<u8>>,
    arg: &OsStr,
    _prog: &str,
) -> Result<Option<Parsed>, UsageError> {
    match opt {
        Opt::Dir => o.remove_empty_dirs = true,
        Opt::Force => {
            o.interactive = InteractiveMode::Never;
            o.ignore_missing = true;
            o.prompt_once = false;
        }
        Opt::Interactive => {
            let when = match value {
                None => InteractiveWhen::Always,
                Some(v) => argmatch_interactive(&v)?,
            };
            set_interactive(o, when);
        }
        Opt::OneFileSystem => o.one_file_system = true,
        Opt::NoPreserveRoot => {
            if arg.as_bytes() != b"--no-preserve-root" {
                return Err(die(
                    "you may not abbreviate the --no-preserve-root option".to_string()
                ));
            }
            o.preserve_root = false;
        }
        Opt::PreserveRoot => {
            if let Some(v) = value {
                if v == b"all" {
                    o.preserve_all_root = true;
                } else {
                    return Err(die(format!(
                        "unrecognized --preserve-root argument: {}",
                        quote(&v)
                    )));
                }
            }
            o.preserve_root = true;
        }
        Opt::PresumeInputTty => o.presume_input_tty = true,
        Opt::Recursive => o.recursive = true,
        Opt::Verbose => o.verbose = true,
        Opt::Help => return Ok(Some(Parsed::Help)),
        Opt::Version => return Ok(Some(Parsed::Version)),
        Opt::NoArchive => {
            // The one option that deletes for good is refused abbreviated, as rm.c refuses
            // an abbreviated --no-preserve-root: a typo must never mean "keep nothing".
            if arg.as_bytes() != b"--no-archive" {
                return Err(die(
                    "you may not abbreviate the --no-archive option".to_string()
                ));
            }
            o.no_archive = true;
        }
        Opt::Sync => o.sync = true,
        Opt::DrainStaging => {
            if arg.as_bytes() != b"---drain-staging" {
                return Err(die(format!(
                    "unrecognized option '{}'",
                    String::from_utf8_lossy(arg.as_bytes())
                )));
            }
            return Ok(Some(Parsed::DrainStaging));
        }
        Opt::ShellInit | Opt::Completions => {
            let v = String::from_utf8_lossy(&value.unwrap_or_default()).into_owned();
            let (valid, what): (&[&str], _) = if opt == Opt::ShellInit {
                (INIT_SHELLS, "--shell-init")
            } else {
                (COMPLETION_SHELLS, "--completions")
            };
            if !valid.contains(&v.as_str()) {
                let list: Vec<String> = valid.iter().map(|s| locale_quote(s)).collect();
                return Err(usage(format!(
                    "invalid argument {} for {}\nValid arguments are: {}",
                    locale_quote(&v),
                    locale_quote(what),
                    list.join(", ")
                )));
            }
            return Ok(Some(if opt == Opt::ShellInit {
                Parsed::ShellInit(v)
            } else {
                Parsed::Completions(v)
            }));
        }
        Opt::Man => return Ok(Some(Parsed::Man)),
    }
    Ok(None)
}

/// Whether an option is one of saferm's own that takes a required argument.
fn own_required(opt: Opt) -> bool {
    OWN_LONG
        .iter()
        .any(|o| o.opt == opt && o.has_arg == HasArg::Required)
}

fn long_name(opt: Opt) -> &'static str {
    GNU_LONG
        .iter()
        .chain(OWN_LONG)
        .find(|o| o.opt == opt)
        .map(|o| o.name)
        .unwrap_or("?")
}

/// gnulib's XARGMATCH for `--interactive=WHEN`: exact, else a prefix that names one value.
fn argmatch_interactive(value: &[u8]) -> Result<InteractiveWhen, UsageError> {
    if let Some((_, when)) = INTERACTIVE_WHEN.iter().find(|(n, _)| n.as_bytes() == value) {
        return Ok(*when);
    }
    let mut found: Option<InteractiveWhen> = None;
    let mut ambiguous = false;
    for (name, when) in INTERACTIVE_WHEN {
        if name.as_bytes().starts_with(value) {
            match found {
                None => found = Some(*when),
                Some(prev) if prev != *when => ambiguous = true,
                Some(_) => {}
            }
        }
    }
    let shown = String::from_utf8_lossy(value);
    let problem = match (found, ambiguous) {
        (Some(when), false) => return Ok(when),
        (_, true) => "ambiguous",
        (None, _) => "invalid",
    };
    let q = |s: &str| locale_quote(s);
    let message = format!(
        "{problem} argument {} for {}\nValid arguments are:\n  - {}, {}, {}\n  - {}\n  - {}, {}",
        q(&shown),
        q("--interactive"),
        q("never"),
        q("no"),
        q("none"),
        q("once"),
        q("always"),
        q("yes")
    );
    Err(usage(message))
}

/// rm's `diagnose_leading_hyphen`: after a usage error, if an argument that looks like an
/// option names an existing file, say how to remove it.
fn diagnose_leading_hyphen(prog: &str, args: &[OsString]) -> String {
    for arg in args {
        let b = arg.as_bytes();
        if b.len() > 1 && b[0] == b'-' && std::fs::symlink_metadata(arg).is_ok() {
            // GNU quotes the name alone and puts `./` before the quotes: `./'-x y'`.
            return format!(
                "Try '{prog} ./{}' to remove the file {}.\n",
                quote_if_needed(b),
                quote(b)
            );
        }
    }
    String::new()
}

/// The clap description of the same command line: the source of `--help`, completions and
/// man pages. It is never used to parse.
pub fn command() -> Command {
    Command::new("saferm")
        .version(env!("CARGO_PKG_VERSION"))
        .about("Remove files like rm, after keeping them in a verified archive")
        .long_about(
            "Remove (unlink) the FILE(s), exactly as GNU rm does, after writing them into a \
             zstd-compressed tar archive in the saferm store and verifying it. Restore with \
             unrm, or with GNU tar alone: tar --zstd -xpf ARCHIVE -C /",
        )
        .override_usage("saferm [OPTION]... [FILE]...")
        .disable_help_flag(true)
        .disable_version_flag(true)
        .arg(flag("force", 'f', "ignore nonexistent files and arguments, never prompt"))
        .arg(flag("interactive-always", 'i', "prompt before every removal").long(None::<&str>))
        .arg(
            flag("interactive-once", 'I', "prompt once before removing more than three files, or when removing recursively")
                .long(None::<&str>),
        )
        .arg(
            Arg::new("interactive")
                .long("interactive")
                .value_name("WHEN")
                .num_args(0..=1)
                .require_equals(true)
                .default_missing_value("always")
                .value_parser(["never", "no", "none", "once", "always", "yes"])
                .help("prompt according to WHEN: never, once (-I), or always (-i); without WHEN, prompt always"),
        )
        .arg(Arg::new("one-file-system").long("one-file-system").action(ArgAction::SetTrue).help(
            "when removing a hierarchy recursively, skip any directory that is on a file system different from that of the corresponding command line argument",
        ))
        .arg(Arg::new("no-preserve-root").long("no-preserve-root").action(ArgAction::SetTrue).help("do not treat '/' specially"))
        .arg(
            Arg::new("preserve-root")
                .long("preserve-root")
                .value_name("all")
                .num_args(0..=1)
                .require_equals(true)
                .value_parser(["all"])
                .help("do not remove '/' (default); with 'all', reject any command line argument on a separate device from its parent"),
        )
        .arg(flag("recursive", 'r', "remove directories and their contents recursively").short_alias('R'))
        .arg(flag("dir", 'd', "remove empty directories"))
        .arg(flag("verbose", 'v', "explain what is being done"))
        .arg(Arg::new("no-archive").long("no-archive").action(ArgAction::SetTrue).help(
            "delete for real: keep no archive of what is removed (saferm only)",
        ))
        .arg(Arg::new("sync").long("sync").action(ArgAction::SetTrue).help(
            "with instant mode on, archive before returning, as without it (saferm only)",
        ))
        .arg(
            Arg::new("shell-init")
                .long("shell-init")
                .value_name("SHELL")
                .value_parser(["bash", "zsh", "fish", "sh"])
                .help("print the snippet that makes `rm` run saferm in interactive SHELL (saferm only)"),
        )
        .arg(
            Arg::new("completions")
                .long("completions")
                .value_name("SHELL")
                .value_parser(["bash", "zsh", "fish"])
                .help("print saferm's completions for SHELL (saferm only)"),
        )
        .arg(
            Arg::new("man")
                .long("man")
                .action(ArgAction::SetTrue)
                .help("print the saferm(1) man page (saferm only)"),
        )
        .arg(Arg::new("help").long("help").action(ArgAction::Help).help("display this help and exit"))
        .arg(Arg::new("version").long("version").action(ArgAction::Version).help("output version information and exit"))
        .arg(Arg::new("FILE").num_args(0..).value_parser(clap::value_parser!(OsString)))
        .after_help(
            "By default, rm does not remove directories. Use the --recursive (-r or -R) option \
             to remove each listed directory, too, along with all of its contents.\n\n\
             To remove a file whose name starts with a '-', for example '-foo', use one of \
             these commands:\n  saferm -- -foo\n  saferm ./-foo\n\n\
             Every removal is archived first in $XDG_DATA_HOME/saferm (or $SAFERM_STORE); \
             undo with 'unrm NAME' or 'unrm --last'.",
        )
}

fn flag(id: &'static str, short: char, help: &'static str) -> Arg {
    Arg::new(id)
        .long(id)
        .short(short)
        .action(ArgAction::SetTrue)
        .help(help)
}

/// The long names the parser accepts, for the test that keeps clap and the parser in step.
#[cfg(test)]
fn parser_long_names() -> Vec<&'static str> {
    GNU_LONG
        .iter()
        .chain(OWN_LONG)
        .map(|o| o.name)
        .filter(|n| !n.starts_with('-'))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Options {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        match parse_inner("rm", &args) {
            Ok(Parsed::Run(o)) => o,
            Ok(other) => panic!("{args:?} parsed as {other:?}"),
            Err(e) => panic!("{args:?} failed: {}", e.message),
        }
    }

    fn err(args: &[&str]) -> String {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        match parse_inner("rm", &args) {
            Err(e) => e.message,
            Ok(p) => panic!("{args:?} parsed as {p:?}"),
        }
    }

    #[test]
    fn clap_definition_is_valid() {
        command().debug_assert();
    }

    #[test]
    fn clap_and_parser_know_the_same_long_options() {
        let mut from_clap: Vec<String> = command()
            .get_arguments()
            .filter_map(|a| a.get_long().map(str::to_string))
            .collect();
        let mut from_parser: Vec<String> =
            parser_long_names().iter().map(|s| s.to_string()).collect();
        from_clap.sort();
        from_parser.sort();
        assert_eq!(from_clap, from_parser);
    }

    #[test]
    fn own_options_leave_gnu_abbreviations_alone() {
        for own in OWN_LONG {
            let first = own.name.as_bytes()[0];
            assert!(
                !b"fioprdvh".contains(&first),
                "--{} would shadow a GNU abbreviation",
                own.name
            );
        }
        assert_eq!(
            err(&["--no"]),
            "you may not abbreviate the --no-preserve-root option"
        );
        for abbreviated in ["--no-a", "--no-archiv"] {
            assert_eq!(
                err(&[abbreviated, "x"]),
                "you may not abbreviate the --no-archive option"
            );
        }
        assert!(run(&["--no-archive", "x"]).no_archive);
    }

    #[test]
    fn last_of_f_i_capital_i_wins() {
        let o = run(&["-f", "-i", "x"]);
        assert_eq!(
            (o.interactive, o.ignore_missing),
            (InteractiveMode::Always, false)
        );
        let o = run(&["-i", "-f", "x"]);
        assert_eq!(
            (o.interactive, o.ignore_missing),
            (InteractiveMode::Never, true)
        );
        let o = run(&["-fI", "x"]);
        assert_eq!(
            (o.interactive, o.ignore_missing, o.prompt_once),
            (InteractiveMode::Sometimes, false, true)
        );
        // --interactive=never does not make missing files silent.
        let o = run(&["--interactive=never", "x"]);
        assert_eq!(
            (o.interactive, o.ignore_missing),
            (InteractiveMode::Never, false)
        );
        let o = run(&["-f", "--interactive=never", "x"]);
        assert!(o.ignore_missing);
    }

    #[test]
    fn long_prefixes_and_errors_read_like_getopt() {
        assert!(run(&["--rec", "x"]).recursive);
        assert!(run(&["x", "--verb"]).verbose);
        assert_eq!(run(&["--", "-x"]).operands, vec![OsString::from("-x")]);
        assert_eq!(run(&["-"]).operands, vec![OsString::from("-")]);
        assert!(run(&["---pres", "x"]).presume_input_tty);
        assert_eq!(
            err(&["--v"]),
            "option '--v' is ambiguous; possibilities: '--verbose' '--version'"
        );
        assert_eq!(err(&["--bogus=1"]), "unrecognized option '--bogus=1'");
        assert_eq!(
            err(&["--forc=2"]),
            "option '--force' doesn't allow an argument"
        );
        assert_eq!(err(&["-rz"]), "invalid option -- 'z'");
        assert_eq!(
            err(&["--preserve-root=x", "a"]),
            "unrecognized --preserve-root argument: 'x'"
        );
        assert_eq!(err(&["-f", "-i"]), "missing operand");
        assert!(run(&["--preserve-root=all", "a"]).preserve_all_root);
        assert!(!run(&["--no-preserve-root", "a"]).preserve_root);
    }

    #[test]
    fn interactive_when_accepts_unambiguous_prefixes() {
        assert_eq!(
            run(&["--interactive=a", "x"]).interactive,
            InteractiveMode::Always
        );
        assert_eq!(
            run(&["--interactive=n", "x"]).interactive,
            InteractiveMode::Never
        );
        assert!(run(&["--interactive=o", "x"]).prompt_once);
        assert!(err(&["--interactive=", "x"]).starts_with("ambiguous argument"));
        assert!(err(&["--interactive=sometimes", "x"]).starts_with("invalid argument"));
    }
}
