//! Deleting as rm does: plan, archive, verify, and only then unlink ([`delete`]; the command
//! line is `cmd::rm`'s).
//!
//! ```text
//! Options ─walk─▶ Plan ─archive::run─▶ archives/<month>/<id>.tar.zst, verified and durable,
//!         manifest published ─sweep::unlink_plan (post-order, re-stat each)─▶ retention
//! ```
//! Anything that fails before the unlink phase keeps every original (DESIGN §1.3).

use std::os::unix::ffi::OsStrExt;

use anyhow::anyhow;

use crate::archive;
use crate::output::stderr_write;
use crate::quote::quote;
use crate::rules;
use crate::rules::Options;
use crate::store::{self, Backend, Store};
use crate::sys;
use crate::walk::{self, Fate, Plan, Walker};

/// What a deletion did: its exit status as rm's, and what it archived and removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// rm's exit status: 0, or 1 when anything named could not be removed.
    pub status: i32,
    /// The deletion in the store that holds what was removed, if anything was archived.
    pub deletion: Option<String>,
    /// Objects in the verified archive.
    pub archived: usize,
    /// Of those, the ones still in place after the unlink phase.
    pub kept: usize,
}

impl Report {
    fn status(status: i32) -> Report {
        Report {
            status,
            ..Report::default()
        }
    }
}

/// Remove what `opts` names as rm would, archiving and verifying it first, into the store
/// the user's configuration names (opened after rm's prompts and before the walk, so that
/// `saferm -rf ~` meets it and skips it even on the first run, which creates it); messages
/// are `prog`'s. The saferm command and `unrm --overwrite` both delete through this.
pub fn delete(prog: &str, opts: &Options) -> Report {
    sys::raise_open_file_limit();
    crate::timing::start();
    if opts.prompt_once && rules::prompt_once_applies(opts.operands.len(), opts.recursive) {
        let text = rules::prompt_once_text(prog, opts.operands.len(), opts.recursive);
        if !walk::yes_no(&text) {
            return Report::status(0);
        }
    }
    let root_dev_ino = if opts.recursive && opts.preserve_root {
        match sys::fstatat(sys::AT_FDCWD, c"/", false) {
            Ok(st) => Some((st.dev, st.ino)),
            Err(e) => {
                stderr_write(
                    format!(
                        "{prog}: failed to get attributes of '/': {}\n",
                        sys::strerror(&e)
                    )
                    .as_bytes(),
                );
                return Report::status(1);
            }
        }
    } else {
        None
    };
    // Open the store before walking, so that `saferm -rf ~` meets it (and skips it) even on
    // the first run, when this is what creates it.
    let config = if opts.no_archive {
        None
    } else {
        Some(crate::config::Config::load())
    };
    let store = config.as_ref().map(|c| match c {
        Ok(c) => store::location_with(c).and_then(|root| Store::open_at(&root)),
        Err(e) => Err(anyhow!("{e:#}")),
    });
    let cwd = std::env::current_dir()
        .map(|p| p.as_os_str().as_bytes().to_vec())
        .unwrap_or_else(|_| b".".to_vec());
    let mut walker = Walker::new(
        opts,
        prog,
        cwd.clone(),
        store.as_ref().and_then(|s| s.as_ref().ok()),
    );
    walker.root_dev_ino = root_dev_ino;
    for (i, operand) in opts.operands.iter().enumerate() {
        walker.more_operands = i + 1 < opts.operands.len();
        walker.operand(i, operand.as_bytes());
    }
    let mut plan = walker.plan;
    crate::timing::mark("walk");
    let mut failed = plan.failed;

    let config = config
        .and_then(|c| c.ok())
        .unwrap_or_else(crate::config::Config::defaults);
    // The store and the id of this run's deletion, for retention after the unlinks.
    let made = match store {
        Some(store) if plan.to_archive().next().is_some() => {
            // Instant mode: staged by rename, archived in the background (instant.rs); what
            // could not be staged is archived here, as part of the same command.
            let mut run = None;
            if let Ok(s) = &store {
                if let Some(staged) = crate::instant::stage(opts, &cwd, &config, s, &plan) {
                    crate::timing::mark("staged");
                    if staged.roots.len() == plan.roots.len() {
                        return Report {
                            status: i32::from(failed),
                            deletion: Some(staged.id),
                            archived: 0,
                            kept: 0,
                        };
                    }
                    for &r in &staged.roots {
                        plan.keep_below(r); // staged: not this run's to archive or unlink
                    }
                    run = Some(staged.id);
                }
            }
            match archive_plan(prog, opts, &cwd, &config, store, run.as_deref(), &mut plan) {
                Ok(made) => made,
                Err(status) => return Report::status(status),
            }
        }
        _ => None,
    };
    failed |= plan.failed;
    crate::timing::mark("archiving done");
    crate::signal::restore();
    archive::simulate_concurrent_change(&plan);

    let archived: Vec<usize> = match &made {
        Some(_) => plan.to_archive().collect(),
        None => Vec::new(),
    };
    failed |= crate::sweep::unlink_plan(prog, opts, &mut plan);
    crate::timing::mark("unlinked");
    let kept = archived
        .iter()
        .filter(|&&i| plan.nodes[i].fate == Fate::Keep)
        .count();
    if let Some((store, id)) = &made {
        if let Some(line) = record_kept(store, id, &plan, &archived) {
            stderr_write(format!("{prog}: {line}\n").as_bytes());
        }
        // Retention: cheap unless a limit is exceeded; never waits for a busy store.
        for line in crate::retention::after_saferm_run(store, &config, Some(id)) {
            stderr_write(format!("{line}\n").as_bytes());
        }
        // Stagings a killed worker left are finished by a new one.
        crate::instant::resume(&config, store);
    }
    Report {
        status: i32::from(failed),
        deletion: made.map(|(_, id)| id),
        archived: archived.len(),
        kept,
    }
}

