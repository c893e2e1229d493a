//! Nesting bounds, from the token stream alone.
//!
//! The engine walks the syntax tree recursively (and dropping a tree recurses too), so a tree
//! deeper than the stack crashes the process. Before any walk, [`scan`] reads the parser's
//! tokens (a flat list, no recursion) and computes:
//! - the deepest bracket nesting (`(`, `[`, `{`, f-string fields), which CPython caps at 200
//!   ("too many nested parentheses");
//! - the deepest indentation, which CPython caps at 99 levels ("too many levels of
//!   indentation");
//! - an upper bound of the syntax tree's depth: every tree level comes from a bracket, an
//!   operator, a keyword or `.`/`:`, and the depth of one comma-separated element is at most
//!   the number of such tokens in it plus the depth of its deepest bracketed part.
//!
//! [`Nesting::check`] turns them into [`EngineError::TooDeep`] when CPython would reject the
//! source or the tree could be deeper than what the engine walks safely; the caller compiles
//! the original then, so the user gets CPython's own error (or the module imports unmodified).
//!
//! The bound also says how much stack the walks need: the engine runs them on the caller's
//! stack when enough of it is left, else on a stack segment of that size (`stacker`, which
//! ruff's parser uses the same way), so no thread (Python's 1 MiB threads included) overflows.
//!
//! The bracket depths (one entry per bracket) let the call router tell, for any call, how deep
//! its wrapper would nest in the new source (see [`Nesting::max_level`]); they are read from the
//! tokens again on first use, which only modules nesting brackets near CPython's limit need.

use ruff_python_ast::token::{TokenKind, Tokens};
use ruff_text_size::Ranged;

use crate::source::LineIndex;
use crate::EngineError;

/// CPython's tokenizer refuses a bracket nested deeper than this (`MAXLEVEL`).
pub(crate) const MAX_BRACKETS: usize = 200;
/// CPython's tokenizer refuses this many indentation levels (`MAXINDENT`).
pub(crate) const MAX_INDENT: usize = 100;
/// The deepest tree (by [`scan`]'s bound) the engine walks. Deeper than anything CPython 3.11-
/// 3.13 compiles (3.13 accepts chains of about 8,000 calls; 3.11 about 2,500).
pub(crate) const MAX_TREE_DEPTH: usize = 20_000;
/// Above this bound a rejected tree is leaked instead of dropped: such input (hundreds of
/// kilobytes of pure nesting) is rejected by every CPython anyway.
pub(crate) const MAX_DROP_DEPTH: usize = 100_000;
/// Stack the engine's walks use per tree level, with a wide margin (measured: well under 1 KiB
/// in release builds; debug builds use more).
const WALK_BYTES_PER_LEVEL: usize = 4 << 10;
/// Stack dropping a tree uses per level, with a margin.
const DROP_BYTES_PER_LEVEL: usize = 512;
/// Stack everything but the tree walks needs.
const BASE_STACK: usize = 256 << 10;

/// Every bracket's position and depth, for [`Nesting::max_level`].
#[derive(Debug, Default)]
struct Brackets {
    /// `(offset, depth)` for every opening bracket, in source order: `depth` is the nesting
    /// level the bracket opens (1 for an outermost one).
    opens: Vec<(usize, u16)>,
    /// `(offset, depth)` at every bracket (opening or closing): the nesting level from just
    /// after that bracket on.
    levels: Vec<(usize, u16)>,
    /// Segment tree of `opens`' depths (maximum): leaves at `opens.len()..`.
    tree: Vec<u16>,
}

impl Brackets {
    /// Reads the brackets of `tokens` (the tokens [`scan`] read).
    fn new(tokens: &Tokens) -> Self {
        let mut b = Self::default();
        let mut brackets = 0usize;
        for token in tokens.iter() {
            let offset = token.start().to_usize();
            match token.kind() {
                TokenKind::Lpar | TokenKind::Lsqb | TokenKind::Lbrace => {
                    brackets += 1;
                    let depth = u16::try_from(brackets).unwrap_or(u16::MAX);
                    b.opens.push((offset, depth));
                    b.levels.push((offset, depth));
                }
                TokenKind::Rpar | TokenKind::Rsqb | TokenKind::Rbrace => {
                    brackets = brackets.saturating_sub(1);
                    b.levels
                        .push((offset, u16::try_from(brackets).unwrap_or(u16::MAX)));
                }
                _ => {}
            }
        }
        let len = b.opens.len();
        let mut t = vec![0u16; 2 * len];
        for (i, &(_, d)) in b.opens.iter().enumerate() {
            if let Some(slot) = t.get_mut(len + i) {
                *slot = d;
            }
        }
        for i in (1..len).rev() {
            let v = t
                .get(2 * i)
                .copied()
                .unwrap_or(0)
                .max(t.get(2 * i + 1).copied().unwrap_or(0));
            if let Some(slot) = t.get_mut(i) {
                *slot = v;
            }
        }
        b.tree = t;
        b
    }
}

