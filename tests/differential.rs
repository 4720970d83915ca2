//! saferm against GNU rm 9.1 (`/usr/bin/rm`): same tree, arguments and stdin; exit status,
//! stdout, stderr and the resulting tree must be identical (DESIGN.md §5).
//!
//! One `#[test]` per area; each runs its whole table and lists every differing case.
//! Tree specs are described in `common::build_tree`.

use crate::common::{archives, build_tree, run_all, saferm_bin, Differential, Sandbox, NOBODY};

fn case(tree: &[&str], args: &[&str]) -> Differential {
    Differential::new(tree).args(args)
}

/// Guard for cases that name `/`: a store under /tmp is refused by saferm, so even a broken
/// root check could not get as far as deleting anything.
fn on_root(args: &[&str]) -> Differential {
    case(&[], args).saferm_env("SAFERM_STORE", "/tmp/saferm-refused-store")
}

#[test]
fn missing_operand() {
    run_all([
        case(&[], &[]),
        case(&[], &["-f"]),
        case(&[], &["-r"]),
        case(&[], &["-rf"]),
        case(&[], &["-i"]),
        case(&[], &["--"]),
        case(&[], &["-f", "--"]),
        case(&["a"], &["-v"]),
    ]);
}

#[test]
fn nonexistent_operands() {
    run_all([
        case(&[], &["nonexist"]),
        case(&[], &["-f", "nonexist"]),
        case(&[], &["--force", "nonexist"]),
        case(&[], &[""]),
        case(&[], &["-f", ""]),
        case(&[], &["nonexist/"]),
        case(&[], &["-f", "nonexist/"]),
        case(&[], &["-r", "nonexist"]),
        case(&[], &["-rf", "nonexist", "nonexist2"]),
        case(&["d/"], &["d/nonexist"]),
        case(&[], &["nonexist/x"]),
        case(&[], &["-v", "nonexist"]),
        case(&[], &["-i", "nonexist"]),
        case(&[], &["-"]),
    ]);
}

#[test]
fn regular_files_and_trailing_slash() {
    run_all([
        case(&["a=x"], &["a"]),
        case(&["a"], &["a"]),
        case(&["a=x"], &["-v", "a"]),
        case(&["a=x"], &["a/"]),
        case(&["a=x"], &["-f", "a/"]),
        case(&["a=x"], &["-r", "a/"]),
        case(&["a=x"], &["a/x"]),
        case(&["a=x", "d/"], &["./a", "d/../a"]),
        case(&["d/a=x"], &["d//a"]),
        case(&["-g=x"], &["--", "-g"]),
        case(&["-g=x"], &["./-g"]),
        case(&["-=x"], &["-"]),
    ]);
}

#[test]
fn directories() {
    let nested = ["nd/a=1", "nd/s/b=2", "nd/s/t/c=3", "nd/e/"];
    run_all([
        case(&["d/"], &["d"]),
        case(&["d/"], &["-f", "d"]),
        case(&["d/"], &["d/"]),
        case(&["ed/"], &["-d", "ed"]),
        case(&["ed/"], &["--dir", "ed"]),
        case(&["ed/"], &["-dv", "ed"]),
        case(&["ed/"], &["-d", "ed/"]),
        case(&["nd/a"], &["-d", "nd"]),
        case(&["nd/a"], &["-df", "nd"]),
        case(&nested, &["-r", "nd"]),
        case(&nested, &["-R", "nd"]),
        case(&nested, &["--recursive", "nd"]),
        case(&nested, &["--rec", "nd"]),
        case(&nested, &["-r", "nd/"]),
        case(&nested, &["-rv", "nd//"]),
        case(&nested, &["-r", "nd/s", "nd/a"]),
        case(&nested, &["-r", "nd/s/t/c", "nd/s"]),
        case(&nested, &["-rd", "nd/e", "nd"]),
        case(&["ed/"], &["-rv", "ed/"]),
        case(&["nd/x/y/z/"], &["-d", "nd/x/y/z", "nd/x/y", "nd"]),
    ]);
}

