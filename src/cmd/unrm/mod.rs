//! The `unrm` command: parse, resolve names against the catalog, then restore, list, show
//! or check.
//!
//! ```text
//! argv ─parse (unrm_cli)─▶ Options ─resolve (catalog)─▶ (deletion, source path)…
//!      ─group by deletion─▶ restore::restore (one pass over each archive) ─▶ summary
//! ```
//! Errors read `unrm: could not …` on stderr; problems with one NAME do not stop the others,
//! and any of them makes the exit status 1.

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;

use anyhow::{Context, Result};

use crate::catalog::{Catalog, IdMatch};
use crate::instant::PutBack;
use crate::output::{stderr_write, stdout_write};
use crate::store::staging::Staged;
use crate::store::Store;
use crate::unrm_cli::{self, Action, Options, Parsed};

mod account;
mod cat;
mod filter;
mod find;
mod list;
mod restoring;
mod tree;
use list::{list, recent, show};
use restoring::{restore_names, restore_picks};

/// Run unrm with `args` (without `argv[0]`); returns the exit status.
pub fn run(args: &[OsString]) -> i32 {
    crate::timing::start();
    // Restoring holds a directory descriptor per level, like removing.
    crate::sys::raise_open_file_limit();
    // The instant-mode worker, when unrm starts one for what it left staged (as saferm's).
    if let [only] = args {
        if only.as_bytes() == b"---drain-staging" {
            return crate::instant::drain_staging("unrm");
        }
    }
    let opts = match unrm_cli::parse(args) {
        Parsed::Run(o) => o,
        Parsed::Exit { text, code } => {
            if code == 0 {
                stdout_write(text.as_bytes());
            } else {
                stderr_write(text.as_bytes());
            }
            return code;
        }
    };
    match &opts.action {
        Action::Completions(shell) => {
            let text = crate::docs::completions(crate::docs::Program::Unrm, shell);
            stdout_write(text.unwrap_or_default().as_bytes());
            return 0;
        }
        Action::Man => {
            let mut page = Vec::new();
            let _ = crate::docs::man_page(crate::docs::Program::Unrm, &mut page);
            stdout_write(&page);
            return 0;
        }
        _ => {}
    }
    match execute(&opts) {
        Ok(code) => code,
        Err(e) => {
            stderr_write(format!("unrm: {e:#}\n").as_bytes());
            1
        }
    }
}

fn execute(opts: &Options) -> Result<i32> {
    let store = Store::open().context("could not open the store")?;
    let cwd = std::env::current_dir()
        .map(|p| p.as_os_str().as_bytes().to_vec())
        .unwrap_or_else(|_| b"/".to_vec());
    // `unrm --last` of a deletion not archived yet: its objects are renamed back.
    let plain = opts.to.is_none() && opts.at.is_none() && !opts.pick && !opts.verbose;
    // So is `unrm PATH` of operands still staged, each whole.
    let undone = match &opts.action {
        Action::Last(1) if plain => crate::instant::undo_newest(&store)?,
        Action::Restore(names) if plain => {
            let forms: Option<Vec<Vec<Vec<u8>>>> = names
                .iter()
                .map(|n| staged_forms(&cwd, n.as_bytes()))
                .collect();
            match forms {
                Some(forms) => crate::instant::undo_paths(&store, &forms)?,
                None => None,
            }
        }
        _ => None,
    };
    if let Some(restored) = undone {
        if opts.json {
            account::put_back(&store, &restored);
            return Ok(0);
        }
        for PutBack { dest, created, .. } in restored {
            let shown = crate::quote::quote(&crate::paths::display(&cwd, &dest));
            let when = ago(&created);
            stdout_write(
                format!("restored {shown} (deleted {when}; put back as it was)\n").as_bytes(),
            );
        }
        return Ok(0);
    }
    let staged = finish_staged(opts, &store)?;
    // A damaged manifest (a power cut soon after `rm` can leave one empty) hides its
    // deletion, and the answer would be about the others: it is rebuilt from the copy in its
    // archive first, then the catalog read again. `--check` reports instead (`--repair`
    // rebuilds), and completion never waits for a lock.
    let heals = !matches!(
        opts.action,
        Action::Check { .. } | Action::CompleteNames { .. }
    );
    let mut healed = false;
    loop {
        // Restores hold the lock shared from reading the catalog on, so a purge cannot
        // remove a deletion between resolving a name and reading its archive.
        let restore_lock = if matches!(
            opts.action,
            Action::Restore(_) | Action::Last(_) | Action::Cat(_)
        ) {
            Some(
                store
                    .lock_shared_patiently(|holder| {
                        stderr_write(
                            format!("unrm: waiting for the store lock, held by {holder}...\n")
                                .as_bytes(),
                        )
                    })
                    .context("could not lock the store")?,
            )
        } else {
            None
        };
        let catalog = Catalog::open(&store).context("could not read the store")?;
        let may_heal = heals && !healed;
        let result = if may_heal && !catalog.unreadable.is_empty() {
            Err(NeedsHealing.into())
        } else {
            act(opts, &store, &catalog, &staged, &cwd, may_heal)
        };
        match result {
            Err(e) if e.is::<NeedsHealing>() => {
                let damaged = catalog.damaged();
                drop(catalog);
                drop(restore_lock);
                heal(&store, &damaged)?;
                healed = true;
            }
            other => return other,
        }
    }
}

