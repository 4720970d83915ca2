//! The plan the walk builds: one [`Node`] per object met, linked to its parent and
//! siblings by index (a tree as deep as any the walk meets costs no recursion), and what
//! becomes of each ([`Fate`]).

use std::collections::HashMap;

use crate::rules;
use crate::sys::{self, Stat};

/// What becomes of a planned object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Archive it, then unlink it.
    Remove,
    /// Leave it (declined, refused, failed, or an ancestor of such).
    Keep,
}

/// No node, for the links between nodes ([`Node::parent`], the children).
const NO_NODE: u32 = u32::MAX;

/// A node index as a link: 4 bytes, not the 16 of an `Option<usize>`. [`super::Walker::push`]
/// makes sure every index fits.
fn link(idx: Option<usize>) -> u32 {
    idx.and_then(|i| u32::try_from(i).ok()).unwrap_or(NO_NODE)
}

fn unlink(l: u32) -> Option<usize> {
    (l != NO_NODE).then_some(l as usize)
}

/// One object met by the walk. Kept small (a directory of 200,000 files is 200,000 of
/// them): the tree is held as links, not a list of children per directory.
#[derive(Debug)]
pub struct Node {
    pub(super) parent: u32,
    pub(super) first_child: u32,
    pub(super) last_child: u32,
    pub(super) next_sibling: u32,
    /// The name to use with the parent's descriptor; for an operand, its (trimmed) path,
    /// used relative to the current directory as rm does.
    pub name: sys::Name,
    pub st: Stat,
    pub fate: Fate,
    pub operand: usize,
    /// Set for a directory that could not be read: its errno, reported if rmdir fails.
    pub unreadable: Option<i32>,
    /// False for what is walked but cannot itself be removed: `link/` (the symlink's target
    /// directory) and `/`.
    pub archive_self: bool,
    /// Also planned under an earlier operand, whose unlink phase may or may not remove it
    /// (a directory with an unreadable one inside): if it is gone when its turn comes, that
    /// operand removed it, and rm would not have met it.
    pub repeat: bool,
    /// On a pseudo-filesystem (sysfs, procfs, cgroupfs...: [`sys::is_pseudo_fs`]): the
    /// kernel's state, not data. It is not archived; the unlink phase does what rm does and
    /// says what rm says.
    pub pseudo: bool,
    /// Immutable or append-only (`chattr +i`/`+a`): its unlink, or its entries', fails.
    pub pinned: bool,
}

impl Node {
    /// A node not linked to any other yet (see [`super::Walker::push`]).
    pub(super) fn new(parent: Option<usize>, name: sys::Name, st: Stat, operand: usize) -> Node {
        Node {
            parent: link(parent),
            first_child: NO_NODE,
            last_child: NO_NODE,
            next_sibling: NO_NODE,
            name,
            st,
            fate: Fate::Remove,
            operand,
            unreadable: None,
            archive_self: true,
            repeat: false,
            pseudo: false,
            pinned: false,
        }
    }

    /// The directory it is in, unless it is an operand.
    pub fn parent(&self) -> Option<usize> {
        unlink(self.parent)
    }

    pub fn has_children(&self) -> bool {
        self.first_child != NO_NODE
    }
}

/// A node's children, in the order they were met.
pub struct Children<'p> {
    nodes: &'p [Node],
    next: u32,
}

impl Iterator for Children<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        let i = unlink(self.next)?;
        self.next = self.nodes.get(i).map_or(NO_NODE, |n| n.next_sibling);
        Some(i)
    }
}

/// The result of planning every operand.
#[derive(Debug, Default)]
pub struct Plan {
    pub nodes: Vec<Node>,
    pub roots: Vec<usize>,
    /// The absolute path of each root node. Other nodes' paths are derived from their
    /// parents' (50,000 nodes would otherwise hold 100,000 path copies).
    pub root_abs: HashMap<usize, Vec<u8>>,
    /// Where a root is recorded in the archive when that is not where it is now: a staged
    /// deletion (instant mode) is read from the store's staging area and archived under
    /// the path it was deleted from.
    pub archived_as: HashMap<usize, Vec<u8>>,
    /// Whether any error was reported (exit status 1).
    pub failed: bool,
    /// Regular files to hash again just before their unlink, with the hash they were
    /// archived with: they were open for writing elsewhere when they were read (a write
    /// through a shared mapping changes neither mtime nor ctime), or the kernel would not
    /// say whether they were.
    pub recheck: HashMap<usize, ArchivedHash>,
}

