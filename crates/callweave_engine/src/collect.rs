//! One pass over the module: qualnames, which rules select which functions, and which calls
//! each rule routes.
//!
//! Scope rules (the rewrite contract): every call in a selected function's body is in scope,
//! lambdas, comprehensions, generator expressions and f-string fields included. Decorators and
//! defaults of a nested `def`, and bases of a nested `class`, run in the enclosing scope. Their
//! bodies belong to the nested function or class: in scope for layers that include nested code
//! (call wrapping), out of scope otherwise (flat profiling) unless selected themselves.
//! Annotations are never rewritten, and neither is anything inside an f-string `{expr=}` field.

use std::collections::HashSet;
use std::sync::Arc;

use ruff_python_ast::token::Tokens;
use ruff_python_ast::visitor::source_order::{
    walk_expr, walk_stmt, SourceOrderVisitor, TraversalSignal,
};
use ruff_python_ast::{AnyNodeRef, Expr, ExprCall, Stmt, StmtFunctionDef};
use ruff_text_size::Ranged;

use crate::bindings;
use crate::callname::{callee_name, CallName};
use crate::depth::Nesting;
use crate::plan::{FunctionSelector, Plan};
use crate::source::LineIndex;

/// A function some rule selected.
#[derive(Debug)]
pub(crate) struct SelectedFunction<'a> {
    pub(crate) def: &'a StmtFunctionDef,
    pub(crate) qualname: Arc<str>,
    /// Indexes of the rules that selected it, in plan order.
    pub(crate) rules: Vec<usize>,
}

/// A call one or more rules route through their layers.
#[derive(Debug)]
pub(crate) struct RoutedCall<'a> {
    pub(crate) call: &'a ExprCall,
    /// Qualname of the innermost `def` or `class` holding the call.
    pub(crate) owner: Arc<str>,
    /// Where its `(rule, selected function)` pairs, innermost layer first, are in
    /// [`Collector::layers`] (never empty).
    layers: std::ops::Range<usize>,
    /// Whether the call is the operand of `await`.
    pub(crate) awaited: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Module,
    Function,
    Class,
    Lambda,
}

/// The deepest bracket level a wrapped call may reach in the new source. CPython refuses more
/// than 200 (`MAXLEVEL`); the margin leaves room for what a tree hook adds.
pub(crate) const BRACKET_BUDGET: usize = 190;

struct Scope {
    kind: Kind,
    /// Qualname prefix for children (`f` followed by [`Scope::locals`], `C`, or empty at module
    /// level). A lambda
    /// scope shares its parent's: a lambda's body is an expression and holds no `def` or
    /// `class`, so the prefix is never read there (building `<lambda>.<locals>` once per level
    /// would cost memory quadratic in the nesting).
    prefix: Arc<str>,
    /// Whether children's qualnames put `.<locals>` after [`Scope::prefix`] (function scopes,
    /// and lambdas in them): the prefix is then the function's own qualname, shared with
    /// [`Scope::owner`] rather than built apart.
    locals: bool,
    /// Qualname of the innermost def/class (for site ownership).
    owner: Arc<str>,
    /// `(rule, selected function)` pairs active for calls directly in this scope.
    active: Vec<(usize, usize)>,
    /// Names bound in this scope, computed only when some active rule ignores builtins.
    bound: Option<HashSet<String>>,
}

pub(crate) struct Collector<'a, 'p> {
    source: &'a str,
    lines: &'p LineIndex,
    plan: &'p Plan,
    needs_bindings: bool,
    needs_names: bool,
    scopes: Vec<Scope>,
    pub(crate) functions: Vec<SelectedFunction<'a>>,
    pub(crate) calls: Vec<RoutedCall<'a>>,
    /// The routed calls' layers, one run per call (see [`RoutedCall::layers`]): one vector
    /// for the whole module rather than one per call.
    layers: Vec<(usize, usize)>,
    /// Start offset of the call that is the operand of the `await` being visited.
    awaited_call: Option<usize>,
    /// Start offset of a `super(...)` call that is the value of an attribute: CPython 3.12+
    /// compiles `super(C, self).name` into one LOAD_SUPER_ATTR, so the call is left alone.
    super_value: Option<usize>,
    /// Bracket depths of the original source, and the tokens they were read from.
    nesting: &'p Nesting,
    tokens: &'p Tokens,
    /// Bracket levels the wrappers decided so far add around the node being visited: each
    /// routed call whose callee holds it adds one (`W(` encloses the callee), and so does a
    /// routed call's lone generator argument (it gets its own parentheses).
    extra: usize,
    /// Calls in scope left unwrapped because their wrapper would pass [`BRACKET_BUDGET`].
    pub(crate) unwrapped_for_depth: usize,
}

