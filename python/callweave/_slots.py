"""Constant slots: loads of injected names become constants in compiled code.

A source transform that wants a value computed once (a transformed literal, a precomputed
slice, a name frozen as a constant) replaces a node's text by a *slot name*
(``__callweave_k_<n>__``). The rewritten source compiles the slot as a global load
(``LOAD_GLOBAL``; ``LOAD_NAME`` in class bodies; ``LOAD_FROM_DICT_OR_GLOBALS`` in annotation
scopes of class bodies on 3.12+). :func:`patch_code` then replaces every such load by a
``LOAD_CONST`` of the slot's value, in the code object and all the code objects nested in it,
so the value is loaded as fast as a plain literal and no name is looked up at run time.

Why names and not marker constants: CPython's AST optimizer folds constants (``"a" + "b"``,
``"%s" % (x,)``, constant tuples, ``x in {...}`` → frozenset) before any bytecode exists,
which would merge or hide marker constants. A name survives compilation untouched; the
patcher then redoes the folding CPython would have done had the values been literals:

- n ``LOAD_CONST`` + ``BUILD_TUPLE n`` → one tuple constant;
- n ``LOAD_CONST`` + ``BUILD_LIST n``/``BUILD_SET n`` directly tested with ``in`` or iterated
  by ``for`` → one tuple / frozenset constant (``x in {3.0}``);
- other constant lists and sets of 3 or more items → ``BUILD_LIST 0`` + tuple constant +
  ``LIST_EXTEND`` (``BUILD_SET``/frozenset/``SET_UPDATE``), as CPython compiles them;
- ``LOAD_CONST`` + ``RETURN_VALUE`` → ``RETURN_CONST`` at the constant's position (3.12, 3.13).

Only instructions that involve a slot are changed. The patcher re-lays out the code itself
rather than through a bytecode library: every other instruction, its argument, ``co_varnames``,
``co_consts`` order, every position (``co_positions()``, ``co_lines()``), the exception table
and the flags stay exactly as CPython wrote them. Unpatched code comes back byte-identical
(``co_code``, ``co_linetable``, ``co_exceptiontable``), which the tests check over the stdlib.

The format notes (3.11 to 3.13 share them): an instruction is one code unit (2 bytes: opcode,
argument) preceded by ``EXTENDED_ARG`` units for arguments above 255 and followed by inline
``CACHE`` units (opcode 0; ``co_code`` shows them zeroed). Relative jumps count code units
from the end of the jump's caches, backwards for opcodes named ``*BACKWARD*``. Exception table
and location table formats: CPython's ``Objects/exception_handling_notes.txt`` and
``Objects/locations.md``.
"""

from __future__ import annotations

import dis
import opcode
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import CodeType
from typing import Any

__all__ = ["SlotError", "patch_code"]


class SlotError(ValueError):
    """A code object whose slot loads cannot be patched (unexpected bytecode)."""


_OP = dis.opmap
_EXTENDED_ARG = _OP["EXTENDED_ARG"]
_CACHE = _OP["CACHE"]
_LOAD_CONST = _OP["LOAD_CONST"]
_LOAD_GLOBAL = _OP["LOAD_GLOBAL"]
_LOAD_NAME = _OP["LOAD_NAME"]
_LOAD_FROM_DICT_OR_GLOBALS = _OP.get("LOAD_FROM_DICT_OR_GLOBALS", -1)
#: Loads of an enclosing function's variable (``asconstants`` freezes those too): the name is
#: the oparg's fast-locals entry; ``LOAD_FROM_DICT_OR_DEREF`` (3.12+) pops a mapping first.
_LOAD_DEREF = _OP["LOAD_DEREF"]
_LOAD_CLASSDEREF = _OP.get("LOAD_CLASSDEREF", -1)
_LOAD_FROM_DICT_OR_DEREF = _OP.get("LOAD_FROM_DICT_OR_DEREF", -1)
_DEREF_LOADS = frozenset(
    op for op in (_LOAD_DEREF, _LOAD_CLASSDEREF, _LOAD_FROM_DICT_OR_DEREF) if op >= 0
)
_PUSH_NULL = _OP["PUSH_NULL"]
_POP_TOP = _OP["POP_TOP"]
_BUILD_TUPLE = _OP["BUILD_TUPLE"]
_BUILD_LIST = _OP["BUILD_LIST"]
_BUILD_SET = _OP["BUILD_SET"]
_LIST_EXTEND = _OP["LIST_EXTEND"]
_SET_UPDATE = _OP["SET_UPDATE"]
_CONTAINS_OP = _OP["CONTAINS_OP"]
_GET_ITER = _OP["GET_ITER"]
_RETURN_VALUE = _OP["RETURN_VALUE"]
_RETURN_CONST = _OP.get("RETURN_CONST", -1)
#: 3.13 pushes the NULL of ``LOAD_GLOBAL`` (low bit set) after the global; 3.11/3.12 before.
_NULL_AFTER = sys.version_info >= (3, 13)
_JUMPS = frozenset(op for op in {*dis.hasjrel, *getattr(dis, "hasjump", ())} if op < 256)
_BACKWARD = frozenset(op for op in _JUMPS if "BACKWARD" in dis.opname[op])
#: Loads that can be followed by a fold of the constants they produce.
_SLOT_LOADS = frozenset(
    op for op in (_LOAD_GLOBAL, _LOAD_NAME, _LOAD_FROM_DICT_OR_GLOBALS) if op >= 0
)