/// Archive what instant mode staged first (waiting for a worker at it), so that every
/// answer is about every deletion; completion never waits, and `--check` does not wait
/// for a worker (it reports the deletion as being archived) and says itself what could not
/// be archived. Returns, for `--list` and `--check`, the staged deletions still there.
fn finish_staged(opts: &Options, store: &Store) -> Result<Vec<Staged>> {
    if matches!(opts.action, Action::CompleteNames { .. }) {
        return Ok(Vec::new());
    }
    let checks = matches!(opts.action, Action::Check { .. });
    let config =
        crate::config::Config::load().unwrap_or_else(|_| crate::config::Config::defaults());
    let failed = crate::instant::drain("unrm", store, &config, !checks)?;
    for (id, why) in failed.iter().filter(|_| !checks) {
        stderr_write(
            format!("unrm: staged deletion {id} could not be archived yet: {why}\n").as_bytes(),
        );
    }
    crate::fault::pause("drained");
    if checks || matches!(opts.action, Action::List(_) | Action::Recent) {
        store.staged(&failed)
    } else {
        Ok(Vec::new())
    }
}

/// An action met a damaged manifest before doing anything: heal it and start again.
#[derive(Debug)]
struct NeedsHealing;

impl std::fmt::Display for NeedsHealing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a manifest is damaged")
    }
}

impl std::error::Error for NeedsHealing {}

/// Fail with [`NeedsHealing`] when healing is allowed and the catalog has met a damaged
/// manifest.
fn met_damage(catalog: &Catalog, may_heal: bool) -> Result<()> {
    if may_heal && !catalog.damaged().is_empty() {
        return Err(NeedsHealing.into());
    }
    Ok(())
}

/// Rebuild `damaged` manifests under the exclusive lock (`check::heal_manifests`).
fn heal(store: &Store, damaged: &[(String, String)]) -> Result<()> {
    let lock = store
        .lock_exclusive_patiently(|holder| {
            stderr_write(
                format!("unrm: a manifest is damaged; waiting for other saferm and unrm processes to finish ({holder} holds the store lock) to rebuild it...\n")
                    .as_bytes(),
            )
        })
        .context("could not lock the store")?;
    for line in crate::check::heal_manifests(store, &lock, damaged) {
        stderr_write(format!("unrm: {line}\n").as_bytes());
    }
    Ok(())
}