impl<'a, 'p> Collector<'a, 'p> {
    pub(crate) fn new(
        source: &'a str,
        lines: &'p LineIndex,
        plan: &'p Plan,
        module_body: &'a [Stmt],
        nesting: &'p Nesting,
        tokens: &'p Tokens,
    ) -> Self {
        let needs_bindings = plan.rules.iter().any(|r| r.filter.ignore_builtins);
        let bound = needs_bindings.then(|| bindings::module_bound_names(module_body));
        let needs_names = plan
            .rules
            .iter()
            .any(|r| !r.filter.blacklist.is_empty() || !r.filter.whitelist.is_empty());
        Self {
            source,
            lines,
            plan,
            needs_bindings,
            needs_names,
            scopes: vec![Scope {
                kind: Kind::Module,
                prefix: Arc::from(""),
                locals: false,
                owner: Arc::from(""),
                active: Vec::new(),
                bound,
            }],
            // The standard library has a function per ~530 bytes and a call per ~100: one
            // allocation each for most modules.
            functions: Vec::with_capacity(source.len() / 512 + 1),
            calls: Vec::with_capacity(source.len() / 96 + 1),
            layers: Vec::new(),
            awaited_call: None,
            super_value: None,
            nesting,
            tokens,
            extra: 0,
            unwrapped_for_depth: 0,
        }
    }

    fn current(&self) -> Option<&Scope> {
        self.scopes.last()
    }

    fn qualname(&self, name: &str) -> Arc<str> {
        match self.current() {
            Some(s) if !s.prefix.is_empty() => {
                const LOCALS: &str = ".<locals>";
                let mut q = String::with_capacity(s.prefix.len() + LOCALS.len() + 1 + name.len());
                q.push_str(&s.prefix);
                if s.locals {
                    q.push_str(LOCALS);
                }
                q.push('.');
                q.push_str(name);
                Arc::from(q)
            }
            _ => Arc::from(name),
        }
    }