Position = tuple[int | None, int | None, int | None, int | None]


def _cache_entries(op: int) -> int:
    """How many inline cache units follow ``op`` (for instructions the patcher creates)."""
    table: Any = opcode._inline_cache_entries  # type: ignore[attr-defined]
    if isinstance(table, dict):  # 3.13: by name
        return int(table.get(dis.opname[op], 0))
    return int(table[op])


@dataclass(eq=False)
class _Handler:
    """One exception-table handler: where it jumps, its stack depth, whether it pushes lasti."""

    target: _Instr
    depth: int
    lasti: bool

    def key(self) -> tuple[int, int, bool]:
        return (id(self.target), self.depth, self.lasti)


@dataclass(eq=False)
class _Instr:
    """One instruction with its inline caches (not its ``EXTENDED_ARG`` prefix)."""

    op: int
    arg: int
    caches: int
    position: Position
    #: The instruction a relative jump lands on.
    target: _Instr | None = None
    handler: _Handler | None = None
    #: The constant this ``LOAD_CONST`` loads, when the patcher created it (a slot's value).
    value: Any = None
    from_slot: bool = False
    #: Set on instructions some jump or handler lands on: folds must not swallow them.
    landing: bool = field(default=False)

    def size(self) -> int:
        """Code units, ``EXTENDED_ARG`` prefix and caches included."""
        ext = 0
        arg = self.arg >> 8
        while arg:
            ext += 1
            arg >>= 8
        return 1 + ext + self.caches


def _varint_be(data: bytes, i: int) -> tuple[int, int]:
    """An exception-table varint (big-endian 6-bit groups, bit 6 = more): value, next index."""
    b = data[i]
    value = b & 63
    i += 1
    while b & 64:
        b = data[i]
        value = (value << 6) | (b & 63)
        i += 1
    return value, i


def _write_varint_be(out: bytearray, value: int, msb: int) -> None:
    groups = []
    while True:
        groups.append(value & 63)
        value >>= 6
        if not value:
            break
    groups.reverse()
    for k, g in enumerate(groups):
        more = 64 if k < len(groups) - 1 else 0
        out.append(g | more | (msb if k == 0 else 0))


def _exception_entries(code: CodeType) -> Iterator[tuple[int, int, int, int, bool]]:
    """``(start, end, target, depth, lasti)`` in code units."""
    data = code.co_exceptiontable
    i = 0
    while i < len(data):
        start, i = _varint_be(data, i)
        length, i = _varint_be(data, i)
        target, i = _varint_be(data, i)
        dl, i = _varint_be(data, i)
        yield start, start + length, target, dl >> 1, bool(dl & 1)


def _decode(code: CodeType) -> list[_Instr]:
    raw = code.co_code
    units = len(raw) // 2
    positions: list[Position] = list(code.co_positions())
    instrs: list[_Instr] = []
    at_unit: dict[int, _Instr] = {}  # first unit (EXTENDED_ARG prefix included) → instruction
    jump_units: list[tuple[_Instr, int]] = []
    i = 0
    while i < units:
        start = i
        ext = 0
        while raw[2 * i] == _EXTENDED_ARG:
            ext = (ext | raw[2 * i + 1]) << 8
            i += 1
        op, arg = raw[2 * i], ext | raw[2 * i + 1]
        if op == _CACHE:
            raise SlotError(f"{code.co_qualname}: cache unit without an instruction at {2 * i}")
        own = i
        i += 1
        caches = 0
        while i < units and raw[2 * i] == _CACHE:
            caches += 1
            i += 1
        instr = _Instr(op, arg, caches, positions[own])
        at_unit[start] = instr
        instrs.append(instr)
        if op in _JUMPS:
            delta = -arg if op in _BACKWARD else arg
            jump_units.append((instr, i + delta))
    for instr, unit in jump_units:
        target = at_unit.get(unit)
        if target is None:
            raise SlotError(f"{code.co_qualname}: a jump lands inside an instruction")
        instr.target = target
        target.landing = True
    # Exception table → each covered instruction's handler.
    order = {id(ins): k for k, ins in enumerate(instrs)}
    starts = sorted(at_unit)
    for start, end, target_unit, depth, lasti in _exception_entries(code):
        target = at_unit.get(target_unit)
        first = at_unit.get(start)
        if target is None or first is None:
            raise SlotError(f"{code.co_qualname}: an exception-table entry is misaligned")
        target.landing = True
        handler = _Handler(target, depth, lasti)
        k = order[id(first)]
        while k < len(instrs) and starts[k] < end:
            instrs[k].handler = handler
            k += 1
    return instrs


