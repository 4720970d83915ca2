//! unrm's command line. It has no subcommands (a file called `list` must still be restorable
//! with `unrm list`): every action other than restoring is an option. clap stays in this
//! module; the command layer gets a plain [`Options`].

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use clap::{value_parser, Arg, ArgAction, ArgGroup, Command};

use crate::restore::Conflict;

/// What unrm is asked to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Restore these names (paths, names inside deletions, ids, id prefixes).
    Restore(Vec<OsString>),
    /// Undo the N most recent deletions.
    Last(usize),
    /// List deletions, optionally those matching any of these patterns.
    List(Vec<OsString>),
    /// The files inside one deletion.
    Show(String),
    /// A deleted regular file's content, to stdout, verified.
    Cat(OsString),
    /// `unrm` alone: the newest deletions and how to restore them.
    Recent,
    /// Verify archives against manifests (all, or these ids).
    Check { ids: Vec<String>, repair: bool },
    /// Print completions for a shell.
    Completions(String),
    /// Print the unrm(1) man page.
    Man,
    /// Print deleted names for SHELL's completion (`crate::complete`). For bash, `word` is
    /// the text readline replaces and the line up to the cursor.
    CompleteNames {
        shell: String,
        word: Option<(Vec<u8>, Vec<u8>)>,
    },
    /// Purge deletions: by the configured limits, or by these, or these ids.
    Purge(PurgeOptions),
    /// Describe the store, its filesystem and the configuration.
    Stats,
}

/// `unrm --purge [--older-than D] [--keep N] [--max-size S] [--dry-run] [ID...]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PurgeOptions {
    /// Ids, unambiguous prefixes of ids, or names and paths (every deletion that removed
    /// it, as `--list NAME` shows them).
    pub ids: Vec<String>,
    /// `--older-than`: Some(None) is `never`.
    pub older_than: Option<Option<u64>>,
    pub keep: Option<usize>,
    pub max_size: Option<crate::config::Size>,
    pub dry_run: bool,
    /// `--yes`: no question on a terminal.
    pub yes: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    pub action: Action,
    pub to: Option<PathBuf>,
    pub conflict: Conflict,
    pub json: bool,
    /// `--list --long`: full ids, absolute times and archive sizes.
    pub long: bool,
    pub verbose: bool,
    /// `--at ID|TIME`: restore from that deletion, or the newest one made by TIME.
    pub at: Option<String>,
    /// `--pick`: choose among every deletion of a path, not just the newest.
    pub pick: bool,
    /// `--since`, `--until`, `--today`, `--sort`: which deletions `--list` and `--purge`
    /// take, and the listing's order.
    pub filter: Filter,
}

/// Which deletions, by when they were made, and in what order they are listed. The times
/// are kept as typed: they are read against the clock when the command runs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// `--since TIME` (`--today`: `today`, its start): made at or after it.
    pub since: Option<String>,
    /// `--until TIME`: made at or before it.
    pub until: Option<String>,
    pub sort: Sort,
}

impl Filter {
    /// Whether deletions are chosen by when they were made.
    pub fn by_time(&self) -> bool {
        self.since.is_some() || self.until.is_some()
    }
}

/// `--sort`: newest first (the default), or biggest first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Sort {
    #[default]
    Time,
    Size,
}

/// The outcome of parsing.
#[derive(Debug)]
pub enum Parsed {
    Run(Options),
    /// Help, version or a usage error: print this (to stdout when `code` is 0) and exit.
    Exit {
        text: String,
        code: i32,
    },
}

pub fn command() -> Command {
    Command::new("unrm")
        .version(env!("CARGO_PKG_VERSION"))
        .about("Restore what saferm removed")
        .long_about(
            "Restore what saferm removed.\n\n\
             NAME is an original path (relative to the current directory or absolute), a path \
             inside a deleted directory, a name found anywhere in the store, a quoted glob \
             ('logs/*.log'), or a deletion id (or an unambiguous prefix of one). The newest \
             deletion of a path wins (--at, --pick choose another).\n\n\
             Nothing that exists is replaced: directories are restored into, identical objects \
             are left as they are, anything else is reported and unrm exits 1 \
             (--rename restores beside it, --overwrite archives it first, then replaces it).\n\n\
             On a terminal, a restore or --check that takes more than half a second shows its \
             progress in bytes on stderr. Ctrl-C stops a restore, keeps every complete file, \
             removes the one being written and says how many came back; the same command \
             again finishes it.\n\n\
             Without arguments, unrm shows the newest deletions and how to restore them. \
             TIME (--at, --since, --until) is 2026-12-01 14:00, 14:00 (today), 10m, 2h, 3d \
             (ago), today or yesterday, in the local time zone.",
        )
        .args(restore_args())
        .args(store_args())
        .args(output_args())
        .group(
            ArgGroup::new("action")
                .args([
                    "last",
                    "list",
                    "show",
                    "cat",
                    "check",
                    "completions",
                    "man",
                    "complete-names",
                    "purge",
                    "stats",
                ])
                .multiple(false),
        )
}

