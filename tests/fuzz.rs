//! Fuzzing every reader of what the store holds (issue 11, §2.3): manifests, the index
//! (`index.jsonl`), the manifest copy in the archive's skippable frame, and archives.
//! Whatever bytes they hold, a reader reports an error; it never panics (exit 101), never
//! aborts, never writes outside the destination and never allocates what a size field in
//! the input asks for.
//!
//! Each target is a proptest campaign with a bounded number of cases, so `cargo test` (and
//! CI) runs it. `SAFERM_FUZZ_CASES=N` sets every target's count for a longer run; each
//! target prints how many cases it ran (`cargo test --test tests fuzz -- --nocapture`).
//! The in-process targets drive the library's own entry points (the ones the binaries
//! call); the `unrm_*` targets run the real binary on a store holding the damage, for the
//! readers only the command layer reaches (`--list`, `--show`, `--stats`, restore).

use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::Value;

use saferm::manifest::{Kind, Manifest};

use crate::common::{
    blake3_blocks, build_tree, edit_manifest, manifests, noise, saferm_ok, unrm, unrm_bin, Outcome,
    Sandbox,
};

// --- the campaign runner -------------------------------------------------------------------

/// The number of cases of a target: `SAFERM_FUZZ_CASES` when set, else `default`.
fn cases(default: u32) -> u32 {
    std::env::var("SAFERM_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Run `test` on `cases(default)` values of `strategy`; print how many ran. A panic in
/// `test` (a reader panicking) fails the target with the smallest input proptest finds.
fn campaign<S: Strategy>(
    name: &str,
    default: u32,
    max_shrink_iters: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) where
    S::Value: std::fmt::Debug,
{
    let config = Config {
        cases: cases(default),
        // Minimal inputs become unit tests by hand; nothing is written into the checkout.
        failure_persistence: None,
        // Each shrinking step of a binary target runs unrm a dozen times.
        max_shrink_iters,
        ..Config::default()
    };
    let ran = AtomicU64::new(0);
    let mut runner = TestRunner::new(config);
    let result = runner.run(&strategy, |v| {
        ran.fetch_add(1, Ordering::Relaxed);
        test(v)
    });
    eprintln!(
        "fuzz target {name}: {} cases run",
        ran.load(Ordering::Relaxed)
    );
    if let Err(e) = result {
        panic!("fuzz target {name} failed: {e}");
    }
}

// --- mutations ------------------------------------------------------------------------------

/// A change to a byte string.
#[derive(Clone, Debug)]
enum ByteOp {
    Flip(u64, u8),
    Set(u64, u8),
    Truncate(u64),
    Insert(u64, Vec<u8>),
    Remove(u64, u16),
    /// A little-endian u32 written over 4 bytes (frame and block sizes live in those).
    PutU32(u64, u32),
}

fn byte_op() -> impl Strategy<Value = ByteOp> {
    let word = prop_oneof![
        Just(0u32),
        Just(1),
        Just(0x7FFF_FFFF),
        Just(u32::MAX),
        Just(0x184D_2A5B),
        Just(0xFD2F_B528),
        any::<u32>(),
    ];
    prop_oneof![
        4 => (any::<u64>(), 0u8..8).prop_map(|(p, b)| ByteOp::Flip(p, b)),
        2 => (any::<u64>(), any::<u8>()).prop_map(|(p, b)| ByteOp::Set(p, b)),
        1 => any::<u64>().prop_map(ByteOp::Truncate),
        1 => (any::<u64>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(p, b)| ByteOp::Insert(p, b)),
        1 => (any::<u64>(), any::<u16>()).prop_map(|(p, n)| ByteOp::Remove(p, n)),
        2 => (any::<u64>(), word).prop_map(|(p, w)| ByteOp::PutU32(p, w)),
    ]
}

fn apply_byte_op(bytes: &mut Vec<u8>, op: &ByteOp) {
    let at = |p: u64, len: usize| {
        if len == 0 {
            0
        } else {
            (p % len as u64) as usize
        }
    };
    let len = bytes.len();
    match op {
        ByteOp::Flip(p, bit) if len > 0 => bytes[at(*p, len)] ^= 1 << bit,
        ByteOp::Set(p, b) if len > 0 => bytes[at(*p, len)] = *b,
        ByteOp::Truncate(p) => bytes.truncate(at(*p, len + 1)),
        ByteOp::Insert(p, b) => {
            let i = at(*p, len + 1);
            bytes.splice(i..i, b.iter().copied());
        }
        ByteOp::Remove(p, n) if len > 0 => {
            let i = at(*p, len);
            let end = (i + usize::from(*n % 64) + 1).min(len);
            bytes.drain(i..end);
        }
        ByteOp::PutU32(p, w) if len >= 4 => {
            let i = at(*p, len - 3);
            bytes[i..i + 4].copy_from_slice(&w.to_le_bytes());
        }
        _ => {}
    }
}

/// A change to a JSON document: to a value anywhere, to a field the readers use, to the
/// list of entries, or to the bytes of its text.
#[derive(Clone, Debug)]
enum JsonOp {
    /// Replace the n-th value (in document order) with weird value w.
    Replace(u64, u16),
    /// Replace a field readers rely on (`FIELDS`, in entry k) with weird value w.
    Field(u16, u64, u16),
    /// Remove the n-th value from its object or array.
    Remove(u64),
    /// Copy entry i to position j (duplicate entries).
    Duplicate(u64, u64),
    Bytes(ByteOp),
}

fn json_op() -> impl Strategy<Value = JsonOp> {
    prop_oneof![
        3 => (any::<u64>(), any::<u16>()).prop_map(|(n, w)| JsonOp::Replace(n, w)),
        4 => (any::<u16>(), any::<u64>(), any::<u16>()).prop_map(|(f, k, w)| JsonOp::Field(f, k, w)),
        1 => any::<u64>().prop_map(JsonOp::Remove),
        1 => (any::<u64>(), any::<u64>()).prop_map(|(i, j)| JsonOp::Duplicate(i, j)),
        2 => byte_op().prop_map(JsonOp::Bytes),
    ]
}

/// The fields whose values the readers compute with or trust; `{k}` is an entry index.
const FIELDS: &[&str] = &[
    "/entries/{k}/path",
    "/entries/{k}/path_b64",
    "/entries/{k}/link",
    "/entries/{k}/link/path",
    "/entries/{k}/link/path_b64",
    "/entries/{k}/type",
    "/entries/{k}/size",
    "/entries/{k}/mode",
    "/entries/{k}/offset",
    "/entries/{k}/operand",
    "/entries/{k}/mtime",
    "/entries/{k}/mtime_nsec",
    "/entries/{k}/blake3",
    "/entries/{k}/blake3_blocks",
    "/entries/{k}/rdev_major",
    "/entries/{k}/xattrs",
    "/frames/{k}/compressed_offset",
    "/frames/{k}/tar_offset",
    "/frames",
    "/archive/path",
    "/archive/size",
    "/archive/blake3",
    "/archive",
    "/id",
    "/month",
    "/created",
    "/format",
    "/cwd/path",
    "/operands/{k}/absolute/path",
    "/operands/{k}/given/path",
    "/operands",
    "/totals/bytes",
    "/totals/files",
    "/totals/entries",
    "/entries",
];

/// Values of the wrong type or range, and paths that are empty, relative, not normal or
/// name other entries (`paths`: the document's own).
fn weird_values(paths: &[String]) -> Vec<Value> {
    let mut deep = Value::Null;
    for _ in 0..300 {
        deep = Value::Array(vec![deep]);
    }
    let mut out: Vec<Value> = vec![
        Value::Null,
        Value::Bool(true),
        serde_json::json!(0),
        serde_json::json!(-1),
        serde_json::json!(i64::MIN),
        serde_json::json!(u64::MAX),
        serde_json::json!(u64::MAX - 1),
        serde_json::json!(i64::MAX),
        serde_json::json!(u32::MAX),
        serde_json::json!(9_007_199_254_740_993u64),
        serde_json::json!(1e308),
        serde_json::json!(-0.5),
        serde_json::json!(""),
        serde_json::json!("."),
        serde_json::json!(".."),
        serde_json::json!("/"),
        serde_json::json!("//"),
        serde_json::json!("/.."),
        serde_json::json!("/a/../../b"),
        serde_json::json!("a"),
        serde_json::json!("relative/path"),
        serde_json::json!("/a/./b"),
        serde_json::json!("/a//b"),
        serde_json::json!("/a/"),
        serde_json::json!("/x\u{0}y"),
        serde_json::json!("!!not base64!!"),
        serde_json::json!("2026-13-45T99:99:99Z"),
        serde_json::json!("../../../../etc/passwd"),
        serde_json::json!("/etc/passwd"),
        serde_json::json!("archives/2026-01/../../x.tar.zst"),
        serde_json::json!("file"),
        serde_json::json!("hardlink"),
        serde_json::json!("socket"),
        serde_json::json!("x".repeat(10_000)),
        serde_json::json!(format!("/{}", "d/".repeat(3000))),
        serde_json::json!([]),
        serde_json::json!({}),
        serde_json::json!([1, 2]),
        serde_json::json!({"path": ""}),
        serde_json::json!({"path_b64": ""}),
        serde_json::json!({"path_b64": "!!"}),
        serde_json::json!({"path": "relative"}),
        serde_json::json!({"compressed_offset": u64::MAX, "tar_offset": 0}),
        serde_json::json!([{"compressed_offset": 1, "tar_offset": u64::MAX}]),
        deep,
    ];
    // Deep and normal, below the deleted tree: restoring it under --to makes every level.
    if let Some(root) = paths.first() {
        out.push(serde_json::json!(format!("{root}{}", "/d".repeat(50_000))));
    }
    for p in paths {
        out.push(serde_json::json!(p));
        out.push(serde_json::json!({ "path": p }));
    }
    out
}

/// JSON pointers of every value in `v`, in document order (iteratively: `v` may be deep).
fn pointers(v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![(String::new(), v)];
    while let Some((p, v)) = stack.pop() {
        match v {
            Value::Array(a) => {
                for (i, c) in a.iter().enumerate().rev() {
                    stack.push((format!("{p}/{i}"), c));
                }
            }
            Value::Object(o) => {
                for (k, c) in o.iter() {
                    let k = k.replace('~', "~0").replace('/', "~1");
                    stack.push((format!("{p}/{k}"), c));
                }
            }
            _ => {}
        }
        out.push(p);
    }
    out
}

/// Set the value at `pointer`, creating its last key in an object that lacks it.
fn set_at(doc: &mut Value, pointer: &str, value: Value) {
    if pointer.is_empty() {
        *doc = value;
        return;
    }
    if let Some(slot) = doc.pointer_mut(pointer) {
        *slot = value;
        return;
    }
    let Some((parent, key)) = pointer.rsplit_once('/') else {
        return;
    };
    if let Some(Value::Object(o)) = doc.pointer_mut(parent) {
        o.insert(key.replace("~1", "/").replace("~0", "~"), value);
    }
}

fn remove_at(doc: &mut Value, pointer: &str) {
    let Some((parent, key)) = pointer.rsplit_once('/') else {
        return;
    };
    match doc.pointer_mut(parent) {
        Some(Value::Object(o)) => {
            o.remove(&key.replace("~1", "/").replace("~0", "~"));
        }
        Some(Value::Array(a)) => {
            if let Ok(i) = key.parse::<usize>() {
                if i < a.len() {
                    a.remove(i);
                }
            }
        }
        _ => {}
    }
}

/// Apply `ops` to the JSON text `bytes`; a value op on text that no longer parses is
/// skipped.
fn mutate_json(bytes: &[u8], ops: &[JsonOp], weird: &[Value]) -> Vec<u8> {
    let mut bytes = bytes.to_vec();
    for op in ops {
        if let JsonOp::Bytes(b) = op {
            apply_byte_op(&mut bytes, b);
            continue;
        }
        let Ok(mut doc) = serde_json::from_slice::<Value>(&bytes) else {
            continue;
        };
        let len = |p: &str, doc: &Value| {
            doc.pointer(p)
                .and_then(Value::as_array)
                .map_or(1, |a| a.len().max(1)) as u64
        };
        match op {
            JsonOp::Replace(n, w) => {
                let ptrs = pointers(&doc);
                let p = &ptrs[(*n % ptrs.len() as u64) as usize];
                set_at(
                    &mut doc,
                    &p.clone(),
                    weird[*w as usize % weird.len()].clone(),
                );
            }
            JsonOp::Field(f, k, w) => {
                let field = FIELDS[*f as usize % FIELDS.len()];
                let list = if field.starts_with("/frames") {
                    "/frames"
                } else if field.starts_with("/operands") {
                    "/operands"
                } else {
                    "/entries"
                };
                let k = k % len(list, &doc);
                let p = field.replace("{k}", &k.to_string());
                set_at(&mut doc, &p, weird[*w as usize % weird.len()].clone());
            }
            JsonOp::Remove(n) => {
                let ptrs = pointers(&doc);
                let p = ptrs[(*n % ptrs.len() as u64) as usize].clone();
                remove_at(&mut doc, &p);
            }
            JsonOp::Duplicate(i, j) => {
                if let Some(Value::Array(a)) = doc.pointer_mut("/entries") {
                    if !a.is_empty() {
                        let e = a[(*i % a.len() as u64) as usize].clone();
                        let at = (*j % (a.len() as u64 + 1)) as usize;
                        a.insert(at, e);
                    }
                }
            }
            JsonOp::Bytes(_) => {}
        }
        // Serialising a Value cannot fail; a deep one is written iteratively enough.
        bytes = serde_json::to_vec(&doc).unwrap_or_default();
    }
    bytes
}

// --- a real store -----------------------------------------------------------------------------

/// A store holding two real deletions made by saferm, and what they are made of.
struct Fixture {
    sb: Sandbox,
    /// Where the deleted trees were (empty now: nothing may be restored there).
    work: PathBuf,
    id: String,
    month: String,
    manifest: Vec<u8>,
    archive: Vec<u8>,
    /// Every entry path of the first deletion, for mutations to reuse.
    paths: Vec<String>,
    index: Vec<u8>,
}

impl Fixture {
    fn new() -> Fixture {
        let sb = Sandbox::new();
        let work = sb.work("w");
        build_tree(
            &work,
            &[
                "t/a=hello",
                "t/empty=",
                "t/sub/deep/c=deep",
                "t/emptydir/",
                "t/link->a",
                "t/dangling->/nonexistent",
                "t/fifo|",
                "t/ro/inside=x",
                "t/ro/@0555",
            ],
        );
        fs::write(work.join("t/sub/noise"), noise(7, 40_000)).expect("noise");
        // A file with a hole (stored sparse, with a blake3_blocks, where holes are kept).
        let disk = fs::File::create(work.join("t/sub/disk")).expect("disk");
        disk.set_len((1 << 20) + 100).expect("truncate");
        std::os::unix::fs::FileExt::write_all_at(&disk, &noise(8, 4096), 0).expect("pwrite");
        drop(disk);
        fs::hard_link(work.join("t/a"), work.join("t/sub/hard")).expect("hard link");
        fs::write(
            work.join("t")
                .join(std::ffi::OsStr::from_bytes(b"bad\xffname")),
            b"latin",
        )
        .expect("non-utf8");
        saferm_ok(&sb, &work, &["-r", "t"]);
        build_tree(&work, &["second=2"]);
        saferm_ok(&sb, &work, &["second"]);
        // The listing writes the index.
        let out = sb.command(unrm_bin()).arg("--list").run();
        assert_eq!(out.code(), Some(0), "{}", out.stderr_text());
        let store = sb.store();
        let index = fs::read(store.join("index.jsonl")).expect("index.jsonl");
        let manifests = manifests(&store);
        let (manifest, m) = manifests
            .iter()
            .map(|p| fs::read(p).expect("read manifest"))
            .map(|b| {
                let m = Manifest::from_json(&b).expect("a sound manifest");
                (b, m)
            })
            .find(|(_, m)| m.entries.len() > 2)
            .expect("the tree's manifest");
        let rel = m.archive.as_ref().expect("archive").path.clone();
        let month = rel.split('/').nth(1).expect("month").to_string();
        let archive = fs::read(store.join(&rel)).expect("archive");
        let paths = m
            .entries
            .iter()
            .filter_map(|e| e.path.path.clone())
            .collect();
        Fixture {
            work,
            id: m.id.clone(),
            month,
            manifest,
            archive,
            paths,
            index,
            sb,
        }
    }

    fn manifest_rel(&self) -> String {
        format!("manifests/{}/{}.json", self.month, self.id)
    }

    fn archive_rel(&self) -> String {
        format!("archives/{}/{}.tar.zst", self.month, self.id)
    }

    fn entries(&self) -> Vec<saferm::manifest::Entry> {
        Manifest::from_json(&self.manifest)
            .expect("sound manifest")
            .entries
    }

    /// A new sandbox whose store is a copy of this one.
    fn copy(&self) -> Sandbox {
        let sb = Sandbox::new();
        copy_tree(&self.sb.store(), &sb.store());
        sb
    }

    /// The deleted trees' old place is still empty (nothing was restored there).
    fn nothing_written_in_place(&self) -> Result<(), TestCaseError> {
        let left: Vec<_> = fs::read_dir(&self.work)
            .map_err(|e| TestCaseError::fail(e.to_string()))?
            .filter_map(Result::ok)
            .map(|e| e.file_name())
            .collect();
        prop_assert!(left.is_empty(), "written outside the destination: {left:?}");
        Ok(())
    }
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    for e in fs::read_dir(from).expect("read_dir") {
        let e = e.expect("entry");
        let dest = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_tree(&e.path(), &dest);
        } else {
            fs::copy(e.path(), &dest).expect("copy");
        }
    }
}

fn temp_file(bytes: &[u8]) -> fs::File {
    let mut f = tempfile::tempfile().expect("temp file");
    f.write_all(bytes).expect("write");
    f
}

/// What `unrm --check` and `--repair` read of an archive file holding `bytes`: the manifest
/// copy in its skippable frame (parsed, when there is one) and whether it is complete. Only
/// panics matter here; the callers check results themselves.
fn read_as_store_archive(bytes: &[u8]) {
    let f = temp_file(bytes);
    if let Ok(json) = saferm::check::manifest_copy(&f) {
        let _ = Manifest::from_json(&json);
    }
    let _ = saferm::check::is_incomplete(&f);
}

/// The zstd data of an archive and the skippable frame after it (the manifest copy).
fn split_copy(archive: &[u8]) -> (&[u8], &[u8]) {
    let magic = saferm::archive::MANIFEST_FRAME_MAGIC.to_le_bytes();
    let at = archive
        .windows(4)
        .rposition(|w| w == magic)
        .expect("manifest frame");
    archive.split_at(at)
}

/// A change to one header of the tar stream inside an archive (the checksum is made right
/// again, so that the tar reader takes the header as it is).
#[derive(Clone, Debug)]
struct TarOp {
    entry: u16,
    /// Offset of the field in the 512-byte header: name, mode, size, mtime, type, link
    /// name, magic.
    field: u8,
    value: Vec<u8>,
}

const TAR_FIELDS: &[(usize, usize)] = &[
    (0, 100),
    (100, 8),
    (124, 12),
    (136, 12),
    (156, 1),
    (157, 100),
    (257, 8),
];

fn tar_op() -> impl Strategy<Value = TarOp> {
    let value = prop_oneof![
        Just(b"77777777777\0".to_vec()),
        Just(b"00000000000\0".to_vec()),
        Just(vec![
            0x80, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF
        ]),
        Just(vec![0xFF; 12]),
        Just(b"../../escape".to_vec()),
        Just(b"/etc/passwd".to_vec()),
        Just(Vec::new()),
        Just(b"1".to_vec()),
        Just(b"2".to_vec()),
        Just(b"x".to_vec()),
        Just(b"g".to_vec()),
        Just(b"L".to_vec()),
        prop::collection::vec(any::<u8>(), 0..12),
    ];
    (any::<u16>(), any::<u8>(), value).prop_map(|(entry, field, value)| TarOp {
        entry,
        field,
        value,
    })
}

/// The archive with `ops` applied to its tar headers, compressed again, its manifest copy
/// kept.
/// `archive` with `tar_ops` applied to its tar stream, then `byte_ops` to its bytes.
fn damaged(archive: &[u8], tar_ops: &[TarOp], byte_ops: &[ByteOp]) -> Vec<u8> {
    let mut bad = if tar_ops.is_empty() {
        archive.to_vec()
    } else {
        damage_tar(archive, tar_ops)
    };
    for op in byte_ops {
        apply_byte_op(&mut bad, op);
    }
    bad
}

fn damage_tar(archive: &[u8], ops: &[TarOp]) -> Vec<u8> {
    let (data, copy) = split_copy(archive);
    let mut tar_bytes = zstd::decode_all(data).expect("decode the fixture");
    let starts: Vec<u64> = {
        let mut a = tar::Archive::new(&tar_bytes[..]);
        a.entries()
            .expect("entries")
            .filter_map(Result::ok)
            .map(|e| e.raw_header_position())
            .collect()
    };
    for op in ops {
        let start = starts[op.entry as usize % starts.len()] as usize;
        let (off, len) = TAR_FIELDS[op.field as usize % TAR_FIELDS.len()];
        let field = &mut tar_bytes[start + off..start + off + len];
        field.fill(0);
        let n = op.value.len().min(len);
        field[..n].copy_from_slice(&op.value[..n]);
        let header = &mut tar_bytes[start..start + 512];
        header[148..156].fill(b' ');
        let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
        header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    }
    let mut out = zstd::encode_all(&tar_bytes[..], 1).expect("compress");
    out.extend_from_slice(copy);
    out
}

// --- in-process targets ---------------------------------------------------------------------

/// What the command layer does with a parsed manifest, short of writing files.
fn use_manifest(m: &Manifest, archive: &[u8]) {
    let d = saferm::catalog::Deletion {
        manifest: m.clone(),
        month: "2026-01".to_string(),
        kept: Default::default(),
    };
    let _ = d.roots();
    for e in m.entries.iter().chain(&m.not_archived) {
        let _ = e.path.bytes();
        let _ = e.link.as_ref().map(|l| l.bytes());
    }
    let _ = saferm::archive::verify::verify_archive(archive, &m.entries, None);
    let hash = blake3::hash(archive).to_hex().to_string();
    let _ = saferm::archive::verify::verify_in_memory(archive, &m.entries, &hash);
}

#[test]
fn fuzz_manifest_from_random_bytes() {
    let fx = Fixture::new();
    let bytes = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512),
        // Random text that is mostly JSON punctuation and digits.
        prop::collection::vec(
            prop::sample::select(b"{}[]:,\"0123456789-.eE truefalsn\\u".to_vec()),
            0..256
        ),
    ];
    campaign("manifest_from_random_bytes", 3000, 1000, bytes, |b| {
        if let Ok(m) = Manifest::from_json(&b) {
            use_manifest(&m, &fx.archive);
        }
        let _ = serde_json::from_slice::<saferm::catalog::Header>(&b);
        let _ = serde_json::from_slice::<saferm::catalog::Restored>(&b);
        Ok(())
    });
}