def _encode_locations(instrs: list[_Instr], first_line: int) -> bytes:
    """``co_linetable`` as this Python's assembler writes it (3.12+ merges equal locations)."""
    out = bytearray()
    state = {"line": first_line}

    def varint(value: int) -> None:
        while value >= 64:
            out.append(64 | (value & 63))
            value >>= 6
        out.append(value)

    def svarint(value: int) -> None:
        varint(((-value) << 1) | 1 if value < 0 else value << 1)

    def entry(pos: Position, units: int) -> None:
        line, end_line, col, end_col = pos
        if line is None or line < 0:
            out.append(0x80 | (15 << 3) | (units - 1))
            return
        delta = line - state["line"]
        column = -1 if col is None else col
        end_column = -1 if end_col is None else end_col
        if column < 0 or end_column < 0:
            if end_line is None or end_line == line or end_line == -1:
                out.append(0x80 | (13 << 3) | (units - 1))
                svarint(delta)
                state["line"] = line
                return
        elif end_line == line:
            if delta == 0 and column < 80 and 0 <= end_column - column < 16:
                out.append(0x80 | ((column >> 3) << 3) | (units - 1))
                out.append(((column & 7) << 4) | (end_column - column))
                return
            if 0 <= delta < 3 and column < 128 and end_column < 128:
                out.append(0x80 | ((10 + delta) << 3) | (units - 1))
                out.append(column)
                out.append(end_column)
                state["line"] = line
                return
        out.append(0x80 | (14 << 3) | (units - 1))
        svarint(delta)
        varint((line if end_line is None else end_line) - line)
        varint(column + 1)
        varint(end_column + 1)
        state["line"] = line

    def emit(pos: Position, units: int) -> None:
        while units > 8:
            entry(pos, 8)
            units -= 8
        if units:
            entry(pos, units)

    if sys.version_info >= (3, 12):
        pending: Position | None = None
        size = 0
        for ins in instrs:
            if ins.position != pending:
                if pending is not None:
                    emit(pending, size)
                pending, size = ins.position, 0
            size += ins.size()
        if pending is not None:
            emit(pending, size)
    else:
        for ins in instrs:
            emit(ins.position, ins.size())
    return bytes(out)


def _assemble(instrs: list[_Instr]) -> tuple[bytes, dict[int, int]]:
    """``co_code`` with jump arguments computed, and each instruction's unit offset.

    A jump's argument depends on the sizes of the instructions it spans, which depend on their
    arguments (``EXTENDED_ARG`` prefixes): arguments are recomputed until no size changes, as
    CPython's assembler does.
    """
    for _ in range(64):
        offsets: dict[int, int] = {}
        unit = 0
        for ins in instrs:
            offsets[id(ins)] = unit
            unit += ins.size()
        resized = False
        for ins in instrs:
            if ins.target is None:
                continue
            after = offsets[id(ins)] + ins.size()
            delta = offsets[id(ins.target)] - after
            arg = -delta if ins.op in _BACKWARD else delta
            if arg < 0:
                raise SlotError("a jump would change direction")
            if arg != ins.arg:
                old = ins.size()
                ins.arg = arg
                resized |= ins.size() != old
        if not resized:
            break
    else:
        raise SlotError("jump arguments do not settle")
    out = bytearray()
    for ins in instrs:
        shift = (ins.size() - 1 - ins.caches) * 8
        while shift:
            out += bytes((_EXTENDED_ARG, (ins.arg >> shift) & 0xFF))
            shift -= 8
        out += bytes((ins.op, ins.arg & 0xFF))
        out += bytes(2 * ins.caches)
    return bytes(out), offsets


