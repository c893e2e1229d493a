//! The one place engine errors become Python exceptions.

use callweave_engine::EngineError;
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PySyntaxError, PyValueError};
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
/// `ValueError` naming the entry; code breaking a transform's rule is a `SyntaxError`; a
/// source the engine cannot handle is a `RewriteError`.
pub(crate) fn to_py(err: EngineError) -> PyErr {
    match err {
        EngineError::BadGlob { .. }
        | EngineError::BadCallName { .. }
        | EngineError::BlacklistAndWhitelist
        | EngineError::BadInjectedName { .. }
        | EngineError::UnknownTransform { .. }
        | EngineError::BadOption { .. } => PyValueError::new_err(err.to_string()),
        // The user's code breaks a transform's rule: a `SyntaxError` at the position, whose
        // filename (None here) the caller fills in. `offset` is 1-based.
        EngineError::Code {
            message,
            line,
            column,
        } => PySyntaxError::new_err((message, (None::<&str>, line, column + 1, None::<&str>))),
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
