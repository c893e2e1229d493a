//! Per-invocation records. A record is a local of the profiled function's frame (bound by
//! `with ENTER(i) as RECORD:`), so each invocation's data is its own under recursion, threads,
//! generators and asyncio.

use std::cell::UnsafeCell;
use std::sync::Arc;

use pyo3::prelude::*;

use super::clock::{ticks, ticks_to_ns};
use super::profile::{FunctionProfile, FunctionState, DISPATCHER};

#[derive(Clone, Copy, Default)]
struct SiteAcc {
    count: u64,
    ticks: u64,
    max: u64,
}

struct Event {
    site: u32,
    callee: Py<PyAny>,
    ticks: u64,
}

struct Inner {
    start: u64,
    total_ns: u64,
    done: bool,
    sites: Vec<SiteAcc>,
    events: Vec<Event>,
}

/// One invocation of a profiled function.
#[pyclass(module = "callweave._native", frozen)]
pub(crate) struct Record {
    pub(crate) func: Arc<FunctionState>,
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
            func,
            inner: UnsafeCell::new(Inner {
                start: ticks(),
                total_ns: 0,
                done: false,
                sites,
                events: Vec::new(),
            }),
        }
    }

    /// Adds one timed call. Calls made after the invocation finished (a generator expression
    /// consumed after `return`) are not counted in the record.
    ///
    /// # Safety
    /// The GIL must be held and `callee` must be a valid object pointer.
    pub(crate) unsafe fn add(
        &self,
        py: Python<'_>,
        site: usize,
        elapsed: u64,
        callee: *mut pyo3::ffi::PyObject,
    ) {
        // SAFETY: GIL held; no Python code runs while this reference lives.
        let inner = unsafe { &mut *self.inner.get() };
        if inner.done {
            return;
        }
        if let Some(acc) = inner.sites.get_mut(site) {
            acc.count += 1;
            acc.ticks += elapsed;
            acc.max = acc.max.max(elapsed);
        }
        if self.func.record_calls {
            // SAFETY: `callee` is a live object the caller holds.
            let callee = unsafe { Bound::from_borrowed_ptr(py, callee) }.unbind();
            inner.events.push(Event {
                site: u32::try_from(site).unwrap_or(u32::MAX),
                callee,
                ticks: elapsed,
            });
        }
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
        let inner = unsafe { &mut *self.inner.get() };
        if inner.done {
            return None;
        }
        inner.done = true;
        let total_ns = ticks_to_ns(end.saturating_sub(inner.start));
        inner.total_ns = total_ns;
        for (i, acc) in inner.sites.iter().enumerate() {
            if acc.count > 0 {
                self.func
                    .add_site(i, acc.count, ticks_to_ns(acc.ticks), ticks_to_ns(acc.max));
            }
        }
        self.func.add_invocation(total_ns, raised);
        Some(total_ns)
    }
}

impl Record {
    /// Ends the invocation (a no-op if it has ended) and runs the above/below callback. A
    /// callback's exception goes to `sys.unraisablehook`, so it never reaches the profiled
    /// function nor masks the exception it raised.
    pub(crate) fn exit(slf: &Bound<'_, Self>, raised: bool) {
        let this = slf.get();
        let Some(total_ns) = this.finish(raised) else {
            return;
        };
        let func = &this.func;
        let callback = if total_ns >= func.limit_ns {
            func.above.as_ref()
        } else {
            func.below.as_ref()
        };
        let py = slf.py();
        if let (Some(cb), Some(dispatch)) = (callback, DISPATCHER.get()) {
            let total = total_ns as f64 / 1e9;
            // Bound values only: this runs from raw C entry points, where PyO3 would defer the
            // release of a dropped `Py` to its pending pool instead of releasing it now.
            if let Err(err) = dispatch.bind(py).call1((cb.bind(py), total, slf)) {
                err.write_unraisable(py, Some(slf.as_any()));
            }
        }
        // The per-call list has served its callback; a closure that outlives the invocation
        // (and so keeps the record) must not keep every callee alive.
        // SAFETY: GIL held; the list is moved out before it is dropped, so no reference into
        // the record is alive while callees' destructors run.
        let events = std::mem::take(unsafe { &mut (*this.inner.get()).events });
        for event in events {
            drop(event.callee.into_bound(py));
        }
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
    ) -> bool {
        Self::exit(slf, !exc_type.is_none());
        false
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

    /// Every call of this invocation in order: `(site, callee, seconds)`; empty unless the
    /// function records calls (it has a custom callback).
    fn calls(&self, py: Python<'_>) -> Vec<(u32, Py<PyAny>, f64)> {
        self.inner()
            .events
            .iter()
            .map(|e| {
                (
                    e.site,
                    e.callee.clone_ref(py),
                    ticks_to_ns(e.ticks) as f64 / 1e9,
                )
            })
            .collect()
    }
}