def _encode_exceptions(instrs: list[_Instr], offsets: dict[int, int]) -> bytes:
    out = bytearray()
    current: _Handler | None = None
    start = 0

    def flush(end: int) -> None:
        if current is None or end <= start:
            return
        _write_varint_be(out, start, 128)
        _write_varint_be(out, end - start, 0)
        _write_varint_be(out, offsets[id(current.target)], 0)
        _write_varint_be(out, current.depth << 1 | int(current.lasti), 0)

    unit = 0
    for ins in instrs:
        h = ins.handler
        if (h is None) != (current is None) or (
            h is not None and current is not None and h.key() != current.key()
        ):
            flush(unit)
            current, start = h, unit
        unit += ins.size()
    flush(unit)
    return bytes(out)


class _Consts:
    """``co_consts`` with constants appended on demand (the existing ones keep their indexes)."""

    def __init__(self, consts: tuple[Any, ...]) -> None:
        self.items = list(consts)
        self.added: dict[int, int] = {}

    def index(self, value: Any) -> int:
        k = self.added.get(id(value))
        if k is None:
            k = len(self.items)
            self.items.append(value)
            self.added[id(value)] = k
        return k


def _const_of(ins: _Instr, consts: _Consts) -> Any:
    return ins.value if ins.from_slot else consts.items[ins.arg]


def _load_const(value: Any, consts: _Consts, like: _Instr) -> _Instr:
    return _Instr(
        _LOAD_CONST,
        consts.index(value),
        _cache_entries(_LOAD_CONST),
        like.position,
        handler=like.handler,
        value=value,
        from_slot=True,
    )


def _simple(op: int, arg: int, like: _Instr) -> _Instr:
    return _Instr(op, arg, _cache_entries(op), like.position, handler=like.handler)


def _replace_loads(
    code: CodeType, instrs: list[_Instr], values: Mapping[str, Any], consts: _Consts
) -> list[_Instr]:
    names = code.co_names
    out: list[_Instr] = []
    for ins in instrs:
        if ins.op == _LOAD_GLOBAL:
            name = names[ins.arg >> 1]
            null = bool(ins.arg & 1)
        elif ins.op in (_LOAD_NAME, _LOAD_FROM_DICT_OR_GLOBALS):
            name = names[ins.arg]
            null = False
        elif ins.op in _DEREF_LOADS:
            name = code._varname_from_oparg(ins.arg)  # type: ignore[attr-defined]
            null = False
        else:
            out.append(ins)
            continue
        if name not in values:
            out.append(ins)
            continue
        new = []
        if ins.op in (_LOAD_FROM_DICT_OR_GLOBALS, _LOAD_FROM_DICT_OR_DEREF):
            new.append(_simple(_POP_TOP, 0, ins))  # the mapping it would have read
        if null and not _NULL_AFTER:
            new.append(_simple(_PUSH_NULL, 0, ins))
        new.append(_load_const(values[name], consts, ins))
        if null and _NULL_AFTER:
            new.append(_simple(_PUSH_NULL, 0, ins))
        _steal(ins, new[0], instrs)
        out.extend(new)
    return out


def _steal(old: _Instr, new: _Instr, instrs: list[_Instr]) -> None:
    """Makes jumps and handlers landing on ``old`` land on ``new``."""
    if not old.landing:
        return
    new.landing = True
    for ins in instrs:
        if ins.target is old:
            ins.target = new
        if ins.handler is not None and ins.handler.target is old:
            ins.handler.target = new


def _foldable(run: list[_Instr], build: _Instr) -> bool:
    """Whether constant loads ``run`` and ``build`` can merge.

    They can when nothing lands inside, one handler covers them all, and at least one load
    comes from a slot.
    """
    if any(ins.landing for ins in run[1:]) or build.landing:
        return False
    if any(ins.handler is not build.handler for ins in run):
        return False
    return any(ins.from_slot for ins in run)


