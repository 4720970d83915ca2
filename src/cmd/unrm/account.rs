//! What a restore did, as the one JSON document `unrm NAME --json` (and `unrm --last
//! --json`) prints, kind `restore` (doc/json.md): per deletion, which version it is; per
//! target, where it went and what became of it, worked out from the restore's log
//! ([`crate::restore::Report::log`]) rather than from the lines people read.

use std::collections::HashMap;

use serde_json::{json, Value};

use crate::catalog::Catalog;
use crate::manifest::PathBytes;
use crate::paths::split_parent;
use crate::restore::{Outcome, Report, Target};

/// Objects, regular files among them, and the bytes of those files.
#[derive(Clone, Copy, Default)]
struct Tally {
    objects: u64,
    files: u64,
    bytes: u64,
}

impl Tally {
    fn add(&mut self, file: bool, bytes: u64) {
        self.objects += 1;
        self.files += u64::from(file);
        self.bytes = self.bytes.saturating_add(bytes);
    }

    fn sum(&mut self, other: Tally) {
        self.objects += other.objects;
        self.files += other.files;
        self.bytes = self.bytes.saturating_add(other.bytes);
    }

    fn json(self) -> Value {
        json!({ "objects": self.objects, "files": self.files, "bytes": self.bytes })
    }
}

/// What became of one target: its tallies, and the objects that were in the way or failed.
#[derive(Default)]
struct Settled {
    restored: Tally,
    already: Tally,
    conflicts: Vec<Value>,
    failures: Vec<Value>,
}

/// The restore document being put together: a deletion at a time, then printed once.
#[derive(Default)]
pub(super) struct Account {
    deletions: Vec<Value>,
    unresolved: Vec<Value>,
    restored: Tally,
    already: Tally,
    conflicts: u64,
    failed: u64,
}

impl Account {
    /// A NAME that resolved to nothing to restore, and why (also said on stderr).
    pub(super) fn unresolved(&mut self, name: &[u8], why: &str) {
        let mut v = path_json(name);
        v["reason"] = why.into();
        self.unresolved.push(v);
    }

    /// Whether a NAME came to nothing.
    pub(super) fn has_unresolved(&self) -> bool {
        !self.unresolved.is_empty()
    }

    /// The restore of `targets` from deletion `d` (`restoring`: every deletion of this
    /// run); `error` is what stopped it as a whole, if anything did.
    pub(super) fn deletion(
        &mut self,
        catalog: &Catalog,
        (d, restoring): (usize, &[usize]),
        targets: &[Target],
        report: &Report,
        error: Option<String>,
    ) {
        // The totals count each object once, though targets may hold one another.
        for item in &report.log {
            match item.outcome {
                Outcome::Restored => self.restored.add(item.file, item.bytes),
                Outcome::Already => self.already.add(item.file, item.bytes),
                Outcome::Conflict => self.conflicts += 1,
                Outcome::Failed(_) => self.failed += 1,
            }
        }
        let settled = settle(targets, report);
        let mut items = Vec::new();
        for (t, s) in targets.iter().zip(settled) {
            let renamed = report.renamed.iter().find(|(w, _)| *w == t.dest);
            let used = renamed.map_or(&t.dest, |(_, u)| u);
            let state = state_of(&s, report.not_durable);
            items.push(json!({
                "source": PathBytes::new(&t.source),
                "destination": PathBytes::new(used),
                "renamed": renamed.is_some(),
                "replaced": report.replaced.contains(&t.dest),
                "older_versions": super::restoring::older_versions(catalog, d, restoring, &t.source),
                "state": state,
                "restored": s.restored.json(),
                "already_there": s.already.json(),
                "conflicts": s.conflicts,
                "failures": s.failures,
            }));
        }
        let h = &catalog.headers[d];
        self.deletions.push(json!({
            "id": h.id,
            "created": h.created,
            "method": "archive",
            "error": error,
            "targets": items,
        }));
    }

    /// Print the document; `code` is the exit status unrm returns with it.
    pub(super) fn print(self, code: i32, interrupted: bool) {
        let doc = json!({
            "ok": code == 0,
            "interrupted": interrupted,
            "deletions": self.deletions,
            "unresolved": self.unresolved,
            "totals": {
                "restored": self.restored.json(),
                "already_there": self.already.json(),
                "conflicts": self.conflicts,
                "failed": self.failed,
            },
        });
        crate::output::print_json("restore", doc);
    }
}

