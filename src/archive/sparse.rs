//! Sparse files: where their data is (`SEEK_DATA`/`SEEK_HOLE`), how they are stored in the
//! archive, and the hash of their logical content.
//!
//! The format is PAX 1.0 sparse, GNU tar's `--sparse-version=1.0`, which GNU tar extracts
//! sparse: PAX records `GNU.sparse.major=1`, `GNU.sparse.minor=0` and
//! `GNU.sparse.realsize=SIZE` before a ustar header (GNU tar reads PAX sparse records only
//! with a POSIX header, not a GNU one), whose data is the map, then the data regions one
//! after another. The map is decimal text, one number a line: the number of regions, then
//! the offset and length of each, padded with NULs to 512 bytes. A file that ends in a hole
//! ends its map with `(SIZE, 0)`, as GNU tar writes it, so that the length is set. The header
//! keeps the real path (not GNU's `GNUSparseFile.%p/` name) and no `GNU.sparse.name` is
//! written: GNU tar then takes the name from the header, long names and odd bytes included.
//!
//! The tar crate does not know this format (it reads GNU 'S' entries, whose reader fills the
//! holes with zeros: a 100 GiB file would be 100 GiB of reads): it hands over the stored
//! bytes, and [`read_map`] and its callers read them.
//!
//! The manifest gives a sparse file `blake3_blocks` ([`crate::hash`]), a hash of its logical
//! content (zeros in the holes) in which a 1 MiB block of zeros costs nothing, so a restore
//! can check what it wrote without hashing the holes.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

use crate::hash::{Blocks, ContentHash};

/// One run of data: `len` bytes at `offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    pub offset: u64,
    pub len: u64,
}

/// What was read from a sparse source, for verification to compare the archive's map with
/// (its content is compared by the `blake3_blocks` worked out from the same bytes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SparseRead {
    pub regions: Vec<Region>,
}

/// The data regions of `file` (`size` bytes), or `None` when it has no holes (or its
/// filesystem cannot say where they are). Leaves the file offset at 0.
pub fn data_map(file: &File, size: u64) -> io::Result<Option<Vec<Region>>> {
    use nix::errno::Errno;
    use nix::unistd::{lseek, Whence};
    let fd = file.as_raw_fd();
    let at = |pos: u64, whence| -> Result<Option<u64>, Errno> {
        let pos = i64::try_from(pos).map_err(|_| Errno::EOVERFLOW)?;
        match lseek(fd, pos, whence) {
            Ok(p) => Ok(Some(p.max(0) as u64)),
            // No data (or hole) at or after pos: the rest is a hole.
            Err(Errno::ENXIO) => Ok(None),
            Err(e) => Err(e),
        }
    };
    let mut regions = Vec::new();
    let mut pos = 0u64;
    while pos < size {
        let start = match at(pos, Whence::SeekData) {
            Ok(Some(s)) if s < size => s,
            Ok(_) => break,
            // A filesystem without SEEK_DATA: one region, as if it had no holes.
            Err(Errno::EINVAL | Errno::EOPNOTSUPP) if pos == 0 => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let end = match at(start, Whence::SeekHole) {
            Ok(Some(e)) => e.min(size),
            Ok(None) => size,
            Err(e) => return Err(e.into()),
        };
        if end <= start {
            return Err(io::Error::other("SEEK_HOLE went backwards"));
        }
        regions.push(Region {
            offset: start,
            len: end - start,
        });
        pos = end;
    }
    lseek(fd, 0, Whence::SeekSet)?;
    if regions
        == [Region {
            offset: 0,
            len: size,
        }]
    {
        return Ok(None);
    }
    Ok(Some(regions))
}

/// The map as it starts the entry's data: NUL-padded to 512 bytes.
pub fn encode_map(regions: &[Region], size: u64) -> Vec<u8> {
    let ends_in_hole = regions.last().is_none_or(|r| r.offset + r.len < size);
    let mut text = format!("{}\n", regions.len() + usize::from(ends_in_hole));
    for r in regions {
        text.push_str(&format!("{}\n{}\n", r.offset, r.len));
    }
    if ends_in_hole {
        text.push_str(&format!("{size}\n0\n"));
    }
    let mut out = text.into_bytes();
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

/// Bytes of data in these regions.
pub fn data_len(regions: &[Region]) -> u64 {
    regions.iter().map(|r| r.len).sum()
}

/// The entry's data size in the archive: the map and the data regions.
pub fn stored_len(regions: &[Region], size: u64) -> u64 {
    encode_map(regions, size).len() as u64 + data_len(regions)
}

/// Whether an entry's PAX records say it is stored as PAX 1.0 sparse; its real size if so.
pub fn realsize<'a>(
    records: impl Iterator<Item = (&'a [u8], &'a [u8])>,
) -> io::Result<Option<u64>> {
    let (mut major, mut minor, mut size) = (None, None, None);
    for (k, v) in records {
        let num = || -> io::Result<u64> {
            std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| io::Error::other("a bad GNU.sparse record"))
        };
        match k {
            b"GNU.sparse.major" => major = Some(num()?),
            b"GNU.sparse.minor" => minor = Some(num()?),
            b"GNU.sparse.realsize" => size = Some(num()?),
            _ => {}
        }
    }
    match (major, minor, size) {
        (None, None, None) => Ok(None),
        (Some(1), Some(0), Some(size)) => Ok(Some(size)),
        _ => Err(io::Error::other("a sparse format other than PAX 1.0")),
    }
}

