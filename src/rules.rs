//! rm's options and decision rules and texts, pure functions table-tested against GNU
//! coreutils 9.1.
//!
//! The command line (`cli.rs`) fills [`Options`]; the walk (`walk.rs`) does the I/O and asks
//! these functions what rm would do or say.

use std::ffi::OsString;

use crate::quote::quote;

/// When rm asks before removing (GNU's `RMI_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InteractiveMode {
    /// `-f`, `--interactive=never`: never ask.
    Never,
    /// The default, and `-I`: ask only about write-protected files on a tty.
    Sometimes,
    /// `-i`: ask about every file.
    Always,
}

/// What the command line asks for, with every rm rule about option order already applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    pub interactive: InteractiveMode,
    /// `-f`: missing files are not errors.
    pub ignore_missing: bool,
    /// `-I`: one prompt before starting, for more than three operands or with `-r`.
    pub prompt_once: bool,
    pub recursive: bool,
    pub remove_empty_dirs: bool,
    pub verbose: bool,
    pub one_file_system: bool,
    pub preserve_root: bool,
    pub preserve_all_root: bool,
    /// `---presume-input-tty`: behave as though stdin were a terminal.
    pub presume_input_tty: bool,
    /// `--no-archive`: delete for real, keeping nothing.
    pub no_archive: bool,
    /// `--sync`: archive before returning even when instant mode is on.
    pub sync: bool,
    pub operands: Vec<OsString>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            interactive: InteractiveMode::Sometimes,
            ignore_missing: false,
            prompt_once: false,
            recursive: false,
            remove_empty_dirs: false,
            verbose: false,
            one_file_system: false,
            preserve_root: true,
            preserve_all_root: false,
            presume_input_tty: false,
            no_archive: false,
            sync: false,
            operands: Vec::new(),
        }
    }
}

/// What fts does to an operand before using it: two or more trailing slashes become one
/// (only when the name is longer than two bytes, so `//` stays `//`).
pub fn fts_trim(operand: &[u8]) -> &[u8] {
    let mut len = operand.len();
    if len > 2 && operand[len - 1] == b'/' {
        while len > 1 && operand[len - 2] == b'/' {
            len -= 1;
        }
    }
    &operand[..len]
}

/// gnulib's `last_component`: the last name in a path, trailing slashes included.
pub fn last_component(path: &[u8]) -> &[u8] {
    let mut base = 0;
    while base < path.len() && path[base] == b'/' {
        base += 1;
    }
    let mut last_was_slash = false;
    for (i, &b) in path.iter().enumerate().skip(base) {
        if b == b'/' {
            last_was_slash = true;
        } else if last_was_slash {
            base = i;
            last_was_slash = false;
        }
    }
    &path[base..]
}

/// rm's `dot_or_dotdot`: `.` or `..`, possibly followed by slashes.
pub fn dot_or_dotdot(name: &[u8]) -> bool {
    if name.first() != Some(&b'.') {
        return false;
    }
    let sep_index = if name.get(1) == Some(&b'.') { 2 } else { 1 };
    matches!(name.get(sep_index), None | Some(b'/'))
}