/// Archive what the plan removes into `store` ([`archive::run`]): the store and the new
/// deletion's id (`None` when nothing was left to archive), or the exit status to end with,
/// nothing removed, when it could not be done (every operand is reported) or a person
/// declined. `run`: the command's staged deletion, when it staged the other operands.
fn archive_plan(
    prog: &str,
    opts: &Options,
    cwd: &[u8],
    config: &crate::config::Config,
    store: anyhow::Result<Store>,
    run: Option<&str>,
    plan: &mut Plan,
) -> Result<Option<(Store, String)>, i32> {
    let archived = store.map_err(|e| anyhow!("{e:#}")).and_then(|store| {
        let ctx = archive::Archiving::new(prog, cwd, opts, config);
        let ctx = match run {
            Some(run) => ctx.in_run(run),
            None => ctx,
        };
        archive::run(&ctx, &store, plan).map(|a| (a, store))
    });
    match archived {
        Ok((archive::Archived::Yes(Some(id)), store)) => Ok(Some((store, id))),
        Ok((archive::Archived::Yes(None), _)) => Ok(None),
        // The user said no to archiving a large deletion: nothing is removed, and, as with
        // rm -I, that is not an error.
        Ok((archive::Archived::Declined, _)) => Err(0),
        Err(e) => {
            if let Some(sig) = crate::signal::caught() {
                // Said already when Ctrl-C ended a wait for the store lock.
                if !e.chain().any(|c| c.is::<crate::store::Interrupted>()) {
                    let msg = format!("{prog}: interrupted: nothing was removed\n");
                    stderr_write(msg.as_bytes());
                }
                crate::signal::reraise(sig);
            }
            let reason = format!("{e:#}");
            for &r in &plan.roots {
                if plan.subtree_has_removal(r) {
                    let msg = format!(
                        "{prog}: cannot remove {}: could not archive: {reason}\n",
                        quote(&plan.display(r))
                    );
                    stderr_write(msg.as_bytes());
                }
            }
            Err(1)
        }
    }
}

/// What the unlink phase left in place of what deletion `id` archived (an immutable file,
/// an append-only directory, an object that changed): no listing may count it as deleted.
/// When nothing was removed the deletion is withdrawn (its archive holds only what is still
/// there), if the store's exclusive lock is free; otherwise, and when part of it was
/// removed, a note beside the manifest names what was kept (`catalog::mark_kept`).
/// Returns a warning to print when neither could be done.
fn record_kept(store: &dyn Backend, id: &str, plan: &Plan, archived: &[usize]) -> Option<String> {
    let kept: Vec<Vec<u8>> = archived
        .iter()
        .filter(|&&i| plan.nodes[i].fate == Fate::Keep)
        .map(|&i| plan.abs(i))
        .collect();
    if kept.is_empty() {
        return None;
    }
    // The manifest is filed under the month of its id's time (`store::month_of`).
    let month = crate::store::id::month(id)?;
    let all = kept.len() == archived.len();
    if all {
        if let Ok(Some(lock)) = store.try_lock_exclusive() {
            let target = store::PurgeTarget {
                id: id.to_string(),
                manifest_month: month.clone(),
                archive_month: Some(month.clone()),
            };
            if store.remove(&lock, &[target]).is_ok() {
                return None;
            }
        }
    }
    match crate::catalog::mark_kept(store, &month, id, &kept, all) {
        Ok(()) => None,
        Err(e) => Some(format!(
            "warning: deletion {id} lists {} object(s) that are still in place: {e:#}",
            kept.len()
        )),
    }
}

#[cfg(test)]
mod tests {
    use crate::output::human;

    #[test]
    fn sizes_read_like_people_write_them() {
        assert_eq!(human(512), "512 B");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(3 << 30), "3.0 GiB");
    }
}
