//! File names in messages, quoted exactly as GNU coreutils quotes them.
//!
//! GNU rm prints names with gnulib's `quoteaf` (the `shell-escape-always` style) and suggests
//! `rm ./-g` with the `shell-escape` style. Scripts and people compare these messages, so the
//! algorithm below follows gnulib's `quotearg_buffer_restyled` for those two styles, including
//! its preference for `"it's"` over `'it'\''s'` when that is equivalent.

use std::sync::OnceLock;

/// Whether the C library's locale (as `setlocale(LC_ALL, "")` resolves it) uses UTF-8.
/// GNU prints printable multibyte characters as they are in a UTF-8 locale and escapes them
/// as octal in the C locale, and uses curved quotes in some messages.
pub fn utf8_locale() -> bool {
    static UTF8: OnceLock<bool> = OnceLock::new();
    *UTF8.get_or_init(|| {
        let (loaded, codeset) = crate::sys::locale_info(libc::LC_CTYPE, libc::CODESET);
        let name = codeset.to_ascii_lowercase();
        loaded && (name == b"utf-8" || name == b"utf8")
    })
}

/// `quoteaf`: always quoted, shell-escaped (`'a b'`, `"it's"`, `'bad'$'\377''name'`).
pub fn quote(name: &[u8]) -> String {
    // The locale only matters for bytes above ASCII; loading it costs a one-file rm time.
    quote_with(name, !name.is_ascii() && utf8_locale(), false)
}

/// `shell_escape_quoting_style`: quoted only when the shell needs it (`./-g`, `'./a b'`).
pub fn quote_if_needed(name: &[u8]) -> String {
    quote_with(name, !name.is_ascii() && utf8_locale(), true)
}

/// gnulib's `quote` in the locale style: `'x'` in the C locale, `‘x’` in a UTF-8 one.
pub fn locale_quote(s: &str) -> String {
    if utf8_locale() {
        format!("\u{2018}{s}\u{2019}")
    } else {
        format!("'{s}'")
    }
}

/// The quoting itself, with the locale passed in so it can be tested without touching it.
pub fn quote_with(name: &[u8], utf8: bool, elide_outer: bool) -> String {
    match shell_quote(name, utf8, elide_outer) {
        Some(s) => s,
        // Something needed quoting: GNU restarts in the always-quoted style.
        None => shell_quote(name, utf8, false).unwrap_or_default(),
    }
}

/// How gnulib's shell quoting (`quotearg_buffer_restyled`) treats one byte of a name.
enum ByteClass {
    /// Written as a C escape inside `$'...'` (`\n` for a newline).
    Escape(u8),
    /// Copied as it is; `needs_quote` when it is safe only inside quotes, `compat` when it
    /// is as safe inside double quotes.
    Copy { needs_quote: bool, compat: bool },
    /// `'`, written as `'\''`.
    SingleQuote,
    /// Anything else: a printable character (copied) or bytes escaped in octal.
    Other,
}

/// The class of byte `c`, at `at` in a name of `len` bytes.
fn classify(c: u8, at: usize, len: usize) -> ByteClass {
    let copy = |needs_quote, compat| ByteClass::Copy {
        needs_quote,
        compat,
    };
    match c {
        b'\x07' => ByteClass::Escape(b'a'),
        b'\x08' => ByteClass::Escape(b'b'),
        b'\x0c' => ByteClass::Escape(b'f'),
        b'\n' => ByteClass::Escape(b'n'),
        b'\r' => ByteClass::Escape(b'r'),
        b'\t' => ByteClass::Escape(b't'),
        b'\x0b' => ByteClass::Escape(b'v'),
        b'\\' => copy(true, false),
        // Special alone (brace expansion) or first (comment, tilde expansion).
        b'{' | b'}' => copy(len == 1, len == 1),
        b'#' | b'~' => copy(at == 0, at == 0),
        b' ' => copy(true, true),
        b'!' | b'"' | b'$' | b'&' | b'(' | b')' | b'*' | b';' | b'<' | b'=' | b'>' | b'['
        | b'^' | b'`' | b'|' | b'?' => copy(true, false),
        b'\'' => ByteClass::SingleQuote,
        b'%'
        | b'+'
        | b','
        | b'-'
        | b'.'
        | b'/'
        | b'0'..=b'9'
        | b':'
        | b'A'..=b'Z'
        | b']'
        | b'_'
        | b'a'..=b'z' => copy(false, true),
        _ => ByteClass::Other,
    }
}