def _fold(instrs: list[_Instr], consts: _Consts) -> list[_Instr]:
    out: list[_Instr] = []
    all_instrs = instrs
    for pos, ins in enumerate(instrs):
        nxt = instrs[pos + 1] if pos + 1 < len(instrs) else None
        if ins.op in (_BUILD_TUPLE, _BUILD_LIST, _BUILD_SET) and ins.arg and len(out) >= ins.arg:
            run = out[-ins.arg :]
            if all(r.op == _LOAD_CONST for r in run) and _foldable(run, ins):
                items = tuple(_const_of(r, consts) for r in run)
                tested = nxt is not None and nxt.op in (_CONTAINS_OP, _GET_ITER) and not nxt.landing
                folded = _fold_build(ins, items, tested, consts)
                if folded is not None:
                    del out[-ins.arg :]
                    _steal(run[0], folded[0], all_instrs)
                    out.extend(folded)
                    continue
        if (
            ins.op == _RETURN_VALUE
            and _RETURN_CONST >= 0
            and out
            and out[-1].op == _LOAD_CONST
            and out[-1].from_slot
            and not ins.landing
            and out[-1].handler is ins.handler
        ):
            load = out.pop()
            # CPython locates RETURN_CONST at the constant (the LOAD_CONST it replaces).
            ret = _simple(_RETURN_CONST, load.arg, load)
            _steal(load, ret, all_instrs)
            out.append(ret)
            continue
        out.append(ins)
    return out


def _fold_build(
    build: _Instr, items: tuple[Any, ...], tested: bool, consts: _Consts
) -> list[_Instr] | None:
    """The instructions replacing n ``LOAD_CONST`` + ``build``, or None to keep them."""
    if build.op == _BUILD_TUPLE:
        return [_load_const(items, consts, build)]
    if build.op == _BUILD_LIST:
        if tested:
            return [_load_const(items, consts, build)]
        if len(items) < 3:
            return None
        return [
            _simple(_BUILD_LIST, 0, build),
            _load_const(items, consts, build),
            _simple(_LIST_EXTEND, 1, build),
        ]
    try:
        frozen = frozenset(items)
    except TypeError:
        return None  # unhashable: the set display raises at run time, as written
    if tested:
        return [_load_const(frozen, consts, build)]
    if len(items) < 3:
        return None
    return [
        _simple(_BUILD_SET, 0, build),
        _load_const(frozen, consts, build),
        _simple(_SET_UPDATE, 1, build),
    ]


#: Instructions that would bind or delete a slot name: a transform never writes them.
_NAME_STORES = frozenset(
    _OP[n] for n in ("STORE_GLOBAL", "DELETE_GLOBAL", "STORE_NAME", "DELETE_NAME") if n in _OP
)


def _check_no_slot_left(code: CodeType, instrs: list[_Instr], values: Mapping[str, Any]) -> None:
    names = code.co_names
    for ins in instrs:
        if ins.op in _NAME_STORES and names[ins.arg] in values:
            raise SlotError(
                f"{code.co_qualname}: {dis.opname[ins.op]} of slot {names[ins.arg]!r}: slots "
                "are read-only"
            )


def _patch_one(code: CodeType, values: Mapping[str, Any]) -> CodeType:
    consts = _Consts(code.co_consts)
    nested = False
    for k, const in enumerate(consts.items):
        if isinstance(const, CodeType):
            patched = patch_code(const, values)
            if patched is not const:
                consts.items[k] = patched
                nested = True
    if not any(name in values for name in code.co_names + code.co_freevars + code.co_cellvars):
        if nested:
            return code.replace(co_consts=tuple(consts.items))
        return code
    instrs = _decode(code)
    instrs = _replace_loads(code, instrs, values, consts)
    instrs = _fold(instrs, consts)
    _check_no_slot_left(code, instrs, values)
    co_code, offsets = _assemble(instrs)
    return code.replace(
        co_code=co_code,
        co_consts=tuple(consts.items),
        co_linetable=_encode_locations(instrs, code.co_firstlineno),
        co_exceptiontable=_encode_exceptions(instrs, offsets),
    )


def patch_code(code: CodeType, values: Mapping[str, Any]) -> CodeType:
    """``code`` with every load of a name in ``values`` replaced by that value as a constant.

    Applies to ``code`` and, recursively, to every code object among its constants (nested
    functions, lambdas, comprehensions, class bodies). Loads of an enclosing function's
    variable of that name are replaced too (the cell stays in the closure). Code that loads
    none of the names is returned as is.

    Args:
        code: A compiled code object.
        values: Slot name → the value its loads become.

    Returns:
        The patched code object.

    Raises:
        SlotError: A slot name is used other than by a global or class-body load.
    """
    if not values:
        return code
    return _patch_one(code, values)


def relayout(code: CodeType) -> CodeType:
    """``code`` decoded and assembled again unchanged (for tests: must be byte-identical)."""
    instrs = _decode(code)
    co_code, offsets = _assemble(instrs)
    return code.replace(
        co_code=co_code,
        co_linetable=_encode_locations(instrs, code.co_firstlineno),
        co_exceptiontable=_encode_exceptions(instrs, offsets),
    )
