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
//! A suite written on the `def` line moves to its own lines.

use ruff_python_ast::token::{Token, TokenKind};
use ruff_python_ast::{Expr, Stmt, StmtFunctionDef};
use ruff_text_size::Ranged;

use crate::posmap::{Anchor, Edit};
use crate::source::LineIndex;
use crate::EngineError;

/// Inputs shared by every profiled function of one module.
pub(crate) struct Context<'a> {
    pub(crate) source: &'a str,
    pub(crate) lines: &'a LineIndex,
    pub(crate) tokens: &'a [Token],
}

/// The injected names of a profile layer.
#[derive(Clone, Copy)]
pub(crate) struct Names<'n> {
    pub(crate) enter: &'n str,
    pub(crate) exit: &'n str,
    pub(crate) record: &'n str,
}

/// How the function's body was laid out, which decides whether nested profiled functions can
/// still be given room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    /// Body lines untouched.
    Kept,
    /// Every body line got one more space.
    Reindented,
}

/// Edits that run `def`'s body inside `with {enter}({index}) as {record}:`.
pub(crate) fn entry_edits<'e>(
    cx: &Context<'_>,
    def: &StmtFunctionDef,
    names: &Names<'_>,
    index: usize,
) -> Result<(Vec<Edit<'e>>, Layout), EngineError> {
    let Names {
        enter,
        exit,
        record,
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
    let first_at_line_start = only_ws_before(cx.source, cx.lines, first_start);
    let body_end = body
        .last()
        .map_or(first_start, |s| s.range().end().to_usize());
    let footer = |indent: &str| format!("{nl}{indent}{finally}");

    if !first_at_line_start {
        // The suite is on the header line: `def f(x): a; return b`.
        let colon = skip_ws_back(cx.source, first_start);
        if cx.source.as_bytes().get(colon.wrapping_sub(1)) != Some(&b':') {
            return Err(unsupported(
                "first statement does not follow the header's ':'",
            ));
        }
        let w = format!("{d} ");
        let mut edits = vec![Edit::replace(
            colon,
            first_start,
            format!("{nl}{w}"),
            Anchor::new(colon, first_start, false),
        )];
        match (doc, rest.first()) {
            (Some(doc), Some(next)) => edits.push(Edit::replace(
                doc.range().end().to_usize(),
                next.range().start().to_usize(),
                format!("{nl}{w}{assign}{nl}{w}try: "),
                anchor,
            )),
            (Some(doc), None) => {
                edits.push(Edit::insert(
                    doc.range().end().to_usize(),
                    format!("{nl}{w}{only_doc}"),
                    anchor,
                ));
                return Ok((edits, Layout::Kept));
            }
            (None, _) => edits.push(Edit::insert(
                first_start,
                format!("{assign}{nl}{w}try: "),
                anchor,
            )),
        }
        edits.push(Edit::insert(body_end, footer(&w), anchor));
        return Ok((edits, Layout::Kept));
    }

    let ind_start = cx.lines.line_start(cx.lines.line_col(first_start).0);
    let ind = cx.source.get(ind_start..first_start).unwrap_or_default();
    let Some(first_code) = rest.first() else {
        // Only a docstring: enter and exit right after it.
        let doc_end = first.range().end().to_usize();
        return Ok((
            vec![Edit::insert(
                doc_end,
                format!("{nl}{ind}{only_doc}"),
                anchor,
            )],
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
        edits.push(Edit::insert(
            code_line_start,
            format!("{w}{assign}{nl}{w}try:{nl}"),
            anchor,
        ));
        edits.push(Edit::insert(body_end, footer(&w), anchor));
        return Ok((edits, Layout::Kept));
    }

    // No room: the inserted lines take the body's indentation and the body moves one column
    // right.
    let mut edits = vec![Edit::insert(
        code_line_start,
        format!("{ind}{assign}{nl}{ind}try:{nl}"),
        anchor,
    )];
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
    edits.push(Edit::insert(body_end, footer(ind), anchor));
    Ok((edits, Layout::Reindented))
}

fn is_docstring(stmt: &Stmt) -> bool {
    matches!(stmt, Stmt::Expr(e) if matches!(e.value.as_ref(), Expr::StringLiteral(_)))
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

fn skip_ws_back(source: &str, mut offset: usize) -> usize {
    let bytes = source.as_bytes();
    while offset > 0 && matches!(bytes.get(offset - 1), Some(b' ' | b'\t' | b'\x0c')) {
        offset -= 1;
    }
    offset
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