/// What to restore, and how: NAMEs, --last, --to, the conflict rules, --at, --pick.
fn restore_args() -> Vec<Arg> {
    vec![
        Arg::new("names")
            .value_name("NAME")
            .num_args(0..)
            .value_parser(value_parser!(OsString))
            .help("What to restore (with --list: patterns; with --check: ids)"),
        Arg::new("last")
            .long("last")
            .value_name("N")
            .num_args(0..=1)
            .default_missing_value("1")
            .value_parser(value_parser!(usize))
            .help("Undo the last saferm command not undone yet (or the last N)"),
        Arg::new("to")
            .long("to")
            .value_name("DIR")
            .value_parser(value_parser!(PathBuf))
            .help("Restore under DIR instead of the original place (not '-': see --cat)"),
        Arg::new("rename")
            .long("rename")
            .action(ArgAction::SetTrue)
            .help("Restore beside an existing file as NAME.~N~"),
        Arg::new("overwrite")
            .long("overwrite")
            .action(ArgAction::SetTrue)
            .conflicts_with("rename")
            .help("Replace what is in the way (saferm archives it first; all of it or none)"),
        Arg::new("at")
            .long("at")
            .value_name("ID|TIME")
            .help("Restore the version from that deletion, or the newest one made by TIME (2026-12-01 14:00, 14:00, 10m, 2h, 3d, yesterday)"),
        Arg::new("pick")
            .long("pick")
            .action(ArgAction::SetTrue)
            .conflicts_with("at")
            .help("Choose among every deleted version of a path (on a terminal)"),
    ]
}

/// Looking after the store: --list, --show, --check (--repair), --purge and its limits.
fn store_args() -> Vec<Arg> {
    vec![
        Arg::new("list")
            .long("list")
            .action(ArgAction::SetTrue)
            .help("List deletions; NAMEs are patterns: an id prefix, part of a path, or a glob"),
        Arg::new("long")
            .short('l')
            .long("long")
            .action(ArgAction::SetTrue)
            .help("With --list: full ids, absolute times and compressed sizes; with --show: \
                   type, mode, owner, size, mtime and whole path of each object"),
        Arg::new("show")
            .long("show")
            .value_name("ID|NAME")
            .help("Show what one deletion holds as a tree with sizes (by id, or the newest that removed NAME)"),
        Arg::new("cat")
            .long("cat")
            .value_name("PATH")
            .value_parser(value_parser!(OsString))
            .help("Write a deleted file's content to stdout, checked against its blake3: a mismatch is exit 1 before the end is written (nothing at all up to 8 MiB). PATH as for restoring; --at, --pick choose the version"),
        Arg::new("since")
            .long("since")
            .value_name("TIME")
            .help("With --list or --purge: only deletions made at or after TIME"),
        Arg::new("until")
            .long("until")
            .value_name("TIME")
            .help("With --list or --purge: only deletions made at or before TIME"),
        Arg::new("today")
            .long("today")
            .action(ArgAction::SetTrue)
            .conflicts_with("since")
            .help("With --list or --purge: only deletions made today (--since today)"),
        Arg::new("sort")
            .long("sort")
            .value_name("KEY")
            .value_parser(["time", "size"])
            .requires("list")
            .help("With --list: newest first (time, the default) or biggest first (size)"),
        Arg::new("check")
            .long("check")
            .action(ArgAction::SetTrue)
            .help("Re-read archives and verify them against their manifests"),
        Arg::new("repair")
            .long("repair")
            .action(ArgAction::SetTrue)
            .requires("check")
            .help("With --check: rebuild lost or damaged manifests from their archives"),
        Arg::new("purge")
            .long("purge")
            .action(ArgAction::SetTrue)
            .help(
                "Purge deletions for good: those over the configured limits, those the \
                 options below select, or the ids given as NAMEs",
            ),
        Arg::new("older-than")
            .long("older-than")
            .value_name("DURATION")
            .requires("purge")
            .value_parser(|s: &str| crate::config::parse_duration(s).map_err(|e| e.to_string()))
            .help("With --purge: purge deletions older than DURATION (30d, 12h, 2w)"),
        Arg::new("keep")
            .long("keep")
            .value_name("N")
            .requires("purge")
            .value_parser(value_parser!(usize))
            .help("With --purge: never purge the newest N; alone, purge all but the newest N"),
        Arg::new("max-size")
            .long("max-size")
            .value_name("SIZE")
            .requires("purge")
            .value_parser(|s: &str| crate::config::parse_size(s).map_err(|e| e.to_string()))
            .help("With --purge: purge the oldest until the store holds at most SIZE (10GiB, 5%)"),
        Arg::new("dry-run")
            .long("dry-run")
            .action(ArgAction::SetTrue)
            .requires("purge")
            .help("With --purge: print what would be purged, purge nothing"),
        Arg::new("yes")
            .long("yes")
            .short('y')
            .action(ArgAction::SetTrue)
            .requires("purge")
            .help("With --purge: do not ask on a terminal (never asked without one)"),
    ]
}

