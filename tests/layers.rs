//! The shape of `src/` (issue 13): modules import one way (no cycle among the crate's
//! top-level modules), no function is over 150 lines, no file over 900 (unit tests
//! excluded), and at most 15 `unsafe` blocks remain. `cargo test --test tests layers --
//! --nocapture` prints the figures.
//!
//! The reading is lexical: comments, strings and char literals are blanked first, so a
//! brace or a `crate::` inside them does not count; `#[cfg(test)] mod tests` blocks are
//! cut before anything is counted.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, top down: a module imports only from its own layer or one below (and the
/// no-cycle check keeps each layer's own imports one way). A new module must be placed.
const LAYERS: [(&str, &[&str]); 4] = [
    (
        "commands",
        &["bin", "lib", "cmd", "cli", "unrm_cli", "docs"],
    ),
    (
        "domains",
        &[
            "rules",
            "walk",
            "restat",
            "sweep",
            "estimate",
            "archive",
            "remove",
            "restore",
            "check",
            "retention",
            "stats",
            "complete",
            "catalog",
            "instant",
        ],
    ),
    (
        "store",
        &["store", "config", "manifest", "hash", "home", "users"],
    ),
    (
        "system",
        &[
            "sys", "unlink", "dirstack", "signal", "alloc", "fault", "timing", "output",
            "progress", "quote", "paths",
        ],
    ),
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, mods)| mods.contains(&module))
}

const MAX_FN_LINES: usize = 150;
const MAX_FILE_LINES: usize = 900;
const MAX_UNSAFE: usize = 15;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry of src/").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to: `src/a.rs`, `src/a/mod.rs` and `src/a/b.rs` are
/// all `a`; `src/lib.rs` is `lib` and the binaries are `bin`.
fn module_of(path: &Path) -> String {
    let rel = path.strip_prefix(src()).expect("a file under src/");
    let first = rel.components().next().expect("a file name");
    let first = first.as_os_str().to_string_lossy();
    first.strip_suffix(".rs").unwrap_or(&first).to_string()
}

/// `text` with comments, string literals and char literals replaced by spaces (newlines
/// kept, so line numbers stay true).
fn blank(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = b.to_vec();
    let mut i = 0;
    let wipe = |out: &mut Vec<u8>, from: usize, to: usize| {
        for c in &mut out[from..to] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
    };
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                let end = b[i..]
                    .iter()
                    .position(|&c| c == b'\n')
                    .map_or(b.len(), |p| i + p);
                wipe(&mut out, i, end);
                i = end;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let (mut depth, start) = (0usize, i);
                while i < b.len() {
                    if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
                wipe(&mut out, start, i);
            }
            b'r' if matches!(b.get(i + 1), Some(b'"') | Some(b'#'))
                && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')) =>
            {
                let mut j = i + 1;
                let mut hashes = 0;
                while b.get(j) == Some(&b'#') {
                    hashes += 1;
                    j += 1;
                }
                if b.get(j) != Some(&b'"') {
                    i += 1;
                    continue;
                }
                let close: Vec<u8> = std::iter::once(b'"')
                    .chain(std::iter::repeat_n(b'#', hashes))
                    .collect();
                let body = j + 1;
                let end = b[body..]
                    .windows(close.len())
                    .position(|w| w == close.as_slice())
                    .map_or(b.len(), |p| body + p + close.len());
                wipe(&mut out, i, end);
                i = end;
            }
            b'"' => {
                let start = i;
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
                wipe(&mut out, start, i.min(b.len()));
            }
            b'\'' => {
                // A char literal ('x', '\n', '\u{..}') or a lifetime ('a): a literal closes
                // within a few bytes.
                let rest = &b[i + 1..];
                let len = if rest.first() == Some(&b'\\') {
                    rest.iter().skip(1).position(|&c| c == b'\'').map(|p| p + 2)
                } else {
                    std::str::from_utf8(&rest[..rest.len().min(4)])
                        .ok()
                        .or_else(|| std::str::from_utf8(&rest[..rest.len().min(1)]).ok())
                        .and_then(|s| s.chars().next())
                        .map(char::len_utf8)
                        .filter(|&n| rest.get(n) == Some(&b'\''))
                };
                match len {
                    Some(n) => {
                        wipe(&mut out, i, i + n + 2);
                        i += n + 2;
                    }
                    None => i += 1,
                }
            }
            _ => i += 1,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `text` (already blanked) without its `#[cfg(test)]` items: the attribute and the item
/// after it, up to its closing brace or semicolon.
fn without_tests(text: &str) -> String {
    let mut out = text.to_string();
    while let Some(at) = out.find("#[cfg(test)]") {
        let b = out.as_bytes();
        let mut i = at + "#[cfg(test)]".len();
        // The item ends at its closing brace, or at a `;` or `,` (a field, an argument)
        // outside any bracket; a `}` that closes what holds it ends it too.
        let (mut depth, mut nest) = (0usize, 0usize);
        while i < b.len() {
            match b[i] {
                b'{' => depth += 1,
                b'}' if depth == 0 => break,
                b'}' => {
                    depth -= 1;
                    if depth == 0 && nest == 0 {
                        i += 1;
                        break;
                    }
                }
                b'(' | b'[' => nest += 1,
                b')' | b']' => nest = nest.saturating_sub(1),
                b';' | b',' if depth == 0 && nest == 0 => {
                    i += 1;
                    break;
                }
                _ => {}
            }
            i += 1;
        }
        let cut: String = out[at..i.min(out.len())]
            .chars()
            .map(|c| if c == '\n' { '\n' } else { ' ' })
            .collect();
        out.replace_range(at..i.min(out.len()), &cut);
    }
    out
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// The top-level modules `code` names as `crate::x`, including inside `use crate::{x, y}`.
fn crate_imports(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let b = code.as_bytes();
    let mut from = 0;
    while let Some(p) = code[from..].find("crate::") {
        let at = from + p;
        from = at + 7;
        if at > 0 && (is_ident(b[at - 1]) || b[at - 1] == b'$') {
            continue;
        }
        let rest = &code[from..];
        if let Some(list) = rest.strip_prefix('{') {
            // A group: each entry's first name, at the group's own depth.
            let mut depth = 0usize;
            let mut start = true;
            for (k, c) in list.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => start = true,
                    c if start && depth == 0 && (c.is_alphanumeric() || c == '_') => {
                        let name: String = list[k..]
                            .chars()
                            .take_while(|c| c.is_alphanumeric() || *c == '_')
                            .collect();
                        found.insert(name);
                        start = false;
                    }
                    _ => {}
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.insert(name);
            }
        }
    }
    found
}

/// Each function in `code` with its first line (1-based) and its length in lines.
fn functions(code: &str) -> Vec<(String, usize, usize)> {
    let mut found = Vec::new();
    let b = code.as_bytes();
    let mut from = 0;
    while let Some(p) = code[from..].find("fn ") {
        let at = from + p;
        from = at + 3;
        if at > 0 && is_ident(b[at - 1]) {
            continue;
        }
        let name: String = code[from..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if name.is_empty() {
            continue; // `fn(` types
        }
        // The body: the first `{` before any `;` (a declaration without body has none).
        let Some(open) = code[from..].find(['{', ';']).map(|q| from + q) else {
            continue;
        };
        if b[open] == b';' {
            continue;
        }
        let mut depth = 0usize;
        let mut end = open;
        for (k, &c) in b[open..].iter().enumerate() {
            match c {
                b'{' => depth += 1,
                b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + k;
                        break;
                    }
                }
                _ => {}
            }
        }
        let first = code[..at].matches('\n').count() + 1;
        let last = code[..end].matches('\n').count() + 1;
        found.push((name, first, last - first + 1));
    }
    found
}

