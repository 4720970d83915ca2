//! Helpers shared by the integration tests.
//!
//! - [`Sandbox`]: a per-test directory holding `home/`, `data/` (`XDG_DATA_HOME`), `config/`
//!   and work dirs, placed where the tests work from any checkout (see [`sandbox_base`]).
//! - [`TestCommand`]: runs a program with a cleared environment ([`clean_env`]: `PATH`,
//!   `LC_ALL=C`, the sandbox's `HOME` and XDG dirs, nothing inherited), `argv[0]` set to
//!   `rm`, empty stdin unless given, a timeout, and optionally as the unprivileged uid 65534
//!   through `setpriv`. [`Sandbox::std_command`] gives the same environment to a child a
//!   test must drive itself.
//! - [`build_tree`] / [`snapshot`]: create a tree from a compact spec and describe a tree so
//!   that two of them compare with `assert_eq!`.
//!   [`paths`] is a snapshot's paths alone; [`full::full_snapshot`] adds owners, mtimes,
//!   xattrs and hard links, for round trips; [`rich`] builds trees that have them all.
//! - [`saferm`], [`saferm_ok`], [`unrm`], [`unrm_ok`]: run a program in the sandbox (the
//!   `_ok` ones require success); [`files_under`], [`archives`], [`manifests`],
//!   [`deletions`], [`newest_id`], [`edit_manifest`]: look into (or at) a store.
//! - [`Differential`]: the same tree, arguments and stdin given to GNU rm and to saferm;
//!   exit status, stdout, stderr and the resulting trees must be identical.
//!
//! Spec and argument strings may write any byte as `\xHH` (a literal backslash followed by
//! `x` and two hex digits), so non-UTF-8 names fit in a `&str` table.

// Each test module uses a different subset of these helpers.
#![allow(dead_code)]

pub mod full;
pub mod rich;
mod store;

pub use store::{archives, deletions, edit_manifest, files_under, manifests, newest_id};

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::fmt::{self, Write as _};
use std::fs;
use std::hash::{Hash, Hasher};
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// The reference implementation.
pub const GNU_RM: &str = "/usr/bin/rm";
/// The unprivileged user (and group) of permission tests: `nobody`/`nogroup`.
pub const NOBODY: u32 = 65534;
/// The program name both implementations are run under, so messages start with `rm:`.
pub const ARG0: &str = "rm";
/// A run taking longer than this is killed and reported (a prompt or FIFO read that blocks).
const TIMEOUT: Duration = Duration::from_secs(60);

/// The saferm binary built by cargo for these tests.
pub fn saferm_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_saferm"))
}

/// `len` bytes zstd cannot shrink (xorshift64 from `seed`; the same seed, the same bytes).
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407)
        | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A manifest's `blake3_blocks` of a sparse file's content, by its definition (README, "The
/// store"): the blake3 of the blake3s of each MiB, the last one maybe short, one after
/// another. Worked out here apart from saferm's own code.
pub fn blake3_blocks(mut content: impl Read) -> String {
    const MIB: u64 = 1 << 20;
    let mut each = Vec::new();
    let mut block = Vec::with_capacity(MIB as usize);
    loop {
        block.clear();
        (&mut content)
            .take(MIB)
            .read_to_end(&mut block)
            .expect("read");
        if block.is_empty() {
            break;
        }
        each.extend_from_slice(blake3::hash(&block).as_bytes());
    }
    blake3::hash(&each).to_hex().to_string()
}

/// The unrm binary under test.
pub fn unrm_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_unrm"))
}

/// Run saferm (as `rm`) in the sandbox, in `cwd`, whatever its outcome.
pub fn saferm(sb: &Sandbox, cwd: &Path, args: &[&str]) -> Outcome {
    sb.command(saferm_bin()).current_dir(cwd).args(args).run()
}

/// Run saferm (as `rm`) in the sandbox and require it to succeed.
pub fn saferm_ok(sb: &Sandbox, cwd: &Path, args: &[&str]) -> Outcome {
    let out = saferm(sb, cwd, args);
    assert_eq!(
        out.code(),
        Some(0),
        "saferm {args:?}: {}",
        out.stderr_text()
    );
    out
}

/// Run unrm in the sandbox, in `cwd`, whatever its outcome.
pub fn unrm(sb: &Sandbox, cwd: &Path, args: &[&str]) -> Outcome {
    sb.command(unrm_bin()).current_dir(cwd).args(args).run()
}

/// Run unrm in the sandbox, in `cwd`, and require it to succeed.
pub fn unrm_ok(sb: &Sandbox, cwd: &Path, args: &[&str]) -> Outcome {
    let out = unrm(sb, cwd, args);
    assert_eq!(
        out.code(),
        Some(0),
        "unrm {args:?}\nstdout: {}\nstderr: {}",
        out.stdout_text(),
        out.stderr_text()
    );
    out
}

/// An external program some tests need and a machine may lack (zsh, fish, dash,
/// shellcheck), found on the test process's `PATH` (ripgrep's `cmd_exists`): its absolute
/// path, run with the sandbox's clean environment. When it is missing, the test prints
/// loudly that it skips that part and why (straight to stderr, which `cargo test` does not
/// capture) and gets `None`; with `SAFERM_TEST_REQUIRE_ALL=1` (set by `.ci/run`) it fails
/// instead. `SAFERM_TEST_HIDE_TOOLS=zsh,fish` makes programs look missing, to try that.
pub fn tool(name: &str, needed_for: &str) -> Option<PathBuf> {
    let hidden = std::env::var("SAFERM_TEST_HIDE_TOOLS").unwrap_or_default();
    let found = if hidden.split(',').any(|h| h.trim() == name) {
        None
    } else {
        std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .filter(|d| d.is_absolute())
                .map(|d| d.join(name))
                .find(|p| fs::metadata(p).is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0))
        })
    };
    if found.is_none() {
        let why = format!("{name} is not installed (not on PATH): {needed_for} is not tested");
        if std::env::var_os("SAFERM_TEST_REQUIRE_ALL").is_some_and(|v| v == "1") {
            panic!("{why}, and SAFERM_TEST_REQUIRE_ALL=1 makes it mandatory (apt install {name})");
        }
        let _ = writeln!(
            std::io::stderr(),
            "\n*** SKIPPED: {why}. Install {name} to test it; CI (SAFERM_TEST_REQUIRE_ALL=1) requires it. ***"
        );
    }
    found
}