/// Print the document of an instant-mode undo: `restored` were renamed back whole from
/// where saferm staged them (the same inodes), so each is `restored`, and what it holds is
/// counted where it is now, as an archive restore would have made it (a hard link's
/// second name is not a file of its own; sockets, which archives do not keep, are not
/// counted).
pub(super) fn put_back(store: &crate::store::Store, restored: &[crate::instant::PutBack]) {
    let catalog = Catalog::open(store).ok();
    let mut account = Account::default();
    let mut by_id: Vec<(&str, &str, Vec<Value>)> = Vec::new();
    for b in restored {
        let tally = count_tree(&b.dest);
        account.restored.sum(tally);
        let older = catalog.as_ref().map_or(0, |c| deleted_before(c, &b.dest));
        let target = json!({
            "source": PathBytes::new(&b.dest),
            "destination": PathBytes::new(&b.dest),
            "renamed": false,
            "replaced": false,
            "older_versions": older,
            "state": "restored",
            "restored": tally.json(),
            "already_there": Tally::default().json(),
            "conflicts": [],
            "failures": [],
        });
        match by_id.iter_mut().find(|(id, _, _)| *id == b.id) {
            Some((_, _, targets)) => targets.push(target),
            None => by_id.push((&b.id, &b.created, vec![target])),
        }
    }
    for (id, created, targets) in by_id {
        account.deletions.push(json!({
            "id": id,
            "created": created,
            "method": "rename",
            "error": null,
            "targets": targets,
        }));
    }
    account.print(0, false);
}

/// How many deletions in the store (not kept in place) removed `path` as one of their
/// operands: for a staged deletion renamed back, every one is older (one made since
/// would have been the one restored), and `--pick` offers them.
fn deleted_before(catalog: &Catalog, path: &[u8]) -> usize {
    catalog
        .headers
        .iter()
        .filter(|h| !h.kept)
        .filter(|h| {
            h.operands
                .iter()
                .any(|o| o.absolute.bytes().as_deref() == Some(path))
        })
        .count()
}

/// The objects at and below `path` (read only, without following symlinks), counted as
/// a restore from an archive counts what it makes.
fn count_tree(path: &[u8]) -> Tally {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let mut tally = Tally::default();
    let mut seen = std::collections::HashSet::new();
    let mut stack = vec![std::path::PathBuf::from(std::ffi::OsStr::from_bytes(path))];
    while let Some(p) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        let kind = meta.file_type();
        if kind.is_socket() {
            continue;
        }
        let first = seen.insert((meta.dev(), meta.ino()));
        let file = kind.is_file() && first;
        tally.add(file, if file { meta.len() } else { 0 });
        if kind.is_dir() {
            for entry in std::fs::read_dir(&p).into_iter().flatten().flatten() {
                stack.push(entry.path());
            }
        }
    }
    tally
}

/// A target's state, the worst that happened to it: `failed` (something of it could not
/// be restored; nothing of it was reached, the deletion's `error` says why; or what was
/// made could not be made durable: `not_durable`), `conflict` (something
/// else is in the way of part of it), `restored` (written, all of it there now), or
/// `already_there` (nothing written: all of it was there, identical).
fn state_of(s: &Settled, not_durable: bool) -> &'static str {
    let nothing = s.restored.objects == 0 && s.already.objects == 0 && s.conflicts.is_empty();
    if not_durable || !s.failures.is_empty() || nothing {
        "failed"
    } else if !s.conflicts.is_empty() {
        "conflict"
    } else if s.restored.objects > 0 {
        "restored"
    } else {
        "already_there"
    }
}

