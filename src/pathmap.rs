//! Absolute paths as keys, asked "which key is this path or holds it?".
//!
//! Walking up a path and probing each parent costs one hash of each prefix: for an entry
//! `k` levels down that is O(k²) bytes, and a 30,000-level tree has 30,000 such entries.
//! A key can only be a prefix whose length some key has, so [`PathMap::nearest`] probes
//! those lengths alone: one probe per distinct key length at most, and usually one.

use std::collections::{BTreeSet, HashMap};

/// A map from normal absolute paths (no trailing `/`, no `//`) to values.
#[derive(Debug)]
pub struct PathMap<V> {
    map: HashMap<Vec<u8>, V>,
    lengths: BTreeSet<usize>,
    /// Hash probes made, to prove the cost in tests.
    #[cfg(test)]
    pub probes: std::cell::Cell<u64>,
}

impl<V> Default for PathMap<V> {
    fn default() -> Self {
        PathMap {
            map: HashMap::new(),
            lengths: BTreeSet::new(),
            #[cfg(test)]
            probes: std::cell::Cell::new(0),
        }
    }
}

impl<V> PathMap<V> {
    /// Add `path` with `value`, unless `path` is already a key (the first value stays).
    pub fn insert_first(&mut self, path: Vec<u8>, value: V) {
        self.lengths.insert(path.len());
        self.map.entry(path).or_insert(value);
    }

    pub fn get(&self, path: &[u8]) -> Option<&V> {
        self.map.get(path)
    }

    pub fn contains(&self, path: &[u8]) -> bool {
        self.map.contains_key(path)
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The deepest key that is `path` or one of its parents (`/` itself is never one),
    /// with its value.
    pub fn nearest<'p>(&self, path: &'p [u8]) -> Option<(&'p [u8], &V)> {
        if path.len() < 2 {
            return None;
        }
        for &len in self.lengths.range(2..=path.len()).rev() {
            if len < path.len() && path[len] != b'/' {
                continue;
            }
            #[cfg(test)]
            self.probes.set(self.probes.get() + 1);
            let head = &path[..len];
            if let Some(v) = self.map.get(head) {
                return Some((head, v));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deepest_key_holding_a_path_is_found() {
        let mut m = PathMap::default();
        m.insert_first(b"/a".to_vec(), 1);
        m.insert_first(b"/a/b/c".to_vec(), 2);
        m.insert_first(b"/a/b/c".to_vec(), 3);
        m.insert_first(b"/ab".to_vec(), 4);
        assert_eq!(m.nearest(b"/a/b/c/d"), Some((&b"/a/b/c"[..], &2)));
        assert_eq!(m.nearest(b"/a/b/c"), Some((&b"/a/b/c"[..], &2)));
        assert_eq!(m.nearest(b"/a/b/cd"), Some((&b"/a"[..], &1)));
        assert_eq!(m.nearest(b"/a/b"), Some((&b"/a"[..], &1)));
        assert_eq!(m.nearest(b"/abc"), None);
        assert_eq!(m.nearest(b"/ab/c"), Some((&b"/ab"[..], &4)));
        assert_eq!(m.nearest(b"/"), None);
        assert_eq!(m.nearest(b"/b"), None);
        assert!(m.contains(b"/ab") && !m.contains(b"/a/b"));
    }

    #[test]
    fn a_deep_path_costs_one_probe_per_key_length_not_one_per_level() {
        let mut m = PathMap::default();
        m.insert_first(b"/t".to_vec(), ());
        let mut path = b"/t".to_vec();
        for _ in 0..10_000 {
            path.extend_from_slice(b"/d");
            assert!(m.nearest(&path).is_some());
        }
        assert_eq!(m.probes.get(), 10_000);
    }
}