#[test]
fn fuzz_manifest_mutations() {
    let fx = Fixture::new();
    let weird = weird_values(&fx.paths);
    let original = fx.entries();
    let hash = blake3::hash(&fx.archive).to_hex().to_string();
    let ops = prop::collection::vec(json_op(), 1..6);
    campaign("manifest_mutations", 1500, 1000, ops, |ops| {
        let bytes = mutate_json(&fx.manifest, &ops, &weird);
        let Ok(m) = Manifest::from_json(&bytes) else {
            return Ok(());
        };
        use_manifest(&m, &fx.archive);
        // An archive verifies only against the entries it was written with (what
        // verification compares: path, type, mode, link, size, content).
        let checked = |e: &saferm::manifest::Entry| {
            (
                e.path.bytes(),
                e.kind,
                e.mode & 0o7777,
                e.link.as_ref().map(|l| l.bytes()),
                (e.kind == Kind::File).then_some((
                    e.size,
                    e.blake3.clone(),
                    e.blake3_blocks.clone(),
                )),
            )
        };
        let same = m.entries.len() == original.len()
            && m.entries
                .iter()
                .zip(&original)
                .all(|(a, b)| checked(a) == checked(b));
        let verified =
            saferm::archive::verify::verify_archive(&fx.archive[..], &m.entries, Some(&hash));
        prop_assert_eq!(verified.is_ok(), same, "{:?}", verified.err());
        Ok(())
    });
}

