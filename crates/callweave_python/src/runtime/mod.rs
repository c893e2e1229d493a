//! The native runtime that rewritten code calls: the call timer, per-invocation records and
//! per-function aggregates.
//!
//! Concurrency invariant: callweave supports CPython builds with the GIL only (3.11–3.13 default
//! builds). Every piece of mutable state here is touched only while the GIL is held, in short
//! critical sections that never call back into Python, so `UnsafeCell` contents are never
//! aliased mutably. Aggregates use relaxed atomics so that reading stats needs no lock.

pub(crate) mod awaits;
pub(crate) mod bind;
pub(crate) mod clock;
pub(crate) mod cpython;
pub(crate) mod gc;
pub(crate) mod histogram;
pub(crate) mod names;
pub(crate) mod profile;
pub(crate) mod record;
pub(crate) mod stack;
pub(crate) mod thread;
pub(crate) mod timer;
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
    m.add_class::<profile::FunctionProfile>()?;
    m.add_class::<profile::ProfileTable>()?;
    m.add_class::<record::Record>()?;
    m.add_class::<awaits::AwaitTimer>()?;
    m.add_function(wrap_pyfunction!(profile::all_profiles, m)?)?;
    m.add_function(wrap_pyfunction!(profile::_profile_at, m)?)?;
    m.add_function(wrap_pyfunction!(profile::reset_stats, m)?)?;
    m.add_function(wrap_pyfunction!(profile::set_dispatcher, m)?)?;
    m.add_function(wrap_pyfunction!(clock::clock_source, m)?)?;
    m.add_function(wrap_pyfunction!(clock::now_ns, m)?)?;
    timer::register(m)?;
    trampoline::register(m)?;
    bind::register(m)?;
    Ok(())
}
