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

use ruff_python_ast::{Expr, ExprCall};
use ruff_text_size::Ranged;

use crate::posmap::{Anchor, Edit};
use crate::source::LineIndex;
use crate::transform::{CallSite, LayerTokens, Registered, Transform};

/// `wrap`: every call in a selected function (nested `def` and `class` bodies included) is
/// routed through a wrapper: `f(a)` → `WRAPPER(f, a)`, or `WRAPPER(f, SITES[i], a)` when
/// `sites` is given.
///
/// Options: `wrapper` (global name of the wrapper, required), `sites` (global name of a
/// sequence of site objects indexed by site id, passed after the callee).
#[derive(Debug)]
pub(crate) struct Wrap {
    wrapper: String,
    sites: Option<String>,
}

pub(crate) const REGISTERED: Registered = Registered {
    name: "wrap",
    summary: "route every call through a wrapper: f(a) -> WRAPPER(f, a)",
    build: |o| {
        Ok(std::sync::Arc::new(Wrap {
            wrapper: o.required_str("wrapper")?,
            sites: o.str("sites")?,
        }))
    },
};

impl Transform for Wrap {
    fn name(&self) -> &'static str {
        REGISTERED.name
    }

    fn injected_names(&self) -> Vec<&str> {
        let mut v = vec![self.wrapper.as_str()];
        v.extend(self.sites.as_deref());
        v
    }

    fn routes_calls(&self) -> bool {
        true
    }

    fn call_layer(&self, call: CallSite) -> LayerTokens {
        LayerTokens {
            callable: self.wrapper.clone(),
            pre: Vec::new(),
            post: self
                .sites
                .iter()
                .map(|s| format!("{s}[{}]", call.id))
                .collect(),
        }
    }

    fn simple_call_prefix(&self) -> Option<String> {
        self.sites.is_none().then(|| format!("{}(", self.wrapper))
    }
}

/// Where CPython starts the location of `call`'s CALL instruction: the call's start, except
/// for a method call (`obj.name(...)` compiled with LOAD_METHOD / LOAD_ATTR+CALL) whose
/// attribute ends on a later line than the call starts, which CPython moves to the attribute
/// name (`update_start_location_to_match_attr`). The wrapper call inherits that location so
/// tracebacks keep the original line and carets. `imported` says whether a name is bound by an
/// import at module level (see [`crate::bindings::module_imports`]).
pub(crate) fn call_location_start(
    call: &ExprCall,
    source: &str,
    lines: &LineIndex,
    imported: &dyn Fn(&str) -> bool,
) -> usize {
    let start = call.range().start().to_usize();
    let Expr::Attribute(attr) = call.func.as_ref() else {
        return start;
    };
    // Most method calls fit on one line: no line break between the call's start and the
    // attribute's end (then both are on one line) settles it before any lookup.
    let attr_end = attr.range().end().to_usize();
    let spans_lines = source
        .as_bytes()
        .get(start..attr_end)
        .is_some_and(has_line_break);
    if !spans_lines || lines.line_col(start).0 == lines.line_col(attr_end).0 {
        return start;
    }
    let args = &call.arguments;
    let imported = matches!(attr.value.as_ref(), Expr::Name(n) if imported(n.id.as_str()));
    let starred = args.args.iter().any(|a| matches!(a, Expr::Starred(_)));
    let double_star = args.keywords.iter().any(|k| k.arg.is_none());
    let stack = args.args.len() + args.keywords.len() + usize::from(!args.keywords.is_empty());
    // STACK_USE_GUIDELINE in CPython's compiler.
    if imported || starred || double_star || stack >= 30 {
        return start;
    }
    // CPython subtracts the name's length in code points from a byte column; do the same.
    attr_end.saturating_sub(attr.attr.id.chars().count())
}

/// Whether `text` holds a `\n` or `\r`. Most texts asked about are a method call's callee
/// (`self.name`), shorter than what a vectorised search starts to pay for.
fn has_line_break(text: &[u8]) -> bool {
    if text.len() <= 32 {
        text.iter().any(|&b| b == b'\n' || b == b'\r')
    } else {
        memchr::memchr2(b'\n', b'\r', text).is_some()
    }
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