#[test]
fn fuzz_index_lines() {
    use saferm::config::Size;
    use saferm::retention::{purge, Rules};
    let fx = Fixture::new();
    let sb = fx.copy();
    let store = sb.open_store();
    let lines: Vec<Vec<u8>> = fx
        .index
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    let weird = weird_values(&fx.paths);
    let case = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512).prop_map(|b| (b, Vec::new(), false)),
        (prop::collection::vec(json_op(), 1..5), any::<bool>()).prop_map(|(ops, both)| (
            Vec::new(),
            ops,
            both
        )),
    ];
    campaign("index_lines", 600, 1000, case, |(random, ops, both)| {
        let index = if ops.is_empty() {
            random
        } else {
            let mut out = Vec::new();
            for (i, l) in lines.iter().enumerate() {
                // The same change to every line: two headers with huge sizes, say.
                if i == 0 || both {
                    out.extend(mutate_json(l, &ops, &weird));
                } else {
                    out.extend_from_slice(l);
                }
                out.push(b'\n');
            }
            out
        };
        fs::write(sb.store().join("index.jsonl"), &index).expect("write the index");
        let catalog = saferm::catalog::Catalog::open(&store);
        prop_assert!(catalog.is_ok(), "{:?}", catalog.err());
        let rules = Rules {
            max_age: Some(0),
            max_size: Size::Bytes(0),
            min_free: Size::Bytes(u64::MAX),
            max_count: Some(0),
            protect_newest: 0,
            ids: Vec::new(),
        };
        let purged = purge(&store, None, &rules, None, true);
        prop_assert!(purged.is_ok(), "{:?}", purged.err());
        Ok(())
    });
}

