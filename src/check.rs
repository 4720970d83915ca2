//! `unrm --check [ID...]`: re-read archives and verify every entry against its manifest (like
//! `restic check --read-data`), and find archives without a manifest and manifests without an
//! archive. `--repair` rebuilds a lost manifest from the copy inside its archive.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufReader, Read};
use std::os::unix::fs::FileExt;

use anyhow::{anyhow, bail, Context, Result};

use crate::archive::{MANIFEST_FRAME_MAGIC, MANIFEST_FRAME_TAG};
use crate::catalog::{Catalog, Deletion, IdMatch};
use crate::manifest::{ArchiveInfo, Frame, Manifest};
use crate::output::{count, stderr_write, stdout_write};
use crate::store::layout::{self, MANIFEST_SUFFIX};
use crate::store::staging::{Staged, StagedState};
use crate::store::{LockGuard, Store};

const ZSTD_MAGIC: u32 = 0xFD2F_B528;

/// Temp files older than this (seconds) are left by a process that died: swept.
pub const STALE_TEMP_SECS: u64 = 3600;

/// The archive ends before its manifest copy: its writer died before sealing it, so nothing
/// was unlinked on its account (saferm unlinks only after the archive is sealed, verified
/// and its manifest published).
#[derive(Debug)]
struct NoManifestCopy;

impl std::fmt::Display for NoManifestCopy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the archive holds no manifest copy")
    }
}

impl std::error::Error for NoManifestCopy {}

/// Whether an archive was never finished: it ends inside a zstd frame, or after its data
/// frames but before the manifest copy that sealing writes last. (A damaged finished
/// archive fails differently: a bad magic number, a reserved block type.)
pub fn is_incomplete(file: &File) -> bool {
    match manifest_copy(file) {
        Ok(_) => false,
        Err(e) => {
            let root = e.root_cause();
            root.downcast_ref::<NoManifestCopy>().is_some()
                || root
                    .downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::UnexpectedEof)
        }
    }
}

/// Check the named deletions (all when `ids` is empty), and say what is becoming of the
/// staged ones (instant mode) among them; returns the exit status.
pub fn run(
    store: &Store,
    catalog: &Catalog,
    staged: &[Staged],
    ids: &[String],
    repair: bool,
    json: bool,
) -> Result<i32> {
    if json {
        COLLECTED.with_borrow_mut(|c| *c = Some(Collected::default()));
    }
    // Held shared while archives are read, as restores do: a purge cannot remove one under
    // us. The catalog is read again under it, so a purge that ran since it was opened is
    // not taken for damage.
    let shared = store.lock_shared()?;
    let _ = catalog;
    let fresh = Catalog::open(store)?;
    let catalog = &fresh;
    let mut bad = 0usize;
    let staged: Vec<&Staged> = staged
        .iter()
        .filter(|s| ids.is_empty() || ids.iter().any(|id| s.id.starts_with(id.as_str())))
        .collect();
    let chosen = choose(catalog, &staged, ids, &mut bad);
    let mut damaged = check_chosen(store, catalog, &chosen, repair && ids.is_empty(), &mut bad);
    let mut repaired = 0usize;
    if ids.is_empty() {
        repaired = look_after_store(store, catalog, shared, repair, &mut damaged, &mut bad)?;
    }
    report_staged(&staged, &mut bad);
    if let Some(c) = COLLECTED.with_borrow_mut(Option::take) {
        let answer = serde_json::json!({
            "ok": bad == 0,
            "checked": chosen.len(),
            "staged": staged.iter().map(|s| serde_json::json!({
                "id": s.id,
                "state": s.state.describe(),
                "failed": matches!(s.state, StagedState::Failed(_)),
            })).collect::<Vec<_>>(),
            "problems_left": bad,
            "problems": c.problems,
            "repaired": repaired,
            "done": c.notes,
        });
        crate::output::print_json("check", answer);
        return Ok(if bad == 0 { 0 } else { 1 });
    }
    let summary = format!(
        "checked {}{}: {}{}\n",
        count(chosen.len() as u64, "deletion", "deletions"),
        if staged.is_empty() {
            String::new()
        } else {
            format!(
                " and {} not archived yet",
                count(staged.len() as u64, "staged one", "staged ones")
            )
        },
        if bad == 0 {
            "no problems found".to_string()
        } else {
            count(bad as u64, "problem", "problems")
        },
        if repaired > 0 {
            format!(
                ", {} rebuilt",
                count(repaired as u64, "manifest", "manifests")
            )
        } else {
            String::new()
        }
    );
    stdout_write(summary.as_bytes());
    Ok(if bad == 0 { 0 } else { 1 })
}