/// Read the map at the start of a sparse entry's data (`stored` bytes in all) of a file of
/// `size` bytes, and check it: regions in order, inside the file, and the data they name
/// filling the rest of the entry exactly. Trailing zero-length regions are dropped.
pub fn read_map(data: &mut dyn Read, stored: u64, size: u64) -> io::Result<Vec<Region>> {
    let bad = |what: &str| io::Error::other(format!("bad sparse map: {what}"));
    let mut numbers: Vec<u64> = Vec::new();
    let mut want: Option<u64> = None;
    let mut digits: Option<u64> = None;
    let mut consumed = 0u64;
    let mut block = [0u8; 512];
    while want.is_none_or(|w| (numbers.len() as u64) < w) {
        if consumed + 512 > stored {
            return Err(bad("it runs past the entry"));
        }
        data.read_exact(&mut block)?;
        consumed += 512;
        for &b in &block {
            if want.is_some_and(|w| numbers.len() as u64 >= w) {
                break;
            }
            match b {
                b'0'..=b'9' => {
                    let d = u64::from(b - b'0');
                    digits = Some(
                        digits
                            .unwrap_or(0)
                            .checked_mul(10)
                            .and_then(|v| v.checked_add(d))
                            .ok_or_else(|| bad("a number too large"))?,
                    );
                }
                b'\n' => {
                    let n = digits.take().ok_or_else(|| bad("an empty line"))?;
                    if want.is_none() {
                        // Each region takes at least four bytes of map ("0\n0\n").
                        if n > stored / 4 {
                            return Err(bad("more regions than the entry can hold"));
                        }
                        want = Some(1 + 2 * n);
                    }
                    numbers.push(n);
                }
                _ => return Err(bad("not a number")),
            }
        }
    }
    let mut regions = Vec::with_capacity(numbers.len() / 2);
    let mut end = 0u64;
    for pair in numbers[1..].chunks_exact(2) {
        let r = Region {
            offset: pair[0],
            len: pair[1],
        };
        let r_end = r.offset.checked_add(r.len).ok_or_else(|| bad("overflow"))?;
        if r.offset < end || r_end > size {
            return Err(bad("regions out of order or past the end"));
        }
        end = r_end;
        regions.push(r);
    }
    while regions.last().is_some_and(|r| r.len == 0) {
        regions.pop();
    }
    if consumed.checked_add(data_len(&regions)) != Some(stored) {
        return Err(bad("its regions do not fill the entry"));
    }
    Ok(regions)
}

/// A sparse source as the archive stores it: the map, then the data regions, read with
/// `pread`. What it reads is hashed as the logical content (`blake3_blocks`).
pub struct Stored<'a> {
    file: &'a File,
    size: u64,
    map: Vec<u8>,
    map_pos: usize,
    regions: Vec<Region>,
    next: usize,
    within: u64,
    logical: Blocks,
    /// Fault `sparse-damage=NAME`: the archive gets one byte other than the one hashed.
    damage: bool,
}

