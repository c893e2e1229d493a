//! `interpolated_strings`: string literals of a selected function (nested `def`, `class`,
//! lambda and comprehension bodies included) formatted from the locals where they are
//! evaluated: `b"{a} {b!r}"` → `K.format(**LOCALS())`, `K` being a constant slot whose value
//! the caller decodes from the literal's text (UTF-8, as codetransformer did) and `LOCALS` the
//! injected name of `builtins.locals` (so that a user's `locals` cannot change it).
//!
//! - Bytes literals (option `bytes`, default true) always become `str`: one without braces is
//!   the slot alone (the decoded text; `.format` would return it unchanged).
//! - `str` literals (option `str`, default false) are rewritten only when they contain a brace:
//!   formatting any other string returns it unchanged.
//! - Never rewritten: docstrings and other literal expression statements (CPython drops them,
//!   so they were never evaluated), f-strings (and literals concatenated with one), `case`
//!   patterns (a name there would be a capture), annotations, `{expr=}` fields.
//!
//! Options: `locals` (injected global name of `builtins.locals`, required), `bytes`, `str`.

use std::sync::Arc;

use ruff_python_ast::{Expr, Stmt};
use ruff_text_size::Ranged;

use crate::posmap::{Anchor, Edit};
use crate::transform::{BodyCx, Descend, Registered, Transform};
use crate::EngineError;

/// See the module's documentation.
#[derive(Debug)]
pub(crate) struct InterpolatedStrings {
    locals: String,
    bytes: bool,
    str: bool,
}

pub(crate) const REGISTERED: Registered = Registered {
    name: "interpolated_strings",
    summary: "string literals formatted from the locals: b\"{a}\" -> K.format(**LOCALS())",
    build: |o| {
        Ok(Arc::new(InterpolatedStrings {
            locals: o.required_str("locals")?,
            bytes: o.bool("bytes", true)?,
            str: o.bool("str", false)?,
        }))
    },
};

impl InterpolatedStrings {
    /// Replaces `literal` by a slot, formatted from the locals when `format` is set.
    fn rewrite(&self, cx: &mut BodyCx<'_>, literal: &Expr, format: bool) -> Descend {
        if !format {
            cx.replace_with_slot(literal);
            return Descend::Skip;
        }
        let slot = cx.slot(literal.range());
        let (start, end) = (literal.start().to_usize(), literal.end().to_usize());
        cx.edit(Edit::replace(
            start,
            end,
            format!("{slot}.format(**{}())", self.locals),
            Anchor::new(start, end, false),
        ));
        Descend::Skip
    }
}

impl Transform for InterpolatedStrings {
    fn name(&self) -> &'static str {
        REGISTERED.name
    }

    fn injected_names(&self) -> Vec<&str> {
        vec![self.locals.as_str()]
    }

    fn includes_nested(&self) -> bool {
        true
    }

    fn visits_body(&self) -> bool {
        self.bytes || self.str
    }

    fn stmt(&self, _cx: &mut BodyCx<'_>, stmt: &Stmt) -> Result<Descend, EngineError> {
        // A literal alone as a statement is never evaluated by CPython.
        Ok(match stmt {
            Stmt::Expr(e) if matches!(*e.value, Expr::StringLiteral(_) | Expr::BytesLiteral(_)) => {
                Descend::Skip
            }
            _ => Descend::Children,
        })
    }

    fn expr(&self, cx: &mut BodyCx<'_>, expr: &Expr) -> Result<Descend, EngineError> {
        Ok(match expr {
            Expr::BytesLiteral(b) if self.bytes => {
                let braces = b.value.bytes().any(|c| c == b'{' || c == b'}');
                self.rewrite(cx, expr, braces)
            }
            Expr::StringLiteral(s) if self.str && s.value.to_str().contains(['{', '}']) => {
                self.rewrite(cx, expr, true)
            }
            _ => Descend::Children,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::plan::{CallFilter, FunctionSelector, Plan, QualnameGlobs, Rule};
    use crate::rewrite;
    use crate::transform::{OptionValue, Options};

    fn rewritten(source: &str) -> String {
        let mut options = Options::new();
        options.insert("locals".into(), OptionValue::Str("__l__".into()));
        options.insert("str".into(), OptionValue::Bool(true));
        let globs = QualnameGlobs::new::<&str>(&[]).expect("valid");
        let rule = Rule::new(
            "interpolated_strings",
            &options,
            FunctionSelector::Globs(globs),
            CallFilter::default(),
        )
        .expect("valid rule");
        let plan = Plan {
            rules: vec![rule],
            ..Plan::default()
        };
        rewrite(source, &plan).expect("rewrites").source
    }

    #[test]
    fn patterns_statements_docstrings_and_braceless_str_are_left_alone() {
        let source = "def f(x):\n    \"\"\"{doc}\"\"\"\n    \"{statement}\"\n    match x:\n        case \"{a}\" | b\"{b}\":\n            return \"plain\", \"{x}\"\n";
        let expected = "def f(x):\n    \"\"\"{doc}\"\"\"\n    \"{statement}\"\n    match x:\n        case \"{a}\" | b\"{b}\":\n            return \"plain\", __callweave_k_0__.format(**__l__())\n";
        assert_eq!(rewritten(source), expected);
    }

    #[test]
    fn inserted_names_never_fuse_with_keywords() {
        assert_eq!(
            rewritten("def f():\n    return b\"x\"if 1 else\"{y}\"\n"),
            "def f():\n    return __callweave_k_0__ if 1 else __callweave_k_1__.format(**__l__())\n"
        );
    }
}
