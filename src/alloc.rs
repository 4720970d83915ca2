//! Running out of memory is an rm-style error, never an abort: GNU rm prints
//! `rm: memory exhausted` and exits 1, and so does saferm (`unrm: memory exhausted` for
//! unrm).
//!
//! Rust's default reaction to a failed allocation is `memory allocation of N bytes failed`
//! and SIGABRT. [`Checked`], the global allocator of both programs, passes every request to
//! the system allocator and, when one fails, writes the message and exits with status 1 on
//! the spot, without allocating. Before the unlink phase that is failure closed (DESIGN
//! §1.3): nothing was removed, and what it leaves in the store (an archive without a
//! manifest, a temp file) is swept as stale by a later run (retention, `unrm --check`).
//! During the unlink phase the archive is already durable and published.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::OnceLock;

/// The program name for the message, set once at start-up by [`set_program_name`].
static PROGRAM: OnceLock<Box<[u8]>> = OnceLock::new();

/// Name the program in the out-of-memory message (`argv[0]`, as rm does).
pub fn set_program_name(name: &str) {
    let _ = PROGRAM.set(name.as_bytes().into());
    // zstd's contexts are made by its own malloc, and `zstd-safe` panics when that fails
    // (`DCtx::create`, `CCtx::create`, which the stream types call). That is memory
    // running out too: the same message and exit as a failed Rust allocation, from
    // whichever thread it happens on, before anything is removed (unlinking comes only
    // after a verified archive, which needs those contexts).
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info
            .payload_as_str()
            .is_some_and(|t| t.contains(ZSTD_OUT_OF_MEMORY))
        {
            exhausted();
        }
        previous(info);
    }));
}

/// What `zstd-safe` panics with when zstd cannot allocate a context.
const ZSTD_OUT_OF_MEMORY: &str = "zstd returned null pointer when creating new context";

/// The system allocator, with a failed allocation turned into `PROG: memory exhausted`.
pub struct Checked;

pub fn exhausted() -> ! {
    let name: &[u8] = PROGRAM.get().map_or(b"saferm", |n| n);
    for part in [name, b": memory exhausted\n"] {
        // Nothing here allocates.
        let _ = rustix::io::write(rustix::stdio::stderr(), part);
    }
    // SAFETY: _exit ends the process at once: no destructor or atexit handler (which
    // could allocate) runs.
    unsafe { libc::_exit(1) }
}

fn checked(p: *mut u8) -> *mut u8 {
    if p.is_null() {
        exhausted();
    }
    p
}

// SAFETY: every call is passed to `System` unchanged; only a null result is handled.
unsafe impl GlobalAlloc for Checked {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is System's.
        checked(unsafe { System.alloc(layout) })
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as above.
        checked(unsafe { System.alloc_zeroed(layout) })
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as above.
        checked(unsafe { System.realloc(ptr, layout, new_size) })
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// For the library's unit tests: the system allocator, recording the largest block each
/// thread asks for, so that a test can hold a small deletion's buffers to their size.
#[cfg(test)]
pub mod largest {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    thread_local! {
        static LARGEST: Cell<usize> = const { Cell::new(0) };
    }

    pub struct Recording;

    fn record(size: usize) {
        // A thread being torn down has no slot any more: nothing to record.
        let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
    }

    /// The largest block this thread asked for while `f` ran.
    pub fn during<T>(f: impl FnOnce() -> T) -> (T, usize) {
        let before = LARGEST.with(|l| l.replace(0));
        let out = f();
        let largest = LARGEST.with(|l| l.replace(before.max(l.get())));
        (out, largest)
    }

    // SAFETY: every call is passed to `System` unchanged.
    unsafe impl GlobalAlloc for Recording {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            record(layout.size());
            // SAFETY: the caller's contract is System's.
            unsafe { System.alloc(layout) }
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            record(layout.size());
            // SAFETY: as above.
            unsafe { System.alloc_zeroed(layout) }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            record(new_size);
            // SAFETY: as above.
            unsafe { System.realloc(ptr, layout, new_size) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: as above.
            unsafe { System.dealloc(ptr, layout) }
        }
    }
}
