//! Timing awaited calls over the whole await: `await f(x)` becomes
//! `await time_await(RECORD, SITE, f, x)`, which calls `f(x)` and returns an [`AwaitTimer`]
//! that drives the callee's awaitable and adds the time from the call to the end of the await
//! (suspensions included) to the site.
//!
//! The site's nested time is the growth of the thread's profiled-span counter from the call
//! to the end of the await: exact when the awaited callee is (or leads to) profiled
//! coroutines that end within the await; other tasks' profiled coroutines that interleave
//! during its suspensions can add to it or be overwritten (`thread::PerThread::profiled_ticks`).

use std::cell::UnsafeCell;

use pyo3::exceptions::{PyStopIteration, PyTypeError};
use pyo3::ffi;
use pyo3::prelude::*;

use super::clock::ticks;
use super::record::Record;
use super::thread::{callback_ticks, profiled_ticks};

/// Flag of generator-based coroutines (`@types.coroutine`), which `await` accepts as they are.
const CO_ITERABLE_COROUTINE: i64 = 0x100;

struct State {
    /// The awaitable's iterator; None once finished.
    iter: Option<Py<PyAny>>,
}

/// The awaitable returned by `time_await`.
#[pyclass(module = "callweave._native", frozen)]
pub(crate) struct AwaitTimer {
    record: Py<Record>,
    site: usize,
    start: u64,
    /// The thread's profiled-span counter before the call.
    profiled: u64,
    /// The thread's callback counter before the call: the await's time leaves out the
    /// callbacks run meanwhile, as the invocation's does (so that an await is never longer
    /// than the invocation around it).
    callbacks: u64,
    callee: Py<PyAny>,
    state: UnsafeCell<State>,
}

// SAFETY: see the runtime's concurrency invariant (runtime/mod.rs).
unsafe impl Sync for AwaitTimer {}

/// The iterator `await obj` would drive, with CPython's error for non-awaitables.
fn awaitable_iter<'py>(obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let py = obj.py();
    let ty = obj.get_type();
    if let Ok(await_method) = ty.getattr("__await__") {
        let it = await_method.call1((obj,))?;
        if it.hasattr("__next__")? {
            return Ok(it);
        }
        return Err(PyTypeError::new_err(format!(
            "__await__() returned non-iterator of type '{}'",
            it.get_type().name()?
        )));
    }
    let is_gen_coroutine = obj.hasattr("gi_code")?
        && obj
            .getattr("gi_code")?
            .getattr("co_flags")?
            .extract::<i64>()
            .is_ok_and(|f| f & CO_ITERABLE_COROUTINE != 0);
    if is_gen_coroutine {
        return Ok(obj.clone());
    }
    let _ = py;
    Err(PyTypeError::new_err(format!(
        "object {} can't be used in 'await' expression",
        ty.name()?
    )))
}

/// Ticks since `start` less the time this thread spent in above/below callbacks since its
/// callback counter read `callbacks` (as `entry::call_between_readings` times a call).
fn elapsed_without_callbacks(start: u64, callbacks: u64) -> u64 {
    let in_callbacks = callback_ticks().wrapping_sub(callbacks);
    ticks().saturating_sub(start).saturating_sub(in_callbacks)
}

/// Builds the timer for a call that returned `result` (or failed). A result that cannot be
/// awaited is returned as it is, timed as a plain call, so that the `await` itself raises
/// CPython's own TypeError at its own position.
pub(crate) fn start_await<'py>(
    py: Python<'py>,
    record: Bound<'py, Record>,
    site: usize,
    (start, profiled, callbacks): (u64, u64, u64),
    callee: Bound<'py, PyAny>,
    result: PyResult<Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let finish_now = |rec: &Bound<'py, Record>| -> PyResult<()> {
        // SAFETY: GIL held; `callee` is alive.
        if unsafe {
            rec.get().add(
                site,
                elapsed_without_callbacks(start, callbacks),
                profiled_ticks().wrapping_sub(profiled),
                callee.as_ptr(),
            )
        } {
            Ok(())
        } else {
            Err(PyErr::fetch(py))
        }
    };
    let result = match result {
        Ok(r) => r,
        Err(e) => {
            finish_now(&record)?;
            return Err(e);
        }
    };
    let iter = match awaitable_iter(&result) {
        Ok(it) => it,
        Err(e) if e.is_instance_of::<PyTypeError>(py) => {
            finish_now(&record)?;
            return Ok(result);
        }
        Err(e) => {
            finish_now(&record)?;
            return Err(e);
        }
    };
    Bound::new(
        py,
        AwaitTimer {
            record: record.unbind(),
            site,
            start,
            profiled,
            callbacks,
            callee: callee.unbind(),
            state: UnsafeCell::new(State {
                iter: Some(iter.unbind()),
            }),
        },
    )
    .map(Bound::into_any)
}

