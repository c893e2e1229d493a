//! Deep recursion through the timer: a C-stack guard (3.11, 3.12) and the C recursion budget
//! (3.12).
//!
//! Every profiled level of a recursion goes through the C timer, so it re-enters CPython's
//! evaluation loop from C and uses C stack:
//! - 3.11 only counts Python frames against the recursion limit, so with a raised limit a
//!   profiled recursion ran off the end of the thread's stack and segfaulted.
//! - 3.12 charges each entry of the evaluation loop two units of a fixed C recursion budget
//!   (1,500 units, whatever `sys.setrecursionlimit` says): a profiled recursion stopped at
//!   749 levels, below the 998 a plain one reaches with the default limit. The timer gives one
//!   unit back for the duration of each forwarded call, so a level costs one unit (1,500
//!   levels), and makes up for the weaker estimate with the stack guard below.
//! - 3.13's budget (10,000 units) already exceeds the default recursion limit; nothing is
//!   changed there.
//!
//! The guard checks how much of the current thread's stack is left before each forwarded
//! call and raises RecursionError when less than a safety margin remains. It costs a
//! comparison with a per-thread bound (looked up once per thread with `pthread_getattr_np` /
//! `pthread_get_stackaddr_np`).

use std::ffi::c_int;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use pyo3::ffi;

use super::thread::PerThread;

/// Whether the guard is needed (Python before 3.12), decided at module init.
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Stack left untouched for what runs between two checks: at most this many bytes...
const MARGIN_MAX: usize = 256 * 1024;
/// ...and at most this fraction (1/n) of a small stack.
const MARGIN_DIVISOR: usize = 4;

/// Byte offset of `c_recursion_remaining` in 3.12's `PyThreadState`, or 0 when the timer
/// leaves the budget alone (other versions, or the field was not found).
static BUDGET_OFFSET: AtomicUsize = AtomicUsize::new(0);

/// Turns the guard on for interpreters without a C-stack check of their own (or, on 3.12,
/// whose budget the timer relaxes); finds the budget on 3.12. The GIL must be held.
pub(crate) fn init(version: (u8, u8)) {
    let offset = if version == (3, 12) {
        find_budget_offset().unwrap_or(0)
    } else {
        0
    };
    BUDGET_OFFSET.store(offset, Ordering::Relaxed);
    ENABLED.store(version < (3, 12) || offset != 0, Ordering::Relaxed);
}

/// Finds `c_recursion_remaining` by observation rather than by a copied struct layout: the one
/// `int` of the thread state that `Py_EnterRecursiveCall` lowers by exactly one and
/// `Py_LeaveRecursiveCall` restores.
fn find_budget_offset() -> Option<usize> {
    const WORDS: usize = 32;
    // SAFETY: GIL held (module init); the thread state is larger than WORDS ints (it holds
    // pointers and counters well past 128 bytes); the reads are plain loads of its memory.
    unsafe {
        let tstate = ffi::PyThreadState_Get().cast::<c_int>();
        let read = || -> [c_int; WORDS] { std::array::from_fn(|i| tstate.add(i).read()) };
        let before = read();
        if ffi::Py_EnterRecursiveCall(c"".as_ptr()) != 0 {
            ffi::PyErr_Clear();
            return None;
        }
        let during = read();
        ffi::Py_LeaveRecursiveCall();
        let after = read();
        let mut found = (0..WORDS)
            .filter(|&i| i > 0 && during[i] == before[i].wrapping_sub(1) && after[i] == before[i]);
        let first = found.next()?;
        found
            .next()
            .is_none()
            .then_some(first * std::mem::size_of::<c_int>())
    }
}

/// Gives the current thread one unit of C recursion budget back (3.12; a no-op elsewhere);
/// returns the counter to pass to [`take_unit`] after the call.
#[inline(always)]
pub(crate) fn give_unit() -> *mut c_int {
    let offset = BUDGET_OFFSET.load(Ordering::Relaxed);
    if offset == 0 {
        return std::ptr::null_mut();
    }
    // SAFETY: GIL held by the timer; `offset` was found in this interpreter's thread state.
    unsafe {
        let counter = ffi::PyThreadState_Get()
            .cast::<u8>()
            .add(offset)
            .cast::<c_int>();
        *counter += 1;
        counter
    }
}

/// Takes back the unit [`give_unit`] gave (same thread, after the call).
#[inline(always)]
pub(crate) fn take_unit(counter: *mut c_int) {
    if !counter.is_null() {
        // SAFETY: the counter of this thread's state, as returned by `give_unit`.
        unsafe { *counter -= 1 };
    }
}