/// When `created` (RFC 3339) was, for people, from now (`SAFERM_TEST_NOW` in tests).
fn ago(created: &str) -> String {
    let now = chrono::DateTime::from_timestamp(crate::fault::now(), 0).unwrap_or_default();
    crate::output::ago(created, now.into())
}

/// The absolute paths NAME may stand for as a whole staged operand: as typed (made
/// absolute lexically) and through the symlinks of its parents. `None` for a glob, which
/// only the ordinary resolution matches.
fn staged_forms(cwd: &[u8], name: &[u8]) -> Option<Vec<Vec<u8>>> {
    if crate::paths::has_glob(name) || name.is_empty() {
        return None;
    }
    let abs = find::absolute(cwd, name);
    let mut forms = vec![abs.clone()];
    forms.extend(find::physical_path(&abs).filter(|p| *p != abs));
    Some(forms)
}

fn act(
    opts: &Options,
    store: &Store,
    catalog: &Catalog,
    staged: &[Staged],
    cwd: &[u8],
    may_heal: bool,
) -> Result<i32> {
    match &opts.action {
        Action::Restore(names) => restore_names(opts, store, catalog, cwd, names, may_heal),
        Action::Last(n) => {
            // The newest commands not undone yet: `unrm --last` twice undoes two commands,
            // each with every deletion it made (`Header::run`).
            let mut commands: Vec<&str> = Vec::new();
            let newest: Vec<usize> = (0..catalog.len())
                .filter(|&d| {
                    let h = &catalog.headers[d];
                    let command = h.run.as_deref().unwrap_or(&h.id);
                    if h.restored {
                        false
                    } else if commands.contains(&command) {
                        true
                    } else if commands.len() < *n {
                        commands.push(command);
                        true
                    } else {
                        false
                    }
                })
                .collect();
            for &d in &newest {
                let _ = catalog.load(d);
            }
            met_damage(catalog, may_heal)?;
            let mut picks: Vec<(usize, Vec<u8>)> = Vec::new();
            for d in newest {
                match catalog.load(d) {
                    Ok(del) => picks.extend(del.roots().into_iter().map(|r| (d, r))),
                    Err(e) => stderr_write(format!("unrm: could not restore: {e}\n").as_bytes()),
                }
            }
            if picks.is_empty() {
                stderr_write(b"unrm: could not restore: no deletion is left to undo\n");
                if opts.json {
                    account::Account::default().print(1, false);
                }
                return Ok(1);
            }
            Ok(restore_picks(
                opts,
                store,
                catalog,
                cwd,
                picks,
                &HashMap::new(),
                account::Account::default(),
            ))
        }
        Action::List(patterns) => Ok(list(opts, &catalog.headers, staged, cwd, patterns)),
        Action::Recent => Ok(recent(opts, &catalog.headers, staged, cwd)),
        Action::Cat(path) => cat::cat(opts, store, catalog, cwd, path.as_bytes(), may_heal),
        Action::Show(id) => {
            // An id, or a name or path: the newest deletion that removed it.
            let id = match catalog.find_id(id) {
                IdMatch::None => (0..catalog.len())
                    .find(|&d| find::matches_pattern(&catalog.headers[d], cwd, id.as_bytes()))
                    .map_or_else(|| id.clone(), |d| catalog.id(d).to_string()),
                _ => id.clone(),
            };
            if let IdMatch::One(d) = catalog.find_id(&id) {
                let _ = catalog.load(d);
                met_damage(catalog, may_heal)?;
            }
            Ok(show(opts, catalog, cwd, &id))
        }
        Action::Check { ids, repair } => {
            crate::check::run(store, catalog, staged, ids, *repair, opts.json)
        }
        Action::Purge(p) => purge(opts, store, catalog, cwd, p),
        Action::Stats => crate::stats::run(store, catalog, opts.json),
        Action::CompleteNames { shell, word } => {
            let (text, line) = word
                .as_ref()
                .map_or((&b""[..], &b""[..]), |(t, l)| (t.as_slice(), l.as_slice()));
            let req = crate::complete::request(line);
            let mut offered = crate::complete::offer(catalog, cwd, &req);
            let out = if shell == "bash" {
                for o in &mut offered {
                    o.splice(0..0, req.lead.iter().copied());
                }
                crate::complete::bash_replies(&offered, text, line)
            } else {
                crate::complete::nul_list(&offered, shell)
            };
            stdout_write(&out);
            Ok(0)
        }
        Action::Completions(_) | Action::Man => Ok(0), // answered before the store is opened
    }
}