/// What unrm prints: --stats, --json, -v, completions, the man page, deleted names for completion.
fn output_args() -> Vec<Arg> {
    vec![
        Arg::new("stats")
            .long("stats")
            .visible_alias("doctor")
            .action(ArgAction::SetTrue)
            .help("Describe the store, its filesystem, the configuration and the shell snippet"),
        Arg::new("json")
            .long("json")
            .action(ArgAction::SetTrue)
            .help("Print one JSON document (doc/json.md) for --list, --show, --check, --purge, --stats or a restore"),
        Arg::new("verbose")
            .short('v')
            .long("verbose")
            .action(ArgAction::SetTrue)
            .help("Print each restored object"),
        Arg::new("completions")
            .long("completions")
            .value_name("SHELL")
            .value_parser(["bash", "zsh", "fish"])
            .help("Print unrm's completions for SHELL"),
        Arg::new("man")
            .long("man")
            .action(ArgAction::SetTrue)
            .help("Print the unrm(1) man page"),
        Arg::new("complete-names")
            .long("complete-names")
            .value_name("SHELL")
            .value_parser(["bash", "zsh", "fish"])
            .hide(true)
            .help("Print deleted names for SHELL's completion (bash: -- WORD LINE)"),
    ]
}

/// Parse `args` (without `argv[0]`).
const TRY_HELP: &str = "Try 'unrm --help' for more information.\n";

/// clap's rendering of a usage error in the form every other unrm error has (saferm's and
/// GNU's too): `unrm: MESSAGE`, clap's suggestions (`tip: ...`) kept, then the line that
/// says where help is; clap's usage summary is left to `--help`.
fn usage_error(rendered: &str) -> String {
    let mut lines = rendered.lines().map(str::trim).skip_while(|l| l.is_empty());
    let first = lines.next().unwrap_or("invalid usage");
    let mut first = first.strip_prefix("error: ").unwrap_or(first).to_string();
    let rest: Vec<&str> = lines.collect();
    if first.ends_with(':') {
        // What clap lists below it (the arguments that are needed): on the same line.
        let listed: Vec<&str> = rest.iter().copied().take_while(|l| !l.is_empty()).collect();
        first = format!("{first} {}", listed.join(", "));
    }
    let mut text = format!("unrm: {first}\n");
    for line in rest.iter().filter(|l| l.starts_with("tip:")) {
        text.push_str(&format!("  {line}\n"));
    }
    text.push_str(TRY_HELP);
    text
}