#[test]
fn dot_and_dotdot_are_refused() {
    let tree = ["w/nd/a=1", "w/f"];
    run_all([
        case(&tree, &["-r", "."]).cwd("w"),
        case(&tree, &["-rf", "."]).cwd("w"),
        case(&tree, &["-r", ".."]).cwd("w"),
        case(&tree, &["-r", "./."]).cwd("w"),
        case(&tree, &["-r", "./"]).cwd("w"),
        case(&tree, &["-r", ".//"]).cwd("w"),
        case(&tree, &["-r", "nd/.."]).cwd("w"),
        case(&tree, &["-r", "nd/."]).cwd("w"),
        case(&tree, &["-r", "nd/../"]).cwd("w"),
        case(&tree, &["-rv", ".", "f"]).cwd("w"),
        case(&tree, &["."]).cwd("w"),
        case(&tree, &["-d", "."]).cwd("w"),
        case(&tree, &["-r", "nd/../nd"]).cwd("w"),
    ]);
}

#[test]
fn root_is_refused() {
    run_all([
        on_root(&["-r", "/"]),
        on_root(&["-rf", "/"]),
        on_root(&["-r", "//"]),
        on_root(&["-r", "///"]),
        on_root(&["-r", "/."]),
        on_root(&["-r", "/.."]),
        on_root(&["-r", "--preserve-root", "/"]),
        on_root(&["-r", "--preserve-root=all", "/"]),
        on_root(&["-rI", "/"]),
        on_root(&["/"]),
        on_root(&["-d", "/"]),
    ]);
}

#[test]
fn mount_points() {
    let tree = ["t/a/f=1", "t/mnt/", "t/z=2"];
    let inside = ["t/mnt/g=in", "t/mnt/h/i=in"];
    let with_mount = |args: &[&str]| case(&tree, args).tmpfs("t/mnt", &inside);
    run_all([
        with_mount(&["-r", "--one-file-system", "t"]),
        with_mount(&["-rv", "--one-file-system", "t"]),
        with_mount(&["-rf", "--one", "t"]),
        with_mount(&["-r", "--one-file-system", "t/mnt"]),
        with_mount(&["-r", "--preserve-root=all", "t/mnt"]),
        with_mount(&["-rf", "--preserve-root=all", "t/mnt", "t/z"]),
        with_mount(&["-r", "--preserve-root=all", "t"]),
        with_mount(&["-r", "--preserve-root=all", "t/mnt/h"]),
        with_mount(&["-rv", "t"]),
        with_mount(&["-r", "--preserve-root", "t/mnt"]),
        with_mount(&["-d", "t/mnt"]),
    ]);
}

#[test]
fn option_parsing() {
    let nested = ["nd/a=1", "nd/s/b=2"];
    run_all([
        case(&["a"], &["-z", "a"]),
        case(&["a"], &["--bogus", "a"]),
        case(&["a"], &["-r", "--bogus=x", "a"]),
        case(&["a"], &["--bogus", "-z", "a"]),
        case(&["a"], &["-fz", "a"]),
        case(&["a"], &["--force=x", "a"]),
        case(&["a"], &["--verbose=1", "a"]),
        case(&["a"], &["--no-preserve-root=x", "a"]),
        case(&[], &["-g"]),
        case(&["-g"], &["-g"]),
        case(&["-g"], &["-f", "-g"]),
        // The hint quotes only the name after `./`, as GNU does: `./'-a'$'\t''b'\''c'`.
        case(&["-a\tb'c"], &["-a\tb'c"]),
        case(&["-x y"], &["-x y"]),
        case(&["-it's"], &["-it's"]),
        case(&["-bad\\xffname"], &["-bad\\xffname"]),
        case(&["a"], &["-i=always", "a"]),
        case(&["a"], &["--v", "a"]),
        case(&["a"], &["--ve", "a"]),
        case(&["a"], &["--verb", "a"]),
        case(&[], &["--forc", "nonexist"]),
        case(&[], &["--fo", "nonexist"]),
        case(&nested, &["--rec", "nd"]),
        case(&nested, &["--r", "nd"]),
        case(&["ed/"], &["--d", "ed"]),
        case(&nested, &["nd", "-r"]),
        case(&["a", "b"], &["a", "-v", "b"]),
        case(&["a", "-v"], &["a", "--", "-v"]),
        case(&["a", "-v"], &["--", "a", "-v"]),
        case(&["-r", "-f"], &["--", "-r", "-f"]),
        case(&nested, &["-rfv", "nd"]),
        case(&nested, &["-vfr", "nd", "nonexist"]),
        case(&nested, &["-r", "-f", "-v", "nd"]),
        case(&nested, &["-r", "--no-preserve-root", "nd"]),
        case(&nested, &["-r", "--no-pres", "nd"]),
        case(&nested, &["-r", "--no-preserve", "nd"]),
        case(&nested, &["-r", "--n", "nd"]),
        case(&nested, &["-r", "--preserve-root", "nd"]),
        case(&nested, &["-r", "--pres", "nd"]),
        case(&nested, &["-r", "--preserve-root=all", "nd"]),
        case(&nested, &["-r", "--preserve-root=a", "nd"]),
        case(&nested, &["-r", "--preserve-root=bad", "nd"]),
        case(&nested, &["-r", "--preserve-root=", "nd"]),
        case(&nested, &["-r", "--one-file-system", "nd"]),
        case(&["a"], &["--interactive", "always", "a"]),
        case(&[], &["--one"]),
    ]);
}