/// One pass of the shell styles. Returns None when `elide_outer` is set and the name turns
/// out to need quotes (gnulib's `force_outer_quoting_style`).
fn shell_quote(name: &[u8], utf8: bool, elide_outer: bool) -> Option<String> {
    let mut out: Vec<u8> = Vec::with_capacity(name.len() + 2);
    if !elide_outer {
        out.push(b'\'');
    }
    // Inside an open `'$'...` escape, which a copied byte must first close with `''`.
    let mut pending_escape_end = false;
    let mut encountered_single_quote = false;
    let mut all_compat = true;
    let mut i = 0;
    while i < name.len() {
        let c = name[i];
        match classify(c, i, name.len()) {
            ByteClass::Escape(esc) => {
                all_compat = false;
                if elide_outer {
                    return None;
                }
                if !pending_escape_end {
                    out.extend_from_slice(b"'$'");
                    pending_escape_end = true;
                }
                out.push(b'\\');
                out.push(esc);
            }
            ByteClass::Copy {
                needs_quote,
                compat,
            } => {
                if needs_quote && elide_outer {
                    return None;
                }
                all_compat &= compat;
                if pending_escape_end {
                    out.extend_from_slice(b"''");
                    pending_escape_end = false;
                }
                out.push(c);
            }
            ByteClass::SingleQuote => {
                encountered_single_quote = true;
                if elide_outer {
                    return None;
                }
                out.extend_from_slice(b"'\\''");
                pending_escape_end = false;
            }
            ByteClass::Other => {
                // Printable single bytes and multibyte sequences pass; the rest is escaped
                // in octal, one escape per byte.
                let (len, printable) = char_at(&name[i..], utf8);
                all_compat &= printable;
                if printable {
                    if pending_escape_end {
                        out.extend_from_slice(b"''");
                        pending_escape_end = false;
                    }
                    out.extend_from_slice(&name[i..i + len]);
                } else {
                    if elide_outer {
                        return None;
                    }
                    for &b in &name[i..i + len] {
                        if !pending_escape_end {
                            out.extend_from_slice(b"'$'");
                            pending_escape_end = true;
                        }
                        out.extend_from_slice(format!("\\{:03o}", b).as_bytes());
                    }
                }
                i += len;
                continue;
            }
        }
        i += 1;
    }
    if elide_outer && name.is_empty() {
        return None;
    }
    if !elide_outer && encountered_single_quote && all_compat {
        // Every character is as safe in double quotes: "it's" reads better.
        let mut dq = Vec::with_capacity(name.len() + 2);
        dq.push(b'"');
        dq.extend_from_slice(name);
        dq.push(b'"');
        return Some(String::from_utf8_lossy(&dq).into_owned());
    }
    if !elide_outer {
        out.push(b'\'');
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// The length of the character starting `s` and whether it is printable, as `mbrtowc` and
/// `iswprint` would say in the given locale.
fn char_at(s: &[u8], utf8: bool) -> (usize, bool) {
    let c = s[0];
    if !utf8 || c < 0x80 {
        return (1, (0x20..0x7f).contains(&c));
    }
    let want = match c {
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        _ => return (1, false),
    };
    if s.len() < want {
        return (1, false);
    }
    match std::str::from_utf8(&s[..want]) {
        Ok(text) => {
            let printable = text
                .chars()
                .all(|ch| !ch.is_control() && !is_unprintable(ch));
            (want, printable)
        }
        Err(_) => (1, false),
    }
}

/// Unicode characters glibc's `iswprint` rejects beyond the control characters: the C1
/// range is covered by `is_control`; format and separator characters are rare in names and
/// printed as they are, as glibc does for most of them.
fn is_unprintable(ch: char) -> bool {
    matches!(ch, '\u{2028}' | '\u{2029}')
}

#[cfg(test)]
mod tests {
    use super::quote_with;

    fn q(s: &[u8]) -> String {
        quote_with(s, false, false)
    }

    #[test]
    fn matches_gnu_shell_escape_always() {
        // Each expectation was printed by GNU rm 9.1 (`LC_ALL=C rm -- NAME`).
        let cases: &[(&[u8], &str)] = &[
            (b"a", "'a'"),
            (b"", "''"),
            (b"it's", "\"it's\""),
            (b"a b", "'a b'"),
            (b"a'b c", "\"a'b c\""),
            (b"a$b", "'a$b'"),
            (b"it's $x", "'it'\\''s $x'"),
            (b"a\\b", "'a\\b'"),
            (b"a\nb", "'a'$'\\n''b'"),
            (b"\na", "''$'\\n''a'"),
            (b"bad\xffname", "'bad'$'\\377''name'"),
            ("é".as_bytes(), "''$'\\303\\251'"),
            (b"a*b", "'a*b'"),
            (b"{a}", "'{a}'"),
            (b"~x", "'~x'"),
            (b"a\"b", "'a\"b'"),
            (b"it's\"", "'it'\\''s\"'"),
            (b"it's=b", "'it'\\''s=b'"),
            (b"a\tb\x01c", "'a'$'\\t''b'$'\\001''c'"),
            (b"it's{", "'it'\\''s{'"),
        ];
        for (name, want) in cases {
            assert_eq!(&q(name), want, "name {:?}", String::from_utf8_lossy(name));
        }
    }

    #[test]
    fn utf8_locale_keeps_printable_characters() {
        assert_eq!(quote_with("é".as_bytes(), true, false), "'é'");
        assert_eq!(
            quote_with(b"bad\xffname", true, false),
            "'bad'$'\\377''name'"
        );
    }

    #[test]
    fn shell_escape_quotes_only_when_needed() {
        assert_eq!(quote_with(b"./-g", false, true), "./-g");
        assert_eq!(quote_with(b"./a b", false, true), "'./a b'");
        assert_eq!(quote_with(b"", false, true), "''");
    }
}
