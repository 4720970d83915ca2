//! `unrm --show` for people: one deletion as a tree, as `tree` draws one, with sizes, and a
//! line above it saying which deletion it is.
//!
//! ```text
//! deletion 20260610T120000 (deleted 29 min ago, 2026-06-10 12:00:00): 'proj'
//! proj/  3 files, 1.5 KiB
//! ├── a.txt  12 B
//! ├── link -> a.txt
//! └── src/  2 files, 1.4 KiB
//!     ├── main.rs  1.0 KiB
//!     └── util.rs  400 B
//! ```
//! Names are quoted only when a shell would need it (`quote_if_needed`): a name holding a
//! newline or an escape sequence is shown escaped, never sent to the terminal as it is.

use crate::catalog::Deletion;
use crate::manifest::{Entry, Kind};
use crate::output::{count, human};
use crate::paths::{display, split_parent};
use crate::quote::{quote, quote_if_needed};

/// What the tree says of one directory: regular files and their bytes, everything below.
#[derive(Clone, Copy, Default)]
struct Below {
    files: u64,
    bytes: u64,
    any: bool,
}

/// The header line: which deletion (its short id), when, and what it removed.
pub(super) fn header(short_id: &str, when: &str, at: &str, cwd: &[u8], del: &Deletion) -> String {
    let what: Vec<String> = del
        .manifest
        .operands
        .iter()
        .map(|o| quote(&display(cwd, &o.absolute.bytes().unwrap_or_default())))
        .collect();
    format!(
        "deletion {short_id} (deleted {when}, {at}): {}\n",
        what.join(" ")
    )
}

/// The tree lines of everything `del` holds (what it had to leave in place is marked, and
/// sockets, which hold no data, are shown though not archived). Tops are shown by their
/// path relative to `cwd`, what is below them by name, sorted bytewise; `emit` is given the
/// lines as they are made, and stops the drawing when it returns true (a closed pipe).
pub(super) fn draw(del: &Deletion, cwd: &[u8], emit: &mut dyn FnMut(&str) -> bool) {
    let entries: Vec<&Entry> = del
        .manifest
        .entries
        .iter()
        .chain(&del.manifest.not_archived)
        .collect();
    let paths: Vec<Vec<u8>> = entries
        .iter()
        .map(|e| e.path.bytes().unwrap_or_default())
        .collect();
    let parent = crate::paths::parent_indices(&paths);
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); entries.len()];
    let mut tops = Vec::new();
    for (i, p) in parent.iter().enumerate() {
        match p {
            Some(q) if *q != i => children[*q].push(i),
            _ => tops.push(i),
        }
    }
    let by_name = |a: &usize, b: &usize| split_parent(&paths[*a]).1.cmp(split_parent(&paths[*b]).1);
    for c in &mut children {
        c.sort_by(by_name);
    }
    tops.sort_by(|a, b| paths[*a].cmp(&paths[*b]));
    let below = sums(&entries, &children);
    // Depth first without recursion (a deleted tree may be thousands of levels deep): each
    // item is an entry and, for each level above it, whether that level's entry was the
    // last of its siblings.
    let mut stack: Vec<(usize, Vec<bool>)> = tops.iter().rev().map(|&t| (t, Vec::new())).collect();
    while let Some((i, lasts)) = stack.pop() {
        let name = match lasts.is_empty() {
            true => display(cwd, &paths[i]),
            false => split_parent(&paths[i]).1.to_vec(),
        };
        let mut line = prefix(&lasts);
        line.push_str(&describe(entries[i], &name, &below[i], cwd));
        if del.kept.contains(&paths[i]) {
            line.push_str("  (not removed: it could not be, and is still in place)");
        }
        line.push('\n');
        if emit(&line) {
            return;
        }
        let kids = &children[i];
        for (n, &c) in kids.iter().enumerate().rev() {
            let mut l = lasts.clone();
            l.push(n + 1 == kids.len());
            stack.push((c, l));
        }
    }
}

/// `├── `, `└── `, and `│   ` or four blanks for each level above.
fn prefix(lasts: &[bool]) -> String {
    let mut out = String::new();
    if let Some((this, above)) = lasts.split_last() {
        for &last in above {
            out.push_str(if last { "    " } else { "│   " });
        }
        out.push_str(if *this { "└── " } else { "├── " });
    }
    out
}

/// The files and bytes below each entry (itself, for a regular file), summed from the
/// deepest up.
fn sums(entries: &[&Entry], children: &[Vec<usize>]) -> Vec<Below> {
    let mut below = vec![Below::default(); entries.len()];
    // Children come after their parents in a manifest (the walk writes a directory before
    // its contents), but a crafted one need not: sum in an order made from the tree.
    let mut order = Vec::with_capacity(entries.len());
    let mut is_child = vec![false; entries.len()];
    for c in children.iter().flatten() {
        is_child[*c] = true;
    }
    let mut stack: Vec<usize> = (0..entries.len()).filter(|&i| !is_child[i]).collect();
    while let Some(i) = stack.pop() {
        order.push(i);
        stack.extend(&children[i]);
    }
    for &i in order.iter().rev() {
        let mut b = below[i];
        if entries[i].kind == Kind::File {
            b.files += 1;
            b.bytes = b.bytes.saturating_add(entries[i].size);
        }
        for &c in &children[i] {
            b.files += below[c].files;
            b.bytes = b.bytes.saturating_add(below[c].bytes);
            b.any = true;
        }
        below[i] = b;
    }
    below
}

/// One entry as the tree shows it: its name (a directory's with `/`) and what it is.
fn describe(e: &Entry, name: &[u8], below: &Below, cwd: &[u8]) -> String {
    let shown = quote_if_needed(name);
    let target = || e.link.as_ref().and_then(|l| l.bytes()).unwrap_or_default();
    match e.kind {
        Kind::File => format!("{shown}  {}", human(e.size)),
        Kind::Dir if !below.any => format!("{shown}/  empty"),
        Kind::Dir if below.files == 0 => format!("{shown}/  no files"),
        Kind::Dir => format!(
            "{shown}/  {}, {}",
            count(below.files, "file", "files"),
            human(below.bytes)
        ),
        Kind::Symlink => format!("{shown} -> {}", quote_if_needed(&target())),
        Kind::Hardlink => format!(
            "{shown} => {}  (hard link)",
            quote_if_needed(&display(cwd, &target()))
        ),
        Kind::Fifo => format!("{shown}  (fifo)"),
        Kind::Char | Kind::Block => format!(
            "{shown}  ({} device {}, {})",
            if e.kind == Kind::Char {
                "character"
            } else {
                "block"
            },
            e.rdev_major.unwrap_or(0),
            e.rdev_minor.unwrap_or(0)
        ),
        Kind::Socket => format!("{shown}  (socket: not archived, a socket holds no data)"),
    }
}

#[cfg(test)]
mod tests {
    use super::prefix;

    #[test]
    fn the_prefix_draws_a_bar_for_each_level_that_has_more_below() {
        assert_eq!(prefix(&[]), "");
        assert_eq!(prefix(&[false]), "├── ");
        assert_eq!(prefix(&[true]), "└── ");
        assert_eq!(prefix(&[false, true]), "│   └── ");
        assert_eq!(prefix(&[true, false]), "    ├── ");
    }
}
