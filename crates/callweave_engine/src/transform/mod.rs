//! How a transform plugs into the engine, and the registry of transforms.
//!
//! A transform is one file in this folder: a type implementing [`Transform`] and a
//! [`Registered`] entry (its name, a one-line summary and a constructor that parses the rule's
//! [`Options`]) listed in [`REGISTRY`]. The pipeline ([`crate::rewrite`]) never matches on
//! transform kinds: for every rule it asks the rule's transform
//!
//! - what it injects ([`Transform::injected_names`], checked by [`crate::Plan::validate`]);
//! - whether nested `def`/`class` bodies belong to a selected function
//!   ([`Transform::includes_nested`]);
//! - whether it routes calls, and with which tokens ([`Transform::call_layer`]): the collector
//!   then gathers the calls in scope and [`wrap`] composes the layers of every rule routing one
//!   call;
//! - function-level edits ([`Transform::function_edits`]), e.g. profiling's entry and exit;
//! - statement- and expression-level edits ([`Transform::visits_body`], [`Transform::stmt`],
//!   [`Transform::expr`]) over the selected functions' bodies, nested bodies in or out of scope
//!   per `includes_nested`. These may take **constant slots** ([`BodyCx::slot`]): an injected
//!   name unique in the rewrite, recorded in [`crate::Rewrite::constants`] with the original
//!   text and position of the node it stands for, whose value the caller supplies after
//!   compiling.
//!
//! Edit order in the new source at equal offsets: function-level edits (inner functions before
//! outer ones), call routing, the function-level `after_calls`, then statement- and
//! expression-level edits (outer nodes before inner ones, in source order).

pub(crate) mod constants;
pub(crate) mod displays;
pub(crate) mod exceptions;
pub(crate) mod interpolated_strings;
pub(crate) mod islice;
pub(crate) mod literals;
pub(crate) mod precomputed_slices;
pub(crate) mod profile;
pub(crate) mod wrap;

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::Arc;

use ruff_python_ast::token::Token;
use ruff_python_ast::visitor::source_order::{
    walk_expr, walk_stmt, SourceOrderVisitor, TraversalSignal,
};
use ruff_python_ast::{AnyNodeRef, Expr, Pattern, Stmt, StmtFunctionDef};
use ruff_text_size::{Ranged, TextRange};

use crate::posmap::{Anchor, Edit};
use crate::source::LineIndex;
use crate::EngineError;

/// One option value, as a rule passes it to its transform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OptionValue {
    /// A string (names, expressions, modes).
    Str(String),
    /// A flag.
    Bool(bool),
    /// A list of strings.
    List(Vec<String>),
}

impl fmt::Display for OptionValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Str(s) => write!(f, "{s:?}"),
            Self::Bool(b) => write!(f, "{b}"),
            Self::List(l) => write!(f, "{l:?}"),
        }
    }
}

/// A rule's options: name → value. Each transform reads its own through [`OptionReader`].
pub type Options = BTreeMap<String, OptionValue>;

/// Reads one transform's options; [`OptionReader::finish`] rejects the names it did not read.
pub(crate) struct OptionReader<'o> {
    transform: &'static str,
    options: &'o Options,
    read: HashSet<&'o str>,
}

impl<'o> OptionReader<'o> {
    fn new(transform: &'static str, options: &'o Options) -> Self {
        Self {
            transform,
            options,
            read: HashSet::new(),
        }
    }

    /// An error about option `option` of this transform.
    pub(crate) fn error(&self, option: &str, reason: impl Into<String>) -> EngineError {
        EngineError::BadOption {
            transform: self.transform.to_owned(),
            option: option.to_owned(),
            reason: reason.into(),
        }
    }

