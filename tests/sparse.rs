//! Sparse files (issue 11 §3) and the free-space estimate (§4): files with holes are
//! archived as PAX 1.0 sparse, GNU tar and unrm restore them sparse, their manifest hash
//! (`blake3_blocks`) is checked wherever the archive is read, and the space check counts
//! what the archive will hold, not holes or compressible bytes.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{
    archives, blake3_blocks, edit_manifest, is_root, manifests, noise, saferm_bin, unrm_bin,
    Sandbox,
};

/// A file to make: its size and where its data is.
struct Spec {
    name: &'static str,
    size: u64,
    data: &'static [(u64, u64)],
}

const MIB: u64 = 1 << 20;

/// Make `spec` at `path` with `truncate` and `pwrite`d noise.
fn make(path: &Path, spec: &Spec) -> PathBuf {
    let path = path.to_path_buf();
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).expect("create the parent");
    }
    let f = File::create(&path).expect("create");
    f.set_len(spec.size).expect("truncate");
    for (k, &(at, len)) in spec.data.iter().enumerate() {
        f.write_all_at(&noise(k as u64 + 1, len as usize), at)
            .expect("pwrite");
    }
    path
}

fn data_len(spec: &Spec) -> u64 {
    spec.data.iter().map(|&(_, len)| len).sum()
}

/// Whether the sandbox's filesystem keeps holes (a truncated file takes no blocks).
fn holes_supported(sb: &Sandbox) -> bool {
    let f = File::create(sb.root().join("holes-probe")).expect("create a probe");
    f.set_len(8 * MIB).expect("truncate the probe");
    f.metadata().expect("stat the probe").blocks() == 0
}

fn blake3_of(path: &Path) -> String {
    let mut h = blake3::Hasher::new();
    h.update_reader(File::open(path).expect("open"))
        .expect("read");
    h.finalize().to_hex().to_string()
}

/// The content is `want` and no more blocks are allocated than the data needs (and 64 KiB).
fn assert_same_and_sparse(path: &Path, spec: &Spec, want: &str, what: &str) {
    let meta = fs::metadata(path).unwrap_or_else(|e| panic!("{what}: {}: {e}", path.display()));
    assert_eq!(meta.len(), spec.size, "{what}: size of {}", spec.name);
    assert_eq!(blake3_of(path), want, "{what}: content of {}", spec.name);
    let allocated = meta.blocks() * 512;
    assert!(
        allocated <= data_len(spec) + 64 * 1024,
        "{what}: {} has {allocated} bytes allocated for {} of data",
        spec.name,
        data_len(spec)
    );
}

/// The `blake3_blocks` of the file at `path`.
fn blocks_of(path: &Path) -> String {
    blake3_blocks(File::open(path).expect("open"))
}

/// The newest manifest, as JSON, and its path.
fn newest_manifest(store: &Path) -> (serde_json::Value, PathBuf) {
    let path = manifests(store)
        .into_iter()
        .rfind(|p| p.extension().is_some_and(|e| e == "json"))
        .expect("a manifest");
    let json = serde_json::from_slice(&fs::read(&path).expect("read manifest")).expect("json");
    (json, path)
}

/// The manifest entry of the file whose path ends in `name`.
fn entry_named<'a>(m: &'a mut serde_json::Value, name: &[u8]) -> &'a mut serde_json::Value {
    m["entries"]
        .as_array_mut()
        .expect("entries")
        .iter_mut()
        .find(|e| {
            let parsed: saferm::manifest::Entry =
                serde_json::from_value((*e).clone()).expect("an entry");
            parsed.path.bytes().is_some_and(|p| p.ends_with(name))
        })
        .expect("the entry")
}

const LONG: &str = "a-directory-name-long-enough-that-the-path-needs-more-than-the-hundred-bytes-of-a-tar-header-name";

/// Small files (verified after sealing) and large ones (verified while written), with data
/// at the start, at the end, in both, ending in a hole, none at all, and a file that is not
/// sparse.
fn specs() -> [Vec<Spec>; 2] {
    let small = vec![
        Spec {
            name: "small-start",
            size: 2 * MIB,
            data: &[(0, 8192)],
        },
        Spec {
            name: "small-empty",
            size: MIB,
            data: &[],
        },
    ];
    let large = vec![
        Spec {
            name: "start",
            size: 64 * MIB,
            data: &[(0, 64 * 1024)],
        },
        Spec {
            name: "end",
            size: 64 * MIB,
            data: &[(64 * MIB - 4096, 4096)],
        },
        Spec {
            name: "both",
            size: 200 * MIB,
            data: &[(0, 4096), (100 * MIB, MIB), (200 * MIB - 8192, 8192)],
        },
        Spec {
            name: "empty",
            size: 32 * MIB,
            data: &[],
        },
        Spec {
            name: "plain",
            size: 3 * MIB,
            data: &[(0, 3 * MIB)],
        },
    ];
    [small, large]
}

