//! The native runtime that rewritten code calls: the call timer, per-invocation records and
//! per-function aggregates.
//!
//! Concurrency invariant: callweave supports CPython builds with the GIL only (3.11–3.13 default
//! builds). Every piece of mutable state here is touched only while the GIL is held, in short
//! critical sections that never call back into Python, so `UnsafeCell` contents are never
//! aliased mutably. Aggregates use relaxed atomics so that reading stats needs no lock.
//!
//! The modules form a stack: a module uses only modules of the groups declared before its own
//! (no cycles).
//!
//! - CPython and platform glue: `cpython` (layouts and symbols pyo3 lacks), `gc`, `thread`
//!   (per-thread state), `stack` (stack-depth checks), `names` (callee names for custom callbacks);
//! - `clock`, `histogram`: ticks and the fixed-size latency histogram;
//! - `stats`: profiled functions' static data and aggregates (`FunctionProfile`), the
//!   registry, the dispatcher of callbacks;
//! - `record`: one invocation's record (per-site times, limit check, callbacks);
//! - `awaits`: timing of awaited calls on a record;
//! - `entry`: the entry points rewritten code calls (`ENTER` from a `ProfileTable`, the call
//!   timers, `EXIT`, `PAUSE`/`RESUME`, `STRIP`);
//! - beside the stack, for call wrapping: `trampoline`, `bind`.

pub(crate) mod cpython;
pub(crate) mod gc;
pub(crate) mod thread;

pub(crate) mod names;
pub(crate) mod stack;

pub(crate) mod clock;
pub(crate) mod histogram;

pub(crate) mod stats;

pub(crate) mod record;

pub(crate) mod awaits;

pub(crate) mod entry;

pub(crate) mod bind;
pub(crate) mod trampoline;

use pyo3::prelude::*;

/// Adds the runtime's classes and functions to the extension module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let sys = m.py().import("sys")?;
    if let Ok(gil_enabled) = sys.getattr("_is_gil_enabled") {
        if !gil_enabled.call0()?.is_truthy()? {
            return Err(pyo3::exceptions::PyImportError::new_err(
                "callweave's runtime relies on the GIL; free-threaded Python is not supported",
            ));
        }
    }
    m.add_class::<stats::FunctionProfile>()?;
    m.add_class::<entry::ProfileTable>()?;
    m.add_class::<record::Record>()?;
    m.add_class::<awaits::AwaitTimer>()?;
    m.add_function(wrap_pyfunction!(stats::all_profiles, m)?)?;
    m.add_function(wrap_pyfunction!(stats::profile_counts, m)?)?;
    m.add_function(wrap_pyfunction!(stats::_profile_at, m)?)?;
    m.add_function(wrap_pyfunction!(stats::reset_stats, m)?)?;
    m.add_function(wrap_pyfunction!(stats::set_dispatcher, m)?)?;
    m.add_function(wrap_pyfunction!(clock::clock_source, m)?)?;
    m.add_function(wrap_pyfunction!(clock::now_ns, m)?)?;
    m.add_function(wrap_pyfunction!(clock::clock_pair_ns, m)?)?;
    entry::register(m)?;
    trampoline::register(m)?;
    bind::register(m)?;
    Ok(())
}
