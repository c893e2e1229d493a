//! `asconstants`: names frozen as constants in a selected function (nested `def`, `class`,
//! lambda and comprehension bodies included). The engine makes no edit: it checks that no
//! code in scope binds or deletes a frozen name, and the caller replaces the loads of those
//! names in the compiled code by constants (a load is a load whatever the source says, so
//! there is nothing to change in the text).
//!
//! Errors, raised by the caller as `SyntaxError` at the position given, in source order:
//! - `can't assign to constant name 'a'`: an assignment target (plain, augmented, annotated —
//!   an annotation alone makes the name local, so its loads could not be constants —, `for`,
//!   `with ... as`, `except ... as`, walrus, comprehension), an import binding the name, a
//!   nested `def`/`class` (or type alias or type parameter) of that name, a `match` capture;
//! - `can't delete constant name 'a'`: `del a`;
//! - `argument names overlap with constant names: {'a'}`: a nested function's or lambda's
//!   parameters (the selected function's own are checked by the caller, which knows them
//!   without a position, as codetransformer reported them).
//!
//! `global a` and `nonlocal a` bind nothing by themselves and are accepted.
//!
//! Options: `names` (the frozen names, required).

use std::collections::BTreeSet;
use std::sync::Arc;

use ruff_python_ast::{Expr, ExprContext, Identifier, Parameters, Pattern, Stmt, TypeParams};
use ruff_text_size::Ranged;

use crate::transform::{BodyCx, Descend, Registered, Transform};
use crate::EngineError;

/// See the module's documentation.
#[derive(Debug)]
pub(crate) struct AsConstants {
    names: BTreeSet<String>,
}

pub(crate) const REGISTERED: Registered = Registered {
    name: "asconstants",
    summary: "check that names frozen as constants are never bound (loads become constants)",
    build: |o| {
        Ok(Arc::new(AsConstants {
            names: o.list("names")?.into_iter().collect(),
        }))
    },
};

impl AsConstants {
    fn frozen(&self, name: &str) -> bool {
        self.names.contains(name)
    }

    fn assign(&self, cx: &BodyCx<'_>, name: &Identifier) -> Result<(), EngineError> {
        if self.frozen(name.as_str()) {
            return Err(cx.error_at(name, format!("can't assign to constant name '{name}'")));
        }
        Ok(())
    }

    /// The `argument names overlap` error for `parameters`, reported at `at`.
    fn parameters(
        &self,
        cx: &BodyCx<'_>,
        parameters: &Parameters,
        at: &impl Ranged,
    ) -> Result<(), EngineError> {
        let overlap: BTreeSet<&str> = parameters
            .iter()
            .map(|p| p.as_parameter().name.as_str())
            .filter(|n| self.frozen(n))
            .collect();
        if overlap.is_empty() {
            return Ok(());
        }
        let listed: Vec<String> = overlap.iter().map(|n| format!("'{n}'")).collect();
        Err(cx.error_at(
            at,
            format!(
                "argument names overlap with constant names: {{{}}}",
                listed.join(", ")
            ),
        ))
    }

    fn type_params(&self, cx: &BodyCx<'_>, params: Option<&TypeParams>) -> Result<(), EngineError> {
        for p in params.map(|p| p.type_params.as_slice()).unwrap_or_default() {
            self.assign(cx, p.name())?;
        }
        Ok(())
    }

    /// Capture names of a `case` pattern.
    fn pattern(&self, cx: &BodyCx<'_>, pattern: &Pattern) -> Result<(), EngineError> {
        match pattern {
            Pattern::MatchAs(p) => {
                if let Some(inner) = &p.pattern {
                    self.pattern(cx, inner)?;
                }
                if let Some(name) = &p.name {
                    self.assign(cx, name)?;
                }
            }
            Pattern::MatchStar(p) => {
                if let Some(name) = &p.name {
                    self.assign(cx, name)?;
                }
            }
            Pattern::MatchMapping(p) => {
                for inner in &p.patterns {
                    self.pattern(cx, inner)?;
                }
                if let Some(rest) = &p.rest {
                    self.assign(cx, rest)?;
                }
            }
            Pattern::MatchSequence(p) => {
                for inner in &p.patterns {
                    self.pattern(cx, inner)?;
                }
            }
            Pattern::MatchOr(p) => {
                for inner in &p.patterns {
                    self.pattern(cx, inner)?;
                }
            }
            Pattern::MatchClass(p) => {
                for inner in &p.arguments.patterns {
                    self.pattern(cx, inner)?;
                }
                for keyword in &p.arguments.keywords {
                    self.pattern(cx, &keyword.pattern)?;
                }
            }
            Pattern::MatchValue(_) | Pattern::MatchSingleton(_) => {}
        }
        Ok(())
    }
}