#[test]
fn interactive_when() {
    let one = ["a=x"];
    run_all([
        case(&one, &["--interactive", "a"]).stdin("y\n"),
        case(&one, &["--interactive", "a"]).stdin("n\n"),
        case(&one, &["--interactive=always", "a"]).stdin("y\n"),
        case(&one, &["--interactive=yes", "a"]).stdin("n\n"),
        case(&one, &["--interactive=a", "a"]).stdin("y\n"),
        case(&one, &["--interactive=never", "a"]),
        case(&one, &["--interactive=no", "a"]),
        case(&one, &["--interactive=none", "a"]),
        case(&one, &["--interactive=n", "a"]),
        case(&one, &["--interactive=once", "a"]),
        case(&one, &["--interactive=o", "a"]),
        case(&one, &["--inter=always", "a"]).stdin("y\n"),
        case(&one, &["--interactive=sometimes", "a"]),
        case(&one, &["--interactive=", "a"]),
        case(&one, &["--interactive=always=x", "a"]),
        case(&[], &["--interactive=never", "nonexist"]),
        case(&[], &["--interactive=always", "nonexist"]),
    ]);
}

#[test]
fn interactive_answers() {
    let one = ["a=x"];
    run_all([
        case(&one, &["-i", "a"]).stdin("y\n"),
        case(&one, &["-i", "a"]).stdin("yes\n"),
        case(&one, &["-i", "a"]).stdin("Y\n"),
        case(&one, &["-i", "a"]).stdin("yup\n"),
        case(&one, &["-i", "a"]).stdin("y"),
        case(&one, &["-i", "a"]).stdin(" y\n"),
        case(&one, &["-i", "a"]).stdin("n\n"),
        case(&one, &["-i", "a"]).stdin("no\n"),
        case(&one, &["-i", "a"]).stdin("\n"),
        case(&one, &["-i", "a"]).stdin(""),
        case(&one, &["-i", "a"]),
        case(&one, &["-iv", "a"]).stdin("y\n"),
        case(&["e"], &["-i", "e"]).stdin("y\n"),
        case(&["p|"], &["-i", "p"]).stdin("y\n"),
        case(&["a", "l->a"], &["-i", "l"]).stdin("y\n"),
        case(&["l->nowhere"], &["-i", "l"]).stdin("y\n"),
        case(&["ro=x@0444"], &["-i", "ro"]).stdin("y\n"),
        case(&["ed/"], &["-i", "ed"]).stdin("y\n"),
        case(&["ed/"], &["-id", "ed"]).stdin("y\n"),
        case(&["ed/"], &["-ir", "ed"]).stdin("y\n"),
        case(&["ed/"], &["-ir", "ed"]).stdin("y\nn\n"),
        case(&["a", "b", "c"], &["-i", "a", "b", "c"]).stdin("y\nn\ny\n"),
        case(&["a", "b"], &["-i", "a", "nonexist", "b"]).stdin("y\ny\n"),
    ]);
}

#[test]
fn interactive_recursive_sequences() {
    let tree = ["d/a=1", "d/s/b=2", "d/s/c=", "d/e/", "d/l->a"];
    run_all([
        case(&tree, &["-ri", "d"]).stdin("y\n".repeat(20)),
        case(&tree, &["-riv", "d"]).stdin("y\n".repeat(20)),
        case(&tree, &["-ri", "d"]).stdin("n\n"),
        case(&tree, &["-ri", "d"]),
        case(&tree, &["-ri", "d"]).stdin("y\nn\n"),
        case(&tree, &["-riv", "d"]).stdin("y\ny\nn\ny\ny\ny\ny\ny\ny\ny\n"),
        case(&tree, &["-riv", "d"]).stdin("y\ny\ny\ny\ny\nn\ny\ny\ny\ny\n"),
        case(&tree, &["-riv", "d"]).stdin("y\ny\ny\ny\ny\ny\ny\ny\ny\nn\n"),
        case(&tree, &["-rif", "d"]),
        case(&tree, &["-rfi", "d"]).stdin("y\ny\ny\ny\n"),
    ]);
}