struct Shape {
    imports: BTreeMap<String, BTreeSet<String>>,
    long_fns: Vec<String>,
    long_files: Vec<String>,
    unsafe_blocks: Vec<String>,
}

fn shape() -> Shape {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut shape = Shape {
        imports: BTreeMap::new(),
        long_fns: Vec::new(),
        long_files: Vec::new(),
        unsafe_blocks: Vec::new(),
    };
    for path in &files {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let code = without_tests(&blank(&text));
        let rel = path
            .strip_prefix(src())
            .expect("under src/")
            .display()
            .to_string();
        let module = module_of(path);
        let imports = shape.imports.entry(module.clone()).or_default();
        imports.extend(crate_imports(&code).into_iter().filter(|m| *m != module));
        let lines = code.trim_end().lines().count();
        if lines > MAX_FILE_LINES {
            shape.long_files.push(format!("{rel}: {lines} lines"));
        }
        for (name, line, len) in functions(&code) {
            if len > MAX_FN_LINES {
                shape
                    .long_fns
                    .push(format!("{rel}:{line} fn {name}: {len} lines"));
            }
        }
        for (n, l) in code.lines().enumerate() {
            let mut rest = l;
            while let Some(p) = rest.find("unsafe") {
                let after = rest[p + 6..].trim_start();
                let before_ok = p == 0 || !is_ident(rest.as_bytes()[p - 1]);
                if before_ok && after.starts_with('{') {
                    shape.unsafe_blocks.push(format!("{rel}:{}", n + 1));
                }
                rest = &rest[p + 6..];
            }
        }
    }
    shape
}

