//! How large an archive will be, before it is written, for the free-space check: the data a
//! file stores (a sparse file's blocks, not its holes), and, when that does not fit, how well
//! it compresses, from a few blocks of the largest files compressed at the archive's level.
//!
//! An estimate can be wrong (a file of zeros with noise between the samples): the write then
//! fails with ENOSPC, the temp files are removed and every original is kept, as for any other
//! write error. The estimate only decides whether to try.

use std::fs::File;
use std::os::unix::fs::FileExt;

use crate::sys::Stat;

/// The most bytes a file's data can take in the archive, before compression: its size, or
/// for one with holes (fewer blocks than its size needs), its blocks.
pub fn stored_bound(st: &Stat) -> u64 {
    if !st.is_file() {
        return 0;
    }
    st.size.min(st.blocks.saturating_mul(512))
}

/// How many of the largest files are sampled, and how.
const SAMPLED_FILES: usize = 8;
const SAMPLES_PER_FILE: u64 = 8;
const SAMPLE_BYTES: usize = 128 << 10;
/// Files below this are counted uncompressed.
const SAMPLED_ABOVE: u64 = 1 << 20;

/// The bytes these files' data is likely to take compressed at zstd `level`, with a margin:
/// each of the largest counts its sampled ratio times 1.5 plus 1% of its size (a file that
/// cannot be opened, or is not the one the walk saw, counts whole); the others count whole.
/// `files` holds a key and the walk's stat of each, `path_of` gives a key's absolute path
/// (asked only for the files sampled).
pub fn compressed_bound(
    files: &[(usize, &Stat)],
    path_of: &dyn Fn(usize) -> Vec<u8>,
    level: i32,
) -> u64 {
    let mut order: Vec<usize> = (0..files.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(stored_bound(files[i].1)));
    let mut total = 0u64;
    for (rank, &i) in order.iter().enumerate() {
        let (key, st) = files[i];
        let whole = stored_bound(st);
        // A sparse file's samples would mostly be holes: its data counts whole.
        let sampled = rank < SAMPLED_FILES && whole >= SAMPLED_ABOVE && whole == st.size;
        let bytes = match sampled.then(|| ratio(&path_of(key), st, level)).flatten() {
            Some(r) => ((whole as f64) * (r * 1.5 + 0.01)).min(whole as f64) as u64,
            None => whole,
        };
        total = total.saturating_add(bytes);
    }
    total
}

/// Compressed over uncompressed size of a few blocks spread over the file.
fn ratio(path: &[u8], st: &Stat, level: i32) -> Option<f64> {
    let name = crate::sys::cstr(path).ok()?;
    let fd = crate::sys::open_file_nofollow(crate::sys::AT_FDCWD, &name).ok()?;
    let file = File::from(fd);
    let now = crate::sys::fstat(std::os::fd::AsRawFd::as_raw_fd(&file)).ok()?;
    if (now.dev, now.ino) != (st.dev, st.ino) {
        return None;
    }
    let mut buf = vec![0u8; SAMPLE_BYTES];
    let span = st.size.saturating_sub(SAMPLE_BYTES as u64);
    let (mut raw, mut packed) = (0usize, 0usize);
    for k in 0..SAMPLES_PER_FILE {
        let at = span / (SAMPLES_PER_FILE - 1) * k;
        let n = file.read_at(&mut buf, at).ok()?;
        if n == 0 {
            break;
        }
        raw += n;
        packed += zstd::bulk::compress(&buf[..n], level).ok()?.len();
    }
    (raw > 0).then(|| packed as f64 / raw as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lstat(path: &[u8]) -> Stat {
        let name = crate::sys::cstr(path).expect("path");
        crate::sys::fstatat(crate::sys::AT_FDCWD, &name, false).expect("stat")
    }

    fn stat(size: u64, blocks: u64) -> Stat {
        let mut st = lstat(b"/");
        st.mode = libc::S_IFREG | 0o644;
        st.size = size;
        st.blocks = blocks;
        st
    }

    #[test]
    fn holes_are_not_counted_and_zeros_compress() {
        assert_eq!(stored_bound(&stat(100 << 30, 8)), 4096);
        assert_eq!(stored_bound(&stat(10_000, 24)), 10_000);
        assert_eq!(stored_bound(&stat(10_000, 0)), 0);
        let dir = tempfile::tempdir().expect("temp dir");
        let zeros = dir.path().join("zeros");
        let noise = dir.path().join("noise");
        std::fs::write(&zeros, vec![0u8; 8 << 20]).expect("write");
        let mut x = 88172645463325252u64;
        let bytes: Vec<u8> = (0..8 << 20)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        std::fs::write(&noise, bytes).expect("write");
        let paths: Vec<Vec<u8>> = [&zeros, &noise]
            .iter()
            .map(|p| std::os::unix::ffi::OsStrExt::as_bytes(p.as_os_str()).to_vec())
            .collect();
        let stats: Vec<Stat> = paths.iter().map(|p| lstat(p)).collect();
        let files: Vec<(usize, &Stat)> = stats.iter().enumerate().collect();
        let path_of = |i: usize| paths[i].clone();
        let zeros_only = compressed_bound(&files[..1], &path_of, 1);
        assert!(zeros_only < 1 << 20, "{zeros_only}");
        assert_eq!(compressed_bound(&files[1..], &path_of, 1), 8 << 20);
        // Not the file the walk saw: counted whole.
        let other = [(0, &stats[1])];
        assert_eq!(compressed_bound(&other, &path_of, 1), 8 << 20);
    }
}
