//! `unrm --cat PATH`: a deleted regular file's content on stdout, checked against its
//! manifest's hash (`crate::restore::cat` says what is held back until then). PATH is
//! found as a NAME to restore is; `--at` and `--pick` choose the version.
//!
//! `--to -` is refused rather than made to mean this: `--to` restores whole trees with their
//! metadata, and a stream holds one file's bytes (`diff <(unrm --cat f) f`).

use std::io::Write;

use anyhow::Result;

use crate::catalog::Catalog;
use crate::manifest::Kind;
use crate::output::{human, stderr_write};
use crate::quote::quote;
use crate::restore::cat::{cat as cat_entry, CatError};
use crate::store::Store;
use crate::sys;
use crate::unrm_cli::Options;

use super::find::{at_filter, candidates_text, choose, resolve, Resolution};
use super::met_damage;

pub(super) fn cat(
    opts: &Options,
    store: &Store,
    catalog: &Catalog,
    cwd: &[u8],
    name: &[u8],
    may_heal: bool,
) -> Result<i32> {
    let fail = |msg: &str| {
        stderr_write(format!("unrm: could not cat {}: {msg}\n", quote(name)).as_bytes());
        Ok(1)
    };
    let allowed: Box<dyn Fn(usize) -> bool> = match &opts.at {
        None => Box::new(|_| true),
        Some(at) => match at_filter(catalog, at) {
            Ok(f) => f,
            Err(msg) => return fail(&format!("--at {msg}")),
        },
    };
    let resolution = resolve(catalog, &*allowed, cwd, name, opts.pick);
    met_damage(catalog, may_heal)?;
    let found = match resolution {
        Ok(Resolution::Found(found)) => found,
        Ok(Resolution::Pieces(found)) => found.into_iter().map(|(d, p, _)| (d, p)).collect(),
        Ok(Resolution::Choose(found)) if sys::stdin_is_tty() => {
            match choose(catalog, name, &found) {
                Some(n) => vec![found[n].clone()],
                None => return fail("nothing was chosen"),
            }
        }
        Ok(Resolution::Choose(found)) => {
            return fail(&format!(
                "it matches several deleted objects; give the path, or choose with --at ID (or on a terminal):\n{}",
                candidates_text(catalog, &found).trim_end()
            ))
        }
        Err(msg) => return fail(&msg),
    };
    let [(d, path)] = found.as_slice() else {
        return fail(&format!(
            "it names {} deleted objects, and --cat writes one file: give its path:\n{}",
            found.len(),
            candidates_text(catalog, &found).trim_end()
        ));
    };
    let del = match catalog.load(*d) {
        Ok(del) => del,
        Err(e) => return fail(&e),
    };
    let manifest = &del.manifest;
    let Some(mut i) = manifest
        .entries
        .iter()
        .position(|e| e.path.bytes().as_deref() == Some(path.as_slice()))
    else {
        return fail(&format!("deletion {} does not hold it", del.id()));
    };
    let e = &manifest.entries[i];
    let link = || quote(&e.link.as_ref().and_then(|l| l.bytes()).unwrap_or_default());
    match e.kind {
        Kind::File => {}
        // The content is the first name's, earlier in the archive.
        Kind::Hardlink => {
            let first = e.link.as_ref().and_then(|l| l.bytes()).unwrap_or_default();
            match manifest.entries[..i]
                .iter()
                .position(|f| f.kind == Kind::File && f.path.bytes() == Some(first.clone()))
            {
                Some(f) => i = f,
                None => return fail("it is a hard link to nothing this deletion holds"),
            }
        }
        Kind::Dir => {
            return fail(
                "it is a directory (unrm --show lists what it holds; --cat writes one file)",
            )
        }
        Kind::Symlink => {
            return fail(&format!(
                "it is a symbolic link to {}; --cat writes only regular files",
                link()
            ))
        }
        other => {
            return fail(&format!(
                "it is a {}; --cat writes only regular files",
                kind_name(other)
            ))
        }
    }
    let mut stdout = std::io::stdout().lock();
    let catted = cat_entry(store, manifest, i, &mut stdout);
    let _ = stdout.flush();
    match catted.result {
        Ok(()) => Ok(0),
        // `unrm --cat f | head`: the reader has what it wanted.
        Err(CatError::Write(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(0),
        Err(CatError::Write(e)) => fail(&format!("write error: {}", sys::strerror(&e))),
        Err(CatError::Damaged(why)) if catted.written == 0 => {
            fail(&format!("{why}; nothing was written"))
        }
        Err(CatError::Damaged(why)) => fail(&format!(
            "{why}; the first {} bytes ({}) were written before it was found, and are not the \
             file: the rest was held back",
            catted.written,
            human(catted.written)
        )),
    }
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Fifo => "fifo",
        Kind::Char => "character device",
        Kind::Block => "block device",
        Kind::Socket => "socket",
        Kind::Dir => "directory",
        Kind::Symlink => "symbolic link",
        Kind::File | Kind::Hardlink => "file",
    }
}
