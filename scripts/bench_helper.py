#!/usr/bin/env python3
"""Helper for scripts/bench (python3 standard library only).

  bench_helper.py gen KIND DIR SCALE        create tree KIND (nodemod|repo|small|large|src)
                                            at DIR; prints "FILES BYTES DIRS SYMLINKS"
  bench_helper.py count DIR                 prints "FILES BYTES DIRS SYMLINKS" of the tree
                                            at DIR (regular files, their bytes, directories
                                            with DIR itself, symlinks; nothing followed)
  bench_helper.py pick-id PATH              reads `unrm --list --json` on stdin, prints the
                                            id of the newest deletion of PATH
  bench_helper.py percall OUT CALLS DIR SAFERM STORE PIPEDIR TRASH_PUT TRASH_HOME
                                            one-file-per-call timing loop (tree "single");
                                            appends result rows to OUT; TRASH_PUT "-":
                                            no trash-put
  bench_helper.py wait-staging STORE        wait until instant mode's worker has archived
                                            what is staged in STORE and let go of its lock
  bench_helper.py report RESULTS [--markdown]
                                            print the result table(s)

Every byte is a function of fixed seeds: two runs generate identical trees.
"""

import bisect
import fcntl
import hashlib
import itertools
import json
import math
import os
import random
import statistics
import string
import subprocess
import sys
import time

SEED = 20251126
KIB = 1024
MIB = 1024 * 1024

# ---------------------------------------------------------------- content


def make_text_pool(rng, approx_bytes=8 * MIB):
    """Source-code-like text (zstd -1 compresses it ~3x): lines of Zipf-distributed
    tokens, the lines themselves drawn with a Zipf law, as code repeats idioms."""
    letters = string.ascii_lowercase
    idents = []
    for _ in range(4000):
        n = min(12, int(rng.expovariate(1 / 5)) + 2)
        w = "".join(rng.choices(letters, k=n))
        if rng.random() < 0.2:
            w += "_" + "".join(rng.choices(letters, k=rng.randint(2, 6)))
        idents.append(w)
    kw = ("fn let if else return for in match pub struct impl use mod self true false "
          "None Some Ok Err const while loop break the a of to and is").split()
    punct = ["(", ")", "{", "}", ";", ",", ".", "=", "==", "->", "&", "::", "+", "-",
             "*", '"', "[", "]", "<", ">", "0", "1", "42", "//", "#"]
    vocab = kw + punct + idents
    weights = [8.0] * len(kw) + [6.0] * len(punct) + [
        30.0 / (r + 1) ** 0.9 for r in range(len(idents))]
    cum = list(itertools.accumulate(weights))
    lines = []
    for _ in range(20000):
        indent = "    " * min(4, int(rng.expovariate(1 / 1.2)))
        lines.append(indent + " ".join(rng.choices(vocab, cum_weights=cum,
                                                   k=rng.randint(1, 12))))
    line_cum = list(itertools.accumulate(1.0 / (r + 1) ** 0.6 for r in range(len(lines))))
    out, size = [], 0
    while size < approx_bytes:
        for line in rng.choices(lines, cum_weights=line_cum, k=10000):
            out.append(line)
            size += len(line) + 1
    return "\n".join(out).encode()


class Content:
    """Deterministic text-like and random byte strings."""

    def __init__(self, seed):
        self.rng = random.Random(seed)
        self.seed = seed
        self.pool = make_text_pool(self.rng)
        # Each text chunk goes through one of these letter permutations: the
        # statistics (and zstd -1 ratio) stay those of the pool, but chunks cut
        # from the same pool offset are no longer byte-identical, so a
        # compressor with a long window cannot deduplicate the 8 MiB pool.
        lower = string.ascii_lowercase.encode()
        self.tables = []
        for _ in range(1024):
            perm = bytearray(lower)
            self.rng.shuffle(perm)
            self.tables.append(bytes.maketrans(lower, bytes(perm)))
        self.counter = 0

    def text(self, n):
        if n == 0:
            return b""
        off = self.rng.randrange(len(self.pool) - n)
        return self.pool[off:off + n].translate(self.rng.choice(self.tables))

    def random(self, n):
        self.counter += 1
        return hashlib.shake_128(b"%d-%d" % (self.seed, self.counter)).digest(n)