/// True when the tests run with euid 0 (CI does; mounts and uid switches need it).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Turns `\xHH` escapes into bytes; everything else is taken literally.
pub fn unescape(s: &str) -> OsString {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 2..i + 4)
            .and_then(|h| std::str::from_utf8(h).ok())
            .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
        if let (b'\\', Some(b'x'), Some(hex)) = (bytes[i], bytes.get(i + 1), hex) {
            out.push(u8::from_str_radix(hex, 16).expect("two hex digits"));
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    OsString::from_vec(out)
}

/// Quotes an argument for display in a failure report (not for a real shell).
fn display_arg(arg: &OsStr) -> String {
    let s = arg.to_string_lossy();
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=,:+@%".contains(c));
    if plain {
        s.into_owned()
    } else {
        format!("{:?}", ByteStr(arg.as_bytes()))
    }
}

/// Debug-prints bytes as a string literal, escaping what is not printable UTF-8.
struct ByteStr<'a>(&'a [u8]);

impl fmt::Debug for ByteStr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_char('"')?;
        for chunk in self.0.utf8_chunks() {
            for c in chunk.valid().chars() {
                // rm's messages are full of single quotes: leave them readable.
                if c == '\'' {
                    f.write_char(c)?;
                } else {
                    write!(f, "{}", c.escape_debug())?;
                }
            }
            for b in chunk.invalid() {
                write!(f, "\\x{b:02x}")?;
            }
        }
        f.write_char('"')
    }
}

/// Where saferm refuses to keep a store (src/store.rs): emptied at boot or in memory.
const VOLATILE_PREFIXES: &[&str] = &["/tmp", "/var/tmp", "/dev/shm", "/run"];

/// The directory this test process puts its sandboxes in, and what saferm must be told
/// about it.
struct SandboxBase {
    /// Canonical, so that store paths built from it are what saferm sees.
    dir: PathBuf,
    /// Under a [`VOLATILE_PREFIXES`] directory: commands get `SAFERM_TEST_SANDBOX`.
    under_volatile_prefix: bool,
    /// On tmpfs/ramfs: commands also get `SAFERM_TEST_ALLOW_VOLATILE_STORE`.
    in_memory: bool,
}

/// Chosen once per test process, so that the tests pass wherever the checkout is and
/// whoever runs them:
/// 1. cargo's target tmpdir (inside the checkout), when saferm accepts a store there and,
///    run as root, uid 65534 can reach it (every directory above it searchable by others)
///    and it is not under root's home (a test mounts over that): then the commands carry
///    no override at all;
/// 2. else the system's temp directory (`TMPDIR`, `/tmp`, `/var/tmp`), reachable by
///    everyone: a checkout under `/tmp`, or under a 0700 home like `/root`. saferm refuses
///    stores there, so commands carry `SAFERM_TEST_SANDBOX`, which a debug build honours
///    for stores inside that one sandbox only (src/store.rs).
///
/// Release builds honour no override: their rules cannot be weakened by a test variable.
fn sandbox_base() -> &'static SandboxBase {
    static BASE: std::sync::OnceLock<SandboxBase> = std::sync::OnceLock::new();
    BASE.get_or_init(|| {
        let target_tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let _ = fs::create_dir_all(&target_tmp);
        let candidates = [
            target_tmp,
            std::env::temp_dir(),
            PathBuf::from("/tmp"),
            PathBuf::from("/var/tmp"),
        ];
        let mut fallback = None;
        let mut rejected = Vec::new();
        for candidate in candidates {
            match examine_base(&candidate) {
                Ok(base) if !base.under_volatile_prefix && !base.in_memory => return base,
                Ok(base) => {
                    fallback.get_or_insert(base);
                }
                Err(why) => rejected.push(format!("{}: {why}", candidate.display())),
            }
        }
        fallback.unwrap_or_else(|| {
            panic!(
                "no directory for the test sandboxes:\n{}",
                rejected.join("\n")
            )
        })
    })
}

/// Whether sandboxes can go in `dir`, and how saferm will see stores there.
fn examine_base(dir: &Path) -> Result<SandboxBase, String> {
    let dir = fs::canonicalize(dir).map_err(|e| e.to_string())?;
    if !fs::metadata(&dir).map_err(|e| e.to_string())?.is_dir() {
        return Err("not a directory".into());
    }
    if is_root() {
        // Tests mount over root's home (store.rs, `sudo -E`): nothing of theirs may be there.
        let root_home = saferm::users::user(0).map(|u| u.home);
        if let Some(home) = root_home.filter(|h| h != Path::new("/") && dir.starts_with(h)) {
            return Err(format!("it is under root's home {}", home.display()));
        }
        for d in dir.ancestors() {
            let mode = fs::metadata(d).map_err(|e| e.to_string())?.mode();
            if mode & 0o001 == 0 {
                return Err(format!(
                    "uid {NOBODY} cannot reach it: {} is mode {:04o}",
                    d.display(),
                    mode & 0o7777
                ));
            }
        }
    }
    let fs_type = nix::sys::statfs::statfs(&dir)
        .map_err(|e| e.to_string())?
        .filesystem_type();
    Ok(SandboxBase {
        under_volatile_prefix: VOLATILE_PREFIXES.iter().any(|p| dir.starts_with(p)),
        // ramfs's magic, which nix does not name.
        in_memory: fs_type == nix::sys::statfs::TMPFS_MAGIC || fs_type.0 as i64 == 0x8584_58f6,
        dir,
    })
}

/// The environment every program a test starts gets, whatever the test process has:
/// nothing inherited (no `SAFERM_*`, no real `HOME` or `XDG_*`: the developer's own store
/// and config are never reached), `PATH`, `LC_ALL=C`, and the sandbox's home, data and
/// config directories. `sandbox` is a [`Sandbox::root`].
pub fn clean_env(cmd: &mut Command, sandbox: &Path, path: impl AsRef<OsStr>) {
    cmd.env_clear()
        .env("PATH", path)
        .env("LC_ALL", "C")
        .env("HOME", sandbox.join("home"))
        .env("XDG_DATA_HOME", sandbox.join("data"))
        .env("XDG_CONFIG_HOME", sandbox.join("config"))
        .env("XDG_CACHE_HOME", sandbox.join("home/.cache"))
        .env("XDG_STATE_HOME", sandbox.join("home/.local/state"))
        // The space saferm leaves free is a share of the disk: tests must not depend on
        // how full the machine's disk is.
        .env("SAFERM_MIN_FREE", "0")
        // Tests of instant mode (the default) ask for it: the others look at the store as
        // soon as saferm returns.
        .env("SAFERM_INSTANT", "0");
    sandbox_waivers(cmd, sandbox);
}

