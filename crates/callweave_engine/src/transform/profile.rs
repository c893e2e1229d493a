//! Flat-profiling entry and exit. The body runs as
//!
//! ```text
//! RECORD = ENTER(FN)
//! try:
//!     BODY
//! finally: EXIT(RECORD)
//! ```
//!
//! so the record is a local of the function's own frame, and entry and exit are two calls of
//! C functions. `EXIT` tells an exception leaving the frame from the exception being handled
//! (its traceback ends in the frame); it is a no-op on an ended record.
//!
//! The body lines are left as written where indentation allows: the inserted lines go one
//! column right of the `def`, and a docstring moves to that column too (it stays the first
//! statement). When the body is indented by a single column or with tabs, every body line gets
//! one more space after its indentation, except lines that start inside a string literal.
//! A suite written on the `def` line (or continued there with a backslash) moves to its own
//! lines, under `try:`.
//!
//! The entry and exit code stand for nothing the user wrote: their instructions carry no
//! location (as CPython's own artificial instructions), so tracers see the body's lines only
//! and the implicit return goes from the last line executed straight to the exit, as coverage.py
//! expects. Tracebacks are unaffected: an exception keeps the location where it was raised.
//!
//! In the function's own body (not nested `def`, `class` or `lambda` bodies):
//!
//! - `yield v` becomes `RESUME(RECORD, (yield PAUSE(RECORD, v)))` (`v` is `None` for a bare
//!   `yield`; an unparenthesised tuple gets parentheses), so that the time the frame sits
//!   suspended is not counted; the inserted code is located at the `yield` expression, which
//!   keeps its own range. `yield from` stays as written (timed in full).
//! - `locals()`, `vars()` and `dir()` without arguments become `STRIP(locals())` (and so on),
//!   lambdas and comprehensions included, so the record never shows; the call itself stays in
//!   the user's frame.

use ruff_python_ast::token::{Token, TokenKind};
use ruff_python_ast::visitor::source_order::{
    walk_expr, walk_stmt, SourceOrderVisitor, TraversalSignal,
};
use ruff_python_ast::{AnyNodeRef, Expr, ExprCall, ExprYield, Stmt, StmtFunctionDef};
use ruff_text_size::Ranged;

use crate::posmap::{Anchor, Edit};
use crate::source::LineIndex;
use crate::transform::{
    is_docstring, CallSite, Context, FunctionEdits, LayerTokens, Layout, Registered, Transform,
};
use crate::EngineError;

/// `profile`: entry/exit around the body (`RECORD = ENTER(i)`, `try`, `EXIT(RECORD)` in
/// `finally`) and `TIMER(RECORD, j, f, a)` per call, `j` being the call's index among the
/// function's sites; `await f(a)` becomes `await ATIMER(RECORD, j, f, a)` so that the whole
/// await is timed. Nested `def` and `class` bodies are not in scope. See the module's
/// documentation for yields and namespace calls.
///
/// Options (all injected names): `enter`, `exit`, `timer`, `atimer`, `record` (required);
/// `pause`, `resume`, `strip` (default `__callweave_pause__`, `__callweave_resume__`,
/// `__callweave_strip__`).
#[derive(Debug)]
pub(crate) struct Profile {
    /// Global name of the entry callable, called with the function's index in the rewrite.
    enter: String,
    /// Global name of the exit callable: `EXIT(RECORD)` in a `finally`.
    exit: String,
    /// Global name of the call timer.
    timer: String,
    /// Global name of the awaited-call timer.
    atimer: String,
    /// Local name of the per-invocation record.
    record: String,
    /// Global name of `PAUSE(RECORD, value) -> value`, called before each `yield`.
    pause: String,
    /// Global name of `RESUME(RECORD, sent) -> sent`, called with what the `yield` returned.
    resume: String,
    /// Global name of `STRIP(namespace) -> namespace`, which removes the record from the
    /// result of `locals()`, `vars()` (a dict) or `dir()` (a list) and returns it.
    strip: String,
}

