//! `displays`: codetransformer's `overloaded_lists`, `overloaded_tuples`, `overloaded_sets`,
//! `overloaded_dicts` and `overloaded_slices`.
//!
//! Each display (and comprehension) of the rule's kind in a selected function (nested bodies
//! included) becomes `SLOT(display)`: the slot stands for the caller's `astype`, so the code
//! builds what it always built, in the same order, then hands it to `astype`. Only displays
//! that are evaluated are touched (assignment targets are not), and a tuple holding a slice
//! (`a[1:2, 3]`) is left alone: a slice cannot be written inside a call.
//!
//! Slices (`a[lo:hi:st]`) become `a[SLOT(lo, hi, st)]`, missing parts written `None`; the slot
//! stands for a callable building `astype(slice(lo, hi, st))`.
//!
//! Option: `kind` (`list`, `tuple`, `set`, `dict` or `slice`; required).

use std::sync::Arc;

use ruff_python_ast::token::TokenKind;
use ruff_python_ast::{Expr, ExprContext, ExprSlice};
use ruff_text_size::Ranged;

use super::{BodyCx, Descend, OptionReader, Registered, Transform};
use crate::posmap::{Anchor, Edit};
use crate::EngineError;

/// The display kind a rule overloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    List,
    Tuple,
    Set,
    Dict,
    Slice,
}

impl Kind {
    fn parse(o: &OptionReader<'_>, name: &str) -> Result<Self, EngineError> {
        Ok(match name {
            "list" => Self::List,
            "tuple" => Self::Tuple,
            "set" => Self::Set,
            "dict" => Self::Dict,
            "slice" => Self::Slice,
            other => {
                return Err(o.error(
                    "kind",
                    format!("{other:?} is not one of list, tuple, set, dict, slice"),
                ))
            }
        })
    }
}

/// Display overloading for one display kind.
#[derive(Debug)]
pub(crate) struct Displays {
    kind: Kind,
}

pub(crate) const REGISTERED: Registered = Registered {
    name: "displays",
    summary: "displays and comprehensions of one kind build astype(what they built)",
    build: |o| {
        let kind = o.required_str("kind")?;
        let kind = Kind::parse(o, &kind)?;
        Ok(Arc::new(Displays { kind }))
    },
};

fn loads(ctx: ExprContext) -> bool {
    matches!(ctx, ExprContext::Load)
}

impl Transform for Displays {
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
        let (open, close) = match (self.kind, expr) {
            (Kind::List, Expr::List(l)) if loads(l.ctx) => ("(", ")"),
            (Kind::List, Expr::ListComp(_))
            | (Kind::Set, Expr::Set(_) | Expr::SetComp(_))
            | (Kind::Dict, Expr::Dict(_) | Expr::DictComp(_)) => ("(", ")"),
            (Kind::Tuple, Expr::Tuple(t))
                if loads(t.ctx) && !t.elts.iter().any(Expr::is_slice_expr) =>
            {
                if t.parenthesized {
                    ("(", ")")
                } else if t.elts.len() == 1 && !cx.text(t).trim_end().ends_with(',') {
                    // `a[*b]`: a one-item tuple without its comma.
                    ("((", ",))")
                } else {
                    ("((", "))")
                }
            }
            (Kind::Slice, Expr::Slice(s)) => {
                let name = cx.slot(s.range());
                slice_arguments(cx, s, format!("{name}("), ")");
                return Ok(Descend::Children);
            }
            _ => return Ok(Descend::Children),
        };
        let name = cx.slot(expr.range());
        cx.wrap(expr, format!("{name}{open}"), close.to_owned());
        Ok(Descend::Children)
    }
}

/// The offset of the first `:` token at or after `from` (the slice's own colons: they follow
/// its parts, whose closing brackets are not colons).
fn colon_at_or_after(cx: &BodyCx<'_>, from: usize, before: usize) -> Option<usize> {
    let tokens = cx.cx.tokens;
    let idx = tokens.partition_point(|t| t.start().to_usize() < from);
    tokens
        .get(idx..)?
        .iter()
        .take_while(|t| t.start().to_usize() < before)
        .find(|t| t.kind() == TokenKind::Colon)
        .map(|t| t.start().to_usize())
}

/// Rewrites the slice `lo:hi:st` as the argument list `{before}lo, hi, st{after}`, missing
/// parts written `None`; the parts keep their original text and positions, the inserted text
/// is located at the slice.
pub(crate) fn slice_arguments(cx: &mut BodyCx<'_>, s: &ExprSlice, before: String, after: &str) {
    let (start, end) = (s.start().to_usize(), s.end().to_usize());
    let anchor = Anchor::new(start, end, false);
    let part_end = |e: &Option<Box<Expr>>| e.as_ref().map(|e| e.end().to_usize());
    let first_from = part_end(&s.lower).unwrap_or(start);
    let Some(c1) = colon_at_or_after(cx, first_from, end) else {
        return;
    };
    let second_from = part_end(&s.upper).unwrap_or(c1 + 1);
    let c2 = colon_at_or_after(cx, second_from, end);
    let none = |part: &Option<Box<Expr>>| if part.is_some() { "" } else { "None" };
    cx.edit(Edit::insert(
        start,
        format!("{before}{}", none(&s.lower)),
        anchor,
    ));
    cx.edit(Edit::replace(
        c1,
        c1 + 1,
        format!(", {}", none(&s.upper)),
        anchor,
    ));
    match c2 {
        Some(c2) => cx.edit(Edit::replace(
            c2,
            c2 + 1,
            format!(", {}", none(&s.step)),
            anchor,
        )),
        None => cx.edit(Edit::insert(end, ", None".to_owned(), anchor)),
    }
    cx.edit(Edit::insert(end, after.to_owned(), anchor));
}

/// Whether `expr` (a slice part) is a constant CPython folds: a literal, or `+`/`-` of a
/// number.
pub(crate) fn is_constant(expr: &Expr) -> bool {
    match expr {
        Expr::NumberLiteral(_)
        | Expr::StringLiteral(_)
        | Expr::BytesLiteral(_)
        | Expr::NoneLiteral(_)
        | Expr::BooleanLiteral(_)
        | Expr::EllipsisLiteral(_) => true,
        Expr::UnaryOp(u) => {
            matches!(
                u.op,
                ruff_python_ast::UnaryOp::USub | ruff_python_ast::UnaryOp::UAdd
            ) && matches!(u.operand.as_ref(), Expr::NumberLiteral(_))
        }
        _ => false,
    }
}
