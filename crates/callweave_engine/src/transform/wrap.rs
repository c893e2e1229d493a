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

use ruff_python_ast::{Expr, ExprCall};
use ruff_text_size::Ranged;

use crate::plan::Layer;
use crate::posmap::{Anchor, Edit};

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

/// Edits routing `call` through `layers` (innermost first; must be non-empty).
pub(crate) fn call_edits(call: &ExprCall, layers: &[LayerTokens]) -> Vec<Edit> {
    let start = call.range().start().to_usize();
    let end = call.range().end().to_usize();
    let paren = call.arguments.range.start().to_usize();
    let close = call.arguments.range.end().to_usize().saturating_sub(1);
    let whole_call = Anchor {
        start,
        end,
        whole: false,
    };

    // Outermost first: OUTER(PRE_o, INNER, POST_o, PRE_i, ..., CALLEE, POST_innermost, args)
    let mut before: Vec<&str> = Vec::new();
    let mut prefix = String::new();
    for (i, layer) in layers.iter().rev().enumerate() {
        if i == 0 {
            prefix.push_str(&layer.callable);
            prefix.push('(');
        } else {
            before.push(&layer.callable);
            // The outer layer's POST follows the inner callable, which is its callee.
            if let Some(outer) = layers.get(layers.len() - i) {
                before.extend(outer.post.iter().map(String::as_str));
            }
        }
        before.extend(layer.pre.iter().map(String::as_str));
    }
    for token in &before {
        prefix.push_str(token);
        prefix.push_str(", ");
    }

    let innermost_post: &[String] = layers.first().map_or(&[], |l| l.post.as_slice());
    let has_args = !call.arguments.args.is_empty() || !call.arguments.keywords.is_empty();
    let lone_generator = match call.arguments.args.as_ref() {
        [Expr::Generator(g)] => !g.parenthesized && call.arguments.keywords.is_empty(),
        _ => false,
    };
    let mut open = String::new();
    for token in innermost_post {
        open.push_str(", ");
        open.push_str(token);
    }
    if has_args {
        open.push_str(", ");
    }
    if lone_generator {
        open.push('(');
    }

    let mut edits = vec![
        Edit::insert(start, prefix, whole_call),
        Edit::replace(
            paren,
            paren + 1,
            open,
            Anchor {
                start: paren,
                end: paren + 1,
                whole: false,
            },
        ),
    ];
    if lone_generator {
        edits.push(Edit::insert(
            close,
            ")",
            Anchor {
                start: close,
                end: close + 1,
                whole: false,
            },
        ));
    }
    edits
}
