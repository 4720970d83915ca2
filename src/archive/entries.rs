//! The manifest entries of the archive being written, kept compact until the manifest is
//! written out, and handed to the verifier as they are written.

use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::sync::{mpsc, Arc};

use anyhow::Result;

use crate::archive::Growth;
use crate::manifest::{Entry, Kind, PathBytes};
use crate::rules;
use crate::sys;
use crate::walk::Plan;

/// The current directory as the shell names it: `$PWD` when it is an absolute path without
/// `.` or `..` that is the current directory (as `pwd -L` decides), else `physical`. It is
/// only recorded, never opened for anything but that check.
pub(super) fn logical_cwd(physical: &[u8]) -> Vec<u8> {
    let Some(pwd) = std::env::var_os("PWD") else {
        return physical.to_vec();
    };
    let pwd = pwd.as_bytes();
    let plain = pwd.starts_with(b"/") && pwd.split(|&b| b == b'/').all(|c| c != b"." && c != b"..");
    let same = || {
        let (Ok(a), Ok(b)) = (sys::cstr(pwd), sys::cstr(b".")) else {
            return false;
        };
        match (
            sys::fstatat(sys::AT_FDCWD, &a, true),
            sys::fstatat(sys::AT_FDCWD, &b, true),
        ) {
            (Ok(x), Ok(y)) => (x.dev, x.ino) == (y.dev, y.ino),
            _ => false,
        }
    };
    if plain && pwd != physical && same() {
        pwd.to_vec()
    } else {
        physical.to_vec()
    }
}

/// Operand `given`, resolved as `absolute`, as the shell in `cwd` (physical) typed it,
/// when that differs ([`typed_path`] against [`logical_cwd`]), as a manifest records it.
pub fn typed_operand(cwd: &[u8], given: &[u8], absolute: &[u8]) -> Option<Vec<u8>> {
    typed_path(&logical_cwd(cwd), given, absolute, &mut HashMap::new())
}

/// The operand `given` as typed, made absolute lexically against `cwd`,
/// when that differs from the `resolved` path it was archived under and still names the
/// same object now (the directories above it resolve to those above `resolved`; for
/// `link/`, the link resolves to `resolved`). A lexical `..` after a symlink names
/// another place than the kernel's: such a path is not recorded. `canonical` caches the
/// directories resolved (`rm d/*` in a symlinked directory resolves `d` once).
pub(super) fn typed_path(
    cwd: &[u8],
    given: &[u8],
    resolved: &[u8],
    canonical: &mut HashMap<Vec<u8>, Option<Vec<u8>>>,
) -> Option<Vec<u8>> {
    let typed = rules::lexical_absolute(cwd, given);
    if typed == resolved || typed == b"/" {
        return None;
    }
    let mut canon = |p: &[u8]| {
        canonical
            .entry(p.to_vec())
            .or_insert_with(|| {
                std::fs::canonicalize(std::ffi::OsStr::from_bytes(p))
                    .ok()
                    .map(|c| c.as_os_str().as_bytes().to_vec())
            })
            .clone()
    };
    let through_link = given.ends_with(b"/");
    let same = if through_link {
        canon(&typed).as_deref() == Some(resolved)
    } else {
        let (tp, tn) = crate::paths::split_parent(&typed);
        let (rp, rn) = crate::paths::split_parent(resolved);
        tn == rn && canon(tp).as_deref() == Some(rp)
    };
    same.then_some(typed)
}

/// What the archive is being verified against while it is written: how far it is in its
/// file, and its entries as they are written.
pub(super) struct Streaming {
    pub(super) growth: Arc<Growth>,
    pub(super) entries: mpsc::Sender<crate::archive::verify::Written>,
    /// Source content on its way to the verifier.
    pub(super) held: Arc<crate::archive::verify::Held>,
    /// The blake3s of content handed over unhashed, worked out by the verifier.
    pub(super) hashes: mpsc::Receiver<(usize, Option<String>)>,
    /// How many of those to wait for.
    pub(super) left_to_verifier: std::cell::Cell<usize>,
}

