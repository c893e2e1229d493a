//! Decoder and encoder for CPython code-object location tables (`co_linetable`).
//!
//! CPython 3.11, 3.12 and 3.13 share one format (PEP 657, described in CPython's
//! `Objects/locations.md`, written by `Python/assemble.c`, read by `Objects/codeobject.c`).
//! The table is a sequence of entries. Each entry covers 1 to 8 code units (a code unit is
//! 2 bytes of `co_code`, `CACHE` entries included) and starts with a header byte
//! `1cccclll`: bit 7 is always set (only header bytes have it), `cccc` is the form code
//! and `lll` is the number of code units minus one. The payload that follows depends on
//! the code:
//!
//! - 0-9, short: one byte `0hhhwwww`; same line as the running line, `col = code * 8 + hhh`,
//!   `end_col = col + wwww`.
//! - 10-12, one line: two bytes `col`, `end_col` (each < 128); `line += code - 10`.
//! - 13, no column: svarint line delta; `line += delta`, `end_line = line`, no columns.
//! - 14, long: svarint line delta, varint `end_line - line`, varint `col + 1`, varint
//!   `end_col + 1`; a stored column of 0 means "no column".
//! - 15, none: no payload; no location, and the running line is unchanged.
//!
//! Varints are little-endian groups of 6 bits; bit 6 (`0x40`) of a byte says another group
//! follows. A signed varint (svarint) stores `v << 1` for `v >= 0` and `(-v << 1) | 1`
//! otherwise. Lines are relative: every entry's line delta applies to the line of the
//! previous entry that had a location, starting from `co_firstlineno`.
//!
//! [`decode`] returns the raw entries (nothing merged), [`encode`] writes the most compact
//! form CPython's own assembler would pick for each entry (so CPython-produced tables come
//! back byte-identical), and [`remap`] rewrites a table through a location mapping, which is
//! how callweave makes rewritten code carry the user's original positions.

use std::fmt;

/// Largest number of code units a single table entry can cover.
const MAX_UNITS_PER_ENTRY: u32 = 8;
/// Highest short-form code (column groups 0..=9, columns 0..=79).
const CODE_SHORT_LAST: u8 = 9;
/// One-line form with line delta 0; codes 11 and 12 carry deltas 1 and 2.
const CODE_ONE_LINE0: u8 = 10;
const CODE_ONE_LINE2: u8 = 12;
const CODE_NO_COLUMNS: u8 = 13;
const CODE_LONG: u8 = 14;
const CODE_NONE: u8 = 15;
/// Bit marking the first byte of an entry.
const ENTRY_START: u8 = 0x80;
/// Bit marking "another 6-bit group follows" in a varint byte.
const VARINT_CONTINUE: u8 = 0x40;
/// Enough 6-bit groups for any value the encoder writes (at most 34 bits); longer varints
/// are rejected as malformed.
const MAX_VARINT_GROUPS: u32 = 6;

/// A source range in CPython's terms: 1-based lines, 0-based UTF-8 byte columns.
///
/// `col`/`end_col` of `None` are CPython's `-1` ("unknown column"); `co_positions()` shows
/// them as `None`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    /// First line of the range.
    pub line: i32,
    /// Last line of the range; the format cannot store `end_line < line` (see [`encode`]).
    pub end_line: i32,
    /// Start column (UTF-8 byte offset), if known.
    pub col: Option<u32>,
    /// End column (UTF-8 byte offset, exclusive), if known.
    pub end_col: Option<u32>,
}

/// One table entry: how many code units it covers and their location (`None` is the
/// "no location" form).
///
/// Entries read by [`decode`] are the raw table entries, nothing merged, so `code_units`
/// is always 1..=8 there. [`encode`] also accepts larger `code_units` and splits them into
/// several entries with the same location, as CPython does; entries with `code_units == 0`
/// write nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Number of code units (2-byte instruction words, `CACHE` entries included) covered.
    pub code_units: u32,
    /// The location of those code units, or `None` for CPython's "no location" form.
    pub loc: Option<Location>,
}

/// Why a location table could not be decoded. Offsets are byte offsets into the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinetableError {
    /// The entry starting at `offset` ends before its payload is complete: the table ends,
    /// or a byte with the entry-start bit (0x80) appears where a payload byte belongs.
    Truncated {
        /// Offset of the header byte of the incomplete entry.
        offset: usize,
    },
    /// The entry at `offset` is malformed: the byte where an entry must start lacks the
    /// 0x80 entry-start bit, or a value in it is out of range (a varint longer than
    /// 6 groups, a line outside `i32`, a column outside `u32`).
    BadEntryHeader {
        /// Offset of the offending byte (the entry's first byte for out-of-range values).
        offset: usize,
    },
}

impl fmt::Display for LinetableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinetableError::Truncated { offset } => {
                write!(f, "location table entry at byte {offset} is truncated")
            }
            LinetableError::BadEntryHeader { offset } => {
                write!(f, "malformed location table entry at byte {offset}")
            }
        }
    }
}

impl std::error::Error for LinetableError {}

/// Reads one entry's payload, reporting errors against the entry's start offset.
struct Reader<'a> {
    table: &'a [u8],
    pos: usize,
    entry_start: usize,
}

impl Reader<'_> {
    /// Next payload byte; payload bytes never have the entry-start bit.
    fn byte(&mut self) -> Result<u8, LinetableError> {
        match self.table.get(self.pos) {
            Some(&b) if b & ENTRY_START == 0 => {
                self.pos += 1;
                Ok(b)
            }
            _ => Err(LinetableError::Truncated {
                offset: self.entry_start,
            }),
        }
    }

    fn varint(&mut self) -> Result<u64, LinetableError> {
        let mut value = 0u64;
        for group in 0..MAX_VARINT_GROUPS {
            let b = self.byte()?;
            value |= u64::from(b & 0x3f) << (6 * group);
            if b & VARINT_CONTINUE == 0 {
                return Ok(value);
            }
        }
        Err(self.malformed())
    }

    fn svarint(&mut self) -> Result<i64, LinetableError> {
        let raw = self.varint()?;
        // At most 36 bits, so the shifted value fits an i64.
        let magnitude = i64::try_from(raw >> 1).map_err(|_| self.malformed())?;
        Ok(if raw & 1 == 1 { -magnitude } else { magnitude })
    }

    /// A varint-stored column: 0 is "absent", otherwise the column plus one.
    fn column(&mut self) -> Result<Option<u32>, LinetableError> {
        match self.varint()? {
            0 => Ok(None),
            v => u32::try_from(v - 1).map(Some).map_err(|_| self.malformed()),
        }
    }

    fn line_plus(&self, line: i32, delta: i64) -> Result<i32, LinetableError> {
        i64::from(line)
            .checked_add(delta)
            .and_then(|l| i32::try_from(l).ok())
            .ok_or_else(|| self.malformed())
    }

    fn malformed(&self) -> LinetableError {
        LinetableError::BadEntryHeader {
            offset: self.entry_start,
        }
    }
}

/// Decodes a location table whose code object has `co_firstlineno == first_line`.
///
/// Returns the raw entries in order, one per table entry (runs are not merged). Line-only
/// entries (code 13) come back with `end_line == line` and both columns `None`; long-form
/// columns stored as 0 come back as `None`.
///
/// # Errors
///
/// [`LinetableError`] for malformed input (garbage never panics): an entry cut short
/// ([`LinetableError::Truncated`]), a byte that cannot start an entry, or a value out of
/// range ([`LinetableError::BadEntryHeader`]).
pub fn decode(table: &[u8], first_line: i32) -> Result<Vec<Entry>, LinetableError> {
    let mut entries = Vec::with_capacity(table.len() / 2);
    for entry in Entries::new(table, first_line) {
        entries.push(entry?);
    }
    Ok(entries)
}

/// The entries of a location table, decoded one at a time (see [`decode`]); after an error
/// the iterator ends.
struct Entries<'a> {
    reader: Reader<'a>,
    line: i32,
    failed: bool,
}

impl<'a> Entries<'a> {
    fn new(table: &'a [u8], first_line: i32) -> Self {
        Self {
            reader: Reader {
                table,
                pos: 0,
                entry_start: 0,
            },
            line: first_line,
            failed: false,
        }
    }