/// What [`scan`] found.
#[derive(Debug, Default)]
pub(crate) struct Nesting {
    /// The brackets, read from the tokens on first use.
    brackets_at: std::cell::OnceCell<Brackets>,
    /// Deepest bracket level and the offset of the bracket that reaches it.
    pub(crate) brackets: (usize, usize),
    /// Deepest indentation and the offset of the indent that reaches it.
    pub(crate) indent: (usize, usize),
    /// Upper bound of the syntax tree's depth, and the offset of the statement reaching it.
    pub(crate) tree_depth: (usize, usize),
}

#[derive(Default, Clone, Copy)]
struct Frame {
    /// Depth-adding tokens in the current element.
    count: usize,
    /// Deepest closed bracketed part of the current element.
    child: usize,
    /// Deepest element so far.
    best: usize,
    /// `lambda`s whose parameter list is still open (their commas do not end an element).
    lambdas: usize,
}

impl Frame {
    fn end_element(&mut self) {
        self.best = self.best.max(self.count + self.child);
        self.count = 0;
        self.child = 0;
    }

    fn depth(&self) -> usize {
        self.best.max(self.count + self.child)
    }
}

/// Scans `tokens` (see the module documentation). Linear, no recursion.
pub(crate) fn scan(tokens: &Tokens) -> Nesting {
    let mut n = Nesting::default();
    // frames[0] is the statement being read; one more per open bracket or f-string.
    let mut frames: Vec<Frame> = vec![Frame::default()];
    let mut indent = 0usize;
    let mut statement_start = 0usize;
    let mut brackets = 0usize;
    for token in tokens.iter() {
        match token.kind() {
            // The most common tokens, which add no depth: settled first.
            TokenKind::Name
            | TokenKind::String
            | TokenKind::Int
            | TokenKind::Float
            | TokenKind::Comment
            | TokenKind::NonLogicalNewline => {}
            TokenKind::Lpar | TokenKind::Lsqb | TokenKind::Lbrace => {
                brackets += 1;
                if brackets > n.brackets.0 {
                    n.brackets = (brackets, token.start().to_usize());
                }
                open(&mut frames);
            }
            TokenKind::FStringStart | TokenKind::TStringStart => open(&mut frames),
            TokenKind::Rpar | TokenKind::Rsqb | TokenKind::Rbrace => {
                brackets = brackets.saturating_sub(1);
                close(&mut frames);
            }
            TokenKind::FStringEnd | TokenKind::TStringEnd => close(&mut frames),
            TokenKind::Comma => {
                if let Some(f) = frames.last_mut() {
                    if f.lambdas == 0 {
                        f.end_element();
                    }
                }
            }
            TokenKind::Newline | TokenKind::Semi | TokenKind::EndOfFile => {
                // A logical line ends every bracket (only broken code leaves one open).
                while frames.len() > 1 {
                    close(&mut frames);
                }
                if let Some(f) = frames.first_mut() {
                    let depth = f.depth() + 2 * indent + 2;
                    if depth > n.tree_depth.0 {
                        n.tree_depth = (depth, statement_start);
                    }
                    *f = Frame::default();
                }
                statement_start = token.end().to_usize();
            }
            TokenKind::Indent => {
                indent += 1;
                if indent > n.indent.0 {
                    n.indent = (indent, token.start().to_usize());
                }
                statement_start = token.end().to_usize();
            }
            TokenKind::Dedent => {
                indent = indent.saturating_sub(1);
                statement_start = token.end().to_usize();
            }
            TokenKind::Lambda => {
                if let Some(f) = frames.last_mut() {
                    f.count += 1;
                    f.lambdas += 1;
                }
            }
            TokenKind::Colon => {
                if let Some(f) = frames.last_mut() {
                    f.count += 1;
                    f.lambdas = f.lambdas.saturating_sub(1);
                }
            }
            kind if kind.is_operator() || kind.is_keyword() => {
                if let Some(f) = frames.last_mut() {
                    f.count += 1;
                }
            }
            _ => {}
        }
    }
    n
}

fn open(frames: &mut Vec<Frame>) {
    if let Some(f) = frames.last_mut() {
        f.count += 1;
    }
    frames.push(Frame::default());
}

fn close(frames: &mut Vec<Frame>) {
    if frames.len() < 2 {
        return;
    }
    let Some(inner) = frames.pop() else { return };
    if let Some(f) = frames.last_mut() {
        f.child = f.child.max(inner.depth() + 1);
    }
}