#[test]
fn fuzz_manifest_copy_frames() {
    let fx = Fixture::new();
    let (data, copy) = split_copy(&fx.archive);
    let (data, copy) = (data.to_vec(), copy.to_vec());
    // Frame headers put together from parts: magic, descriptor, block headers, sizes.
    let framed = (
        prop::sample::select(vec![
            0xFD2F_B528u32,
            0x184D_2A50,
            0x184D_2A5B,
            0x184D_2A5F,
            0,
        ]),
        any::<u8>(),
        prop::collection::vec(any::<u8>(), 0..64),
        prop::option::of(any::<u32>()),
    )
        .prop_map(|(magic, desc, rest, size)| {
            let mut b = magic.to_le_bytes().to_vec();
            match size {
                Some(s) => b.extend_from_slice(&s.to_le_bytes()),
                None => b.push(desc),
            }
            b.extend(rest);
            b
        });
    let case = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        framed,
        prop::collection::vec(byte_op(), 1..4).prop_map(move |ops| {
            // The real data followed by a damaged manifest copy.
            let mut c = copy.clone();
            for op in &ops {
                apply_byte_op(&mut c, op);
            }
            let mut b = data.clone();
            b.extend(c);
            b
        }),
    ];
    campaign("manifest_copy_frames", 3000, 1000, case, |bytes| {
        read_as_store_archive(&bytes);
        Ok(())
    });
}

