"""codetransformer's constant and display transformers over bytecode.

:mod:`callweave.transforms` rewrites a function's *source*. A function without one (an
``eval``'d lambda, code typed at a prompt) falls back to these transformers, which work on its
instructions as codetransformer did:

- :class:`OverloadedConstants`: each constant of one type (inside constant tuples and
  frozensets too; not the docstring) becomes ``xform(constant)``, computed once; ``fresh``
  calls ``xform`` at each evaluation; ``from_text`` passes ``repr(constant)`` (the shortest
  text of a float, which is the literal's text for the literals people write);
- :class:`FrozenNames`: global/builtin loads of the frozen names become constants; storing or
  deleting one is a ``SyntaxError``;
- :class:`PrecomputedSlices`: a slice with constant bounds is one ``slice`` constant;
- :class:`OverloadedDisplays`: a list, set or dict display built in straight-line code
  (``[a, *b]``, ``{k: v, **m}``) is passed to ``astype`` once built. A comprehension, or a
  display whose building spans a jump, is refused (:class:`~callweave.bytecode.BytecodeError`):
  without source its end cannot be told apart from the loop that fills it.
"""

from __future__ import annotations

import dis
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from callweave.bytecode.code import BytecodeError
from callweave.bytecode.instructions import Instruction, instruction_class
from callweave.bytecode.patterns import matchany, pattern
from callweave.bytecode.transformer import CodeTransformer

__all__ = [
    "FrozenNames",
    "OverloadedConstants",
    "OverloadedDisplays",
    "PrecomputedSlices",
    "call_on_top",
]

_OP = instruction_class


def call_on_top(func: Any) -> list[Instruction]:
    """Instructions replacing the top of the stack ``x`` by ``func(x)``.

    ``[x] -> [func, x] -> CALL 0``: with a non-``NULL`` item below the arguments, 3.11 and
    3.12 call it as a method with ``x`` as ``self``, and 3.13 takes ``x`` as ``self_or_null``;
    both call ``func(x)``.
    """
    instrs = [_OP("LOAD_CONST")(func), _OP("SWAP")(2)]
    if sys.version_info < (3, 12):
        instrs.append(_OP("PRECALL")(0))
    instrs.append(_OP("CALL")(0))
    return instrs


def _is_type(value: object, kind: type) -> bool:
    return type(value) is kind


class OverloadedConstants(CodeTransformer):
    """Each constant of type ``kind`` becomes ``xform(constant)``.

    Args:
        kind: the constant type (``str``, ``bytes``, ``int``, ``float``, ``complex``).
        xform: the replacement function.
        fresh: call ``xform`` at each evaluation (top-level constants only).
        from_text: pass ``repr(constant)`` instead of the constant.
    """

    def __init__(
        self,
        kind: type,
        xform: Callable[[Any], Any],
        *,
        fresh: bool = False,
        from_text: bool = False,
    ) -> None:
        super().__init__()
        self.kind, self.xform, self.fresh, self.from_text = kind, xform, fresh, from_text

    def _convert(self, value: Any) -> Any:
        if _is_type(value, self.kind):
            return self.xform(repr(value) if self.from_text else value)
        if type(value) is tuple:
            return tuple(self._convert(item) for item in value)
        if type(value) is frozenset:
            return frozenset(self._convert(item) for item in value)
        return value

    def transform_consts(self, consts: tuple[Any, ...]) -> tuple[Any, ...]:
        """Nested code objects, then (unless ``fresh``) the constants of ``kind``."""
        consts = super().transform_consts(consts)
        if self.fresh:
            return consts
        return tuple(self._convert(const) for const in consts)

    @pattern(
        _OP("LOAD_CONST") | _OP("RETURN_CONST")
        if "RETURN_CONST" in dis.opmap
        else _OP("LOAD_CONST")
    )
    def _fresh(self, instr: Instruction) -> Iterator[Instruction]:
        if not self.fresh or not _is_type(instr.arg, self.kind):
            yield instr
            return
        yield _OP("LOAD_CONST")(instr.arg).steal(instr)
        yield from call_on_top(self.xform)
        if instr.opname == "RETURN_CONST":
            yield _OP("RETURN_VALUE")()


class FrozenNames(CodeTransformer):
    """Loads of global or builtin ``names`` become loads of their frozen values."""

    def __init__(self, names: Mapping[str, Any]) -> None:
        super().__init__()
        self.names = dict(names)

    @pattern(_OP("STORE_GLOBAL") | _OP("STORE_NAME") | _OP("DELETE_GLOBAL") | _OP("DELETE_NAME"))
    def _store(self, instr: Instruction) -> Iterator[Instruction]:
        if instr.arg in self.names:
            verb = "assign to" if instr.opname.startswith("STORE") else "delete"
            raise SyntaxError(f"can't {verb} constant name {instr.arg!r}")
        yield instr

    @pattern(_OP("LOAD_GLOBAL") | _OP("LOAD_NAME"))
    def _load(self, instr: Instruction) -> Iterator[Instruction]:
        if instr.arg not in self.names:
            yield instr
            return
        const = _OP("LOAD_CONST")(self.names[instr.arg]).steal(instr)
        if not instr.push_null:
            yield const
        elif sys.version_info >= (3, 13):  # callable, then NULL
            yield const
            yield _OP("PUSH_NULL")()
        else:  # NULL, then callable
            yield _OP("PUSH_NULL")().steal(instr)
            const.location = None
            yield const


