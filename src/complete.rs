//! `unrm --complete-names SHELL`: the deleted names the shell completions offer.
//!
//! A deleted name is whatever bytes the user's file had: `$(touch PWNED)`, quotes, spaces,
//! newlines, globs, a leading `-`, bytes that are not UTF-8. The completion scripts must
//! never hand such a name to anything that expands it (bash's `compgen -W` does: it ran
//! `$(...)` in names), so the work is done here and the scripts only copy words:
//!
//! - zsh and fish get the names as they are, each ended by a NUL; `compadd -a` and fish's
//!   `complete -a` quote what they insert themselves. (fish cannot take a name holding a
//!   TAB, see [`nul_list`]; and it lists `./-x` only once a `.` is typed, as hidden files.)
//! - bash gets finished replies: bash inserts a reply into the line as it is, so each one is
//!   the name already shell-quoted, as the continuation of the word being completed (after
//!   `'a b`, the reply `a b c'` closes the quote the user opened), ended by a NUL.
//!
//! Every name offered resolves back to the deleted object: a name starting with `-` is
//! offered as `./-x` (relative to the cwd) or by its absolute path, never as an option; a
//! bare name that unrm would read as a glob is offered by its path instead.

use crate::catalog::{unique_prefixes, Catalog, Header, SHORT_ID_MIN};

/// At most this many deletions (newest first) feed completion, so Tab stays instant.
const DELETIONS: usize = 2000;
/// At most this many manifests (the newest deletions holding the directory) are read for
/// the names inside deleted trees: a 50,000-file deletion's takes ~0.2 s to parse, and Tab
/// must stay quick when the same tree was deleted many times.
const TREES: usize = 4;

/// What a Tab asks for, read from the command line up to the cursor.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Request {
    /// The word being completed so far, its quoting removed (after `--show=`, the value).
    pub word: Vec<u8>,
    /// `--show=` when the word holds the option and its value together: bash's replies
    /// continue the whole word; zsh and fish complete the value alone.
    pub lead: Vec<u8>,
    /// The option whose value the word is.
    pub value_of: Option<ValueOf>,
    /// Whether `--purge` is on the line: its NAMEs may be ids.
    pub purging: bool,
}

/// Options whose value completes from the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueOf {
    /// `--show ID|NAME`.
    Show,
    /// `--at ID|TIME`.
    At,
    /// `--cat PATH`: a NAME, as what is restored.
    Cat,
}

