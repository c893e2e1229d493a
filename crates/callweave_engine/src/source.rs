//! Source text handling: PEP 263 coding declarations, the UTF-8 BOM, and line indexes.
//!
//! Offsets everywhere in the engine are UTF-8 byte offsets into the decoded text (BOM removed),
//! which is also what CPython uses for `col_offset` and `co_positions()` columns.

use crate::EngineError;

/// Source bytes decoded to text, with what was found on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// The text, without a BOM.
    pub text: String,
    /// Whether a UTF-8 BOM was removed.
    pub had_bom: bool,
}

/// Decodes source bytes the way CPython does for UTF-8 sources.
///
/// A UTF-8 BOM is removed. A PEP 263 declaration naming UTF-8 (any alias CPython accepts for it)
/// is fine; one naming another encoding yields [`EngineError::NeedsDecoding`] so that the caller
/// decodes with Python's own codecs and passes text instead.
pub fn decode(bytes: &[u8]) -> Result<Decoded, EngineError> {
    let (body, had_bom) = match bytes.strip_prefix(b"\xef\xbb\xbf") {
        Some(rest) => (rest, true),
        None => (bytes, false),
    };
    if let Some(encoding) = declared_encoding(body) {
        if !is_utf8_name(&encoding) {
            return Err(EngineError::NeedsDecoding { encoding });
        }
    }
    match std::str::from_utf8(body) {
        Ok(text) => Ok(Decoded {
            text: text.to_owned(),
            had_bom,
        }),
        Err(err) => Err(EngineError::InvalidUtf8 {
            offset: err.valid_up_to() + if had_bom { 3 } else { 0 },
        }),
    }
}

/// The encoding named by a PEP 263 declaration in the first two lines, if any.
///
/// The declaration on line 2 counts only if line 1 is a comment or blank, as in CPython's
/// tokenizer.
pub fn declared_encoding(bytes: &[u8]) -> Option<String> {
    let mut lines = bytes.split(|&b| b == b'\n').take(2);
    let first = lines.next()?;
    if let Some(name) = coding_in_line(first) {
        return Some(name);
    }
    let first_trimmed = trim_ascii_start(first);
    if !(first_trimmed.is_empty() || first_trimmed.starts_with(b"#") || first_trimmed == b"\r") {
        return None;
    }
    coding_in_line(lines.next()?)
}

fn trim_ascii_start(line: &[u8]) -> &[u8] {
    let start = line
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t' | b'\x0c'))
        .unwrap_or(line.len());
    line.get(start..).unwrap_or_default()
}

/// Matches CPython's rule `^[ \t\f]*#.*?coding[:=][ \t]*([-\w.]+)`.
fn coding_in_line(line: &[u8]) -> Option<String> {
    let rest = trim_ascii_start(line);
    let comment = rest.strip_prefix(b"#")?;
    coding_in_line_from(comment)
}

fn coding_in_line_from(rest: &[u8]) -> Option<String> {
    let at = find(rest, b"coding")?;
    let after = rest.get(at + 6..)?;
    let (&sep, after) = after.split_first()?;
    if sep != b':' && sep != b'=' {
        return coding_in_line_from(after);
    }
    name_at(after)
}

fn name_at(after: &[u8]) -> Option<String> {
    let start = after
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(after.len());
    let name: Vec<u8> = after
        .get(start..)?
        .iter()
        .copied()
        .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        .collect();
    if name.is_empty() {
        None
    } else {
        String::from_utf8(name).ok()
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Whether CPython's tokenizer treats `name` as UTF-8 (it normalises `utf-8`, `utf_8`,
/// `utf-8-*` and `utf_8_*` case-insensitively; the codec registry adds `utf8` and `u8`).
fn is_utf8_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase().replace('_', "-");
    matches!(lower.as_str(), "utf-8" | "utf8" | "u8" | "cp65001") || lower.starts_with("utf-8-")
}

/// Start offsets of every line of a text, with CPython's line ends: `\n`, `\r\n` and a lone `\r`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineIndex {
    starts: Vec<usize>,
    len: usize,
}

impl LineIndex {
    /// Indexes `text`.
    pub fn new(text: &str) -> Self {
        let bytes = text.as_bytes();
        // Source lines average some 30 bytes: one allocation for most files.
        let mut starts = Vec::with_capacity(bytes.len() / 24 + 2);
        starts.push(0);
        if memchr::memchr(b'\r', bytes).is_none() {
            push_lf_starts(bytes, &mut starts);
            return Self {
                starts,
                len: bytes.len(),
            };
        }
        // The `\n` of a `\r\n` pair, already counted with its `\r`.
        let mut paired = usize::MAX;
        for i in memchr::memchr2_iter(b'\n', b'\r', bytes) {
            if i == paired {
                continue;
            }
            if bytes.get(i) == Some(&b'\r') && bytes.get(i + 1) == Some(&b'\n') {
                paired = i + 1;
                starts.push(i + 2);
            } else {
                starts.push(i + 1);
            }
        }
        Self {
            starts,
            len: bytes.len(),
        }
    }