#[test]
fn interactive_once() {
    let four = ["a", "b", "c", "d"];
    let tree = ["d/a=1", "d/s/b=2"];
    run_all([
        case(&four, &["-I", "a", "b", "c"]),
        case(&four, &["-I", "a", "b", "c", "d"]).stdin("y\n"),
        case(&four, &["-I", "a", "b", "c", "d"]).stdin("n\n"),
        case(&four, &["-I", "a", "b", "c", "d"]),
        case(&four, &["-Iv", "a", "b", "c", "d", "nonexist"]).stdin("yes\n"),
        case(&four, &["--interactive=once", "a", "b", "c", "d"]).stdin("y\n"),
        case(&tree, &["-I", "-r", "d"]).stdin("y\n"),
        case(&tree, &["-rI", "d"]).stdin("n\n"),
        case(&tree, &["-rI", "d"]),
        case(&tree, &["-rIv", "d", "d/s"]).stdin("y\n"),
        case(&["d/"], &["-I", "d"]),
        case(&[], &["-I", "nonexist"]),
    ]);
}

#[test]
fn last_of_force_and_interactive_wins() {
    run_all([
        case(&[], &["-f", "-i", "nonexist"]),
        case(&[], &["-i", "-f", "nonexist"]),
        case(&[], &["-f", "-I", "nonexist"]),
        case(&[], &["-I", "-f", "nonexist"]),
        case(&[], &["-f", "--interactive=always", "nonexist"]),
        case(&[], &["-f", "--interactive=never", "nonexist"]),
        case(&[], &["--interactive=never", "-f", "nonexist"]),
        case(&["a"], &["-i", "-f", "a"]),
        case(&["a"], &["-f", "-i", "a"]).stdin("n\n"),
        case(&["a"], &["-fi", "a"]).stdin("y\n"),
        case(&["a"], &["-if", "a"]),
        case(&["a"], &["-i", "--interactive=never", "a"]),
        case(&["a", "b", "c", "d"], &["-I", "-i", "a", "b", "c", "d"]).stdin("y\nn\ny\nn\n"),
        case(&["a", "b", "c", "d"], &["-i", "-I", "a", "b", "c", "d"]).stdin("y\n"),
        case(&["ro=x@0444"], &["---presume-input-tty", "ro"]),
        case(&["ro=x@0444"], &["---presume-input-tty", "-i", "ro"]).stdin("n\n"),
    ]);
}

#[test]
fn symlinks() {
    let tree = [
        "t/s/a=1",
        "t/b=2",
        "ld->t",
        "f=3",
        "lf->f",
        "dang->nowhere",
        "loop->loop",
    ];
    run_all([
        case(&tree, &["lf"]),
        case(&tree, &["-v", "lf"]),
        case(&tree, &["ld"]),
        case(&tree, &["-r", "ld"]),
        case(&tree, &["-d", "ld"]),
        case(&tree, &["dang"]),
        case(&tree, &["-v", "dang", "loop"]),
        case(&tree, &["ld/"]),
        case(&tree, &["-d", "ld/"]),
        case(&tree, &["-r", "ld/"]),
        case(&tree, &["-rf", "ld/"]),
        case(&tree, &["-rv", "ld/"]),
        case(&tree, &["-rfv", "ld//"]),
        case(&tree, &["-r", "ld/s"]),
        case(&tree, &["lf/"]),
        case(&tree, &["-r", "lf/"]),
        case(&tree, &["-rf", "lf/"]),
        case(&tree, &["dang/"]),
        case(&tree, &["-rf", "dang/"]),
        case(&tree, &["loop/"]),
        case(&tree, &["-r", "t/s", "ld/b"]),
        case(&["d/l->../f", "f=x"], &["-rv", "d"]),
        case(&["e/", "ld->e"], &["-d", "ld/"]),
    ]);
}

#[test]
fn fifos_and_special_files() {
    run_all([
        case(&["p|"], &["p"]),
        case(&["p|"], &["-v", "p"]),
        case(&["p|"], &["p/"]),
        case(&["p|"], &["-d", "p"]),
        case(&["d/p|", "d/f=1"], &["-rv", "d"]),
        case(&["p|@0000"], &["p"]),
        case(&["d/p|"], &["-ri", "d"]).stdin("y\ny\ny\n"),
    ]);
}

