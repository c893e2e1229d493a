"""One class per opcode of the running Python, with arguments as Python objects.

An :class:`Instruction`'s ``arg`` is what the opcode means, not its number: a name for the
name, local, cell and free variable opcodes (a ``LOAD_FAST`` of a cell or free
variable's slot, as 3.13 compiles ``LOAD_CLOSURE``, has a :class:`bytecode.CellVar` or
:class:`bytecode.FreeVar`), the constant for ``LOAD_CONST``, the target
:class:`Instruction` for a jump, a :class:`bytecode.BinaryOp` for ``BINARY_OP`` (a symbol
such as ``"+"`` is accepted), ``None`` for opcodes without an argument, and whatever the
`bytecode <https://bytecode.readthedocs.io>`_ package uses for the rest (an ``int`` for
``CALL``, a :class:`bytecode.Compare` for ``COMPARE_OP``...).

Bits that CPython 3.11+ packs beside a name are attributes, not part of ``arg``:
``LOAD_GLOBAL(name, push_null=True)`` (3.11+: also push the ``NULL`` a following ``CALL``
expects) and ``LOAD_ATTR(name, method=True)`` (3.12+: load a method for ``CALL``).

Instructions are mutable on purpose (``steal`` re-points jumps); a
:class:`~callweave.bytecode.Code` copies them when it is built, so a code object built from
them never changes afterwards.
"""

from __future__ import annotations

import dis
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import bytecode.instr as _bc

__all__ = [
    "ExceptHandler",
    "Instruction",
    "instruction_class",
    "opnames",
]

_NO_ARG: Any = object()

#: Opcodes whose argument is a jump target (3.11 has no ``dis.hasjump``).
_JUMPS = frozenset(dis.hasjrel) | frozenset(dis.hasjabs)
#: Opcodes named by a cell or free variable.
_DEREFS = frozenset(dis.hasfree)
_HAS_NULL_BIT = sys.version_info >= (3, 11)
_HAS_METHOD_BIT = sys.version_info >= (3, 12)
_BINARY_SYMBOLS: dict[str, int] = {
    symbol: index for index, (_, symbol) in enumerate(getattr(dis, "_nb_ops", ()))
}
_COMPARE_SYMBOLS = {"<": "LT", "<=": "LE", "==": "EQ", "!=": "NE", ">": "GT", ">=": "GE"}


@dataclass(eq=False)
class ExceptHandler:
    """Where an exception raised by the instructions it covers goes.

    Every instruction covered by the same entry of the exception table shares one handler
    object. Attributes:
        target: the first instruction of the handler.
        lasti: whether the handler gets the offset of the raising instruction pushed.
        depth: the stack depth the handler starts from (recomputed when code is built).
    """

    target: Instruction
    lasti: bool
    depth: int


class _InstructionMeta(type):
    """Lets instruction classes be combined in patterns (``A | B``, ``~A``, ``A[var]``)."""

    def __or__(cls, other: object) -> Any:
        from callweave.bytecode.patterns import as_matchable

        return as_matchable(cls) | other

    def __ror__(cls, other: object) -> Any:
        from callweave.bytecode.patterns import as_matchable

        return as_matchable(other) | cls

    def __invert__(cls) -> Any:
        from callweave.bytecode.patterns import as_matchable

        return ~as_matchable(cls)

    def __getitem__(cls, modifier: object) -> Any:
        from callweave.bytecode.patterns import as_matchable

        return as_matchable(cls)[modifier]

    def __repr__(cls) -> str:
        return cls.__name__