pub fn parse(args: &[OsString]) -> Parsed {
    let matches = match command()
        .try_get_matches_from(std::iter::once(OsString::from("unrm")).chain(args.iter().cloned()))
    {
        Ok(m) => m,
        Err(e) if !e.use_stderr() => {
            return Parsed::Exit {
                text: e.render().to_string(),
                code: 0,
            };
        }
        Err(e) => {
            return Parsed::Exit {
                text: usage_error(&e.render().to_string()),
                code: 1,
            };
        }
    };
    let names: Vec<OsString> = matches
        .get_many::<OsString>("names")
        .map(|v| v.cloned().collect())
        .unwrap_or_default();
    let usage = |msg: &str| Parsed::Exit {
        text: format!("unrm: {msg}\n{TRY_HELP}"),
        code: 1,
    };
    let action = if let Some(shell) = matches.get_one::<String>("completions") {
        Action::Completions(shell.clone())
    } else if matches.get_flag("man") {
        Action::Man
    } else if let Some(shell) = matches.get_one::<String>("complete-names") {
        let word = match names.as_slice() {
            [] => None,
            [text, line] => Some((text.as_bytes().to_vec(), line.as_bytes().to_vec())),
            _ => return usage("--complete-names takes no NAME, or WORD and LINE"),
        };
        Action::CompleteNames {
            shell: shell.clone(),
            word,
        }
    } else if let Some(&n) = matches.get_one::<usize>("last") {
        if !names.is_empty() {
            return usage("--last takes no NAME");
        }
        if n == 0 {
            return usage("--last needs a number of deletions of at least 1");
        }
        Action::Last(n)
    } else if matches.get_flag("list") {
        Action::List(names)
    } else if let Some(id) = matches.get_one::<String>("show") {
        if !names.is_empty() {
            return usage("--show takes one ID and no NAME");
        }
        Action::Show(id.clone())
    } else if let Some(path) = matches.get_one::<OsString>("cat") {
        if !names.is_empty() {
            return usage("--cat takes one PATH and no NAME");
        }
        Action::Cat(path.clone())
    } else if matches.get_flag("purge") {
        Action::Purge(PurgeOptions {
            ids: names
                .iter()
                .map(|n| n.to_string_lossy().into_owned())
                .collect(),
            older_than: matches.get_one::<Option<u64>>("older-than").copied(),
            keep: matches.get_one::<usize>("keep").copied(),
            max_size: matches.get_one::<crate::config::Size>("max-size").copied(),
            dry_run: matches.get_flag("dry-run"),
            yes: matches.get_flag("yes"),
        })
    } else if matches.get_flag("stats") {
        if !names.is_empty() {
            return usage("--stats takes no NAME");
        }
        Action::Stats
    } else if matches.get_flag("check") {
        let ids = names
            .iter()
            .map(|n| n.to_string_lossy().into_owned())
            .collect();
        Action::Check {
            ids,
            repair: matches.get_flag("repair"),
        }
    } else if names.is_empty() && bare(&matches) {
        Action::Recent
    } else {
        if names.is_empty() {
            return usage(
                "missing NAME (or --last, --list, --show, --cat, --check, --purge, --stats)",
            );
        }
        Action::Restore(names)
    };
    if let Some(msg) = misplaced(&matches, &action) {
        return usage(msg);
    }
    Parsed::Run(Options {
        action,
        to: matches.get_one::<PathBuf>("to").cloned(),
        conflict: if matches.get_flag("rename") {
            Conflict::Rename
        } else if matches.get_flag("overwrite") {
            Conflict::Overwrite
        } else {
            Conflict::Skip
        },
        json: matches.get_flag("json"),
        long: matches.get_flag("long"),
        verbose: matches.get_flag("verbose"),
        at: matches.get_one::<String>("at").cloned(),
        pick: matches.get_flag("pick"),
        filter: Filter {
            since: if matches.get_flag("today") {
                Some("today".to_string())
            } else {
                matches.get_one::<String>("since").cloned()
            },
            until: matches.get_one::<String>("until").cloned(),
            sort: match matches.get_one::<String>("sort").map(String::as_str) {
                Some("size") => Sort::Size,
                _ => Sort::Time,
            },
        },
    })
}

/// Whether no option of restoring was given: `unrm` alone (or `unrm --json`) shows the
/// newest deletions; `unrm --to DIR` without a NAME is still a usage error.
fn bare(matches: &clap::ArgMatches) -> bool {
    ["to", "rename", "overwrite", "at", "pick", "verbose"]
        .iter()
        .all(|id| matches.value_source(id) != Some(clap::parser::ValueSource::CommandLine))
}

