//! `saferm`: rm's command line; every removal is archived and verified first.
//!
//! No Rust `main`: saferm runs for every `rm` in every script, and std's start-up before
//! `main` (reading `/proc/self/maps` to find the main thread's stack, an alternate signal
//! stack and SIGSEGV/SIGBUS handlers to name stack overflows) cost 0.18 ms of the ~1 ms it
//! takes this VM to start a process (issue 11 §5). What of it saferm relies on is done
//! here instead ([`saferm::sys::start_process`]): fds 0-2 open, SIGPIPE ignored, a panic
//! exits 101. The arguments are std's as usual (glibc hands them to std before `main`). A
//! stack overflow, which nothing should cause (no code recurses per level of a tree, issue
//! 11 §1.7), is then a plain SIGSEGV instead of std's message and SIGABRT.
#![no_main]

use std::ffi::{c_char, c_int, OsString};

#[global_allocator]
static ALLOC: saferm::alloc::Checked = saferm::alloc::Checked;

#[no_mangle]
extern "C" fn main(_argc: c_int, _argv: *const *const c_char) -> c_int {
    saferm::sys::start_process();
    // A panic is reported by the panic hook, and exits 101 as from a Rust `main`.
    let code = std::panic::catch_unwind(run).unwrap_or(101);
    std::process::exit(code)
}

fn run() -> i32 {
    let mut args = std::env::args_os();
    // GNU rm names itself by argv[0] exactly as invoked (`rm`, `/usr/local/bin/rm`).
    let prog = args
        .next()
        .map(|a| a.to_string_lossy().into_owned())
        .unwrap_or_else(|| "saferm".to_string());
    saferm::alloc::set_program_name(&prog);
    let rest: Vec<OsString> = args.collect();
    let code = saferm::remove::run(&prog, &rest);
    saferm::output::finish(&prog, code)
}