/// rm removes sockets silently; there is nothing in them to archive.
#[test]
fn sockets() {
    // A socket holds no data: saferm removes it like rm, and says it kept no copy.
    let warn = |p: &str| {
        format!(
            "rm: warning: '{p}' is a socket: removed without an archive copy (it holds no data)\n"
        )
    };
    run_all([
        case(&["s#"], &["s"]).saferm_warning(&warn("s")),
        case(&["s#"], &["-v", "s"]).saferm_warning(&warn("s")),
        case(&["s#"], &["-i", "s"])
            .stdin("y\n")
            .saferm_warning(&warn("s")),
        case(&["s#"], &["-i", "s"]).stdin("n\n"),
        case(&["d/s#", "d/f=1"], &["-rv", "d"]).saferm_warning(&warn("d/s")),
        case(&["s#"], &["s/"]),
    ]);
}

#[test]
fn long_names_and_big_trees() {
    let long = "n".repeat(200);
    let deep = format!("{long}/{long}/{long}/f=deep");
    let too_long = "x".repeat(300);
    let big_file = format!("big={}", "0123456789abcdef".repeat(1 << 16));
    run_all([
        case(&[&deep], &["-rv", &long]),
        case(&[&format!("{long}=x")], &["-v", &long]),
        case(&[], &[&too_long]),
        case(&[], &["-f", &too_long]),
        case(&[&big_file, "small=x"], &["-v", "big", "small"]),
    ]);
}

/// With more than 10,000 entries GNU rm (fts) visits a directory in inode order instead of
/// readdir order on most filesystems, which shows in `-v` output.
#[test]
fn verbose_order_in_a_huge_directory() {
    // Two copies of a tree get different inode numbers, so this cannot compare saferm with
    // GNU directly: each must list the files in its own tree's inode order.
    use std::os::unix::fs::MetadataExt;
    let spec: Vec<String> = (0..10_001).map(|i| format!("big/f{i}")).collect();
    let spec: Vec<&str> = spec.iter().map(String::as_str).collect();
    let sb = Sandbox::new();
    for (side, program) in [
        ("gnu", std::path::PathBuf::from(crate::common::GNU_RM)),
        ("saferm", saferm_bin()),
    ] {
        let root = sb.work(side);
        build_tree(&root, &spec);
        let mut by_inode: Vec<(u64, String)> = std::fs::read_dir(root.join("big"))
            .expect("list big")
            .map(|e| {
                let e = e.expect("entry");
                let ino = e.metadata().expect("stat").ino();
                (
                    ino,
                    format!("removed 'big/{}'\n", e.file_name().to_string_lossy()),
                )
            })
            .collect();
        by_inode.sort();
        let mut want: String = by_inode.into_iter().map(|(_, line)| line).collect();
        want.push_str("removed directory 'big'\n");
        let out = sb
            .command(&program)
            .current_dir(&root)
            .args(["-rv", "big"])
            .run();
        assert_eq!(out.code(), Some(0), "{side}: {}", out.stderr_text());
        assert!(
            out.stdout_text() == want,
            "{side} does not remove in inode order"
        );
    }
}

#[test]
fn removing_an_ancestor_of_the_working_directory() {
    let tree = ["w/sub/f=1", "w/g=2"];
    run_all([
        case(&tree, &["-rv", "../../w"]).cwd("w/sub"),
        case(&tree, &["-r", "../sub"]).cwd("w/sub"),
        case(&tree, &["-rv", "../g", "f"]).cwd("w/sub"),
    ]);
}

#[test]
fn verbose() {
    let vd = ["b=x", "vd/s/c=y"];
    let deep = [
        "r/a=1",
        "r/b/c=2",
        "r/b/d/e=3",
        "r/b/d/f/",
        "r/g/",
        "r/h->b",
        "r/i|",
        "r/.hidden=4",
    ];
    run_all([
        case(&vd, &["-rv", "b", "vd"]),
        case(&vd, &["--verbose", "-r", "vd", "b"]),
        case(&deep, &["-rv", "r"]),
        case(&deep, &["-rv", "r/b", "r"]),
        case(&deep, &["-rv", "./r/"]),
        case(&["a", "b=x"], &["-v", "a", "b", "a"]),
        case(&["ed/"], &["-dv", "ed"]),
        case(&["a"], &["-v", "-v", "a"]),
    ]);
}