/// The path fts shows for a child: the parent's path, a slash unless it ends in one, the name.
pub fn child_path(parent: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(parent.len() + 1 + name.len());
    p.extend_from_slice(parent);
    if p.last() != Some(&b'/') {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

/// [`child_path`] in place: `path` becomes the child's path (truncate it back to go up).
pub fn push_child(path: &mut Vec<u8>, name: &[u8]) {
    if path.last() != Some(&b'/') {
        path.push(b'/');
    }
    path.extend_from_slice(name);
}

/// `file_name_concat(path, "..")` as rm's --preserve-root=all builds it.
pub fn parent_probe(path: &[u8]) -> Vec<u8> {
    child_path(path, b"..")
}

/// `path` made absolute against `cwd` and normalised lexically: `.`, `..` and repeated
/// slashes are resolved as text, no symlink is looked at.
pub fn lexical_absolute(cwd: &[u8], name: &[u8]) -> Vec<u8> {
    let joined = if name.starts_with(b"/") {
        name.to_vec()
    } else {
        let mut j = cwd.to_vec();
        j.push(b'/');
        j.extend_from_slice(name);
        j
    };
    let mut parts: Vec<&[u8]> = Vec::new();
    for c in joined.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    let mut out = Vec::new();
    for p in parts {
        out.push(b'/');
        out.extend_from_slice(p);
    }
    if out.is_empty() {
        out.push(b'/');
    }
    out
}

/// coreutils' `file_type`, as the prompts name things.
pub fn file_type(mode: u32, size: u64) -> &'static str {
    match mode & libc::S_IFMT {
        libc::S_IFREG if size == 0 => "regular empty file",
        libc::S_IFREG => "regular file",
        libc::S_IFDIR => "directory",
        libc::S_IFLNK => "symbolic link",
        libc::S_IFIFO => "fifo",
        libc::S_IFSOCK => "socket",
        libc::S_IFCHR => "character special file",
        libc::S_IFBLK => "block special file",
        _ => "weird file",
    }
}

/// The `-I` question, asked once before anything is removed.
pub fn prompt_once_text(prog: &str, n: usize, recursive: bool) -> String {
    let noun = if n == 1 { "argument" } else { "arguments" };
    let how = if recursive { " recursively" } else { "" };
    format!("{prog}: remove {n} {noun}{how}? ")
}

/// Whether `-I` asks at all.
pub fn prompt_once_applies(n: usize, recursive: bool) -> bool {
    recursive || n > 3
}

/// The `-i` (or write-protected) question about one object.
pub fn prompt_text(
    prog: &str,
    display: &[u8],
    descend: bool,
    write_protected: bool,
    kind: &str,
) -> String {
    let wp = if write_protected {
        "write-protected "
    } else {
        ""
    };
    if descend {
        format!("{prog}: descend into {wp}directory {}? ", quote(display))
    } else {
        format!("{prog}: remove {wp}{kind} {}? ", quote(display))
    }
}

/// The two lines rm prints for `rm -r /` and its aliases.
pub fn dangerous_root_lines(display: &[u8]) -> Vec<String> {
    let first = if display == b"/" {
        format!(
            "it is dangerous to operate recursively on {}",
            quote(display)
        )
    } else {
        format!(
            "it is dangerous to operate recursively on {} (same as {})",
            quote(display),
            quote(b"/")
        )
    };
    vec![
        first,
        "use --no-preserve-root to override this failsafe".to_string(),
    ]
}

pub fn refusing_dot_text(display: &[u8]) -> String {
    format!(
        "refusing to remove {} or {} directory: skipping {}",
        quote(b"."),
        quote(b".."),
        quote(display)
    )
}

pub fn other_device_text(display: &[u8]) -> String {
    format!(
        "skipping {}, since it's on a different device",
        quote(display)
    )
}

/// The answer to a prompt: GNU's `yesno` accepts what the locale's YESEXPR matches, which in
/// the C locale is anything starting with `y` or `Y`.
pub fn is_yes(answer: &[u8], yes_chars: &[u8]) -> bool {
    answer.first().is_some_and(|c| yes_chars.contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fts_trims_trailing_slashes_like_gnulib() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"d", b"d"),
            (b"d/", b"d/"),
            (b"e//", b"e/"),
            (b"e///", b"e/"),
            (b"//", b"//"),
            (b"///", b"/"),
            (b"/", b"/"),
        ];
        for (input, want) in cases {
            assert_eq!(
                fts_trim(input),
                *want,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn dot_and_dotdot_are_recognised_in_the_last_component() {
        for yes in [
            &b"."[..],
            b"..",
            b"./",
            b"../",
            b"a/.",
            b"a/..",
            b"./.",
            b"nd/..",
            b"/..",
        ] {
            assert!(
                dot_or_dotdot(last_component(yes)),
                "{:?}",
                String::from_utf8_lossy(yes)
            );
        }
        for no in [&b"a"[..], b".a", b"..a", b"/", b"//", b"a/.b", b"..."] {
            assert!(
                !dot_or_dotdot(last_component(no)),
                "{:?}",
                String::from_utf8_lossy(no)
            );
        }
    }

    #[test]
    fn child_paths_never_double_a_slash() {
        assert_eq!(child_path(b"d/", b"a"), b"d/a");
        assert_eq!(child_path(b"d", b"a"), b"d/a");
        assert_eq!(child_path(b"/", b"a"), b"/a");
        assert_eq!(parent_probe(b"m"), b"m/..");
    }

    #[test]
    fn prompt_texts_match_gnu() {
        assert_eq!(prompt_once_text("rm", 4, false), "rm: remove 4 arguments? ");
        assert_eq!(
            prompt_once_text("rm", 1, true),
            "rm: remove 1 argument recursively? "
        );
        assert!(!prompt_once_applies(3, false));
        assert!(prompt_once_applies(4, false));
        assert!(prompt_once_applies(1, true));
        assert_eq!(
            prompt_text("rm", b"a", false, false, file_type(libc::S_IFREG, 0)),
            "rm: remove regular empty file 'a'? "
        );
        assert_eq!(
            prompt_text("rm", b"x", false, true, file_type(libc::S_IFREG, 3)),
            "rm: remove write-protected regular file 'x'? "
        );
        assert_eq!(
            prompt_text("rm", b"d", true, false, "directory"),
            "rm: descend into directory 'd'? "
        );
        assert_eq!(file_type(libc::S_IFIFO, 0), "fifo");
        assert_eq!(file_type(libc::S_IFLNK, 3), "symbolic link");
    }

    #[test]
    fn root_and_dot_messages_match_gnu() {
        assert_eq!(
            dangerous_root_lines(b"/")[0],
            "it is dangerous to operate recursively on '/'"
        );
        assert_eq!(
            dangerous_root_lines(b"//")[0],
            "it is dangerous to operate recursively on '//' (same as '/')"
        );
        assert_eq!(
            refusing_dot_text(b"."),
            "refusing to remove '.' or '..' directory: skipping '.'"
        );
        assert!(is_yes(b"yes", b"yY"));
        assert!(is_yes(b"Y", b"yY"));
        assert!(!is_yes(b"", b"yY"));
        assert!(!is_yes(b"n", b"yY"));
    }
}