pub(crate) const REGISTERED: Registered = Registered {
    name: "profile",
    summary: "flat profiling: entry/exit around the body, each call timed",
    build: |o| {
        let or = |v: Option<String>, d: &str| v.unwrap_or_else(|| d.to_owned());
        Ok(std::sync::Arc::new(Profile {
            enter: o.required_str("enter")?,
            exit: o.required_str("exit")?,
            timer: o.required_str("timer")?,
            atimer: o.required_str("atimer")?,
            record: o.required_str("record")?,
            pause: or(o.str("pause")?, "__callweave_pause__"),
            resume: or(o.str("resume")?, "__callweave_resume__"),
            strip: or(o.str("strip")?, "__callweave_strip__"),
        }))
    },
};

impl Transform for Profile {
    fn name(&self) -> &'static str {
        REGISTERED.name
    }

    fn injected_names(&self) -> Vec<&str> {
        vec![
            &self.enter,
            &self.exit,
            &self.timer,
            &self.atimer,
            &self.record,
            &self.pause,
            &self.resume,
            &self.strip,
        ]
    }

    fn includes_nested(&self) -> bool {
        false
    }

    fn numbers_functions(&self) -> bool {
        true
    }

    fn routes_calls(&self) -> bool {
        true
    }

    fn call_layer(&self, call: CallSite) -> LayerTokens {
        LayerTokens {
            callable: if call.awaited {
                &self.atimer
            } else {
                &self.timer
            }
            .clone(),
            pre: vec![self.record.clone(), call.local.to_string()],
            post: Vec::new(),
        }
    }

    fn function_edits<'e>(
        &self,
        cx: &Context<'_>,
        def: &StmtFunctionDef,
        index: u32,
    ) -> Result<Option<FunctionEdits<'e>>, EngineError> {
        function_edits(cx, def, &Names::of(self), index as usize).map(Some)
    }
}

/// The injected names of a profile layer.
#[derive(Clone, Copy)]
pub(crate) struct Names<'n> {
    pub(crate) enter: &'n str,
    pub(crate) exit: &'n str,
    pub(crate) record: &'n str,
    pub(crate) pause: &'n str,
    pub(crate) resume: &'n str,
    pub(crate) strip: &'n str,
}

impl<'n> Names<'n> {
    fn of(p: &'n Profile) -> Self {
        Self {
            enter: &p.enter,
            exit: &p.exit,
            record: &p.record,
            pause: &p.pause,
            resume: &p.resume,
            strip: &p.strip,
        }
    }
}

/// Edits that run `def`'s body between `{record} = {enter}({index})` and `{exit}({record})`,
/// with its yields and namespace calls routed (see the module's documentation).
fn function_edits<'e>(
    cx: &Context<'_>,
    def: &StmtFunctionDef,
    names: &Names<'_>,
    index: usize,
) -> Result<FunctionEdits<'e>, EngineError> {
    let mut body = BodyEdits {
        tokens: cx.tokens,
        names: *names,
        lambdas: 0,
        edits: Vec::new(),
        after_calls: Vec::new(),
    };
    for stmt in &def.body {
        body.visit_stmt(stmt);
    }
    let (mut edits, layout) = entry_edits(cx, def, names, index)?;
    // The footer is last: a body edit at the body's end (`yield`'s `)))`) goes before it.
    let footer = edits.pop();
    edits.extend(body.edits);
    edits.extend(footer);
    Ok(FunctionEdits {
        edits,
        after_calls: body.after_calls,
        layout,
    })
}

