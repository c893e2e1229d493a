//! A C-stack guard for Python 3.11.
//!
//! Every profiled level of a recursion goes through the C timer, so it re-enters CPython's
//! evaluation loop from C and uses C stack. From 3.12 CPython bounds that itself (each entry of
//! the evaluation loop costs one unit of its C recursion budget). 3.11 only counts Python
//! frames against the recursion limit, so with a raised limit a profiled recursion would run
//! off the end of the thread's stack and segfault. On 3.11 the timer therefore checks how much
//! of the current thread's stack is left before each forwarded call and raises RecursionError
//! when less than a safety margin remains.
//!
//! The check costs one thread-local load and a comparison; the stack bounds are looked up once
//! per thread (`pthread_getattr_np` / `pthread_get_stackaddr_np`).

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether the guard is needed (Python before 3.12), decided at module init.
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Stack left untouched for what runs between two checks: at most this many bytes...
const MARGIN_MAX: usize = 256 * 1024;
/// ...and at most this fraction (1/n) of a small stack.
const MARGIN_DIVISOR: usize = 4;

thread_local! {
    /// The lowest stack address a check accepts for this thread; 0 before the first check,
    /// 1 when the bounds could not be found (the guard then never fires).
    static LOWEST: Cell<usize> = const { Cell::new(0) };
}

/// Turns the guard on for interpreters without a C-stack check of their own.
pub(crate) fn init(version: (u8, u8)) {
    ENABLED.store(version < (3, 12), Ordering::Relaxed);
}

/// Whether the current thread is about to run out of C stack (always false from 3.12).
#[inline(always)]
pub(crate) fn exhausted() -> bool {
    if !ENABLED.load(Ordering::Relaxed) {
        return false;
    }
    let marker = 0u8;
    let here = std::hint::black_box(std::ptr::from_ref(&marker)) as usize;
    let lowest = LOWEST.with(|l| {
        let v = l.get();
        if v != 0 {
            v
        } else {
            let v = lowest_allowed().unwrap_or(1);
            l.set(v);
            v
        }
    });
    here < lowest
}

/// The current thread's stack as (lowest address, size); stacks grow down on every platform
/// CPython supports here.
#[cfg(target_os = "linux")]
fn bounds() -> Option<(usize, usize)> {
    // SAFETY: plain libc calls on a zeroed attribute object that is destroyed after use.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
            return None;
        }
        let mut addr: *mut libc::c_void = std::ptr::null_mut();
        let mut size: libc::size_t = 0;
        let ok = libc::pthread_attr_getstack(&attr, &mut addr, &mut size) == 0;
        libc::pthread_attr_destroy(&mut attr);
        ok.then_some((addr as usize, size))
    }
}

#[cfg(target_os = "macos")]
fn bounds() -> Option<(usize, usize)> {
    // SAFETY: plain libc calls about the calling thread.
    unsafe {
        let me = libc::pthread_self();
        let top = libc::pthread_get_stackaddr_np(me) as usize;
        let size = libc::pthread_get_stacksize_np(me);
        Some((top.checked_sub(size)?, size))
    }
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
fn bounds() -> Option<(usize, usize)> {
    None
}

fn lowest_allowed() -> Option<usize> {
    let (low, size) = bounds()?;
    if low == 0 || size == 0 {
        return None;
    }
    let margin = MARGIN_MAX.min(size / MARGIN_DIVISOR);
    low.checked_add(margin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_contain_the_current_frame() {
        let marker = 0u8;
        let here = std::ptr::from_ref(&marker) as usize;
        if let Some((low, size)) = bounds() {
            assert!(low < here && here <= low + size);
        }
    }
}
