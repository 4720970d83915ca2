//! The content hashes a manifest records for its files, and how they are checked.
//!
//! A file stored whole has `blake3`: the blake3 of its bytes, what `b3sum` prints. A file
//! stored sparse ([`crate::archive::sparse`]) has `blake3_blocks` instead: its logical content
//! (zeros in the holes) is cut into consecutive blocks of [`BLOCK`] bytes (the last one may
//! be short; an empty file has none), each block is hashed with blake3 on its own, and the
//! 32-byte hashes, one after another, are hashed with blake3. A block of zeros always has
//! the same hash, so holes cost nothing to hash: a plain blake3 cannot skip them, because
//! every 1 KiB chunk's chaining value depends on its position in the file, and 100 GiB of
//! zeros took 37 s to hash. The value depends only on the logical bytes, not on where the
//! holes are, so the source, unrm's restore and a GNU tar extraction all give the same one.
//!
//! Manifests written before `blake3_blocks` give a sparse file a plain `blake3` of its
//! logical content; [`ContentHash`] checks whichever the entry has (both, if it has both).

use std::sync::OnceLock;

use crate::manifest::Entry;

/// The block size of `blake3_blocks`: 1 MiB.
pub const BLOCK: u64 = 1 << 20;

/// Zeros to hash from (in .bss: no cost in the binary).
static ZEROS: [u8; 256 << 10] = [0; 256 << 10];

fn hash_zeros(h: &mut blake3::Hasher, mut n: u64) {
    while n > 0 {
        let k = n.min(ZEROS.len() as u64) as usize;
        h.update(&ZEROS[..k]);
        n -= k as u64;
    }
}

/// The blake3 of a whole block of zeros.
fn zero_block() -> &'static blake3::Hash {
    static HASH: OnceLock<blake3::Hash> = OnceLock::new();
    HASH.get_or_init(|| {
        let mut h = blake3::Hasher::new();
        hash_zeros(&mut h, BLOCK);
        h.finalize()
    })
}

/// `blake3_blocks` of a content fed in order, as zeros (holes) and data.
pub struct Blocks {
    /// The hashes of the blocks done.
    outer: blake3::Hasher,
    /// The block being fed, `in_block` bytes so far.
    block: blake3::Hasher,
    in_block: u64,
    len: u64,
}

impl Default for Blocks {
    fn default() -> Self {
        Blocks::new()
    }
}

impl Blocks {
    pub fn new() -> Blocks {
        Blocks {
            outer: blake3::Hasher::new(),
            block: blake3::Hasher::new(),
            in_block: 0,
            len: 0,
        }
    }

    /// Bytes fed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    fn end_block_if_full(&mut self) {
        if self.in_block == BLOCK {
            self.outer.update(self.block.finalize().as_bytes());
            self.block.reset();
            self.in_block = 0;
        }
    }

    /// `n` bytes of zeros: whole blocks of them cost one 32-byte update each.
    pub fn zeros(&mut self, mut n: u64) {
        self.len = self.len.saturating_add(n);
        if self.in_block > 0 {
            let k = n.min(BLOCK - self.in_block);
            hash_zeros(&mut self.block, k);
            self.in_block += k;
            n -= k;
            self.end_block_if_full();
        }
        let whole = zero_block().as_bytes();
        for _ in 0..n / BLOCK {
            self.outer.update(whole);
        }
        let rest = n % BLOCK;
        hash_zeros(&mut self.block, rest);
        self.in_block += rest;
    }

    /// Bytes of data.
    pub fn data(&mut self, mut bytes: &[u8]) {
        self.len = self.len.saturating_add(bytes.len() as u64);
        while !bytes.is_empty() {
            let room = usize::try_from(BLOCK - self.in_block).unwrap_or(usize::MAX);
            let (now, later) = bytes.split_at(bytes.len().min(room));
            self.block.update(now);
            self.in_block += now.len() as u64;
            self.end_block_if_full();
            bytes = later;
        }
    }

    /// The hash, in hex.
    pub fn finalize(mut self) -> String {
        if self.in_block > 0 {
            self.outer.update(self.block.finalize().as_bytes());
        }
        self.outer.finalize().to_hex().to_string()
    }
}

/// Works out, as a file's content is fed, the hashes its manifest entry records, to check
/// them at the end ([`ContentHash::matches`]).
pub struct ContentHash {
    plain: Option<(blake3::Hasher, String)>,
    blocks: Option<(Blocks, String)>,
    len: u64,
}

impl ContentHash {
    /// For the hashes `e` records: `blake3`, `blake3_blocks`, or both.
    pub fn of(e: &Entry) -> ContentHash {
        ContentHash::new(e.blake3.as_deref(), e.blake3_blocks.as_deref())
    }