#[test]
fn fuzz_damaged_archives() {
    let fx = Fixture::new();
    let entries = fx.entries();
    let hash = blake3::hash(&fx.archive).to_hex().to_string();
    let case = prop_oneof![
        3 => prop::collection::vec(byte_op(), 1..4).prop_map(|ops| (ops, Vec::new())),
        1 => prop::collection::vec(tar_op(), 1..3).prop_map(|ops| (Vec::new(), ops)),
    ];
    campaign(
        "damaged_archives",
        600,
        1000,
        case,
        |(bytes_ops, tar_ops)| {
            let bad = damaged(&fx.archive, &tar_ops, &bytes_ops);
            let verified = saferm::archive::verify::verify_archive(&bad[..], &entries, Some(&hash));
            if bad != fx.archive {
                prop_assert!(verified.is_err(), "damage went unnoticed");
            }
            let _ = saferm::archive::verify::verify_archive(&bad[..], &entries, None);
            read_as_store_archive(&bad);
            Ok(())
        },
    );
}

#[test]
fn fuzz_retention_select() {
    use saferm::config::Size;
    use saferm::retention::{select, Candidate, Rules, Space};
    let size = prop_oneof![
        Just(u64::MAX),
        Just(u64::MAX / 2 + 1),
        Just(0u64),
        any::<u64>()
    ];
    let cands = prop::collection::vec((any::<i64>(), size.clone()), 0..8);
    let rules = (
        prop::option::of(any::<u64>()),
        prop::option::of(size.clone()),
        prop::option::of(size),
        prop::option::of(0usize..10),
        0usize..10,
    );
    let case = (cands, rules, any::<i64>(), any::<u64>(), any::<u64>());
    campaign(
        "retention_select",
        3000,
        1000,
        case,
        |(cands, (age, max, free, count, protect), now, total, available)| {
            let cands: Vec<Candidate> = cands
                .iter()
                .enumerate()
                .map(|(i, &(created, archive_bytes))| Candidate {
                    id: format!("id{i}"),
                    created,
                    archive_bytes,
                })
                .collect();
            let rules = Rules {
                max_age: age,
                max_size: max.map_or(Size::Unlimited, Size::Bytes),
                min_free: free.map_or(Size::Unlimited, Size::Bytes),
                max_count: count,
                protect_newest: protect,
                ids: Vec::new(),
            };
            let space = Space {
                total,
                available,
                staged: 0,
            };
            let _ = select(&cands, &rules, now, space, None);
            Ok(())
        },
    );
}