#[test]
fn sparse_files_round_trip_sparse_through_gnu_tar_and_unrm() {
    let sb = Sandbox::new();
    let work = sb.work("w");
    if !holes_supported(&sb) {
        eprintln!(
            "SKIPPED: the filesystem of {} keeps no holes",
            work.display()
        );
        return;
    }
    for (run, specs) in specs().iter().enumerate() {
        // One under a directory whose path needs more than a header's 100 bytes, one with a
        // name that is not UTF-8.
        let nested: Vec<PathBuf> = specs
            .iter()
            .map(|s| match s.name {
                "both" => Path::new(LONG).join(s.name),
                "small-start" => PathBuf::from(OsStr::from_bytes(b"small-\xffstart")),
                n => PathBuf::from(n),
            })
            .collect();
        let mut hashes = Vec::new();
        let mut blocks = Vec::new();
        for (s, path) in specs.iter().zip(&nested) {
            let made = make(&work.join(path), s);
            hashes.push(blake3_of(&made));
            blocks.push(blocks_of(&made));
        }
        let operands: Vec<&OsStr> = nested.iter().filter_map(|p| p.iter().next()).collect();
        let out = sb
            .command(saferm_bin())
            .current_dir(&work)
            .arg("-r")
            .args(&operands)
            .run();
        assert_eq!(out.code(), Some(0), "saferm: {}", out.stderr_text());
        for p in &nested {
            assert!(!work.join(p).exists(), "{} was not removed", p.display());
        }

        // A file with holes has its blake3_blocks, one without its plain blake3 (b3sum's).
        let (mut manifest, _) = newest_manifest(&sb.store());
        for (i, (s, p)) in specs.iter().zip(&nested).enumerate() {
            let name = [b"/", p.as_os_str().as_bytes()].concat();
            let e = entry_named(&mut manifest, &name);
            let (field, want, absent) = match s.name {
                "plain" => ("blake3", &hashes[i], "blake3_blocks"),
                _ => ("blake3_blocks", &blocks[i], "blake3"),
            };
            assert_eq!(
                e[field].as_str(),
                Some(want.as_str()),
                "{field} of {}",
                s.name
            );
            assert!(e.get(absent).is_none(), "{} has a {absent}: {e}", s.name);
        }

        let found = archives(&sb.store());
        let archive = found.last().expect("an archive");
        // Stored sparse: one PAX 1.0 sparse entry per file with holes, none for `plain`.
        let tar = zstd::stream::decode_all(File::open(archive).expect("open")).expect("zstd");
        let marks = tar
            .windows(b"GNU.sparse.major=1\n".len())
            .filter(|w| w == b"GNU.sparse.major=1\n")
            .count();
        let sparse_files = specs.iter().filter(|s| s.name != "plain").count();
        assert_eq!(marks, sparse_files, "sparse entries in run {run}");
        assert!(
            tar.len() < 8 * MIB as usize,
            "the tar stream holds the holes"
        );

        // GNU tar extracts the same content, sparse.
        let scratch = sb.work(&format!("scratch{run}"));
        let out = Command::new("tar")
            .args(["--zstd", "-xpf"])
            .arg(archive)
            .arg("-C")
            .arg(&scratch)
            .output()
            .expect("run GNU tar");
        assert!(
            out.status.success(),
            "GNU tar: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let extracted = scratch.join(work.strip_prefix("/").expect("absolute"));
        for ((s, p), want) in specs.iter().zip(&nested).zip(&hashes) {
            assert_same_and_sparse(&extracted.join(p), s, want, "GNU tar");
        }

        let check = sb.command(unrm_bin()).arg("--check").run();
        assert_eq!(
            check.code(),
            Some(0),
            "unrm --check: {}",
            check.stderr_text()
        );

        let restore = sb
            .command(unrm_bin())
            .current_dir(&work)
            .arg("--last")
            .run();
        assert_eq!(restore.code(), Some(0), "unrm: {}", restore.stderr_text());
        for ((s, p), want) in specs.iter().zip(&nested).zip(&hashes) {
            assert_same_and_sparse(&work.join(p), s, want, "unrm");
        }
        // Again: what is there is found identical (by its blake3_blocks), nothing to do.
        let id = manifest["id"].as_str().expect("id").to_string();
        let again = sb.command(unrm_bin()).current_dir(&work).arg(&id).run();
        assert_eq!(again.code(), Some(0), "unrm again: {}", again.stderr_text());
        // A byte written in a hole: that file is in the way, not the same.
        File::options()
            .write(true)
            .open(work.join(&nested[0]))
            .and_then(|f| f.write_all_at(b"x", MIB + 1))
            .expect("write in a hole");
        let again = sb.command(unrm_bin()).current_dir(&work).arg(&id).run();
        assert_eq!(
            again.code(),
            Some(1),
            "unrm changed: {}",
            again.stderr_text()
        );
        assert!(
            again.stderr_text().contains("something else is there"),
            "unrm changed: {}",
            again.stderr_text()
        );
    }
}

/// A sandbox and its work directory, or `None` (a loud skip) where holes are not kept.
fn sandbox_with_holes(what: &str) -> Option<(Sandbox, PathBuf)> {
    let sb = Sandbox::new();
    let work = sb.work("w");
    if !holes_supported(&sb) {
        eprintln!(
            "SKIPPED ({what}): the filesystem of {} keeps no holes",
            work.display()
        );
        return None;
    }
    Some((sb, work))
}

/// Rewrite the newest manifest of the store with `edit`.
fn edit_newest_manifest(store: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    edit_manifest(&newest_manifest(store).1, edit);
}

/// A sparse file whose archived data is not the data its hash was worked out from (fault
/// `sparse-damage`) does not verify, whether the archive is checked after it is sealed
/// (small) or while it is written (large): the file is kept, the other operand removed.
#[test]
fn a_sparse_file_archived_wrong_is_caught_before_unlink() {
    let Some((sb, work)) = sandbox_with_holes("archived wrong") else {
        return;
    };
    for size in [2 * MIB, 64 * MIB] {
        let spec = Spec {
            name: "victim",
            size,
            data: &[(MIB - 100, 8192)],
        };
        let victim = make(&work.join("victim"), &spec);
        let want = blake3_of(&victim);
        fs::write(work.join("other"), b"other").expect("write other");
        let out = sb
            .command(saferm_bin())
            .current_dir(&work)
            .args(["victim", "other"])
            .env("SAFERM_FAULT", "sparse-damage=victim")
            .run();
        let err = out.stderr_text();
        assert_eq!(out.code(), Some(1), "{size} bytes: {err}");
        assert!(
            err.contains("cannot remove 'victim'"),
            "{size} bytes: {err}"
        );
        assert!(!err.contains("'other'"), "{size} bytes: {err}");
        assert_eq!(blake3_of(&victim), want, "{size} bytes: victim changed");
        assert!(!work.join("other").exists(), "{size} bytes: other was kept");
        // Without the fault, the same file goes.
        let out = sb
            .command(saferm_bin())
            .current_dir(&work)
            .arg("victim")
            .run();
        assert_eq!(out.code(), Some(0), "{size} bytes: {}", out.stderr_text());
        assert!(!victim.exists());
    }
}

/// Damage to a sparse file's data inside a sound archive (re-compressed, its file hash
/// recorded again) is reported by `unrm --check`, and a restore leaves nothing behind.
#[test]
fn damaged_sparse_data_is_reported_by_unrm_check_and_never_restored() {
    let Some((sb, work)) = sandbox_with_holes("damaged data") else {
        return;
    };
    let spec = Spec {
        name: "disk",
        size: 64 * MIB,
        data: &[(0, 4096), (10 * MIB + 7, 100_000)],
    };
    make(&work.join("disk"), &spec);
    let out = sb
        .command(saferm_bin())
        .current_dir(&work)
        .arg("disk")
        .run();
    assert_eq!(out.code(), Some(0), "saferm: {}", out.stderr_text());
    let store = sb.store();
    let check = sb.command(unrm_bin()).arg("--check").run();
    assert_eq!(check.code(), Some(0), "sound: {}", check.stderr_text());

    let archive = archives(&store).pop().expect("the archive");
    let bytes = fs::read(&archive).expect("read the archive");
    let magic = saferm::archive::MANIFEST_FRAME_MAGIC.to_le_bytes();
    let copy_at = bytes
        .windows(4)
        .rposition(|w| w == magic)
        .expect("the manifest copy");
    let mut tar = zstd::stream::decode_all(&bytes[..copy_at]).expect("zstd");
    // The second region's data is noise(2, ...), as `make` wrote it.
    let marker = noise(2, 64);
    let at = tar
        .windows(64)
        .position(|w| w == marker.as_slice())
        .expect("the second region's data");
    tar[at + 1000] ^= 1;
    let mut damaged = zstd::stream::encode_all(&tar[..], 1).expect("zstd");
    damaged.extend_from_slice(&bytes[copy_at..]);
    fs::write(&archive, &damaged).expect("write the archive");
    edit_newest_manifest(&store, |m| {
        m["archive"]["size"] = damaged.len().into();
        m["archive"]["blake3"] = blake3::hash(&damaged).to_hex().to_string().into();
        m["frames"] = serde_json::json!([{"compressed_offset": 0, "tar_offset": 0}]);
    });

    let check = sb.command(unrm_bin()).arg("--check").run();
    assert_eq!(check.code(), Some(1), "damaged: {}", check.stderr_text());
    assert!(
        check.stderr_text().contains("disk"),
        "damaged: {}",
        check.stderr_text()
    );
    let restore = sb
        .command(unrm_bin())
        .current_dir(&work)
        .arg("--last")
        .run();
    assert_eq!(
        restore.code(),
        Some(1),
        "restore: {}",
        restore.stderr_text()
    );
    assert!(
        restore.stderr_text().contains("damaged"),
        "restore: {}",
        restore.stderr_text()
    );
    let left: Vec<_> = fs::read_dir(&work).expect("work").flatten().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// A manifest written before `blake3_blocks` gives a sparse file the plain blake3 of its
/// logical content: it still checks and restores, and a wrong one is still caught.
#[test]
fn an_older_manifest_with_a_plain_blake3_for_a_sparse_file_still_works() {
    let Some((sb, work)) = sandbox_with_holes("older manifest") else {
        return;
    };
    let spec = Spec {
        name: "old",
        size: 24 * MIB + 3,
        data: &[(3 * MIB - 1, 5000), (24 * MIB, 3)],
    };
    let store = sb.store();
    let want = blake3_of(&make(&work.join("old"), &spec));
    for (hash, ok) in [
        (want.clone(), true),
        (blake3::hash(b"other").to_hex().to_string(), false),
    ] {
        make(&work.join("old"), &spec);
        let out = sb.command(saferm_bin()).current_dir(&work).arg("old").run();
        assert_eq!(out.code(), Some(0), "saferm: {}", out.stderr_text());
        edit_newest_manifest(&store, |m| {
            let e = entry_named(m, b"/old");
            let fields = e.as_object_mut().expect("an object");
            assert!(fields.remove("blake3_blocks").is_some(), "{fields:?}");
            fields.insert("blake3".to_string(), hash.clone().into());
        });
        let check = sb.command(unrm_bin()).arg("--check").run();
        let restore = sb
            .command(unrm_bin())
            .current_dir(&work)
            .arg("--last")
            .run();
        if ok {
            assert_eq!(check.code(), Some(0), "check: {}", check.stderr_text());
            assert_eq!(restore.code(), Some(0), "unrm: {}", restore.stderr_text());
            assert_same_and_sparse(&work.join("old"), &spec, &want, "unrm (older manifest)");
        } else {
            assert_eq!(check.code(), Some(1), "check: {}", check.stderr_text());
            assert_eq!(restore.code(), Some(1), "unrm: {}", restore.stderr_text());
            assert!(!work.join("old").exists(), "a damaged copy was restored");
        }
    }
}

/// A small ext4 filesystem on a loop device, unmounted when dropped.
struct LoopFs {
    dir: PathBuf,
}

impl LoopFs {
    fn mount(image: &Path, dir: &Path, mib: u64) -> LoopFs {
        assert!(
            is_root(),
            "this test mounts a loop filesystem: run the tests as root"
        );
        File::create(image)
            .and_then(|f| f.set_len(mib * MIB))
            .expect("make the image");
        let mkfs = Command::new("mkfs.ext4")
            .args(["-q", "-F", "-b", "4096", "-m", "0"])
            .arg(image)
            .status()
            .expect("run mkfs.ext4");
        assert!(mkfs.success(), "mkfs.ext4: {mkfs}");
        fs::create_dir_all(dir).expect("mount point");
        let mount = Command::new("mount")
            .args(["-o", "loop"])
            .arg(image)
            .arg(dir)
            .status()
            .expect("run mount");
        assert!(mount.success(), "mount: {mount}");
        LoopFs {
            dir: dir.to_path_buf(),
        }
    }

    fn free(&self) -> u64 {
        let path = std::ffi::CString::new(self.dir.as_os_str().as_encoded_bytes()).expect("path");
        // SAFETY: statvfs fills the struct it is given; path is NUL-terminated.
        let mut sv: libc::statvfs = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { libc::statvfs(path.as_ptr(), &mut sv) }, 0);
        sv.f_bavail * sv.f_frsize
    }

    /// Fill it until `left` bytes are free.
    fn leave_free(&self, left: u64) {
        let fill = self.free().saturating_sub(left);
        fs::write(self.dir.join("filler"), vec![0x5au8; fill as usize]).expect("fill");
        let f = File::open(self.dir.join("filler")).expect("open filler");
        f.sync_all().expect("sync filler");
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
    }
}

/// Where the estimate samples a file (`crate::estimate` in saferm): eight 128 KiB blocks
/// spread evenly from the start to the end.
fn sample_spans(size: u64) -> Vec<(u64, u64)> {
    let span = size - 128 * 1024;
    (0..8).map(|k| (span / 7 * k, 128 * 1024)).collect()
}

#[test]
fn the_space_check_counts_what_the_archive_will_hold() {
    let sb = Sandbox::new();
    let work = sb.work("w");
    let fs_dir = sb.root().join("small");
    let small = LoopFs::mount(&sb.root().join("small.img"), &fs_dir, 96);
    small.leave_free(30 * MIB);
    let store = fs_dir.join("store");
    let run = |args: &[&str]| {
        sb.command(saferm_bin())
            .current_dir(&work)
            .args(args)
            .env("SAFERM_STORE", &store)
            .run()
    };

    // 60 MiB of zeros: compresses to almost nothing, so it fits in 30 MiB.
    fs::write(work.join("zeros"), vec![0u8; 60 * MIB as usize]).expect("write zeros");
    let out = run(&["zeros"]);
    assert_eq!(out.code(), Some(0), "zeros: {}", out.stderr_text());
    assert!(!work.join("zeros").exists());

    // Incompressible and larger than what is free: refused before writing.
    fs::write(work.join("noise"), noise(7, 40 * MIB as usize)).expect("write noise");
    let out = run(&["noise"]);
    assert_eq!(out.code(), Some(1), "noise");
    assert!(
        out.stderr_text().contains("not enough space in the store"),
        "{}",
        out.stderr_text()
    );
    assert!(work.join("noise").exists(), "noise was removed");

    // Zeros where the estimate samples, noise elsewhere: the estimate is wrong, the write
    // fails with ENOSPC, and nothing is lost.
    let size = 40 * MIB;
    let f = File::create(work.join("fooled")).expect("create");
    f.write_all_at(&noise(9, size as usize), 0).expect("write");
    for (at, len) in sample_spans(size) {
        f.write_all_at(&vec![0u8; len as usize], at).expect("zero");
    }
    drop(f);
    let before = blake3_of(&work.join("fooled"));
    let out = run(&["fooled"]);
    assert_eq!(out.code(), Some(1), "fooled: {}", out.stderr_text());
    assert!(
        out.stderr_text().contains("No space left on device"),
        "{}",
        out.stderr_text()
    );
    assert_eq!(blake3_of(&work.join("fooled")), before, "fooled changed");
    let tmp: Vec<_> = fs::read_dir(store.join("tmp")).expect("tmp").collect();
    assert!(tmp.is_empty(), "temp files left: {tmp:?}");
    assert_eq!(archives(&store).len(), 1, "only the zeros' archive");

    // A sparse file far larger than what is free, holding 4 KiB: its holes take no room.
    if holes_supported(&sb) {
        let spec = Spec {
            name: "huge",
            size: 4 << 30,
            data: &[((2 << 30) + 4096, 4096)],
        };
        let want = blake3_of(&make(&work.join("huge"), &spec));
        let out = run(&["huge"]);
        assert_eq!(out.code(), Some(0), "huge: {}", out.stderr_text());
        assert!(!work.join("huge").exists());
        let out = sb
            .command(unrm_bin())
            .current_dir(&work)
            .arg("--last")
            .env("SAFERM_STORE", &store)
            .run();
        assert_eq!(out.code(), Some(0), "unrm huge: {}", out.stderr_text());
        assert_same_and_sparse(&work.join("huge"), &spec, &want, "unrm");
    } else {
        eprintln!(
            "SKIPPED (huge sparse file): {} keeps no holes",
            work.display()
        );
    }
}