# ---------------------------------------------------------------- trees


def write_file(path, data):
    with open(path, "wb") as f:
        f.write(data)


def gen_small(root, scale):
    """(a) ~50,000 files of 0-16 KiB (mean ~5.9 KiB, ~290 MiB), 70% text-like,
    30% random, in a 3-level tree with fan-out 8 (585 directories)."""
    c = Content(SEED + 1)
    rng = random.Random(SEED + 11)
    nfiles = max(1, round(50000 * scale))
    dirs = [""]
    for a in range(8):
        dirs.append(f"d{a}")
        for b in range(8):
            dirs.append(f"d{a}/s{b}")
            for k in range(8):
                dirs.append(f"d{a}/s{b}/t{k}")
    for d in dirs:
        os.makedirs(os.path.join(root, d), exist_ok=True)
    plan = []
    for i in range(nfiles):
        d = rng.choice(dirs)
        size = int(16 * KIB * rng.random() ** 1.7)  # skewed to small files
        is_text = rng.random() < 0.7
        plan.append((d, f"f{i:05d}.{'txt' if is_text else 'bin'}", size, is_text))
    plan.sort()  # create directory by directory, as a checkout or unpack would
    total = 0
    for d, name, size, is_text in plan:
        write_file(os.path.join(root, d, name), c.text(size) if is_text else c.random(size))
        total += size
    return count_tree(root)


def gen_large(root, scale):
    """(b) 4 files of 500 MiB: two text-like, two random (2000 MiB)."""
    c = Content(SEED + 2)
    rng = random.Random(SEED + 22)
    os.makedirs(root, exist_ok=True)
    size = max(1, int(500 * MIB * scale))
    total = 0
    for i, kind in enumerate(["text", "random", "text", "random"]):
        left = size
        with open(os.path.join(root, f"large{i}.{'txt' if kind == 'text' else 'bin'}"),
                  "wb") as f:
            while left:
                n = min(left, rng.randint(64 * KIB, MIB) if kind == "text" else 4 * MIB)
                f.write(c.text(n) if kind == "text" else c.random(n))
                left -= n
        total += size
    return count_tree(root)