// --- the binary -------------------------------------------------------------------------------

/// unrm ended with a reported error or success: no panic, no abort, no signal.
fn reported(out: &Outcome, what: &str) -> Result<(), TestCaseError> {
    let err = out.stderr_text();
    prop_assert!(
        matches!(out.code(), Some(0) | Some(1)),
        "{what}: {}\n{err}",
        out.status_text()
    );
    prop_assert!(!err.contains("panicked"), "{what}: {err}");
    if out.code() == Some(1) {
        prop_assert!(err.starts_with("unrm: "), "{what}: {err}");
    }
    Ok(())
}

/// Run unrm in `sb` with every reader: listing, showing, stats, purge (dry run), checking,
/// and restoring under a new directory (which is all that may be written).
fn every_reader(fx: &Fixture, sb: &Sandbox, id: &str) -> Result<(), TestCaseError> {
    let to = sb.work("to");
    let to_arg = to.to_str().expect("utf-8").to_string();
    let runs: Vec<Vec<&str>> = vec![
        vec!["--list"],
        vec!["--list", "--json"],
        vec!["--list", "t"],
        vec!["--show", id],
        vec!["--show", id, "--json"],
        vec!["--stats"],
        vec!["--stats", "--json"],
        vec!["--purge", "--dry-run", "--keep", "0"],
        vec!["--check", id],
        vec!["--to", &to_arg, id],
        vec!["--to", &to_arg, "--rename", "--last", "2"],
        vec!["--check"],
    ];
    for args in runs {
        let out = sb.command(unrm_bin()).args(&args).run();
        reported(&out, &format!("unrm {args:?}"))?;
    }
    fx.nothing_written_in_place()
}

#[test]
fn fuzz_unrm_on_damaged_manifests_and_index() {
    let fx = Fixture::new();
    let weird = weird_values(&fx.paths);
    let case = (
        prop::collection::vec(json_op(), 1..5),
        prop::option::of(prop::collection::vec(json_op(), 1..4)),
    );
    campaign(
        "unrm_on_damaged_manifests_and_index",
        40,
        32,
        case,
        |(ops, index_ops)| {
            let sb = fx.copy();
            let manifest = mutate_json(&fx.manifest, &ops, &weird);
            fs::write(sb.store().join(fx.manifest_rel()), manifest).expect("write");
            if let Some(index_ops) = index_ops {
                let index: Vec<u8> = fx
                    .index
                    .split(|&b| b == b'\n')
                    .filter(|l| !l.is_empty())
                    .flat_map(|l| {
                        let mut l = mutate_json(l, &index_ops, &weird);
                        l.push(b'\n');
                        l
                    })
                    .collect();
                fs::write(sb.store().join("index.jsonl"), index).expect("write");
            }
            every_reader(&fx, &sb, &fx.id)
        },
    );
}

#[test]
fn fuzz_unrm_on_damaged_archives() {
    let fx = Fixture::new();
    let entries = fx.entries();
    let case = (
        prop::collection::vec(byte_op(), 0..4),
        prop::collection::vec(tar_op(), 0..2),
        any::<bool>(),
    );
    campaign(
        "unrm_on_damaged_archives",
        40,
        32,
        case,
        |(bytes_ops, tar_ops, lose_manifest)| {
            let sb = fx.copy();
            let bad = damaged(&fx.archive, &tar_ops, &bytes_ops);
            fs::write(sb.store().join(fx.archive_rel()), &bad).expect("write");
            let to = sb.work("restored");
            let out = sb
                .command(unrm_bin())
                .args(["--to", to.to_str().expect("utf-8"), &fx.id])
                .run();
            reported(&out, "restore")?;
            // Whatever was restored is what was deleted: a damaged file is never left.
            let base = Path::new(fx.work.to_str().expect("utf-8")).to_path_buf();
            for e in &entries {
                let Some(p) = e.path.bytes() else { continue };
                let rel = Path::new(std::ffi::OsStr::from_bytes(&p))
                    .strip_prefix(&base)
                    .expect("below the work directory")
                    .to_path_buf();
                let at = to.join(rel);
                if e.kind == Kind::File && at.exists() {
                    let bytes = fs::read(&at).expect("read restored");
                    let got = match e.blake3_blocks {
                        Some(_) => blake3_blocks(&bytes[..]),
                        None => blake3::hash(&bytes).to_hex().to_string(),
                    };
                    prop_assert_eq!(
                        Some(got),
                        e.blake3_blocks.clone().or_else(|| e.blake3.clone()),
                        "{}",
                        at.display()
                    );
                }
            }
            let check = sb.command(unrm_bin()).args(["--check", &fx.id]).run();
            reported(&check, "--check ID")?;
            if bad != fx.archive {
                prop_assert_eq!(check.code(), Some(1), "damage went unnoticed");
            }
            if lose_manifest {
                // The manifest is lost: --repair rebuilds it from the copy, or says why not.
                let lost = sb.root().join("lost.json");
                fs::rename(sb.store().join(fx.manifest_rel()), lost).expect("lose it");
                let out = sb.command(unrm_bin()).args(["--check", "--repair"]).run();
                reported(&out, "--check --repair")?;
            }
            every_reader(&fx, &sb, &fx.id)
        },
    );
}