/// What saferm (a debug build) must be told for stores inside the [`Sandbox`] whose root
/// is `sandbox` to work, given where sandboxes are ([`sandbox_base`]): nothing, in the
/// usual case. For a test that builds its own environment.
pub fn sandbox_waivers(cmd: &mut Command, sandbox: &Path) {
    let base = sandbox_base();
    if base.under_volatile_prefix {
        cmd.env("SAFERM_TEST_SANDBOX", sandbox);
    }
    if base.in_memory {
        cmd.env("SAFERM_TEST_ALLOW_VOLATILE_STORE", "1");
    }
}

/// A per-test directory (see [`sandbox_base`] for where), removed when dropped.
pub struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        let dir = tempfile::Builder::new()
            .prefix("saferm-sandbox-")
            .tempdir_in(&sandbox_base().dir)
            .expect("create the sandbox directory");
        for sub in ["home", "data", "config"] {
            fs::create_dir(dir.path().join(sub)).expect("create a sandbox subdirectory");
        }
        Sandbox { dir }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn home(&self) -> PathBuf {
        self.root().join("home")
    }

    /// `XDG_DATA_HOME` of every command run in this sandbox.
    pub fn data(&self) -> PathBuf {
        self.root().join("data")
    }

    pub fn config(&self) -> PathBuf {
        self.root().join("config")
    }

    /// Where saferm keeps its store when neither `SAFERM_STORE` is set nor a config says so.
    pub fn store(&self) -> PathBuf {
        self.data().join("saferm")
    }

    /// The sandbox's `bin/`, holding `saferm` and `unrm` links to the binaries under test:
    /// the directory to put first on `PATH` where a shell or script runs them by name.
    pub fn bin_dir(&self) -> PathBuf {
        let bin = self.work("bin");
        for (name, target) in [("saferm", saferm_bin()), ("unrm", unrm_bin())] {
            let link = bin.join(name);
            if fs::symlink_metadata(&link).is_err() {
                std::os::unix::fs::symlink(target, &link).expect("link a binary");
            }
        }
        bin
    }

    /// Creates (if needed) and returns a work directory `name` inside the sandbox.
    pub fn work(&self, name: &str) -> PathBuf {
        let dir = self.root().join(name);
        fs::create_dir_all(&dir).expect("create a work directory");
        dir
    }

    /// Gives everything in the sandbox, the sandbox itself included, to `uid:gid`, so that an
    /// unprivileged run can traverse it, write the store and remove what it owns.
    pub fn chown_all(&self, uid: u32, gid: u32) {
        chown_tree(self.root(), uid, gid);
    }

    /// A command running `program` (as `rm`) in the sandbox root.
    pub fn command(&self, program: impl AsRef<Path>) -> TestCommand {
        TestCommand {
            program: program.as_ref().to_path_buf(),
            args: Vec::new(),
            cwd: self.root().to_path_buf(),
            stdin: None,
            envs: Vec::new(),
            unprivileged: false,
            stdout_to: None,
            limits: Vec::new(),
            sandbox: self.root().to_path_buf(),
            timeout: TIMEOUT,
        }
    }

    /// A `std::process::Command` for `program` with this sandbox's [`clean_env`] and `PATH`
    /// `/usr/bin:/bin`, in the sandbox root, for a test that must spawn and watch the child
    /// itself (signals, concurrency, a shell). Prefer [`Sandbox::command`].
    pub fn std_command(&self, program: impl AsRef<OsStr>) -> Command {
        self.std_command_with_path(program, "/usr/bin:/bin")
    }

    /// The sandbox's store, opened in this process, with the waivers its commands carry
    /// (see [`clean_env`]).
    pub fn open_store(&self) -> saferm::store::Store {
        let base = sandbox_base();
        let sandbox = base.under_volatile_prefix.then(|| self.root());
        saferm::store::Store::open_in_test_sandbox(&self.store(), sandbox, base.in_memory)
            .unwrap_or_else(|e| panic!("open the store {}: {e:#}", self.store().display()))
    }

    /// [`Sandbox::std_command`] with another `PATH`.
    pub fn std_command_with_path(
        &self,
        program: impl AsRef<OsStr>,
        path: impl AsRef<OsStr>,
    ) -> Command {
        let mut cmd = Command::new(program);
        clean_env(&mut cmd, self.root(), path);
        cmd.current_dir(self.root());
        cmd
    }
}

impl Default for Sandbox {
    fn default() -> Self {
        Sandbox::new()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        // Without root, mode 000/0555 directories would make TempDir's removal fail quietly.
        if !is_root() {
            make_removable(self.root());
        }
    }
}

/// Gives `path` and everything below it to `uid:gid` (lchown: links are not followed).
pub fn chown_path_tree(path: &Path, uid: u32, gid: u32) {
    chown_tree(path, uid, gid);
}

fn chown_tree(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))
        .unwrap_or_else(|e| panic!("lchown {}: {e}", path.display()));
    let meta = fs::symlink_metadata(path).expect("lstat while chowning");
    if meta.is_dir() {
        for entry in fs::read_dir(path).expect("read_dir while chowning") {
            chown_tree(&entry.expect("dir entry").path(), uid, gid);
        }
    }
}

fn make_removable(path: &Path) {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return;
    };
    if meta.is_dir() {
        let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o700));
        if let Ok(entries) = fs::read_dir(path) {
            for entry in entries.flatten() {
                make_removable(&entry.path());
            }
        }
    }
}

/// How a run ended and what it printed.
#[derive(Debug)]
pub struct Outcome {
    pub status: Option<ExitStatus>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// The most memory the program held resident at once, in bytes (`ru_maxrss`, as
    /// `wait4` reports it); `None` when it was killed by the timeout.
    pub peak_rss: Option<u64>,
}

impl Outcome {
    /// The exit code; `None` when killed by a signal or by the timeout.
    pub fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }

    /// `exit 1`, `signal 9` or `timed out`: comparable and readable.
    pub fn status_text(&self) -> String {
        match self.status {
            None => "timed out (killed)".to_string(),
            Some(s) => match (s.code(), s.signal()) {
                (Some(code), _) => format!("exit {code}"),
                (None, Some(sig)) => format!("signal {sig}"),
                (None, None) => format!("{s}"),
            },
        }
    }

    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// A program run with a clean, sandboxed environment.