    fn get(&mut self, name: &str) -> Option<&'o OptionValue> {
        let (key, value) = self.options.get_key_value(name)?;
        self.read.insert(key.as_str());
        Some(value)
    }

    /// An optional string option.
    pub(crate) fn str(&mut self, name: &str) -> Result<Option<String>, EngineError> {
        match self.get(name) {
            None => Ok(None),
            Some(OptionValue::Str(s)) => Ok(Some(s.clone())),
            Some(other) => Err(self.error(name, format!("expected a string, got {other}"))),
        }
    }

    /// A string option that must be given.
    pub(crate) fn required_str(&mut self, name: &str) -> Result<String, EngineError> {
        self.str(name)?
            .ok_or_else(|| self.error(name, "missing (required)"))
    }

    /// A flag, `default` when absent.
    #[allow(dead_code)]
    pub(crate) fn bool(&mut self, name: &str, default: bool) -> Result<bool, EngineError> {
        match self.get(name) {
            None => Ok(default),
            Some(OptionValue::Bool(b)) => Ok(*b),
            Some(other) => Err(self.error(name, format!("expected a bool, got {other}"))),
        }
    }

    /// A list of strings, empty when absent.
    #[allow(dead_code)]
    pub(crate) fn list(&mut self, name: &str) -> Result<Vec<String>, EngineError> {
        match self.get(name) {
            None => Ok(Vec::new()),
            Some(OptionValue::List(l)) => Ok(l.clone()),
            Some(other) => {
                Err(self.error(name, format!("expected a list of strings, got {other}")))
            }
        }
    }

    /// Fails on the first option (in name order) that was not read.
    pub(crate) fn finish(self) -> Result<(), EngineError> {
        match self
            .options
            .keys()
            .find(|k| !self.read.contains(k.as_str()))
        {
            None => Ok(()),
            Some(k) => Err(self.error(k, "unknown option")),
        }
    }
}

/// A registry entry: how a rule names a transform and builds it from its options.
pub(crate) struct Registered {
    /// The name rules use (`Rule(transform=...)`) and the golden fixture folder's name.
    pub(crate) name: &'static str,
    /// One line for error messages and docs.
    pub(crate) summary: &'static str,
    /// Parses the options (every option must be read, see [`OptionReader::finish`]).
    pub(crate) build: fn(&mut OptionReader<'_>) -> Result<Arc<dyn Transform>, EngineError>,
}

/// Every transform, in no particular order. Adding a transform: one file here, one line below.
pub(crate) static REGISTRY: &[Registered] = &[
    wrap::REGISTERED,
    profile::REGISTERED,
    literals::REGISTERED,
    displays::REGISTERED,
    islice::REGISTERED,
    precomputed_slices::REGISTERED,
    exceptions::REGISTERED,
    constants::REGISTERED,
    interpolated_strings::REGISTERED,
];

/// The registered transforms' names, in registry order.
pub fn transform_names() -> Vec<&'static str> {
    REGISTRY.iter().map(|r| r.name).collect()
}

/// The registered transforms: `(name, one-line summary)`, in registry order.
pub fn transforms() -> Vec<(&'static str, &'static str)> {
    REGISTRY.iter().map(|r| (r.name, r.summary)).collect()
}

/// Builds transform `name` from `options`; an unknown name is an error listing the registry.
pub(crate) fn build(name: &str, options: &Options) -> Result<Arc<dyn Transform>, EngineError> {
    let Some(entry) = REGISTRY.iter().find(|r| r.name == name) else {
        return Err(EngineError::UnknownTransform {
            name: name.to_owned(),
            known: transform_names().join(", "),
        });
    };
    let mut reader = OptionReader::new(entry.name, options);
    let built = (entry.build)(&mut reader)?;
    reader.finish()?;
    Ok(built)
}

/// What every transform of one rewrite sees of the module.
pub(crate) struct Context<'a> {
    pub(crate) source: &'a str,
    pub(crate) lines: &'a LineIndex,
    pub(crate) tokens: &'a [Token],
}

/// The injected tokens of one call-routing layer for one call: the call `C(A)` becomes
/// `CALLABLE(PRE..., C, POST..., A)` (see [`wrap`]).
pub(crate) struct LayerTokens {
    pub(crate) callable: String,
    pub(crate) pre: Vec<String>,
    pub(crate) post: Vec<String>,
}

/// One routed call as a layer sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CallSite {
    /// Site id (index in [`crate::Rewrite::sites`]).
    pub(crate) id: u32,
    /// Index of the call among the numbered function's routed calls (0 when the transform
    /// does not number functions).
    pub(crate) local: u32,
    /// Whether the call is the operand of `await`.
    pub(crate) awaited: bool,
}

/// A function's function-level edits.
pub(crate) struct FunctionEdits<'e> {
    /// Applied before the call routing's edits at equal offsets.
    pub(crate) edits: Vec<Edit<'e>>,
    /// Applied after the call routing's edits at equal offsets (e.g. `STRIP(` before
    /// `locals()`, so that in `locals().get(k)` it goes inside the wrapper of the `get` call).
    pub(crate) after_calls: Vec<Edit<'e>>,
    pub(crate) layout: Layout,
}

