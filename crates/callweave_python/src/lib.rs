//! `callweave._native`: the only PyO3 crate of callweave.
//!
//! It binds the rewrite engine (rules, rewrites, code-object position remapping) and holds
//! the native runtime that rewritten code calls.

mod allocator;
mod checksum;
mod engine;
mod errors;
mod runtime;

use pyo3::prelude::*;

/// The extension module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    allocator::configure();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("CallweaveError", py.get_type::<errors::CallweaveError>())?;
    m.add("RewriteError", py.get_type::<errors::RewriteError>())?;
    m.add("ParseError", py.get_type::<errors::ParseError>())?;
    m.add_class::<engine::Rule>()?;
    m.add_class::<engine::DottedGlobs>()?;
    m.add_class::<engine::Rewritten>()?;
    m.add_class::<engine::ConstantSlot>()?;
    m.add_class::<engine::Site>()?;
    m.add_class::<engine::Profiled>()?;
    m.add_class::<engine::RewrittenFunction>()?;
    m.add(
        "TRANSFORMS",
        callweave_engine::transforms()
            .into_iter()
            .collect::<std::collections::BTreeMap<_, _>>(),
    )?;
    m.add_function(wrap_pyfunction!(engine::py_rewrite, m)?)?;
    m.add_function(wrap_pyfunction!(engine::decode_source, m)?)?;
    m.add_function(wrap_pyfunction!(checksum::crc32, m)?)?;
    m.add_function(wrap_pyfunction!(allocator::allocator_options, m)?)?;
    runtime::register(m)?;
    Ok(())
}