    /// Decodes the entry whose header byte is `header`, at `reader.pos`.
    #[inline]
    fn entry(&mut self, header: u8) -> Result<Entry, LinetableError> {
        let reader = &mut self.reader;
        reader.entry_start = reader.pos;
        if header & ENTRY_START == 0 {
            return Err(LinetableError::BadEntryHeader { offset: reader.pos });
        }
        reader.pos += 1;
        let code = (header >> 3) & 0x0f;
        let code_units = u32::from(header & 0x07) + 1;
        let line = &mut self.line;
        let loc = match code {
            0..=CODE_SHORT_LAST => {
                let b = reader.byte()?;
                let col = u32::from(code) * 8 + u32::from(b >> 4);
                Some(Location {
                    line: *line,
                    end_line: *line,
                    col: Some(col),
                    end_col: Some(col + u32::from(b & 0x0f)),
                })
            }
            CODE_ONE_LINE0..=CODE_ONE_LINE2 => {
                *line = reader.line_plus(*line, i64::from(code - CODE_ONE_LINE0))?;
                let col = reader.byte()?;
                let end_col = reader.byte()?;
                Some(Location {
                    line: *line,
                    end_line: *line,
                    col: Some(u32::from(col)),
                    end_col: Some(u32::from(end_col)),
                })
            }
            CODE_NO_COLUMNS => {
                let delta = reader.svarint()?;
                *line = reader.line_plus(*line, delta)?;
                Some(Location {
                    line: *line,
                    end_line: *line,
                    col: None,
                    end_col: None,
                })
            }
            CODE_LONG => {
                let delta = reader.svarint()?;
                *line = reader.line_plus(*line, delta)?;
                let end_delta = reader.varint()?;
                let end_line = reader.line_plus(
                    *line,
                    i64::try_from(end_delta).map_err(|_| reader.malformed())?,
                )?;
                let col = reader.column()?;
                let end_col = reader.column()?;
                Some(Location {
                    line: *line,
                    end_line,
                    col,
                    end_col,
                })
            }
            _ => None, // CODE_NONE: no payload, running line unchanged.
        };
        Ok(Entry { code_units, loc })
    }
}

impl Iterator for Entries<'_> {
    type Item = Result<Entry, LinetableError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let header = *self.reader.table.get(self.reader.pos)?;
        let entry = self.entry(header);
        self.failed = entry.is_err();
        Some(entry)
    }
}

/// Encodes `entries` as a location table for a code object with
/// `co_firstlineno == first_line`.
///
/// Each entry gets the form CPython's assembler would write: short (codes 0-9) for a
/// same-line range at columns < 80 and width < 16 on the running line, one-line (10-12)
/// for line deltas 0..=2 with both columns < 128, no-column (13) for a one-line location
/// with both columns `None`, none (15) for `loc: None`, and the long form (14) otherwise,
/// where an absent column is stored as 0. Entries over 8 code units are split into
/// several entries with the same location; entries of 0 code units are skipped.
///
/// The format cannot express `end_line < line`; such an `end_line` is written as `line`.
/// Apart from that, `decode(&encode(x, n), n) == x` for entries of 1..=8 code units.
pub fn encode(entries: &[Entry], first_line: i32) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * 3);
    let mut line = first_line;
    for entry in entries {
        let mut remaining = entry.code_units;
        while remaining > 0 {
            let units = remaining.min(MAX_UNITS_PER_ENTRY);
            remaining -= units;
            write_entry(&mut out, &mut line, entry.loc, units);
        }
    }
    out
}

/// Decode with `old_first_line`, map every present location with `f`, encode relative to
/// `new_first_line`.
///
/// Each entry is split into runs of code units of the same class (`class_of(unit)`), and `f`
/// maps each run's location knowing its class: instructions of different kinds that share a
/// location in the table may need different locations afterwards. `f` returns `None` for code
/// that stands for nothing in the original (it becomes CPython's "no location" form, as the
/// compiler's own artificial instructions are: tracers see no line event for it). "No
/// location" entries stay as they are, and the code units are kept, so the result describes
/// the same bytecode. `f` sees line-only locations with both columns `None`; if it keeps them
/// `None` they stay line-only.
///
/// # Errors
///
/// Whatever [`decode`] reports for `table`; encoding cannot fail.
pub fn remap(
    table: &[u8],
    old_first_line: i32,
    new_first_line: i32,
    class_of: impl Fn(usize) -> bool,
    f: impl FnMut(Location, bool) -> Option<Location>,
) -> Result<Vec<u8>, LinetableError> {
    let remapped = remap_entries(table, old_first_line, class_of, f)?;
    Ok(encode(&remapped.entries, new_first_line))
}

/// What [`remap_entries`] returns: the mapped entries, before encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remapped {
    /// The entries, CPython's entry boundaries kept (split further where classes change).
    pub entries: Vec<Entry>,
    /// Parallel to `entries`: whether the entry had a location that the mapping dropped
    /// (`f` returned `None`), as opposed to CPython's own "no location".
    pub dropped: Vec<bool>,
}

impl Remapped {
    /// The location of every code unit, in order.
    pub fn unit_locations(&self) -> Vec<Option<Location>> {
        expand(&self.entries, |e| e.loc)
    }

    /// For every code unit, whether its location was dropped by the mapping.
    pub fn unit_dropped(&self) -> Vec<bool> {
        let units = self.entries.iter().map(|e| e.code_units as usize).sum();
        let mut out = Vec::with_capacity(units);
        for (entry, &dropped) in self.entries.iter().zip(&self.dropped) {
            out.resize(out.len() + entry.code_units as usize, dropped);
        }
        out
    }
}

/// [`remap`] without the final encoding: the mapped entries, and which of them lost a location.
///
/// # Errors
///
/// Whatever [`decode`] reports for `table`.
pub fn remap_entries(
    table: &[u8],
    old_first_line: i32,
    class_of: impl Fn(usize) -> bool,
    mut f: impl FnMut(Location, bool) -> Option<Location>,
) -> Result<Remapped, LinetableError> {
    // Most entries stay one entry: about one per two bytes of table.
    let mut out = Remapped {
        entries: Vec::with_capacity(table.len() / 2),
        dropped: Vec::with_capacity(table.len() / 2),
    };
    let mut unit = 0usize;
    // CPython splits an instruction run longer than 8 code units into entries of one location,
    // and a location's instructions are often split further by class: the last mapping is
    // reused for a repeated `(location, class)` (`f` is a pure function of its arguments).
    let mut last: Option<(Location, bool, Option<Location>)> = None;
    for entry in Entries::new(table, old_first_line) {
        let entry = entry?;
        let end = unit + entry.code_units as usize;
        let Some(loc) = entry.loc else {
            out.entries.push(entry);
            out.dropped.push(false);
            unit = end;
            continue;
        };
        let mut run_start = unit;
        while run_start < end {
            let class = class_of(run_start);
            let mut run_end = run_start + 1;
            while run_end < end && class_of(run_end) == class {
                run_end += 1;
            }
            let mapped = match last {
                Some((l, c, m)) if l == loc && c == class => m,
                _ => {
                    let m = f(loc, class);
                    last = Some((loc, class, m));
                    m
                }
            };
            out.entries.push(Entry {
                code_units: u32::try_from(run_end - run_start).unwrap_or(u32::MAX),
                loc: mapped,
            });
            out.dropped.push(mapped.is_none());
            run_start = run_end;
        }
        unit = end;
    }
    Ok(out)
}

/// One item per code unit of `entries`.
fn expand<T: Copy>(entries: &[Entry], item: impl Fn(&Entry) -> T) -> Vec<T> {
    let mut out = Vec::with_capacity(entries.iter().map(|e| e.code_units as usize).sum());
    for entry in entries {
        out.resize(out.len() + entry.code_units as usize, item(entry));
    }
    out
}

/// Entries for per-unit locations: consecutive units with the same location share an entry,
/// as CPython's assembler writes them ([`encode`] splits entries over 8 units).
pub fn entries_of_units(units: &[Option<Location>]) -> Vec<Entry> {
    units
        .chunk_by(|a, b| a == b)
        .map(|run| Entry {
            code_units: u32::try_from(run.len()).unwrap_or(u32::MAX),
            loc: run.first().copied().flatten(),
        })
        .collect()
}