/// How a function's body was laid out, which decides whether nested functions can still be
/// given function-level edits (a re-indented body cannot hold another one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    /// Body lines untouched.
    Kept,
    /// Every body line got one more space.
    Reindented,
}

// The body hooks' API is used by the transforms that visit bodies (literal overloading and
// the like) and by this module's tests.
/// Whether the body walk goes into a node's children.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(dead_code)]
pub(crate) enum Descend {
    /// Visit the children (their hooks run after this node's).
    Children,
    /// Leave the children alone (e.g. the node was replaced).
    Skip,
}

/// One transform, built from a rule's options. See the module's documentation for how the
/// pipeline drives it; every method has a default meaning "nothing of this kind".
///
/// A transform is immutable once built (no interior mutability: rewrites run it on any
/// thread, and a panic inside the engine is caught and reported, see `RefUnwindSafe`).
pub(crate) trait Transform: fmt::Debug + Send + Sync + std::panic::RefUnwindSafe {
    /// The registry name.
    fn name(&self) -> &'static str;

    /// The names the transform injects into the new source (each must start and end with
    /// `__`, see [`crate::Plan::validate`]).
    fn injected_names(&self) -> Vec<&str>;

    /// Whether bodies of `def` and `class` statements nested in a selected function belong
    /// to it (for call routing and for the body walk). Lambdas and comprehensions always do.
    fn includes_nested(&self) -> bool;

    /// Whether selected functions are numbered (in source order, across the rules of the
    /// rewrite that number functions): the number goes to [`Transform::function_edits`] and
    /// [`crate::Function::profile`], and each routed call gets its index among the function's
    /// calls ([`CallSite::local`]). Only the first numbering rule selecting a function
    /// numbers it.
    fn numbers_functions(&self) -> bool {
        false
    }

    /// Whether the transform routes calls: then [`Transform::call_layer`] gives its tokens.
    fn routes_calls(&self) -> bool {
        false
    }

    /// The tokens of this layer for one routed call.
    fn call_layer(&self, _call: CallSite) -> LayerTokens {
        LayerTokens {
            callable: String::new(),
            pre: Vec::new(),
            post: Vec::new(),
        }
    }

    /// `W(` when a call routed by this layer alone is `W(C, A)` whatever the call (no `PRE`,
    /// no `POST`): the pipeline then shares one prefix string among all its calls.
    fn simple_call_prefix(&self) -> Option<String> {
        None
    }

    /// Function-level edits of a selected function (`index`: its number, see
    /// [`Transform::numbers_functions`]).
    fn function_edits<'e>(
        &self,
        _cx: &Context<'_>,
        _def: &StmtFunctionDef,
        _index: u32,
    ) -> Result<Option<FunctionEdits<'e>>, EngineError> {
        Ok(None)
    }

    /// Whether [`Transform::stmt`] and [`Transform::expr`] are to be called over the selected
    /// functions' bodies.
    fn visits_body(&self) -> bool {
        false
    }

    /// Called for each statement in scope, before its children (nested `def`/`class`
    /// statements included, whatever the scope: their decorators and defaults run in it).
    /// Docstrings are never visited.
    fn stmt(&self, _cx: &mut BodyCx<'_>, _stmt: &Stmt) -> Result<Descend, EngineError> {
        Ok(Descend::Children)
    }

    /// Called for each expression in scope, before its children. Annotations and the inside
    /// of f-string `{expr=}` fields are never visited.
    fn expr(&self, _cx: &mut BodyCx<'_>, _expr: &Expr) -> Result<Descend, EngineError> {
        Ok(Descend::Children)
    }
}

/// A constant slot: an injected name standing for one node of the original source, whose
/// value the caller computes (from `text`) and puts in place of the name's loads after
/// compiling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConstantSlot {
    /// The injected name: the plan's [`crate::Plan::constants`] prefix, a number unique in
    /// the rewrite, then `__`.
    pub name: String,
    /// The registry name of the transform that took it.
    pub transform: &'static str,
    /// Index of the plan rule that took it (whose options say how to compute the value).
    pub rule: usize,
    /// The node's exact original text.
    pub text: String,
    /// Line of the node's start (1-based).
    pub line: u32,
    /// Column of the node's start (0-based UTF-8 bytes).
    pub col: u32,
    /// Line of the node's end.
    pub end_line: u32,
    /// Column of the node's end.
    pub end_col: u32,
    /// Qualname of the selected function whose body holds the node.
    pub function: Arc<str>,
}

