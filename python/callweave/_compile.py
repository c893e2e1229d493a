"""Rewrite source with the native engine and compile it with the original positions."""

from __future__ import annotations

import ast
import builtins
import dis
import importlib.util
import io
import re
import sys
import tokenize
import warnings
from collections.abc import Callable, Iterable, Sequence
from types import CodeType
from typing import Any

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


def _opcodes(names: Iterable[str]) -> bytes:
    """The opcodes of ``names`` that this Python has (``co_code`` bytes, no pseudo-ops)."""
    return bytes(op for op in (dis.opmap.get(n) for n in names) if op is not None and op < 256)


def _jump_opcodes() -> tuple[bytes, bytes]:
    """This Python's relative jumps: (forward, backward)."""
    jumps = sorted({*dis.hasjrel, *getattr(dis, "hasjump", ())})
    names = [dis.opname[op] for op in jumps if op < 256]
    backward = [n for n in names if "JUMP_BACKWARD" in n]
    return _opcodes(n for n in names if n not in backward), _opcodes(backward)


_FORWARD_JUMPS, _BACKWARD_JUMPS = _jump_opcodes()
#: Where a frame returns, and the instructions after which execution never falls through.
_RETURNS = _opcodes(("RETURN_VALUE", "RETURN_CONST"))
_TERMINATORS = _RETURNS + _opcodes(
    (
        "JUMP_FORWARD",
        "JUMP_BACKWARD",
        "JUMP_BACKWARD_NO_INTERRUPT",
        "RAISE_VARARGS",
        "RERAISE",
    )
)
#: FOR_ITER and how many code units past its target it lands when the iterator ends: it
#: skips END_FOR on 3.12, END_FOR and the POP_TOP after it on 3.13.
_FOR_ITER = (dis.opmap["FOR_ITER"], {(3, 12): 1, (3, 13): 2}.get(sys.version_info[:2], 0))


#: The instructions of a ``try``/``finally`` handler: PUSH_EXC_INFO, RERAISE, COPY, POP_EXCEPT.
_EXC_HANDLER = (
    dis.opmap["PUSH_EXC_INFO"],
    dis.opmap["RERAISE"],
    dis.opmap["COPY"],
    dis.opmap["POP_EXCEPT"],
)


def remap_code(result: _native.Rewritten, code: CodeType) -> CodeType:
    """``code`` compiled from ``result.source``, with every position mapped to the original.

    The exits of profiled functions get the lines plain Python gives its returns, and an
    exception leaves their frames at the instruction that raised, as in plain Python.
    """
    return result.remap_code(
        code,
        _CALL_OPCODES,
        _EXTENDED_ARG,
        forward_jumps=_FORWARD_JUMPS,
        backward_jumps=_BACKWARD_JUMPS,
        returns=_RETURNS,
        terminators=_TERMINATORS,
        for_iter=_FOR_ITER,
        jump_forward=(dis.opmap["JUMP_FORWARD"], dis.opmap["NOP"]),
        exc_handler=_EXC_HANDLER,
    )


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


def _fix_missing_locations(tree: ast.AST) -> None:
    """``ast.fix_missing_locations``, but a node that has a start and no end ends where it starts.

    Transformers (pytest's assertion rewriting among them) create nodes with ``lineno`` and no
    ``end_lineno``; ``ast.fix_missing_locations`` would give them their parent's end (line 1
    for a module-level node), a range CPython's compiler rejects.
    """
    for walked in ast.walk(tree):
        node: Any = walked  # a located node (expr, stmt, ...): checked just below
        if getattr(node, "lineno", None) is None:
            continue
        if getattr(node, "end_lineno", None) is None:
            node.end_lineno = node.lineno
            node.end_col_offset = getattr(node, "col_offset", None)
        elif getattr(node, "end_col_offset", None) is None and node.end_lineno == node.lineno:
            node.end_col_offset = getattr(node, "col_offset", None)
    ast.fix_missing_locations(tree)


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
        SyntaxError: The source has a syntax error (the running Python's own), or breaks a
            transform's rule (the engine's message, at the offending node: file, line, column).
        RewriteError: The engine cannot rewrite this source.
    """
    try:
        result = _native.rewrite(source, list(rules), BUILTIN_NAMES)
    except ParseError as exc:
        raise_users_syntax_error(source, filename)
        raise RewriteError(f"{filename}: {exc}") from None
    except SyntaxError as exc:
        # Code that breaks a transform's rule (e.g. assigning a name frozen as a constant):
        # the engine gives the message and position, the file and line text are filled here.
        exc.filename = filename
        lines = source.splitlines()
        if exc.lineno and 0 < exc.lineno <= len(lines):
            line = lines[exc.lineno - 1]
            exc.text = line + "\n"
            if exc.offset:
                # The engine's column counts UTF-8 bytes; CPython's offsets count characters.
                head = line.encode("utf-8")[: exc.offset - 1]
                exc.offset = len(head.decode("utf-8", "replace")) + 1
        raise
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if tree_hook is not None:
                tree = tree_hook(ast.parse(result.source, filename), result)
                _fix_missing_locations(tree)
                try:
                    code = compile(tree, filename, "exec", dont_inherit=True, optimize=optimize)
                except (TypeError, ValueError) as exc:
                    # A transformer built a tree that is not Python (a wrong node type, a
                    # missing field): not the source's error.
                    raise RewriteError(
                        f"{filename}: the transformed tree does not compile: "
                        f"{type(exc).__name__}: {exc}"
                    ) from None
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
