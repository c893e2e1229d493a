//! `islice`: codetransformer's `islice_literals`.
//!
//! A subscript written with a slice and read (`m[lo:hi:st]`) becomes `SLOT(m, lo, hi, st)`,
//! missing parts written `None`; the slot stands for `itertools.islice`. Only slices written
//! in the subscript are seen: `m[k]` with a slice object `k` is an ordinary subscript (the
//! bytecode transformer tested every subscript's key at run time). Stores and deletions
//! (`m[1:2] = x`) are untouched.

use std::sync::Arc;

use ruff_python_ast::token::TokenKind;
use ruff_python_ast::{Expr, ExprContext};
use ruff_text_size::Ranged;

use super::displays::slice_arguments;
use super::{BodyCx, Descend, Registered, Transform};
use crate::posmap::{Anchor, Edit};
use crate::EngineError;

/// Slice subscripts become `itertools.islice` calls.
#[derive(Debug)]
pub(crate) struct Islice;

pub(crate) const REGISTERED: Registered = Registered {
    name: "islice",
    summary: "m[lo:hi:st] becomes itertools.islice(m, lo, hi, st)",
    build: |_| Ok(Arc::new(Islice)),
};

impl Transform for Islice {
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
        let Expr::Subscript(sub) = expr else {
            return Ok(Descend::Children);
        };
        let Expr::Slice(slice) = sub.slice.as_ref() else {
            return Ok(Descend::Children);
        };
        if !matches!(sub.ctx, ExprContext::Load) {
            return Ok(Descend::Children);
        }
        let (start, end) = (sub.start().to_usize(), sub.end().to_usize());
        let value_end = sub.value.end().to_usize();
        let tokens = cx.cx.tokens;
        let idx = tokens.partition_point(|t| t.start().to_usize() < value_end);
        let Some(open) = tokens
            .get(idx..)
            .and_then(|t| t.iter().find(|t| t.kind() == TokenKind::Lsqb))
            .map(|t| t.start().to_usize())
        else {
            return Ok(Descend::Children);
        };
        let close = end.saturating_sub(1);
        if cx.cx.source.as_bytes().get(close) != Some(&b']') || open >= close {
            return Ok(Descend::Children);
        }
        let name = cx.slot(sub.range());
        let anchor = Anchor::new(start, end, false);
        cx.edit(Edit::insert(start, format!("{name}("), anchor));
        cx.edit(Edit::replace(open, open + 1, ", ".to_owned(), anchor));
        slice_arguments(cx, slice, String::new(), "");
        cx.edit(Edit::replace(close, end, ")".to_owned(), anchor));
        Ok(Descend::Children)
    }
}
