//! `pattern_matched_exceptions`: every `except EXPR:` clause of a selected function (nested
//! `def`, `class` and lambda bodies included) is tested through a matcher:
//! `except EXPR:` → `except MATCH(EXPR):`.
//!
//! `MATCH` (option `matcher`, an injected global name) is called with the clause's value while
//! CPython evaluates the clause, that is lazily and in order, with the exception being handled
//! in `sys.exc_info()`; it returns what CPython is to match against: the value itself (an
//! exception class or a tuple of them keep their meaning, and a value CPython rejects gets
//! CPython's own `TypeError`), `BaseException` (the clause matches) or `()` (it does not).
//! Everything else — the `as` binding and its deletion, bare `raise`, chaining, tracebacks —
//! is CPython's own, because the `try` statement itself is unchanged.
//!
//! Not rewritten: bare `except:` (nothing to match) and `except*` clauses (CPython splits the
//! exception group by class; a matcher has no way to take part in that split).
//!
//! Edits: the blank between the `except` keyword and the expression becomes ` MATCH(` — an
//! edit strictly before the clause's expression, so that at the expression's own start a call
//! router's prefix (a wrapped `ValueError('x')` is `W(ValueError, 'x')`) stays inside
//! `MATCH(...)`; where the expression follows the keyword with no blank (`except(E)`), the
//! keyword itself is rewritten as `except MATCH(` for the same reason. `)` is inserted after
//! the expression. The inserted text is located at the clause's expression (the keyword's
//! rewrite at the keyword).

use std::sync::Arc;

use ruff_python_ast::{ExceptHandler, Expr, Stmt};
use ruff_text_size::Ranged;

use crate::posmap::{Anchor, Edit};
use crate::transform::{BodyCx, Descend, Registered, Transform};
use crate::EngineError;

/// See the module's documentation. Options: `matcher` (the injected global name of the
/// clause matcher, required).
#[derive(Debug)]
pub(crate) struct PatternMatchedExceptions {
    matcher: String,
}

pub(crate) const REGISTERED: Registered = Registered {
    name: "pattern_matched_exceptions",
    summary: "except clauses go through a matcher: except P: -> except MATCH(P):",
    build: |o| {
        Ok(Arc::new(PatternMatchedExceptions {
            matcher: o.required_str("matcher")?,
        }))
    },
};

const KEYWORD: &str = "except";

impl Transform for PatternMatchedExceptions {
    fn name(&self) -> &'static str {
        REGISTERED.name
    }

    fn injected_names(&self) -> Vec<&str> {
        vec![self.matcher.as_str()]
    }

    fn includes_nested(&self) -> bool {
        true
    }

    fn visits_body(&self) -> bool {
        true
    }

    fn stmt(&self, cx: &mut BodyCx<'_>, stmt: &Stmt) -> Result<Descend, EngineError> {
        let Stmt::Try(try_stmt) = stmt else {
            return Ok(Descend::Children);
        };
        if try_stmt.is_star {
            return Ok(Descend::Children);
        }
        for handler in &try_stmt.handlers {
            let ExceptHandler::ExceptHandler(handler) = handler;
            let Some(pattern) = handler.type_.as_deref() else {
                continue;
            };
            let start = handler.start().to_usize();
            let keyword_end = start + KEYWORD.len();
            // Invariant: a handler's range starts at its keyword.
            if cx.cx.source.get(start..keyword_end) != Some(KEYWORD) {
                return Err(EngineError::Unsupported {
                    what: "an except clause".to_owned(),
                    reason: "its range does not start at the 'except' keyword".to_owned(),
                });
            }
            let (expr_start, expr_end) = (pattern.start().to_usize(), pattern.end().to_usize());
            // `except A, B:` (accepted by newer parsers) is one tuple: keep it one argument.
            let bare_tuple = matches!(pattern, Expr::Tuple(t) if !t.parenthesized);
            let (open, close) = if bare_tuple { ("((", "))") } else { ("(", ")") };
            let anchor = Anchor::new(expr_start, expr_end, false);
            let gap = cx
                .cx
                .source
                .get(keyword_end..expr_start)
                .unwrap_or_default();
            if !gap.is_empty() && gap.bytes().all(|b| b == b' ' || b == b'\t') {
                // `except P`: the blank becomes ` MATCH(`.
                let call = format!(" {}{open}", self.matcher);
                cx.edit(Edit::replace(keyword_end, expr_start, call, anchor));
            } else if !gap.is_empty() {
                // An opening parenthesis or a line continuation before `P`: the opening goes
                // right after the keyword.
                let call = format!(" {}{open}", self.matcher);
                cx.edit(Edit::insert(keyword_end, call, anchor));
            } else {
                // `except(P)`: the keyword itself is rewritten with the opening after it, so the
                // edit starts before the expression (see the module's docs). Its text stands
                // for the keyword: positions starting there keep the clause's start.
                let keyword = Anchor::new(start, keyword_end, false);
                let call = format!("{KEYWORD} {}{open}", self.matcher);
                cx.edit(Edit::replace(start, keyword_end, call, keyword));
            }
            cx.edit(Edit::insert(expr_end, close, anchor));
        }
        Ok(Descend::Children)
    }
}
