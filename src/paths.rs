//! Paths as bytes: normal absolute paths, their parents, how they are shown, and
//! [`PathMap`], asked "which key is this path or holds it?".
//!
//! Walking up a path and probing each parent costs one hash of each prefix: for an entry
//! `k` levels down that is O(k²) bytes, and a 30,000-level tree has 30,000 such entries.
//! A key can only be a prefix whose length some key has, so [`PathMap::nearest`] probes
//! those lengths alone: one probe per distinct key length at most, and usually one.

use std::collections::{BTreeSet, HashMap};

/// Check that a manifest path is absolute and normal; anything else is a crafted or damaged
/// manifest and is never restored.
pub fn normal_absolute(path: &[u8]) -> bool {
    let Some(rest) = path.strip_prefix(b"/") else {
        return false;
    };
    !rest.is_empty()
        && !path.contains(&0)
        && rest
            .split(|&b| b == b'/')
            .all(|c| !c.is_empty() && c != b"." && c != b"..")
}

/// `(parent, name)` of a normal absolute path; the parent of `/x` is `/`.
pub fn split_parent(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(0) => (b"/", &path[1..]),
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (b".", path),
    }
}

/// For each of `paths` (normal absolute), the index of its parent among them: `None` when
/// the parent is not one of them, and for `/`, which is its own parent.
pub fn parent_indices(paths: &[Vec<u8>]) -> Vec<Option<usize>> {
    let index: std::collections::HashMap<&[u8], usize> = paths
        .iter()
        .enumerate()
        .map(|(i, p)| (p.as_slice(), i))
        .collect();
    paths
        .iter()
        .map(|p| index.get(split_parent(p).0).copied().filter(|_| p != b"/"))
        .collect()
}

/// Whether unrm reads a NAME as a glob (`*`, `?`, `[`), matched against deleted paths.
pub fn has_glob(name: &[u8]) -> bool {
    name.iter().any(|b| matches!(b, b'*' | b'?' | b'['))
}

/// Whether `path` is `root` or below it.
pub fn is_under(path: &[u8], root: &[u8]) -> bool {
    if root == b"/" {
        return path.starts_with(b"/");
    }
    path.starts_with(root) && (path.len() == root.len() || path[root.len()] == b'/')
}

/// A path as the user would type it from `cwd`: relative when it is below it.
pub fn display(cwd: &[u8], path: &[u8]) -> Vec<u8> {
    if cwd != b"/" && is_under(path, cwd) && path.len() > cwd.len() {
        return path[cwd.len() + 1..].to_vec();
    }
    path.to_vec()
}

/// `parent/name`.
pub fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = parent.to_vec();
    if !p.ends_with(b"/") {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

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
    fn parents_and_containment() {
        assert_eq!(split_parent(b"/x"), (&b"/"[..], &b"x"[..]));
        assert_eq!(split_parent(b"/a/b/c"), (&b"/a/b"[..], &b"c"[..]));
        assert!(is_under(b"/a/b", b"/a"));
        assert!(is_under(b"/a", b"/a"));
        assert!(!is_under(b"/ab", b"/a"));
        assert!(is_under(b"/ab", b"/"));
    }

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