class Instruction(metaclass=_InstructionMeta):
    """One instruction; subclasses are the opcodes (``LOAD_CONST``, ``BINARY_OP``...).

    Args:
        arg: the argument as a Python object (see the module docstring); omitted for
            opcodes that take none.
        push_null: ``LOAD_GLOBAL`` only (3.11+): also push ``NULL``.
        method: ``LOAD_ATTR`` only (3.12+): load a method.

    Attributes:
        location: the source position (:class:`bytecode.InstrLocation`) or ``None``.
        handler: the :class:`ExceptHandler` covering this instruction, or ``None``.
    """

    opname: ClassVar[str] = "<abstract>"
    opcode: ClassVar[int] = -1
    has_arg: ClassVar[bool] = False
    is_jump: ClassVar[bool] = False

    def __init__(self, arg: Any = _NO_ARG, *, push_null: bool = False, method: bool = False):
        if type(self) is Instruction:
            raise TypeError("Instruction is abstract: use an opcode class such as LOAD_CONST")
        if arg is _NO_ARG:
            if self.has_arg:
                raise TypeError(f"{self.opname} needs an argument")
            arg = None
        elif not self.has_arg and arg is not None:
            raise TypeError(f"{self.opname} takes no argument, got {arg!r}")
        self._arg: Any = None
        self._target_of: set[Instruction] = set()
        self._handler_of: set[ExceptHandler] = set()
        self.push_null = push_null
        self.method = method
        self.location: _bc.InstrLocation | None = None
        self.handler: ExceptHandler | None = None
        self.arg = self._normalize(arg)

    @classmethod
    def _normalize(cls, arg: Any) -> Any:
        if cls.opname == "BINARY_OP" and isinstance(arg, str):
            if arg not in _BINARY_SYMBOLS:
                raise ValueError(f"unknown binary operator {arg!r}")
            return _bc.BinaryOp(_BINARY_SYMBOLS[arg])
        if cls.opname == "COMPARE_OP" and isinstance(arg, str) and arg in _COMPARE_SYMBOLS:
            return _bc.Compare[_COMPARE_SYMBOLS[arg]]
        return arg

    @property
    def arg(self) -> Any:
        """The argument (a jump's is its target instruction)."""
        return self._arg

    @arg.setter
    def arg(self, value: Any) -> None:
        if self.is_jump:
            if isinstance(self._arg, Instruction):
                self._arg._target_of.discard(self)
            if value is not None and not isinstance(value, Instruction):
                raise TypeError(f"{self.opname} jumps to an Instruction, got {value!r}")
            if value is not None:
                value._target_of.add(self)
        self._arg = value

    @property
    def lineno(self) -> int | None:
        """The line number, or ``None`` for an instruction without a line."""
        return None if self.location is None else self.location.lineno

    @property
    def target_of(self) -> frozenset[Instruction]:
        """The jumps whose target is this instruction."""
        return frozenset(self._target_of)

    @property
    def handler_of(self) -> frozenset[ExceptHandler]:
        """The exception handlers that start at this instruction."""
        return frozenset(self._handler_of)

    def steal(self, other: Instruction) -> Instruction:
        """Takes over the jumps, handler starts, line and exception handler of ``other``.

        Every jump to ``other`` now jumps to ``self``, every exception handler starting at
        ``other`` starts at ``self``, and ``self`` gets ``other``'s position and is covered by
        ``other``'s handler. Returns ``self`` so it can be yielded directly.
        """
        for jump in list(other._target_of):
            jump.arg = self
        for handler in list(other._handler_of):
            handler.target = self
            self._handler_of.add(handler)
        other._handler_of.clear()
        self.location = other.location
        self.handler = other.handler
        return self

    def equiv(self, other: object) -> bool:
        """Whether ``other`` is the same opcode with an equal argument (and flags)."""
        return (
            type(self) is type(other)
            and isinstance(other, Instruction)
            and self.arg == other.arg
            and self.push_null == other.push_null
            and self.method == other.method
        )

    def __repr__(self) -> str:
        if not self.has_arg:
            return f"{self.opname}"
        arg = self.arg
        shown = f"<{arg.opname}>" if isinstance(arg, Instruction) else repr(arg)
        extra = ", push_null=True" if self.push_null else ""
        extra += ", method=True" if self.method else ""
        return f"{self.opname}({shown}{extra})"

    # --- conversion to and from the ``bytecode`` package (used by Code) ---

    def _to_bc_arg(self, labels: dict[Instruction, _bc.Label], freevars: frozenset[str]) -> Any:
        arg = self.arg
        if not self.has_arg:
            return _bc.UNSET
        if self.is_jump:
            return labels[arg]
        if self.opname == "LOAD_GLOBAL" and _HAS_NULL_BIT:
            return (self.push_null, arg)
        if self.opname == "LOAD_ATTR" and _HAS_METHOD_BIT:
            return (self.method, arg)
        if self.opcode in _DEREFS and isinstance(arg, str):
            return _bc.FreeVar(arg) if arg in freevars else _bc.CellVar(arg)
        return arg

    @classmethod
    def _from_bc(cls, instr: _bc.Instr) -> Instruction:
        klass = instruction_class(instr.name)
        arg: Any = instr.arg
        push_null = method = False
        if not klass.has_arg:
            new = klass()
        else:
            if klass.opname == "LOAD_GLOBAL" and _HAS_NULL_BIT:
                push_null, arg = arg
            elif klass.opname == "LOAD_ATTR" and _HAS_METHOD_BIT:
                method, arg = arg
            elif isinstance(arg, (_bc.CellVar, _bc.FreeVar)) and klass.opcode in _DEREFS:
                arg = arg.name
            # Elsewhere (3.13 compiles LOAD_CLOSURE as LOAD_FAST of the cell's slot) the
            # CellVar/FreeVar stays: a plain name would make a new local that loads NULL.
            new = klass.__new__(klass)
            Instruction.__init__(new, None if klass.is_jump else arg)
            if klass.is_jump:
                new._arg = arg  # a Label until Code resolves it
            new.push_null, new.method = push_null, method
        new.location = instr.location
        return new


_CLASSES: dict[str, type[Instruction]] = {}


def _make_classes() -> None:
    for name, op in dis.opmap.items():
        if op >= 256 or name.startswith("INSTRUMENTED_") or name == "CACHE":
            continue  # pseudo, instrumented and cache opcodes never appear as instructions
        namespace = {
            "opname": name,
            "opcode": op,
            "has_arg": op >= dis.HAVE_ARGUMENT,
            "is_jump": op in _JUMPS,
            "__doc__": f"The ``{name}`` instruction (opcode {op} on this Python).",
            "__module__": __name__,
            "__qualname__": name,
        }
        _CLASSES[name] = _InstructionMeta(name, (Instruction,), namespace)  # type: ignore[assignment]


_make_classes()
globals().update(_CLASSES)
__all__ += sorted(_CLASSES)


def instruction_class(opname: str) -> type[Instruction]:
    """The class of an opcode of the running Python, by name.

    Raises:
        KeyError: the running Python has no such opcode.
    """
    try:
        return _CLASSES[opname]
    except KeyError:
        raise KeyError(
            f"Python {sys.version_info[0]}.{sys.version_info[1]} has no opcode {opname}"
        ) from None


def opnames() -> Iterator[str]:
    """The names of the opcodes that have a class, in opcode order."""
    return iter(sorted(_CLASSES, key=lambda name: _CLASSES[name].opcode))


def __getattr__(name: str) -> type[Instruction]:
    """Names an opcode this Python lacks in the error (``BINARY_ADD`` on 3.11+)."""
    if name.isupper():
        raise AttributeError(
            f"Python {sys.version_info[0]}.{sys.version_info[1]} has no opcode {name}"
        )
    raise AttributeError(name)