/// Each target's share of the log: an object belongs to every target whose destination
/// (after a rename) is it or holds it, and a failure also to the target asked for at that
/// very path (one not in the deletion fails at its source). Found by walking up each
/// logged path, so the cost is its depth, never the number of targets (`rm d/*` makes one
/// target per file).
fn settle(targets: &[Target], report: &Report) -> Vec<Settled> {
    let mut by_dest: HashMap<&[u8], Vec<usize>> = HashMap::new();
    let mut exact: HashMap<&[u8], Vec<usize>> = HashMap::new();
    for (i, t) in targets.iter().enumerate() {
        let used = report
            .renamed
            .iter()
            .find(|(w, _)| *w == t.dest)
            .map_or(&t.dest, |(_, u)| u);
        by_dest.entry(used.as_slice()).or_default().push(i);
        exact.entry(t.dest.as_slice()).or_default().push(i);
        exact.entry(t.source.as_slice()).or_default().push(i);
    }
    let mut out: Vec<Settled> = targets.iter().map(|_| Settled::default()).collect();
    let mut owners: Vec<usize> = Vec::new();
    for item in &report.log {
        owners.clear();
        let mut p: &[u8] = &item.path;
        loop {
            owners.extend(by_dest.get(p).into_iter().flatten());
            if p == b"/" || p.is_empty() || !p.contains(&b'/') {
                break;
            }
            p = split_parent(p).0;
        }
        if matches!(item.outcome, Outcome::Failed(_)) {
            owners.extend(exact.get(item.path.as_slice()).into_iter().flatten());
        }
        owners.sort_unstable();
        owners.dedup();
        for &i in &owners {
            let s = &mut out[i];
            match &item.outcome {
                Outcome::Restored => s.restored.add(item.file, item.bytes),
                Outcome::Already => s.already.add(item.file, item.bytes),
                Outcome::Conflict => s.conflicts.push(path_json(&item.path)),
                Outcome::Failed(why) => {
                    let mut v = path_json(&item.path);
                    v["reason"] = why.as_str().into();
                    s.failures.push(v);
                }
            }
        }
    }
    out
}

/// A path as the documents give every path: `{"path": ...}`, or `{"path_b64": ...}` when
/// it is not UTF-8 (as manifests do).
fn path_json(path: &[u8]) -> Value {
    serde_json::to_value(PathBytes::new(path)).unwrap_or_else(|_| json!({}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::restore::Logged;

    fn logged(path: &str, outcome: Outcome, bytes: u64) -> Logged {
        Logged {
            path: path.as_bytes().to_vec(),
            outcome,
            file: bytes > 0,
            bytes,
        }
    }

    #[test]
    fn each_object_goes_to_the_targets_holding_its_destination_and_states_are_the_worst() {
        let target = |s: &str, d: &str| Target {
            source: s.as_bytes().to_vec(),
            dest: d.as_bytes().to_vec(),
        };
        // a/ renamed beside what was there; b/ in place; c is not in the deletion.
        let targets = [
            target("/w/a", "/w/a"),
            target("/w/b", "/w/b"),
            target("/w/c", "/w/c"),
        ];
        let report = Report {
            renamed: vec![(b"/w/a".to_vec(), b"/w/a.~1~".to_vec())],
            log: vec![
                logged("/w/a.~1~", Outcome::Restored, 0),
                logged("/w/a.~1~/x", Outcome::Restored, 3),
                logged("/w/a/x", Outcome::Restored, 9), // not a's: it went beside
                logged("/w/b", Outcome::Already, 0),
                logged("/w/b/y", Outcome::Conflict, 0),
                logged("/w/bb", Outcome::Restored, 1), // a sibling, not below b
                logged("/w/c", Outcome::Failed("not in it".into()), 0),
            ],
            ..Report::default()
        };
        let s = settle(&targets, &report);
        assert_eq!(
            (
                s[0].restored.objects,
                s[0].restored.files,
                s[0].restored.bytes
            ),
            (2, 1, 3)
        );
        assert_eq!(state_of(&s[0], false), "restored");
        assert_eq!(state_of(&s[0], true), "failed", "not durable");
        assert_eq!((s[1].already.objects, s[1].conflicts.len()), (1, 1));
        assert_eq!(state_of(&s[1], false), "conflict");
        assert_eq!(s[2].failures.len(), 1);
        assert_eq!(state_of(&s[2], false), "failed");
        assert_eq!(
            state_of(&Settled::default(), false),
            "failed",
            "nothing reached"
        );
        let mut there = Settled::default();
        there.already.add(true, 4);
        assert_eq!(state_of(&there, false), "already_there");
    }
}