/// Entry and exit edits; the last one is the footer (or the entry-and-exit of a function whose
/// body is only a docstring, whose body has nothing to route).
fn entry_edits<'e>(
    cx: &Context<'_>,
    def: &StmtFunctionDef,
    names: &Names<'_>,
    index: usize,
) -> Result<(Vec<Edit<'e>>, Layout), EngineError> {
    let Names {
        enter,
        exit,
        record,
        ..
    } = *names;
    let assign = format!("{record} = {enter}({index})");
    let only_doc = format!("{exit}({enter}({index}))");
    let finally = format!("finally: {exit}({record})");
    let def_start = def.name.range.start().to_usize();
    let (def_line, _) = cx.lines.line_col(def_start);
    let def_line_start = cx.lines.line_start(def_line);
    let d = leading_ws(cx.source, def_line_start);
    let def_kw = def_line_start + d.len();
    let anchor = Anchor::new(def_kw, line_content_end(cx.source, def_kw), true);
    let nl = line_ending(cx.source, def_kw);
    let unsupported = |why: &str| EngineError::Unsupported {
        what: format!("function {:?}", def.name.id.as_str()),
        reason: why.to_owned(),
    };

    let body = def.body.as_slice();
    let (doc, rest) = match body.split_first() {
        Some((first, rest)) if is_docstring(first) => (Some(first), rest),
        _ => (None, body),
    };
    let Some(first) = body.first() else {
        return Err(unsupported("empty body"));
    };
    let first_start = first.range().start().to_usize();
    let body_end = body
        .last()
        .map_or(first_start, |s| s.range().end().to_usize());
    let footer = |indent: &str| Edit::insert(body_end, format!("{nl}{indent}{finally}"), anchor);

    if let Some(colon) = header_colon(cx.tokens, first_start) {
        // The suite is on the header's logical line: `def f(x): a; return b`, possibly after a
        // backslash continuation. It moves to a line of its own under `try:` (on 3.13 a `...`
        // body sharing a line with `try:` would lose its line to the `try`'s NOP).
        let w = format!("{d} ");
        let mut edits = vec![Edit::replace(
            colon,
            first_start,
            format!("{nl}{w}"),
            Anchor::new(colon, first_start, false),
        )];
        match (doc, rest.first()) {
            (Some(doc), Some(next)) => edits.push(
                Edit::replace(
                    doc.range().end().to_usize(),
                    next.range().start().to_usize(),
                    format!("{nl}{w}{assign}{nl}{w}try:{nl}{w} "),
                    anchor,
                )
                .unlocated(),
            ),
            (Some(doc), None) => {
                edits.push(
                    Edit::insert(
                        doc.range().end().to_usize(),
                        format!("{nl}{w}{only_doc}"),
                        anchor,
                    )
                    .unlocated(),
                );
                return Ok((edits, Layout::Kept));
            }
            (None, _) => edits.push(
                Edit::insert(first_start, format!("{assign}{nl}{w}try:{nl}{w} "), anchor)
                    .unlocated(),
            ),
        }
        edits.push(footer(&w).unlocated());
        return Ok((edits, Layout::Kept));
    }

    let ind_start = cx.lines.line_start(cx.lines.line_col(first_start).0);
    let ind = cx.source.get(ind_start..first_start).unwrap_or_default();
    let Some(first_code) = rest.first() else {
        // Only a docstring: enter and exit right after it.
        let doc_end = first.range().end().to_usize();
        return Ok((
            vec![Edit::insert(doc_end, format!("{nl}{ind}{only_doc}"), anchor).unlocated()],
            Layout::Kept,
        ));
    };
    let code_start = first_code.range().start().to_usize();
    if !only_ws_before(cx.source, cx.lines, code_start) {
        return Err(unsupported(
            "the first statement after the docstring shares its line",
        ));
    }
    let code_line_start = cx.lines.line_start(cx.lines.line_col(code_start).0);
    let extra = ind.strip_prefix(d).unwrap_or_default();
    let roomy = extra.len() >= 2 && extra.bytes().all(|b| b == b' ');

    if roomy {
        let w = format!("{d} ");
        let mut edits = Vec::new();
        if let Some(doc) = doc {
            let doc_start = doc.range().start().to_usize();
            edits.push(Edit::replace(
                ind_start,
                doc_start,
                w.clone(),
                Anchor::new(ind_start, doc_start, false),
            ));
        }
        edits.push(
            Edit::insert(
                code_line_start,
                format!("{w}{assign}{nl}{w}try:{nl}"),
                anchor,
            )
            .unlocated(),
        );
        edits.push(footer(&w).unlocated());
        return Ok((edits, Layout::Kept));
    }

    // No room: the inserted lines take the body's indentation and the body moves one column
    // right.
    let mut edits = vec![Edit::insert(
        code_line_start,
        format!("{ind}{assign}{nl}{ind}try:{nl}"),
        anchor,
    )
    .unlocated()];
    let spans = string_spans(cx.tokens);
    let (first_line, _) = cx.lines.line_col(code_start);
    let (last_line, _) = cx.lines.line_col(body_end);
    for line in first_line..=last_line {
        let ls = cx.lines.line_start(line);
        if inside_any(&spans, ls) {
            continue;
        }
        let ws = leading_ws(cx.source, ls);
        let content = ls + ws.len();
        match cx.source.as_bytes().get(content) {
            None | Some(b'\n' | b'\r') => continue,
            Some(_) => edits.push(Edit::insert(
                content,
                " ",
                Anchor::new(content, content, false),
            )),
        }
    }
    edits.push(footer(ind).unlocated());
    Ok((edits, Layout::Reindented))
}

