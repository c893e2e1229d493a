"""Rewrite source with the native engine and compile it with the original positions."""

from __future__ import annotations

import ast
import builtins
import dis
import importlib.util
import io
import re
import tokenize
import warnings
from collections.abc import Callable, Sequence
from types import CodeType

from callweave import _native
from callweave.errors import ParseError, RewriteError

__all__ = [
    "BUILTIN_NAMES",
    "compile_rewritten",
    "decode_source",
    "find_code",
    "raise_users_syntax_error",
    "remap_code",
]

#: Names that ``ignore_builtins`` treats as builtins: the callables of the running Python.
BUILTIN_NAMES: frozenset[str] = frozenset(
    name for name, value in vars(builtins).items() if callable(value)
)


#: This Python's call instructions: CPython may start a method call's location at the
#: method's name, and the remapper needs to know which instructions are calls.
_CALL_OPCODES = bytes(
    dis.opmap[name]
    for name in ("CALL", "PRECALL", "CALL_KW", "KW_NAMES", "CALL_FUNCTION_EX")
    if name in dis.opmap
)
_EXTENDED_ARG = dis.opmap["EXTENDED_ARG"]


def remap_code(result: _native.Rewritten, code: CodeType) -> CodeType:
    """``code`` compiled from ``result.source``, with every position mapped to the original."""
    return result.remap_code(code, _CALL_OPCODES, _EXTENDED_ARG)


def raise_users_syntax_error(source: str | bytes, filename: str) -> None:
    """Compiles the original source so that a SyntaxError in it is the running Python's own.

    Returns normally when the original compiles.
    """
    compile(source, filename, "exec", dont_inherit=True)


_ESCAPED = re.compile("[\udc80-\udcff]")


def decode_source(data: bytes, filename: str) -> str:
    """Decodes a module's bytes as CPython reads them, for rewriting.

    CPython does not decode comments: bytes that are not valid in the file's encoding are
    accepted there (a Latin-1 name in a UTF-8 file without a coding declaration). Such bytes
    are replaced by ``?``, one character per byte, so every position of the code is kept.

    Args:
        data: The file's bytes.
        filename: Its name, for errors.

    Returns:
        The text, with universal newlines.

    Raises:
        SyntaxError: CPython's own error, with the file and line, for bytes it rejects.
        RewriteError: CPython accepts the bytes but they cannot be decoded for rewriting.
    """
    try:
        return importlib.util.decode_source(data)
    except (SyntaxError, UnicodeDecodeError, LookupError):
        pass
    # The running Python's own verdict first: its SyntaxError names the file and line.
    raise_users_syntax_error(data, filename)
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    except SyntaxError:
        encoding = "utf-8"  # no cookie could be read: CPython's default
    try:
        text = data.decode(encoding, "surrogateescape")
    except (UnicodeDecodeError, LookupError) as exc:
        raise RewriteError(f"{filename}: cannot decode the source ({exc})") from None
    text = io.IncrementalNewlineDecoder(None, translate=True).decode(text, final=True)
    clean = _ESCAPED.sub("?", text)
    # Where the undecodable bytes are: (line, column) in characters, one per byte.
    escaped = {
        (row, m.start())
        for row, line in enumerate(text.splitlines(), 1)
        for m in _ESCAPED.finditer(line)
    }
    lines = clean.splitlines(keepends=True)
    try:
        comments = {
            t.start[0]: t.start[1]
            for t in tokenize.generate_tokens(iter(lines).__next__)
            if t.type == tokenize.COMMENT
        }
    except (SyntaxError, tokenize.TokenError) as exc:
        raise RewriteError(f"{filename}: cannot decode the source ({exc})") from None
    if any(row not in comments or col < comments[row] for row, col in escaped):
        raise RewriteError(f"{filename}: bytes that are not valid {encoding} outside comments")
    return clean


def _reissue(
    caught: list[warnings.WarningMessage],
    filename: str,
    result: _native.Rewritten,
    *,
    emit_own: bool,
) -> None:
    """Issues the warnings recorded while compiling, the source's own at original lines.

    Compile-time warnings carry the rewritten source's line numbers; each is issued once at
    the line it has in the file as written. Warnings of other threads recorded in the same
    window are issued again unchanged.
    """
    for w in caught:
        if w.filename == filename:
            if emit_own:
                line = result.original_line(w.lineno) if w.lineno else w.lineno
                warnings.warn_explicit(w.message, w.category, filename, line)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)


def compile_rewritten(
    source: str,
    filename: str,
    rules: Sequence[_native.Rule],
    *,
    optimize: int = -1,
    tree_hook: Callable[[ast.Module, _native.Rewritten], ast.Module] | None = None,
    emit_warnings: bool = True,
) -> tuple[CodeType, _native.Rewritten]:
    """Rewrites ``source`` with ``rules`` and compiles it with original positions.

    Args:
        source: The module's text (decoded).
        filename: Its file name, for code objects and errors.
        rules: Native rules, innermost layer first.
        optimize: As for ``compile()``.
        tree_hook: Called with the ``ast`` tree of the rewritten source before compiling, for
            custom transformations; positions of the nodes it keeps are mapped back like the
            rest, and nodes it adds should copy the location of the node they serve.
        emit_warnings: Issue the compile-time warnings of the source (invalid escape
            sequences, "perhaps you missed a comma?") once, at their original lines; False
            when the source was already compiled normally (the decorators).

    Returns:
        The module's code object and the native rewrite result.

    Raises:
        SyntaxError: The source has a syntax error (the running Python's own).
        RewriteError: The engine cannot rewrite this source.
    """
    try:
        result = _native.rewrite(source, list(rules), BUILTIN_NAMES)
    except ParseError as exc:
        raise_users_syntax_error(source, filename)
        raise RewriteError(f"{filename}: {exc}") from None
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if tree_hook is not None:
                tree = tree_hook(ast.parse(result.source, filename), result)
                ast.fix_missing_locations(tree)
                code = compile(tree, filename, "exec", dont_inherit=True, optimize=optimize)
            else:
                code = compile(
                    result.source, filename, "exec", dont_inherit=True, optimize=optimize
                )
    except SyntaxError as exc:
        raise_users_syntax_error(source, filename)
        raise RewriteError(
            f"{filename}: the rewritten source does not compile on this Python "
            f"({exc.msg}, line {result.original_line(exc.lineno or 1)})"
        ) from None
    _reissue(caught, filename, result, emit_own=emit_warnings)
    return remap_code(result, code), result


def find_code(code: CodeType, qualname: str, firstlineno: int) -> CodeType | None:
    """Finds the code object with this qualname and first line among ``code``'s nested ones."""
    stack = [code]
    while stack:
        current = stack.pop()
        if current.co_qualname == qualname and current.co_firstlineno == firstlineno:
            return current
        stack.extend(c for c in current.co_consts if isinstance(c, CodeType))
    return None