pub struct TestCommand {
    program: PathBuf,
    args: Vec<OsString>,
    cwd: PathBuf,
    stdin: Option<Vec<u8>>,
    /// Set (`Some`) or removed (`None`) after the defaults, in order.
    envs: Vec<(OsString, Option<OsString>)>,
    unprivileged: bool,
    /// A file stdout is opened on for writing instead of the captured pipe (`/dev/full`).
    stdout_to: Option<PathBuf>,
    sandbox: PathBuf,
    /// Resource limits (soft and hard) set in the child before it runs the program.
    limits: Vec<(libc::__rlimit_resource_t, u64)>,
    /// Killed after this long (the outcome then has no exit code).
    timeout: Duration,
}

impl TestCommand {
    /// Run under this resource limit (`RLIMIT_NOFILE`, `RLIMIT_AS`, ...), soft and hard, as
    /// `ulimit` in a shell would set it: the program cannot raise it.
    pub fn limit(mut self, resource: libc::__rlimit_resource_t, value: u64) -> Self {
        self.limits.push((resource, value));
        self
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_os_string());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_os_string()));
        self
    }

    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.cwd = dir.as_ref().to_path_buf();
        self
    }

    /// Bytes fed through a pipe that is closed afterwards. Without this, stdin is /dev/null.
    pub fn stdin(mut self, bytes: impl AsRef<[u8]>) -> Self {
        self.stdin = Some(bytes.as_ref().to_vec());
        self
    }

    /// An extra environment variable (set after the defaults, so it may override them).
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.envs.push((
            key.as_ref().to_os_string(),
            Some(value.as_ref().to_os_string()),
        ));
        self
    }

    /// Leaves out one of the defaults of [`clean_env`].
    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Self {
        self.envs.push((key.as_ref().to_os_string(), None));
        self
    }

    /// Writes stdout into `path` (opened for writing, e.g. `/dev/full`) instead of capturing it.
    pub fn stdout_to(mut self, path: impl AsRef<Path>) -> Self {
        self.stdout_to = Some(path.as_ref().to_path_buf());
        self
    }

    /// Runs as uid/gid 65534 with no supplementary groups, through
    /// `setpriv --reuid=65534 --regid=65534 --clear-groups --`. setpriv execs its argument by
    /// name, so the program is reached through a symlink called `rm` in a sandbox directory
    /// put first on `PATH`: `argv[0]` stays `rm`. The caller makes the sandbox usable by that
    /// user ([`Sandbox::chown_all`]). Requires root; fails loudly otherwise.
    pub fn unprivileged(mut self) -> Self {
        self.unprivileged = true;
        self
    }

    fn build(&self) -> Command {
        let sandbox = &self.sandbox;
        let mut path = OsString::from("/usr/bin:/bin");
        let mut cmd = if self.unprivileged {
            assert!(
                is_root(),
                "running a program as uid {NOBODY} needs root: run the tests as root"
            );
            let bin = self.program_dir();
            let mut p = bin.into_os_string();
            p.push(":");
            p.push(&path);
            path = p;
            let mut cmd = Command::new("/usr/bin/setpriv");
            cmd.arg(format!("--reuid={NOBODY}"))
                .arg(format!("--regid={NOBODY}"))
                .args(["--clear-groups", "--", ARG0]);
            cmd
        } else {
            let mut cmd = Command::new(&self.program);
            cmd.arg0(ARG0);
            cmd
        };
        clean_env(&mut cmd, sandbox, path);
        for (k, v) in &self.envs {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        cmd.args(&self.args)
            .current_dir(&self.cwd)
            .stdout(match &self.stdout_to {
                Some(p) => Stdio::from(
                    fs::OpenOptions::new()
                        .write(true)
                        .open(p)
                        .unwrap_or_else(|e| panic!("open {}: {e}", p.display())),
                ),
                None => Stdio::piped(),
            })
            .stderr(Stdio::piped())
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            });
        if !self.limits.is_empty() {
            let limits = self.limits.clone();
            // SAFETY: the closure only calls setrlimit, which is async-signal-safe.
            unsafe {
                cmd.pre_exec(move || {
                    for &(resource, value) in &limits {
                        let lim = libc::rlimit {
                            rlim_cur: value,
                            rlim_max: value,
                        };
                        if libc::setrlimit(resource, &lim) != 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                    }
                    Ok(())
                });
            }
        }
        cmd
    }

    /// A root-owned, world-traversable directory holding `rm -> program`.
    fn program_dir(&self) -> PathBuf {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.program.hash(&mut hasher);
        let dir = self
            .sandbox
            .join("path")
            .join(format!("{:016x}", hasher.finish()));
        let link = dir.join(ARG0);
        if fs::symlink_metadata(&link).is_err() {
            fs::create_dir_all(&dir).expect("create the PATH directory");
            for d in [dir.parent().expect("path/"), &dir] {
                fs::set_permissions(d, fs::Permissions::from_mode(0o755))
                    .expect("chmod the PATH directory");
            }
            std::os::unix::fs::symlink(&self.program, &link).expect("symlink the program");
        }
        dir
    }

    /// Kill it after `limit` instead of the default minute: for a test of something that
    /// used to hang, so that a regression fails soon instead of holding up the run.
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = limit;
        self
    }

    /// Runs to completion (or kills after the timeout) and returns what happened.
    pub fn run(&self) -> Outcome {
        #[expect(clippy::zombie_processes, reason = "reap() waits for it, with wait4")]
        let mut child = self
            .build()
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.program.display()));
        let writer = child.stdin.take().map(|mut pipe| {
            let bytes = self.stdin.clone().unwrap_or_default();
            // The program may exit without reading: EPIPE is expected then.
            thread::spawn(move || {
                let _ = pipe.write_all(&bytes);
            })
        });
        let read_all = |mut pipe: Box<dyn Read + Send>| {
            thread::spawn(move || {
                let mut buf = Vec::new();
                pipe.read_to_end(&mut buf).expect("read the child's output");
                buf
            })
        };
        let stdout = child.stdout.take().map(|p| read_all(Box::new(p)));
        let stderr = read_all(Box::new(child.stderr.take().expect("stderr pipe")));
        let deadline = Instant::now() + self.timeout;
        let (status, peak_rss) = loop {
            if let Some(reaped) = reap(&child) {
                break reaped;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                break (None, None);
            }
            thread::sleep(Duration::from_millis(2));
        };
        if let Some(w) = writer {
            w.join().expect("stdin writer thread");
        }
        Outcome {
            status,
            stdout: stdout
                .map(|t| t.join().expect("stdout reader thread"))
                .unwrap_or_default(),
            stderr: stderr.join().expect("stderr reader thread"),
            peak_rss,
        }
    }

    /// How this command reads in a report: `rm -r 'a b'`.
    pub fn describe(&self) -> String {
        describe_args(&self.args)
    }
}

