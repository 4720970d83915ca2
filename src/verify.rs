//! Verification: decode a sealed archive end to end and compare every entry with what was
//! read from the source (DESIGN §1.1).
//!
//! `tar::Archive::entries` stops at the end-of-archive blocks and never reaches the zstd
//! frame checksum, so the decoder is drained to EOF afterwards: truncation and checksum
//! damage are caught too.

use std::io::{self, Read};

use anyhow::{bail, Context, Result};

use crate::manifest::{Entry, Kind};

/// Read the archive from `reader` and check it holds exactly `expected`, in order.
pub fn verify_archive(reader: impl Read, expected: &[Entry]) -> Result<()> {
    let decoder =
        zstd::stream::read::Decoder::new(reader).context("cannot start decoding the archive")?;
    let mut archive = tar::Archive::new(decoder);
    let mut count = 0usize;
    let mut buf = vec![0u8; 256 * 1024];
    {
        let entries = archive.entries().context("cannot read the archive")?;
        for (i, entry) in entries.enumerate() {
            let mut entry =
                entry.with_context(|| format!("cannot read entry {i} of the archive"))?;
            let Some(want) = expected.get(i) else {
                bail!("the archive has more entries than were written");
            };
            let path = entry.path_bytes().into_owned();
            let want_path = want.path.bytes().unwrap_or_default();
            if want_path.get(1..) != Some(&path[..]) {
                bail!(
                    "entry {i} is '{}', expected '{}'",
                    String::from_utf8_lossy(&path),
                    String::from_utf8_lossy(&want_path)
                );
            }
            let header = entry.header();
            let kind = kind_of(header.entry_type());
            let name = String::from_utf8_lossy(&want_path).into_owned();
            if kind != Some(want.kind) {
                bail!("'{name}' has the wrong type in the archive");
            }
            let mode = header
                .mode()
                .with_context(|| format!("'{name}': bad mode"))?;
            if mode != want.mode & 0o7777 {
                bail!(
                    "'{name}' has mode {mode:o} in the archive, {:o} on disk",
                    want.mode & 0o7777
                );
            }
            if let Some(link) = &want.link {
                let got = entry
                    .link_name_bytes()
                    .map(|l| l.into_owned())
                    .unwrap_or_default();
                let mut want_link = link.bytes().unwrap_or_default();
                if want.kind == Kind::Hardlink {
                    want_link.remove(0); // stored relative, like every path
                }
                if got != want_link {
                    bail!("'{name}' has the wrong link target in the archive");
                }
            }
            if want.kind == Kind::File {
                let size = entry
                    .header()
                    .size()
                    .with_context(|| format!("'{name}': bad size"))?;
                if size != want.size {
                    bail!(
                        "'{name}' has {size} bytes in the archive, {} on disk",
                        want.size
                    );
                }
                let mut hasher = blake3::Hasher::new();
                let mut total = 0u64;
                loop {
                    let n = entry
                        .read(&mut buf)
                        .with_context(|| format!("cannot read '{name}' from the archive"))?;
                    if n == 0 {
                        break;
                    }
                    hasher.update(&buf[..n]);
                    total += n as u64;
                }
                let hash = hasher.finalize().to_hex().to_string();
                if total != want.size || Some(&hash) != want.blake3.as_ref() {
                    bail!("'{name}' in the archive differs from what was read (blake3 mismatch)");
                }
            }
            count += 1;
        }
    }
    if count != expected.len() {
        bail!(
            "the archive has {count} entries, {} were written",
            expected.len()
        );
    }
    // Past the end-of-archive blocks: the rest of the frame, its checksum, the manifest copy.
    let mut decoder = archive.into_inner();
    io::copy(&mut decoder, &mut io::sink())
        .context("the archive is damaged after its last entry")?;
    Ok(())
}

pub fn kind_of(t: tar::EntryType) -> Option<Kind> {
    Some(match t {
        tar::EntryType::Regular | tar::EntryType::Continuous => Kind::File,
        tar::EntryType::Directory => Kind::Dir,
        tar::EntryType::Symlink => Kind::Symlink,
        tar::EntryType::Link => Kind::Hardlink,
        tar::EntryType::Fifo => Kind::Fifo,
        tar::EntryType::Char => Kind::Char,
        tar::EntryType::Block => Kind::Block,
        _ => return None,
    })
}