/// The deletions `ids` name (every one when it is empty); each id that names none (and
/// no staged deletion), or several, is a problem.
fn choose(catalog: &Catalog, staged: &[&Staged], ids: &[String], bad: &mut usize) -> Vec<usize> {
    let mut chosen: Vec<usize> = Vec::new();
    if ids.is_empty() {
        chosen.extend(0..catalog.len());
    } else {
        for id in ids {
            match catalog.find_id(id) {
                IdMatch::One(d) => chosen.push(d),
                IdMatch::None if staged.iter().any(|s| s.id.starts_with(id.as_str())) => {}
                IdMatch::None => {
                    problem(&format!("could not check {id}: no deletion has that id"));
                    *bad += 1;
                }
                IdMatch::Several(_) => {
                    problem(&format!(
                        "could not check {id}: it is the start of several deletion ids"
                    ));
                    *bad += 1;
                }
            }
        }
    }
    chosen
}

/// Read each chosen deletion's archive back against its manifest. Returns the manifests
/// that cannot be read (path, id): with `may_rebuild` (--repair of the whole store) they
/// are rebuilt below, and counted as problems only if that fails.
fn check_chosen(
    store: &Store,
    catalog: &Catalog,
    chosen: &[usize],
    may_rebuild: bool,
    bad: &mut usize,
) -> Vec<(std::path::PathBuf, String)> {
    // Manifests that cannot be read: with --repair they are moved aside (kept, renamed
    // `*.damaged`) and rebuilt from their archives like lost ones.
    let mut damaged: Vec<(std::path::PathBuf, String)> = Vec::new();
    // Ctrl-C stops the reading (nothing is changed while archives are read) and says how
    // far it got.
    crate::signal::catch();
    let total = chosen
        .iter()
        .filter_map(|&d| catalog.headers[d].archive.as_ref())
        .map(|a| a.size)
        .sum();
    let mut bar = crate::progress::Progress::new("unrm: checking", total);
    for (done, &d) in chosen.iter().enumerate() {
        let result = match catalog.load(d) {
            Ok(del) => check_deletion(store, del, &mut bar),
            Err(e) => {
                let h = &catalog.headers[d];
                damaged.push((
                    store.root().join(layout::manifest_rel(&h.month, &h.id)),
                    h.id.clone(),
                ));
                Err(anyhow!("its manifest is damaged: {e}"))
            }
        };
        if let Some(sig) = crate::signal::caught() {
            bar.clear();
            let done = done + usize::from(result.is_ok());
            let all = crate::output::count(chosen.len() as u64, "archive", "archives");
            let line = format!("unrm: interrupted: checked {done} of {all}; nothing was changed\n");
            stderr_write(line.as_bytes());
            crate::signal::reraise(sig);
        }
        if let Err(e) = result {
            bar.clear();
            problem(&format!("deletion {} is damaged: {e:#}", catalog.id(d)));
            // With --repair, counted only if it cannot be rebuilt (below).
            if !may_rebuild || catalog.load(d).is_ok() {
                *bad += 1;
            }
        }
    }
    bar.finish();
    crate::signal::restore();
    damaged
}