    /// Number of lines (a text ending in a line break has an empty last line).
    pub fn line_count(&self) -> usize {
        self.starts.len()
    }

    /// Offset of the start of 1-based `line`, clamped to the text.
    pub fn line_start(&self, line: usize) -> usize {
        match line.checked_sub(1).and_then(|i| self.starts.get(i)) {
            Some(&start) => start,
            None if line == 0 => 0,
            None => self.len,
        }
    }

    /// 1-based line and 0-based byte column of `offset`.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let idx = match self.starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        };
        let start = self.starts.get(idx).copied().unwrap_or(0);
        (idx + 1, offset.saturating_sub(start))
    }

    /// [`LineIndex::line_col`] for offsets looked up in (mostly) increasing order: `cursor`
    /// holds the 0-based line of the previous lookup (start at 0), and an offset on that line
    /// or one of the next few is found without a search.
    pub(crate) fn line_col_near(&self, offset: usize, cursor: &mut usize) -> (usize, usize) {
        let mut i = *cursor;
        // Invariant: `starts[i] <= offset` whenever the scan below runs.
        if self.starts.get(i).is_some_and(|&s| s <= offset) {
            for _ in 0..8 {
                match self.starts.get(i + 1) {
                    Some(&next) if next <= offset => i += 1,
                    _ => {
                        *cursor = i;
                        let start = self.starts.get(i).copied().unwrap_or(0);
                        return (i + 1, offset - start);
                    }
                }
            }
        }
        let (line, col) = self.line_col(offset);
        *cursor = line - 1;
        (line, col)
    }

    /// Offset of 1-based `line` and 0-based byte `col`, clamped to the text.
    pub fn offset(&self, line: usize, col: usize) -> usize {
        (self.line_start(line) + col).min(self.len)
    }
}

/// Pushes the start of every line after the first of `bytes`, a text with no `\r` (every line
/// ends with `\n`): thirty-two bytes at a time where the CPU has AVX2, else sixteen (SSE2,
/// part of every x86-64 CPU). Not `memchr_iter`: it restarts its search at each match, and
/// source lines are short.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
fn push_lf_starts(bytes: &[u8], starts: &mut Vec<usize>) {
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above).
        unsafe { push_lf_starts_avx2(bytes, starts) }
    } else {
        push_lf_starts_sse2(bytes, starts);
    }
}

/// [`push_lf_starts`] with AVX2; the caller checks that the CPU has it.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[target_feature(enable = "avx2")]
unsafe fn push_lf_starts_avx2(bytes: &[u8], starts: &mut Vec<usize>) {
    use std::arch::x86_64::{
        _mm256_cmpeq_epi8, _mm256_loadu_si256, _mm256_movemask_epi8, _mm256_set1_epi8,
    };
    let mut blocks = bytes.chunks_exact(32);
    let mut base = 0usize;
    for block in blocks.by_ref() {
        // SAFETY: `block` is 32 readable bytes, and the load is unaligned.
        let v = unsafe { _mm256_loadu_si256(block.as_ptr().cast()) };
        // Bit `k` set exactly when byte `k` of the block is `\n`.
        let mut mask =
            _mm256_movemask_epi8(_mm256_cmpeq_epi8(v, _mm256_set1_epi8(b'\n' as i8))) as u32;
        while mask != 0 {
            starts.push(base + mask.trailing_zeros() as usize + 1);
            mask &= mask - 1;
        }
        base += 32;
    }
    for (k, &b) in blocks.remainder().iter().enumerate() {
        if b == b'\n' {
            starts.push(base + k + 1);
        }
    }
}

/// [`push_lf_starts`] with SSE2.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
fn push_lf_starts_sse2(bytes: &[u8], starts: &mut Vec<usize>) {
    use std::arch::x86_64::{_mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8};
    let mut blocks = bytes.chunks_exact(16);
    let mut base = 0usize;
    for block in blocks.by_ref() {
        // SAFETY: SSE2 is enabled (the `cfg` above); `block` is 16 readable bytes, and the
        // load is unaligned.
        let newlines = unsafe {
            let v = _mm_loadu_si128(block.as_ptr().cast());
            _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(b'\n' as i8)))
        };
        // Bit `k` set exactly when byte `k` of the block is `\n` (16 bits: non-negative).
        let mut mask = newlines as u32;
        while mask != 0 {
            starts.push(base + mask.trailing_zeros() as usize + 1);
            mask &= mask - 1;
        }
        base += 16;
    }
    for (k, &b) in blocks.remainder().iter().enumerate() {
        if b == b'\n' {
            starts.push(base + k + 1);
        }
    }
}