impl ValueOf {
    /// The long options, as typed, whose value is completed here.
    pub const LONG: [&'static str; 3] = ["show", "at", "cat"];

    fn from_option(word: &[u8]) -> Option<ValueOf> {
        match word {
            b"--show" => Some(ValueOf::Show),
            b"--at" => Some(ValueOf::At),
            b"--cat" => Some(ValueOf::Cat),
            _ => None,
        }
    }
}

/// The request `line` (the command line up to the cursor) makes.
pub fn request(line: &[u8]) -> Request {
    let (before, current) = split_words(line);
    let (word, _) = dequote(Quoting::Plain, current);
    let mut req = Request {
        purging: before.iter().any(|w| *w == b"--purge"),
        ..Request::default()
    };
    let joined = word
        .iter()
        .position(|&b| b == b'=')
        .and_then(|eq| ValueOf::from_option(&word[..eq]).map(|v| (eq, v)));
    if let Some((eq, v)) = joined {
        req.lead = word[..=eq].to_vec();
        req.word = word[eq + 1..].to_vec();
        req.value_of = Some(v);
    } else {
        // `--` ends the options: what follows is a NAME whatever it looks like.
        let options_end = before.iter().position(|w| *w == b"--");
        if options_end.is_none() {
            req.value_of = before.last().and_then(|w| ValueOf::from_option(w));
        }
        req.word = word;
    }
    req
}

/// What to offer for `req` from the cwd `cwd`, newest deletions first: short ids for
/// `--at`; ids and names for `--show` (and NAMEs of `--purge`); else the names, and, once
/// the word holds a `/`, what was inside the deleted directory it names
/// ([`names_inside`]). Without `req.lead`: bash's replies put it back.
pub fn offer(catalog: &Catalog, cwd: &[u8], req: &Request) -> Vec<Vec<u8>> {
    let headers = &catalog.headers[..catalog.headers.len().min(DELETIONS)];
    let ids = || -> Vec<Vec<u8>> {
        let all: Vec<&str> = catalog.headers.iter().map(|h| h.id.as_str()).collect();
        unique_prefixes(&all, SHORT_ID_MIN)
            .into_iter()
            .take(DELETIONS)
            .map(|id| id.as_bytes().to_vec())
            .collect()
    };
    match req.value_of {
        Some(ValueOf::At) => ids(),
        Some(ValueOf::Show) => [ids(), names(headers, cwd)].concat(),
        Some(ValueOf::Cat) => [names(headers, cwd), names_inside(catalog, cwd, &req.word)].concat(),
        None => {
            let mut out = names(headers, cwd);
            out.extend(names_inside(catalog, cwd, &req.word));
            if req.purging {
                out.extend(ids());
            }
            out
        }
    }
}

/// The objects that were directly inside the directory `word` names up to its last `/`,
/// when that directory is (inside) a deleted tree: `build/obj/` offers `build/obj/a.o` and
/// `build/obj/sub/`, one level at a time as file completion does. Each is offered as typed
/// before the last `/`, so it resolves back to the same path. A name unrm would read as a
/// glob is not offered (it would match others too): `unrm --show` lists it.
pub fn names_inside(catalog: &Catalog, cwd: &[u8], word: &[u8]) -> Vec<Vec<u8>> {
    let Some(slash) = word.iter().rposition(|&b| b == b'/') else {
        return Vec::new();
    };
    let typed_dir = &word[..=slash];
    let dir = crate::rules::lexical_absolute(cwd, typed_dir);
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    let holding = (0..catalog.len().min(DELETIONS)).filter(|&d| {
        catalog.headers[d].operands.iter().any(|op| {
            op.absolute
                .bytes()
                .is_some_and(|abs| crate::paths::is_under(&dir, &abs))
        })
    });
    for d in holding.take(TREES) {
        let Ok(del) = catalog.load(d) else {
            continue;
        };
        for e in del.removed() {
            let Some(path) = e.path.bytes() else {
                continue;
            };
            let (parent, name) = crate::paths::split_parent(&path);
            if parent != dir.as_slice() || name.is_empty() || crate::paths::has_glob(name) {
                continue;
            }
            let mut offered = [typed_dir, name].concat();
            if e.kind == crate::manifest::Kind::Dir {
                offered.push(b'/');
            }
            if seen.insert(offered.clone()) {
                out.push(offered);
            }
        }
    }
    out
}

/// The names to offer from the cwd `cwd`: each operand's path relative to the cwd (when it
/// was under it) and its last component, in the forms that resolve back to it; no repeats.
pub fn names(headers: &[Header], cwd: &[u8]) -> Vec<Vec<u8>> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    let mut prefix = cwd.to_vec();
    if !prefix.ends_with(b"/") {
        prefix.push(b'/');
    }
    for h in headers.iter().take(DELETIONS) {
        for op in &h.operands {
            let Some(abs) = op.absolute.bytes() else {
                continue;
            };
            let mut candidates: Vec<Vec<u8>> = Vec::new();
            let rel = abs
                .strip_prefix(prefix.as_slice())
                .filter(|r| !r.is_empty());
            if let Some(rel) = rel {
                candidates.push(if rel.starts_with(b"-") {
                    [b"./", rel].concat()
                } else {
                    rel.to_vec()
                });
            }
            if let Some(base) = abs.rsplit(|&b| b == b'/').find(|c| !c.is_empty()) {
                if bare_name_resolves(base) {
                    candidates.push(base.to_vec());
                } else if rel.is_none() {
                    candidates.push(abs.clone());
                }
            }
            for c in candidates {
                if !c.is_empty() && seen.insert(c.clone()) {
                    out.push(c);
                }
            }
        }
    }
    out
}

/// Whether unrm reads a bare NAME as that name (not as an option or a glob).
fn bare_name_resolves(name: &[u8]) -> bool {
    !name.starts_with(b"-") && !crate::paths::has_glob(name)
}

/// Each name followed by a NUL, for zsh and fish. fish reads a TAB in a candidate as the
/// start of its description and has no way to escape it, so for fish a name holding a TAB is
/// left out rather than offered cut short (`tab` for `tab<TAB>here`): restore it by typing
/// it, or from `unrm --list`.
pub fn nul_list(names: &[Vec<u8>], shell: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for n in names {
        if shell == "fish" && n.contains(&b'\t') {
            continue;
        }
        out.extend_from_slice(n);
        out.push(0);
    }
    out
}

