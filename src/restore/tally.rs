//! How far one unrm run's restores are: the progress bar (bytes, chunk by chunk as files are
//! written) and the regular files in place so far, for the line Ctrl-C prints.
//!
//! A file counts once it is complete under its real name, or was found there already,
//! identical (a restore run again): those are what a Ctrl-C leaves in place. The bar also
//! moves for the part of a file that an interruption then removes; it is only a bar.

use crate::manifest::{Kind, Manifest};
use crate::paths::PathMap;
use crate::progress::Progress;

use super::Target;

pub struct Tally {
    pub bar: Progress,
    /// Regular files in place, and their bytes.
    pub files: u64,
    pub bytes: u64,
    /// What the run wants in place: regular files below its targets, and their bytes.
    pub files_wanted: u64,
    pub bytes_wanted: u64,
}

impl Tally {
    /// A tally of restoring `files_wanted` regular files of `bytes_wanted` bytes, with a bar
    /// labelled `label` (`unrm: restoring`).
    pub fn new(label: &'static str, (files_wanted, bytes_wanted): (u64, u64)) -> Tally {
        Tally {
            bar: Progress::new(label, bytes_wanted),
            files: 0,
            bytes: 0,
            files_wanted,
            bytes_wanted,
        }
    }

    /// The regular files of `manifest` at or below the sources of `targets`, and their
    /// bytes: what a restore of them brings back.
    pub fn wanted(manifest: &Manifest, targets: &[Target]) -> (u64, u64) {
        let mut sources = PathMap::default();
        for t in targets {
            sources.insert_first(t.source.clone(), ());
        }
        manifest
            .entries
            .iter()
            .filter(|e| e.kind == Kind::File)
            .filter(|e| {
                e.path
                    .bytes()
                    .is_some_and(|p| sources.nearest(&p).is_some())
            })
            .fold((0, 0), |(n, b), e| (n + 1, b + e.size))
    }

    /// A file of `size` bytes is in place; `moved`: the bar has moved for its bytes already
    /// (they were copied chunk by chunk).
    pub(super) fn in_place(&mut self, size: u64, moved: bool) {
        self.files += 1;
        self.bytes += size;
        if !moved {
            self.bar.advance(size);
        }
    }
}