/// The whole store's housekeeping, under its exclusive lock (no writer may be between its
/// archive and its manifest while orphans are looked for): manifests that could not be
/// read, interrupted purges, stale temp files, and archives without a manifest. Returns
/// how many manifests were rebuilt.
fn look_after_store(
    store: &Store,
    catalog: &Catalog,
    shared: LockGuard,
    repair: bool,
    damaged: &mut Vec<(std::path::PathBuf, String)>,
    bad: &mut usize,
) -> Result<usize> {
    for u in &catalog.unreadable {
        problem(&format!(
            "manifest '{}' is damaged: {}",
            u.path.display(),
            u.reason
        ));
        let id = u
            .path
            .file_name()
            .map(|n| {
                n.to_string_lossy()
                    .trim_end_matches(MANIFEST_SUFFIX)
                    .to_string()
            })
            .unwrap_or_default();
        damaged.push((u.path.clone(), id));
        if !repair {
            *bad += 1;
        }
    }
    // Housekeeping needs the store to itself: no writer may be between its archive and
    // its manifest while orphans are looked for.
    drop(shared);
    let lock = store.lock_exclusive_patiently(|holder| {
        stderr_write(
            format!(
                "unrm: waiting for other saferm and unrm processes to finish ({holder} holds the store lock)...\n"
            )
            .as_bytes(),
        )
    })?;
    let scan = store.scan()?;
    for id in store.finish_interrupted_purges(&lock, &scan)? {
        note(&format!(
            "removed what was left of deletion {id} (its purge was interrupted)"
        ));
    }
    let swept = store.sweep_temp(&lock, STALE_TEMP_SECS)?;
    if swept > 0 {
        note(&format!(
            "removed {}",
            count(swept as u64, "stale temp file", "stale temp files")
        ));
    }
    check_orphans(store, catalog, &lock, repair, damaged, bad)
}

/// Archives that no manifest names: an incomplete one (an interrupted saferm, which
/// removed nothing) is reported, or with --repair removed; a complete one is reported, or
/// with --repair has its manifest rebuilt from the copy inside it. With --repair, the
/// damaged manifests were set aside first. Returns how many manifests were rebuilt.
fn check_orphans(
    store: &Store,
    catalog: &Catalog,
    lock: &LockGuard,
    repair: bool,
    damaged: &[(std::path::PathBuf, String)],
    bad: &mut usize,
) -> Result<usize> {
    let mut repaired = 0usize;
    let archives = store.month_files(layout::ARCHIVES)?;
    if repair {
        for (path, id) in damaged {
            set_aside_manifest(path)?;
            let archive = layout::archive_name(id);
            if !archives.iter().any(|(_, n)| *n == archive) {
                problem(&format!(
                    "could not rebuild the manifest of {id}: its archive is gone too"
                ));
                *bad += 1;
            }
        }
    }
    let damaged_ids: HashSet<&str> = damaged.iter().map(|(_, id)| id.as_str()).collect();
    // What is on disk now, under the lock (the catalog may predate a writer's rename).
    let now = store.scan()?;
    let known: HashSet<&str> = catalog
        .headers
        .iter()
        .map(|h| h.id.as_str())
        .filter(|id| !(repair && damaged_ids.contains(id)))
        // Manifests published since the catalog was read; not the damaged ones, whose
        // archives are reported (and with --repair rebuilt) like orphans.
        .chain(
            now.manifests
                .keys()
                .map(|k| k.as_str())
                .filter(|id| !damaged_ids.contains(id)),
        )
        .collect();
    for (month, name) in archives {
        let rel = layout::rel(layout::ARCHIVES, &month, &name);
        let Some(id) = name.strip_suffix(layout::ARCHIVE_SUFFIX) else {
            if layout::is_set_aside_archive(&name) {
                problem(&format!(
                    "archive '{rel}' has no manifest and could not be rebuilt: it was set aside; recover what you need with tar --zstd -xf, then remove it with /bin/rm"
                ));
                *bad += 1;
            }
            continue;
        };
        if known.contains(id) {
            continue;
        }
        let incomplete = store.open_published(&rel).is_ok_and(|f| is_incomplete(&f));
        if incomplete && repair {
            match store.remove_orphan_archive(lock, &month, id) {
                Ok(()) => note(&format!(
                    "removed the incomplete archive '{rel}' (an interrupted saferm; it removed nothing)"
                )),
                Err(e) => {
                    problem(&format!("{e:#}"));
                    *bad += 1;
                }
            }
        } else if incomplete {
            problem(&format!(
                "archive '{rel}' is incomplete: an interrupted saferm left it and removed nothing (unrm --check --repair removes it)"
            ));
            *bad += 1;
        } else if repair {
            match rebuild_manifest(store, &month, &rel) {
                Ok(()) => {
                    note(&format!("rebuilt the manifest of {id}"));
                    repaired += 1;
                }
                Err(e) => {
                    problem(&format!("could not rebuild the manifest of '{rel}': {e:#}"));
                    *bad += 1;
                }
            }
        } else {
            problem(&format!(
                "archive '{rel}' has no manifest (unrm --check --repair rebuilds it)"
            ));
            *bad += 1;
        }
    }
    Ok(repaired)
}