/// The child's exit status and peak resident memory once it has exited (`None` while it
/// runs). `wait4` rather than `Child::try_wait`, which does not report the child's usage.
fn reap(child: &std::process::Child) -> Option<(Option<ExitStatus>, Option<u64>)> {
    let pid = libc::pid_t::try_from(child.id()).expect("a pid fits pid_t");
    let mut status = 0;
    // SAFETY: rusage is plain integers, for which all zeroes is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: both pointers are to live locals of the types wait4 writes.
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        match r {
            0 => return None,
            r if r == pid => {
                let kib = u64::try_from(usage.ru_maxrss).unwrap_or(0);
                return Some((Some(ExitStatus::from_raw(status)), Some(kib * 1024)));
            }
            _ if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted => {}
            _ => panic!("wait for the child: {}", std::io::Error::last_os_error()),
        }
    }
}

fn describe_args(args: &[OsString]) -> String {
    let mut s = String::from(ARG0);
    for a in args {
        s.push(' ');
        s.push_str(&display_arg(a));
    }
    s
}

/// One object of a tree spec.
enum Node {
    Dir,
    File(Vec<u8>),
    Symlink(OsString),
    Fifo,
    Socket,
}

/// Parses one spec item:
///
/// | item | creates |
/// |---|---|
/// | `d/` | directory `d` |
/// | `f` | empty regular file `f` |
/// | `f=text` | regular file `f` holding `text` |
/// | `l->target` | symlink `l` pointing at `target` (verbatim, may dangle or end in `/`) |
/// | `p\|` | FIFO `p` |
/// | `s#` | Unix socket `s` (bound, then closed: the file stays) |
///
/// Any item may end in `@NNN` or `@NNNN` (octal) to set its mode, e.g. `ro=x@0444`,
/// `d/@0555`; a directory item may follow the items inside it. Missing parent directories
/// are created (0755). Directories default to 0755, everything else to 0644.
fn parse_item(item: &str) -> (PathBuf, Node, Option<u32>) {
    let (item, mode) = match item.rsplit_once('@') {
        Some((rest, m))
            if (3..=4).contains(&m.len()) && m.bytes().all(|b| (b'0'..=b'7').contains(&b)) =>
        {
            (rest, Some(u32::from_str_radix(m, 8).expect("octal mode")))
        }
        _ => (item, None),
    };
    let (name, node) = if let Some((name, target)) = item.split_once("->") {
        (name, Node::Symlink(unescape(target)))
    } else if let Some(name) = item.strip_suffix('/') {
        (name, Node::Dir)
    } else if let Some(name) = item.strip_suffix('|') {
        (name, Node::Fifo)
    } else if let Some(name) = item.strip_suffix('#') {
        (name, Node::Socket)
    } else if let Some((name, content)) = item.split_once('=') {
        (name, Node::File(unescape(content).into_vec()))
    } else {
        (item, Node::File(Vec::new()))
    };
    assert!(!name.is_empty(), "spec item {item:?} has no name");
    (PathBuf::from(unescape(name)), node, mode)
}

/// Creates the objects of `spec` (see [`parse_item`]) under `root`, which must exist.
pub fn build_tree(root: &Path, spec: &[&str]) {
    let mut modes = Vec::new();
    for item in spec {
        let (rel, node, mode) = parse_item(item);
        assert!(rel.is_relative(), "spec path {item:?} must be relative");
        let path = root.join(&rel);
        if let Some(parent) = path.parent() {
            create_dirs(root, parent);
        }
        let default_mode = match node {
            Node::Dir => {
                // A directory may be listed after its children, to give it a mode.
                if !path.is_dir() {
                    fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {item:?}: {e}"));
                }
                Some(0o755)
            }
            Node::File(content) => {
                fs::write(&path, content).unwrap_or_else(|e| panic!("write {item:?}: {e}"));
                Some(0o644)
            }
            Node::Symlink(target) => {
                std::os::unix::fs::symlink(target, &path)
                    .unwrap_or_else(|e| panic!("symlink {item:?}: {e}"));
                None
            }
            Node::Fifo => {
                nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o644))
                    .unwrap_or_else(|e| panic!("mkfifo {item:?}: {e}"));
                Some(0o644)
            }
            Node::Socket => {
                std::os::unix::net::UnixListener::bind(&path)
                    .unwrap_or_else(|e| panic!("bind a socket at {}: {e}", path.display()));
                Some(0o644)
            }
        };
        if let Some(m) = mode.or(default_mode) {
            assert!(default_mode.is_some(), "a symlink has no mode: {item:?}");
            modes.push((path, m));
        }
    }
    // Children first, so that a read-only or mode 000 directory is closed last.
    for (path, mode) in modes.into_iter().rev() {
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))
            .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
    }
}

fn create_dirs(root: &Path, dir: &Path) {
    if dir == root || fs::symlink_metadata(dir).is_ok() {
        return;
    }
    if let Some(parent) = dir.parent() {
        create_dirs(root, parent);
    }
    fs::create_dir(dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).expect("chmod a parent");
}

/// What an object is, as far as the tests care.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Dir,
    /// The full content; shown shortened in reports.
    File(Vec<u8>),
    Symlink(PathBuf),
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
    /// A regular file the snapshot could not read (only possible without root).
    Unreadable(String),
}