/// The offset just after the header's `:` when the statement at `first_start` is on the
/// header's logical line (no NEWLINE token between them), else `None`.
fn header_colon(tokens: &[Token], first_start: usize) -> Option<usize> {
    let idx = tokens.partition_point(|t| t.end().to_usize() <= first_start);
    let prev = tokens.get(idx.checked_sub(1)?)?;
    (prev.kind() == TokenKind::Colon).then(|| prev.end().to_usize())
}

/// Collects the edits of a profiled function's own body: yields and namespace calls.
struct BodyEdits<'t, 'n> {
    tokens: &'t [Token],
    names: Names<'n>,
    /// Lambdas being visited: a `yield` in one belongs to the lambda.
    lambdas: usize,
    /// Prefixes in source order (outer first at one offset), suffixes after their node's
    /// children (inner first at one offset).
    edits: Vec<Edit<'static>>,
    after_calls: Vec<Edit<'static>>,
}

impl BodyEdits<'_, '_> {
    /// `RESUME(R, (yield PAUSE(R, v)))`; the fragments are anchored at the yield expression,
    /// whose own range in the new text (`yield` to the `)` closing `PAUSE(`) maps back to it.
    fn route_yield(&mut self, y: &ExprYield) {
        let Names {
            record,
            pause,
            resume,
            ..
        } = self.names;
        let (start, end) = (y.range.start().to_usize(), y.range.end().to_usize());
        let anchor = Anchor::new(start, end, false);
        self.edits
            .push(Edit::insert(start, format!("{resume}({record}, ("), anchor));
        let Some(value) = y.value.as_deref() else {
            self.edits.push(Edit::insert(
                end,
                format!(" {pause}({record}, None)))"),
                anchor,
            ));
            return;
        };
        // The value's text, parentheses included, runs from the first token after `yield` to
        // the end of the yield expression.
        let after_kw = start + "yield".len();
        let value_start = self
            .tokens
            .get(
                self.tokens
                    .partition_point(|t| t.start().to_usize() < after_kw)..,
            )
            .unwrap_or_default()
            .iter()
            .find(|t| !matches!(t.kind(), TokenKind::Comment | TokenKind::NonLogicalNewline))
            .map_or(value.range().start().to_usize(), |t| t.start().to_usize());
        self.edits.push(Edit::insert(
            value_start,
            format!("{pause}({record}, "),
            anchor,
        ));
        // `yield a, b`: the tuple needs its own parentheses as an argument.
        let tuple = matches!(value, Expr::Tuple(t) if !t.parenthesized).then(|| {
            Anchor::new(
                value.range().start().to_usize(),
                value.range().end().to_usize(),
                false,
            )
        });
        if let Some(t) = tuple {
            self.edits.push(Edit::insert(value_start, "(", t));
        }
        self.visit_expr(value);
        if let Some(t) = tuple {
            self.edits.push(Edit::insert(end, ")", t));
        }
        self.edits.push(Edit::insert(end, ")))", anchor));
    }

    /// `locals()` → `STRIP(locals())`, anchored at the call.
    fn route_namespace_call(&mut self, call: &ExprCall) {
        let (start, end) = (
            call.range().start().to_usize(),
            call.range().end().to_usize(),
        );
        let anchor = Anchor::new(start, end, false);
        self.after_calls.push(Edit::insert(
            start,
            format!("{}(", self.names.strip),
            anchor,
        ));
        self.edits.push(Edit::insert(end, ")", anchor));
    }
}