/// What the body hooks of one transform see while one selected function is walked.
#[allow(dead_code)]
pub(crate) struct BodyCx<'a> {
    pub(crate) cx: &'a Context<'a>,
    /// Qualname of the selected function being walked.
    pub(crate) function: Arc<str>,
    /// The rule being applied.
    pub(crate) rule: usize,
    transform: &'static str,
    prefix: &'a str,
    slots: &'a mut Vec<ConstantSlot>,
    edits: &'a mut Vec<Edit<'static>>,
}

#[allow(dead_code)]
fn to_u32(v: usize) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

#[allow(dead_code)]
impl BodyCx<'_> {
    /// The original text of `node`.
    pub(crate) fn text(&self, node: &impl Ranged) -> &str {
        self.cx
            .source
            .get(std::ops::Range::<usize>::from(node.range()))
            .unwrap_or_default()
    }

    /// Takes a new constant slot standing for `range` and returns its name.
    pub(crate) fn slot(&mut self, range: TextRange) -> String {
        let name = format!("{}{}__", self.prefix, self.slots.len());
        let (start, end) = (range.start().to_usize(), range.end().to_usize());
        let (line, col) = self.cx.lines.line_col(start);
        let (end_line, end_col) = self.cx.lines.line_col(end);
        self.slots.push(ConstantSlot {
            name: name.clone(),
            transform: self.transform,
            rule: self.rule,
            text: self
                .cx
                .source
                .get(start..end)
                .unwrap_or_default()
                .to_owned(),
            line: to_u32(line),
            col: to_u32(col),
            end_line: to_u32(end_line),
            end_col: to_u32(end_col),
            function: self.function.clone(),
        });
        name
    }

    /// Replaces `node` by a new constant slot's name (located at the node); returns the name.
    pub(crate) fn replace_with_slot(&mut self, node: &impl Ranged) -> String {
        let name = self.slot(node.range());
        let (start, end) = (node.start().to_usize(), node.end().to_usize());
        self.edits.push(Edit::replace(
            start,
            end,
            name.clone(),
            Anchor::new(start, end, false),
        ));
        name
    }

    /// Wraps `node` as `{before}NODE{after}`, the inserted text located at the node.
    pub(crate) fn wrap(&mut self, node: &impl Ranged, before: String, after: String) {
        let (start, end) = (node.start().to_usize(), node.end().to_usize());
        let anchor = Anchor::new(start, end, false);
        self.edits.push(Edit::insert(start, before, anchor));
        self.edits.push(Edit::insert(end, after, anchor));
    }

    /// Any other edit (replacements of original ranges must not overlap other edits).
    pub(crate) fn edit(&mut self, edit: Edit<'static>) {
        self.edits.push(edit);
    }

    /// A user error at `node` (`SyntaxError` in Python).
    pub(crate) fn error_at(&self, node: &impl Ranged, message: impl Into<String>) -> EngineError {
        let (line, column) = self.cx.lines.line_col(node.start().to_usize());
        EngineError::Code {
            message: message.into(),
            line,
            column,
        }
    }
}

/// Where the body walk's edits and slots go, shared by every walk of one rewrite.
pub(crate) struct BodyOutput {
    pub(crate) edits: Vec<Edit<'static>>,
    pub(crate) slots: Vec<ConstantSlot>,
}

/// Walks the body of `def` (a function selected by rule `rule`, whose transform is
/// `transform`) through the transform's body hooks.
pub(crate) fn walk_body(
    cx: &Context<'_>,
    transform: &dyn Transform,
    rule: usize,
    def: &StmtFunctionDef,
    function: Arc<str>,
    prefix: &str,
    out: &mut BodyOutput,
) -> Result<(), EngineError> {
    let mut walker = Walker {
        transform,
        nested: transform.includes_nested(),
        error: None,
        cx: BodyCx {
            cx,
            function,
            rule,
            transform: transform.name(),
            prefix,
            slots: &mut out.slots,
            edits: &mut out.edits,
        },
    };
    walker.visit_suite(&def.body);
    walker.error.map_or(Ok(()), Err)
}

