//! Per-invocation records. A record is a local of the profiled function's frame (bound by
//! `RECORD = ENTER(i)` before the body's `try`), so each invocation's data is its own under
//! recursion, threads, generators and asyncio.
//!
//! An invocation's total is the sum of its running spans: a generator's record is paused at
//! each `yield` and resumed after it (`pause_record` / `resume_record`), so time spent
//! suspended is not counted. Time spent in above/below callbacks (of this or of nested
//! profiled functions) is subtracted from every span and timed call that encloses it.
//!
//! Each running span also maintains this thread's profiled-span counter
//! (`thread::PerThread::profiled_ticks`), from which a timed call learns how much of its time
//! ran inside profiled invocations (the site's `nested` time).

use std::cell::UnsafeCell;
use std::sync::Arc;

use pyo3::prelude::*;

use pyo3::ffi;

use super::clock::{ticks, ticks_to_ns};
use super::names;
use super::stats::{FunctionProfile, FunctionState, DISPATCHER};
use super::thread::{add_callback_ticks, callback_ticks, end_profiled_span, profiled_ticks};

#[derive(Clone, Copy, Default)]
struct SiteAcc {
    count: u64,
    ticks: u64,
    max: u64,
    /// Ticks of profiled invocations inside the calls (`thread::PerThread::profiled_ticks`).
    nested: u64,
}

/// One timed call, for custom callbacks: no object, 16 bytes.
#[derive(Clone, Copy)]
struct Event {
    site: u32,
    /// Index in the callee name table (`names.rs`).
    name: u32,
    ticks: u64,
}

/// Calls kept one by one per invocation for custom callbacks (16 MiB of events); later calls
/// of the same invocation still count in the per-site breakdown, and are counted as dropped.
pub(crate) const MAX_EVENTS: usize = 1 << 20;

struct Inner {
    /// When the current running span began (ticks).
    start: u64,
    /// This thread's callback ticks when the current span began.
    callback_start: u64,
    /// Ticks of the finished running spans (a generator's earlier resumptions).
    acc: u64,
    /// This thread's profiled-span counter when the current running span began.
    profiled_start: u64,
    paused: bool,
    total_ns: u64,
    done: bool,
    sites: Vec<SiteAcc>,
    events: Vec<Event>,
    dropped: u64,
}

impl Inner {
    /// Counts one call of `site` that took `elapsed` ticks.
    #[inline(always)]
    fn count(&mut self, site: usize, elapsed: u64, nested: u64) {
        if let Some(acc) = self.sites.get_mut(site) {
            acc.count += 1;
            acc.ticks += elapsed;
            acc.max = acc.max.max(elapsed);
            // Never more than the call's own time (clock readings of nested spans sit inside).
            // A counter that went back over the call (a coroutine begun before the call ended
            // in it after interleaving with others, see `thread.rs`) wraps to a huge growth:
            // that counts as none.
            acc.nested += if nested > i64::MAX as u64 {
                0
            } else {
                nested.min(elapsed)
            };
        }
    }

    /// Ticks of the current running span, without time spent in callbacks.
    fn span(&self, now: u64) -> u64 {
        if self.paused {
            return 0;
        }
        let callbacks = callback_ticks().wrapping_sub(self.callback_start);
        now.saturating_sub(self.start).saturating_sub(callbacks)
    }
}

/// One invocation of a profiled function.
#[pyclass(module = "callweave._native", frozen)]
pub(crate) struct Record {
    pub(crate) func: Arc<FunctionState>,
    /// `func.record_calls`, kept here so the timer tests it without following `func`.
    record_calls: bool,
    inner: UnsafeCell<Inner>,
}

// SAFETY: see the runtime's concurrency invariant (runtime/mod.rs): `inner` is only accessed
// with the GIL held, in critical sections that do not call into Python.
unsafe impl Sync for Record {}

impl Record {
    /// A record of a function with no sites, used to measure the object layout.
    pub(crate) fn probe() -> Self {
        Self::new(Arc::new(FunctionState::probe()))
    }