// --- what the campaigns found, minimized ------------------------------------------------------

/// One deletion of one file `f`; returns (sandbox, work dir, id, manifest path).
fn one_deletion() -> (Sandbox, PathBuf, String, PathBuf) {
    let sb = Sandbox::new();
    let w = sb.work("w");
    build_tree(&w, &["f=content"]);
    saferm_ok(&sb, &w, &["f"]);
    let found = manifests(&sb.store());
    assert_eq!(found.len(), 1);
    let m = Manifest::from_json(&fs::read(&found[0]).expect("read")).expect("manifest");
    (sb, w, m.id, found[0].clone())
}

/// `unrm --to DIR ID` sliced a manifest path it took for absolute: a one-byte relative
/// path panicked.
#[test]
fn a_relative_path_in_a_manifest_is_refused_under_to() {
    let (sb, w, id, manifest) = one_deletion();
    for path in ["a", ""] {
        edit_manifest(&manifest, |v| {
            v["entries"][0]["path"] = Value::from(path);
        });
        let out = unrm(&sb, &w, &["--to", "out", &id]);
        reported(&out, path).expect("reported");
        assert_eq!(out.code(), Some(1), "{path:?}: {}", out.stderr_text());
        assert!(
            out.stderr_text().contains("unsafe path"),
            "{path:?}: {}",
            out.stderr_text()
        );
    }
}

/// A manifest naming an archive outside the store (an absolute path, `..`) had it read,
/// checked and restored from as if it were the store's.
#[test]
fn an_archive_path_outside_the_store_is_refused() {
    let (sb, w, id, manifest) = one_deletion();
    let mut rel = String::new();
    edit_manifest(&manifest, |v| {
        rel = v["archive"]["path"].as_str().expect("path").to_string();
    });
    let away = sb.root().join("away.tar.zst");
    fs::rename(sb.store().join(&rel), &away).expect("move the archive out");
    let depth = rel.matches('/').count() + 1; // archives/MONTH/ID.tar.zst, then the store
    let dotdot = format!("{}away.tar.zst", "../".repeat(depth + 2));
    for path in [away.to_str().expect("utf-8").to_string(), dotdot] {
        edit_manifest(&manifest, |v| {
            v["archive"]["path"] = Value::from(path.as_str())
        });
        let out = unrm(&sb, &w, &["--check", &id]);
        assert_eq!(out.code(), Some(1), "{path}: {}", out.stderr_text());
        assert!(
            out.stderr_text().contains("is not a path inside the store"),
            "{path}: {}",
            out.stderr_text()
        );
        let out = unrm(&sb, &w, &[&id]);
        reported(&out, &path).expect("reported");
        assert_eq!(out.code(), Some(1), "{path}");
        assert!(
            !w.join("f").exists(),
            "{path}: restored from outside the store"
        );
    }
}

/// The size of the skippable frame holding the manifest copy was allocated before it was
/// compared with the file: `unrm --check` on an orphan archive claiming a 4 GiB copy
/// aborted under a memory limit (`memory allocation of 4294967280 bytes failed`).
#[test]
fn a_huge_manifest_frame_size_is_not_allocated() {
    let (sb, w, id, manifest) = one_deletion();
    let mut rel = String::new();
    edit_manifest(&manifest, |v| {
        rel = v["archive"]["path"].as_str().expect("path").to_string();
    });
    // The manifest is lost; its archive's manifest copy claims 4 GiB.
    fs::rename(&manifest, sb.root().join("lost.json")).expect("lose the manifest");
    let archive = sb.store().join(&rel);
    let bytes = fs::read(&archive).expect("archive");
    let (data, _) = split_copy(&bytes);
    let mut bad = data.to_vec();
    bad.extend_from_slice(&saferm::archive::MANIFEST_FRAME_MAGIC.to_le_bytes());
    bad.extend_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
    bad.extend_from_slice(saferm::archive::MANIFEST_FRAME_TAG);
    fs::write(&archive, bad).expect("damage");
    // 1 GiB of address space is plenty for unrm, and too little for the claim.
    let script = "ulimit -v 1048576 && exec \"$0\" \"$@\"";
    for (args, code, text) in [
        (&["--check"][..], 1, "is incomplete"),
        (
            &["--check", "--repair"],
            0,
            "removed the incomplete archive",
        ),
    ] {
        let out = sb
            .command("/bin/sh")
            .current_dir(&w)
            .arg("-c")
            .arg(script)
            .arg(unrm_bin())
            .args(args)
            .run();
        reported(&out, &format!("{args:?}")).expect("reported");
        let said = format!("{}{}", out.stdout_text(), out.stderr_text());
        assert_eq!(out.code(), Some(code), "{args:?}: {said}");
        assert!(said.contains(text), "{args:?}: {said}");
    }
    assert!(!archive.exists());
    let _ = id;
}

