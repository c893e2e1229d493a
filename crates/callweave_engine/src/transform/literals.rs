//! `literals`: codetransformer's `overloaded_strs`, `overloaded_bytes`, `overloaded_ints`,
//! `overloaded_floats` and `overloaded_complexes`.
//!
//! Each literal of the rule's type in a selected function (nested functions, classes,
//! lambdas and comprehensions included) becomes a constant slot; the caller computes the
//! slot's value from the literal's exact source text (`xform(literal)`, or `Decimal(text)`)
//! once, and the compiled code loads it as a constant. With `fresh`, the literal stays and is
//! called through the slot instead, `SLOT(literal)`, the slot standing for the callable: a
//! mutable result (`bytearray_literals`) is then built again at each evaluation.
//!
//! Literals are what the source says: implicitly concatenated strings (`"a" "b"`) are one
//! literal; `-1` is `-(1)`, so the `1` is transformed; `1 + 2j` is two literals; `True` and
//! `False` are not ints; f-string fragments are not strings (expressions inside f-string
//! fields are visited). Docstrings, annotations and match patterns are never visited.
//!
//! Options: `type` (`str`, `bytes`, `int`, `float` or `complex`; required) and `fresh`
//! (default false).

use std::sync::Arc;

use ruff_python_ast::{Expr, Number};
use ruff_text_size::Ranged;

use super::{BodyCx, Descend, OptionReader, Registered, Transform};
use crate::EngineError;

/// The literal type a rule overloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Str,
    Bytes,
    Int,
    Float,
    Complex,
}

impl Kind {
    fn parse(o: &OptionReader<'_>, name: &str) -> Result<Self, EngineError> {
        Ok(match name {
            "str" => Self::Str,
            "bytes" => Self::Bytes,
            "int" => Self::Int,
            "float" => Self::Float,
            "complex" => Self::Complex,
            other => {
                return Err(o.error(
                    "type",
                    format!("{other:?} is not one of str, bytes, int, float, complex"),
                ))
            }
        })
    }

    fn matches(self, expr: &Expr) -> bool {
        match (self, expr) {
            (Self::Str, Expr::StringLiteral(_)) | (Self::Bytes, Expr::BytesLiteral(_)) => true,
            (_, Expr::NumberLiteral(n)) => matches!(
                (self, &n.value),
                (Self::Int, Number::Int(_))
                    | (Self::Float, Number::Float(_))
                    | (Self::Complex, Number::Complex { .. })
            ),
            _ => false,
        }
    }
}

/// Literal overloading for one literal type.
#[derive(Debug)]
pub(crate) struct Literals {
    kind: Kind,
    fresh: bool,
}

pub(crate) const REGISTERED: Registered = Registered {
    name: "literals",
    summary: "each literal of one type becomes a constant computed once from its source text",
    build: |o| {
        let kind = o.required_str("type")?;
        let kind = Kind::parse(o, &kind)?;
        let fresh = o.bool("fresh", false)?;
        Ok(Arc::new(Literals { kind, fresh }))
    },
};

impl Transform for Literals {
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
        if !self.kind.matches(expr) {
            return Ok(Descend::Children);
        }
        if self.fresh {
            let name = cx.slot(expr.range());
            cx.wrap(expr, format!("{name}("), ")".to_owned());
        } else {
            cx.replace_with_slot(expr);
        }
        Ok(Descend::Skip)
    }
}