/// The cycles among `imports`: each strongly connected component of more than one module
/// (Tarjan's algorithm, iteration order fixed by the maps).
fn cycles(imports: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct Tarjan<'a> {
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    impl<'a> Tarjan<'a> {
        fn visit(&mut self, v: &'a str) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            self.on_stack.insert(v);
            let graph = self.graph;
            for w in graph.get(v).into_iter().flatten() {
                let w = w.as_str();
                if !graph.contains_key(w) {
                    continue;
                }
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let lw = self.low[w];
                    let lv = self.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(lw);
                } else if self.on_stack.contains(w) {
                    let iw = self.index[w];
                    let lv = self.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(iw);
                }
            }
            if self.low[v] == self.index[v] {
                let mut comp = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    comp.push(w.to_string());
                    if w == v {
                        break;
                    }
                }
                if comp.len() > 1 {
                    comp.sort();
                    self.out.push(comp);
                }
            }
        }
    }
    let mut t = Tarjan {
        graph: imports,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in imports.keys() {
        if !t.index.contains_key(v.as_str()) {
            t.visit(v);
        }
    }
    t.out
}

#[test]
fn the_reader_sees_through_comments_strings_and_test_modules() {
    let code = without_tests(&blank(concat!(
        "use crate::a;\n",
        "// use crate::b;\n",
        "fn f() { let s = \"{ crate::c }\"; let c = '{'; let r = r#\"}\"#; }\n",
        "/* crate::d { */\n",
        "use crate::{e::x, f::{y, z}};\n",
        "fn g<'a>(x: &'a str) -> &'a str { unsafe { x } }\n",
        "#[cfg(test)]\nmod tests { use crate::t; fn h() {} }\n",
    )));
    let names: Vec<String> = crate_imports(&code).into_iter().collect();
    assert_eq!(names, ["a", "e", "f"]);
    let fns: Vec<(String, usize, usize)> = functions(&code);
    assert_eq!(
        fns,
        [("f".to_string(), 3, 1), ("g".to_string(), 6, 1)],
        "{code}"
    );
    let mut graph = BTreeMap::new();
    graph.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
    graph.insert("b".to_string(), BTreeSet::from(["c".to_string()]));
    graph.insert("c".to_string(), BTreeSet::from(["a".to_string()]));
    graph.insert("d".to_string(), BTreeSet::from(["a".to_string()]));
    assert_eq!(cycles(&graph), [["a", "b", "c"]]);
}

#[test]
fn src_has_no_module_cycle() {
    let shape = shape();
    for (m, uses) in &shape.imports {
        println!(
            "{m} -> {}",
            uses.iter().cloned().collect::<Vec<_>>().join(" ")
        );
    }
    let found = cycles(&shape.imports);
    assert!(found.is_empty(), "module cycles in src/: {found:?}");
}

#[test]
fn src_layers_point_down() {
    let shape = shape();
    let mut wrong = Vec::new();
    for (m, uses) in &shape.imports {
        let Some(mine) = layer_of(m) else {
            wrong.push(format!("{m} is in no layer (add it to LAYERS)"));
            continue;
        };
        for u in uses {
            match layer_of(u) {
                Some(theirs) if theirs < mine => wrong.push(format!(
                    "{m} ({}) imports {u} ({}), a layer above it",
                    LAYERS[mine].0, LAYERS[theirs].0
                )),
                Some(_) => {}
                // Also a crate-root re-export: inside src/, modules are named where they are.
                None => wrong.push(format!("{m} imports {u}, which is in no layer")),
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// The archive pipeline, the restore and the catalog reach the store only through
/// `store::Backend`, so that another backend needs no change in them.
#[test]
fn archiving_restoring_and_listing_see_only_the_backend() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut found = Vec::new();
    for path in &files {
        let module = module_of(path);
        if !["archive", "restore", "catalog"].contains(&module.as_str()) {
            continue;
        }
        let text = std::fs::read_to_string(path).expect("a source file");
        let code = without_tests(&blank(&text));
        for (n, line) in code.lines().enumerate() {
            let b = line.as_bytes();
            let mut from = 0;
            while let Some(p) = line[from..].find("Store") {
                let at = from + p;
                from = at + 5;
                let before = at == 0 || !is_ident(b[at - 1]);
                let after = b.get(at + 5).is_none_or(|&c| !is_ident(c));
                if before && after {
                    found.push(format!("{}:{}", path.display(), n + 1));
                }
            }
        }
    }
    assert!(found.is_empty(), "the concrete Store named in: {found:?}");
}

#[test]
fn src_has_no_function_and_no_file_too_long() {
    let shape = shape();
    println!(
        "functions over {MAX_FN_LINES} lines: {:#?}\nfiles over {MAX_FILE_LINES} lines: {:#?}",
        shape.long_fns, shape.long_files
    );
    assert!(
        shape.long_fns.is_empty() && shape.long_files.is_empty(),
        "too long: {:?} {:?}",
        shape.long_fns,
        shape.long_files
    );
}

#[test]
fn src_has_few_unsafe_blocks() {
    let shape = shape();
    println!(
        "{} unsafe blocks: {:#?}",
        shape.unsafe_blocks.len(),
        shape.unsafe_blocks
    );
    assert!(
        shape.unsafe_blocks.len() <= MAX_UNSAFE,
        "{} unsafe blocks in src/ (at most {MAX_UNSAFE}): {:?}",
        shape.unsafe_blocks.len(),
        shape.unsafe_blocks
    );
}