#[test]
fn multiple_operands_some_failing() {
    run_all([
        case(&["a", "b"], &["a", "nonexist", "b"]),
        case(&["a", "d/x"], &["a", "d", "b"]),
        case(&["a", "d/x"], &["-f", "a", "d", "b"]),
        case(&["a", "d/x", "e/"], &["-d", "d", "a", "e"]),
        case(&["a", "w/x"], &["-r", "a", ".", "w"]),
        case(&["a", "nd/x"], &["-v", "a", "nd", "a"]),
        case(&["a", "nd/x"], &["-rv", "nd/x", "nd", "nd/x"]),
        case(&["a"], &["a", "", "a/"]),
    ]);
}

#[test]
fn quoting_in_messages() {
    run_all([
        case(&["a b"], &["-v", "a b"]),
        case(&["it's"], &["-v", "it's"]),
        case(&[], &["it's"]),
        case(&[], &["a b"]),
        case(&["bad\\xffname"], &["-v", "bad\\xffname"]),
        case(&[], &["bad\\xffname"]),
        case(&["new\nline"], &["-v", "new\nline"]),
        case(&["tab\tx"], &["-v", "tab\tx"]),
        case(&["d $x/a"], &["-rv", "d $x"]),
        case(&["q\"uote"], &["-iv", "q\"uote"]).stdin("y\n"),
        case(&["caf\u{e9}"], &["-v", "caf\u{e9}"]),
        case(&["back\\slash"], &["-v", "back\\slash"]),
    ]);
}

#[test]
fn permissions_as_unprivileged_user() {
    run_all([
        // The user's own files they may not read: rm removes them, so saferm archives them
        // (giving itself read permission for as long as an open takes).
        case(&["f=secret@0000"], &["f"]).unprivileged(),
        case(&["f=secret@0000"], &["--interactive=never", "-v", "f"]).unprivileged(),
        case(&["f=secret@0000"], &["---presume-input-tty", "f"])
            .stdin("y\n")
            .unprivileged(),
        case(
            &[
                "d/f=x@0000",
                "d/w=y@0200",
                "d/e=@0000",
                "d/s=z@6000",
                "d/ok=ok",
            ],
            &["-rv", "d"],
        )
        .unprivileged(),
        // ... also in a directory they may write and enter but not list.
        case(&["wx/f=x@0000", "wx/@0300"], &["-v", "wx/f"]).unprivileged(),
        case(&["ro=x@0444"], &["---presume-input-tty", "ro"])
            .stdin("y\n")
            .unprivileged(),
        case(&["ro=x@0444"], &["---presume-input-tty", "ro"])
            .stdin("n\n")
            .unprivileged(),
        case(&["ro=x@0444"], &["---presume-input-tty", "ro"]).unprivileged(),
        case(&["ro=@0444"], &["---presume-input-tty", "-v", "ro"])
            .stdin("y\n")
            .unprivileged(),
        case(&["ro=x@0444"], &["ro"]).unprivileged(),
        case(&["ro=x@0444"], &["-v", "ro"])
            .stdin("n\n")
            .unprivileged(),
        case(&["ro=x@0444"], &["-f", "---presume-input-tty", "ro"]).unprivileged(),
        case(&["ro=x@0444"], &["-i", "ro"])
            .stdin("n\n")
            .unprivileged(),
        case(&["lro->ro", "ro=x@0444"], &["---presume-input-tty", "lro"]).unprivileged(),
        case(&["nw/f=x", "nw/@0555"], &["nw/f"]).unprivileged(),
        case(&["nw/f=x", "nw/@0555"], &["-f", "nw/f"]).unprivileged(),
        case(&["nw/f=x", "nw/@0555"], &["-rf", "nw"]).unprivileged(),
        case(
            &["nw/f=x", "nw/@0555"],
            &["-r", "---presume-input-tty", "nw"],
        )
        .stdin("y\ny\n")
        .unprivileged(),
        case(
            &["nw/f=x", "nw/@0555"],
            &["-r", "---presume-input-tty", "nw"],
        )
        .stdin("n\n")
        .unprivileged(),
        case(&["ur/f=x", "ur/@0000"], &["-r", "ur"]).unprivileged(),
        case(&["ur/f=x", "ur/@0000"], &["-rf", "ur"]).unprivileged(),
        case(&["ur/s/f=x", "ur/s/@0000"], &["-rv", "ur"]).unprivileged(),
        case(&["ur/@0000"], &["-r", "ur"]).unprivileged(),
        case(&["wo/f=x", "wo/@0300"], &["-r", "wo"]).unprivileged(),
        case(&["ed/@0555"], &["-d", "---presume-input-tty", "ed"])
            .stdin("y\n")
            .unprivileged(),
        case(&["p|@0444"], &["---presume-input-tty", "p"])
            .stdin("y\n")
            .unprivileged(),
    ]);
}