/// Whether the timer must check the C stack (3.11; 3.12 when it gives budget back): fixed at
/// module init, so the branch on it is always predicted.
#[inline(always)]
pub(crate) fn guarded() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Whether the current thread (whose state is `t`) is about to run out of C stack (always
/// false where the guard is off).
#[inline(always)]
pub(crate) fn exhausted(t: &PerThread) -> bool {
    guarded() && below_bound(t)
}

/// Whether the current thread (whose state is `t`) is about to run out of C stack, for a
/// caller that has checked [`guarded`].
#[inline(always)]
pub(crate) fn below_bound(t: &PerThread) -> bool {
    let marker = 0u8;
    let here = std::hint::black_box(std::ptr::from_ref(&marker)) as usize;
    let mut lowest = t.stack_lowest.get();
    if lowest == 0 {
        lowest = lowest_allowed().unwrap_or(1);
        t.stack_lowest.set(lowest);
    }
    here < lowest
}

/// The current thread's stack as (lowest address, size); stacks grow down on every platform
/// CPython supports here.
#[cfg(target_os = "linux")]
fn bounds() -> Option<(usize, usize)> {
    // SAFETY: plain libc calls without arguments.
    let main = unsafe { libc::gettid() == libc::getpid() };
    if main {
        if let Some(found) = main_thread_bounds() {
            return Some(found);
        }
    }
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

/// The main thread's stack, found as glibc's `pthread_getattr_np` finds it but for a fraction
/// of the cost (it reads `/proc/self/maps` through `sscanf`, a line at a time: about 2,000
/// instructions per mapping, 0.3M in a process with 130 mappings, paid on the first timed
/// call, often during an import). Other threads' stacks are recorded by the thread library,
/// and `pthread_getattr_np` reads them without any of this.
#[cfg(target_os = "linux")]
fn main_thread_bounds() -> Option<(usize, usize)> {
    let marker = 0u8;
    let here = std::hint::black_box(std::ptr::from_ref(&marker)) as usize;
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain libc calls; `limit` is a valid rlimit to fill.
    let (status, page) = unsafe {
        (
            libc::getrlimit(libc::RLIMIT_STACK, &mut limit),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    if status != 0 {
        return None;
    }
    let page = usize::try_from(page).ok().filter(|p| p.is_power_of_two())?;
    // RLIM_INFINITY (the largest value) saturates: the mapping below then bounds the stack.
    let limit = usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX);
    let maps = std::fs::read("/proc/self/maps").ok()?;
    stack_in_maps(&maps, here, limit, page)
}

/// The stack holding address `here`, as (lowest address, size), from the text of
/// `/proc/self/maps`: the mapping that contains `here` may grow down to `limit` bytes below
/// its end (the stack's resource limit), rounded up to a page, but not into the mapping
/// before it. glibc bounds the main thread's stack the same way (from the mapping holding
/// `__libc_stack_end`, the same one). None when no mapping holds `here`.
fn stack_in_maps(maps: &[u8], here: usize, limit: usize, page: usize) -> Option<(usize, usize)> {
    // The lines are in address order and the main thread's stack is the highest mapping but
    // for a few (vvar, vdso): read from the end, only the last lines are parsed.
    let mut lines = maps
        .rsplit(|&b| b == b'\n')
        .filter_map(mapping_range)
        .skip_while(|&(start, end)| !(start <= here && here < end));
    let (_, end) = lines.next()?;
    let previous_end = lines.next().map_or(0, |(_, e)| e);
    let lowest = end.saturating_sub(limit).checked_add(page - 1)? & !(page - 1);
    let lowest = lowest.max(previous_end);
    (lowest <= here).then(|| (lowest, end - lowest))
}

/// The `start-end` address range at the start of a line of `/proc/self/maps` (hexadecimal).
fn mapping_range(line: &[u8]) -> Option<(usize, usize)> {
    let range = line.split(|&b| b == b' ').next()?;
    let dash = range.iter().position(|&b| b == b'-')?;
    let hex = |digits: &[u8]| {
        std::str::from_utf8(digits)
            .ok()
            .and_then(|d| usize::from_str_radix(d, 16).ok())
    };
    Some((hex(&range[..dash])?, hex(&range[dash + 1..])?))
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

    const MAPS: &[u8] = b"\
55d0c0a00000-55d0c0a01000 r--p 00000000 08:01 1234 /usr/bin/python3.11
7f1234000000-7f1234021000 rw-p 00000000 00:00 0 
7ffc0e5c0000-7ffc0e5e1000 rw-p 00000000 00:00 0                          [stack]
7ffc0e5f0000-7ffc0e5f4000 r--p 00000000 00:00 0                          [vvar]
";

    #[test]
    fn the_stack_mapping_grows_down_to_its_limit() {
        let end = 0x7ffc_0e5e_1000;
        let here = 0x7ffc_0e5d_0000;
        // 8 MiB limit: the stack may grow to 8 MiB below the mapping's end.
        let limit = 8 << 20;
        assert_eq!(
            stack_in_maps(MAPS, here, limit, 4096),
            Some((end - limit, limit))
        );
        // A limit that is not page-aligned is rounded to less stack, never more.
        assert_eq!(
            stack_in_maps(MAPS, here, limit + 100, 4096),
            Some((end - limit, limit))
        );
        // Unlimited: down to the end of the mapping below.
        let below = 0x7f12_3402_1000;
        assert_eq!(
            stack_in_maps(MAPS, here, usize::MAX, 4096),
            Some((below, end - below))
        );
        // No mapping holds the address, or a line is not a mapping: no bound from here.
        assert_eq!(stack_in_maps(MAPS, 0x10, limit, 4096), None);
        assert_eq!(
            stack_in_maps(b"junk\n\n-\nzz-1 x\n", here, limit, 4096),
            None
        );
    }

    #[test]
    fn bounds_contain_the_current_frame() {
        let marker = 0u8;
        let here = std::ptr::from_ref(&marker) as usize;
        if let Some((low, size)) = bounds() {
            assert!(low < here && here <= low + size);
        }
    }
}