/// Add an entry to the manifest, and pass it on to verification when that runs alongside,
/// with the file's `content` as read (taken, leaving an empty buffer) if it holds it: room
/// for it was reserved in [`Streaming::held`]. If the entry has no blake3 yet, the
/// verifier works it out ([`blake3s_from_verifier`]). A sparse file comes with its map,
/// which the verifier compares with the archive's.
pub(super) fn record(
    entries: &mut Entries<'_>,
    node: usize,
    stream: Option<&Streaming>,
    mut entry: Entry,
    content: Option<&mut Vec<u8>>,
    sparse: Option<crate::archive::sparse::SparseRead>,
) {
    // Fault `verify-entry=NAME`: the manifest says another mode than the archive holds.
    let mode_flip = entry
        .path
        .bytes()
        .is_some_and(|p| crate::fault::names("verify-entry", &p));
    if mode_flip {
        entry.mode ^= 0o001;
    }
    let recorded = Recorded {
        node,
        kind: entry.kind,
        mode_flip,
        blake3: entry
            .blake3_blocks
            .as_deref()
            .or(entry.blake3.as_deref())
            .and_then(hash_bytes),
        blocks: entry.blake3_blocks.is_some(),
        offset: entry.offset,
        extra: (entry.link.is_some()
            || !entry.xattrs.is_empty()
            || entry.rdev_major.is_some()
            || entry.rdev_minor.is_some())
        .then(|| {
            Box::new(Extra {
                link: entry.link.clone(),
                xattrs: entry.xattrs.clone(),
                rdev: (entry.rdev_major, entry.rdev_minor),
            })
        }),
    };
    // What is kept must give back the entry exactly.
    debug_assert_eq!(entries.entry(&recorded), entry);
    if let Some(s) = stream {
        let content = content.map(|c| std::mem::replace(c, s.held.buffer()));
        if content.is_some() && entry.blake3.is_none() {
            s.left_to_verifier.set(s.left_to_verifier.get() + 1);
        }
        // A closed channel means verification has already failed; the writer learns that
        // when it joins it.
        let _ = s.entries.send(crate::archive::verify::Written {
            index: entries.list.len(),
            entry,
            content,
            sparse,
        });
    }
    entries.list.push(recorded);
}

/// A blake3 in hex as its 32 bytes.
pub(super) fn hash_bytes(hex: &str) -> Option<[u8; 32]> {
    blake3::Hash::from_hex(hex).ok().map(|h| *h.as_bytes())
}

/// Fill in the blake3s left to the verifier, once every entry has been written. If it
/// stops early, some stay missing: it failed, and the writer learns why when it joins it.
pub(super) fn blake3s_from_verifier(entries: &mut [Recorded], stream: Option<&Streaming>) {
    let Some(s) = stream else {
        return;
    };
    for _ in 0..s.left_to_verifier.get() {
        let Ok((i, hash)) = s.hashes.recv() else {
            return;
        };
        // None: that entry differs in the archive, which verification reports.
        if let Some(e) = entries.get_mut(i) {
            e.blake3 = hash.as_deref().and_then(hash_bytes);
        }
    }
}

/// A manifest entry as the writer keeps it until the manifest is written out: only what
/// its plan node does not say. The path, the stat fields and the owner names come from the
/// node when it is written ([`Entries::entry`]). About 64 bytes, where an [`Entry`] with
/// its strings takes over 400: 200,000 files in one directory would otherwise hold 80 MB
/// of manifest in memory (issue 11 §1.4).
pub(super) struct Recorded {
    pub(super) node: usize,
    pub(super) kind: Kind,
    /// Fault `verify-entry=NAME`: the manifest says another mode than the archive holds.
    pub(super) mode_flip: bool,
    /// The content's hash: its `blake3`, or for a sparse file its `blake3_blocks`.
    pub(super) blake3: Option<[u8; 32]>,
    pub(super) blocks: bool,
    pub(super) offset: u64,
    /// What few entries have: a link target, extended attributes, a device number.
    pub(super) extra: Option<Box<Extra>>,
}

pub(super) struct Extra {
    pub(super) link: Option<PathBytes>,
    pub(super) xattrs: Vec<String>,
    pub(super) rdev: (Option<u32>, Option<u32>),
}

/// The entries of the archive being written, kept compact ([`Recorded`]), with what it
/// takes to give them back as manifest entries: they serialise as the list of [`Entry`].
pub(crate) struct Entries<'p> {
    pub(super) plan: &'p Plan,
    pub(super) names: Names,
    /// Each command-line operand's index among the manifest's operands (the roots).
    pub(super) operand_pos: HashMap<usize, usize>,
    pub(super) list: Vec<Recorded>,
}

