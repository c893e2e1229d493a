"""codetransformer's pattern DSL over instruction sequences.

A *matchable* is an instruction class (``LOAD_CONST``: any ``LOAD_CONST``), an instruction
(``BINARY_OP("+")``: an instruction :meth:`~callweave.bytecode.Instruction.equiv` to it),
:data:`matchany` (or ``...``: any one instruction), or a combination:

- ``seq(a, b, ...)``: ``a`` then ``b``...; ``pattern(a, b)`` is ``pattern(seq(a, b))``;
- ``a | b``: ``a`` or ``b`` (tried in that order);
- ``~a``: one instruction that ``a`` does not match as one instruction;
- ``a[var]`` (zero or more), ``a[plus]`` (one or more), ``a[option]`` (zero or one),
  ``a[n]`` (exactly ``n``), ``a[m, n]`` (``m`` to ``n``): repetitions, greedy, giving back
  as needed for the rest of the pattern to match (as a regular expression does).

Unlike codetransformer, which compiled patterns to a regular expression over opcode bytes,
matching is a backtracking search over the instructions, so an instruction with its argument
(``BINARY_OP("+")``) is a matchable too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from callweave.bytecode.instructions import Instruction

__all__ = [
    "DEFAULT_STARTCODE",
    "Matchable",
    "as_matchable",
    "matchany",
    "option",
    "pattern",
    "plus",
    "seq",
    "var",
]

#: The startcode a transformer starts each code object in.
DEFAULT_STARTCODE: Any = 0

F = TypeVar("F", bound=Callable[..., Any])


class _Modifier:
    def __init__(self, name: str, low: int, high: int | None) -> None:
        self.name, self.low, self.high = name, low, high

    def __repr__(self) -> str:
        return self.name


#: Zero or more repetitions: ``matchany[var]``.
var = _Modifier("var", 0, None)
#: One or more repetitions: ``LOAD_CONST[plus]``.
plus = _Modifier("plus", 1, None)
#: Zero or one: ``LOAD_CONST[option]``.
option = _Modifier("option", 0, 1)


class Matchable:
    """Something a sequence of instructions can be matched against."""

    def match(self, instrs: Sequence[Instruction], pos: int) -> Iterator[int]:
        """Yields the end positions of the matches starting at ``pos``, preferred first."""
        raise NotImplementedError

    def __or__(self, other: object) -> Matchable:
        return _Or(self, as_matchable(other))

    def __ror__(self, other: object) -> Matchable:
        return _Or(as_matchable(other), self)

    def __invert__(self) -> Matchable:
        return _Not(self)

    def __getitem__(self, modifier: object) -> Matchable:
        if isinstance(modifier, _Modifier):
            return _Repeat(self, modifier.low, modifier.high)
        if isinstance(modifier, int):
            return _Repeat(self, modifier, modifier)
        if (
            isinstance(modifier, tuple)
            and len(modifier) == 2
            and all(isinstance(bound, int) for bound in modifier)
        ):
            return _Repeat(self, modifier[0], modifier[1])
        raise TypeError(f"unknown repetition {modifier!r}: use var, plus, option, n or (m, n)")


class _Class(Matchable):
    def __init__(self, cls: type[Instruction]) -> None:
        self.cls = cls

    def match(self, instrs: Sequence[Instruction], pos: int) -> Iterator[int]:
        if pos < len(instrs) and isinstance(instrs[pos], self.cls):
            yield pos + 1

    def __repr__(self) -> str:
        return self.cls.opname


class _Equiv(Matchable):
    def __init__(self, instr: Instruction) -> None:
        self.instr = instr

    def match(self, instrs: Sequence[Instruction], pos: int) -> Iterator[int]:
        if pos < len(instrs) and self.instr.equiv(instrs[pos]):
            yield pos + 1

    def __repr__(self) -> str:
        return repr(self.instr)


class _Any(Matchable):
    def match(self, instrs: Sequence[Instruction], pos: int) -> Iterator[int]:
        if pos < len(instrs):
            yield pos + 1

    def __repr__(self) -> str:
        return "matchany"


#: Any one instruction (``...`` is the same).
matchany: Matchable = _Any()


class _Or(Matchable):
    def __init__(self, *options: Matchable) -> None:
        self.options = options

    def match(self, instrs: Sequence[Instruction], pos: int) -> Iterator[int]:
        for option_ in self.options:
            yield from option_.match(instrs, pos)

    def __repr__(self) -> str:
        return " | ".join(map(repr, self.options))


class _Not(Matchable):
    def __init__(self, inner: Matchable) -> None:
        self.inner = inner

    def match(self, instrs: Sequence[Instruction], pos: int) -> Iterator[int]:
        if pos < len(instrs) and pos + 1 not in self.inner.match(instrs, pos):
            yield pos + 1

    def __repr__(self) -> str:
        return f"~({self.inner!r})"


class seq(Matchable):
    """Its matchables one after the other."""

    def __init__(self, *matchables: object) -> None:
        self.matchables = tuple(as_matchable(m) for m in matchables)

    def match(self, instrs: Sequence[Instruction], pos: int) -> Iterator[int]:
        """Yields the end positions of the matches starting at ``pos``, preferred first."""
        return self._from(0, instrs, pos)

    def _from(self, index: int, instrs: Sequence[Instruction], pos: int) -> Iterator[int]:
        if index == len(self.matchables):
            yield pos
            return
        for end in self.matchables[index].match(instrs, pos):
            yield from self._from(index + 1, instrs, end)

    def __repr__(self) -> str:
        return f"seq({', '.join(map(repr, self.matchables))})"


class _Repeat(Matchable):
    def __init__(self, inner: Matchable, low: int, high: int | None) -> None:
        if low < 0 or (high is not None and high < low):
            raise ValueError(f"bad repetition bounds ({low}, {high})")
        self.inner, self.low, self.high = inner, low, high

    def match(self, instrs: Sequence[Instruction], pos: int) -> Iterator[int]:
        """Yields the end positions of the matches starting at ``pos``, preferred first."""
        return self._from(0, instrs, pos)

    def _from(self, count: int, instrs: Sequence[Instruction], pos: int) -> Iterator[int]:
        if self.high is None or count < self.high:
            for end in self.inner.match(instrs, pos):
                if end == pos:
                    continue  # an empty repetition would loop forever
                yield from self._from(count + 1, instrs, end)
        if count >= self.low:
            yield pos

    def __repr__(self) -> str:
        return f"({self.inner!r})[{self.low}, {self.high}]"


def as_matchable(obj: object) -> Matchable:
    """``obj`` as a :class:`Matchable` (an instruction class or instance, ``...``).

    Raises:
        TypeError: ``obj`` cannot be matched against instructions.
    """
    if isinstance(obj, Matchable):
        return obj
    if obj is Ellipsis:
        return matchany
    if isinstance(obj, type) and issubclass(obj, Instruction):
        return _Class(obj)
    if isinstance(obj, Instruction):
        return _Equiv(obj)
    raise TypeError(f"{obj!r} is not a matchable (an instruction class, instruction or ...)")


class pattern:
    """Marks a :class:`~callweave.bytecode.CodeTransformer` method as a pattern handler.

    The method is called with the matched instructions (positionally) and returns or yields
    the instructions that replace them.

    Args:
        *matchables: the pattern, as a :class:`seq`.
        startcodes: the startcodes in which the pattern is tried
            (default: :data:`DEFAULT_STARTCODE` only).
    """

    def __init__(self, *matchables: object, startcodes: Sequence[Any] = (DEFAULT_STARTCODE,)):
        if not matchables:
            raise TypeError("pattern() needs at least one matchable")
        self.matchable = seq(*matchables)
        self.startcodes = frozenset(startcodes)

    def __call__(self, f: F) -> F:
        """Registers ``f`` as the handler of this pattern (a method may have several)."""
        patterns: list[pattern] = list(getattr(f, "_callweave_patterns", ()))
        patterns.append(self)
        f._callweave_patterns = patterns  # type: ignore[attr-defined]
        return f

    def match(self, instrs: Sequence[Instruction], pos: int) -> int | None:
        """The end of the preferred non-empty match at ``pos``, or ``None``."""
        for end in self.matchable.match(instrs, pos):
            if end > pos:
                return end
        return None

    def __repr__(self) -> str:
        return f"pattern({self.matchable!r}, startcodes={set(self.startcodes)!r})"