/// Say what is becoming of each staged deletion: waiting for a worker or being archived
/// is how instant mode works, one that could not be archived is a problem.
fn report_staged(staged: &[&Staged], bad: &mut usize) {
    for s in staged {
        match &s.state {
            StagedState::Failed(why) => {
                problem(&format!(
                    "staged deletion {} could not be archived: {why}",
                    s.id
                ));
                *bad += 1;
            }
            state => note(&format!("staged deletion {}: {}", s.id, state.describe())),
        }
    }
}

/// What a `--check --json` run collects instead of printing: the problems found (with
/// `--repair`, also those it mended) and what was done.
#[derive(Default)]
struct Collected {
    problems: Vec<String>,
    notes: Vec<String>,
}

thread_local! {
    /// Set for a `--json` run ([`run`]): messages are collected for its one JSON answer.
    static COLLECTED: std::cell::RefCell<Option<Collected>> = const { std::cell::RefCell::new(None) };
}

fn problem(msg: &str) {
    let collected =
        COLLECTED.with_borrow_mut(|c| c.as_mut().map(|c| c.problems.push(msg.to_string())));
    if collected.is_none() {
        stderr_write(format!("unrm: {msg}\n").as_bytes());
    }
}

fn note(msg: &str) {
    let collected =
        COLLECTED.with_borrow_mut(|c| c.as_mut().map(|c| c.notes.push(msg.to_string())));
    if collected.is_none() {
        stdout_write(format!("{msg}\n").as_bytes());
    }
}

/// Decode the whole archive, compare every entry with the manifest, then compare the
/// archive file itself with the size and blake3 recorded when it was sealed.
fn check_deletion(store: &Store, d: &Deletion, bar: &mut crate::progress::Progress) -> Result<()> {
    let info = d
        .manifest
        .archive
        .as_ref()
        .ok_or_else(|| anyhow!("its manifest names no archive"))?;
    let file = store.open_published(&info.path)?;
    let size = file.metadata()?.len();
    if size != info.size {
        bail!(
            "the archive file has {size} bytes, {} were sealed",
            info.size
        );
    }
    let watched = Watched {
        inner: BufReader::with_capacity(1 << 20, file),
        bar,
    };
    crate::archive::verify::verify_archive(watched, &d.manifest.entries, Some(&info.blake3))
}

/// An archive being checked, as it is read: moves the progress bar, and stops at Ctrl-C.
struct Watched<'a, R> {
    inner: R,
    bar: &'a mut crate::progress::Progress,
}

impl<R: Read> Read for Watched<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if crate::signal::caught().is_some() {
            return Err(crate::signal::stop_error());
        }
        let n = self.inner.read(buf)?;
        self.bar.advance(n as u64);
        if crate::fault::active("check-signal") {
            crate::signal::raise_interrupt();
        }
        Ok(n)
    }
}

fn hash_file(mut file: File) -> Result<(u64, String)> {
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buf).context("cannot read the archive")?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((total, hasher.finalize().to_hex().to_string()))
}

/// Rebuild `manifests/<month>/<id>.json` from the copy at the end of an archive, after
/// checking the archive against it.
pub fn rebuild_manifest(store: &Store, month: &str, rel: &str) -> Result<()> {
    let manifest = manifest_from_archive(store, rel)?;
    publish_manifest(store, month, &manifest)
}

