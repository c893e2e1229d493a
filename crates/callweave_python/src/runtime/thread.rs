//! The runtime's per-thread state, in one thread-local so that the timer computes its address
//! once per call (in a shared library each distinct thread-local costs a `__tls_get_addr`).
//! Const-initialised and without a destructor: access is never a lazy initialisation and
//! holds no guard with a destructor (see the unwinding invariant in `entry.rs`).

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether any above/below callback has finished in this process, on any thread. Until one
/// has, every thread's callback counter is 0, so timed spans skip the thread-local read.
/// Invariant: the flag is set before any counter first grows (both under the GIL).
static CALLBACKS_RAN: AtomicBool = AtomicBool::new(false);

/// One thread's runtime state.
pub(crate) struct PerThread {
    /// Ticks this thread has spent running above/below callbacks since it started (wrapping).
    /// A timed span subtracts the growth of this counter over the span, so a callback's own
    /// time is charged neither to the call site that (indirectly) ran it nor to the enclosing
    /// invocation's total.
    pub(crate) callback_ticks: Cell<u64>,
    /// The lowest stack address the 3.11 stack guard accepts; 0 before the first check, 1 when
    /// the bounds could not be found (`stack.rs`).
    pub(crate) stack_lowest: Cell<usize>,
    /// Ticks of profiled invocations' running spans on this thread, outermost spans only
    /// (wrapping): a span that starts snapshots the counter and, when it ends (return, raise
    /// or a generator's `yield`), sets it to snapshot + the span's ticks, replacing what the
    /// spans nested in it added. A timed call reads it before and after: the growth is the
    /// time its callee spent in profiled functions (`nested` per site). Exact for spans that
    /// nest on the thread's stack (plain calls, recursion, generators, a coroutine awaited by
    /// its caller); coroutines of different tasks interleaving on the thread overlap, and the
    /// last to end sets the counter.
    pub(crate) profiled_ticks: Cell<u64>,
}

thread_local! {
    static STATE: PerThread = const {
        PerThread {
            callback_ticks: Cell::new(0),
            stack_lowest: Cell::new(0),
            profiled_ticks: Cell::new(0),
        }
    };
}

/// Runs `f` with this thread's state.
#[inline(always)]
pub(crate) fn with<R>(f: impl FnOnce(&PerThread) -> R) -> R {
    STATE.with(f)
}

/// Whether any callback has finished yet (if not, every thread's callback ticks are 0).
#[inline(always)]
pub(crate) fn callbacks_ran() -> bool {
    CALLBACKS_RAN.load(Ordering::Relaxed)
}

/// This thread's cumulative callback ticks (no thread-local read until a callback has run).
#[inline(always)]
pub(crate) fn callback_ticks() -> u64 {
    if callbacks_ran() {
        with(|t| t.callback_ticks.get())
    } else {
        0
    }
}

/// Adds `t` ticks to this thread's callback counter.
#[inline]
pub(crate) fn add_callback_ticks(ticks: u64) {
    CALLBACKS_RAN.store(true, Ordering::Relaxed);
    with(|t| {
        t.callback_ticks
            .set(t.callback_ticks.get().wrapping_add(ticks))
    });
}

/// This thread's profiled-span counter (see [`PerThread::profiled_ticks`]).
#[inline(always)]
pub(crate) fn profiled_ticks() -> u64 {
    with(|t| t.profiled_ticks.get())
}

/// Ends a profiled span that began when the counter was `start` and ran `span` ticks.
#[inline(always)]
pub(crate) fn end_profiled_span(start: u64, span: u64) {
    with(|t| t.profiled_ticks.set(start.wrapping_add(span)));
}