    pub fn new(plain: Option<&str>, blocks: Option<&str>) -> ContentHash {
        ContentHash {
            plain: plain.map(|want| (blake3::Hasher::new(), want.to_string())),
            blocks: blocks.map(|want| (Blocks::new(), want.to_string())),
            len: 0,
        }
    }

    /// Bytes fed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// `n` bytes of zeros (a hole).
    pub fn zeros(&mut self, n: u64) {
        self.len = self.len.saturating_add(n);
        if let Some((h, _)) = &mut self.plain {
            hash_zeros(h, n);
        }
        if let Some((h, _)) = &mut self.blocks {
            h.zeros(n);
        }
    }

    pub fn data(&mut self, bytes: &[u8]) {
        self.len = self.len.saturating_add(bytes.len() as u64);
        if let Some((h, _)) = &mut self.plain {
            h.update(bytes);
        }
        if let Some((h, _)) = &mut self.blocks {
            h.data(bytes);
        }
    }

    /// Whether what was fed is `size` bytes with every hash the entry records (and it
    /// records at least one).
    pub fn matches(self, size: u64) -> bool {
        let plain = self
            .plain
            .map(|(h, want)| h.finalize().to_hex().as_str() == want);
        let blocks = self.blocks.map(|(h, want)| h.finalize() == want);
        self.len == size
            && (plain.is_some() || blocks.is_some())
            && plain != Some(false)
            && blocks != Some(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `blake3_blocks` as defined, over the whole content in memory.
    fn by_definition(content: &[u8]) -> String {
        let mut hashes = Vec::new();
        for block in content.chunks(1 << 20) {
            hashes.extend_from_slice(blake3::hash(block).as_bytes());
        }
        blake3::hash(&hashes).to_hex().to_string()
    }

    #[test]
    fn blocks_hash_the_blake3s_of_each_mib_whatever_the_pieces() {
        let mib = 1usize << 20;
        // (offset, len) of data; the rest is zeros.
        let cases: &[(usize, &[(usize, usize)])] = &[
            (0, &[]),
            (1, &[(0, 1)]),
            (mib, &[]),
            (mib, &[(0, mib)]),
            (
                3 * mib + 17,
                &[(4096, 4096), (2 * mib - 5, 10), (3 * mib + 16, 1)],
            ),
            (5 * mib, &[(mib, mib), (4 * mib - 1, 2)]),
            (2 * mib + 1, &[]),
        ];
        for &(size, data) in cases {
            let mut content = vec![0u8; size];
            for (k, &(at, len)) in data.iter().enumerate() {
                for (i, b) in content[at..at + len].iter_mut().enumerate() {
                    *b = (i % 251) as u8 ^ (k as u8 + 1);
                }
            }
            let want = by_definition(&content);
            // Fed as zeros where the data is not, in pieces that straddle blocks.
            let mut h = Blocks::new();
            let mut pos = 0;
            for &(at, len) in data {
                h.zeros((at - pos) as u64);
                for piece in content[at..at + len].chunks(77_777) {
                    h.data(piece);
                }
                pos = at + len;
            }
            h.zeros((size - pos) as u64);
            assert_eq!(h.len(), size as u64);
            assert_eq!(h.finalize(), want, "size {size}, data {data:?}");
            // Fed as data only, zeros included.
            let mut h = Blocks::new();
            for piece in content.chunks(300_001) {
                h.data(piece);
            }
            assert_eq!(h.finalize(), want, "size {size}, as data");
        }
        // The constant for a block of zeros is the blake3 of 1 MiB of zeros.
        assert_eq!(*zero_block(), blake3::hash(&vec![0u8; mib]));
    }

    #[test]
    fn a_content_hash_checks_every_hash_the_entry_has_and_needs_one() {
        let content = b"some bytes";
        let plain = blake3::hash(content).to_hex().to_string();
        let blocks = by_definition(content);
        let other = blake3::hash(b"other").to_hex().to_string();
        let check = |p: Option<&str>, b: Option<&str>, size: u64| {
            let mut h = ContentHash::new(p, b);
            h.data(content);
            h.matches(size)
        };
        let n = content.len() as u64;
        assert!(check(Some(&plain), None, n));
        assert!(check(None, Some(&blocks), n));
        assert!(check(Some(&plain), Some(&blocks), n));
        assert!(!check(Some(&plain), None, n + 1));
        assert!(!check(None, None, n));
        assert!(!check(Some(&other), None, n));
        assert!(!check(None, Some(&other), n));
        assert!(!check(Some(&plain), Some(&other), n));
        assert!(!check(Some(&other), Some(&blocks), n));
        // The plain hash of a block-hashed entry is not accepted in its place.
        assert!(!check(None, Some(&plain), n));
        assert!(!check(Some(&plain.to_uppercase()), None, n));
    }
}
