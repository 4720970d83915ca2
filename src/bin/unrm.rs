//! `unrm`: restore what saferm removed, list and check the store.

use std::ffi::OsString;

#[global_allocator]
static ALLOC: saferm::alloc::Checked = saferm::alloc::Checked;

fn main() {
    saferm::alloc::set_program_name("unrm");
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let code = saferm::unrm::run(&args);
    std::process::exit(saferm::output::finish("unrm", code));
}
