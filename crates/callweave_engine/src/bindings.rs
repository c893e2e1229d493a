//! Names a scope binds, so that `ignore_builtins` leaves a rebound builtin (`open = ...`,
//! `def len(...)`, `from x import print`) wrapped like any other call.
//!
//! The collection is deliberately generous: any binding anywhere in the scope (comprehension
//! targets included) counts, since wrapping a builtin is harmless while skipping a user's
//! function would lose data.

use std::collections::HashSet;

use ruff_python_ast::visitor::source_order::{walk_expr, walk_stmt, SourceOrderVisitor};
use ruff_python_ast::{Expr, ExprContext, Parameters, Pattern, Stmt};

/// In a bound-name set, stands for every name: the scope has a `from x import *`, which may
/// bind any name (a builtin's included).
pub(crate) const ANY_NAME: &str = "*";

/// Names bound in the module's own scope: its direct bindings, a star import as
/// [`ANY_NAME`], and every name declared `global` in any function or class of the module (an
/// assignment there rebinds the module's name).
pub(crate) fn module_bound_names(body: &[Stmt]) -> HashSet<String> {
    let mut names = bound_names(body, None);
    let mut globals = GlobalNames::default();
    for stmt in body {
        globals.visit_stmt(stmt);
    }
    names.extend(globals.names);
    names
}

/// Whether `bound` (a scope's bound names) binds `name`.
pub(crate) fn binds(bound: &HashSet<String>, name: &str) -> bool {
    bound.contains(name) || bound.contains(ANY_NAME)
}

/// Names declared `global` anywhere (statements only: expressions hold no statement).
#[derive(Default)]
struct GlobalNames {
    names: HashSet<String>,
}

impl<'a> SourceOrderVisitor<'a> for GlobalNames {
    fn visit_stmt(&mut self, stmt: &'a Stmt) {
        if let Stmt::Global(g) = stmt {
            self.names.extend(g.names.iter().map(|n| n.id.to_string()));
        }
        walk_stmt(self, stmt);
    }

