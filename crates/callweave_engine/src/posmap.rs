//! Text edits and the position map they leave behind.
//!
//! The rewritten source is the original with small fragments inserted or replaced. Applying the
//! edits records, for every byte of the new text, where it came from: copied bytes map to their
//! original offset; inserted bytes map to the *anchor* of their edit, the original range of the
//! construct the fragment serves (a call for a call wrapper, the `def` line for entry code).
//! Code compiled from an edit marked [`Edit::unlocated`] (a profiled function's entry and exit)
//! gets no location at all, like CPython's own artificial instructions.

use std::borrow::Cow;

use crate::linetable::Location;
use crate::source::LineIndex;
use crate::EngineError;

/// The original range an inserted fragment stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Anchor {
    /// Original start offset.
    pub start: usize,
    /// Original end offset (exclusive).
    pub end: usize,
    /// Where CPython starts the location of the construct's call instruction (it differs from
    /// `start` for method calls whose attribute name is on a later line). Used for call
    /// instructions located at the anchor; every other location starts at `start`.
    pub location_start: usize,
    /// If a position *starts* inside the fragment, the whole position becomes the anchor
    /// (inserted statements); otherwise only the endpoints inside the fragment move to it.
    pub whole: bool,
}

/// One planned change: replace `start..end` of the original (empty for an insertion) by `text`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Edit<'a> {
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) text: Cow<'a, str>,
    pub(crate) anchor: Anchor,
    /// False when the code compiled from `text` must carry no location (see
    /// [`PositionMap::map_location`]).
    pub(crate) located: bool,
}

impl Anchor {
    /// An anchor for a construct whose instructions are located at its own range.
    pub fn new(start: usize, end: usize, whole: bool) -> Self {
        Self {
            start,
            end,
            location_start: start,
            whole,
        }
    }
}

impl<'a> Edit<'a> {
    pub(crate) fn insert(at: usize, text: impl Into<Cow<'a, str>>, anchor: Anchor) -> Self {
        Self {
            start: at,
            end: at,
            text: text.into(),
            anchor,
            located: true,
        }
    }

    pub(crate) fn replace(
        start: usize,
        end: usize,
        text: impl Into<Cow<'a, str>>,
        anchor: Anchor,
    ) -> Self {
        Self {
            start,
            end,
            text: text.into(),
            anchor,
            located: true,
        }
    }