/// Where the word being completed stands: outside quotes, or inside `'`, `"` or `$'`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Quoting {
    Plain,
    Single,
    Double,
    Dollar,
}

/// bash's replies for the word readline completes. `text` is what readline will replace
/// (the function's `$2`: the word up to the cursor, without an opening quote); `line` is
/// the command line up to the cursor (`${COMP_LINE:0:COMP_POINT}`), which tells whether a
/// quote is open and what the word held before `text` (COMP_WORDBREAKS split `a=b` and
/// `a:b`). Each reply is the rest of a matching name, quoted to continue that word.
pub fn bash_replies(names: &[Vec<u8>], text: &[u8], line: &[u8]) -> Vec<u8> {
    let word = current_word(line);
    let lead = word.strip_suffix(text).unwrap_or(b"");
    let (lead_bytes, quoting) = dequote(Quoting::Plain, lead);
    let (text_bytes, _) = dequote(quoting, text);
    let wanted = [lead_bytes.as_slice(), text_bytes.as_slice()].concat();
    let mut out = Vec::new();
    for name in names {
        if let Some(rest) = name
            .strip_prefix(wanted.as_slice())
            .map(|_| &name[lead_bytes.len()..])
        {
            out.extend_from_slice(&continue_word(quoting, rest));
            out.push(0);
        }
    }
    out
}

/// The last shell word of `line`: what follows the last blank or operator outside quotes.
fn current_word(line: &[u8]) -> &[u8] {
    split_words(line).1
}

/// The words of the last command in `line` before the one being typed (dequoted), and that
/// one as typed: words end at blanks outside quotes, and a command at an operator.
fn split_words(line: &[u8]) -> (Vec<Vec<u8>>, &[u8]) {
    let mut quoting = Quoting::Plain;
    let mut start = 0;
    let mut before = Vec::new();
    let mut i = 0;
    while i < line.len() {
        let b = line[i];
        match quoting {
            Quoting::Plain => match b {
                b'\\' => i += 1,
                b'\'' if i > 0 && line[i - 1] == b'$' => quoting = Quoting::Dollar,
                b'\'' => quoting = Quoting::Single,
                b'"' => quoting = Quoting::Double,
                b' ' | b'\t' | b'\n' => {
                    if i > start {
                        before.push(dequote(Quoting::Plain, &line[start..i]).0);
                    }
                    start = i + 1
                }
                b';' | b'&' | b'|' | b'(' | b')' | b'<' | b'>' => {
                    before.clear();
                    start = i + 1
                }
                _ => {}
            },
            Quoting::Single if b == b'\'' => quoting = Quoting::Plain,
            Quoting::Double | Quoting::Dollar if b == b'\\' => i += 1,
            Quoting::Double if b == b'"' => quoting = Quoting::Plain,
            Quoting::Dollar if b == b'\'' => quoting = Quoting::Plain,
            _ => {}
        }
        i += 1;
    }
    (before, &line[start.min(line.len())..])
}

/// What a piece of a shell word means, read from `quoting` on: the bytes, and the quoting
/// in force at its end. Expansions (`$x`, `~`) are taken literally: a name holding them
/// only matches when the user quoted them.
fn dequote(mut quoting: Quoting, s: &[u8]) -> (Vec<u8>, Quoting) {
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        let b = s[i];
        match quoting {
            Quoting::Plain => match b {
                b'\\' => {
                    if let Some(&next) = s.get(i + 1) {
                        out.push(next);
                    }
                    i += 1;
                }
                b'$' if s.get(i + 1) == Some(&b'\'') => {
                    quoting = Quoting::Dollar;
                    i += 1;
                }
                b'$' if s.get(i + 1) == Some(&b'"') => {
                    quoting = Quoting::Double;
                    i += 1;
                }
                b'\'' => quoting = Quoting::Single,
                b'"' => quoting = Quoting::Double,
                _ => out.push(b),
            },
            Quoting::Single => match b {
                b'\'' => quoting = Quoting::Plain,
                _ => out.push(b),
            },
            Quoting::Double => match (b, s.get(i + 1)) {
                (b'"', _) => quoting = Quoting::Plain,
                (b'\\', Some(&next)) if b"$`\"\\\n".contains(&next) => {
                    out.push(next);
                    i += 1;
                }
                _ => out.push(b),
            },
            Quoting::Dollar => match b {
                b'\'' => quoting = Quoting::Plain,
                b'\\' => i += dollar_escape(&s[i + 1..], &mut out),
                _ => out.push(b),
            },
        }
        i += 1;
    }
    (out, quoting)
}