/// Pushes the start of every line after the first of `bytes`, a text with no `\r` (every line
/// ends with `\n`), eight bytes at a time.
#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
fn push_lf_starts(bytes: &[u8], starts: &mut Vec<usize>) {
    const LF: u64 = u64::from_ne_bytes([b'\n'; 8]);
    const LOW7: u64 = u64::from_ne_bytes([0x7f; 8]);
    let mut words = bytes.chunks_exact(8);
    let mut base = 0usize;
    for word in words.by_ref() {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        // Little-endian, so that byte `k` of the word is bits `8k..8k+8` of `v` on any target.
        let v = u64::from_le_bytes(w) ^ LF;
        // Exactly the high bit of each zero byte of `v` (each `\n` of the word); no carry
        // crosses bytes since `(v & LOW7) + LOW7` stays below 0x100 per byte.
        let mut zeros = !(((v & LOW7) + LOW7) | v | LOW7);
        while zeros != 0 {
            let k = (zeros.trailing_zeros() / 8) as usize;
            starts.push(base + k + 1);
            zeros &= zeros - 1;
        }
        base += 8;
    }
    for (k, &b) in words.remainder().iter().enumerate() {
        if b == b'\n' {
            starts.push(base + k + 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bom_is_removed() {
        let d = decode(b"\xef\xbb\xbfx = 1\n").expect("decodes");
        assert_eq!(d.text, "x = 1\n");
        assert!(d.had_bom);
    }

    #[test]
    fn coding_declarations() {
        assert_eq!(
            declared_encoding(b"# -*- coding: latin-1 -*-\n"),
            Some("latin-1".into())
        );
        assert_eq!(
            declared_encoding(b"#!/usr/bin/env python\n# vim: set fileencoding=cp1252 :\n"),
            Some("cp1252".into())
        );
        assert_eq!(declared_encoding(b"x = 1\n# coding: latin-1\n"), None);
        assert_eq!(declared_encoding(b"x = 1  # coding: latin-1\n"), None);
        assert!(decode(b"# coding: utf-8\nx = 1\n").is_ok());
        assert!(decode(b"# coding=UTF_8\nx = 1\n").is_ok());
        assert_eq!(
            decode(b"# coding: latin-1\nx = '\xe9'\n"),
            Err(EngineError::NeedsDecoding {
                encoding: "latin-1".into()
            })
        );
    }

    #[test]
    fn invalid_utf8_reports_offset() {
        assert_eq!(
            decode(b"x = '\xff'\n"),
            Err(EngineError::InvalidUtf8 { offset: 5 })
        );
    }

    #[test]
    fn line_index_handles_all_line_ends() {
        let idx = LineIndex::new("a\r\nb\rc\nd");
        assert_eq!(idx.line_count(), 4);
        assert_eq!(idx.line_col(0), (1, 0));
        assert_eq!(idx.line_col(3), (2, 0));
        assert_eq!(idx.line_col(5), (3, 0));
        assert_eq!(idx.line_col(7), (4, 0));
        assert_eq!(idx.offset(4, 0), 7);
        assert_eq!(idx.offset(9, 0), 8);
    }

    #[test]
    fn line_index_of_lf_texts_finds_every_line() {
        // Every length and position around the 8-, 16- and 32-byte blocks, and non-ASCII
        // neighbours.
        for len in 0..80 {
            for at in 0..len {
                let mut text: Vec<u8> = (0..len).map(|i| b"ab\xc3\xa9 ("[i % 6]).collect();
                text[at] = b'\n';
                if at + 3 < len {
                    text[at + 3] = b'\n';
                }
                let text = String::from_utf8_lossy(&text).into_owned();
                let expected: Vec<usize> = std::iter::once(0)
                    .chain(text.match_indices('\n').map(|(i, _)| i + 1))
                    .collect();
                let idx = LineIndex::new(&text);
                assert_eq!(idx.starts, expected, "{text:?}");
                // The SSE2 scan too, where the CPU's AVX2 made `new` take the other one.
                #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
                {
                    let mut starts = vec![0];
                    push_lf_starts_sse2(text.as_bytes(), &mut starts);
                    assert_eq!(starts, expected, "{text:?}");
                }
            }
        }
    }

    #[test]
    fn line_col_near_agrees_with_line_col() {
        let text = "a\nbb\n\nccc\r\nd\re\n".repeat(5);
        let idx = LineIndex::new(&text);
        let mut cursor = 0;
        let offsets = (0..=text.len())
            .chain((0..=text.len()).rev())
            .chain([3, 40, 1, 60]);
        for offset in offsets {
            assert_eq!(idx.line_col_near(offset, &mut cursor), idx.line_col(offset));
        }
    }

    #[test]
    fn line_index_pairs_only_cr_before_lf() {
        // `\r`, then `\r\n`, then a final lone `\r`: four lines.
        let idx = LineIndex::new("a\r\r\nb\r");
        assert_eq!(idx.line_count(), 4);
        assert_eq!(
            (1..=4).map(|l| idx.line_start(l)).collect::<Vec<_>>(),
            [0, 2, 4, 6]
        );
    }
}