/// The content hash a file was archived with, as its manifest entry records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArchivedHash {
    /// Its `blake3`, or, for a file stored sparse, its `blake3_blocks`.
    pub hash: [u8; 32],
    pub blocks: bool,
}

impl Plan {
    /// Link the node about to be pushed (at index `nodes.len()`) as the last child of
    /// `parent`, and return its index.
    pub(super) fn link_child(&mut self, parent: Option<usize>) -> usize {
        let idx = self.nodes.len();
        // Four billion nodes would not fit in memory anyway.
        let this = link(Some(idx));
        if this == NO_NODE {
            crate::alloc::exhausted();
        }
        if let Some(p) = parent {
            match unlink(self.nodes[p].last_child) {
                Some(last) => self.nodes[last].next_sibling = this,
                None => self.nodes[p].first_child = this,
            }
            self.nodes[p].last_child = this;
        }
        idx
    }

    /// The children of node `idx`.
    pub fn children(&self, idx: usize) -> Children<'_> {
        Children {
            nodes: &self.nodes,
            next: self.nodes.get(idx).map_or(NO_NODE, |n| n.first_child),
        }
    }

    /// The children after `idx` in its directory.
    pub fn siblings_after(&self, idx: usize) -> Children<'_> {
        Children {
            nodes: &self.nodes,
            next: self.nodes.get(idx).map_or(NO_NODE, |n| n.next_sibling),
        }
    }

    /// The path rm prints for a node (`d/s/c`).
    pub fn display(&self, idx: usize) -> Vec<u8> {
        self.path_of(idx, |root| self.nodes[root].name.as_bytes())
    }

    /// The absolute path a node is archived under.
    pub fn abs(&self, idx: usize) -> Vec<u8> {
        self.path_of(idx, |root| {
            self.root_abs
                .get(&root)
                .map(Vec::as_slice)
                .unwrap_or_default()
        })
    }

    /// The absolute path a node is recorded under in the archive and its manifest: where
    /// it was deleted from ([`Plan::archived_as`]), which is where it is ([`Plan::abs`])
    /// unless it was staged.
    pub fn recorded(&self, idx: usize) -> Vec<u8> {
        self.path_of(idx, |root| {
            self.archived_as
                .get(&root)
                .or_else(|| self.root_abs.get(&root))
                .map(Vec::as_slice)
                .unwrap_or_default()
        })
    }

    /// A node's path: its root's `start`, then the names below it (a loop, not a recursion:
    /// trees are deeper than the stack).
    fn path_of<'s>(&'s self, idx: usize, start: impl FnOnce(usize) -> &'s [u8]) -> Vec<u8> {
        let mut chain = vec![idx];
        let mut cur = idx;
        while let Some(p) = self.nodes[cur].parent() {
            chain.push(p);
            cur = p;
        }
        let mut path = start(cur).to_vec();
        for &i in chain.iter().rev().skip(1) {
            rules::push_child(&mut path, self.nodes[i].name.as_bytes());
        }
        path
    }

    /// Keep a node and, silently, every ancestor of it.
    pub fn keep_with_ancestors(&mut self, mut idx: usize) {
        self.nodes[idx].fate = Fate::Keep;
        while let Some(p) = self.nodes[idx].parent() {
            if self.nodes[p].fate == Fate::Keep {
                break;
            }
            self.nodes[p].fate = Fate::Keep;
            idx = p;
        }
    }

    /// Whether anything in the subtree of `idx` (itself included) is to be removed.
    pub fn subtree_has_removal(&self, idx: usize) -> bool {
        let mut stack = vec![idx];
        while let Some(i) = stack.pop() {
            if self.nodes[i].fate == Fate::Remove {
                return true;
            }
            stack.extend(self.children(i));
        }
        false
    }

    /// Keep a node, all its descendants, and its ancestors.
    pub fn keep_subtree(&mut self, idx: usize) {
        self.keep_below(idx);
        self.keep_with_ancestors(idx);
    }

    /// Keep a node and all its descendants, silently; its ancestors are left as they are.
    /// For an operand instant mode staged, it takes it out of the rest of the run: nothing
    /// under it is archived, unlinked or reported.
    pub fn keep_below(&mut self, idx: usize) {
        let mut stack = vec![idx];
        while let Some(i) = stack.pop() {
            self.nodes[i].fate = Fate::Keep;
            stack.extend(self.children(i));
        }
    }

    /// The nodes to archive, parents before children.
    pub fn to_archive(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.nodes.len()).filter(|&i| {
            let n = &self.nodes[i];
            n.fate == Fate::Remove && n.archive_self && !n.pseudo
        })
    }
}