/// One backslash escape of `$'...'` (what follows the backslash): pushes its byte, returns
/// how many bytes it took.
fn dollar_escape(s: &[u8], out: &mut Vec<u8>) -> usize {
    let Some(&c) = s.first() else {
        return 0;
    };
    let simple = match c {
        b'n' => Some(b'\n'),
        b't' => Some(b'\t'),
        b'r' => Some(b'\r'),
        b'a' => Some(0x07),
        b'b' => Some(0x08),
        b'e' | b'E' => Some(0x1b),
        b'f' => Some(0x0c),
        b'v' => Some(0x0b),
        b'\\' | b'\'' | b'"' | b'?' => Some(c),
        _ => None,
    };
    if let Some(byte) = simple {
        out.push(byte);
        return 1;
    }
    let digits = |from: usize, max: usize, radix: u32| -> (u32, usize) {
        let mut value = 0;
        let mut n = 0;
        while n < max {
            let Some(d) = s.get(from + n).and_then(|&d| (d as char).to_digit(radix)) else {
                break;
            };
            value = value * radix + d;
            n += 1;
        }
        (value, n)
    };
    if c == b'x' {
        let (value, n) = digits(1, 2, 16);
        if n > 0 {
            out.push(value as u8);
            return 1 + n;
        }
    } else if (b'0'..=b'7').contains(&c) {
        let (value, n) = digits(0, 3, 8);
        out.push(value as u8);
        return n;
    }
    out.push(b'\\');
    out.push(c);
    1
}

/// Bytes that stay as they are in an unquoted word anywhere in it.
fn plain_safe(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-_./+,@%:=".contains(&b)
}

/// A run of printable UTF-8, or one byte that must be written as `\xHH` (a control
/// character, DEL, a C1 control or a byte that is not UTF-8).
enum Piece<'a> {
    Text(&'a str),
    Byte(u8),
}

fn pieces(s: &[u8]) -> Vec<Piece<'_>> {
    let mut out = Vec::new();
    for chunk in s.utf8_chunks() {
        let valid = chunk.valid();
        let mut from = 0;
        for (i, c) in valid.char_indices() {
            if c.is_control() {
                out.push(Piece::Text(&valid[from..i]));
                out.extend(
                    valid.as_bytes()[i..i + c.len_utf8()]
                        .iter()
                        .map(|&b| Piece::Byte(b)),
                );
                from = i + c.len_utf8();
            }
        }
        out.push(Piece::Text(&valid[from..]));
        out.extend(chunk.invalid().iter().map(|&b| Piece::Byte(b)));
    }
    out.retain(|p| !matches!(p, Piece::Text("")));
    out
}