    pub(crate) fn new(func: Arc<FunctionState>) -> Self {
        let sites = vec![SiteAcc::default(); func.sites.len()];
        Self {
            record_calls: func.record_calls,
            func,
            inner: UnsafeCell::new(Inner {
                start: ticks(),
                callback_start: callback_ticks(),
                acc: 0,
                profiled_start: profiled_ticks(),
                paused: false,
                total_ns: 0,
                done: false,
                sites,
                events: Vec::new(),
                dropped: 0,
            }),
        }
    }

    /// Starts a new invocation in a finished record, as [`Record::new`] would (same function):
    /// the clock restarts, the per-site accumulators are zeroed and the per-call list emptied
    /// (its buffer kept when small).
    ///
    /// # Safety
    /// The GIL must be held and nothing but the caller may reference the record's object (its
    /// reference count is 1): no one can see the previous invocation change.
    #[inline(always)]
    pub(crate) unsafe fn restart(&self) {
        /// A per-call list kept across invocations holds at most this many events' memory.
        const KEEP_EVENTS: usize = 1024;
        // SAFETY: GIL held; no Python code runs while this reference lives.
        let inner = unsafe { self.inner_mut() };
        inner.acc = 0;
        inner.paused = false;
        inner.total_ns = 0;
        inner.done = false;
        inner.sites.fill(SiteAcc::default());
        if inner.events.capacity() > KEEP_EVENTS {
            inner.events = Vec::new();
        } else {
            inner.events.clear();
        }
        inner.dropped = 0;
        inner.callback_start = callback_ticks();
        inner.profiled_start = profiled_ticks();
        inner.start = ticks();
    }

    /// Mutable access to the invocation's state.
    ///
    /// # Safety
    /// The GIL must be held and no Python code may run while the reference lives.
    #[allow(clippy::mut_from_ref)]
    unsafe fn inner_mut(&self) -> &mut Inner {
        // SAFETY: guaranteed by the caller (the runtime's concurrency invariant).
        unsafe { &mut *self.inner.get() }
    }

    /// Adds one timed call. Calls made after the invocation finished (a generator expression
    /// consumed after `return`) are not counted in the record. With custom callbacks the
    /// callee's name is looked up (computed on its first sight, which runs Python code);
    /// returns false with the error set if that raised a `BaseException` that must propagate.
    ///
    /// The common case (no custom callback) is inlined into the timer: a flag test and three
    /// updates of the site's accumulator.
    ///
    /// # Safety
    /// The GIL must be held and `callee` must be a valid object pointer.
    #[inline(always)]
    pub(crate) unsafe fn add(
        &self,
        site: usize,
        elapsed: u64,
        nested: u64,
        callee: *mut ffi::PyObject,
    ) -> bool {
        if self.record_calls {
            // SAFETY: guaranteed by the caller.
            return unsafe { self.add_recorded(site, elapsed, nested, callee) };
        }
        // SAFETY: GIL held; no Python code runs while this reference lives.
        let inner = unsafe { self.inner_mut() };
        if !inner.done {
            inner.count(site, elapsed, nested);
        }
        true
    }

    /// [`Record::add`] for a function whose calls are kept one by one (custom callbacks).
    ///
    /// # Safety
    /// As for [`Record::add`].
    #[cold]
    #[inline(never)]
    unsafe fn add_recorded(
        &self,
        site: usize,
        elapsed: u64,
        nested: u64,
        callee: *mut ffi::PyObject,
    ) -> bool {
        // SAFETY: GIL held; no Python code runs while these references live.
        if unsafe { self.inner_mut() }.done {
            return true;
        }
        // SAFETY: GIL held, `callee` valid; no borrow of `inner` is alive.
        let name = match unsafe { names::name_of(callee) } {
            Ok(n) => n,
            Err(()) => return false,
        };
        // SAFETY: as above; the name lookup has finished.
        let inner = unsafe { self.inner_mut() };
        inner.count(site, elapsed, nested);
        if inner.events.len() < MAX_EVENTS {
            inner.events.push(Event {
                site: u32::try_from(site).unwrap_or(u32::MAX),
                name,
                ticks: elapsed,
            });
        } else {
            inner.dropped += 1;
        }
        true
    }