impl AwaitTimer {
    fn iter(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        // SAFETY: GIL held; shared read, cloned out before any Python call.
        unsafe { &*self.state.get() }
            .iter
            .as_ref()
            .map(|i| i.clone_ref(py))
    }

    /// Adds the await's time to the record; an error (a KeyboardInterrupt while naming the
    /// callee for a custom callback) replaces the await's outcome.
    fn finish(&self, py: Python<'_>) -> PyResult<()> {
        // SAFETY: GIL held; no Python code runs while this reference lives (dropping the
        // iterator is deferred until after the reference ends).
        let taken = unsafe { &mut *self.state.get() }.iter.take();
        let mut ok = true;
        if taken.is_some() {
            let elapsed = elapsed_without_callbacks(self.start, self.callbacks);
            // SAFETY: GIL held; the callee is alive (we hold a reference).
            let nested = profiled_ticks().wrapping_sub(self.profiled);
            ok = unsafe {
                self.record
                    .get()
                    .add(self.site, elapsed, nested, self.callee.as_ptr())
            };
        }
        let outcome = if ok { Ok(()) } else { Err(PyErr::fetch(py)) };
        drop(taken);
        outcome
    }

    /// Sends `value` into the awaitable (`None` for `__next__`).
    fn send_value(&self, py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let Some(iter) = self.iter(py) else {
            return Err(PyStopIteration::new_err(()));
        };
        let mut out: *mut ffi::PyObject = std::ptr::null_mut();
        // SAFETY: valid objects, GIL held; `out` receives a new reference or NULL.
        let status = unsafe { ffi::PyIter_Send(iter.as_ptr(), value.as_ptr(), &mut out) };
        match status {
            ffi::PySendResult::PYGEN_NEXT => {
                // SAFETY: a yielded value is a new reference.
                Ok(unsafe { Bound::from_owned_ptr(py, out) }.unbind())
            }
            ffi::PySendResult::PYGEN_RETURN => {
                // SAFETY: the return value is a new reference.
                let value = unsafe { Bound::from_owned_ptr(py, out) };
                self.finish(py)?;
                Err(PyStopIteration::new_err((value.unbind(),)))
            }
            ffi::PySendResult::PYGEN_ERROR => {
                let err = PyErr::fetch(py);
                self.finish(py)?;
                Err(err)
            }
        }
    }

    fn settle(&self, py: Python<'_>, outcome: PyResult<Bound<'_, PyAny>>) -> PyResult<Py<PyAny>> {
        match outcome {
            Ok(v) => Ok(v.unbind()),
            Err(e) => {
                self.finish(py)?;
                Err(e)
            }
        }
    }
}

#[pymethods]
impl AwaitTimer {
    fn __await__<'py>(slf: &Bound<'py, Self>) -> Bound<'py, Self> {
        slf.clone()
    }

    fn __iter__<'py>(slf: &Bound<'py, Self>) -> Bound<'py, Self> {
        slf.clone()
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.send_value(py, &py.None().into_bound(py))
    }

    fn send(&self, py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        self.send_value(py, value)
    }

    #[pyo3(signature = (typ, val=None, tb=None))]
    fn throw(
        &self,
        py: Python<'_>,
        typ: &Bound<'_, PyAny>,
        val: Option<&Bound<'_, PyAny>>,
        tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let Some(iter) = self.iter(py) else {
            return Err(PyErr::from_value(typ.clone()));
        };
        let iter = iter.into_bound(py);
        if let Ok(throw) = iter.getattr("throw") {
            let outcome = match (val, tb) {
                (None, None) => throw.call1((typ,)),
                (Some(v), None) => throw.call1((typ, v)),
                (v, Some(t)) => throw.call1((
                    typ,
                    v.map_or_else(|| py.None().into_bound(py), Clone::clone),
                    t,
                )),
            };
            return self.settle(py, outcome);
        }
        self.finish(py)?;
        Err(match val {
            Some(v) if !v.is_none() => PyErr::from_value(v.clone()),
            _ => PyErr::from_value(typ.call0().unwrap_or_else(|_| typ.clone())),
        })
    }

    fn close(&self, py: Python<'_>) -> PyResult<()> {
        if let Some(iter) = self.iter(py) {
            let iter = iter.into_bound(py);
            if let Ok(close) = iter.getattr("close") {
                let outcome = close.call0();
                self.finish(py)?;
                outcome?;
                return Ok(());
            }
        }
        self.finish(py)
    }
}