/// The manifest carried inside the archive at `rel`, with the facts about the archive file
/// filled in, once the archive is checked against it.
fn manifest_from_archive(store: &Store, rel: &str) -> Result<Manifest> {
    let file = store.open_published(rel)?;
    let copy = manifest_copy(&file)?;
    let mut manifest = Manifest::from_json(&copy).context("the manifest copy is damaged")?;
    let (size, hash) = hash_file(store.open_published(rel)?)?;
    manifest.archive = Some(ArchiveInfo {
        path: rel.to_string(),
        size,
        blake3: hash,
    });
    // Where later frames start in the tar stream is not known without decoding; one frame
    // at the start is always a valid place to begin.
    manifest.frames = vec![Frame {
        compressed_offset: 0,
        tar_offset: 0,
    }];
    crate::archive::verify::verify_archive(
        BufReader::with_capacity(1 << 20, store.open_published(rel)?),
        &manifest.entries,
        None,
    )
    .context("the archive does not match its manifest copy")?;
    if !rel.ends_with(&format!("/{}", layout::archive_name(&manifest.id))) {
        bail!(
            "the manifest copy is for another deletion ({})",
            manifest.id
        );
    }
    Ok(manifest)
}

/// Publish a rebuilt manifest as `manifests/<month>/<id>.json` (never replacing one).
fn publish_manifest(store: &Store, month: &str, manifest: &Manifest) -> Result<()> {
    let name = layout::manifest_name(&manifest.id);
    store.publish_new(layout::MANIFESTS, month, &name, &manifest.to_json())
}

/// Move a damaged manifest out of the way, kept beside it as `<id>.json.damaged`.
fn set_aside_manifest(path: &std::path::Path) -> Result<()> {
    let mut aside = path.to_path_buf().into_os_string();
    aside.push(layout::DAMAGED);
    // A store file, moved within its own directory by --repair; an older copy set aside
    // under the same name is one that was rebuilt since.
    #[allow(clippy::disallowed_methods)]
    std::fs::rename(path, &aside)
        .with_context(|| format!("could not move the damaged '{}' aside", path.display()))
}

/// Rebuild damaged manifests (`(month, id)`: unreadable, or empty as a power cut soon after
/// `rm` can leave one) from the copies inside their archives, as `--check --repair` does,
/// so that no listing or restore answers without them. Under the exclusive lock. A manifest
/// is set aside only once its replacement is built and its archive checked against it;
/// one that reads well by now (another process healed it) is left alone. Returns a line
/// per manifest, for stderr after the program's name.
pub fn heal_manifests(
    store: &Store,
    lock: &LockGuard,
    damaged: &[(String, String)],
) -> Vec<String> {
    let mut lines = Vec::new();
    if !lock.is_exclusive() {
        return lines;
    }
    for (month, id) in damaged {
        if !crate::store::id::is_valid(month) || !crate::store::id::is_valid(id) {
            continue;
        }
        let path = store.root().join(layout::manifest_rel(month, id));
        let readable = crate::sys::read_regular_path(&path, false, crate::store::MANIFEST_MAX)
            .map_err(anyhow::Error::new)
            .and_then(|b| Manifest::from_json(&b))
            .is_ok_and(|m| m.id == *id);
        if readable {
            continue;
        }
        let healed = (|| -> Result<()> {
            let rel =
                archive_of(store, month, id).ok_or_else(|| anyhow!("its archive is gone too"))?;
            let manifest = manifest_from_archive(store, &rel)?;
            set_aside_manifest(&path)?;
            publish_manifest(store, month, &manifest)
        })();
        lines.push(match healed {
            Ok(()) => format!(
                "the manifest of deletion {id} was damaged; rebuilt it from the copy inside its archive (the damaged one is kept as '{}.damaged')",
                path.display()
            ),
            Err(e) => format!(
                "could not rebuild the damaged manifest of deletion {id}: {e:#} (see 'unrm --check')"
            ),
        });
    }
    lines
}

/// The archive of deletion `id` whose manifest is filed under `month`: in the same month,
/// else in the month its id starts with.
fn archive_of(store: &Store, month: &str, id: &str) -> Option<String> {
    let from_id = crate::store::id::month(id)?;
    let found = [month, from_id.as_str()]
        .into_iter()
        .map(|m| layout::archive_rel(m, id))
        .find(|rel| store.open_published(rel).is_ok());
    found
}