/// `rest` written so that, following a word quoted as `quoting`, it completes that word with
/// exactly these bytes and leaves no quote open. Single quotes wherever quoting is needed:
/// they stop history expansion (`!`) too, which a backslash in double quotes does not.
fn continue_word(quoting: Quoting, rest: &[u8]) -> Vec<u8> {
    match quoting {
        Quoting::Plain if !rest.is_empty() && rest.iter().all(|&b| plain_safe(b)) => rest.to_vec(),
        Quoting::Plain => {
            let mut out = vec![b'\''];
            out.extend(continue_word(Quoting::Single, rest));
            out
        }
        Quoting::Single => {
            let mut out = Vec::new();
            let mut in_dollar = false;
            for piece in pieces(rest) {
                match piece {
                    Piece::Text(t) => {
                        if in_dollar {
                            out.extend_from_slice(b"''");
                            in_dollar = false;
                        }
                        out.extend_from_slice(t.replace('\'', "'\\''").as_bytes());
                    }
                    Piece::Byte(b) => {
                        if !in_dollar {
                            out.extend_from_slice(b"'$'");
                            in_dollar = true;
                        }
                        out.extend_from_slice(format!("\\x{b:02x}").as_bytes());
                    }
                }
            }
            out.push(b'\'');
            out
        }
        Quoting::Double => {
            let safe = std::str::from_utf8(rest)
                .is_ok_and(|s| s.chars().all(|c| !c.is_control() && !"\"$`\\!".contains(c)));
            let mut out = Vec::new();
            if safe {
                out.extend_from_slice(rest);
                out.push(b'"');
            } else {
                out.push(b'"');
                out.extend(continue_word(Quoting::Plain, rest));
            }
            out
        }
        Quoting::Dollar => {
            let mut out = Vec::new();
            for piece in pieces(rest) {
                match piece {
                    Piece::Text(t) => out
                        .extend_from_slice(t.replace('\\', "\\\\").replace('\'', "\\'").as_bytes()),
                    Piece::Byte(b) => out.extend_from_slice(format!("\\x{b:02x}").as_bytes()),
                }
            }
            out.push(b'\'');
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replies(names: &[&[u8]], text: &str, line: &str) -> Vec<String> {
        let names: Vec<Vec<u8>> = names.iter().map(|n| n.to_vec()).collect();
        bash_replies(&names, text.as_bytes(), line.as_bytes())
            .split(|&b| b == 0)
            .filter(|r| !r.is_empty())
            .map(|r| String::from_utf8_lossy(r).into_owned())
            .collect()
    }

    #[test]
    fn the_request_is_read_from_the_line() {
        let r = |line: &str| request(line.as_bytes());
        assert_eq!(r("unrm 'a b/c").word, b"a b/c");
        assert_eq!(r("unrm --show ").value_of, Some(ValueOf::Show));
        assert_eq!(r("unrm --at 12").value_of, Some(ValueOf::At));
        let joined = r("unrm --at=12");
        assert_eq!(
            (joined.lead, joined.word),
            (b"--at=".to_vec(), b"12".to_vec())
        );
        assert_eq!(r("unrm -- --at ").value_of, None);
        assert_eq!(
            r("unrm --at x ").value_of,
            None,
            "the value is typed already"
        );
        assert!(r("unrm --purge x ").purging);
        assert!(!r("unrm --purge; unrm ").purging, "another command");
        assert_eq!(r("unrm \\-x").word, b"-x");
    }

    #[test]
    fn plain_words_are_quoted_only_when_needed() {
        let names: &[&[u8]] = &[
            b"notes.txt",
            b"a b",
            b"$(touch PWNED)",
            b"it's",
            b"`x`",
            b"new\nline",
            b"bad\xffname",
            b"a!b",
        ];
        assert_eq!(
            replies(names, "", "unrm "),
            [
                "notes.txt",
                "'a b'",
                "'$(touch PWNED)'",
                "'it'\\''s'",
                "'`x`'",
                "'new'$'\\x0a''line'",
                "'bad'$'\\xff''name'",
                "'a!b'",
            ]
        );
        assert_eq!(replies(names, "no", "unrm no"), ["notes.txt"]);
        assert_eq!(replies(names, "a\\ ", "unrm a\\ "), ["'a b'"]);
    }

    #[test]
    fn an_open_quote_is_continued_and_closed() {
        let names: &[&[u8]] = &[b"a b's", b"a\x01"];
        assert_eq!(replies(names, "a b", "unrm 'a b"), ["a b'\\''s'"]);
        assert_eq!(
            replies(names, "a", "unrm \"a"),
            ["a b's\"", "\"'a'$'\\x01'"]
        );
        assert_eq!(replies(names, "a", "unrm $'a"), ["a b\\'s'", "a\\x01'"]);
        assert_eq!(replies(&[b"x=y z"], "y", "unrm x=y"), ["'y z'"]);
        assert_eq!(replies(&[b"ab"], "b", "unrm 'a'b"), ["b"]);
    }

    /// Every reply, put after what the user typed, is read back by bash's rules as the name.
    #[test]
    fn replies_dequote_to_the_names() {
        let names: Vec<Vec<u8>> = vec![
            b"$(touch PWNED)".to_vec(),
            b"q'\"\\`!*?[x] \t\n\x7f\xc2\x85\xff-".to_vec(),
        ];
        for (typed, text) in [("", ""), ("'", ""), ("\"", ""), ("$'", "")] {
            let line = format!("unrm {typed}{text}");
            let out = bash_replies(&names, text.as_bytes(), line.as_bytes());
            let got: Vec<Vec<u8>> = out
                .split(|&b| b == 0)
                .filter(|r| !r.is_empty())
                .map(|r| {
                    let word = [typed.as_bytes(), r].concat();
                    let (bytes, quoting) = dequote(Quoting::Plain, &word);
                    assert_eq!(
                        quoting,
                        Quoting::Plain,
                        "{typed}: {:?}",
                        String::from_utf8_lossy(r)
                    );
                    bytes
                })
                .collect();
            assert_eq!(got, names, "after {typed:?}");
        }
    }
}