    fn visit_expr(&mut self, _expr: &'a Expr) {}
}

/// Names bound directly in a scope whose statements are `body` and parameters `params`.
/// Names declared `global` or `nonlocal` count too (they rebind an outer scope's name).
pub(crate) fn bound_names(body: &[Stmt], params: Option<&Parameters>) -> HashSet<String> {
    let mut c = Collector::default();
    if let Some(p) = params {
        c.parameters(p);
    }
    for stmt in body {
        c.visit_stmt(stmt);
    }
    c.names
}

/// Names bound by a lambda's parameters and any walrus in its body.
pub(crate) fn lambda_names(params: Option<&Parameters>, body: &Expr) -> HashSet<String> {
    let mut c = Collector::default();
    if let Some(p) = params {
        c.parameters(p);
    }
    c.visit_expr(body);
    c.names
}

/// Names bound by an import in the module's own scope (not in functions or classes): CPython
/// does not compile `name.attr(...)` on those as a method call.
pub(crate) fn module_imports(body: &[Stmt]) -> HashSet<String> {
    let mut out = HashSet::new();
    collect_imports(body, &mut out);
    out
}

fn collect_imports(body: &[Stmt], out: &mut HashSet<String>) {
    for stmt in body {
        match stmt {
            Stmt::Import(i) => {
                for alias in &i.names {
                    let bound = match &alias.asname {
                        Some(a) => a.id.as_str(),
                        None => alias.name.id.split('.').next().unwrap_or_default(),
                    };
                    out.insert(bound.to_owned());
                }
            }
            Stmt::ImportFrom(i) => {
                for alias in &i.names {
                    out.insert(alias.asname.as_ref().unwrap_or(&alias.name).id.to_string());
                }
            }
            Stmt::If(s) => {
                collect_imports(&s.body, out);
                for clause in &s.elif_else_clauses {
                    collect_imports(&clause.body, out);
                }
            }
            Stmt::Try(t) => {
                collect_imports(&t.body, out);
                for h in &t.handlers {
                    if let Some(h) = h.as_except_handler() {
                        collect_imports(&h.body, out);
                    }
                }
                collect_imports(&t.orelse, out);
                collect_imports(&t.finalbody, out);
            }
            Stmt::For(s) => {
                collect_imports(&s.body, out);
                collect_imports(&s.orelse, out);
            }
            Stmt::While(s) => {
                collect_imports(&s.body, out);
                collect_imports(&s.orelse, out);
            }
            Stmt::With(s) => collect_imports(&s.body, out),
            Stmt::Match(m) => {
                for case in &m.cases {
                    collect_imports(&case.body, out);
                }
            }
            _ => {}
        }
    }
}

#[derive(Default)]
struct Collector {
    names: HashSet<String>,
}

impl Collector {
    fn parameters(&mut self, p: &Parameters) {
        for param in p.iter() {
            self.names.insert(param.name().id.to_string());
        }
    }
}

impl<'a> SourceOrderVisitor<'a> for Collector {
    fn visit_stmt(&mut self, stmt: &'a Stmt) {
        match stmt {
            Stmt::FunctionDef(f) => {
                // The body is another scope; decorators and defaults are evaluated here.
                self.names.insert(f.name.id.to_string());
                for d in &f.decorator_list {
                    self.visit_expr(&d.expression);
                }
                for p in f.parameters.iter_non_variadic_params() {
                    if let Some(default) = &p.default {
                        self.visit_expr(default);
                    }
                }
            }
            Stmt::ClassDef(c) => {
                self.names.insert(c.name.id.to_string());
                for d in &c.decorator_list {
                    self.visit_expr(&d.expression);
                }
                if let Some(args) = &c.arguments {
                    self.visit_arguments(args);
                }
            }
            Stmt::Import(i) => {
                for alias in &i.names {
                    let bound = match &alias.asname {
                        Some(a) => a.id.as_str(),
                        None => alias.name.id.split('.').next().unwrap_or_default(),
                    };
                    self.names.insert(bound.to_owned());
                }
            }
            Stmt::ImportFrom(i) => {
                for alias in &i.names {
                    // `from x import *` has one alias named `*`: that is ANY_NAME.
                    let bound = alias.asname.as_ref().unwrap_or(&alias.name);
                    self.names.insert(bound.id.to_string());
                }
            }
            Stmt::Global(g) => self.names.extend(g.names.iter().map(|n| n.id.to_string())),
            Stmt::Nonlocal(n) => self.names.extend(n.names.iter().map(|n| n.id.to_string())),
            Stmt::Try(t) => {
                for handler in &t.handlers {
                    if let Some(h) = handler.as_except_handler() {
                        if let Some(name) = &h.name {
                            self.names.insert(name.id.to_string());
                        }
                    }
                }
                walk_stmt(self, stmt);
            }
            _ => walk_stmt(self, stmt),
        }
    }

    fn visit_expr(&mut self, expr: &'a Expr) {
        match expr {
            Expr::Name(n) if matches!(n.ctx, ExprContext::Store | ExprContext::Del) => {
                self.names.insert(n.id.to_string());
            }
            // A lambda's body is its own scope.
            Expr::Lambda(_) => {}
            _ => walk_expr(self, expr),
        }
    }

    fn visit_pattern(&mut self, pattern: &'a Pattern) {
        match pattern {
            Pattern::MatchAs(p) => {
                if let Some(n) = &p.name {
                    self.names.insert(n.id.to_string());
                }
            }
            Pattern::MatchStar(p) => {
                if let Some(n) = &p.name {
                    self.names.insert(n.id.to_string());
                }
            }
            Pattern::MatchMapping(p) => {
                if let Some(n) = &p.rest {
                    self.names.insert(n.id.to_string());
                }
            }
            _ => {}
        }
        ruff_python_ast::visitor::source_order::walk_pattern(self, pattern);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ruff_python_parser::parse_module;

    fn module_names(src: &str) -> HashSet<String> {
        let parsed = parse_module(src).expect("parses");
        module_bound_names(&parsed.syntax().body)
    }

    #[test]
    fn star_import_may_bind_any_name() {
        let names = module_names("from mylib import *\n");
        assert!(binds(&names, "open"));
        assert!(!binds(&module_names("from mylib import sorted\n"), "open"));
    }

    #[test]
    fn global_in_a_function_binds_the_module_name() {
        let names = module_names(
            "def setup():\n    global len\n    len = lambda x: 42\n\
             class C:\n    def m(self):\n        def inner():\n            global abs\n",
        );
        assert!(binds(&names, "len"));
        assert!(binds(&names, "abs"));
        assert!(binds(&names, "setup"));
        assert!(!binds(&names, "print"));
    }
}