/// The manifest JSON carried in the archive's skippable frame, found by walking the zstd
/// frames from the start (frame and block headers only; nothing is decompressed).
pub fn manifest_copy(file: &File) -> Result<Vec<u8>> {
    let len = file.metadata()?.len();
    let mut pos = 0u64;
    let read_u32 = |at: u64| -> Result<u32> {
        let mut b = [0u8; 4];
        file.read_exact_at(&mut b, at)
            .context("the archive ends inside a frame")?;
        Ok(u32::from_le_bytes(b))
    };
    while pos + 8 <= len {
        let magic = read_u32(pos)?;
        if magic == ZSTD_MAGIC {
            pos = skip_zstd_frame(file, pos)?;
        } else if magic & 0xFFFF_FFF0 == 0x184D_2A50 {
            let size = u64::from(read_u32(pos + 4)?);
            // The size is the file's word: allocate only what the file holds.
            // (Cut short like an archive whose writer died while sealing it.)
            if size > len - (pos + 8) {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("the frame at offset {pos} runs past the end of the archive"),
                )
                .into());
            }
            if magic == MANIFEST_FRAME_MAGIC && size >= MANIFEST_FRAME_TAG.len() as u64 {
                let mut body = vec![0u8; size as usize];
                file.read_exact_at(&mut body, pos + 8)
                    .context("the manifest copy is truncated")?;
                if let Some(copy) = body.strip_prefix(MANIFEST_FRAME_TAG) {
                    return crate::archive::decode_manifest_copy(copy)
                        .context("the manifest copy is damaged");
                }
            }
            pos += 8 + size;
        } else {
            bail!("no zstd frame at offset {pos}");
        }
    }
    Err(anyhow::Error::new(NoManifestCopy))
}

fn skip_zstd_frame(file: &File, start: u64) -> Result<u64> {
    let byte = |at: u64| -> Result<u8> {
        let mut b = [0u8; 1];
        file.read_exact_at(&mut b, at)
            .context("the archive ends inside a frame")?;
        Ok(b[0])
    };
    let desc = byte(start + 4)?;
    let fcs_flag = desc >> 6;
    let single_segment = (desc >> 5) & 1 == 1;
    let has_checksum = (desc >> 2) & 1 == 1;
    let dict_id_size = [0u64, 1, 2, 4][(desc & 3) as usize];
    let fcs_size = match fcs_flag {
        0 => u64::from(single_segment),
        1 => 2,
        2 => 4,
        _ => 8,
    };
    let mut pos = start + 5 + u64::from(!single_segment) + dict_id_size + fcs_size;
    loop {
        let mut h = [0u8; 3];
        file.read_exact_at(&mut h, pos)
            .context("the archive ends inside a frame")?;
        let header = u32::from(h[0]) | (u32::from(h[1]) << 8) | (u32::from(h[2]) << 16);
        pos += 3;
        let last = header & 1 == 1;
        let size = u64::from(header >> 3);
        pos += match (header >> 1) & 3 {
            0 | 2 => size,
            1 => 1,
            _ => bail!("a reserved block type at offset {pos}"),
        };
        if last {
            break;
        }
    }
    if has_checksum {
        pos += 4;
    }
    Ok(pos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file_of(bytes: &[u8]) -> File {
        let mut f = tempfile::tempfile().expect("temp file");
        f.write_all(bytes).expect("write");
        f
    }

    /// A skippable frame's size is the file's word: one that runs past the end is a cut
    /// archive (incomplete), found without allocating what it claims.
    #[test]
    fn a_frame_size_past_the_end_is_an_error_not_an_allocation() {
        for magic in [MANIFEST_FRAME_MAGIC, 0x184D_2A50] {
            let mut bytes = magic.to_le_bytes().to_vec();
            bytes.extend_from_slice(&u32::MAX.to_le_bytes());
            bytes.extend_from_slice(MANIFEST_FRAME_TAG);
            let f = file_of(&bytes);
            assert!(manifest_copy(&f).is_err());
            assert!(is_incomplete(&f), "{magic:x}");
        }
    }
}