    /// The same edit, for code that stands for nothing in the original: instructions whose
    /// location starts in its text get no location (no line event for tracers such as
    /// coverage.py, no line in `co_lines()`).
    pub(crate) fn unlocated(mut self) -> Self {
        self.located = false;
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Copied {
        orig_start: usize,
    },
    /// `from..at` is the original range the fragment replaced (empty for an insertion).
    Inserted {
        anchor: Anchor,
        from: usize,
        at: usize,
        located: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Chunk {
    new_start: usize,
    new_end: usize,
    origin: Origin,
}

impl Chunk {
    /// The original range this chunk stands for: copied bytes, or the range an edit replaced
    /// (empty for an insertion). Non-decreasing along the chunk list.
    fn orig_span(&self) -> (usize, usize) {
        match self.origin {
            Origin::Copied { orig_start } => {
                (orig_start, orig_start + (self.new_end - self.new_start))
            }
            Origin::Inserted { from, at, .. } => (from, at),
        }
    }
}

/// Where the previous lookups of a run of [`PositionMap::map_location_near`] calls landed: a
/// code object's locations mostly come in source order, so the next one is mostly found
/// without a search. A hint only: any cursor gives the same results.
#[derive(Debug, Clone, Copy, Default)]
pub struct MapCursor {
    /// Index of the chunk of the previous location's start.
    chunk: usize,
    /// 0-based original line of the previous location's start.
    orig_line: usize,
}

/// Maps positions in the rewritten text back to the original text.
#[derive(Debug, Clone)]
pub struct PositionMap {
    /// Sorted, contiguous, covering the whole new text; empty chunks are never stored.
    chunks: Vec<Chunk>,
    new_lines: LineIndex,
    orig_lines: LineIndex,
}

/// Where an edit goes among the edits starting at its offset `p`, as `(class, rank)`; the sort
/// is stable, so equal keys keep their planned order.
///
/// Fragments from different transforms meet at one offset when their constructs start or end
/// together (`f(x)[1:2]`: a call and a subscript; `return [1]` ending a profiled body). The
/// text is right only if constructs nest:
///
/// 0. insertions closing a construct that ends at `p` (anchor `start < p == end`), innermost
///    (latest start) first;
/// 1. other insertions (statements, fragments anchored around `p`), in planned order;
/// 2. insertions opening a construct that starts at `p` (anchor `start == p < end`),
///    outermost (latest end) first;
/// 3. replacements, which always follow what is inserted at their start.
fn seam_order(e: &Edit<'_>) -> (u8, std::cmp::Reverse<usize>) {
    let p = e.start;
    let a = e.anchor;
    if e.end > e.start {
        (3, std::cmp::Reverse(0))
    } else if a.end == p && a.start < p {
        (0, std::cmp::Reverse(a.start))
    } else if a.start == p && a.end > p {
        (2, std::cmp::Reverse(a.end))
    } else {
        (1, std::cmp::Reverse(0))
    }
}

/// Applies `edits` to `original`. Edits are applied in order of start offset; edits with the
/// same start are ordered by [`seam_order`] (closers, others, openers outermost first,
/// replacements), keeping their planned order where that says nothing.
pub(crate) fn apply(
    original: &str,
    orig_lines: LineIndex,
    edits: Vec<Edit<'_>>,
) -> Result<(String, PositionMap), EngineError> {
    // Sorting small keys, not the edits; the planned index ends each key, keeping the planned
    // order among equal offsets and seam orders (keys are unique: any sort gives one order).
    let mut order: Vec<(usize, (u8, std::cmp::Reverse<usize>), usize)> = edits
        .iter()
        .enumerate()
        .map(|(i, e)| (e.start, seam_order(e), i))
        .collect();
    sort_mostly_sorted(&mut order);
    let mut out = String::with_capacity(original.len() + edits.len() * 24);
    let mut chunks = Vec::with_capacity(edits.len() * 2 + 1);
    let mut cursor = 0usize;
    for edit in order.iter().filter_map(|&(_, _, i)| edits.get(i)) {
        if edit.start < cursor || edit.end < edit.start {
            return Err(EngineError::OverlappingEdits { offset: edit.start });
        }
        // The error is built only when returned (`ok_or` builds and drops one per edit).
        let Some(kept) = original.get(cursor..edit.start) else {
            return Err(EngineError::OverlappingEdits { offset: edit.start });
        };
        push_copied(&mut chunks, &mut out, kept, cursor);
        let origin = Origin::Inserted {
            anchor: edit.anchor,
            from: edit.start,
            at: edit.end,
            located: edit.located,
        };
        push_inserted(&mut chunks, &mut out, &edit.text, origin);
        cursor = edit.end;
    }
    let Some(rest) = original.get(cursor..) else {
        return Err(EngineError::OverlappingEdits { offset: cursor });
    };
    push_copied(&mut chunks, &mut out, rest, cursor);
    let map = PositionMap {
        chunks,
        new_lines: LineIndex::new(&out),
        orig_lines,
    };
    Ok((out, map))
}

/// Sorts `keys`, which are mostly in order already: planned edits come in source order but
/// for a few, such as the edits of a method call's receiver call (`a.b().c()`: the outer call
/// is planned first, its `(` comes after the inner call's), which belong a few places back.
/// Each key is moved back past the larger ones before it; when the moves add up to more than
/// a few per key (long method chains), the library's sort finishes the job.
fn sort_mostly_sorted<T: Ord + Copy>(keys: &mut [T]) {
    let mut budget = 4 * keys.len() + 64;
    for i in 1..keys.len() {
        let Some(&key) = keys.get(i) else { break };
        let mut at = i;
        while at > 0 && keys.get(at - 1).is_some_and(|k| *k > key) {
            at -= 1;
            if i - at > budget {
                keys.sort();
                return;
            }
        }
        if at == i {
            continue;
        }
        budget -= i - at;
        keys.copy_within(at..i, at + 1);
        if let Some(slot) = keys.get_mut(at) {
            *slot = key;
        }
    }
}

/// Appends copied `text` (original bytes from `orig_start` on) as a new chunk, unless it is
/// empty. Token boundaries are kept:
/// where copied text follows an inserted fragment and both sides of the seam are identifier
/// characters (`W(x)` + `y`), a space ends the fragment so the two never fuse into one
/// identifier; the space belongs to the fragment and maps like it. Copied text meeting copied
/// text is never touched (the original tokens are the original's business).
#[inline]
fn push_copied(chunks: &mut Vec<Chunk>, out: &mut String, text: &str, orig_start: usize) {
    if text.is_empty() {
        return;
    }
    if let Some(last) = chunks.last_mut() {
        if matches!(last.origin, Origin::Inserted { .. })
            && ends_with_identifier_char(out)
            && starts_with_identifier_char(text)
        {
            out.push(' ');
            last.new_end = out.len();
        }
    }
    let new_start = out.len();
    out.push_str(text);
    chunks.push(Chunk {
        new_start,
        new_end: out.len(),
        origin: Origin::Copied { orig_start },
    });
}

/// Appends an inserted fragment `text` as a new chunk, unless it is empty. Where it meets its neighbour (copied text or another
/// fragment) and both sides of the seam are identifier characters (`not` + `W(`, `return` +
/// `W(`), a space starts the fragment so the two never fuse into one identifier.
#[inline]
fn push_inserted(chunks: &mut Vec<Chunk>, out: &mut String, text: &str, origin: Origin) {
    if text.is_empty() {
        return;
    }
    let new_start = out.len();
    if ends_with_identifier_char(out) && starts_with_identifier_char(text) {
        out.push(' ');
    }
    out.push_str(text);
    chunks.push(Chunk {
        new_start,
        new_end: out.len(),
        origin,
    });
}

/// Whether the last character of `text` is an identifier character (see
/// [`is_identifier_char`]), without decoding when it is ASCII.
#[inline]
fn ends_with_identifier_char(text: &str) -> bool {
    match text.as_bytes().last() {
        None => false,
        Some(&b) if b.is_ascii() => is_identifier_byte(b),
        Some(_) => text.chars().next_back().is_some_and(is_identifier_char),
    }
}

/// Whether the first character of `text` is an identifier character (see
/// [`is_identifier_char`]), without decoding when it is ASCII.
#[inline]
fn starts_with_identifier_char(text: &str) -> bool {
    match text.as_bytes().first() {
        None => false,
        Some(&b) if b.is_ascii() => is_identifier_byte(b),
        Some(_) => text.chars().next().is_some_and(is_identifier_char),
    }
}

/// [`is_identifier_char`] of an ASCII byte.
#[inline]
fn is_identifier_byte(b: u8) -> bool {
    b == b'_' || b.is_ascii_alphanumeric()
}

/// Whether `c` can continue a Python identifier or number (a superset of XID_Continue's ASCII
/// part, plus every alphanumeric character): such characters on both sides of a seam would lex
/// as one token.
fn is_identifier_char(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

impl PositionMap {
    /// The identity map of a text that was not edited.
    pub fn identity(text: &str) -> Self {
        Self::identity_indexed(text, LineIndex::new(text))
    }

    /// [`PositionMap::identity`] of a text whose line index is already built.
    pub(crate) fn identity_indexed(text: &str, lines: LineIndex) -> Self {
        let chunks = if text.is_empty() {
            Vec::new()
        } else {
            vec![Chunk {
                new_start: 0,
                new_end: text.len(),
                origin: Origin::Copied { orig_start: 0 },
            }]
        };
        Self {
            chunks,
            new_lines: lines.clone(),
            orig_lines: lines,
        }
    }

    fn chunk_at(&self, offset: usize) -> Option<&Chunk> {
        let idx = self.chunks.partition_point(|c| c.new_end <= offset);
        self.chunks.get(idx).or_else(|| self.chunks.last())
    }

    /// [`Self::chunk_at`], starting from chunk `*hint` (left at the chunk found): the chunk
    /// itself or one of the next few is taken without a search, else the search covers only
    /// the side of `*hint` where `offset` lies.
    fn chunk_from(&self, hint: &mut usize, offset: usize) -> Option<&Chunk> {
        let last = self.chunks.len().checked_sub(1)?;
        let mut i = (*hint).min(last);
        // Chunks are sorted and contiguous: the wanted index is the first chunk ending after
        // `offset` (the last chunk when none does), at or after `i` exactly when chunk `i`
        // ends at or before `offset`.
        if self.chunks.get(i).is_some_and(|c| c.new_end <= offset) {
            i += 1;
            let mut steps = 0;
            while self.chunks.get(i).is_some_and(|c| c.new_end <= offset) {
                steps += 1;
                if steps == 4 {
                    let rest = self.chunks.get(i..).unwrap_or_default();
                    i += rest.partition_point(|c| c.new_end <= offset);
                    break;
                }
                i += 1;
            }
        } else {
            let before = self.chunks.get(..i).unwrap_or_default();
            if before.last().is_some_and(|c| c.new_end > offset) {
                i = before.partition_point(|c| c.new_end <= offset);
            }
        }
        *hint = i.min(last);
        self.chunks.get(*hint)
    }

    /// Original offset of the byte at new `offset` (a start position), given the chunk
    /// holding it (`chunk_at(offset)`).
    fn map_start_in(chunk: Option<&Chunk>, offset: usize) -> Result<usize, Anchor> {
        match chunk {
            Some(Chunk {
                new_start,
                origin: Origin::Copied { orig_start },
                ..
            }) => Ok(orig_start + offset.saturating_sub(*new_start)),
            Some(Chunk {
                origin: Origin::Inserted { anchor, .. },
                ..
            }) => Err(*anchor),
            None => Ok(offset),
        }
    }

    /// Original offset for the exclusive end `offset`: decided by the byte before it. A range
    /// ending inside an inserted statement ends where the statement was inserted; one ending
    /// inside a call wrapper's fragment ends where its anchor (the call) ends.
    ///
    /// Chunk `hint` is tried first, then a search from `cursor`'s chunk (left unchanged).
    fn map_end_near(&self, hint: Option<&Chunk>, cursor: &mut MapCursor, offset: usize) -> usize {
        if offset == 0 {
            return 0;
        }
        let chunk = match hint {
            Some(c) if c.new_start < offset && offset <= c.new_end => Some(c),
            _ => self.chunk_from(&mut cursor.chunk.clone(), offset - 1),
        };
        match chunk {
            Some(Chunk {
                new_start,
                origin: Origin::Copied { orig_start },
                ..
            }) => orig_start + offset.saturating_sub(*new_start),
            Some(Chunk {
                origin: Origin::Inserted { anchor, at, .. },
                ..
            }) => {
                if anchor.whole {
                    *at
                } else {
                    anchor.end
                }
            }
            None => offset,
        }
    }

    /// The new-text range holding everything copied or inserted for the original range
    /// `start..end`, insertions at either boundary included.
    pub fn new_range(&self, start: usize, end: usize) -> (usize, usize) {
        let first = self.chunks.partition_point(|c| {
            let (from, to) = c.orig_span();
            to < start || (to == start && from < to)
        });
        let mut new_start = None;
        let mut new_end = 0;
        for c in self.chunks.get(first..).unwrap_or_default() {
            let (from, to) = c.orig_span();
            if from > end || (from == end && from < to) {
                break;
            }
            let (s, e) = match c.origin {
                Origin::Copied { orig_start } => (
                    c.new_start + start.saturating_sub(orig_start),
                    c.new_end - to.saturating_sub(end),
                ),
                Origin::Inserted { .. } => (c.new_start, c.new_end),
            };
            new_start.get_or_insert(s);
            new_end = new_end.max(e);
        }
        let s = new_start.unwrap_or(0);
        (s, new_end.max(s))
    }

    /// Maps a 1-based line of the new text to the original line it came from.
    pub fn map_line(&self, line: usize) -> usize {
        if line == 0 {
            return 0;
        }
        let offset = self.new_lines.line_start(line);
        let orig = match Self::map_start_in(self.chunk_at(offset), offset) {
            Ok(o) => o,
            Err(anchor) => anchor.start,
        };
        self.orig_lines.line_col(orig).0
    }

    /// Maps a CPython location (1-based lines, UTF-8 byte columns) of the new text to the
    /// original text. `is_call` says whether the instruction at that location is a call
    /// instruction (CALL and its companions), whose location CPython may start at a method's
    /// name rather than at the call's start (see [`Anchor::location_start`]).
    ///
    /// `None` when the location starts in the text of an edit marked [`Edit::unlocated`]: that
    /// code gets CPython's "no location".
    pub fn map_location(&self, loc: Location, is_call: bool) -> Option<Location> {
        self.map_location_near(&mut MapCursor::default(), loc, is_call)
    }

    /// [`Self::map_location`] for a run of locations in (mostly) source order, such as one
    /// location table's: `cursor` (start from `MapCursor::default()`) keeps where the previous
    /// location was found, so that the next one is mostly found without a search. The result
    /// does not depend on the cursor.
    pub fn map_location_near(
        &self,
        cursor: &mut MapCursor,
        loc: Location,
        is_call: bool,
    ) -> Option<Location> {
        // Line 0 marks artificial instructions (a module's RESUME): nothing to map.
        if loc.line < 1 {
            return Some(loc);
        }
        let Ok(line) = usize::try_from(loc.line) else {
            return Some(self.map_located(loc, is_call, None, cursor));
        };
        // Whether `loc` starts outside every edit marked [`Edit::unlocated`]; a line-only
        // location is judged by its line's first byte. The chunk found is kept: a location
        // with columns starts at the same offset, and its end is mostly in the same chunk.
        let start = self
            .new_lines
            .offset(line, loc.col.map_or(0, |c| c as usize));
        let chunk = self.chunk_from(&mut cursor.chunk, start);
        if let Some(Chunk {
            origin: Origin::Inserted { located: false, .. },
            ..
        }) = chunk
        {
            return None;
        }
        Some(self.map_located(loc, is_call, chunk, cursor))
    }

    /// Maps a located `loc`; `start_chunk`, if known, is the chunk holding the location's
    /// start (`chunk_at` of its line and column; only used when it has columns).
    fn map_located(
        &self,
        loc: Location,
        is_call: bool,
        start_chunk: Option<&Chunk>,
        cursor: &mut MapCursor,
    ) -> Location {
        let (Some(col), Some(end_col)) = (loc.col, loc.end_col) else {
            let line = usize::try_from(loc.line).map_or(0, |l| self.map_line(l));
            let line = i32::try_from(line).unwrap_or(loc.line);
            let end_line = if loc.end_line == loc.line {
                line
            } else {
                usize::try_from(loc.end_line)
                    .ok()
                    .and_then(|l| i32::try_from(self.map_line(l)).ok())
                    .unwrap_or(line)
                    .max(line)
            };
            return Location {
                line,
                end_line,
                col: None,
                end_col: None,
            };
        };
        let (Ok(line), Ok(end_line)) = (usize::try_from(loc.line), usize::try_from(loc.end_line))
        else {
            return loc;
        };
        let start = self.new_lines.offset(line, col as usize);
        let end = self.new_lines.offset(end_line, end_col as usize);
        let chunk = start_chunk.or_else(|| self.chunk_at(start));
        let (orig_start, orig_end) = match Self::map_start_in(chunk, start) {
            Err(anchor) if anchor.whole => (anchor.start, anchor.end),
            Err(anchor) => {
                let e = self.map_end_near(chunk, cursor, end);
                let s = if is_call && e == anchor.end {
                    anchor.location_start
                } else {
                    anchor.start
                };
                (s, e.max(s))
            }
            Ok(s) => (s, self.map_end_near(chunk, cursor, end).max(s)),
        };
        self.location_near(orig_start, orig_end, &mut cursor.orig_line)
    }

    /// The original location of the original byte range `start..end`.
    pub fn location_of(&self, start: usize, end: usize) -> Location {
        self.location_near(start, end, &mut 0)
    }

    /// [`Self::location_of`], the start's line looked up from `line` (0-based, left at the
    /// start's line; see [`LineIndex::line_col_near`]).
    fn location_near(&self, start: usize, end: usize, line: &mut usize) -> Location {
        let (l1, c1) = self.orig_lines.line_col_near(start, line);
        // The end is mostly on the start's line or just after it.
        let (l2, c2) = self
            .orig_lines
            .line_col_near(end, &mut l1.saturating_sub(1));
        Location {
            line: i32::try_from(l1).unwrap_or(i32::MAX),
            end_line: i32::try_from(l2).unwrap_or(i32::MAX),
            col: u32::try_from(c1).ok(),
            end_col: u32::try_from(c2).ok(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anchor(start: usize, end: usize) -> Anchor {
        Anchor::new(start, end, false)
    }

    fn loc(line: i32, col: u32, end_line: i32, end_col: u32) -> Location {
        Location {
            line,
            end_line,
            col: Some(col),
            end_col: Some(end_col),
        }
    }

    #[test]
    fn call_wrap_maps_back_to_the_call() {
        // "x = f(a)\n" -> "x = W(f, a)\n"
        let src = "x = f(a)\n";
        let edits = vec![
            Edit::insert(4, "W(", anchor(4, 8)),
            Edit::replace(5, 6, ", ", anchor(5, 6)),
        ];
        let (new, map) = apply(src, LineIndex::new(src), edits).expect("applies");
        assert_eq!(new, "x = W(f, a)\n");
        // The whole new call maps to the original call.
        assert_eq!(
            map.map_location(loc(1, 4, 1, 11), false),
            Some(loc(1, 4, 1, 8))
        );
        // The wrapper name maps to the call's range.
        assert_eq!(
            map.map_location(loc(1, 4, 1, 5), false),
            Some(loc(1, 4, 1, 8))
        );
        // The argument keeps its own position.
        assert_eq!(
            map.map_location(loc(1, 9, 1, 10), false),
            Some(loc(1, 6, 1, 7))
        );
    }

    #[test]
    fn fragments_meeting_at_one_offset_nest() {
        // "f(x)[1:2]": an inner call routed by one transform and an outer subscript rewritten
        // by another, planned inner first; the literal `1` replaced before an insertion at
        // its start is planned.
        let src = "f(x)[1:2]\n";
        let edits = vec![
            Edit::insert(0, "W(", anchor(0, 4)),
            Edit::replace(1, 2, ", ", anchor(1, 2)),
            Edit::replace(5, 6, "K", anchor(5, 6)),
            Edit::insert(0, "I(", anchor(0, 9)),
            Edit::replace(4, 5, ", ", anchor(0, 9)),
            Edit::insert(5, "S(", anchor(5, 8)),
            Edit::replace(6, 7, ", ", anchor(5, 8)),
            Edit::insert(8, ")", anchor(5, 8)),
            Edit::replace(8, 9, ")", anchor(0, 9)),
        ];
        let (new, _) = apply(src, LineIndex::new(src), edits).expect("applies");
        assert_eq!(new, "I(W(f, x), S(K, 2))\n");
        // Closers at one offset: the inner construct's first, whatever the planned order.
        let src = "[[1]]\n";
        let edits = vec![
            Edit::insert(5, "]", anchor(0, 5)),
            Edit::insert(5, ")", anchor(2, 5)),
        ];
        let (new, _) = apply(src, LineIndex::new(src), edits).expect("applies");
        assert_eq!(new, "[[1]])]\n");
    }

    #[test]
    fn inserted_lines_shift_lines_back() {
        let src = "def f():\n    return 1\n";
        let edits = vec![Edit::insert(9, "    pass\n", Anchor::new(0, 7, true))];
        let (new, map) = apply(src, LineIndex::new(src), edits).expect("applies");
        assert_eq!(new, "def f():\n    pass\n    return 1\n");
        assert_eq!(map.map_line(3), 2);
        assert_eq!(map.map_line(2), 1);
        assert_eq!(
            map.map_location(loc(2, 4, 2, 8), false),
            Some(loc(1, 0, 1, 7))
        );
        assert_eq!(
            map.map_location(loc(3, 4, 3, 12), false),
            Some(loc(2, 4, 2, 12))
        );
    }

    #[test]
    fn unlocated_edits_map_to_no_location() {
        let src = "def f():\n    return 1\n";
        let edits = vec![
            Edit::insert(9, "    a = E()\n", Anchor::new(0, 7, true)).unlocated(),
            Edit::insert(21, "\n    X(a)", Anchor::new(0, 7, true)).unlocated(),
        ];
        let (new, map) = apply(src, LineIndex::new(src), edits).expect("applies");
        assert_eq!(new, "def f():\n    a = E()\n    return 1\n    X(a)\n");
        assert_eq!(map.map_location(loc(2, 4, 2, 11), false), None);
        assert_eq!(map.map_location(loc(2, 8, 2, 11), true), None);
        assert_eq!(map.map_location(loc(4, 4, 4, 8), true), None);
        let line_only = Location {
            line: 4,
            end_line: 4,
            col: None,
            end_col: None,
        };
        assert_eq!(map.map_location(line_only, false), None);
        // Copied code keeps its position, the function's first line included.
        assert_eq!(
            map.map_location(loc(3, 4, 3, 12), false),
            Some(loc(2, 4, 2, 12))
        );
        assert_eq!(map.map_line(1), 1);
    }

    #[test]
    fn lookups_do_not_depend_on_the_cursor() {
        // Many chunks: a wrapped call on every line, and an inserted statement every 5 lines.
        let src: String = (0..60).map(|i| format!("x{i} = f(a, b)\n")).collect();
        let mut edits = Vec::new();
        let mut at = 0;
        for (i, line) in src.split_inclusive('\n').enumerate() {
            edits.push(Edit::insert(at + 5, "W(", anchor(at + 5, at + 12)));
            edits.push(Edit::replace(at + 6, at + 7, ", ", anchor(at + 6, at + 7)));
            if i % 5 == 0 {
                edits.push(Edit::insert(at, "pass\n", Anchor::new(at, at + 4, true)));
            }
            at += line.len();
        }
        let (new, map) = apply(&src, LineIndex::new(&src), edits).expect("applies");
        for offset in 0..new.len() + 3 {
            for hint in [0, 1, 7, map.chunks.len() / 2, map.chunks.len(), usize::MAX] {
                let mut h = hint;
                assert_eq!(map.chunk_from(&mut h, offset), map.chunk_at(offset));
            }
        }
        let lines = new.lines().count();
        // Locations in a scrambled order, one cursor through all of them.
        let mut cursor = MapCursor::default();
        for k in 0..lines * 14 {
            let line = (k * 7 % lines) as i32 + 1;
            let col = (k % 13) as u32;
            let end_line = line + (k % 3 == 0) as i32;
            for is_call in [false, true] {
                let l = loc(line, col, end_line, col + 2);
                assert_eq!(
                    map.map_location_near(&mut cursor, l, is_call),
                    map.map_location_near(&mut MapCursor::default(), l, is_call)
                );
            }
        }
    }

    #[test]
    fn sorting_mostly_sorted_keys_sorts() {
        let mut seed = 7u64;
        let mut next = move || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as usize
        };
        for len in [0, 1, 2, 5, 64, 1000] {
            let sorted: Vec<(usize, usize)> = (0..len).map(|i| (i / 3, i)).collect();
            // In order, a few keys out of place, shuffled, and reversed (over the moves'
            // budget: the library sort takes over).
            let mut cases = vec![sorted.clone()];
            let mut few = sorted.clone();
            for _ in 0..len / 10 {
                let (a, b) = (next() % len, next() % len);
                few.swap(a, b);
            }
            cases.push(few);
            let mut shuffled = sorted.clone();
            for i in (1..len).rev() {
                shuffled.swap(i, next() % (i + 1));
            }
            cases.push(shuffled);
            cases.push(sorted.iter().rev().copied().collect());
            for mut keys in cases {
                sort_mostly_sorted(&mut keys);
                assert_eq!(keys, sorted);
            }
        }
    }

    #[test]
    fn overlapping_edits_are_an_error() {
        let edits = vec![
            Edit::replace(0, 3, "x", anchor(0, 3)),
            Edit::insert(1, "y", anchor(1, 1)),
        ];
        assert!(apply("abcdef", LineIndex::new("abcdef"), edits).is_err());
    }
}