/// An option given with an action it has no meaning for (clap's `requires` cannot say
/// "with --list or --purge"), or `--to -`.
fn misplaced(matches: &clap::ArgMatches, action: &Action) -> Option<&'static str> {
    let given = |id: &str| matches.value_source(id) == Some(clap::parser::ValueSource::CommandLine);
    let filtered = given("since") || given("until") || given("today");
    if filtered && !matches!(action, Action::List(_) | Action::Purge(_)) {
        return Some("--since, --until and --today go with --list or --purge");
    }
    if filtered && (given("older-than") || given("max-size") || given("keep")) {
        return Some("--since, --until and --today choose what --purge purges: give them without --older-than, --max-size or --keep");
    }
    if given("long") && !matches!(action, Action::List(_) | Action::Show(_)) {
        return Some("--long goes with --list or --show");
    }
    // `--to -` would make a directory called `-`; the content of one file goes to stdout
    // with --cat (`diff <(unrm --cat f) f`). `--to ./-` is that directory.
    if matches
        .get_one::<PathBuf>("to")
        .is_some_and(|p| p.as_os_str() == "-")
    {
        return Some("--to - is not supported: to write a deleted file to stdout, use --cat PATH");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Options {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        match parse(&args) {
            Parsed::Run(o) => o,
            Parsed::Exit { text, code } => panic!("exit {code}: {text}"),
        }
    }

    #[test]
    fn clap_definition_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn names_that_look_like_actions_are_names() {
        assert_eq!(
            run(&["list", "check"]).action,
            Action::Restore(vec!["list".into(), "check".into()])
        );
    }

    #[test]
    fn last_defaults_to_one() {
        assert_eq!(run(&["--last"]).action, Action::Last(1));
        assert_eq!(run(&["--last", "3"]).action, Action::Last(3));
    }

    #[test]
    fn list_takes_patterns_and_check_takes_ids() {
        assert_eq!(
            run(&["--list", "*.log"]).action,
            Action::List(vec!["*.log".into()])
        );
        assert_eq!(
            run(&["--check", "2026"]).action,
            Action::Check {
                ids: vec!["2026".into()],
                repair: false
            }
        );
    }

    #[test]
    fn purge_takes_limits_and_ids() {
        assert_eq!(
            run(&[
                "--purge",
                "--older-than",
                "7d",
                "--keep",
                "3",
                "--dry-run",
                "2026"
            ])
            .action,
            Action::Purge(PurgeOptions {
                ids: vec!["2026".into()],
                older_than: Some(Some(7 * 86_400)),
                keep: Some(3),
                max_size: None,
                dry_run: true,
                yes: false,
            })
        );
        assert_eq!(run(&["--doctor"]).action, Action::Stats);
        let args: Vec<OsString> = ["--older-than", "7d"].iter().map(OsString::from).collect();
        assert!(matches!(parse(&args), Parsed::Exit { code: 1, .. }));
        let args: Vec<OsString> = ["--purge", "--max-size", "lots"]
            .iter()
            .map(OsString::from)
            .collect();
        assert!(matches!(parse(&args), Parsed::Exit { code: 1, .. }));
    }

    #[test]
    fn a_missing_argument_is_named_in_the_error() {
        let args: Vec<OsString> = ["--sort", "size"].iter().map(OsString::from).collect();
        let Parsed::Exit { text, code: 1 } = parse(&args) else {
            panic!("--sort without --list is a usage error");
        };
        let first = text.lines().next().unwrap_or_default();
        assert!(
            first.starts_with("unrm: ") && first.contains("--list"),
            "{text}"
        );
    }

    #[test]
    fn two_actions_are_refused() {
        let args: Vec<OsString> = ["--list", "--check"].iter().map(OsString::from).collect();
        assert!(matches!(parse(&args), Parsed::Exit { code: 1, .. }));
    }

    #[test]
    fn unrm_alone_shows_the_newest_deletions_and_other_options_alone_still_need_a_name() {
        assert_eq!(run(&[]).action, Action::Recent);
        assert_eq!(run(&["--json"]).action, Action::Recent);
        for args in [&["--to", "d"][..], &["-v"], &["--rename"], &["--at", "2h"]] {
            let args: Vec<OsString> = args.iter().map(OsString::from).collect();
            assert!(
                matches!(parse(&args), Parsed::Exit { code: 1, .. }),
                "{args:?}"
            );
        }
    }

    #[test]
    fn filters_go_with_list_or_purge() {
        let o = run(&[
            "--list", "--since", "2h", "--until", "10m", "--sort", "size",
        ]);
        assert_eq!(
            o.filter,
            Filter {
                since: Some("2h".into()),
                until: Some("10m".into()),
                sort: Sort::Size
            }
        );
        assert_eq!(
            run(&["--purge", "--today"]).filter.since.as_deref(),
            Some("today")
        );
        for args in [
            &["--since", "2h", "x"][..],
            &["--today", "--since", "2h", "--list"],
            &["--sort", "size"],
            &["--list", "--sort", "name"],
            &["--show", "x", "--today"],
            &["--cat", "x", "y"],
            &["x", "--to", "-"],
            &["-l", "x"],
        ] {
            let args: Vec<OsString> = args.iter().map(OsString::from).collect();
            assert!(
                matches!(parse(&args), Parsed::Exit { code: 1, .. }),
                "{args:?}"
            );
        }
        assert_eq!(run(&["--cat", "a/b"]).action, Action::Cat("a/b".into()));
        assert!(run(&["--show", "x", "-l"]).long);
    }
}