    /// Stops the invocation's clock (a generator suspends); a no-op if it is stopped.
    pub(crate) fn pause(&self) {
        let now = ticks();
        // SAFETY: GIL held by the caller (a C entry point); no Python code runs here.
        let inner = unsafe { self.inner_mut() };
        if inner.done || inner.paused {
            return;
        }
        let span = inner.span(now);
        inner.acc += span;
        inner.paused = true;
        end_profiled_span(inner.profiled_start, span);
    }

    /// Restarts the invocation's clock (a generator resumes); a no-op if it is running.
    pub(crate) fn resume(&self) {
        // SAFETY: GIL held by the caller (a C entry point); no Python code runs here.
        let inner = unsafe { self.inner_mut() };
        if inner.done || !inner.paused {
            return;
        }
        inner.paused = false;
        inner.callback_start = callback_ticks();
        inner.profiled_start = profiled_ticks();
        inner.start = ticks();
    }

    fn inner(&self) -> &Inner {
        // SAFETY: GIL held by every caller (pymethods); shared access only.
        unsafe { &*self.inner.get() }
    }

    /// Ends the invocation: folds it into the aggregates. Returns the total in nanoseconds, or
    /// None if it had already ended.
    fn finish(&self, raised: bool) -> Option<u64> {
        let end = ticks();
        // SAFETY: GIL held; no Python code runs while this reference lives.
        let inner = unsafe { self.inner_mut() };
        if inner.done {
            return None;
        }
        inner.done = true;
        let span = inner.span(end);
        if !inner.paused {
            end_profiled_span(inner.profiled_start, span);
        }
        let total_ns = ticks_to_ns(inner.acc + span);
        inner.paused = true;
        inner.total_ns = total_ns;
        for (i, acc) in inner.sites.iter().enumerate() {
            if acc.count > 0 {
                self.func.add_site(
                    i,
                    acc.count,
                    ticks_to_ns(acc.ticks),
                    ticks_to_ns(acc.max),
                    ticks_to_ns(acc.nested),
                );
            }
        }
        self.func.add_invocation(total_ns, raised);
        Some(total_ns)
    }

    /// Ends the invocation (a no-op if it has ended) and runs the above/below callback. A
    /// callback's `Exception` goes to `sys.unraisablehook`, so it never reaches the profiled
    /// function nor masks the exception it raised; any other `BaseException`
    /// (KeyboardInterrupt, SystemExit) propagates: returns false with it set. The callback's
    /// own time is added to this thread's callback ticks, which enclosing timed spans
    /// subtract.
    ///
    /// Called from C entry points: it holds no value with a destructor while Python code
    /// runs (see the unwinding invariant in `entry.rs`).
    ///
    /// # Safety
    /// The GIL must be held; `obj` must be the Python object of `self`, alive for the call.
    pub(crate) unsafe fn exit(&self, obj: *mut ffi::PyObject, raised: bool) -> bool {
        let Some(total_ns) = self.finish(raised) else {
            return true;
        };
        let func = &self.func;
        let callback = if total_ns >= func.limit_ns {
            func.above.as_ref()
        } else {
            func.below.as_ref()
        };
        let (Some(cb), Some(dispatch)) = (callback, DISPATCHER.get()) else {
            return true;
        };
        let (cb, dispatch) = (cb.as_ptr(), dispatch.as_ptr());
        let started = ticks();
        // SAFETY: GIL held; `cb` and `dispatch` are kept alive by the function state and the
        // module (both live for the process); `obj` by the caller; `total` is released below.
        let ok = unsafe {
            let total = ffi::PyFloat_FromDouble(total_ns as f64 / 1e9);
            let result = if total.is_null() {
                std::ptr::null_mut()
            } else {
                let args = [cb, total, obj];
                let r = ffi::PyObject_Vectorcall(dispatch, args.as_ptr(), 3, std::ptr::null_mut());
                ffi::Py_DECREF(total);
                r
            };
            if result.is_null() {
                if ffi::PyErr_ExceptionMatches(ffi::PyExc_Exception) != 0 {
                    ffi::PyErr_WriteUnraisable(obj);
                    true
                } else {
                    false
                }
            } else {
                ffi::Py_DECREF(result);
                true
            }
        };
        add_callback_ticks(ticks().saturating_sub(started));
        // The per-call list has served its callback; a closure that outlives the invocation
        // (and so keeps the record) must not keep it.
        // SAFETY: GIL held; dropping plain data runs no Python code.
        unsafe { self.inner_mut() }.events = Vec::new();
        ok
    }
}