/// `locals()`, `vars()` or `dir()` without arguments: a namespace holding the record.
fn is_namespace_call(call: &ExprCall) -> bool {
    call.arguments.args.is_empty()
        && call.arguments.keywords.is_empty()
        && matches!(call.func.as_ref(), Expr::Name(n) if matches!(n.id.as_str(), "locals" | "vars" | "dir"))
}

impl<'a> SourceOrderVisitor<'a> for BodyEdits<'_, '_> {
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
            // Only what runs in this frame: decorators and defaults, bases and keywords.
            Stmt::FunctionDef(def) => {
                for d in &def.decorator_list {
                    self.visit_expr(&d.expression);
                }
                for p in def.parameters.iter_non_variadic_params() {
                    if let Some(default) = &p.default {
                        self.visit_expr(default);
                    }
                }
            }
            Stmt::ClassDef(class) => {
                for d in &class.decorator_list {
                    self.visit_expr(&d.expression);
                }
                if let Some(args) = &class.arguments {
                    self.visit_arguments(args);
                }
            }
            _ => walk_stmt(self, stmt),
        }
    }

    fn visit_expr(&mut self, expr: &'a Expr) {
        match expr {
            Expr::Yield(y) if self.lambdas == 0 => self.route_yield(y),
            Expr::Call(call) if is_namespace_call(call) => self.route_namespace_call(call),
            Expr::Lambda(lambda) => {
                if let Some(params) = &lambda.parameters {
                    for p in params.iter_non_variadic_params() {
                        if let Some(default) = &p.default {
                            self.visit_expr(default);
                        }
                    }
                }
                self.lambdas += 1;
                self.visit_expr(&lambda.body);
                self.lambdas -= 1;
            }
            _ => walk_expr(self, expr),
        }
    }
}

fn leading_ws(source: &str, line_start: usize) -> &str {
    let rest = source.get(line_start..).unwrap_or_default();
    let n = rest
        .bytes()
        .take_while(|b| matches!(b, b' ' | b'\t' | b'\x0c'))
        .count();
    rest.get(..n).unwrap_or_default()
}

fn only_ws_before(source: &str, lines: &LineIndex, offset: usize) -> bool {
    let ls = lines.line_start(lines.line_col(offset).0);
    source
        .get(ls..offset)
        .is_some_and(|s| s.bytes().all(|b| matches!(b, b' ' | b'\t' | b'\x0c')))
}

fn line_content_end(source: &str, from: usize) -> usize {
    let rest = source.get(from..).unwrap_or_default();
    let n = rest.find(['\n', '\r']).unwrap_or(rest.len());
    from + rest.get(..n).unwrap_or_default().trim_end().len()
}

fn line_ending(source: &str, from: usize) -> &'static str {
    let rest = source.get(from..).unwrap_or_default();
    match rest.find(['\n', '\r']) {
        Some(i) if rest.get(i..i + 2) == Some("\r\n") => "\r\n",
        Some(i) if rest.get(i..=i) == Some("\r") => "\r",
        _ => "\n",
    }
}

/// Byte ranges of string literals (f- and t-strings as a whole), where a line start must not
/// be touched.
fn string_spans(tokens: &[Token]) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut depth = 0usize;
    let mut open = 0usize;
    for t in tokens {
        match t.kind() {
            TokenKind::String if depth == 0 => {
                spans.push((t.start().to_usize(), t.end().to_usize()));
            }
            TokenKind::FStringStart | TokenKind::TStringStart => {
                if depth == 0 {
                    open = t.start().to_usize();
                }
                depth += 1;
            }
            TokenKind::FStringEnd | TokenKind::TStringEnd => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    spans.push((open, t.end().to_usize()));
                }
            }
            _ => {}
        }
    }
    spans
}

fn inside_any(spans: &[(usize, usize)], offset: usize) -> bool {
    let idx = spans.partition_point(|&(_, end)| end <= offset);
    spans
        .get(idx)
        .is_some_and(|&(start, end)| start < offset && offset < end)
}