/// The one deliberate difference: GNU rm deletes a file its user cannot read (another
/// user's, in a directory the user may write), saferm keeps it, because it cannot archive
/// it. Everything else in the tree is still archived and removed.
#[test]
fn unreadable_file_is_kept_and_reported() {
    assert!(
        crate::common::is_root(),
        "this test switches to uid {NOBODY}: run the tests as root"
    );
    let sandbox = Sandbox::new();
    let work = sandbox.work("w");
    build_tree(&work, &["d/secret=s@0600", "d/ok=ok"]);
    sandbox.chown_all(NOBODY, NOBODY);
    std::os::unix::fs::chown(work.join("d/secret"), Some(0), Some(0)).expect("chown to root");
    let out = sandbox
        .command(saferm_bin())
        .args(["-r", "d"])
        .current_dir(&work)
        .unprivileged()
        .run();
    assert_eq!(
        out.stderr_text(),
        "rm: cannot remove 'd/secret': could not archive: Permission denied\n"
    );
    assert_eq!(out.stdout_text(), "");
    assert_eq!(out.code(), Some(1), "status: {}", out.status_text());
    assert!(
        !work.join("d/ok").exists(),
        "d/ok must be archived and removed"
    );
    assert!(
        work.join("d/secret").symlink_metadata().is_ok(),
        "d/secret must be kept"
    );
    assert!(work.join("d").is_dir(), "d must be kept: it is not empty");
}

/// Under `big/`: `dirs` directories of four subdirectories holding `files` empty files in
/// all, then `extra`.
fn big_tree(dirs: usize, files: usize, extra: &[String]) -> Vec<String> {
    let mut spec: Vec<String> = (0..dirs)
        .flat_map(|d| (0..files).map(move |f| format!("big/d{d:02}/s{}/f{f:03}", f % 4)))
        .collect();
    spec.extend(extra.iter().cloned());
    spec
}

/// Deletions of 4,096 objects or more unlink on several threads (src/sweep.rs, without -v):
/// what they print, and what they leave, must still be rm's, in rm's order. Directories
/// nobody can read fail only when rm removes them (after their siblings' contents), in
/// several of the parts the threads take; their ancestors stay, silently.
///
/// The trees live on a tmpfs: creating 20,000 files on a disk that has just deleted as many
/// is slow on ext4, and the unlink order does not depend on the filesystem.
#[test]
fn large_trees_unlinked_on_several_threads() {
    let unreadable: Vec<String> = [1, 7, 12]
        .iter()
        .flat_map(|d| {
            [
                format!("big/d{d:02}/ur/f=x"),
                format!("big/d{d:02}/ur/@0000"),
                format!("big/d{d:02}/s2/ur{d}/g=y"),
                format!("big/d{d:02}/s2/ur{d}/@0000"),
            ]
        })
        .collect();
    let plain = big_tree(16, 300, &["big/small/a=1".to_string()]);
    let failing = big_tree(16, 300, &unreadable);
    // One flat directory: its files are cut into runs of siblings, one run per job, with
    // unreadable directories among them.
    let mut flat: Vec<String> = (0..5000).map(|f| format!("big/f{f:04}")).collect();
    for at in ["f1000x", "f3500x"] {
        flat.extend([format!("big/{at}/ur/g=z"), format!("big/{at}/ur/@0000")]);
    }
    // Above the threshold (4,800 files and 80 directories), so the threaded path runs.
    assert!(plain.len() > 4096 + 100);
    let cases = [
        (&plain, vec!["-r", "big/small", "big"]),
        (&plain, vec!["-rf", "big/d03", "big/", "big/missing"]),
        (&failing, vec!["-r", "big"]),
        (&failing, vec!["-rf", "big/d03", "big"]),
        // An earlier operand fails to remove big/d01 (and a later one meets it again).
        (&failing, vec!["-rf", "big/d01", "big"]),
        (&flat, vec!["-r", "big"]),
        (&flat, vec!["-rf", "big/f1000x", "big"]),
    ];
    run_all(cases.iter().map(|(tree, args)| {
        let tree: Vec<&str> = tree.iter().map(String::as_str).collect();
        case(&["big/"], args).tmpfs("big", &tree).unprivileged()
    }));
}

