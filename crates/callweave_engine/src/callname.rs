//! Call names, in recompyle's syntax, for blacklists and whitelists.
//!
//! A call's name is built from its callee: `a.b[0].c[key].d` for `a.b[0].c["key"].d(...)`.
//! String subscripts are written without quotes; a call in the chain contributes its callee's
//! name (`a.b(x).c()` is named `a.b.c`). A pattern is a name in which any subscript may be `*`,
//! matching any one subscript (recompyle's `[*]`), and any name level may be `*`, matching any
//! one name (`log.*` matches `log.info`; an extension of recompyle's syntax).

use ruff_python_ast::{Expr, Number};
use ruff_text_size::Ranged;

use crate::EngineError;

/// One step of a call name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// An identifier: the first name or an attribute.
    Name(String),
    /// A subscript's text (string subscripts unquoted).
    Subscript(String),
}

/// A parsed call name or pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallName(pub Vec<Segment>);

impl CallName {
    /// Parses an entry of a blacklist or whitelist.
    pub fn parse(entry: &str) -> Result<Self, EngineError> {
        let bad = |reason: &str| EngineError::BadCallName {
            entry: entry.to_owned(),
            reason: reason.to_owned(),
        };
        let mut segments = Vec::new();
        let mut rest = entry;
        let mut expect_name = true;
        while !rest.is_empty() {
            if expect_name {
                let end = rest.find(['.', '[', ']']).unwrap_or(rest.len());
                let (name, tail) = rest.split_at(end);
                if name.is_empty() {
                    return Err(bad("expected a name"));
                }
                if name != "*" && !is_identifier(name) {
                    return Err(bad(&format!("{name:?} is not a Python identifier")));
                }
                segments.push(Segment::Name(name.to_owned()));
                rest = tail;
                expect_name = false;
            } else if let Some(tail) = rest.strip_prefix('.') {
                if tail.is_empty() {
                    return Err(bad("ends with '.'"));
                }
                rest = tail;
                expect_name = true;
            } else if let Some(tail) = rest.strip_prefix('[') {
                let close = tail.find(']').ok_or_else(|| bad("unclosed '['"))?;
                let (inner, tail) = tail.split_at(close);
                if inner.is_empty() {
                    return Err(bad("empty subscript '[]'"));
                }
                if inner.contains('[') {
                    return Err(bad("nested '[' in a subscript"));
                }
                segments.push(Segment::Subscript(inner.to_owned()));
                rest = tail.get(1..).unwrap_or_default();
            } else {
                return Err(bad("expected '.' or '[' after a name or subscript"));
            }
        }
        if segments.is_empty() {
            return Err(bad("empty call name"));
        }
        Ok(Self(segments))
    }

    /// Whether `name` matches this pattern: same segments, where a `*` subscript matches any
    /// subscript.
    pub fn matches(&self, name: &CallName) -> bool {
        self.0.len() == name.0.len()
            && self.0.iter().zip(&name.0).all(|(p, n)| match (p, n) {
                (Segment::Name(a), Segment::Name(b)) => a == "*" || a == b,
                (Segment::Subscript(a), Segment::Subscript(b)) => a == "*" || a == b,
                _ => false,
            })
    }

    /// The first segment's name when the whole name is one plain identifier.
    pub fn as_simple_name(&self) -> Option<&str> {
        match self.0.as_slice() {
            [Segment::Name(n)] => Some(n),
            _ => None,
        }
    }
}

impl std::fmt::Display for CallName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Segment::Name(n) if i == 0 => f.write_str(n)?,
                Segment::Name(n) => write!(f, ".{n}")?,
                Segment::Subscript(s) => write!(f, "[{s}]")?,
            }
        }
        Ok(())
    }
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_alphabetic())
        && chars.all(|c| c == '_' || c.is_alphanumeric())
}

/// The call name of a callee expression, or `None` when it has none (a lambda, an operator…).
pub fn callee_name(expr: &Expr, source: &str) -> Option<CallName> {
    let mut segments = Vec::new();
    push_segments(expr, source, &mut segments)?;
    Some(CallName(segments))
}

/// The text of [`callee_name`] (`callee_name(expr, source).map(|n| n.to_string())`), written
/// straight into one string: what every routed call's site records.
pub(crate) fn callee_text(expr: &Expr, source: &str) -> Option<String> {
    // The name is the callee's text less its calls' arguments, mostly: one allocation.
    let mut out = String::with_capacity(expr.range().len().to_usize());
    push_text(expr, source, &mut out)?;
    Some(out)
}

/// Appends the text of [`callee_name`] to `out` (where every routed call's site records it,
/// one string for all sites) and returns its byte range there; `None`, with `out` unchanged,
/// when the callee has no name.
pub(crate) fn push_callee(
    expr: &Expr,
    source: &str,
    out: &mut String,
) -> Option<std::ops::Range<u32>> {
    let start = out.len();
    if push_text(expr, source, out).is_none() {
        out.truncate(start);
        return None;
    }
    match (u32::try_from(start), u32::try_from(out.len())) {
        (Ok(s), Ok(e)) => Some(s..e),
        _ => {
            out.truncate(start);
            None
        }
    }
}