/// One object of a [`snapshot`].
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Entry {
    /// Relative to the snapshot root; the root itself is `.`.
    pub path: PathBuf,
    pub kind: Kind,
    /// `st_mode & 0o7777` (0 for symlinks, whose mode means nothing on Linux).
    pub mode: u32,
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tag = match self.kind {
            Kind::Dir => 'd',
            Kind::File(_) | Kind::Unreadable(_) => 'f',
            Kind::Symlink(_) => 'l',
            Kind::Fifo => 'p',
            Kind::Socket => 's',
            Kind::CharDevice => 'c',
            Kind::BlockDevice => 'b',
        };
        let path = ByteStr(self.path.as_os_str().as_bytes());
        write!(f, "{tag} {:04o} {path:?}", self.mode)?;
        match &self.kind {
            Kind::File(bytes) if bytes.len() <= 64 => {
                write!(f, " {} bytes {:?}", bytes.len(), ByteStr(bytes))
            }
            Kind::File(bytes) => {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                bytes.hash(&mut h);
                write!(f, " {} bytes, hash {:016x}", bytes.len(), h.finish())
            }
            Kind::Symlink(target) => {
                write!(f, " -> {:?}", ByteStr(target.as_os_str().as_bytes()))
            }
            Kind::Unreadable(e) => write!(f, " unreadable: {e}"),
            _ => Ok(()),
        }
    }
}

/// Describes every object under `root` (included, as `.`), sorted by path, without following
/// symlinks. A missing root gives an empty snapshot. Directory sizes are left out: they
/// depend on the filesystem's history, not on what the directory holds.
pub fn snapshot(root: &Path) -> Vec<Entry> {
    let mut entries = Vec::new();
    if fs::symlink_metadata(root).is_ok() {
        walk(root, Path::new("."), &mut entries);
    }
    entries.sort();
    entries
}

/// The paths of a [`snapshot`] of `root` (`.` for itself), sorted, without kinds, modes
/// or contents.
pub fn paths(root: &Path) -> Vec<PathBuf> {
    snapshot(root).into_iter().map(|e| e.path).collect()
}

fn walk(path: &Path, rel: &Path, out: &mut Vec<Entry>) {
    let meta = fs::symlink_metadata(path).unwrap_or_else(|e| panic!("lstat {path:?}: {e}"));
    let ft = meta.file_type();
    let kind = if ft.is_dir() {
        Kind::Dir
    } else if ft.is_file() {
        match fs::read(path) {
            Ok(bytes) => Kind::File(bytes),
            Err(e) => Kind::Unreadable(e.to_string()),
        }
    } else if ft.is_symlink() {
        Kind::Symlink(fs::read_link(path).expect("readlink"))
    } else if ft.is_fifo() {
        Kind::Fifo
    } else if ft.is_socket() {
        Kind::Socket
    } else if ft.is_char_device() {
        Kind::CharDevice
    } else {
        Kind::BlockDevice
    };
    let mode = if ft.is_symlink() {
        0
    } else {
        meta.mode() & 0o7777
    };
    out.push(Entry {
        path: rel.to_path_buf(),
        kind,
        mode,
    });
    if ft.is_dir() {
        let entries = match fs::read_dir(path) {
            Ok(entries) => entries,
            Err(e) => {
                // Only without root: record that the contents could not be listed.
                out.push(Entry {
                    path: rel.join("<unlistable>"),
                    kind: Kind::Unreadable(e.to_string()),
                    mode: 0,
                });
                return;
            }
        };
        for entry in entries {
            let entry = entry.expect("read a directory entry");
            let name = entry.file_name();
            let child = if rel == Path::new(".") {
                PathBuf::from(name)
            } else {
                rel.join(name)
            };
            walk(&entry.path(), &child, out);
        }
    }
}

/// A new pseudo-terminal, `(master, slave)`, of window size `size` if given.
pub fn openpty(size: Option<libc::winsize>) -> (OwnedFd, OwnedFd) {
    let (mut master, mut slave) = (-1, -1);
    let size_ptr = size
        .as_ref()
        .map_or(std::ptr::null(), |s| s as *const libc::winsize);
    // SAFETY: openpty writes two fds into the given ints; name, termios and size may be null.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            size_ptr,
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: openpty returned these two fds, owned by nobody else.
    unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) }
}

