//! The one place engine errors become Python exceptions.

use callweave_engine::EngineError;
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyValueError};
use pyo3::PyErr;

create_exception!(
    _native,
    CallweaveError,
    PyException,
    "Base class of callweave's own errors."
);
create_exception!(
    _native,
    RewriteError,
    CallweaveError,
    "Source that callweave cannot rewrite (the original code is still usable)."
);
create_exception!(
    _native,
    ParseError,
    RewriteError,
    "The engine's parser rejected the source; compile it to get Python's own SyntaxError."
);

/// Converts an engine error: bad user input (globs, call names, list combinations) is a
/// `ValueError` naming the entry; a source the engine cannot handle is a `RewriteError`.
pub(crate) fn to_py(err: EngineError) -> PyErr {
    match err {
        EngineError::BadGlob { .. }
        | EngineError::BadCallName { .. }
        | EngineError::BlacklistAndWhitelist
        | EngineError::BadInjectedName { .. } => PyValueError::new_err(err.to_string()),
        // Too deep: compiling the original gives CPython's own error, as for a parse error.
        EngineError::Parse { .. } | EngineError::TooDeep { .. } => {
            ParseError::new_err(err.to_string())
        }
        EngineError::InvalidUtf8 { .. }
        | EngineError::NeedsDecoding { .. }
        | EngineError::FunctionNotFound { .. }
        | EngineError::Unsupported { .. }
        | EngineError::Internal { .. }
        | EngineError::OverlappingEdits { .. } => RewriteError::new_err(err.to_string()),
    }
}
