//! Call routing: `f(a, *b, k=1)` → `W(f, a, *b, k=1)`, composed over layers.
//!
//! A layer turns a call with callee `C` and arguments `A` into a call of its own callable with
//! arguments `PRE ++ [C] ++ POST ++ A`: call wrapping has `PRE = []` and `POST = [SITES[i]]`
//! when the site is passed; flat profiling has `PRE = [RECORD, i]` and `POST = []`. Layers
//! compose innermost first, so an outer layer's callee is the inner layer's callable.
//!
//! Edits: the prefix (outer callable, its `PRE`, inner callables…) is inserted before the
//! callee; the call's `(` becomes `, ` followed by the innermost `POST` (or disappears when
//! nothing follows); a lone unparenthesised generator argument gets its parentheses back.
//!
//! A call with `*` or `**` arguments keeps its arguments instead:
//! `BIND(k, OUTER, PRE..., C, POST...)(A)` (see [`crate::plan::Plan::bind`]), so that the
//! errors CPython raises while unpacking `A` name the callee rather than `OUTER`.

use std::collections::HashSet;

use ruff_python_ast::{Expr, ExprCall};
use ruff_text_size::Ranged;

use crate::plan::Layer;
use crate::posmap::{Anchor, Edit};
use crate::source::LineIndex;

/// The injected tokens of one layer for one call.
pub(crate) struct LayerTokens {
    pub(crate) callable: String,
    pub(crate) pre: Vec<String>,
    pub(crate) post: Vec<String>,
}

impl LayerTokens {
    /// Tokens of `layer` for the call with site id `site` that is the `local`-th site of its
    /// profiled function; `awaited` when the call is the operand of `await`.
    pub(crate) fn new(layer: &Layer, site: u32, local: u32, awaited: bool) -> Self {
        match layer {
            Layer::Wrap { wrapper, sites } => Self {
                callable: wrapper.clone(),
                pre: Vec::new(),
                post: sites.iter().map(|s| format!("{s}[{site}]")).collect(),
            },
            Layer::Profile {
                timer,
                atimer,
                record,
                ..
            } => Self {
                callable: if awaited { atimer } else { timer }.clone(),
                pre: vec![record.clone(), local.to_string()],
                post: Vec::new(),
            },
        }
    }
}

/// Where CPython starts the location of `call`'s CALL instruction: the call's start, except
/// for a method call (`obj.name(...)` compiled with LOAD_METHOD / LOAD_ATTR+CALL) whose
/// attribute ends on a later line than the call starts, which CPython moves to the attribute
/// name (`update_start_location_to_match_attr`). The wrapper call inherits that location so
/// tracebacks keep the original line and carets.
pub(crate) fn call_location_start(
    call: &ExprCall,
    lines: &LineIndex,
    module_imports: &HashSet<String>,
) -> usize {
    let start = call.range().start().to_usize();
    let Expr::Attribute(attr) = call.func.as_ref() else {
        return start;
    };
    let args = &call.arguments;
    let imported =
        matches!(attr.value.as_ref(), Expr::Name(n) if module_imports.contains(n.id.as_str()));
    let starred = args.args.iter().any(|a| matches!(a, Expr::Starred(_)));
    let double_star = args.keywords.iter().any(|k| k.arg.is_none());
    let stack = args.args.len() + args.keywords.len() + usize::from(!args.keywords.is_empty());
    // STACK_USE_GUIDELINE in CPython's compiler.
    if imported || starred || double_star || stack >= 30 {
        return start;
    }
    let attr_end = attr.range().end().to_usize();
    if lines.line_col(start).0 == lines.line_col(attr_end).0 {
        return start;
    }
    // CPython subtracts the name's length in code points from a byte column; do the same.
    attr_end.saturating_sub(attr.attr.id.chars().count())
}