/// A directory the walk cannot read is removed only if it is empty, which shows only when
/// rmdir is tried; a later operand above it meets it again if it is still there (and
/// reports it again), and not if it went.
#[test]
fn later_operands_meet_unreadable_directories_again() {
    run_all([
        case(&["d/ur/f=x", "d/ur/@0000", "d/a"], &["-rf", "d/ur", "d"]).unprivileged(),
        case(&["d/ur/f=x", "d/ur/@0000", "d/a"], &["-r", "d/ur", "d"]).unprivileged(),
        case(&["d/ur/@0000", "d/a"], &["-rf", "d/ur", "d"]).unprivileged(),
        case(&["d/ur/@0000", "d/a"], &["-r", "d/ur", "d"]).unprivileged(),
        case(
            &["d/s/ur/f=x", "d/s/ur/@0000", "d/s/b"],
            &["-r", "d/s", "d"],
        )
        .unprivileged(),
        case(
            &["d/s/ur/@0000", "d/s/b", "d/c"],
            &["-r", "d/s", "d", "d/c"],
        )
        .unprivileged(),
        case(
            &["d/s/ur/f=x", "d/s/ur/@0000"],
            &["-rv", "d/s", "d/s/ur", "d"],
        )
        .unprivileged(),
    ]);
}

/// Symlinks are removed whatever their target looks like (issue 11 §1.1: saferm kept `/`,
/// `x/.`, `a//b` ... and, with them, every other operand).
#[test]
fn symlinks_with_untidy_targets() {
    let links = [
        "r->/",
        "x->x/.",
        "d->a//b",
        "m->a/./b",
        "s->//x",
        "rd->/.",
        "t->x/",
        "p->..",
        "n->bad\\xff//name",
        "dangle->nowhere",
    ];
    let names: Vec<String> = links
        .iter()
        .map(|l| l.split("->").next().unwrap_or_default().to_string())
        .collect();
    let mut verbose = vec!["-v"];
    verbose.extend(names.iter().map(String::as_str));
    run_all([
        case(&links, &verbose),
        case(&["r->/", "dangle->nowhere"], &["r", "dangle"]),
        case(&["d/r->/", "d/t->x/", "d/f=1"], &["-rv", "d"]),
    ]);
}

/// Files on pseudo-filesystems (sysfs, procfs) are the kernel's state: saferm does not try to
/// archive them (it used to say "changed while it was being archived") and says what rm says
/// (issue 12 §15), as root and as a user, with and without -f; nothing goes to the store.
#[test]
fn pseudo_filesystem_files_get_rms_own_error() {
    let candidates = [
        "/sys/kernel/uevent_seqnum",
        "/sys/kernel/mm/transparent_hugepage/enabled",
        "/sys/power/state",
        "/proc/sys/kernel/hostname",
        "/proc/version",
    ];
    let present: Vec<&str> = candidates
        .into_iter()
        .filter(|p| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_file()))
        .collect();
    if !present.iter().any(|p| p.starts_with("/sys/")) {
        let why = "no sysfs file found: pseudo-filesystems are not tested";
        if std::env::var_os("SAFERM_TEST_REQUIRE_ALL").is_some_and(|v| v == "1") {
            panic!("{why}, and SAFERM_TEST_REQUIRE_ALL=1 makes it mandatory");
        }
        eprintln!("\n*** SKIPPED: {why}. ***");
        return;
    }
    let mut differences = Vec::new();
    for unprivileged in [false, true] {
        let sb = Sandbox::new();
        if unprivileged {
            sb.chown_all(NOBODY, NOBODY);
        }
        for path in &present {
            for args in [vec![*path], vec!["-f", path], vec!["-rf", path]] {
                let run = |program: std::path::PathBuf| {
                    let cmd = sb.command(program).args(&args);
                    if unprivileged {
                        cmd.unprivileged().run()
                    } else {
                        cmd.run()
                    }
                };
                let gnu = run(crate::common::GNU_RM.into());
                let ours = run(saferm_bin());
                let seen = |o: &crate::common::Outcome| {
                    (
                        o.code(),
                        o.stdout_text(),
                        o.stderr_text().replacen("saferm", "rm", 1),
                    )
                };
                if seen(&gnu) != seen(&ours) {
                    differences.push(format!(
                        "{}rm {args:?}: GNU {:?}, saferm {:?}",
                        if unprivileged { "(nobody) " } else { "" },
                        seen(&gnu),
                        seen(&ours)
                    ));
                }
                assert!(std::fs::symlink_metadata(path).is_ok(), "{path} is gone");
            }
        }
        assert!(differences.is_empty(), "{}", differences.join("\n"));
        let archived = archives(&sb.store());
        assert!(archived.is_empty(), "archived: {archived:?}");
    }
}