struct Walker<'w, 'a> {
    transform: &'w dyn Transform,
    nested: bool,
    error: Option<EngineError>,
    cx: BodyCx<'a>,
}

impl<'a> Walker<'_, '_> {
    /// A function or class body: its docstring is not visited.
    fn visit_suite(&mut self, body: &'a [Stmt]) {
        let rest = match body.split_first() {
            Some((first, rest)) if is_docstring(first) => rest,
            _ => body,
        };
        for stmt in rest {
            self.visit_stmt(stmt);
        }
    }

    fn hook(&mut self, r: Result<Descend, EngineError>) -> bool {
        match r {
            Ok(d) => d == Descend::Children,
            Err(e) => {
                self.error.get_or_insert(e);
                false
            }
        }
    }
}

impl<'a> SourceOrderVisitor<'a> for Walker<'_, '_> {
    fn enter_node(&mut self, node: AnyNodeRef<'a>) -> TraversalSignal {
        match node {
            _ if self.error.is_some() => TraversalSignal::Skip,
            // The text of an `{expr=}` field is part of the result: never change it.
            AnyNodeRef::InterpolatedElement(e) if e.debug_text.is_some() => TraversalSignal::Skip,
            _ => TraversalSignal::Traverse,
        }
    }

    fn visit_annotation(&mut self, _expr: &'a Expr) {}

    // Nothing in a `case` pattern may become an expression: a literal there must stay a
    // literal, and a bare name would be a capture. (A transform that needs the capture names
    // reads them from the `match` statement in its `stmt` hook.)
    fn visit_pattern(&mut self, _pattern: &'a Pattern) {}

    fn visit_stmt(&mut self, stmt: &'a Stmt) {
        if self.error.is_some() {
            return;
        }
        let r = self.transform.stmt(&mut self.cx, stmt);
        if !self.hook(r) {
            return;
        }
        match stmt {
            Stmt::FunctionDef(def) => {
                for d in &def.decorator_list {
                    self.visit_expr(&d.expression);
                }
                for p in def.parameters.iter_non_variadic_params() {
                    if let Some(default) = &p.default {
                        self.visit_expr(default);
                    }
                }
                if self.nested {
                    self.visit_suite(&def.body);
                }
            }
            Stmt::ClassDef(class) => {
                for d in &class.decorator_list {
                    self.visit_expr(&d.expression);
                }
                if let Some(args) = &class.arguments {
                    self.visit_arguments(args);
                }
                if self.nested {
                    self.visit_suite(&class.body);
                }
            }
            _ => walk_stmt(self, stmt),
        }
    }

    fn visit_expr(&mut self, expr: &'a Expr) {
        if self.error.is_some() {
            return;
        }
        if matches!(
            self.enter_node(AnyNodeRef::from(expr)),
            TraversalSignal::Skip
        ) {
            return;
        }
        let r = self.transform.expr(&mut self.cx, expr);
        if self.hook(r) {
            walk_expr(self, expr);
        }
    }
}

/// Whether `stmt` is a docstring (a string literal expression statement; only meaningful as
/// the first statement of a body).
pub(crate) fn is_docstring(stmt: &Stmt) -> bool {
    matches!(stmt, Stmt::Expr(e) if matches!(e.value.as_ref(), Expr::StringLiteral(_)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{FunctionSelector, Plan, QualnameGlobs, Rule};
    use ruff_python_ast::Number;

    /// Int literals become slots; assigning `frozen` is an error; nested bodies optional.
    #[derive(Debug)]
    struct IntSlots {
        nested: bool,
    }

    impl Transform for IntSlots {
        fn name(&self) -> &'static str {
            "int_slots"
        }
        fn injected_names(&self) -> Vec<&str> {
            Vec::new()
        }
        fn includes_nested(&self) -> bool {
            self.nested
        }
        fn visits_body(&self) -> bool {
            true
        }
        fn stmt(&self, cx: &mut BodyCx<'_>, stmt: &Stmt) -> Result<Descend, EngineError> {
            if let Stmt::Assign(a) = stmt {
                for t in &a.targets {
                    if matches!(t, Expr::Name(n) if n.id.as_str() == "frozen") {
                        return Err(cx.error_at(t, "can't assign to constant name 'frozen'"));
                    }
                }
            }
            Ok(Descend::Children)
        }
        fn expr(&self, cx: &mut BodyCx<'_>, expr: &Expr) -> Result<Descend, EngineError> {
            match expr {
                Expr::NumberLiteral(n) if matches!(n.value, Number::Int(_)) => {
                    cx.replace_with_slot(n);
                    Ok(Descend::Skip)
                }
                _ => Ok(Descend::Children),
            }
        }
    }

    fn run(source: &str, nested: bool, globs: &[&str]) -> Result<crate::Rewrite, EngineError> {
        let functions = FunctionSelector::Globs(QualnameGlobs::new(globs).expect("valid"));
        let plan = Plan {
            rules: vec![Rule::with_transform(
                functions,
                Arc::new(IntSlots { nested }),
            )],
            constants: "__k_".to_owned(),
            ..Plan::default()
        };
        crate::rewrite(source, &plan)
    }

    const SOURCE: &str = "def f(a=1):\n    \"doc 2\"\n    x = [2, 3.0, f'{4=}', f'{5}']\n    def g(b=6):\n        return 7\n    return lambda: 8\n";

    #[test]
    fn body_walk_takes_slots_in_scope() {
        let r = run(SOURCE, false, &[]).expect("rewrites");
        // `g` is selected too and walked on its own; its default belongs to `f`.
        assert_eq!(
            r.source,
            "def f(a=1):\n    \"doc 2\"\n    x = [__k_0__, 3.0, f'{4=}', f'{__k_1__}']\n    def g(b=__k_2__):\n        return __k_4__\n    return lambda: __k_3__\n"
        );
        let texts: Vec<(&str, &str, u32, u32)> = r
            .constants
            .iter()
            .map(|c| (c.name.as_str(), &*c.function, c.line, c.col))
            .collect();
        assert_eq!(
            texts,
            [
                ("__k_0__", "f", 3, 9),
                ("__k_1__", "f", 3, 29),
                ("__k_2__", "f", 4, 12),
                ("__k_3__", "f", 6, 19),
                ("__k_4__", "f.<locals>.g", 5, 15),
            ]
        );
        assert!(r
            .constants
            .iter()
            .all(|c| c.transform == "int_slots" && c.rule == 0));
        assert_eq!(r.constants.first().map(|c| c.text.as_str()), Some("2"));
    }

    #[test]
    fn nested_bodies_are_walked_once() {
        let r = run(SOURCE, true, &[]).expect("rewrites");
        assert_eq!(r.constants.len(), 5);
        let only_g = run(SOURCE, true, &["f.<locals>.g"]).expect("rewrites");
        assert_eq!(only_g.constants.len(), 1);
    }

    #[test]
    fn a_hook_error_is_positioned() {
        let err = run("def f():\n    pass\n    frozen = 1\n", false, &[]).expect_err("rejected");
        assert_eq!(
            err,
            EngineError::Code {
                message: "can't assign to constant name 'frozen'".to_owned(),
                line: 3,
                column: 4,
            }
        );
    }

    #[test]
    fn unknown_transforms_and_options_are_named() {
        let err = build("nope", &Options::new()).expect_err("unknown");
        assert_eq!(
            err.to_string(),
            format!(
                "unknown transform \"nope\" (registered: {})",
                transform_names().join(", ")
            )
        );
        assert!(transform_names().starts_with(&["wrap", "profile"]));
        let mut o = Options::new();
        o.insert("wrapper".into(), OptionValue::Str("__w__".into()));
        o.insert("sitez".into(), OptionValue::Str("__s__".into()));
        let err = build("wrap", &o).expect_err("unknown option");
        assert_eq!(
            err.to_string(),
            "transform \"wrap\": option \"sitez\": unknown option"
        );
        let err = build("wrap", &Options::new()).expect_err("missing");
        assert!(err.to_string().contains("\"wrapper\": missing"), "{err}");
        o.insert("sitez".into(), OptionValue::Bool(true));
        o.remove("sitez");
        o.insert("sites".into(), OptionValue::Bool(true));
        let err = build("wrap", &o).expect_err("type");
        assert!(
            err.to_string().contains("expected a string, got true"),
            "{err}"
        );
    }

    #[test]
    fn the_constants_prefix_is_checked() {
        let plan = Plan {
            constants: "k_".to_owned(),
            ..Plan::default()
        };
        assert!(matches!(
            plan.validate(),
            Err(EngineError::BadInjectedName { .. })
        ));
    }
}