/// Writes one entry of `units` (1..=8) code units and updates the running line.
fn write_entry(out: &mut Vec<u8>, running_line: &mut i32, loc: Option<Location>, units: u32) {
    let Some(loc) = loc else {
        out.push(header(CODE_NONE, units));
        return;
    };
    let delta = i64::from(loc.line) - i64::from(*running_line);
    let end_line = loc.end_line.max(loc.line);
    *running_line = loc.line;
    if end_line == loc.line {
        match (loc.col, loc.end_col) {
            (None, None) => {
                out.push(header(CODE_NO_COLUMNS, units));
                write_svarint(out, delta);
                return;
            }
            (Some(col), Some(end_col)) => {
                if let Some(code) = short_form(delta, col, end_col) {
                    out.push(header(code.0, units));
                    out.push(code.1);
                    return;
                }
                if let (0..=2, Ok(col @ 0..=127), Ok(end_col @ 0..=127)) =
                    (delta, u8::try_from(col), u8::try_from(end_col))
                {
                    // delta is 0..=2 here, so the code is 10..=12.
                    let code = CODE_ONE_LINE0 + u8::try_from(delta).unwrap_or(0);
                    out.extend_from_slice(&[header(code, units), col, end_col]);
                    return;
                }
            }
            _ => {}
        }
    }
    out.push(header(CODE_LONG, units));
    write_svarint(out, delta);
    write_varint(
        out,
        (i64::from(end_line) - i64::from(loc.line)).unsigned_abs(),
    );
    write_varint(out, loc.col.map_or(0, |c| u64::from(c) + 1));
    write_varint(out, loc.end_col.map_or(0, |c| u64::from(c) + 1));
}

/// The short form's code and payload byte, if the location fits it: same line as the
/// running line, `col < 80`, `col <= end_col < col + 16`.
fn short_form(delta: i64, col: u32, end_col: u32) -> Option<(u8, u8)> {
    if delta != 0 {
        return None;
    }
    let col = u8::try_from(col).ok().filter(|&c| c < 80)?;
    let width = end_col
        .checked_sub(u32::from(col))
        .and_then(|w| u8::try_from(w).ok())
        .filter(|&w| w < 16)?;
    Some((col >> 3, ((col & 7) << 4) | width))
}

/// An entry's first byte: entry-start bit, 4-bit code, code units minus one.
fn header(code: u8, units: u32) -> u8 {
    // `units` is 1..=8, so `units - 1` fits the 3-bit field.
    let len_bits = u8::try_from(units.saturating_sub(1)).unwrap_or(7) & 0x07;
    ENTRY_START | (code << 3) | len_bits
}

fn write_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 64 {
        out.push(VARINT_CONTINUE | (value & 0x3f) as u8);
        value >>= 6;
    }
    out.push(value as u8);
}

