//! Sparse files (issue 11 §3) and the free-space estimate (§4): files with holes are
//! archived as PAX 1.0 sparse, GNU tar and unrm restore them sparse, and the space check
//! counts what the archive will hold, not holes or compressible bytes.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{is_root, noise, saferm_bin, unrm_bin, Sandbox};

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

fn archives(store: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for month in fs::read_dir(store.join("archives"))
        .expect("archives")
        .flatten()
    {
        for a in fs::read_dir(month.path()).expect("month").flatten() {
            out.push(a.path());
        }
    }
    out.sort();
    out
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
        for (s, path) in specs.iter().zip(&nested) {
            hashes.push(blake3_of(&make(&work.join(path), s)));
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