impl<'a> Stored<'a> {
    pub fn new(file: &'a File, regions: Vec<Region>, size: u64) -> Stored<'a> {
        Stored {
            file,
            size,
            map: encode_map(&regions, size),
            map_pos: 0,
            regions,
            next: 0,
            within: 0,
            logical: Blocks::new(),
            damage: false,
        }
    }

    /// The entry's data size in the archive.
    pub fn stored_len(&self) -> u64 {
        self.map.len() as u64 + data_len(&self.regions)
    }

    /// Once everything was read: the logical content's `blake3_blocks`, and the map for
    /// verification to compare. A file that shrank meanwhile is reported by the caller's
    /// count of bytes.
    pub fn finish(mut self) -> (String, SparseRead) {
        let tail = self.size.saturating_sub(self.logical.len());
        self.logical.zeros(tail);
        (
            self.logical.finalize(),
            SparseRead {
                regions: self.regions,
            },
        )
    }
}

impl Read for Stored<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.map_pos < self.map.len() {
            let n = buf.len().min(self.map.len() - self.map_pos);
            buf[..n].copy_from_slice(&self.map[self.map_pos..self.map_pos + n]);
            self.map_pos += n;
            return Ok(n);
        }
        if crate::fault::active("read") {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        while let Some(&r) = self.regions.get(self.next) {
            if self.within == r.len {
                self.next += 1;
                self.within = 0;
                continue;
            }
            if self.within == 0 {
                let hole = r.offset.saturating_sub(self.logical.len());
                self.logical.zeros(hole);
            }
            let want = buf
                .len()
                .min(usize::try_from(r.len - self.within).unwrap_or(usize::MAX));
            let n = self
                .file
                .read_at(&mut buf[..want], r.offset + self.within)?;
            // n == 0: the file shrank; the caller's count of bytes notices.
            self.within += n as u64;
            self.logical.data(&buf[..n]);
            if self.damage && n > 0 {
                buf[0] ^= 1;
                self.damage = false;
            }
            return Ok(n);
        }
        Ok(0)
    }
}

/// Append `file` (`meta.size` bytes, data in `regions`) to the archive as a sparse entry;
/// returns the `blake3_blocks` of its logical content and what was read, for verification.
pub fn append(
    writer: &mut crate::archive::ArchiveWriter,
    meta: &crate::archive::EntryMeta<'_>,
    file: &File,
    regions: Vec<Region>,
) -> Result<(String, SparseRead), crate::archive::AppendError> {
    let mut src = Stored::new(file, regions, meta.size);
    src.damage = crate::fault::names("sparse-damage", meta.tar_path);
    let stored = src.stored_len();
    writer.append_sparse(meta, stored, &mut src)?;
    Ok(src.finish())
}