/// `unrm --purge`: the configured limits, or those the options give, or the deletions
/// named (by id, or by a name or path they removed: every such deletion). What does not
/// resolve purges nothing at all (a typo must not go with the rest). On a terminal, what
/// would go is shown and asked about first, unless `--yes`.
fn purge(
    opts: &Options,
    store: &Store,
    catalog: &Catalog,
    cwd: &[u8],
    p: &crate::unrm_cli::PurgeOptions,
) -> Result<i32> {
    use crate::config::Size;
    use crate::retention::{self, Rules};
    let config = crate::config::Config::load()?;
    let mut ids = Vec::new();
    let mut bad = false;
    for id in &p.ids {
        let why = match catalog.find_id(id) {
            IdMatch::One(d) => {
                ids.push(catalog.id(d).to_string());
                continue;
            }
            IdMatch::Several(_) => "it is the start of several deletion ids",
            IdMatch::None => {
                let named: Vec<usize> = (0..catalog.len())
                    .filter(|&d| find::matches_pattern(&catalog.headers[d], cwd, id.as_bytes()))
                    .collect();
                if !named.is_empty() {
                    ids.extend(named.into_iter().map(|d| catalog.id(d).to_string()));
                    continue;
                }
                "no deletion has that id or removed that name"
            }
        };
        stderr_write(format!("unrm: could not purge {id}: {why}\n").as_bytes());
        bad = true;
    }
    bad |= !filter::choose_by_time(&opts.filter, catalog, !p.ids.is_empty(), &mut ids);
    if bad {
        stderr_write(b"unrm: nothing was purged\n");
        return Ok(1);
    }
    let limits_given = p.older_than.is_some() || p.max_size.is_some() || opts.filter.by_time();
    let mut rules = if !limits_given && ids.is_empty() && p.keep.is_none() {
        Rules::from_config(&config)
    } else {
        Rules {
            max_age: p.older_than.flatten(),
            max_size: p.max_size.unwrap_or(Size::Unlimited),
            min_free: Size::Unlimited,
            max_count: if !limits_given && ids.is_empty() {
                p.keep
            } else {
                None
            },
            protect_newest: p.keep.unwrap_or(config.keep_last.value),
            ids,
        }
    };
    // A person is shown what would go, and asked; then exactly that goes (--json too: it
    // says what went, it is no answer to the question).
    if !p.dry_run && !p.yes && crate::sys::stdin_is_tty() {
        match confirm_purge(store, &rules)? {
            Ok(ids) => {
                rules = Rules {
                    max_age: None,
                    max_size: Size::Unlimited,
                    min_free: Size::Unlimited,
                    max_count: None,
                    protect_newest: 0,
                    ids,
                }
            }
            Err(_) if opts.json => {
                print_purged(&[], false, &[]);
                return Ok(0);
            }
            Err(nothing) => {
                stdout_write(format!("{nothing}\n").as_bytes());
                return Ok(0);
            }
        }
    }
    let mut finished = Vec::new();
    let lock = if p.dry_run {
        None
    } else {
        let lock = store.lock_exclusive_patiently(|holder| {
            stderr_write(
                format!("unrm: waiting for other saferm and unrm processes to finish ({holder} holds the store lock)...\n")
                    .as_bytes(),
            )
        })?;
        let scan = store.scan()?;
        finished = store.finish_interrupted_purges(&lock, &scan)?;
        if !opts.json {
            for id in &finished {
                stdout_write(format!("finished the interrupted purge of {id}\n").as_bytes());
            }
        }
        Some(lock)
    };
    let purged = retention::purge(store, lock.as_ref(), &rules, None, p.dry_run)?;
    let bytes = purged
        .iter()
        .map(|x| x.archive_bytes)
        .fold(0u64, u64::saturating_add);
    if opts.json {
        print_purged(&purged, p.dry_run, &finished);
        return Ok(0);
    }
    let verb = if p.dry_run { "would purge" } else { "purged" };
    let mut out = String::new();
    for x in &purged {
        out.push_str(&format!("{verb} {}\n", retention::line_of(x)));
    }
    if purged.is_empty() {
        out.push_str("nothing to purge\n");
    } else {
        out.push_str(&format!(
            "{verb} {}, {}{}\n",
            crate::output::count(purged.len() as u64, "deletion", "deletions"),
            crate::output::human(bytes),
            if p.dry_run {
                "; nothing was purged"
            } else {
                ""
            }
        ));
    }
    stdout_write(out.as_bytes());
    Ok(0)
}