impl Entries<'_> {
    /// The entry of plan node `idx` at `abs`, starting at `offset` in the tar stream, as
    /// its stat gives it; the writer adds the rest.
    pub(super) fn base(&mut self, idx: usize, abs: &[u8], offset: u64) -> Entry {
        let node = &self.plan.nodes[idx];
        let user = self.names.user(node.st.uid);
        let group = self.names.group(node.st.gid);
        self.of_node(idx, abs, user, group, offset)
    }

    fn of_node(
        &self,
        idx: usize,
        abs: &[u8],
        user: Option<Arc<str>>,
        group: Option<Arc<str>>,
        offset: u64,
    ) -> Entry {
        let node = &self.plan.nodes[idx];
        let st = node.st;
        let kind = match st.file_type() {
            libc::S_IFDIR => Kind::Dir,
            libc::S_IFLNK => Kind::Symlink,
            _ => Kind::File,
        };
        Entry {
            path: PathBytes::new(abs),
            kind,
            mode: st.mode & 0o7777,
            uid: st.uid,
            gid: st.gid,
            user,
            group,
            size: if st.is_file() { st.size } else { 0 },
            mtime: st.mtime,
            mtime_nsec: st.mtime_nsec.clamp(0, 999_999_999) as u32,
            dev: st.dev,
            ino: st.ino,
            nlink: st.nlink,
            rdev_major: None,
            rdev_minor: None,
            blake3: None,
            blake3_blocks: None,
            link: None,
            xattrs: Vec::new(),
            offset,
            // Index into the manifest's operands (the roots), not the command line's.
            operand: self.operand_pos.get(&node.operand).copied().unwrap_or(0),
        }
    }

    /// A recorded entry as the manifest holds it.
    pub(super) fn entry(&self, r: &Recorded) -> Entry {
        let st = &self.plan.nodes[r.node].st;
        // Every owner name was looked up when its entry was written.
        let user = self.names.known_user(st.uid);
        let group = self.names.known_group(st.gid);
        let mut e = self.of_node(r.node, &self.plan.recorded(r.node), user, group, r.offset);
        e.kind = r.kind;
        if r.kind != Kind::File {
            e.size = 0;
        }
        if r.mode_flip {
            e.mode ^= 0o001;
        }
        let hash = r.blake3.map(|b| blake3::Hash::from(b).to_hex().to_string());
        if r.blocks {
            e.blake3_blocks = hash;
        } else {
            e.blake3 = hash;
        }
        if let Some(x) = &r.extra {
            e.link = x.link.clone();
            e.xattrs = x.xattrs.clone();
            (e.rdev_major, e.rdev_minor) = x.rdev;
        }
        e
    }

    /// The entries one at a time, for verification.
    pub(super) fn replay(&self) -> Replay<'_, '_> {
        Replay {
            entries: self,
            next: 0,
            current: None,
        }
    }
}

impl serde::Serialize for Entries<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.list.iter().map(|r| self.entry(r)))
    }
}

/// [`Entries`] handed to the verifier one at a time, each made when it is asked for.
pub(super) struct Replay<'e, 'p> {
    pub(super) entries: &'e Entries<'p>,
    pub(super) next: usize,
    pub(super) current: Option<Entry>,
}

impl crate::archive::verify::Expected for Replay<'_, '_> {
    fn next_entry(&mut self) -> Option<crate::archive::verify::Next<'_>> {
        let r = self.entries.list.get(self.next)?;
        self.next += 1;
        self.current = Some(self.entries.entry(r));
        self.current.as_ref().map(|e| (e, None, None))
    }

    fn left(&mut self) -> usize {
        self.entries.list.len().saturating_sub(self.next)
    }
}

/// User and group names, looked up once per id and shared by every entry that has it.
#[derive(Default)]
pub(super) struct Names {
    pub(super) users: HashMap<u32, Option<Arc<str>>>,
    pub(super) groups: HashMap<u32, Option<Arc<str>>>,
}

impl Names {
    pub(super) fn user(&mut self, uid: u32) -> Option<Arc<str>> {
        self.users
            .entry(uid)
            .or_insert_with(|| crate::users::user(uid).map(|u| u.name.into()))
            .clone()
    }

    pub(super) fn group(&mut self, gid: u32) -> Option<Arc<str>> {
        self.groups
            .entry(gid)
            .or_insert_with(|| crate::users::group_name(gid).map(Arc::from))
            .clone()
    }

    /// A name [`Names::user`] has already looked up.
    pub(super) fn known_user(&self, uid: u32) -> Option<Arc<str>> {
        self.users.get(&uid).cloned().flatten()
    }

    pub(super) fn known_group(&self, gid: u32) -> Option<Arc<str>> {
        self.groups.get(&gid).cloned().flatten()
    }
}