/// Appends `expr`'s call name to `out`. The chain's base is always a name (the only case that
/// does not recurse), so it is the first thing written and the only one without a `.`.
fn push_text(expr: &Expr, source: &str, out: &mut String) -> Option<()> {
    match expr {
        Expr::Name(n) => out.push_str(n.id.as_str()),
        Expr::Attribute(a) => {
            push_text(&a.value, source, out)?;
            out.push('.');
            out.push_str(a.attr.id.as_str());
        }
        Expr::Call(c) => push_text(&c.func, source, out)?,
        Expr::Subscript(s) => {
            push_text(&s.value, source, out)?;
            out.push('[');
            out.push_str(&subscript_text(&s.slice, source)?);
            out.push(']');
        }
        _ => return None,
    }
    Some(())
}

fn push_segments(expr: &Expr, source: &str, out: &mut Vec<Segment>) -> Option<()> {
    match expr {
        Expr::Name(n) => out.push(Segment::Name(n.id.to_string())),
        Expr::Attribute(a) => {
            push_segments(&a.value, source, out)?;
            out.push(Segment::Name(a.attr.id.to_string()));
        }
        Expr::Call(c) => push_segments(&c.func, source, out)?,
        Expr::Subscript(s) => {
            push_segments(&s.value, source, out)?;
            out.push(Segment::Subscript(subscript_text(&s.slice, source)?));
        }
        _ => return None,
    }
    Some(())
}

/// recompyle's rendering of a subscript: literals by value (strings without quotes), names by
/// name, anything nameable by its call name.
fn subscript_text(expr: &Expr, source: &str) -> Option<String> {
    match expr {
        Expr::StringLiteral(s) => Some(s.value.to_str().to_owned()),
        Expr::NumberLiteral(n) => match &n.value {
            Number::Int(i) => Some(i.to_string()),
            _ => source
                .get(std::ops::Range::<usize>::from(n.range))
                .map(str::to_owned),
        },
        Expr::BooleanLiteral(b) => Some(if b.value { "True" } else { "False" }.to_owned()),
        Expr::NoneLiteral(_) => Some("None".to_owned()),
        other => callee_text(other, source),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_recompyle_syntax() {
        let n = CallName::parse("a.b[0].c[c].c_2").expect("valid");
        assert_eq!(
            n.0,
            vec![
                Segment::Name("a".into()),
                Segment::Name("b".into()),
                Segment::Subscript("0".into()),
                Segment::Name("c".into()),
                Segment::Subscript("c".into()),
                Segment::Name("c_2".into()),
            ]
        );
        assert_eq!(n.to_string(), "a.b[0].c[c].c_2");
    }

    #[test]
    fn rejects_bad_entries() {
        for bad in [
            "", ".a", "a.", "a..b", "a[", "a[]", "a]", "a b", "1a", "a[x]y", "a.**",
        ] {
            let err = CallName::parse(bad).expect_err(bad);
            assert!(err.to_string().contains(&format!("'{bad}'")), "{err}");
        }
    }

    #[test]
    fn callee_text_is_the_call_names_display() {
        for src in [
            "f()",
            "a.b.c()",
            "a.b(x).c()",
            "a[0].b['k'].c[1.5][True][None][-1](y)",
            "a[b.c[0]].d()",
            "a[b()]()",
            "(lambda: 0)()",
            "a[b + 1]()",
            "x.y[1:2]()",
            "a . b()",
            "a.\\\n  b()",
            "(a).b()",
            "(a.b)()",
            "(a\n  .b)()",
            // Names are NFKC-normalised: µ (U+00B5) is named μ (U+03BC).
            "µ.x()",
            "a.µ()",
        ] {
            let parsed = ruff_python_parser::parse_expression(src).expect("parses");
            let Expr::Call(call) = parsed.expr() else {
                unreachable!("{src} is not a call");
            };
            assert_eq!(
                callee_text(&call.func, src),
                callee_name(&call.func, src).map(|n| n.to_string()),
                "{src}"
            );
            let mut names = String::from("before");
            let range = push_callee(&call.func, src, &mut names);
            assert_eq!(
                range.map(|r| names[r.start as usize..r.end as usize].to_owned()),
                callee_text(&call.func, src),
                "{src}"
            );
            assert!(names.starts_with("before"), "{src}");
        }
    }

    #[test]
    fn wildcards_match_any_subscript() {
        let p = CallName::parse("a[*].b[x]").expect("valid");
        assert!(p.matches(&CallName::parse("a[0].b[x]").expect("valid")));
        assert!(p.matches(&CallName::parse("a[key].b[x]").expect("valid")));
        assert!(!p.matches(&CallName::parse("a[0].b[y]").expect("valid")));
        assert!(!p.matches(&CallName::parse("a.c.b[x]").expect("valid")));
        let q = CallName::parse("log.*").expect("valid");
        assert!(q.matches(&CallName::parse("log.info").expect("valid")));
        assert!(!q.matches(&CallName::parse("log.info.x").expect("valid")));
        assert!(!q.matches(&CallName::parse("log[0]").expect("valid")));
    }
}
