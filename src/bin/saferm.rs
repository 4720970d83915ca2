//! `saferm`: rm's command line; every removal is archived and verified first.

use std::ffi::OsString;

#[global_allocator]
static ALLOC: saferm::alloc::Checked = saferm::alloc::Checked;

fn main() {
    let mut args = std::env::args_os();
    // GNU rm names itself by argv[0] exactly as invoked (`rm`, `/usr/local/bin/rm`).
    let prog = args
        .next()
        .map(|a| a.to_string_lossy().into_owned())
        .unwrap_or_else(|| "saferm".to_string());
    saferm::alloc::set_program_name(&prog);
    let rest: Vec<OsString> = args.collect();
    let code = saferm::cmd::rm::run(&prog, &rest);
    std::process::exit(saferm::output::finish(&prog, code));
}
