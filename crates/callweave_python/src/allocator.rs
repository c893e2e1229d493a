//! The extension's Rust allocator: mimalloc, set to give memory back to the OS at once.
//!
//! A rewrite parses the module into a syntax tree of many small boxes and drops it: with
//! mimalloc the engine runs in 0.84x the instructions it takes with glibc's allocator (argparse
//! under wrap-all: 11.5M -> 9.7M; under profile-all 15.8M -> 12.9M). Only allocations made in
//! Rust by this extension use it; Python's objects keep Python's allocator.
//!
//! mimalloc's defaults suit a long-running allocation-heavy program, not a library that
//! allocates in bursts at import: it commits arenas eagerly and keeps freed memory for a
//! second (`purge_delay`), which left a process that rewrote 19 standard library modules at
//! 20 MB more resident memory than glibc's allocator. With arenas committed on demand and
//! freed pages purged at once the difference is under 2 MB; the purge costs about ten
//! `madvise` calls per rewrite.

use pyo3::prelude::*;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc 3.3's `mi_option_arena_eager_commit` (default 2: eager where the OS overcommits).
const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
/// mimalloc 3.3's `mi_option_purge_delay` (default 1000 ms).
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Sets the options above, at module initialisation, before the engine's first allocation.
/// An option the user set in the environment (`MIMALLOC_PURGE_DELAY`, ...) is left as set; so
/// is an option whose value is not mimalloc's documented default (the bundled mimalloc's
/// option numbers would then differ from these).
pub(crate) fn configure() {
    for (option, env, default, value) in [
        (ARENA_EAGER_COMMIT, "MIMALLOC_ARENA_EAGER_COMMIT", 2, 0),
        (PURGE_DELAY, "MIMALLOC_PURGE_DELAY", 1000, 0),
    ] {
        // SAFETY: reading options has no precondition.
        let current = unsafe { libmimalloc_sys::mi_option_get(option) };
        if current == default && std::env::var_os(env).is_none() {
            // SAFETY: called at module initialisation, with the GIL held, before any other
            // thread runs this extension's code (mimalloc's options are not synchronised).
            unsafe { libmimalloc_sys::mi_option_set(option, value) };
        }
    }
}

/// The allocator's `(arena_eager_commit, purge_delay)` options as in effect (for tests).
#[pyfunction]
pub(crate) fn allocator_options() -> (std::ffi::c_long, std::ffi::c_long) {
    // SAFETY: reading options has no precondition.
    unsafe {
        (
            libmimalloc_sys::mi_option_get(ARENA_EAGER_COMMIT),
            libmimalloc_sys::mi_option_get(PURGE_DELAY),
        )
    }
}
