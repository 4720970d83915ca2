//! `saferm`: rm's command line (`cli.rs`), what it prints about itself (`docs.rs`), and the
//! deletion it asks for ([`crate::remove::delete`]).

use std::ffi::OsString;

use crate::cli::{self, Parsed};
use crate::docs::{self, Program};
use crate::output::stdout_write;
use crate::remove;

/// Run saferm with `args` (without `argv[0]`); returns the exit status.
pub fn run(prog: &str, args: &[OsString]) -> i32 {
    let opts = match cli::parse(prog, args) {
        Parsed::Run(o) => o,
        Parsed::Help => {
            let help = cli::command().bin_name(prog).render_help().to_string();
            stdout_write(help.as_bytes());
            return 0;
        }
        Parsed::Version => {
            stdout_write(
                format!(
                    "saferm {} (rm compatible with GNU coreutils 9.1)\n",
                    env!("CARGO_PKG_VERSION")
                )
                .as_bytes(),
            );
            return 0;
        }
        Parsed::ShellInit(shell) => {
            stdout_write(docs::shell_init(&shell).unwrap_or_default().as_bytes());
            return 0;
        }
        Parsed::Completions(shell) => {
            let text = docs::completions(Program::Saferm, &shell);
            stdout_write(text.unwrap_or_default().as_bytes());
            return 0;
        }
        Parsed::Man => {
            let mut page = Vec::new();
            let _ = docs::man_page(Program::Saferm, &mut page);
            stdout_write(&page);
            return 0;
        }
        Parsed::Exit(code) => return code,
        Parsed::DrainStaging => return crate::instant::drain_staging(prog),
    };
    remove::delete(prog, &opts).status
}