def gen_src(root, scale):
    """(c) a source tree: 10,000 text-like files, log-normal sizes, 480 MiB total,
    in ~400 directories up to 6 levels deep."""
    c = Content(SEED + 3)
    rng = random.Random(SEED + 33)
    nfiles = max(1, round(10000 * scale))
    target = int(480 * MIB * scale)
    words = ["src", "lib", "core", "net", "util", "test", "fs", "io", "sync", "cli",
             "parse", "proto", "db", "http", "auth", "cache", "log", "api", "ui", "ffi"]
    dirs = [("", 0)]
    for i in range(max(1, nfiles // 25) - 1):
        parent, depth = rng.choice([d for d in dirs if d[1] < 6] or dirs)
        dirs.append((os.path.join(parent, f"{rng.choice(words)}{i}"), depth + 1))
    for d, _ in dirs:
        os.makedirs(os.path.join(root, d), exist_ok=True)
    raw = [min(rng.lognormvariate(10.0, 1.1), 4 * MIB) for _ in range(nfiles)]
    k = target / sum(raw)
    exts = ["rs", "c", "h", "py", "js", "go", "md", "toml", "json", "txt"]
    plan = []
    for i, r in enumerate(raw):
        plan.append((rng.choice(dirs)[0], f"{rng.choice(words)}_{i}.{rng.choice(exts)}",
                     int(r * k)))
    plan.sort()
    total = 0
    for d, name, size in plan:
        write_file(os.path.join(root, d, name), c.text(size))
        total += size
    return count_tree(root)


NPM_WORDS = ("is get set array object string parse json path fs stream buffer util core "
             "plugin transform loader babel eslint types react dom es abstract define "
             "property has symbols call bind fast deep equal glob match semver color ansi "
             "regex escape source map support resolve yargs parser cli char code point "
             "emoji wrap width strip final newline once inherits safe readable typed "
             "iterator proto async queue event emitter http proxy agent url mime db "
             "config env dot lodash merge clone which cross spawn signal exit").split()
PKG_SUBDIRS = ["lib", "dist", "src", "esm", "cjs", "types", "utils", "internal", "helpers",
               "es", "umd", "locale", "modules", "build", "plugins", "components", "bin",
               "test", "fp", "compat", "polyfills", "node", "browser", "shared", "rules"]
NPM_EXTS = [("js", 44), ("d.ts", 12), ("js.map", 10), ("json", 6), ("md", 4), ("mjs", 6),
            ("cjs", 4), ("ts", 5), ("flow", 2), ("css", 2), ("txt", 2), ("yml", 1)]
NPM_BINARY_EXTS = ["node", "wasm", "png", "woff2"]


def gen_nodemod(root, scale):
    """(e) a node_modules-like tree: ~50,000 files (290 MiB) in ~7,400 directories (one
    per 6-7 files) at scale 1; ~1,250 packages, 15 % of them scoped (@scope/name), a
    quarter nested in another package's node_modules, directories nested up to 8
    levels; ~17 % of the packages have a bin/ script linked from the .bin directory of
    the node_modules that holds them (relative symlinks). File sizes are log-normal
    (median ~0.8 KiB: most files under 1 KiB, a long tail up to 8 MiB); 98 % text-like
    (the code pool), 2 % random (.node, .wasm, .png, .woff2)."""
    c = Content(SEED + 5)
    rng = random.Random(SEED + 55)
    nfiles = max(3, round(50000 * scale))
    target_bytes = int(290 * MIB * scale)
    target_dirs = round(nfiles / 6.4)
    npkg = max(1, nfiles // 40)
    nscopes = max(1, round(npkg * 0.03))
    scopes = []
    while len(scopes) < nscopes:
        s = "@" + rng.choice(NPM_WORDS) + rng.choice(["", "js", "-io", "hq", "labs"])
        if s not in scopes:
            scopes.append(s)
    # packages: (relative dir, depth, node_modules dir holding it, name relative to it)
    pkgs = []
    names_in = {}  # node_modules dir -> names used there
    for _ in range(npkg):
        nested = [p for p in pkgs if p[1] <= 5]
        if nested and rng.random() < 0.25:
            # deeper parents are rarer, as npm hoists what it can
            parent = rng.choices(nested, weights=[4.0 ** -p[1] for p in nested])[0]
            nm, depth0 = os.path.join(parent[0], "node_modules"), parent[1] + 1
        else:
            nm, depth0 = "", 0
        used = names_in.setdefault(nm, set())
        while True:
            name = "-".join(rng.choices(NPM_WORDS, k=rng.choice([1, 1, 2, 2, 2, 3])))
            if rng.random() < 0.15 and depth0 + 2 <= 7:
                name = rng.choice(scopes) + "/" + name
            if name not in used:
                used.add(name)
                break
        depth = depth0 + 1 + name.count("/")
        pkgs.append((os.path.join(nm, name), depth, nm, name))
    dirs = {""}
    for d, _, nm, _ in pkgs:
        # the package, its scope directory, its node_modules
        parts = d.split("/")
        for k in range(1, len(parts) + 1):
            dirs.add("/".join(parts[:k]))
    # files per package: package.json, README.md, LICENSE, then a heavy-tailed share
    weights = [rng.paretovariate(1.1) for _ in pkgs]
    per_pkg = [3] * npkg
    for k in rng.choices(range(npkg), weights=weights, k=max(0, nfiles - 3 * npkg)):
        per_pkg[k] += 1
    bins = [k for k in range(npkg) if rng.random() < 0.17]
    bin_nms = {pkgs[k][2] for k in bins}
    inner_ratio = max(0, target_dirs - len(dirs) - len(bin_nms) - len(bins)) / nfiles
    plan = []  # (relative path, size weight, is_text)
    links = []  # (relative path of the link, target)
    for k, (pdir, depth, nm, name) in enumerate(pkgs):
        pdirs = [(pdir, depth)]
        for _ in range(round(per_pkg[k] * inner_ratio * rng.uniform(0.5, 1.5))):
            choices = [x for x in pdirs if x[1] < 8]
            if not choices:
                break
            parent, pd = rng.choice(choices)
            sub = rng.choice(PKG_SUBDIRS)
            while os.path.join(parent, sub) in dirs:
                sub = rng.choice(PKG_SUBDIRS) + str(rng.randrange(100))
            pdirs.append((os.path.join(parent, sub), pd + 1))
            dirs.add(pdirs[-1][0])
        names = ["package.json", "README.md", "LICENSE"]
        where = [pdir, pdir, pdir]
        if k in bins and depth < 8:
            bindir = os.path.join(pdir, "bin")
            dirs.add(bindir)
            binname = name.split("/")[-1]
            names[2:2] = [binname + ".js"]
            where[2:2] = [bindir]
            used = names_in.setdefault(os.path.join(nm, ".bin"), set())
            if binname not in used:
                used.add(binname)
                dirs.add(os.path.join(nm, ".bin"))
                links.append((os.path.join(nm, ".bin", binname),
                              os.path.join("..", name, "bin", binname + ".js")))
        for i in range(len(names), per_pkg[k]):
            ext = rng.choices(NPM_EXTS, weights=[w for _, w in NPM_EXTS])[0][0]
            if rng.random() < 0.02:
                ext = rng.choice(NPM_BINARY_EXTS)
            names.append(f"{rng.choice(NPM_WORDS)}{i}.{ext}")
            where.append(rng.choice(pdirs)[0])
        for d, n in zip(where, names[:per_pkg[k]]):
            raw = min(rng.lognormvariate(math.log(800), 2.0), 8 * MIB)
            plan.append((os.path.join(d, n), raw, n.rsplit(".", 1)[-1] not in NPM_BINARY_EXTS))
    for d in sorted(dirs):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    k = target_bytes / sum(r for _, r, _ in plan)
    plan.sort()
    for path, raw, is_text in plan:
        size = min(int(raw * k), 8 * MIB)
        write_file(os.path.join(root, path), c.text(size) if is_text else c.random(size))
    for path, target in sorted(links):
        os.symlink(target, os.path.join(root, path))
    return count_tree(root)


GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_AUTHOR_NAME": "Bench", "GIT_AUTHOR_EMAIL": "bench@example.org",
    "GIT_COMMITTER_NAME": "Bench", "GIT_COMMITTER_EMAIL": "bench@example.org",
}


def git(root, *args, date=None):
    env = dict(os.environ, **GIT_ENV)
    if date:
        env["GIT_AUTHOR_DATE"] = env["GIT_COMMITTER_DATE"] = date
    subprocess.run(["git", "-c", "pack.threads=1", "-c", "gc.auto=0",
                    "-c", "core.fsync=none", *args], cwd=root, env=env, check=True,
                   stdout=subprocess.DEVNULL)


def gen_repo(root, scale):
    """(f) a source repository with a real .git: 9,400 text-like files (log-normal
    sizes, ~400 directories up to 6 levels, 340 MiB) committed in 3 commits, packed
    with `git repack -a -d` (one pack, deltas of the edited files), then 2 more commits
    editing ~2 % of the files and adding ~0.5 %, left as loose objects. ~10,000 files,
    ~480 MiB with .git at scale 1. Fixed names and dates (and pack.threads=1): the same
    repository, object for object, every time."""
    c = Content(SEED + 6)
    rng = random.Random(SEED + 66)
    nfiles = max(10, round(9400 * scale))
    target = int(340 * MIB * scale)
    words = ["src", "lib", "core", "net", "util", "test", "fs", "io", "sync", "cli",
             "parse", "proto", "db", "http", "auth", "cache", "log", "api", "ui", "ffi"]
    dirs = [("", 0)]
    for i in range(max(1, nfiles // 25) - 1):
        parent, depth = rng.choice([d for d in dirs if d[1] < 6] or dirs)
        dirs.append((os.path.join(parent, f"{rng.choice(words)}{i}"), depth + 1))
    for d, _ in dirs:
        os.makedirs(os.path.join(root, d), exist_ok=True)
    raw = [min(rng.lognormvariate(10.0, 1.1), 4 * MIB) for _ in range(nfiles)]
    k = target / sum(raw)
    exts = ["rs", "c", "h", "py", "js", "go", "md", "toml", "json", "txt"]
    files = sorted((os.path.join(rng.choice(dirs)[0],
                                 f"{rng.choice(words)}_{i}.{rng.choice(exts)}"), int(r * k))
                   for i, r in enumerate(raw))
    rng.shuffle(files)  # the commit each file first appears in
    n_late = max(1, nfiles // 200)  # added by the loose commits
    cuts = [0, int(0.7 * nfiles), int(0.9 * nfiles), nfiles - n_late, nfiles]
    git(root, "init", "-q", "-b", "main")
    day = 0

    def commit(msg):
        nonlocal day
        day += 1
        git(root, "add", "-A")
        git(root, "commit", "-q", "-m", msg, date=f"2026-01-{day:02d}T12:00:00Z")

    def edit(path):
        # rewrite a region, as a change would: the rest of the file stays (git deltas it)
        full = os.path.join(root, path)
        with open(full, "rb") as f:
            data = f.read()
        at = rng.randrange(len(data) + 1)
        cut = min(len(data) - at, rng.randint(0, 4 * KIB))
        write_file(full, data[:at] + c.text(rng.randint(16, 4 * KIB)) + data[at + cut:])

    for step in range(3):
        for path, size in sorted(files[cuts[step]:cuts[step + 1]]):
            write_file(os.path.join(root, path), c.text(size))
        if step == 2:  # the third commit also edits 5 % of the first two commits' files
            for path, _ in rng.sample(files[:cuts[2]], max(1, cuts[2] // 20)):
                edit(path)
        commit(f"import, part {step + 1}")
    git(root, "repack", "-a", "-d", "-q")
    for step in range(2):
        for path, _ in rng.sample(files[:cuts[3]], max(1, nfiles // 100)):
            edit(path)
        if step == 0:
            for path, size in sorted(files[cuts[3]:]):
                write_file(os.path.join(root, path), c.text(size))
        commit(f"change {step + 1}")
    return count_tree(root)


def count_tree(root):
    """(regular files, their bytes, directories with root itself, symlinks) under root,
    nothing followed; anything else (fifos, devices) counts as a file of 0 bytes."""
    files = nbytes = links = 0
    dirs = 1
    stack = [root]
    while stack:
        with os.scandir(stack.pop()) as it:
            for e in it:
                if e.is_symlink():
                    links += 1
                elif e.is_dir(follow_symlinks=False):
                    dirs += 1
                    stack.append(e.path)
                else:
                    files += 1
                    if e.is_file(follow_symlinks=False):
                        nbytes += e.stat(follow_symlinks=False).st_size
    return files, nbytes, dirs, links


def single_file_content():
    return Content(SEED + 4).text(4 * KIB)


# ---------------------------------------------------------------- per-call loop


def percall(out, calls, workdir, saferm, store, pipedir, trash_put, trash_home):
    """(d) delete one 4 KiB file, one process per call, for each method.

    Each call: the file is (re)created without timing, then only the deleting
    process is timed (fork/exec of the child included, which is what a script
    pays). The methods are interleaved and their order rotated every call, so
    drift (writeback, journal commits) is shared between them. After an instant
    call its worker is waited for, and after a trash-put call the file is taken out
    of the trash again, untimed."""
    data = single_file_content()
    os.makedirs(workdir, exist_ok=True)
    name = "file-4k.txt"
    path = os.path.join(workdir, name)
    env = dict(os.environ, SAFERM_STORE=store, SAFERM_INSTANT="0")
    envs = {"instant": dict(env, SAFERM_INSTANT="1"),
            "trash-put": dict(os.environ, HOME=trash_home,
                              XDG_DATA_HOME=os.path.join(trash_home, ".local/share"))}
    trash = os.path.join(trash_home, ".local/share/Trash")
    methods = ["rm", "pipeline", "saferm", "instant"]
    if trash_put != "-":
        methods.append("trash-put")
    rows = []
    for i in range(calls):
        k = i % len(methods)
        for m in methods[k:] + methods[:k]:
            write_file(path, data)
            inode = os.lstat(path).st_ino
            if m == "rm":
                cmd = ["/usr/bin/rm", path]
            elif m == "pipeline":
                arc = os.path.join(pipedir, f"x{i}.tar.zst")
                cmd = ["sh", "-c", 'tar -I "zstd -1 -T0" -C / -cf "$1" "$2" && '
                       'zstd -q -t "$1" && rm -f "/$2"', "sh", arc, path.lstrip("/")]
            elif m == "trash-put":
                cmd = [trash_put, path]
            else:
                cmd = [saferm, path]
            t0 = time.perf_counter()
            r = subprocess.run(cmd, stdin=subprocess.DEVNULL, env=envs.get(m, env))
            t1 = time.perf_counter()
            if r.returncode != 0 or os.path.lexists(path):
                sys.exit(f"bench: {m} call {i} failed (exit {r.returncode}) "
                         f"or left {path} in place")
            if m == "instant":
                wait_staging(store)
            elif m == "trash-put":
                trashed = os.path.join(trash, "files", name)
                if not os.path.lexists(trashed) or os.lstat(trashed).st_ino != inode:
                    sys.exit(f"bench: trash-put call {i} did not rename {path} into "
                             f"{trash}/files")
                os.remove(trashed)
                os.remove(os.path.join(trash, "info", name + ".trashinfo"))
            rows.append(f"single\t{m}\t{i + 1}\t{t1 - t0:.6f}\t-\t-\n")
    with open(out, "a") as f:
        f.writelines(rows)


def wait_staging(store, timeout=900):
    """Wait until nothing is staged in STORE (instant mode's worker has archived it
    all) and the worker has let go of the staging lock (it is done)."""
    staging = os.path.join(store, "staging")

    def left():
        try:
            return [n for n in os.listdir(staging) if n != ".drain"]
        except FileNotFoundError:
            return []

    deadline = time.monotonic() + timeout
    while left():
        if time.monotonic() > deadline:
            sys.exit(f"bench: still staged in {staging} after {timeout} s: {left()}")
        time.sleep(0.002)
    # Only the worker that archived it can hold the lock now, and it is about to exit.
    try:
        with open(os.path.join(staging, ".drain"), "rb") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
    except FileNotFoundError:
        pass


def pick_id(path):
    """The id of the newest archived deletion (in `unrm --list --json` on stdin; not a
    staged one) that has PATH as an operand. The document holds them in `deletions`
    (doc/json.md); before it had a version, the listing was a bare array."""
    doc = json.load(sys.stdin)
    listed = doc.get("deletions", []) if isinstance(doc, dict) else doc
    found = [d for d in listed
             if d.get("state", "archived") == "archived"
             and any(o.get("absolute", {}).get("path") == path for o in d.get("operands", []))]
    if not found:
        sys.exit(f"bench: no deletion of {path} in unrm --list --json")
    print(max(found, key=lambda d: d["created"])["id"])


# ---------------------------------------------------------------- report

TREES = [  # result key ("tree:cache"; the per-call test has no cache state), label
    ("nodemod:warm", "node_modules-like, warm"),
    ("nodemod:cold", "node_modules-like, cold"),
    ("small:warm", "(a) small files, warm"),
    ("small:cold", "(a) small files, cold"),
    ("large:warm", "(b) 4 large files, warm"),
    ("large:cold", "(b) 4 large files, cold"),
    ("repo:warm", "repo with .git, warm"),
    ("repo:cold", "repo with .git, cold"),
    ("src:warm", "(c) source tree, warm"),
    ("src:cold", "(c) source tree, cold"),
    ("single", "(d) 4 KiB file, per call"),
]
METHODS = ["rm", "pipeline", "saferm", "instant", "trash-put"]
RESTORES = ["unrm", "tar-x", "tar-x+sync"]


def report(path, markdown):
    meta, params, times, rss, arch = {}, {}, {}, {}, {}
    with open(path) as f:
        for line in f:
            p = line.rstrip("\n").split("\t")
            if p[0] == "param":
                params[p[1]] = p[2]
            elif p[0] == "meta":  # files bytes [dirs symlinks] (older results: no dirs)
                meta[p[1]] = tuple(int(x) for x in p[2:6]) + (None, None)
            elif p[0] == "rss":  # peak RSS from extra, untimed calls
                rss[(p[1], p[2])] = int(p[3])
            elif len(p) == 6:
                tree, m, _, sec, kib, nbytes = p
                times.setdefault((tree, m), []).append(float(sec))
                if kib != "-":
                    rss[(tree, m)] = max(rss.get((tree, m), 0), int(kib))
                if nbytes != "-":
                    arch.setdefault((tree, m), []).append(int(nbytes))

    def fmt_t(tree, sec):
        # Under 0.1 s in ms (instant mode and trash-put return in a few), else in s.
        if tree == "single":
            return f"{sec * 1000:.2f} ms"
        return f"{sec * 1000:.1f} ms" if sec < 0.1 else f"{sec:.2f} s"

    def cell(tree, m):
        v = times.get((tree, m))
        return fmt_t(tree, statistics.median(v)) if v else "-"

    def ratio(tree, a, b):
        va, vb = times.get((tree, a)), times.get((tree, b))
        if not va or not vb:
            return "-"
        return f"{statistics.median(va) / statistics.median(vb):.2f}x"

    def mib(tree, m):
        v = arch.get((tree, m))
        return f"{statistics.median(v) / MIB:.1f}" if v else "-"

    def rss_cell(tree, m):
        return f"{rss[(tree, m)] / 1024:.1f}" if (tree, m) in rss else "-"

    restores = any(m in RESTORES for _, m in times)
    # Results saved before these methods were timed have no instant or trash-put rows,
    # and a run on a machine without trash-put none of the latter: no column for them.
    instant = any(m == "instant" for _, m in times)
    trash = any(m == "trash-put" for _, m in times)
    head = ["tree", "files", "dirs", "links", "MiB", "rm -rf", "pipeline", "saferm",
            "saferm/pipeline", "saferm/rm", "saferm peak RSS MiB",
            "archive MiB pipeline / saferm"]
    if instant:
        head += ["instant, to return", "instant/rm", "instant, archived",
                 "archived/saferm"]
    if trash:
        head += ["trash-put", "saferm/trash-put"]
    if instant and trash:
        head += ["instant/trash-put"]
    if restores:
        head += ["unrm", "tar -x", "unrm/tar", "tar -x+sync", "unrm/(tar+sync)",
                 "unrm peak RSS MiB"]
    rows = []
    for tree, label in TREES:
        if not any((tree, m) in times for m in METHODS):
            continue
        files, nbytes, ndirs, nlinks = meta.get(tree.split(":")[0], (0, 0, None, None))[:4]
        row = [label, str(files), "-" if ndirs is None else str(ndirs),
               "-" if nlinks is None else str(nlinks), f"{nbytes / MIB:.1f}",
               cell(tree, "rm"), cell(tree, "pipeline"), cell(tree, "saferm"),
               ratio(tree, "saferm", "pipeline"), ratio(tree, "saferm", "rm"),
               rss_cell(tree, "saferm"),
               f"{mib(tree, 'pipeline')} / {mib(tree, 'saferm')}"]
        if instant:
            row += [cell(tree, "instant"), ratio(tree, "instant", "rm"),
                    cell(tree, "instant-done"), ratio(tree, "instant-done", "saferm")]
        if trash:
            row += [cell(tree, "trash-put"), ratio(tree, "saferm", "trash-put")]
        if instant and trash:
            row += [ratio(tree, "instant", "trash-put")]
        if restores:
            row += [cell(tree, "unrm"), cell(tree, "tar-x"), ratio(tree, "unrm", "tar-x"),
                    cell(tree, "tar-x+sync"), ratio(tree, "unrm", "tar-x+sync"),
                    rss_cell(tree, "unrm")]
        rows.append(row)
    note = (f"median of {params.get('runs', '?')} runs per tree, cache state and method "
            f"({params.get('calls', '?')} calls for (d)); scale {params.get('scale', '?')}; "
            "warm: the tree as just written (after sync), cold: sync + drop_caches; "
            "peak RSS: the largest of the runs; "
            f"saferm = {params.get('saferm', '?')}")
    if instant:
        note += ("; saferm runs with SAFERM_INSTANT=0, instant with SAFERM_INSTANT=1 (the "
                 "time until it returns, the operands staged by rename; its worker, which "
                 "archives them in the background, was then waited for; instant, archived = "
                 "the time from the start until it had verified, made durable and unlinked "
                 "everything staged)")
    if trash:
        note += (f"; trash-put = {params.get('trash_put', '?')}, its trash on the benchmark "
                 "filesystem (HOME and XDG_DATA_HOME there: a rename, checked by inode), "
                 "emptied untimed after each run")
    if restores:
        note += (f", unrm = {params.get('unrm', '?')}. Restores (same cache state as the "
                 "deletions: warm = the archive as just written, after sync; cold = sync + "
                 "drop_caches): unrm = `unrm ID` of the timed saferm deletion, in place; it "
                 "makes what it restored durable before it returns. tar -x = `tar --zstd -xf` "
                 "of the pipeline's archive into an empty directory, nothing synced; "
                 "tar -x+sync = the same, then `sync -f` of the filesystem (the durable "
                 "baseline). Every restored tree was checked: its files, bytes, directories "
                 "and symlinks equal the generated tree's")
    machine = (f"machine: {params.get('machine', '?')}; "
               f"benchmark filesystem: {params.get('fs', '?')}; load average (1, 5, 15 min) "
               f"at start {params.get('load_start', '?')}, at end {params.get('load_end', '?')}")
    if markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "|".join(["---"] + ["--:"] * (len(head) - 1)) + "|")
        for r in rows:
            print("| " + " | ".join(r) + " |")
        print()
        print(note + ".  ")
        print(machine + ".")
        return
    widths = [max(len(x) for x in col) for col in zip(head, *rows)]
    for r in [head] + rows:
        print("  ".join([r[0].ljust(widths[0])] +
                        [x.rjust(w) for x, w in zip(r[1:], widths[1:])]))
    print(note)
    print(machine)
    print("\nall runs (peak RSS of each method, MiB, in brackets):")
    for tree, _ in TREES:
        for m in METHODS + RESTORES:
            v = times.get((tree, m))
            if not v:
                continue
            if tree == "single":
                q = statistics.quantiles(v, n=10) if len(v) >= 2 else v * 9
                spread = (f"min {fmt_t(tree, min(v))}  p10 {fmt_t(tree, q[0])}  "
                          f"median {fmt_t(tree, statistics.median(v))}  "
                          f"p90 {fmt_t(tree, q[-1])}  max {fmt_t(tree, max(v))}")
            else:
                spread = "  ".join(fmt_t(tree, s) for s in v)
            print(f"  {tree:<12} {m:<10} [{rss_cell(tree, m):>6}]  {spread}")


# ---------------------------------------------------------------- main


def main(argv):
    if len(argv) >= 4 and argv[0] == "gen":
        kind, root, scale = argv[1], argv[2], float(argv[3])
        gen = {"nodemod": gen_nodemod, "repo": gen_repo, "small": gen_small,
               "large": gen_large, "src": gen_src}[kind]
        print(*gen(root, scale))
    elif len(argv) == 2 and argv[0] == "count":
        print(*count_tree(argv[1]))
    elif len(argv) == 2 and argv[0] == "pick-id":
        pick_id(argv[1])
    elif len(argv) == 9 and argv[0] == "percall":
        percall(argv[1], int(argv[2]), *argv[3:9])
    elif len(argv) == 2 and argv[0] == "wait-staging":
        wait_staging(argv[1])
    elif len(argv) >= 2 and argv[0] == "report":
        report(argv[1], "--markdown" in argv[2:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