/// Feed a sparse entry's stored bytes (after the map) to `hash` as the logical content of a
/// file of `size` bytes, zeros in the holes; false if they do not fill the regions. With
/// `out`, each region is also written at its offset there (the holes are left unwritten).
pub fn hash_stored(
    data: &mut dyn Read,
    regions: &[Region],
    size: u64,
    hash: &mut ContentHash,
    out: Option<&File>,
) -> io::Result<bool> {
    let mut buf = vec![0u8; 256 << 10];
    for r in regions {
        hash.zeros(r.offset.saturating_sub(hash.len()));
        let mut left = r.len;
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = data.read(&mut buf[..want])?;
            if n == 0 {
                return Ok(false);
            }
            if let Some(f) = out {
                f.write_all_at(&buf[..n], r.offset + (r.len - left))?;
            }
            hash.data(&buf[..n]);
            left -= n as u64;
            if crate::signal::caught().is_some() {
                return Err(io::Error::from(io::ErrorKind::Interrupted));
            }
        }
    }
    hash.zeros(size.saturating_sub(hash.len()));
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logical(regions: &[Region], size: u64, fill: u8) -> Vec<u8> {
        let mut v = vec![0u8; size as usize];
        for (i, r) in regions.iter().enumerate() {
            for b in &mut v[r.offset as usize..(r.offset + r.len) as usize] {
                *b = fill.wrapping_add(i as u8) | 1;
            }
        }
        v
    }

    #[test]
    fn a_map_reads_back_and_bad_ones_are_refused() {
        let cases: [(&[Region], u64); 4] = [
            (
                &[Region {
                    offset: 0,
                    len: 4096,
                }],
                1 << 20,
            ),
            (&[], 1 << 20),
            (
                &[
                    Region {
                        offset: 4096,
                        len: 10,
                    },
                    Region {
                        offset: (1 << 20) - 5,
                        len: 5,
                    },
                ],
                1 << 20,
            ),
            (
                &[Region {
                    offset: 100,
                    len: 3,
                }],
                200,
            ),
        ];
        for (regions, size) in cases {
            let map = encode_map(regions, size);
            assert_eq!(map.len() % 512, 0);
            let stored = map.len() as u64 + data_len(regions);
            let mut bytes = map.clone();
            bytes.resize(stored as usize, 7);
            let got = read_map(&mut &bytes[..], stored, size).expect("read back");
            assert_eq!(got, regions);
            assert!(read_map(&mut &bytes[..], stored + 1, size).is_err());
            assert!(read_map(&mut &bytes[..], stored, 1).is_err() || regions.is_empty());
        }
        for bad in [
            &b"x\n"[..],
            b"2\n0\n5\n1\n",
            b"1\n\n",
            b"99999999999999999999999\n",
        ] {
            let mut block = bad.to_vec();
            block.resize(512, 0);
            block.resize(4096, 1);
            assert!(read_map(&mut &block[..], 4096, 1 << 20).is_err(), "{bad:?}");
        }
        assert!(read_map(&mut &[0u8; 100][..], 100, 10).is_err());
    }

    #[test]
    fn a_sparse_file_is_stored_as_map_and_data_and_hashed_by_blocks() {
        let file = tempfile::tempfile().expect("temp file");
        // Not a whole number of blocks, a region across a block boundary, a hole at the end.
        let size = (3u64 << 20) + 5;
        file.set_len(size).expect("truncate");
        let regions = [
            Region {
                offset: 0,
                len: 4096,
            },
            Region {
                offset: (1 << 20) - 100,
                len: 8192,
            },
        ];
        let content = logical(&regions, size, 3);
        for r in &regions {
            let at = r.offset as usize;
            file.write_all_at(&content[at..at + r.len as usize], r.offset)
                .expect("write");
        }
        let map = data_map(&file, size).expect("map");
        // tmpfs or a filesystem without holes: the same content as one region.
        let regions = map.unwrap_or_else(|| {
            vec![Region {
                offset: 0,
                len: size,
            }]
        });
        let mut src = Stored::new(&file, regions.clone(), size);
        let mut stored = Vec::new();
        src.read_to_end(&mut stored).expect("read");
        assert_eq!(stored.len() as u64, src.stored_len());
        let (hash, read) = src.finish();
        assert_eq!(read.regions, regions);
        // By the definition: the blake3 of the blake3s of each MiB, one after another.
        let mut each = Vec::new();
        for block in content.chunks(1 << 20) {
            each.extend_from_slice(blake3::hash(block).as_bytes());
        }
        assert_eq!(each.len(), 4 * 32);
        assert_eq!(hash, blake3::hash(&each).to_hex().to_string());
        let mut rest = &stored[..];
        let back = read_map(&mut rest, stored.len() as u64, size).expect("map");
        assert_eq!(back, regions);
        let data = rest;
        let check = |plain: Option<&str>, blocks: Option<&str>, data: &[u8]| {
            let mut h = ContentHash::new(plain, blocks);
            let complete = hash_stored(&mut &data[..], &back, size, &mut h, None).expect("hash");
            complete && h.matches(size)
        };
        assert!(check(None, Some(&hash), data));
        // An older manifest's plain blake3 of the logical content.
        let plain = blake3::hash(&content).to_hex().to_string();
        assert!(check(Some(&plain), None, data));
        assert!(!check(None, Some(&plain), data));
        let mut damaged = data.to_vec();
        damaged[5000] ^= 1;
        assert!(!check(None, Some(&hash), &damaged));
        assert!(!check(None, Some(&hash), &data[..data.len() - 1]));
    }
}