/// `--purge --json`: what went (or would go), and the interrupted purges finished first.
/// Show on the terminal what `rules` would purge and ask: the ids to purge, or what to say
/// when nothing goes (nothing matched, or the answer was no).
fn confirm_purge(
    store: &Store,
    rules: &crate::retention::Rules,
) -> Result<std::result::Result<Vec<String>, &'static str>> {
    use crate::retention;
    let would = retention::purge(store, None, rules, None, true)?;
    if would.is_empty() {
        return Ok(Err("nothing to purge"));
    }
    let mut text = String::new();
    for x in &would {
        text.push_str(&format!("  {}\n", retention::line_of(x)));
    }
    let bytes = would
        .iter()
        .map(|x| x.archive_bytes)
        .fold(0u64, u64::saturating_add);
    let n = would.len();
    text.push_str(&format!(
        "unrm: purge {n} deletion{} ({}) for good? They cannot be restored after. [y/N] ",
        if n == 1 { "" } else { "s" },
        crate::output::human(bytes)
    ));
    if !crate::walk::yes_no(&text) {
        return Ok(Err("nothing was purged"));
    }
    Ok(Ok(would.iter().map(|x| x.header.id.clone()).collect()))
}

fn print_purged(purged: &[crate::retention::Purged], dry_run: bool, finished: &[String]) {
    let items: Vec<serde_json::Value> = purged
        .iter()
        .map(|x| {
            serde_json::json!({
                "id": x.header.id,
                "created": x.header.created,
                "operands": x.header.operands,
                "archive_bytes": x.archive_bytes,
                "reason": format!("{:?}", x.reason).to_lowercase(),
                "purged": !dry_run,
            })
        })
        .collect();
    let bytes = purged
        .iter()
        .map(|x| x.archive_bytes)
        .fold(0u64, u64::saturating_add);
    let doc = serde_json::json!({
        "dry_run": dry_run,
        "deletions": items,
        "archive_bytes": bytes,
        "finished_interrupted": finished,
    });
    crate::output::print_json("purge", doc);
}

#[cfg(test)]
mod tests {
    use super::find::{absolute, glob_match};

    #[test]
    fn names_become_normal_absolute_paths() {
        assert_eq!(absolute(b"/home/u", b"a/b"), b"/home/u/a/b");
        assert_eq!(absolute(b"/home/u", b"./a/../b/"), b"/home/u/b");
        assert_eq!(absolute(b"/home/u", b"/x//y"), b"/x/y");
        assert_eq!(absolute(b"/", b".."), b"/");
    }

    #[test]
    fn globs_do_not_cross_slashes() {
        assert!(glob_match(b"/a/*.log", b"/a/x.log"));
        assert!(!glob_match(b"/a/*.log", b"/a/b/x.log"));
    }
}
