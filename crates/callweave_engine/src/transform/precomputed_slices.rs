//! `precomputed_slices`: codetransformer's `precomputed_slices()`.
//!
//! A slice whose bounds are all constants (`a[1:5]`, `a[::2]`, `a[-3:]`) becomes a constant
//! slot; the caller builds the `slice` object once from the slice's source text and the
//! compiled code loads it as one constant. Slices with any other bound are untouched.

use std::sync::Arc;

use ruff_python_ast::Expr;

use super::displays::is_constant;
use super::{BodyCx, Descend, Registered, Transform};
use crate::EngineError;

/// Constant slices become one precomputed `slice` constant.
#[derive(Debug)]
pub(crate) struct PrecomputedSlices;

pub(crate) const REGISTERED: Registered = Registered {
    name: "precomputed_slices",
    summary: "slices with constant bounds load as one precomputed slice constant",
    build: |_| Ok(Arc::new(PrecomputedSlices)),
};

impl Transform for PrecomputedSlices {
    fn name(&self) -> &'static str {
        REGISTERED.name
    }

    fn injected_names(&self) -> Vec<&str> {
        Vec::new()
    }

    fn includes_nested(&self) -> bool {
        true
    }

    fn visits_body(&self) -> bool {
        true
    }

    fn expr(&self, cx: &mut BodyCx<'_>, expr: &Expr) -> Result<Descend, EngineError> {
        let Expr::Slice(s) = expr else {
            return Ok(Descend::Children);
        };
        let parts = [&s.lower, &s.upper, &s.step];
        if parts.iter().all(|p| p.as_deref().is_none_or(is_constant)) {
            cx.replace_with_slot(s);
            return Ok(Descend::Skip);
        }
        Ok(Descend::Children)
    }
}