/// A tmpfs mounted for the life of the guard.
pub struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Mounts a 1 MiB tmpfs on the existing directory `path`. Needs root.
    pub fn mount(path: &Path) -> Result<Tmpfs, String> {
        Tmpfs::mount_sized(path, "1m")
    }

    /// Mounts a tmpfs of `size` (mount's `size=` option: `8m`) on `path`. Needs root.
    pub fn mount_sized(path: &Path, size: &str) -> Result<Tmpfs, String> {
        if !is_root() {
            return Err(format!(
                "mounting a tmpfs on {} needs root: run the tests as root",
                path.display()
            ));
        }
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status()
            .map_err(|e| format!("run mount: {e}"))?;
        if !status.success() {
            return Err(format!("mount tmpfs on {}: {status}", path.display()));
        }
        Ok(Tmpfs {
            path: path.to_path_buf(),
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        unmount(&self.path);
    }
}

/// Unmount what is mounted on `dir`, lazily (`umount -l`) if it is busy; for the `Drop` of
/// a mount guard, which must not fail.
pub fn unmount(dir: &Path) {
    let unmounted = Command::new("umount")
        .arg(dir)
        .status()
        .is_ok_and(|s| s.success());
    if !unmounted {
        let _ = Command::new("umount").arg("-l").arg(dir).status();
    }
}

/// A bind mount of `source` on `target` (`mount --bind`) for the life of the guard: the
/// same directory seen at a second path. Needs root.
pub struct BindMount {
    target: PathBuf,
}

impl BindMount {
    pub fn mount(source: &Path, target: &Path) -> Result<BindMount, String> {
        if !is_root() {
            return Err(format!(
                "bind-mounting {} needs root: run the tests as root",
                source.display()
            ));
        }
        let status = Command::new("mount")
            .arg("--bind")
            .arg(source)
            .arg(target)
            .status()
            .map_err(|e| format!("run mount: {e}"))?;
        if !status.success() {
            return Err(format!(
                "mount --bind {} {}: {status}",
                source.display(),
                target.display()
            ));
        }
        Ok(BindMount {
            target: target.to_path_buf(),
        })
    }
}

impl Drop for BindMount {
    fn drop(&mut self) {
        unmount(&self.target);
    }
}

/// One differential case: GNU rm and saferm get copies of the same tree (in sibling
/// directories `gnu/` and `saferm/` of one sandbox, so relative paths in messages are the
/// same), the same arguments, stdin and working directory; everything observable must match.
#[derive(Clone)]
pub struct Differential {
    tree: Vec<String>,
    args: Vec<OsString>,
    stdin: Option<Vec<u8>>,
    cwd: PathBuf,
    saferm_env: Vec<(OsString, OsString)>,
    unprivileged: bool,
    tmpfs: Vec<(String, Vec<String>)>,
    saferm_warnings: Vec<String>,
}

impl Differential {
    /// A case on a tree built from `spec` (see [`build_tree`]), with no arguments yet.
    pub fn new(spec: &[&str]) -> Differential {
        Differential {
            tree: spec.iter().map(|s| s.to_string()).collect(),
            args: Vec::new(),
            stdin: None,
            cwd: PathBuf::from("."),
            saferm_env: Vec::new(),
            unprivileged: false,
            tmpfs: Vec::new(),
            saferm_warnings: Vec::new(),
        }
    }

    /// A line saferm adds to stderr where rm says nothing (a documented difference, like the
    /// socket warning): it must appear exactly once, and the rest must match GNU.
    pub fn saferm_warning(mut self, line: &str) -> Self {
        self.saferm_warnings.push(line.to_string());
        self
    }

    /// Arguments after `rm`; `\xHH` escapes stand for bytes.
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|a| unescape(a)));
        self
    }

    /// stdin for both runs (a pipe closed after these bytes); default /dev/null.
    pub fn stdin(mut self, bytes: impl AsRef<[u8]>) -> Self {
        self.stdin = Some(bytes.as_ref().to_vec());
        self
    }

    /// The working directory, relative to the tree's root (default: the root).
    pub fn cwd(mut self, rel: &str) -> Self {
        self.cwd = PathBuf::from(rel);
        self
    }

    /// An environment variable for the saferm run only.
    pub fn saferm_env(mut self, key: &str, value: &str) -> Self {
        self.saferm_env.push((key.into(), value.into()));
        self
    }

    /// Both runs as uid 65534 (see [`TestCommand::unprivileged`]); the whole sandbox is
    /// chowned to that user after the trees are built.
    pub fn unprivileged(mut self) -> Self {
        self.unprivileged = true;
        self
    }

    /// Mounts a tmpfs on the directory `mount_point` (which the tree must create), then
    /// builds `inside` (paths relative to the tree's root, so under `mount_point`).
    pub fn tmpfs(mut self, mount_point: &str, inside: &[&str]) -> Self {
        self.tmpfs.push((
            mount_point.to_string(),
            inside.iter().map(|s| s.to_string()).collect(),
        ));
        self
    }

    /// One line naming the case: the command and everything it ran with.
    pub fn describe(&self) -> String {
        let mut s = describe_args(&self.args);
        if self.tree.len() > REPORT_LINES {
            let head = &self.tree[..REPORT_LINES];
            write!(
                s,
                "   tree: {head:?} and {} more",
                self.tree.len() - REPORT_LINES
            )
        } else {
            write!(s, "   tree: {:?}", self.tree)
        }
        .expect("write to a String");
        for (mp, inside) in &self.tmpfs {
            write!(s, " + tmpfs on {mp:?}: {inside:?}").expect("write to a String");
        }
        if let Some(stdin) = &self.stdin {
            write!(s, "   stdin: {:?}", ByteStr(stdin)).expect("write to a String");
        }
        if self.cwd != Path::new(".") {
            write!(s, "   cwd: {:?}", self.cwd).expect("write to a String");
        }
        if self.unprivileged {
            s.push_str("   as uid 65534");
        }
        for (k, v) in &self.saferm_env {
            write!(s, "   saferm env {k:?}={v:?}").expect("write to a String");
        }
        s
    }

    /// Runs both sides; `Err` holds a readable report of every difference.
    pub fn check(&self) -> Result<(), String> {
        let sandbox = Sandbox::new();
        let mut mounts = Vec::new();
        let mut roots = Vec::new();
        for side in ["gnu", "saferm"] {
            let root = sandbox.work(side);
            let spec: Vec<&str> = self.tree.iter().map(String::as_str).collect();
            build_tree(&root, &spec);
            for (mp, inside) in &self.tmpfs {
                mounts.push(
                    Tmpfs::mount(&root.join(mp))
                        .map_err(|e| format!("{}\n  setup failed: {e}", self.describe()))?,
                );
                let inside: Vec<&str> = inside.iter().map(String::as_str).collect();
                build_tree(&root, &inside);
            }
            roots.push(root);
        }
        if self.unprivileged {
            if !is_root() {
                return Err(format!(
                    "{}\n  needs root to run as uid {NOBODY}: run the tests as root",
                    self.describe()
                ));
            }
            sandbox.chown_all(NOBODY, NOBODY);
        }
        let run = |program: &Path, root: &Path, env: &[(OsString, OsString)]| {
            let mut cmd = sandbox
                .command(program)
                .args(&self.args)
                .current_dir(root.join(&self.cwd));
            if let Some(stdin) = &self.stdin {
                cmd = cmd.stdin(stdin);
            }
            for (k, v) in env {
                cmd = cmd.env(k, v);
            }
            if self.unprivileged {
                cmd = cmd.unprivileged();
            }
            cmd.run()
        };
        let gnu = run(Path::new(GNU_RM), &roots[0], &[]);
        let mut ours = run(&saferm_bin(), &roots[1], &self.saferm_env);
        // Instant mode: what was staged must be archived, and nothing left staged; unrm
        // finishes it (waiting for the worker saferm started).
        let instant = self
            .saferm_env
            .iter()
            .any(|(k, v)| k == "SAFERM_INSTANT" && v == "1");
        let mut staging_report = String::new();
        if instant && sandbox.store().join("staging").exists() {
            let mut list = sandbox
                .command(unrm_bin())
                .arg("--list")
                .current_dir(&roots[1]);
            for (k, v) in &self.saferm_env {
                list = list.env(k, v);
            }
            if self.unprivileged {
                list = list.unprivileged();
            }
            let listed = list.run();
            if listed.code() != Some(0) {
                writeln!(staging_report, "  unrm --list: {}", listed.stderr_text())
                    .expect("write to a String");
            }
            let left: Vec<String> = fs::read_dir(sandbox.store().join("staging"))
                .map(|d| {
                    d.filter_map(|e| e.ok())
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .filter(|n| n != ".drain")
                        .collect()
                })
                .unwrap_or_default();
            if !left.is_empty() {
                writeln!(staging_report, "  left staged after unrm: {left:?}")
                    .expect("write to a String");
            }
        }
        let mut missing_warnings = Vec::new();
        for w in &self.saferm_warnings {
            let text = String::from_utf8_lossy(&ours.stderr).into_owned();
            if text.matches(w.as_str()).count() == 1 {
                ours.stderr = text.replacen(w.as_str(), "", 1).into_bytes();
            } else {
                missing_warnings.push(w.clone());
            }
        }
        let gnu_tree = snapshot(&roots[0]);
        let our_tree = snapshot(&roots[1]);
        drop(mounts);

        let mut report = staging_report;
        for w in &missing_warnings {
            writeln!(report, "  saferm's stderr lacks (or repeats) {w:?}")
                .expect("write to a String");
        }
        if gnu.status_text() != ours.status_text() {
            writeln!(
                report,
                "  status: gnu {}, saferm {}",
                gnu.status_text(),
                ours.status_text()
            )
            .expect("write to a String");
        }
        for (name, g, o) in [
            ("stdout", &gnu.stdout, &ours.stdout),
            ("stderr", &gnu.stderr, &ours.stderr),
        ] {
            if g != o {
                writeln!(report, "  {name} differs:").expect("write to a String");
                report.push_str(&output_diff(g, o));
            }
        }
        if gnu_tree != our_tree {
            report.push_str("  resulting tree differs:\n");
            let gnu_set: BTreeSet<&Entry> = gnu_tree.iter().collect();
            let our_set: BTreeSet<&Entry> = our_tree.iter().collect();
            let only_gnu = gnu_set.difference(&our_set).map(|e| ("gnu:   ", e));
            let only_ours = our_set.difference(&gnu_set).map(|e| ("saferm:", e));
            let lines: Vec<_> = only_gnu.chain(only_ours).collect();
            for (side, e) in lines.iter().take(REPORT_LINES) {
                writeln!(report, "    only {side} {e}").expect("write to a String");
            }
            if lines.len() > REPORT_LINES {
                writeln!(report, "    ... {} more", lines.len() - REPORT_LINES)
                    .expect("write to a String");
            }
        }
        if report.is_empty() {
            return Ok(());
        }
        if gnu.status_text() == ours.status_text() && gnu.stderr == ours.stderr {
            writeln!(
                report,
                "  (both: {}, stderr {:?})",
                gnu.status_text(),
                ByteStr(&gnu.stderr)
            )
            .expect("write to a String");
        }
        Err(format!("{}\n{report}", self.describe()))
    }
}