fn write_svarint(out: &mut Vec<u8>, value: i64) {
    let magnitude = value.unsigned_abs() << 1;
    write_varint(out, if value < 0 { magnitude | 1 } else { magnitude });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `co_positions()` item: (line, end_line, col, end_col).
    type Position = (Option<i32>, Option<i32>, Option<u32>, Option<u32>);

    /// A code object's table as CPython compiled it, and its `co_positions()`.
    struct Vector {
        python: &'static str,
        name: &'static str,
        first_line: i32,
        /// `co_linetable.hex()`.
        table: &'static str,
        /// Run-length encoded `co_positions()`: `count*line,end_line,col,end_col` items,
        /// `-` for `None`.
        positions: &'static str,
    }

    /// Generated by compiling the snippets below with CPython 3.11.7, 3.12.1 and 3.13.0
    /// (`compile(src, name, "exec")`, every nested code object) and dumping
    /// `co_firstlineno`, `co_linetable.hex()` and `list(co_positions())`:
    /// - `multiline_call`: a call spread over 5 lines (multi-line long-form ranges);
    /// - `long_line`: one 330-column line (columns > 127, one-line and long forms);
    /// - `spans`: attribute calls whose instructions (with caches) exceed 8 code units;
    /// - `loop`: `for`/`if`/`else`/`while` (the line goes backwards);
    /// - `exceptions`: `try`/`except as`/`finally` and `with` (no-location entries);
    /// - `jump`: 100 and 5000 blank lines between statements, inside and around a loop
    ///   (multi-group svarints, large negative deltas);
    /// - `module_gen`: a module with a class, a generator method with `yield from` a
    ///   generator expression (no-column entries) and a lambda with a comprehension;
    ///   the module's own code starts at line 0 (a negative first delta);
    /// - `mid_columns`: one line with ranges at columns 40-79 (short forms 5-9).
    const VECTORS: &[Vector] = &[
        Vector {
            python: "3.11",
            name: "multiline_call::multi",
            first_line: 1,
            table: "8000dd0b0ed80809dd080b8841d81011f003010913f100010913f400010913f105040c06f400\
            040c06f000040506",
            positions:
                "1*1,1,0,0 6*2,2,11,14 1*3,3,8,9 6*4,4,8,11 1*4,4,12,13 1*5,5,16,17 8*4,5,8,18 \
            7*2,6,11,5 1*2,6,4,5",
        },
        Vector {
            python: "3.11",
            name: "long_line::wide",
            first_line: 1,
            table: "8000dd0d1fd52031d53344d54657d5596ad56c7df5000040025102f5000053026402f5000066\
            027702f5000079024a03f500004c035d03f500005f037103f5000073034504f0000047044a04\
            f4000047045804f7000047046604f2000047046604f0000067046a04f7000067047704f20000\
            67047704f0000078047904f000007b047c04f1000067047d04f4000067047d04f00000430546\
            05f4000043054c05f0000047046604f1000047044d05f4000047044d05f100000e4e05f40000\
            0e4e058046d80b11804d",
            positions: "1*1,1,0,0 6*2,2,13,31 6*2,2,32,49 6*2,2,51,68 6*2,2,70,87 6*2,2,89,106 \
            6*2,2,108,125 6*2,2,127,144 6*2,2,146,163 6*2,2,165,182 6*2,2,184,201 \
            6*2,2,203,220 6*2,2,222,240 6*2,2,242,260 1*2,2,262,265 5*2,2,262,279 \
            11*2,2,262,293 1*2,2,294,297 11*2,2,294,310 1*2,2,311,312 1*2,2,314,315 \
            7*2,2,294,316 1*2,2,322,325 5*2,2,322,331 1*2,2,262,293 7*2,2,262,332 \
            7*2,2,13,333 1*2,2,4,10 1*3,3,11,17 1*3,3,4,17",
        },
        Vector {
            python: "3.11",
            name: "spans::spans",
            first_line: 1,
            table: "8000d8040584438745824588218f238a23886189268c26902197239223906191269426d10419\
            d40419d00419d80827d00827d008278041dd0b0e887189368c369041974892489851914b944b\
            d10b1fd0041f",
            positions:
                "1*1,1,0,0 1*2,2,4,5 5*2,2,4,7 11*2,2,4,9 1*2,2,10,11 11*2,2,10,13 1*2,2,14,15 \
            7*2,2,10,16 1*2,2,18,19 11*2,2,18,21 1*2,2,22,23 7*2,2,18,24 8*2,2,4,25 \
            3*3,3,8,39 1*3,3,4,5 6*4,4,11,14 1*4,4,15,16 7*4,4,11,17 1*4,4,20,21 \
            11*4,4,20,28 1*4,4,29,30 7*4,4,20,31 2*4,4,11,31 1*4,4,4,31",
        },
        Vector {
            python: "3.11",
            name: "loop::loop",
            first_line: 1,
            table: "8000d80c0d8045dd0d12903189588c58f000040517f0000405178801d80b0c88718935f00003\
            0917d80c119051894a88458845e00c119051894a88458845d80a0f90238a2b882bd8080d9021\
            890b8805f003000b1090238a2b882be00b10804c",
            positions: "1*1,1,0,0 1*2,2,12,13 1*2,2,4,9 6*3,3,13,18 1*3,3,19,20 7*3,3,13,21 \
            2*3,7,4,22 1*3,3,8,9 1*4,4,11,12 1*4,4,15,16 2*4,4,11,16 1*4,7,8,22 \
            1*5,5,12,17 1*5,5,21,22 2*5,5,12,22 2*5,5,12,17 1*7,7,12,17 1*7,7,21,22 \
            2*7,7,12,22 2*7,7,12,17 1*8,8,10,15 1*8,8,18,21 4*8,8,10,21 1*9,9,8,13 \
            1*9,9,18,19 2*9,9,8,19 1*9,9,8,13 1*8,8,10,15 1*8,8,18,21 4*8,8,10,21 \
            1*10,10,11,16 1*10,10,4,16",
        },
        Vector {
            python: "3.11",
            name: "exceptions::exc",
            first_line: 1,
            table: "8000f00205050cdd080989038c0388038803f8dd0b15f00001050df00001050df00001050ddd\
            0809882189048c04880488048804880488048804f8f8f8f8f00301050df8f8f8f50600090a89\
            038c0388038803f88d0189038c0388038803f8f8f8dd090d886189178c17f0000105199042d8\
            0f118f778a7789798c79f003010519f000010519f000010519f000010519f100010519f40001\
            0519f000010519f000010519f000010519f000010519f000010519f000010519f8f8f8f00001\
            0519f000010519f000010519f000010519f000010519f000010519",
            positions:
                "1*1,1,0,0 1*2,7,4,11 6*3,3,8,9 9*3,3,8,11 1*-,-,-,- 6*4,4,11,21 3*4,5,4,12 \
            6*5,5,8,9 1*5,5,10,11 13*5,5,8,12 4*-,-,-,- 1*4,5,4,12 3*-,-,-,- 6*7,7,8,9 \
            9*7,7,8,11 1*-,-,-,- 6*7,7,8,9 9*7,7,8,11 3*-,-,-,- 6*8,8,9,13 1*8,8,14,15 \
            7*8,8,9,16 1*8,9,4,24 1*8,8,20,22 1*9,9,15,17 11*9,9,15,22 7*9,9,15,24 \
            17*8,9,4,24 3*-,-,-,- 6*8,9,4,24",
        },
        Vector {
            python: "3.11",
            name: "jump::jump",
            first_line: 1,
            table: "8000d808098041f04a0300090a884189058041f0525c02000e0ff0006601050ef0006601050e\
            8801d80c0d8801f04a03000d0e88018801d80b0c8048",
            positions:
                "1*1,1,0,0 1*2,2,8,9 1*2,2,4,5 1*103,103,8,9 1*103,103,12,13 2*103,103,8,13 \
            1*103,103,4,5 1*5104,5104,13,14 2*5104,5206,4,13 1*5104,5104,8,9 \
            1*5105,5105,12,13 1*5105,5105,8,9 1*5206,5206,12,13 2*5206,5206,8,9 \
            1*5207,5207,11,12 1*5207,5207,4,12",
        },
        Vector {
            python: "3.11",
            name: "mid_columns::mid",
            first_line: 1,
            table: "8000d80c0d8c478c4cd40c1ed40c24d40c2cd70c31d20c31b021d10c34d40c34b071b775b275\
            b851b178b478d10c3fc021c727c227c821c12ac42ad10c4cc871cf76ca76d05657c979cc79d1\
            0c58d05b5cd10c5c8045d80b10804c",
            positions: "1*1,1,0,0 1*2,2,12,13 5*2,2,12,19 5*2,2,12,24 5*2,2,12,30 5*2,2,12,36 \
            5*2,2,12,44 11*2,2,12,49 1*2,2,50,51 7*2,2,12,52 1*2,2,55,56 11*2,2,55,60 \
            1*2,2,61,62 7*2,2,55,63 2*2,2,12,63 1*2,2,66,67 11*2,2,66,73 1*2,2,74,75 \
            7*2,2,66,76 2*2,2,12,76 1*2,2,79,80 11*2,2,79,85 1*2,2,86,87 7*2,2,79,88 \
            2*2,2,12,88 1*2,2,91,92 2*2,2,12,92 1*2,2,4,9 1*3,3,11,16 1*3,3,4,16",
        },
        Vector {
            python: "3.11",
            name: "module_gen::<module>",
            first_line: 1,
            table: "f003010101d80009800980098009f002030131f000030131f000030131f000030131f0000301\
            31f100030131f400030131f000030131f008000521d00420800180018001",
            positions: "1*0,1,0,0 4*1,1,0,9 13*2,5,0,48 2*6,6,4,32 3*6,6,0,1",
        },
        Vector {
            python: "3.11",
            name: "module_gen::K.m",
            first_line: 4,
            table: "e800e8008000d81330d013309d75a054a459d11f2fd41f2fd01330d11330d41330d00830d008\
            30d00830d00830d00830d00830d00830d00830d00830",
            positions: "2*4,4,-,- 1*4,4,0,0 2*5,5,19,48 6*5,5,31,36 1*5,5,37,41 5*5,5,37,46 \
            7*5,5,31,47 8*5,5,19,48 9*5,5,8,48",
        },
        Vector {
            python: "3.11",
            name: "module_gen::K.m.<locals>.<genexpr>",
            first_line: 5,
            table: "e800e8008000d01330d0133098219041d01330d01330d01330d01330d01330d01330",
            positions: "2*5,5,-,- 1*5,5,0,0 2*5,5,19,48 1*5,5,26,27 1*5,5,20,21 6*5,5,19,48",
        },
        Vector {
            python: "3.11",
            name: "module_gen::<lambda>.<locals>.<listcomp>",
            first_line: 6,
            table: "f88000d00e20d00e20d00e209811887190318975d00e20d00e20d00e20",
            positions: "1*-,-,-,- 1*6,6,0,0 3*6,6,14,32 1*6,6,25,26 1*6,6,15,16 1*6,6,19,20 \
            2*6,6,15,20 3*6,6,14,32",
        },
        Vector {
            python: "3.12",
            name: "multiline_call::multi",
            first_line: 1,
            table: "8000dc0b0ed80809dc080b8841d81011f403010913f305040c06f000040506",
            positions:
                "1*1,1,0,0 5*2,2,11,14 1*3,3,8,9 5*4,4,8,11 1*4,4,12,13 1*5,5,16,17 5*4,5,8,18 \
            4*2,6,11,5 1*2,6,4,5",
        },
        Vector {
            python: "3.12",
            name: "long_line::wide",
            first_line: 1,
            table: "8000dc0d1fd42031d43344d44657d4596ad46c7df4000040025102f4000053026402f4000066\
            027702f4000079024a03f400004c035d03f400005f037103f4000073034504f0000047044a04\
            f7000047045804f1000047045804f7000047046604f1000047046604f0000067046a04f70000\
            67047704f1000067047704f0000078047904f000007b047c04f3000067047d04f00000430546\
            05f7000043054c05f1000043054c05f0000047046604f3000047044d05f300000e4e058046d8\
            0b11804d",
            positions: "1*1,1,0,0 5*2,2,13,31 5*2,2,32,49 5*2,2,51,68 5*2,2,70,87 5*2,2,89,106 \
            5*2,2,108,125 5*2,2,127,144 5*2,2,146,163 5*2,2,165,182 5*2,2,184,201 \
            5*2,2,203,220 5*2,2,222,240 5*2,2,242,260 1*2,2,262,265 10*2,2,262,279 \
            10*2,2,262,293 1*2,2,294,297 10*2,2,294,310 1*2,2,311,312 1*2,2,314,315 \
            4*2,2,294,316 1*2,2,322,325 10*2,2,322,331 1*2,2,262,293 4*2,2,262,332 \
            4*2,2,13,333 1*2,2,4,10 1*3,3,11,17 1*3,3,4,17",
        },
        Vector {
            python: "3.12",
            name: "spans::spans",
            first_line: 1,
            table: "8000d80405874381438745814588218f23892388618b2690219723912390619326d40419da08\
            278041dc0b0e88718b369041974891489851934bd10b1fd0041f",
            positions: "1*1,1,0,0 1*2,2,4,5 10*2,2,4,7 10*2,2,4,9 1*2,2,10,11 10*2,2,10,13 \
            1*2,2,14,15 4*2,2,10,16 1*2,2,18,19 10*2,2,18,21 1*2,2,22,23 4*2,2,18,24 \
            5*2,2,4,25 3*3,3,8,39 1*3,3,4,5 5*4,4,11,14 1*4,4,15,16 4*4,4,11,17 \
            1*4,4,20,21 10*4,4,20,28 1*4,4,29,30 4*4,4,20,31 2*4,4,11,31 1*4,4,4,31",
        },
        Vector {
            python: "3.12",
            name: "loop::loop",
            first_line: 1,
            table: "8000d80c0d8045dc0d1290318b58f2000405178801d80b0c88718a35d80c119051894a8945e0\
            0c119051894a8945f009040517f00a000b1090238a2bd8080d9021890b8805f003000b109023\
            8b2be00b10804c",
            positions: "1*1,1,0,0 1*2,2,12,13 1*2,2,4,9 5*3,3,13,18 1*3,3,19,20 4*3,3,13,21 \
            3*3,7,4,22 1*3,3,8,9 1*4,4,11,12 1*4,4,15,16 3*4,4,11,16 1*5,5,12,17 \
            1*5,5,21,22 2*5,5,12,22 2*5,5,12,17 1*7,7,12,17 1*7,7,21,22 2*7,7,12,22 \
            2*7,7,12,17 1*3,7,4,22 1*8,8,10,15 1*8,8,18,21 3*8,8,10,21 1*9,9,8,13 \
            1*9,9,18,19 2*9,9,8,19 1*9,9,8,13 1*8,8,10,15 1*8,8,18,21 4*8,8,10,21 \
            1*10,10,11,16 1*10,10,4,16",
        },
        Vector {
            python: "3.12",
            name: "exceptions::exc",
            first_line: 1,
            table: "8000f00205050cdc08098c03f40800090a8c03dc090d88618b17f0000105199042d80f118f77\
            89778b79f703010519f100010519f8f409000c16f20001050ddc080988218f048904fbf00301\
            050dfbf40600090a8d03faf702010519f000010519fa",
            positions: "1*1,1,0,0 1*2,7,4,11 5*3,3,8,9 5*3,3,8,11 5*7,7,8,9 5*7,7,8,11 5*8,8,9,13 \
            1*8,8,14,15 4*8,8,9,16 1*8,9,4,24 1*8,8,20,22 1*9,9,15,17 10*9,9,15,22 \
            4*9,9,15,24 10*8,9,4,24 1*-,-,-,- 5*4,4,11,21 3*4,5,4,12 5*5,5,8,9 \
            1*5,5,10,11 10*5,5,8,12 4*-,-,-,- 1*4,5,4,12 4*-,-,-,- 5*7,7,8,9 6*7,7,8,11 \
            3*-,-,-,- 9*8,9,4,24 3*-,-,-,-",
        },
        Vector {
            python: "3.12",
            name: "jump::jump",
            first_line: 1,
            table: "8000d808098041f04a0300090a884189058041f0525c02000e0ff2006601050e8801d80c0d88\
            01f04a03000d0e8901f04d036601050ef04e03000c0d8048",
            positions:
                "1*1,1,0,0 1*2,2,8,9 1*2,2,4,5 1*103,103,8,9 1*103,103,12,13 2*103,103,8,13 \
            1*103,103,4,5 1*5104,5104,13,14 3*5104,5206,4,13 1*5104,5104,8,9 \
            1*5105,5105,12,13 1*5105,5105,8,9 1*5206,5206,12,13 2*5206,5206,8,9 \
            1*5104,5206,4,13 1*5207,5207,11,12 1*5207,5207,4,12",
        },
        Vector {
            python: "3.12",
            name: "mid_columns::mid",
            first_line: 1,
            table: "8000d80c0d8f4789478f4c894cd70c1ed10c1ed70c24d10c24d70c2cd10c2cd70c31d10c31b0\
            21d30c34b071b775b175b851b378d10c3fc021c727c127c821c32ad10c4cc871cf76c976d056\
            57cb79d10c58d05b5cd10c5c8045d80b10804c",
            positions: "1*1,1,0,0 1*2,2,12,13 10*2,2,12,19 10*2,2,12,24 10*2,2,12,30 10*2,2,12,36 \
            10*2,2,12,44 10*2,2,12,49 1*2,2,50,51 4*2,2,12,52 1*2,2,55,56 10*2,2,55,60 \
            1*2,2,61,62 4*2,2,55,63 2*2,2,12,63 1*2,2,66,67 10*2,2,66,73 1*2,2,74,75 \
            4*2,2,66,76 2*2,2,12,76 1*2,2,79,80 10*2,2,79,85 1*2,2,86,87 4*2,2,79,88 \
            2*2,2,12,88 1*2,2,91,92 2*2,2,12,92 1*2,2,4,9 1*3,3,11,16 1*3,3,4,16",
        },
        Vector {
            python: "3.12",
            name: "module_gen::<module>",
            first_line: 1,
            table: "f003010101db0009f702030131f100030131f1080005218101",
            positions: "1*0,1,0,0 4*1,1,0,9 10*2,5,0,48 2*6,6,4,32 2*6,6,0,1",
        },
        Vector {
            python: "3.12",
            name: "module_gen::K.m",
            first_line: 4,
            table: "e800f88000d913309c75a054a759a159d31f2fd41330d70830d20830fa",
            positions: "1*4,4,-,- 1*-,-,-,- 1*4,4,0,0 2*5,5,19,48 5*5,5,31,36 1*5,5,37,41 \
            10*5,5,37,46 4*5,5,31,47 5*5,5,19,48 11*5,5,8,48 3*-,-,-,-",
        },
        Vector {
            python: "3.12",
            name: "module_gen::K.m.<locals>.<genexpr>",
            first_line: 5,
            table: "e800f88000d2133098219441d11330f9",
            positions:
                "1*5,5,-,- 1*-,-,-,- 1*5,5,0,0 3*5,5,19,48 1*5,5,26,27 5*5,5,20,21 2*5,5,19,48 \
            2*-,-,-,-",
        },
        Vector {
            python: "3.13",
            name: "multiline_call::multi",
            first_line: 1,
            table: "8000dc0b0ed80809dc080b8841d81011f103010913f305040c06f000040506",
            positions:
                "1*1,1,0,0 5*2,2,11,14 1*3,3,8,9 5*4,4,8,11 1*4,4,12,13 1*5,5,16,17 2*4,5,8,18 \
            4*2,6,11,5 1*2,6,4,5",
        },
        Vector {
            python: "3.13",
            name: "long_line::wide",
            first_line: 1,
            table: "8000dc0d1fd42031d43344d44657d4596ad46c7df4000040025102f4000053026402f4000066\
            027702f4000079024a03f400004c035d03f400005f037103f4000073034504f0000047044a04\
            f7000047045804f1000047045804f7000047046604f1000047046604f0000067046a04f70000\
            67047704f1000067047704f0000078047904f000007b047c04f3000067047d04f00000430546\
            05f7000043054c05f1000043054c05f0000047046604f0000047044d05f300000e4e058046d8\
            0b11804d",
            positions: "1*1,1,0,0 5*2,2,13,31 5*2,2,32,49 5*2,2,51,68 5*2,2,70,87 5*2,2,89,106 \
            5*2,2,108,125 5*2,2,127,144 5*2,2,146,163 5*2,2,165,182 5*2,2,184,201 \
            5*2,2,203,220 5*2,2,222,240 5*2,2,242,260 1*2,2,262,265 10*2,2,262,279 \
            10*2,2,262,293 1*2,2,294,297 10*2,2,294,310 1*2,2,311,312 1*2,2,314,315 \
            4*2,2,294,316 1*2,2,322,325 10*2,2,322,331 1*2,2,262,293 1*2,2,262,332 \
            4*2,2,13,333 1*2,2,4,10 1*3,3,11,17 1*3,3,4,17",
        },
        Vector {
            python: "3.13",
            name: "spans::spans",
            first_line: 1,
            table: "8000d80405874381438745814588218f23892388618b2690219723912390619326d40419da08\
            278041dc0b0e88718b369041974891489851934bd10b1fd0041f",
            positions: "1*1,1,0,0 1*2,2,4,5 10*2,2,4,7 10*2,2,4,9 1*2,2,10,11 10*2,2,10,13 \
            1*2,2,14,15 4*2,2,10,16 1*2,2,18,19 10*2,2,18,21 1*2,2,22,23 4*2,2,18,24 \
            5*2,2,4,25 3*3,3,8,39 1*3,3,4,5 5*4,4,11,14 1*4,4,15,16 4*4,4,11,17 \
            1*4,4,20,21 10*4,4,20,28 1*4,4,29,30 4*4,4,20,31 2*4,4,11,31 1*4,4,4,31",
        },
        Vector {
            python: "3.13",
            name: "loop::loop",
            first_line: 1,
            table: "8000d80c0d8045dc0d1290318e588801d80b0c88718f35d80c11894a8a45e00c119051894a8a\
            45f109000e16f00a000b1090238b2bd8080d9021890b8805f003000b1090238d2be00b10804c",
            positions:
                "1*1,1,0,0 1*2,2,12,13 1*2,2,4,9 5*3,3,13,18 1*3,3,19,20 7*3,3,13,21 1*3,3,8,9 \
            1*4,4,11,12 1*4,4,15,16 8*4,4,11,16 1*5,5,12,17 2*5,5,12,22 3*5,5,12,17 \
            1*7,7,12,17 1*7,7,21,22 2*7,7,12,22 3*7,7,12,17 2*3,3,13,21 1*8,8,10,15 \
            1*8,8,18,21 4*8,8,10,21 1*9,9,8,13 1*9,9,18,19 2*9,9,8,19 1*9,9,8,13 \
            1*8,8,10,15 1*8,8,18,21 6*8,8,10,21 1*10,10,11,16 1*10,10,4,16",
        },
        Vector {
            python: "3.13",
            name: "exceptions::exc",
            first_line: 1,
            table: "8000f00205050cdc08098c03f40800090a8c03dc090d88618c179042d80f118f7789778b79f7\
            03000a118917f8f409000c16f30001050ddc080988218f048904fbf00301050dfbf40600090a\
            8d03fadf09108d17fa",
            positions: "1*1,1,0,0 1*2,7,4,11 5*3,3,8,9 5*3,3,8,11 5*7,7,8,9 5*7,7,8,11 5*8,8,9,13 \
            1*8,8,14,15 5*8,8,9,16 1*8,8,20,22 1*9,9,15,17 10*9,9,15,22 4*9,9,15,24 \
            10*8,8,9,16 1*-,-,-,- 5*4,4,11,21 4*4,5,4,12 5*5,5,8,9 1*5,5,10,11 \
            10*5,5,8,12 4*-,-,-,- 1*4,5,4,12 4*-,-,-,- 5*7,7,8,9 6*7,7,8,11 3*-,-,-,- \
            14*8,8,9,16 3*-,-,-,-",
        },
        Vector {
            python: "3.13",
            name: "jump::jump",
            first_line: 1,
            table: "8000d808098041f04a0300090a884189058041f3525c02000e0f8801d80c0d8801f04a03000d\
            0e8a01f14d03000e0ff04e03000c0d8048",
            positions:
                "1*1,1,0,0 1*2,2,8,9 1*2,2,4,5 1*103,103,8,9 1*103,103,12,13 2*103,103,8,13 \
            1*103,103,4,5 4*5104,5104,13,14 1*5104,5104,8,9 1*5105,5105,12,13 \
            1*5105,5105,8,9 1*5206,5206,12,13 3*5206,5206,8,9 2*5104,5104,13,14 \
            1*5207,5207,11,12 1*5207,5207,4,12",
        },
        Vector {
            python: "3.13",
            name: "mid_columns::mid",
            first_line: 1,
            table: "8000d80c0d8f4789478f4c894cd70c1ed10c1ed70c24d10c24d70c2cd10c2cd70c31d10c31b0\
            21d30c34b071b775b175b851b378d10c3fc021c727c127c821c32ad10c4cc871cf76c976d056\
            57cb79d10c58d05b5cd10c5c8045d80b10804c",
            positions: "1*1,1,0,0 1*2,2,12,13 10*2,2,12,19 10*2,2,12,24 10*2,2,12,30 10*2,2,12,36 \
            10*2,2,12,44 10*2,2,12,49 1*2,2,50,51 4*2,2,12,52 1*2,2,55,56 10*2,2,55,60 \
            1*2,2,61,62 4*2,2,55,63 2*2,2,12,63 1*2,2,66,67 10*2,2,66,73 1*2,2,74,75 \
            4*2,2,66,76 2*2,2,12,76 1*2,2,79,80 10*2,2,79,85 1*2,2,86,87 4*2,2,79,88 \
            2*2,2,12,88 1*2,2,91,92 2*2,2,12,92 1*2,2,4,9 1*3,3,11,16 1*3,3,4,16",
        },
        Vector {
            python: "3.13",
            name: "module_gen::<module>",
            first_line: 1,
            table: "f003010101db0009f702030131f100030131f1080005218101",
            positions: "1*0,1,0,0 4*1,1,0,9 10*2,5,0,48 2*6,6,4,32 2*6,6,0,1",
        },
        Vector {
            python: "3.13",
            name: "module_gen::K.m",
            first_line: 4,
            table: "e9008000d913309c75a054a759a159d41f2fd31330d70830d30830f9",
            positions: "2*4,4,-,- 1*4,4,0,0 2*5,5,19,48 5*5,5,31,36 1*5,5,37,41 10*5,5,37,46 \
            5*5,5,31,47 4*5,5,19,48 12*5,5,8,48 2*-,-,-,-",
        },
        Vector {
            python: "3.13",
            name: "module_gen::K.m.<locals>.<genexpr>",
            first_line: 5,
            table: "e9008000d01330d11f2f98219441d21f2ff9",
            positions: "2*5,5,-,- 1*5,5,0,0 1*5,5,19,48 2*5,5,31,47 1*5,5,26,27 5*5,5,20,21 \
            3*5,5,31,47 2*-,-,-,-",
        },
    ];

    fn hex(s: &str) -> Vec<u8> {
        assert!(s.len() % 2 == 0, "odd hex length");
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit"))
            .collect()
    }

    fn parse_field<T: std::str::FromStr>(s: &str) -> Option<T> {
        if s == "-" {
            None
        } else {
            Some(s.parse().ok().expect("number"))
        }
    }

    fn parse_positions(s: &str) -> Vec<Position> {
        let mut out = Vec::new();
        for item in s.split_whitespace() {
            let (count, rest) = item.split_once('*').expect("count*position");
            let fields: Vec<&str> = rest.split(',').collect();
            assert_eq!(fields.len(), 4, "{item}");
            let pos = (
                parse_field(fields[0]),
                parse_field(fields[1]),
                parse_field(fields[2]),
                parse_field(fields[3]),
            );
            let count: usize = count.parse().expect("count");
            out.extend(std::iter::repeat_n(pos, count));
        }
        out
    }

    /// What `co_positions()` reports for decoded entries: one item per code unit.
    fn expand(entries: &[Entry]) -> Vec<Position> {
        let mut out = Vec::new();
        for entry in entries {
            let pos = match entry.loc {
                None => (None, None, None, None),
                Some(l) => (Some(l.line), Some(l.end_line), l.col, l.end_col),
            };
            out.extend(std::iter::repeat_n(pos, entry.code_units as usize));
        }
        out
    }

    /// Form codes of the entries of an encoded table, in order.
    fn codes(table: &[u8]) -> Vec<u8> {
        table
            .iter()
            .filter(|&&b| b & ENTRY_START != 0)
            .map(|&b| (b >> 3) & 0x0f)
            .collect()
    }

    fn loc(line: i32, end_line: i32, col: Option<u32>, end_col: Option<u32>) -> Location {
        Location {
            line,
            end_line,
            col,
            end_col,
        }
    }

    fn entry(code_units: u32, loc: Option<Location>) -> Entry {
        Entry { code_units, loc }
    }

    fn roundtrip(entries: &[Entry], first_line: i32) -> Vec<u8> {
        let table = encode(entries, first_line);
        assert_eq!(
            decode(&table, first_line).as_deref(),
            Ok(entries),
            "table {table:02x?}"
        );
        table
    }

    #[test]
    fn cpython_tables_decode_to_co_positions() {
        for v in VECTORS {
            let table = hex(v.table);
            let entries = decode(&table, v.first_line);
            assert!(entries.is_ok(), "{} {}: {entries:?}", v.python, v.name);
            let entries = entries.unwrap_or_default();
            assert!(
                entries.iter().all(|e| (1..=8).contains(&e.code_units)),
                "{} {}",
                v.python,
                v.name
            );
            assert_eq!(
                expand(&entries),
                parse_positions(v.positions),
                "{} {}",
                v.python,
                v.name
            );
        }
    }

    #[test]
    fn cpython_tables_reencode_byte_identical() {
        for v in VECTORS {
            let table = hex(v.table);
            let entries = decode(&table, v.first_line).expect("decodes");
            let again = encode(&entries, v.first_line);
            assert_eq!(
                decode(&again, v.first_line).as_ref(),
                Ok(&entries),
                "{} {}",
                v.python,
                v.name
            );
            // The encoder picks forms exactly as CPython's assembler does.
            assert_eq!(again, table, "{} {}", v.python, v.name);
        }
    }

    #[test]
    fn cpython_vectors_cover_versions_and_forms() {
        for python in ["3.11", "3.12", "3.13"] {
            let mut seen = [false; 16];
            for v in VECTORS.iter().filter(|v| v.python == python) {
                for code in codes(&hex(v.table)) {
                    seen[usize::from(code)] = true;
                }
            }
            // Short forms (several column groups), all one-line forms, no-column, long, none.
            for code in [0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15] {
                assert!(seen[code], "python {python}: no entry of code {code}");
            }
        }
    }

    #[test]
    fn forms_chosen_like_cpython() {
        let one = |l: Location| [entry(1, Some(l))];
        // Short form: same line, columns < 80, width < 16; the group is col / 8.
        assert_eq!(
            roundtrip(&one(loc(10, 10, Some(42), Some(57))), 10),
            [0x80 | 5 << 3, 0x2f]
        );
        // Width 16 or a line change needs the one-line form.
        assert_eq!(
            roundtrip(&one(loc(10, 10, Some(0), Some(16))), 10),
            [0x80 | 10 << 3, 0, 16]
        );
        assert_eq!(
            roundtrip(&one(loc(12, 12, Some(127), Some(127))), 10),
            [0x80 | 12 << 3, 127, 127]
        );
        // End before start cannot use the short form.
        assert_eq!(
            roundtrip(&one(loc(10, 10, Some(9), Some(3))), 10),
            [0x80 | 10 << 3, 9, 3]
        );
        // Column 128, line delta 3 or negative: long form.
        assert_eq!(
            roundtrip(&one(loc(10, 10, Some(128), Some(130))), 10),
            [0x80 | 14 << 3, 0, 0, 0x41, 0x02, 0x43, 0x02]
        );
        assert_eq!(
            roundtrip(&one(loc(13, 13, Some(1), Some(2))), 10),
            [0x80 | 14 << 3, 6, 0, 2, 3]
        );
        assert_eq!(
            roundtrip(&one(loc(9, 9, Some(1), Some(2))), 10),
            [0x80 | 14 << 3, 3, 0, 2, 3]
        );
        // Line only: code 13 with a signed delta.
        assert_eq!(
            roundtrip(&one(loc(7, 7, None, None)), 10),
            [0x80 | 13 << 3, 7]
        );
        // Multi-line ranges and partly known columns: long form, absent column as 0.
        assert_eq!(
            roundtrip(&one(loc(10, 12, None, None)), 10),
            [0x80 | 14 << 3, 0, 2, 0, 0]
        );
        assert_eq!(
            roundtrip(&one(loc(10, 10, Some(4), None)), 10),
            [0x80 | 14 << 3, 0, 0, 5, 0]
        );
        assert_eq!(
            roundtrip(&one(loc(10, 10, None, Some(0))), 10),
            [0x80 | 14 << 3, 0, 0, 0, 1]
        );
        // No location: code 15 and nothing else.
        assert_eq!(roundtrip(&[entry(8, None)], 10), [0x80 | 15 << 3 | 7]);
    }

    #[test]
    fn roundtrip_hand_made_entries() {
        let mut entries = Vec::new();
        let mut units = (1..=8).cycle();
        let mut next_units = || units.next().unwrap_or(1);
        let lines = [
            1,
            1,
            2,
            4,
            3,
            70,
            6,
            100_000,
            -100_000,
            5,
            0,
            1,
            i32::MAX,
            i32::MIN,
            1,
        ];
        let cols = [
            (None, None),
            (Some(0), Some(0)),
            (Some(0), Some(127)),
            (Some(127), Some(127)),
            (Some(127), Some(128)),
            (Some(128), Some(128)),
            (Some(79), Some(94)),
            (Some(80), Some(81)),
            (Some(1000), Some(1003)),
            (Some(5), None),
            (None, Some(1000)),
            (Some(u32::MAX - 1), Some(u32::MAX)),
        ];
        for &line in &lines {
            for &(col, end_col) in &cols {
                for end_delta in [0, 1, 3000] {
                    let end_line = line.saturating_add(end_delta);
                    entries.push(entry(next_units(), Some(loc(line, end_line, col, end_col))));
                }
                entries.push(entry(next_units(), None));
            }
        }
        for first_line in [1, 0, -5, 1_000_000, i32::MAX, i32::MIN] {
            roundtrip(&entries, first_line);
        }
        assert_eq!(roundtrip(&[], 1), Vec::<u8>::new());
    }

    #[test]
    fn big_line_deltas_use_multi_group_svarints() {
        // +64 -> svarint 128 = 2 groups; -5000 -> 10001 = 3 groups.
        let entries = [
            entry(1, Some(loc(65, 65, None, None))),
            entry(2, Some(loc(-4935, -4935, Some(3), Some(4)))),
        ];
        assert_eq!(
            roundtrip(&entries, 1),
            [
                0x80 | 13 << 3,
                0x40,
                0x02,
                0x80 | 14 << 3 | 1,
                0x40 | (10001 & 63) as u8,
                0x40 | ((10001 >> 6) & 63) as u8,
                (10001 >> 12) as u8,
                0,
                4,
                5
            ]
        );
    }

    #[test]
    fn none_entries_keep_the_running_line() {
        let entries = [
            entry(1, Some(loc(5, 5, Some(0), Some(3)))),
            entry(3, None),
            entry(1, Some(loc(6, 6, Some(0), Some(3)))),
        ];
        // 5 is delta 4 (long), the none entry, then delta 1 from line 5 (code 11).
        assert_eq!(
            codes(&roundtrip(&entries, 1)),
            [CODE_LONG, CODE_NONE, CODE_ONE_LINE0 + 1]
        );
    }

    #[test]
    fn long_entries_are_split() {
        let l = loc(3, 3, Some(4), Some(9));
        let table = encode(&[entry(20, Some(l)), entry(17, None)], 1);
        // Like CPython: the first piece carries the line delta, the others are short forms.
        assert_eq!(
            table,
            [
                0x80 | 12 << 3 | 7,
                4,
                9,
                0x80 | 7,
                0x45,
                0x80 | 3,
                0x45,
                0x80 | 15 << 3 | 7,
                0x80 | 15 << 3 | 7,
                0x80 | 15 << 3,
            ]
        );
        let decoded = decode(&table, 1).expect("decodes");
        let units: Vec<u32> = decoded.iter().map(|e| e.code_units).collect();
        assert_eq!(units, [8, 8, 4, 8, 8, 1]);
        assert!(decoded[..3].iter().all(|e| e.loc == Some(l)));
        assert!(decoded[3..].iter().all(|e| e.loc.is_none()));
        // Exactly 8 is not split; 0 writes nothing.
        assert_eq!(encode(&[entry(8, Some(l)), entry(0, Some(l))], 3).len(), 2);
    }

    #[test]
    fn end_line_before_line_is_clamped() {
        let table = encode(&[entry(1, Some(loc(5, 4, None, None)))], 5);
        assert_eq!(
            decode(&table, 5),
            Ok(vec![entry(1, Some(loc(5, 5, None, None)))])
        );
    }

    #[test]
    fn remap_shifts_lines_and_columns() {
        let shift = |l: Location, _class: bool| Location {
            line: l.line + 5,
            end_line: l.end_line + 5,
            col: l.col.map(|c| c + 3),
            end_col: l.end_col.map(|c| c + 3),
        };
        let shift_some = |l: Location, class: bool| Some(shift(l, class));
        for v in VECTORS {
            let table = hex(v.table);
            let before = decode(&table, v.first_line).expect("decodes");
            let new_first = v.first_line + 5;
            let remapped =
                remap(&table, v.first_line, new_first, |_| false, shift_some).expect("remaps");
            let after = decode(&remapped, new_first).expect("decodes");
            let expected: Vec<Entry> = before
                .iter()
                .map(|e| Entry {
                    code_units: e.code_units,
                    loc: e.loc.map(|l| shift(l, false)),
                })
                .collect();
            assert_eq!(after, expected, "{} {}", v.python, v.name);
            // Shifting everything (first line included) keeps every line delta, so line-only
            // and none entries keep their forms (columns may move to bigger forms).
            let line_only_or_none =
                |t: &[u8]| codes(t).into_iter().filter(|&c| c == 13 || c == 15).count();
            assert_eq!(
                line_only_or_none(&remapped),
                line_only_or_none(&table),
                "{} {}",
                v.python,
                v.name
            );
        }
        // A hand-made table: columns 77 -> 80 leave the short form; line-only stays so.
        let table = encode(
            &[
                entry(2, Some(loc(1, 1, Some(77), Some(78)))),
                entry(1, None),
                entry(3, Some(loc(2, 2, None, None))),
                entry(1, Some(loc(2, 4, Some(0), Some(1)))),
            ],
            1,
        );
        let remapped = remap(&table, 1, 6, |_| false, shift_some).expect("remaps");
        assert_eq!(
            decode(&remapped, 6),
            Ok(vec![
                entry(2, Some(loc(6, 6, Some(80), Some(81)))),
                entry(1, None),
                entry(3, Some(loc(7, 7, None, None))),
                entry(1, Some(loc(7, 9, Some(3), Some(4)))),
            ])
        );
        assert_eq!(codes(&remapped), [10, 15, 13, 14]);
        // Errors pass through.
        assert_eq!(
            remap(&[0x01], 1, 1, |_| false, shift_some),
            Err(LinetableError::BadEntryHeader { offset: 0 })
        );
    }

    #[test]
    fn remap_can_drop_locations() {
        // Lines 2 and 4 stand for nothing in the original: they become "no location", and the
        // entries after them keep their lines (deltas are from the last located entry).
        let table = encode(
            &[
                entry(1, Some(loc(1, 1, None, None))),
                entry(3, Some(loc(2, 2, Some(4), Some(9)))),
                entry(2, Some(loc(3, 3, Some(4), Some(20)))),
                entry(1, Some(loc(4, 4, Some(1), Some(2)))),
                entry(1, Some(loc(5, 5, Some(0), Some(6)))),
            ],
            1,
        );
        let drop_even = |l: Location, _class: bool| (l.line % 2 == 1).then_some(l);
        let remapped = remap(&table, 1, 1, |_| false, drop_even).expect("remaps");
        assert_eq!(
            decode(&remapped, 1),
            Ok(vec![
                entry(1, Some(loc(1, 1, None, None))),
                entry(3, None),
                entry(2, Some(loc(3, 3, Some(4), Some(20)))),
                entry(1, None),
                entry(1, Some(loc(5, 5, Some(0), Some(6)))),
            ])
        );
        assert_eq!(codes(&remapped), [13, 15, 12, 15, 12]);
    }

    #[test]
    fn garbage_is_an_error() {
        use LinetableError::{BadEntryHeader, Truncated};
        let cases: &[(&[u8], i32, LinetableError)] = &[
            // A byte without the entry-start bit where an entry must begin.
            (&[0x00], 1, BadEntryHeader { offset: 0 }),
            (&[0x80, 0x05, 0x7f], 1, BadEntryHeader { offset: 2 }),
            (&[0xf8, 0x42], 1, BadEntryHeader { offset: 1 }),
            // Short form without its byte, or with a header byte in its place.
            (&[0x80], 1, Truncated { offset: 0 }),
            (&[0xf8, 0x80, 0x80], 1, Truncated { offset: 1 }),
            // One-line form missing the end column.
            (&[0xd0, 0x01], 1, Truncated { offset: 0 }),
            // Varint with its continuation bit set at the end of the table.
            (&[0xe8, 0x41], 1, Truncated { offset: 0 }),
            (&[0xf0, 0x00, 0x00, 0x40], 1, Truncated { offset: 0 }),
            // Long form missing columns, or cut short by the next header.
            (&[0xf0, 0x00], 1, Truncated { offset: 0 }),
            (&[0xf0, 0x00, 0x00, 0x00, 0xf8], 1, Truncated { offset: 0 }),
            // A varint longer than 6 groups.
            (
                &[0xe8, 0x40, 0x40, 0x40, 0x40, 0x40, 0x40, 0x00],
                1,
                BadEntryHeader { offset: 0 },
            ),
            // Line overflow (one-line form, svarint), end-line overflow, column overflow.
            (&[0xd8, 0x00, 0x00], i32::MAX, BadEntryHeader { offset: 0 }),
            (&[0xe8, 0x03], i32::MIN, BadEntryHeader { offset: 0 }),
            (
                &[0xf0, 0x00, 0x02, 0x00, 0x00],
                i32::MAX - 1,
                BadEntryHeader { offset: 0 },
            ),
            (
                &[0xf0, 0x00, 0x00, 0x42, 0x40, 0x40, 0x40, 0x40, 0x08, 0x00],
                1,
                BadEntryHeader { offset: 0 },
            ),
        ];
        for (table, first_line, err) in cases {
            assert_eq!(
                decode(table, *first_line).as_ref(),
                Err(err),
                "{table:02x?}"
            );
            assert!(!err.to_string().is_empty());
        }
    }

    #[test]
    fn random_bytes_never_panic_and_decoded_tables_roundtrip() {
        // xorshift64*: deterministic, no dependencies.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545_f491_4f6c_dd1d)
        };
        let mut decoded = 0;
        for _ in 0..20_000 {
            let len = (next() % 24) as usize;
            let mut table: Vec<u8> = (0..len).map(|_| (next() >> 56) as u8).collect();
            // Bias towards well-formed tables: most bytes are payload, headers start entries.
            if next() % 2 == 0 {
                for (i, b) in table.iter_mut().enumerate() {
                    if i == 0 || next() % 3 == 0 {
                        *b |= ENTRY_START;
                    } else {
                        *b &= !ENTRY_START;
                    }
                }
            }
            let first_line = (next() % 2000) as i32 - 1000;
            if let Ok(entries) = decode(&table, first_line) {
                decoded += 1;
                roundtrip(&entries, first_line);
            }
        }
        assert!(decoded > 1000, "only {decoded} random tables decoded");
    }

    #[test]
    fn random_entries_roundtrip() {
        let mut state = 0x1234_5678_9abc_def1u64;
        let mut next = move || {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545_f491_4f6c_dd1d)
        };
        for _ in 0..2_000 {
            let mut entries = Vec::new();
            let mut line = (next() % 100) as i32;
            for _ in 0..(next() % 40) {
                let units = (next() % 8) as u32 + 1;
                if next() % 6 == 0 {
                    entries.push(entry(units, None));
                    continue;
                }
                line += match next() % 4 {
                    0 => 0,
                    1 => (next() % 3) as i32,
                    2 => (next() % 200) as i32 - 100,
                    _ => (next() % 200_000) as i32 - 100_000,
                };
                let end_line = line
                    + if next() % 3 == 0 {
                        (next() % 70) as i32
                    } else {
                        0
                    };
                let mut col = || match next() % 5 {
                    0 => None,
                    1 => Some((next() % 16) as u32),
                    2 => Some((next() % 130) as u32),
                    _ => Some((next() % 5000) as u32),
                };
                let (col, end_col) = (col(), col());
                entries.push(entry(units, Some(loc(line, end_line, col, end_col))));
            }
            roundtrip(&entries, (next() % 50) as i32);
        }
    }
}