impl Transform for AsConstants {
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
        !self.names.is_empty()
    }

    fn stmt(&self, cx: &mut BodyCx<'_>, stmt: &Stmt) -> Result<Descend, EngineError> {
        match stmt {
            Stmt::FunctionDef(def) => {
                self.assign(cx, &def.name)?;
                self.type_params(cx, def.type_params.as_deref())?;
                self.parameters(cx, &def.parameters, &def.name)?;
            }
            Stmt::ClassDef(class) => {
                self.assign(cx, &class.name)?;
                self.type_params(cx, class.type_params.as_deref())?;
            }
            Stmt::TypeAlias(alias) => {
                // The alias's name is a `Store` expression: the expression hook checks it.
                self.type_params(cx, alias.type_params.as_deref())?;
            }
            Stmt::Import(import) => {
                for alias in &import.names {
                    match &alias.asname {
                        Some(asname) => self.assign(cx, asname)?,
                        // `import a.b` binds `a`.
                        None => {
                            let first = alias.name.as_str().split('.').next().unwrap_or_default();
                            if self.frozen(first) {
                                return Err(cx.error_at(
                                    &alias.name,
                                    format!("can't assign to constant name '{first}'"),
                                ));
                            }
                        }
                    }
                }
            }
            Stmt::ImportFrom(import) => {
                for alias in &import.names {
                    self.assign(cx, alias.asname.as_ref().unwrap_or(&alias.name))?;
                }
            }
            Stmt::Try(try_stmt) => {
                for handler in &try_stmt.handlers {
                    let ruff_python_ast::ExceptHandler::ExceptHandler(h) = handler;
                    if let Some(name) = &h.name {
                        self.assign(cx, name)?;
                    }
                }
            }
            Stmt::Match(m) => {
                for case in &m.cases {
                    self.pattern(cx, &case.pattern)?;
                }
            }
            _ => {}
        }
        Ok(Descend::Children)
    }

    fn expr(&self, cx: &mut BodyCx<'_>, expr: &Expr) -> Result<Descend, EngineError> {
        match expr {
            Expr::Name(name) if self.frozen(name.id.as_str()) => match name.ctx {
                ExprContext::Store => {
                    Err(cx.error_at(name, format!("can't assign to constant name '{}'", name.id)))
                }
                ExprContext::Del => {
                    Err(cx.error_at(name, format!("can't delete constant name '{}'", name.id)))
                }
                ExprContext::Load | ExprContext::Invalid => Ok(Descend::Children),
            },
            Expr::Lambda(lambda) => {
                if let Some(parameters) = &lambda.parameters {
                    self.parameters(cx, parameters, lambda)?;
                }
                Ok(Descend::Children)
            }
            _ => Ok(Descend::Children),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::plan::{CallFilter, FunctionSelector, Plan, QualnameGlobs, Rule};
    use crate::transform::{OptionValue, Options};
    use crate::{rewrite, EngineError};

    /// Rewrites `source` with `asconstants` freezing `a` in function `f`.
    fn check(source: &str) -> Result<(), EngineError> {
        let mut options = Options::new();
        options.insert("names".into(), OptionValue::List(vec!["a".into()]));
        let globs = QualnameGlobs::new(&["f"]).expect("valid glob");
        let rule = Rule::new(
            "asconstants",
            &options,
            FunctionSelector::Globs(globs),
            CallFilter::default(),
        )
        .expect("valid rule");
        let plan = Plan {
            rules: vec![rule],
            ..Plan::default()
        };
        let result = rewrite(source, &plan)?;
        assert_eq!(result.source, source, "asconstants edits nothing");
        Ok(())
    }

    /// The positioned error, or `None` for any other outcome.
    fn error(source: &str) -> Option<(String, usize, usize)> {
        match check(source) {
            Err(EngineError::Code {
                message,
                line,
                column,
            }) => Some((message, line, column)),
            _ => None,
        }
    }

    #[test]
    fn bindings_are_errors_at_the_name() {
        let assign = "can't assign to constant name 'a'".to_owned();
        for (source, line, column) in [
            ("def f():\n    x = a = 1\n", 2, 8),
            ("def f():\n    for (b, a) in []: pass\n", 2, 12),
            ("def f():\n    import a.b\n", 2, 11),
            ("def f():\n    from m import b as a\n", 2, 23),
            ("def f():\n    try: pass\n    except E as a: pass\n", 3, 16),
            ("def f():\n    match x:\n        case {**a}: pass\n", 3, 16),
            ("def f():\n    class C:\n        def a(self): pass\n", 3, 12),
            ("def f():\n    [b for b in [(a := 1)]]\n", 2, 18),
        ] {
            assert_eq!(
                error(source),
                Some((assign.clone(), line, column)),
                "{source:?}"
            );
        }
        assert_eq!(
            error("def f():\n    del b, a\n"),
            Some(("can't delete constant name 'a'".to_owned(), 2, 11))
        );
        let overlap = "argument names overlap with constant names: {'a'}".to_owned();
        assert_eq!(
            error("def f():\n    g = lambda *a: 0\n"),
            Some((overlap.clone(), 2, 8))
        );
        assert_eq!(
            error("def f():\n    def g(b, **a): pass\n"),
            Some((overlap, 2, 8))
        );
    }

    #[test]
    fn loads_declarations_and_other_functions_are_fine() {
        for source in [
            "def f():\n    global a\n    return a + a.b\n",
            "def f():\n    return [a for b in a]\n",
            "def f():\n    match x:\n        case a.b: pass\n",
            "def g():\n    a = 1\n\ndef f():\n    return a\n",
            "def f():\n    a.b = 1\n    a[0] = 2\n    del a.c\n",
        ] {
            assert_eq!(check(source), Ok(()), "{source:?}");
        }
    }
}
