//! callweave's rewrite engine: pure Rust, no Python.
//!
//! Input: source text and a [`Plan`] (rules: function globs → transform + options + call
//! filter, see [`transform_names`]). Output: a
//! [`Rewrite`]: the new source, which is the original with small fragments inserted or replaced
//! (never regenerated), a [`PositionMap`] back to the original, a site table and the list of
//! rewritten functions. [`linetable`] re-encodes CPython code objects' location tables through
//! the map so compiled code carries the original positions.
//!
//! Pipeline: [`source`] (decoding) → parse (ruff) → `depth` (nesting bounds) → `collect` (qualnames, selection, calls in
//! scope) → `transform::*` (edits) → [`posmap`] (apply, map).

mod bindings;
pub mod callname;
mod collect;
mod depth;
mod error;
pub mod exits;
pub mod linetable;
pub mod plan;
pub mod posmap;
mod rewrite;
pub mod source;
mod transform;

pub use error::EngineError;
pub use plan::{
    CallFilter, FunctionSelector, Plan, QualnameGlobs, Rule, DEFAULT_BIND, DEFAULT_CONSTANTS,
};
pub use posmap::PositionMap;
pub use rewrite::{rewrite, Function, Profiled, Rewrite, Site};
pub use transform::{transform_names, transforms, ConstantSlot, OptionValue, Options};