impl Nesting {
    /// The error for a source CPython rejects for its nesting or that is too deep to walk.
    pub(crate) fn check(&self, lines: &LineIndex) -> Result<(), EngineError> {
        let too_deep = |what: String, offset: usize| {
            let (line, _) = lines.line_col(offset);
            Err(EngineError::TooDeep { what, line })
        };
        if self.brackets.0 > MAX_BRACKETS {
            return too_deep(
                format!(
                    "brackets nested {} deep (Python allows {MAX_BRACKETS})",
                    self.brackets.0
                ),
                self.brackets.1,
            );
        }
        if self.indent.0 >= MAX_INDENT {
            return too_deep(
                format!(
                    "{} levels of indentation (Python allows {})",
                    self.indent.0,
                    MAX_INDENT - 1
                ),
                self.indent.1,
            );
        }
        if self.tree_depth.0 > MAX_TREE_DEPTH {
            return too_deep(
                format!(
                    "an expression nested up to {} levels deep (the engine walks {MAX_TREE_DEPTH})",
                    self.tree_depth.0
                ),
                self.tree_depth.1,
            );
        }
        Ok(())
    }

    /// Whether a tree within this bound is dropped (rather than leaked) when rejected.
    pub(crate) fn droppable(&self) -> bool {
        self.tree_depth.0 <= MAX_DROP_DEPTH
    }

    /// Stack that walking (`walk`) or only dropping the tree needs, by the depth bound.
    pub(crate) fn stack_needed(&self, walk: bool) -> usize {
        let per_level = if walk {
            WALK_BYTES_PER_LEVEL
        } else {
            DROP_BYTES_PER_LEVEL
        };
        BASE_STACK + self.tree_depth.0.min(MAX_DROP_DEPTH) * per_level
    }

    fn brackets(&self, tokens: &Tokens) -> &Brackets {
        self.brackets_at.get_or_init(|| Brackets::new(tokens))
    }

    /// Bracket level at `offset` (the number of brackets open there); `tokens` are the tokens
    /// [`scan`] read.
    pub(crate) fn level_at(&self, tokens: &Tokens, offset: usize) -> usize {
        let levels = &self.brackets(tokens).levels;
        let idx = levels.partition_point(|&(o, _)| o < offset);
        idx.checked_sub(1)
            .and_then(|i| levels.get(i))
            .map_or(0, |&(_, d)| usize::from(d))
    }

    /// The deepest bracket level reached in `start..end`: the level at `start` or that of any
    /// bracket opened inside the range; `tokens` are the tokens [`scan`] read.
    pub(crate) fn max_level(&self, tokens: &Tokens, start: usize, end: usize) -> usize {
        let ambient = self.level_at(tokens, start);
        let Brackets { opens, tree, .. } = self.brackets(tokens);
        let lo = opens.partition_point(|&(o, _)| o < start);
        let hi = opens.partition_point(|&(o, _)| o < end);
        if lo >= hi {
            return ambient;
        }
        let len = opens.len();
        let (mut l, mut r) = (lo + len, hi + len);
        let mut best = 0u16;
        while l < r {
            if l & 1 == 1 {
                best = best.max(tree.get(l).copied().unwrap_or(0));
                l += 1;
            }
            if r & 1 == 1 {
                r -= 1;
                best = best.max(tree.get(r).copied().unwrap_or(0));
            }
            l /= 2;
            r /= 2;
        }
        ambient.max(usize::from(best))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ruff_python_parser::parse_module;

    fn nesting(src: &str) -> Nesting {
        let parsed = parse_module(src).expect("parses");
        scan(parsed.tokens())
    }

    #[test]
    fn brackets_and_indentation() {
        let n = nesting("x = [(1, {2: 3})]\nif a:\n    if b:\n        pass\n");
        assert_eq!(n.brackets.0, 3);
        assert_eq!(n.indent.0, 2);
    }

    #[test]
    fn tree_depth_bounds_chains_and_prefix_operators() {
        let chain = nesting(&format!("x = f{}\n", "()".repeat(500)));
        assert!(chain.tree_depth.0 >= 500);
        let plus = nesting(&format!("x = {}\n", vec!["1"; 700].join("+")));
        assert!(plus.tree_depth.0 >= 699);
        let lambdas = nesting(&format!("x = {}1\n", "lambda a, b: ".repeat(300)));
        assert!(lambdas.tree_depth.0 >= 300);
    }

    #[test]
    fn flat_tables_stay_shallow() {
        let calls: Vec<String> = (0..5000).map(|i| format!("P({i}, -{i})")).collect();
        let n = nesting(&format!("T = [{}]\n", calls.join(", ")));
        assert!(n.tree_depth.0 < 20, "{}", n.tree_depth.0);
        assert!(n.check(&LineIndex::new("")).is_ok());
    }

    #[test]
    fn max_level_of_ranges() {
        let parsed = parse_module("x = f(a[(1)], g)\n").expect("parses");
        let (n, t) = (scan(parsed.tokens()), parsed.tokens());
        assert_eq!(n.level_at(t, 0), 0);
        assert_eq!(n.level_at(t, 6), 1);
        assert_eq!(n.max_level(t, 4, 16), 3);
        assert_eq!(n.max_level(t, 14, 15), 1);
        assert_eq!(n.max_level(t, 0, 3), 0);
    }
}
