//! The filesystem the store is on: its free space and size (for the limits of retention and
//! the check before writing), and its type (for `--stats` and messages).

use anyhow::Result;

use super::Store;
use crate::sys;

impl Store {
    /// Free bytes on the store's filesystem.
    pub fn free_bytes(&self) -> Result<u64> {
        Ok(sys::statfs(self.fd())?.1)
    }

    /// The total size of the store's filesystem (for limits given in %).
    pub fn fs_bytes(&self) -> Result<u64> {
        Ok(sys::fs_size(self.fd())?)
    }

    /// The type, size and free space of the store's filesystem.
    pub fn fs_stat(&self) -> Result<sys::FsStat> {
        Ok(sys::statfs_full(self.fd())?)
    }

    /// The name of the store's filesystem type (`ext4`, `xfs`, `btrfs`...): from
    /// `/proc/self/mountinfo` (the mount whose device is the store's), else from its magic.
    pub fn fs_type_name(&self) -> String {
        let magic = self.fs_stat().map(|s| s.fs_type).unwrap_or(0);
        let (major, minor) = sys::dev_major_minor(self.dev_ino.0);
        let dev = format!("{major}:{minor}");
        if let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") {
            // The deepest mount point above the store, among those of its device.
            let mut best: Option<(usize, String)> = None;
            for line in text.lines() {
                let fields: Vec<&str> = line.split(' ').collect();
                let Some(sep) = fields.iter().position(|f| *f == "-") else {
                    continue;
                };
                let (Some(d), Some(mp), Some(fstype)) =
                    (fields.get(2), fields.get(4), fields.get(sep + 1))
                else {
                    continue;
                };
                let mp = unescape_mountinfo(mp);
                if *d == dev && self.canonical.starts_with(&mp) {
                    let depth = mp.len();
                    if best.as_ref().is_none_or(|(b, _)| depth >= *b) {
                        best = Some((depth, fstype.to_string()));
                    }
                }
            }
            if let Some((_, name)) = best {
                return name;
            }
        }
        fs_magic_name(magic)
    }
}

/// mountinfo writes spaces, tabs, newlines and backslashes in paths as octal escapes.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 4 <= b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A filesystem's name from its `statfs` magic number.
pub fn fs_magic_name(magic: i64) -> String {
    let name = match magic as u64 & 0xFFFF_FFFF {
        0xEF53 => "ext2/ext3/ext4",
        0x5846_5342 => "xfs",
        0x9123_683E => "btrfs",
        0x0102_1994 => "tmpfs",
        0x8584_58F6 => "ramfs",
        0x2FC1_2FC2 => "zfs",
        0x6969 => "nfs",
        0x794C_7630 => "overlayfs",
        0xF2F5_2010 => "f2fs",
        0x6573_5546 => "fuse",
        0xFF53_4D42 => "cifs",
        0xFE53_4D42 => "smb2",
        0x4D44 => "vfat",
        0x2011_BAB0 => "exfat",
        0x5346_544E => "ntfs",
        0xCA45_1A4E => "bcachefs",
        0xF15F => "ecryptfs",
        _ => return format!("unknown (0x{:x})", magic),
    };
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::layout::safe_component;

    #[test]
    fn filesystems_are_named() {
        assert_eq!(fs_magic_name(0x5846_5342), "xfs");
        assert_eq!(fs_magic_name(0x9123_683E_u32 as i32 as i64), "btrfs");
        assert!(fs_magic_name(0x1234).starts_with("unknown"));
        assert_eq!(unescape_mountinfo("/mnt/a\\040b"), "/mnt/a b");
        assert!(safe_component("2026-11") && !safe_component("..") && !safe_component("a/b"));
    }
}