class PrecomputedSlices(CodeTransformer):
    """Slices whose bounds are constants load as one ``slice`` constant."""

    @pattern(_OP("LOAD_CONST")[2, 3], _OP("BUILD_SLICE"))
    def _build(self, *instrs: Instruction) -> Iterator[Instruction]:
        *consts, build = instrs
        if len(consts) < build.arg:  # a bound is not a constant: s[x:1:2]
            yield from instrs
            return
        extra = len(consts) - build.arg  # a constant loaded before the bounds
        yield from consts[:extra]
        bounds = consts[extra:]
        yield _OP("LOAD_CONST")(slice(*(b.arg for b in bounds))).steal(bounds[0])

    if "BINARY_SLICE" in dis.opmap:  # 3.12+: x[a:b] is BINARY_SLICE / STORE_SLICE

        @pattern(_OP("LOAD_CONST"), _OP("LOAD_CONST"), _OP("BINARY_SLICE") | _OP("STORE_SLICE"))
        def _binary(
            self, lo: Instruction, hi: Instruction, op: Instruction
        ) -> Iterator[Instruction]:
            yield _OP("LOAD_CONST")(slice(lo.arg, hi.arg)).steal(lo)
            subscr = "BINARY_SUBSCR" if op.opname == "BINARY_SLICE" else "STORE_SUBSCR"
            yield _OP(subscr)().steal(op)


_BUILDS = {
    "list": ({"BUILD_LIST"}, {"LIST_APPEND", "LIST_EXTEND"}),
    "set": ({"BUILD_SET"}, {"SET_ADD", "SET_UPDATE"}),
    "dict": ({"BUILD_MAP", "BUILD_CONST_KEY_MAP"}, {"MAP_ADD", "DICT_UPDATE", "DICT_MERGE"}),
}
#: What consumes a built list or dict that is not a display: ``f(*a, *b)``, ``f(**m)``.
_NOT_DISPLAY = {"DICT_MERGE", "CALL_FUNCTION_EX", "CALL_INTRINSIC_1", "LIST_TO_TUPLE"}


class OverloadedDisplays(CodeTransformer):
    """List, set or dict displays (``kind``) produce ``astype(the display)``."""

    def __init__(self, kind: str, astype: Callable[[Any], Any]) -> None:
        super().__init__()
        if kind not in _BUILDS:
            raise BytecodeError(f"{kind} displays cannot be overloaded without source")
        self.kind, self.astype = kind, astype
        self._builds, self._updates = _BUILDS[kind]

    def prepare(self, instrs: Sequence[Instruction]) -> None:
        """Finds the end of each display among the instructions the patterns will see."""
        self._ends = set()
        for index, instr in enumerate(instrs):
            if instr.opname in self._builds:
                end = self._display_end(instrs, index)
                if end is not None:
                    self._ends.add(id(end))

    @pattern(matchany)
    def _any(self, instr: Instruction) -> Iterator[Instruction]:
        yield instr
        if id(instr) in self._ends:
            yield from call_on_top(self.astype)

    def _display_end(self, instrs: Sequence[Instruction], index: int) -> Instruction | None:
        """The last instruction building the display that ``code.instrs[index]`` starts.

        ``None`` when it is not a display (``f(*a, *b)``, ``f(**m)``).

        Raises:
            BytecodeError: a comprehension or a display built across a jump.
        """
        build = instrs[index]
        qualname = self.code.qualname
        end, above, merged = build, 0, False
        for instr in instrs[index + 1 :]:
            if instr.target_of or instr.is_jump:
                if above > 0 or (build.arg == 0 and end is build):
                    raise BytecodeError(
                        f"{qualname}: a {self.kind} built across a jump (a comprehension?) "
                        "cannot be overloaded without source"
                    )
                break
            if instr.opname in self._updates:
                pops = 2 if instr.opname == "MAP_ADD" else 1
                if above - pops == 0 and instr.arg == 1:
                    above, end = 0, instr
                    merged |= instr.opname == "DICT_MERGE"
                    continue
            if instr.opname == "SWAP" and above == 0:
                raise BytecodeError(
                    f"{qualname}: a {self.kind} comprehension cannot be overloaded without source"
                )
            effect = (
                dis.stack_effect(instr.opcode, _int_arg(instr))
                if instr.has_arg
                else dis.stack_effect(instr.opcode)
            )
            if above == 0 and effect <= 0:
                break
            above += effect
            if above < 0:
                break
        following = next(i for i, candidate in enumerate(instrs) if candidate is end) + 1
        if merged or (following < len(instrs) and instrs[following].opname in _NOT_DISPLAY):
            return None
        return end


def _int_arg(instr: Instruction) -> int:
    """The numeric argument ``dis.stack_effect`` needs (only flag bits matter for names)."""
    if instr.opname == "LOAD_GLOBAL":
        return int(instr.push_null)
    if instr.opname == "LOAD_ATTR":
        return int(instr.method)
    arg = instr.arg
    return int(arg) if isinstance(arg, int) else 0
