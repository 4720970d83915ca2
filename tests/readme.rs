//! The README's commands do what it says, run as a new user would: in a fresh home where no
//! directory exists yet.

use std::fs;

use crate::common::Sandbox;

/// The first ```sh block after the line starting with `marker`.
fn sh_block_after(marker: &str) -> String {
    let readme = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("read README.md");
    let after = &readme[readme.find(marker).expect("the README has the marker")..];
    let start = after.find("```sh\n").expect("an sh block follows") + "```sh\n".len();
    let block = &after[start..];
    block[..block.find("```").expect("the block ends")].to_string()
}

#[test]
fn completion_and_man_page_install_lines_work_in_a_fresh_home() {
    let sb = Sandbox::new();
    let bin = sb.bin_dir();
    let fresh = sb.work("fresh-home");
    let script = sh_block_after("- **Completions and man pages**");
    let out = sb
        .command("/bin/bash")
        .args(["-euc", &script])
        .env("HOME", &fresh)
        .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
        .run();
    assert_eq!(out.code(), Some(0), "{script}\n{}", out.stderr_text());
    for (file, starts) in [
        (".local/share/bash-completion/completions/saferm", ""),
        (".local/share/bash-completion/completions/unrm", ""),
        (".zfunc/_saferm", "#compdef saferm"),
        (".zfunc/_unrm", "#compdef unrm"),
        (".config/fish/completions/saferm.fish", ""),
        (".config/fish/completions/unrm.fish", ""),
        (".local/share/man/man1/saferm.1", ".ie"),
        (".local/share/man/man1/unrm.1", ".ie"),
    ] {
        let text = fs::read_to_string(fresh.join(file)).unwrap_or_default();
        assert!(
            text.len() > 100 && text.starts_with(starts),
            "{file}: {:?}",
            text.get(..80)
        );
    }
}