    /// Rules active in a nested def/class body by inheritance from the current scope.
    fn inherited(&self) -> Vec<(usize, usize)> {
        self.current()
            .map(|s| {
                s.active
                    .iter()
                    .copied()
                    .filter(|&(rule, _)| {
                        self.plan
                            .rules
                            .get(rule)
                            .is_some_and(|r| r.transform().includes_nested())
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn selects(&self, rule: usize, qualname: &str, first_line: u32) -> bool {
        match self.plan.rules.get(rule).map(|r| &r.functions) {
            Some(FunctionSelector::Globs(g)) => g.matches(qualname),
            Some(FunctionSelector::At { qualname: q, line }) => {
                q == qualname && *line == first_line
            }
            None => false,
        }
    }

    fn line_of(&self, offset: usize) -> u32 {
        u32::try_from(self.lines.line_col(offset).0).unwrap_or(u32::MAX)
    }

    fn visit_function(&mut self, def: &'a StmtFunctionDef) {
        // Evaluated in the enclosing scope.
        for d in &def.decorator_list {
            self.visit_expr(&d.expression);
        }
        for p in def.parameters.iter_non_variadic_params() {
            if let Some(default) = &p.default {
                self.visit_expr(default);
            }
        }
        let qualname = self.qualname(&def.name.id);
        let first = def
            .decorator_list
            .first()
            .map_or(def.range.start(), |d| d.range.start());
        let first_line = self.line_of(first.to_usize());
        let mut active = self.inherited();
        let rules: Vec<usize> = (0..self.plan.rules.len())
            .filter(|&r| self.selects(r, &qualname, first_line))
            .collect();
        if !rules.is_empty() {
            let idx = self.functions.len();
            // Only rules whose transform routes calls gather calls.
            let routing = rules.iter().copied().filter(|&r| {
                self.plan
                    .rules
                    .get(r)
                    .is_some_and(|r| r.transform().routes_calls())
            });
            for r in routing {
                if !active.iter().any(|&(ar, _)| ar == r) {
                    active.push((r, idx));
                }
            }
            self.functions.push(SelectedFunction {
                def,
                qualname: Arc::clone(&qualname),
                rules,
            });
        }
        let bound = (self.needs_bindings && !active.is_empty())
            .then(|| bindings::bound_names(&def.body, Some(&def.parameters)));
        self.scopes.push(Scope {
            kind: Kind::Function,
            prefix: Arc::clone(&qualname),
            locals: true,
            owner: qualname,
            active,
            bound,
        });
        for stmt in &def.body {
            self.visit_stmt(stmt);
        }
        self.scopes.pop();
    }

    fn is_builtin(&self, name: &str) -> bool {
        if !self.plan.builtins.contains(name) {
            return false;
        }
        let in_class_body = self.current().is_some_and(|s| s.kind == Kind::Class);
        for (i, scope) in self.scopes.iter().enumerate().rev() {
            // A class scope only shadows names for code directly in its body.
            if scope.kind == Kind::Class && !(in_class_body && i + 1 == self.scopes.len()) {
                continue;
            }
            if scope
                .bound
                .as_ref()
                .is_some_and(|b| bindings::binds(b, name))
            {
                return false;
            }
        }
        true
    }

    /// The `(rule, selected function)` pairs routing `call`, innermost layer first.
    pub(crate) fn layers(&self, call: &RoutedCall<'_>) -> &[(usize, usize)] {
        self.layers.get(call.layers.clone()).unwrap_or_default()
    }

    /// Routes `call` if some active rule takes it; returns whether it was routed. Kept out of
    /// line: inlined, it weighs on every expression's visit.
    #[inline(never)]
    fn route_call(&mut self, call: &'a ExprCall) -> bool {
        let Some(scope) = self.scopes.last() else {
            return false;
        };
        if scope.active.is_empty()
            || is_frame_sensitive(call)
            || self.super_value == Some(call.range().start().to_usize())
        {
            return false;
        }
        let name: Option<CallName> = if self.needs_names {
            callee_name(&call.func, self.source)
        } else {
            None
        };
        // Only rules ignoring builtins ask (and then `needs_bindings` is set).
        let builtin = self.needs_bindings
            && match call.func.as_ref() {
                Expr::Name(n) => self.is_builtin(n.id.as_str()),
                _ => false,
            };
        let first = self.layers.len();
        let plan = self.plan;
        self.layers
            .extend(scope.active.iter().copied().filter(|&(rule, _)| {
                plan.rules.get(rule).is_some_and(|r| {
                    !(r.filter.ignore_builtins && builtin) && r.filter.allows(name.as_ref())
                })
            }));
        if self.layers.len() == first {
            return false;
        }
        if self.over_budget(call) {
            self.layers.truncate(first);
            self.unwrapped_for_depth += 1;
            return false;
        }
        let layers = first..self.layers.len();
        if let Some(run) = self.layers.get_mut(layers.clone()) {
            run.sort_by_key(|&(rule, _)| rule);
        }
        let owner = scope.owner.clone();
        let awaited = self.awaited_call == Some(call.range().start().to_usize());
        self.calls.push(RoutedCall {
            call,
            owner,
            layers,
            awaited,
        });
        true
    }

    /// Whether wrapping `call` would nest the new source deeper than [`BRACKET_BUDGET`].
    fn over_budget(&self, call: &ExprCall) -> bool {
        // No range nests deeper than the module's deepest bracket: when even that stays
        // within budget, the exact level (searches per call) is not needed.
        self.nesting.brackets.0 + self.extra + 1 > BRACKET_BUDGET
            && self.wrapped_level(call) > BRACKET_BUDGET
    }

    /// The deepest bracket level in the new source if `call` is wrapped: its wrapper's `(`
    /// encloses the callee, and a lone generator argument gets parentheses of its own.
    fn wrapped_level(&self, call: &ExprCall) -> usize {
        let func = call.func.range();
        let mut level =
            self.nesting
                .max_level(self.tokens, func.start().to_usize(), func.end().to_usize())
                + self.extra
                + 1;
        if let Some(g) = lone_generator(call) {
            let r = g.range();
            level = level.max(
                self.nesting
                    .max_level(self.tokens, r.start().to_usize(), r.end().to_usize())
                    + self.extra
                    + 1,
            );
        }
        level
    }
}

/// The generator of `f(x for x in y)`, which a wrapper keeps in parentheses of its own.
fn lone_generator(call: &ExprCall) -> Option<&Expr> {
    match call.arguments.args.as_ref() {
        [g @ Expr::Generator(gen)] if !gen.parenthesized && call.arguments.keywords.is_empty() => {
            Some(g)
        }
        _ => None,
    }
}

/// Calls that read their caller's frame and so must run in it: `super()`, `locals()`,
/// `globals()`, `vars()` and `dir()` without arguments, `eval`, `exec`, `breakpoint`,
/// `sys._getframe`, `sys._getframemodulename` and `inspect.currentframe`.
fn is_frame_sensitive(call: &ExprCall) -> bool {
    let no_args = call.arguments.args.is_empty() && call.arguments.keywords.is_empty();
    match call.func.as_ref() {
        Expr::Name(n) => match n.id.as_str() {
            "super" | "locals" | "globals" | "vars" | "dir" => no_args,
            "eval"
            | "exec"
            | "breakpoint"
            | "_getframe"
            | "_getframemodulename"
            | "currentframe" => true,
            _ => false,
        },
        Expr::Attribute(a) => {
            matches!(
                (a.value.as_ref(), a.attr.id.as_str()),
                (Expr::Name(m), "_getframe" | "_getframemodulename") if m.id.as_str() == "sys"
            ) || matches!(
                (a.value.as_ref(), a.attr.id.as_str()),
                (Expr::Name(m), "currentframe") if m.id.as_str() == "inspect"
            )
        }
        _ => false,
    }
}

impl<'a> SourceOrderVisitor<'a> for Collector<'a, '_> {
    fn enter_node(&mut self, node: AnyNodeRef<'a>) -> TraversalSignal {
        match node {
            // The text of an `{expr=}` field is part of the result: never change it.
            AnyNodeRef::InterpolatedElement(e) if e.debug_text.is_some() => TraversalSignal::Skip,
            _ => TraversalSignal::Traverse,
        }
    }

    fn visit_annotation(&mut self, _expr: &'a Expr) {}

    fn visit_stmt(&mut self, stmt: &'a Stmt) {
        match stmt {
            // Statements holding no expression: nothing to route, no scope.
            Stmt::Pass(_)
            | Stmt::Break(_)
            | Stmt::Continue(_)
            | Stmt::Import(_)
            | Stmt::ImportFrom(_)
            | Stmt::Global(_)
            | Stmt::Nonlocal(_) => {}
            Stmt::FunctionDef(def) => self.visit_function(def),
            Stmt::ClassDef(class) => {
                for d in &class.decorator_list {
                    self.visit_expr(&d.expression);
                }
                if let Some(args) = &class.arguments {
                    self.visit_arguments(args);
                }
                let qualname = self.qualname(&class.name.id);
                let active = self.inherited();
                let bound = (self.needs_bindings && !active.is_empty())
                    .then(|| bindings::bound_names(&class.body, None));
                self.scopes.push(Scope {
                    kind: Kind::Class,
                    prefix: Arc::clone(&qualname),
                    locals: false,
                    owner: qualname,
                    active,
                    bound,
                });
                for s in &class.body {
                    self.visit_stmt(s);
                }
                self.scopes.pop();
            }
            _ => walk_stmt(self, stmt),
        }
    }

    fn visit_expr(&mut self, expr: &'a Expr) {
        match expr {
            // Leaves, the most common expressions: nothing in them is routed or opens a scope
            // (f-strings are not among them), so the generic walk is skipped.
            Expr::Name(_)
            | Expr::StringLiteral(_)
            | Expr::BytesLiteral(_)
            | Expr::NumberLiteral(_)
            | Expr::BooleanLiteral(_)
            | Expr::NoneLiteral(_)
            | Expr::EllipsisLiteral(_) => {}
            Expr::Call(call) => {
                let routed = self.route_call(call);
                self.awaited_call = None;
                // What walk_expr does for a call, with the levels the wrapper adds.
                let node = AnyNodeRef::from(expr);
                if self.enter_node(node).is_traverse() {
                    let outer = self.extra;
                    self.extra = outer + usize::from(routed);
                    self.visit_expr(&call.func);
                    self.extra = outer + usize::from(routed && lone_generator(call).is_some());
                    self.visit_arguments(&call.arguments);
                    self.extra = outer;
                }
                self.leave_node(node);
            }
            Expr::Attribute(a) => {
                if let Expr::Call(call) = a.value.as_ref() {
                    if matches!(call.func.as_ref(), Expr::Name(n) if n.id.as_str() == "super") {
                        self.super_value = Some(call.range().start().to_usize());
                    }
                }
                walk_expr(self, expr);
            }
            Expr::Await(a) => {
                if let Expr::Call(call) = a.value.as_ref() {
                    self.awaited_call = Some(call.range().start().to_usize());
                }
                walk_expr(self, expr);
            }
            Expr::Lambda(lambda) => {
                if let Some(params) = &lambda.parameters {
                    for p in params.iter_non_variadic_params() {
                        if let Some(default) = &p.default {
                            self.visit_expr(default);
                        }
                    }
                }
                let Some(outer) = self.current() else { return };
                let active = outer.active.clone();
                let owner = outer.owner.clone();
                let prefix = outer.prefix.clone();
                let locals = outer.locals;
                let bound = (self.needs_bindings && !active.is_empty())
                    .then(|| bindings::lambda_names(lambda.parameters.as_deref(), &lambda.body));
                self.scopes.push(Scope {
                    kind: Kind::Lambda,
                    prefix,
                    locals,
                    owner,
                    active,
                    bound,
                });
                self.visit_expr(&lambda.body);
                self.scopes.pop();
            }
            _ => walk_expr(self, expr),
        }
    }
}
