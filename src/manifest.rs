//! The JSON manifest of one deletion: the source of truth for listing and restoring.
//!
//! A copy of it travels inside the archive (a zstd skippable frame after the data), so a store
//! whose manifests were lost can be rebuilt. Paths are kept as bytes: `path` when they are
//! UTF-8, else `path_b64`.

use std::sync::Arc;

use base64::Engine;
use serde::{Deserialize, Serialize};

/// The manifest format this build writes and the newest it can read.
pub const MANIFEST_VERSION: u32 = 1;

/// A path that is UTF-8 in the common case and arbitrary bytes otherwise.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathBytes {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub path_b64: Option<String>,
}

impl PathBytes {
    pub fn new(bytes: &[u8]) -> PathBytes {
        match std::str::from_utf8(bytes) {
            Ok(s) => PathBytes {
                path: Some(s.to_string()),
                path_b64: None,
            },
            Err(_) => PathBytes {
                path: None,
                path_b64: Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
            },
        }
    }

    /// The bytes back; None when the manifest is damaged (neither field decodes).
    pub fn bytes(&self) -> Option<Vec<u8>> {
        if let Some(p) = &self.path {
            return Some(p.as_bytes().to_vec());
        }
        let b64 = self.path_b64.as_ref()?;
        base64::engine::general_purpose::STANDARD.decode(b64).ok()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Hardlink,
    Fifo,
    Char,
    Block,
    Socket,
}

/// One object of the deletion, in archive order (parents before children).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Absolute original path.
    #[serde(flatten)]
    pub path: PathBytes,
    #[serde(rename = "type")]
    pub kind: Kind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Owner names, shared between the entries of one deletion (most have the same).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub user: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub group: Option<Arc<str>>,
    pub size: u64,
    pub mtime: i64,
    pub mtime_nsec: u32,
    pub dev: u64,
    pub ino: u64,
    pub nlink: u64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub rdev_major: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub rdev_minor: Option<u32>,
    /// blake3 of the content (what `b3sum` prints), for regular files stored whole.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub blake3: Option<String>,
    /// For a regular file stored sparse, instead of `blake3`: the blake3 of the blake3s of
    /// its content (zeros in the holes) cut into 1 MiB blocks, the last one maybe short,
    /// one after another ([`crate::hash`]). Older manifests give such a file a `blake3`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub blake3_blocks: Option<String>,
    /// Symlink target, or for a hard link the absolute path of the entry it links to.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub link: Option<PathBytes>,
    /// Names of the extended attributes kept with it.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub xattrs: Vec<String>,
    /// Offset of the entry's first header in the uncompressed tar stream.
    pub offset: u64,
    /// Index (in `Manifest::operands`) of the operand it was removed under.
    pub operand: usize,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operand {
    /// As given on the command line.
    pub given: PathBytes,
    /// Absolute path of what was removed (for `dir/` through a symlink: the directory).
    pub absolute: PathBytes,
    /// The path as the user typed it, made absolute lexically (against the shell's `$PWD`
    /// when that is the current directory), when it differs from `absolute` and named the
    /// same object when it was removed: `~/proj/src` with `~/proj` a symlink, or `link/`.
    /// Absent from older manifests, and when it is `absolute`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub typed: Option<PathBytes>,
}

/// A zstd frame of the archive: where it starts, compressed and in the tar stream. Frames
/// start at entry boundaries, so a reader can seek to one and parse tar from there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frame {
    pub compressed_offset: u64,
    pub tar_offset: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub entries: u64,
    pub files: u64,
    pub dirs: u64,
    /// Bytes of file content.
    pub bytes: u64,
}

/// Facts about the sealed archive file, known only after it is written (absent from the
/// copy inside the archive).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveInfo {
    /// Path relative to the store.
    pub path: String,
    pub size: u64,
    pub blake3: String,
}

/// A deletion's manifest. `E` is how its entries are held: a list of [`Entry`] when it is
/// read, or the writer's compact form, which serialises to the same JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest<E = Vec<Entry>> {
    pub format: u32,
    /// Checked as it is read ([`crate::store::id`]): it names store files.
    #[serde(deserialize_with = "crate::store::id::deserialize")]
    pub id: String,
    /// RFC 3339, UTC, nanoseconds.
    pub created: String,
    pub host: String,
    pub user: String,
    pub uid: u32,
    pub cwd: PathBytes,
    pub argv: Vec<PathBytes>,
    /// Shared by the deletions one command made: an instant-mode run that staged some
    /// operands and archived the others, or a staged deletion archived in parts after its
    /// worker was killed. `unrm --last` undoes them together.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub run: Option<String>,
    pub operands: Vec<Operand>,
    pub totals: Totals,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub archive: Option<ArchiveInfo>,
    pub zstd_level: i32,
    pub frames: Vec<Frame>,
    /// Objects removed without an archive entry (sockets: nothing to keep).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub not_archived: Vec<Entry>,
    pub entries: E,
}

impl<E: Serialize> Manifest<E> {
    pub fn to_json(&self) -> Vec<u8> {
        // Serialising plain structs of strings and numbers cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Stream the JSON to `w` (a manifest of 50,000 entries is ~16 MB: not worth holding).
    pub fn write_json(&self, w: &mut dyn std::io::Write) -> std::io::Result<()> {
        serde_json::to_writer(w, self).map_err(std::io::Error::other)
    }
}

impl Manifest {
    /// The zstd frame to start decoding from to reach entry `i` (a restore, `unrm --cat`):
    /// the last frame at or before it at which an entry starts. `(that entry, the frame's
    /// offset in the archive file)`; the start of the archive when there is none.
    pub fn start_frame(&self, i: usize) -> (usize, u64) {
        let want = self.entries[i].offset;
        let mut start = (0usize, 0u64);
        for f in self.frames.iter().filter(|f| f.tar_offset <= want) {
            if let Some(n) = self.entries[..=i]
                .iter()
                .position(|e| e.offset == f.tar_offset)
            {
                start = (n, f.compressed_offset);
            }
        }
        start
    }

    pub fn from_json(bytes: &[u8]) -> anyhow::Result<Manifest> {
        let m: Manifest = serde_json::from_slice(bytes)?;
        if m.format > MANIFEST_VERSION {
            anyhow::bail!(
                "manifest format {} is newer than this saferm supports ({MANIFEST_VERSION})",
                m.format
            );
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_utf8_paths_round_trip_through_base64() {
        let p = PathBytes::new(b"bad\xffname");
        assert!(p.path.is_none());
        assert_eq!(p.bytes().as_deref(), Some(&b"bad\xffname"[..]));
        let p = PathBytes::new(b"ok");
        assert_eq!(p.path.as_deref(), Some("ok"));
    }
}