/// The common case, one wrap layer without sites: `W(` before the callee, `(` → `, ` or
/// nothing. `prefix` is the precomputed `W(`.
pub(crate) fn simple_wrap_edits<'e>(
    call: &ExprCall,
    prefix: &'e str,
    location_start: usize,
    edits: &mut Vec<Edit<'e>>,
) {
    let start = call.range().start().to_usize();
    let end = call.range().end().to_usize();
    let paren = call.arguments.range.start().to_usize();
    let has_args = !call.arguments.args.is_empty() || !call.arguments.keywords.is_empty();
    let lone_generator = match call.arguments.args.as_ref() {
        [Expr::Generator(g)] => !g.parenthesized && call.arguments.keywords.is_empty(),
        _ => false,
    };
    let open: &'static str = match (has_args, lone_generator) {
        (_, true) => ", (",
        (true, false) => ", ",
        (false, false) => "",
    };
    edits.push(Edit::insert(
        start,
        prefix,
        Anchor {
            start,
            end,
            location_start,
            whole: false,
        },
    ));
    edits.push(Edit::replace(
        paren,
        paren + 1,
        open,
        Anchor::new(paren, paren + 1, false),
    ));
    if lone_generator {
        let close = call.arguments.range.end().to_usize().saturating_sub(1);
        edits.push(Edit::insert(
            close,
            ")",
            Anchor::new(close, close + 1, false),
        ));
    }
}

/// Whether `call` has a `*` or `**` argument. Such calls are routed through the plan's binder
/// (see [`crate::plan::Plan::bind`]) so that CPython's argument-unpacking errors name the callee.
pub(crate) fn has_unpacking(call: &ExprCall) -> bool {
    call.arguments
        .args
        .iter()
        .any(|a| matches!(a, Expr::Starred(_)))
        || call.arguments.keywords.iter().any(|k| k.arg.is_none())
}

/// Edits routing `call` through `layers` (innermost first; must be non-empty); `location_start`
/// is where the call's own location starts (see [`call_location_start`]).
///
/// With `bind` (given for calls with `*` or `**` arguments only, see [`has_unpacking`]), the
/// call keeps its own arguments: `BIND(k, OUTER, PRE_o, ..., CALLEE, POST_innermost)(args)`,
/// `k` being the callee's index among the tokens after `OUTER`. The inserted `)` closing the
/// binder's call is anchored at the whole call, so both calls (the binder's and the bound
/// one's) carry the call's original location.
pub(crate) fn call_edits<'e>(
    call: &ExprCall,
    layers: &[LayerTokens],
    location_start: usize,
    bind: Option<&str>,
) -> Vec<Edit<'e>> {
    let start = call.range().start().to_usize();
    let end = call.range().end().to_usize();
    let paren = call.arguments.range.start().to_usize();
    let close = call.arguments.range.end().to_usize().saturating_sub(1);
    let whole_call = Anchor {
        start,
        end,
        location_start,
        whole: false,
    };

    // Outermost first: OUTER(PRE_o, INNER, POST_o, PRE_i, ..., CALLEE, POST_innermost, args);
    // `before` holds the tokens between `OUTER(` and the callee.
    let mut outer = "";
    let mut before: Vec<&str> = Vec::new();
    for (i, layer) in layers.iter().rev().enumerate() {
        if i == 0 {
            outer = &layer.callable;
        } else {
            before.push(&layer.callable);
            // The outer layer's POST follows the inner callable, which is its callee.
            if let Some(outer) = layers.get(layers.len() - i) {
                before.extend(outer.post.iter().map(String::as_str));
            }
        }
        before.extend(layer.pre.iter().map(String::as_str));
    }
    let mut prefix = match bind {
        Some(bind) => format!("{bind}({}, {outer}, ", before.len()),
        None => format!("{outer}("),
    };
    for token in &before {
        prefix.push_str(token);
        prefix.push_str(", ");
    }

    let innermost_post: &[String] = layers.first().map_or(&[], |l| l.post.as_slice());
    let mut open = String::new();
    for token in innermost_post {
        open.push_str(", ");
        open.push_str(token);
    }
    if bind.is_some() {
        // The call's own `(`, arguments and `)` stay as written.
        open.push(')');
        return vec![
            Edit::insert(start, prefix, whole_call),
            Edit::insert(paren, open, whole_call),
        ];
    }

    let has_args = !call.arguments.args.is_empty() || !call.arguments.keywords.is_empty();
    let lone_generator = match call.arguments.args.as_ref() {
        [Expr::Generator(g)] => !g.parenthesized && call.arguments.keywords.is_empty(),
        _ => false,
    };
    if has_args {
        open.push_str(", ");
    }
    if lone_generator {
        open.push('(');
    }

    let mut edits = vec![
        Edit::insert(start, prefix, whole_call),
        Edit::replace(paren, paren + 1, open, Anchor::new(paren, paren + 1, false)),
    ];
    if lone_generator {
        edits.push(Edit::insert(
            close,
            ")",
            Anchor::new(close, close + 1, false),
        ));
    }
    edits
}