/// Restoring made the missing directories above an object by recursion, one call per
/// level: a crafted deletion holding one file thousands of levels below its directory (and
/// no entries between) overflowed unrm's stack (here 1,000 levels and a 256 KiB stack; the
/// default 8 MiB went at 50,000).
#[test]
fn a_deep_path_without_its_directories_does_not_overflow_the_stack() {
    const DEPTH: usize = 1_000;
    let (sb, w, id, manifest) = one_deletion();
    let top = format!("{}/t", w.to_str().expect("utf-8"));
    let deep = format!("{top}{}/f", "/d".repeat(DEPTH));
    let mut tar_bytes = Vec::new();
    {
        let mut b = tar::Builder::new(&mut tar_bytes);
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        b.append_data(&mut h, &top[1..], &[][..]).expect("dir");
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(4);
        b.append_data(&mut h, &deep[1..], &b"deep"[..])
            .expect("file");
        b.finish().expect("tar");
    }
    let compressed = zstd::encode_all(&tar_bytes[..], 1).expect("zstd");
    let mut rel = String::new();
    edit_manifest(&manifest, |v| {
        rel = v["archive"]["path"].as_str().expect("path").to_string();
        let file = v["entries"][0].clone();
        let mut dir = file.clone();
        dir["path"] = Value::from(top.as_str());
        dir["type"] = Value::from("dir");
        dir["mode"] = Value::from(0o755);
        dir["size"] = Value::from(0);
        dir.as_object_mut().expect("entry").remove("blake3");
        let mut f = file;
        f["path"] = Value::from(deep.as_str());
        f["size"] = Value::from(4);
        f["blake3"] = Value::from(blake3::hash(b"deep").to_hex().to_string());
        v["entries"] = Value::Array(vec![dir, f]);
        v["archive"]["size"] = Value::from(compressed.len());
        v["archive"]["blake3"] = Value::from(blake3::hash(&compressed).to_hex().to_string());
    });
    fs::write(sb.store().join(&rel), &compressed).expect("archive");
    let out = sb
        .command("/bin/sh")
        .current_dir(&w)
        .arg("-c")
        .arg("ulimit -s 256 && exec \"$0\" \"$@\"")
        .arg(unrm_bin())
        .args(["--to", "out", &id])
        .run();
    reported(&out, "restore").expect("reported");
    assert_eq!(out.code(), Some(0), "{}", out.stderr_text());
    let (levels, last) = flatten(&w.join("out"));
    assert_eq!(levels, DEPTH + 1, "out/t and the levels below it");
    assert_eq!(fs::read(last.join("f")).expect("restored"), b"deep");
}

/// Move every level of a deep chain of directories up to `dir`, so that removing the
/// sandbox does not recurse thousands of levels; returns how many levels there were and
/// where the last one is now.
fn flatten(dir: &Path) -> (usize, PathBuf) {
    let mut n = 0;
    let mut at = dir.to_path_buf();
    loop {
        let Some(child) = fs::read_dir(&at)
            .expect("read_dir")
            .filter_map(Result::ok)
            .find(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        else {
            break;
        };
        let next = dir.join(format!("level{n}"));
        n += 1;
        fs::rename(child.path(), &next).expect("move up");
        at = next;
    }
    (n, at)
}

/// A command line as a shell hands it to completion: any bytes but NUL, mostly quotes, escapes,
/// slashes, option spellings and the names in the store.
fn completion_line() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        prop::sample::select(vec![
            &b"'"[..],
            b"\"",
            b"$'",
            b"\\",
            b"/",
            b"./",
            b"../",
            b" ",
            b"=",
            b";",
            b"|",
            b"--show",
            b"--at",
            b"--cat",
            b"--purge",
            b"--",
            b"t",
            b"t/",
            b"sub",
            b"deep/",
            b"a",
            b"\xff",
            b"\n",
            b"*",
        ])
        .prop_map(<[u8]>::to_vec),
        // Any byte but NUL, which no argument can hold.
        prop::collection::vec(1u8..=255, 1..4),
    ];
    prop::collection::vec(piece, 0..12).prop_map(|v| [&b"unrm "[..], &v.concat()].concat())
}

/// `unrm --complete-names` reads the line up to the cursor that a shell passes (and, with a
/// `/`, the manifests of the deleted trees it names): whatever the line, it prints words and
/// exits 0, never panics, and (as Tab must) never waits or writes anything.
#[test]
fn fuzz_completion_lines() {
    let fx = Fixture::new();
    campaign(
        "completion_lines",
        150,
        32,
        (
            completion_line(),
            0usize..6,
            prop::sample::select(vec!["bash", "zsh", "fish"]),
        ),
        |(line, cut, shell)| {
            // bash's TEXT: the end of the line (what readline replaces), any length of it.
            let text = &line[line.len() - cut.min(line.len())..];
            let out = fx
                .sb
                .command(unrm_bin())
                .current_dir(&fx.work)
                .args(["--complete-names", shell, "--"])
                .arg(std::ffi::OsStr::from_bytes(text))
                .arg(std::ffi::OsStr::from_bytes(&line))
                .run();
            let err = out.stderr_text();
            prop_assert_eq!(out.code(), Some(0), "{:?}: {}", line, err);
            prop_assert!(!err.contains("panicked"), "{:?}: {}", line, err);
            Ok(())
        },
    );
    fx.nothing_written_in_place()
        .expect("completion wrote nothing");
}

/// Times as people type them, and bytes that only look like them: `--since`, `--until` and
/// `--at` either take one or say why not (exit 1, `unrm: ...`); never a panic.
#[test]
fn fuzz_time_arguments() {
    let fx = Fixture::new();
    let time = prop::collection::vec(
        prop_oneof![
            prop::sample::select(vec![
                "2026-12-01",
                " ",
                "14:00",
                ":",
                "-",
                "T",
                "10m",
                "2h",
                "3d",
                "99999999999999d",
                "yesterday",
                "today",
                "now",
                "+",
                "0",
                "9",
                "24:60",
                "2026-02-30",
                "\u{e9}",
            ])
            .prop_map(str::to_string),
            "[ -~]{1,3}",
        ],
        0..6,
    )
    .prop_map(|v| v.concat());
    let option = prop::sample::select(vec!["--since", "--until", "--at"]);
    campaign(
        "time_arguments",
        120,
        32,
        (option, time),
        |(option, time)| {
            let args: Vec<&str> = match option {
                // --cat: the version --at chooses, to stdout (nothing restored in place).
                "--at" => vec!["--at", &time, "--cat", "t/a"],
                _ => vec!["--list", option, &time],
            };
            let out = fx
                .sb
                .command(unrm_bin())
                .current_dir(&fx.work)
                .args(&args)
                .run();
            reported(&out, &format!("unrm {args:?}"))
        },
    );
    fx.nothing_written_in_place()
        .expect("nothing restored in place");
}
