//! The engine's error type: one enum, rendered for humans by `Display`.

use std::fmt;

/// Everything that can stop a rewrite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineError {
    /// The source is not valid UTF-8 although it declares (or defaults to) UTF-8.
    InvalidUtf8 {
        /// Byte offset of the first invalid sequence.
        offset: usize,
    },
    /// The source declares an encoding other than UTF-8; the caller must decode it and pass text.
    NeedsDecoding {
        /// The encoding named by the PEP 263 declaration.
        encoding: String,
    },
    /// The parser rejected the source. The caller should compile the original to get the
    /// running Python's own `SyntaxError`.
    Parse {
        /// The parser's message.
        message: String,
        /// 1-based line of the error.
        line: usize,
        /// 0-based UTF-8 byte column of the error.
        column: usize,
    },
    /// A glob pattern for modules or functions is malformed.
    BadGlob {
        /// The pattern as given.
        pattern: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A blacklist / whitelist entry is not in the call-name syntax.
    BadCallName {
        /// The entry as given.
        entry: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A rule uses a blacklist and a whitelist at once.
    BlacklistAndWhitelist,
    /// A rule selects one function by qualname and line, and no such function exists.
    FunctionNotFound {
        /// The qualname searched for.
        qualname: String,
        /// The `def` (or first decorator) line searched for.
        line: u32,
    },
    /// An injected name is not a valid Python identifier, or would be name-mangled.
    BadInjectedName {
        /// The name as given.
        name: String,
    },
    /// A rule names a transform the registry does not have.
    UnknownTransform {
        /// The name as given.
        name: String,
        /// The registered names, comma-separated.
        known: String,
    },
    /// A rule's option is unknown to its transform, missing, or of the wrong type.
    BadOption {
        /// The transform's name.
        transform: String,
        /// The option's name.
        option: String,
        /// Why it was rejected.
        reason: String,
    },
    /// The selected code breaks a transform's rule (e.g. it assigns a name frozen as a
    /// constant): the user's error, raised as a `SyntaxError` at the position.
    Code {
        /// The message (as CPython would word it, e.g. "can't assign to constant name 'a'").
        message: String,
        /// 1-based line.
        line: usize,
        /// 0-based UTF-8 byte column.
        column: usize,
    },
    /// A construct the engine cannot rewrite safely; the caller keeps the original code.
    Unsupported {
        /// What could not be rewritten.
        what: String,
        /// Why.
        reason: String,
    },
    /// The source nests deeper than CPython allows or than the engine walks safely. The caller
    /// should compile the original: CPython gives its own error for it, or compiles it (then
    /// the module is used unmodified).
    TooDeep {
        /// What is too deep, and the limit.
        what: String,
        /// 1-based line where it happens.
        line: usize,
    },
    /// The engine could not run (its thread could not start) or stopped on an internal error.
    Internal {
        /// What happened.
        reason: String,
    },
    /// Two planned edits overlap; a bug in a transform, reported instead of producing bad code.
    OverlappingEdits {
        /// Byte offset where the overlap starts.
        offset: usize,
    },
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidUtf8 { offset } => {
                write!(f, "source is not valid UTF-8 (first bad byte at offset {offset})")
            }
            Self::NeedsDecoding { encoding } => write!(
                f,
                "source declares encoding {encoding:?}; decode it and pass text"
            ),
            Self::Parse {
                message,
                line,
                column,
            } => write!(f, "cannot parse source at line {line}, column {column}: {message}"),
            Self::BadGlob { pattern, reason } => write!(f, "bad glob '{pattern}': {reason}"),
            Self::BadCallName { entry, reason } => {
                write!(f, "invalid call name '{entry}': {reason}")
            }
            Self::BlacklistAndWhitelist => {
                write!(f, "call blacklist and whitelist can not both be used at once")
            }
            Self::FunctionNotFound { qualname, line } => write!(
                f,
                "no function {qualname:?} defined at line {line} in the source (was the file edited after it was imported?)"
            ),
            Self::BadInjectedName { name } => write!(
                f,
                "injected name {name:?} must be an identifier that starts and ends with '__'"
            ),
            Self::UnknownTransform { name, known } => {
                write!(f, "unknown transform {name:?} (registered: {known})")
            }
            Self::BadOption {
                transform,
                option,
                reason,
            } => write!(f, "transform {transform:?}: option {option:?}: {reason}"),
            Self::Code {
                message,
                line,
                column,
            } => write!(f, "{message} (line {line}, column {column})"),
            Self::Unsupported { what, reason } => write!(f, "cannot rewrite {what}: {reason}"),
            Self::TooDeep { what, line } => {
                write!(f, "cannot rewrite line {line}: {what}")
            }
            Self::Internal { reason } => write!(f, "internal error: {reason}"),
            Self::OverlappingEdits { offset } => {
                write!(f, "internal error: overlapping edits at byte offset {offset}")
            }
        }
    }
}

impl std::error::Error for EngineError {}