/// How many lines of a long difference a report shows.
const REPORT_LINES: usize = 12;

/// Both outputs in full when short; otherwise where they start to differ, line by line.
fn output_diff(gnu: &[u8], ours: &[u8]) -> String {
    if gnu.len() + ours.len() <= 2000 {
        return format!(
            "    gnu:    {:?}\n    saferm: {:?}\n",
            ByteStr(gnu),
            ByteStr(ours)
        );
    }
    let g: Vec<&[u8]> = gnu.split_inclusive(|&b| b == b'\n').collect();
    let o: Vec<&[u8]> = ours.split_inclusive(|&b| b == b'\n').collect();
    let first = g.iter().zip(&o).take_while(|(a, b)| a == b).count();
    let mut s = format!(
        "    {} lines from gnu, {} from saferm; the first {first} are equal, then:\n",
        g.len(),
        o.len()
    );
    for (side, lines) in [("gnu:   ", &g), ("saferm:", &o)] {
        for line in lines.iter().skip(first).take(REPORT_LINES / 2) {
            writeln!(s, "    {side} {:?}", ByteStr(line)).expect("write to a String");
        }
    }
    s
}

/// Checks one case and panics with its report if saferm and GNU rm differ.
pub fn differential(spec: &[&str], args: &[&str], stdin: Option<&str>) {
    let mut case = Differential::new(spec).args(args);
    if let Some(stdin) = stdin {
        case = case.stdin(stdin);
    }
    if let Err(report) = case.check() {
        panic!("saferm differs from GNU rm:\n{report}");
    }
}

/// Checks every case, then panics listing all that differ (with their arguments), so one
/// broken behaviour does not hide the others.
pub fn run_all(cases: impl IntoIterator<Item = Differential>) {
    let mut total = 0;
    // Each case twice: as saferm runs by default, and in instant mode (issue 14), which
    // must answer exactly as rm too.
    let failures: Vec<String> = cases
        .into_iter()
        .flat_map(|case| {
            let instant = case
                .clone()
                .saferm_env("SAFERM_INSTANT", "1")
                .saferm_env("SAFERM_INSTANT_MIN", "0");
            [case, instant]
        })
        .inspect(|_| total += 1)
        .filter_map(|case| case.check().err())
        .collect();
    if !failures.is_empty() {
        panic!(
            "{} of {total} cases differ from GNU rm:\n\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
}

/// Makes files immutable or directories append-only, and undoes it when dropped (the
/// sandbox must be removable): the `chattr -i -a` of each path, ready to run.
pub struct Attrs(Vec<std::process::Command>);

impl Attrs {
    /// `chattr FLAG` on each path; None (after a loud skip) when that cannot be done here.
    pub fn set(sb: &Sandbox, flag: &str, paths: &[PathBuf]) -> Option<Attrs> {
        if !is_root() {
            let why = "chattr +i/+a needs root: removals that fail are not tested";
            assert!(
                std::env::var_os("SAFERM_TEST_REQUIRE_ALL").is_none_or(|v| v != "1"),
                "{why}"
            );
            eprintln!("\n*** SKIPPED: {why}. ***");
            return None;
        }
        let chattr = tool("chattr", "removals that fail (chattr +i)")?;
        let mut done = Attrs(Vec::new());
        for p in paths {
            let ok = sb
                .std_command(&chattr)
                .arg(flag)
                .arg(p)
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                eprintln!("\n*** SKIPPED: chattr {flag} does not work here. ***");
                return None;
            }
            let mut undo = sb.std_command(&chattr);
            undo.args(["-i", "-a"]).arg(p);
            done.0.push(undo);
        }
        Some(done)
    }
}

impl Drop for Attrs {
    fn drop(&mut self) {
        for undo in &mut self.0 {
            let _ = undo.status();
        }
    }
}

/// `text` with the time in each `(deleted WHEN...` that unrm says of a restore made
/// `WHEN` (`just now`, `3 s ago`: it depends on how fast the test ran).
pub fn when_blanked(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("(deleted ") {
        let (head, tail) = rest.split_at(at + "(deleted ".len());
        out.push_str(head);
        out.push_str("WHEN");
        let end = tail.find([';', ')']).unwrap_or(tail.len());
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}