#[pymethods]
impl Record {
    fn __enter__<'py>(slf: &Bound<'py, Self>) -> Bound<'py, Self> {
        slf.clone()
    }

    /// Ends the invocation like the rewritten code's exit call; never suppresses an exception.
    fn __exit__(
        slf: &Bound<'_, Self>,
        exc_type: &Bound<'_, PyAny>,
        _exc: &Bound<'_, PyAny>,
        _tb: &Bound<'_, PyAny>,
    ) -> PyResult<bool> {
        // SAFETY: GIL held; `slf` is this record's object.
        if unsafe { slf.get().exit(slf.as_ptr(), !exc_type.is_none()) } {
            Ok(false)
        } else {
            Err(PyErr::fetch(slf.py()))
        }
    }

    /// The invocation's total in seconds (0 until it ends).
    #[getter]
    fn total(&self) -> f64 {
        self.inner().total_ns as f64 / 1e9
    }

    /// Whether the invocation has ended.
    #[getter]
    fn done(&self) -> bool {
        self.inner().done
    }

    /// The profiled function.
    #[getter]
    fn profile(&self) -> FunctionProfile {
        FunctionProfile {
            state: Arc::clone(&self.func),
        }
    }

    /// Per-site breakdown of this invocation: `(site, count, total, max)` in seconds, for the
    /// sites that were called.
    fn breakdown(&self) -> Vec<(usize, u64, f64, f64)> {
        self.inner()
            .sites
            .iter()
            .enumerate()
            .filter(|(_, a)| a.count > 0)
            .map(|(i, a)| {
                (
                    i,
                    a.count,
                    ticks_to_ns(a.ticks) as f64 / 1e9,
                    ticks_to_ns(a.max) as f64 / 1e9,
                )
            })
            .collect()
    }

    /// Every call of this invocation in order: `(site, callee name, seconds)`; empty unless
    /// the function records calls (it has a custom callback) and after the callback ran.
    fn calls(&self, py: Python<'_>) -> Vec<(u32, Py<PyAny>, f64)> {
        self.inner()
            .events
            .iter()
            .map(|e| {
                // SAFETY: GIL held; name indexes come from the name table.
                let name = unsafe { names::name(e.name) };
                let name = if name.is_null() {
                    pyo3::types::PyString::new(py, "?").into_any().unbind()
                } else {
                    // SAFETY: a live str (names are never released).
                    unsafe { Bound::from_borrowed_ptr(py, name) }.unbind()
                };
                (e.site, name, ticks_to_ns(e.ticks) as f64 / 1e9)
            })
            .collect()
    }

    /// Calls not kept one by one because the invocation made more than `MAX_EVENTS` (they
    /// still count in the breakdown).
    #[getter]
    fn dropped_calls(&self) -> u64 {
        self.inner().dropped
    }

    /// Whether the invocation's clock is stopped (a suspended generator, or ended).
    #[getter]
    fn paused(&self) -> bool {
        self.inner().paused
    }
}
