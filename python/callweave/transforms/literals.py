"""Literal overloading: codetransformer's ``overloaded_strs`` and friends.

Engine transform ``literals`` (crates/callweave_engine/src/transform/literals.rs): each literal
of one type in the function (nested functions, classes, lambdas and comprehensions included)
is replaced by a constant slot. Its value, ``xform(literal)``, is computed once here when the
function is rewritten and loaded as a constant (``LOAD_CONST``: no name lookup, as fast as the
plain literal), also inside constant tuples and frozensets (``x in {3.0}``). Nothing is bound
at run time.

The literal is the one in the source: ``decimal_literals`` builds ``Decimal`` from the text
(``0.1`` is ``Decimal('0.1')``, not the binary float's expansion). Docstrings, f-string
fragments, annotations and match patterns are not literals to transform.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from callweave import _native
from callweave.transforms._base import EngineTransform

__all__ = [
    "bytearray_literals",
    "decimal_literals",
    "haskell_strs",
    "overloaded_bytes",
    "overloaded_complexes",
    "overloaded_floats",
    "overloaded_ints",
    "overloaded_strs",
]


def literal_value(text: str) -> Any:
    """The value of a literal from its exact source text (implicit concatenation included)."""
    # Parenthesised so that a literal continued over lines, with comments, parses alone.
    return ast.literal_eval(f"(\n{text}\n)")


class _OverloadedLiterals(EngineTransform):
    transform = "literals"
    _type = ""

    def __init__(
        self, xform: Callable[[Any], Any], *, fresh: bool = False, from_text: bool = False
    ) -> None:
        """Overloads every literal of this type.

        Args:
            xform: Called with each literal's value (or, with ``from_text``, its source text
                without ``_`` separators); its result replaces the literal.
            fresh: Call ``xform`` at each evaluation of the literal instead of once, for
                mutable results that must not be shared between calls.
            from_text: Pass ``xform`` the literal's source text, not its value.
        """
        if not callable(xform):
            raise TypeError(f"{type(self).__name__} needs a callable, got {xform!r}")
        self.xform = xform
        self.fresh = fresh
        self.from_text = from_text

    def options(self) -> Mapping[str, _native.OptionValue]:
        """The engine rule's options."""
        return {"type": self._type, "fresh": self.fresh}

    def constant(self, slot: _native.ConstantSlot) -> Any:
        """``xform`` itself (``fresh``), else ``xform`` of the literal."""
        if self.fresh:
            return self.xform
        if self.from_text:
            return self.xform(slot.text.replace("_", ""))
        return self.xform(literal_value(slot.text))

    def bytecode_transformer(self) -> Any:
        """Functions without source: the constants of the type, as codetransformer did."""
        from callweave.bytecode.sourceless import OverloadedConstants

        kind = {"str": str, "bytes": bytes, "int": int, "float": float, "complex": complex}
        return OverloadedConstants(
            kind[self._type], self.xform, fresh=self.fresh, from_text=self.from_text
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.xform!r})"


class overloaded_strs(_OverloadedLiterals):
    """Each ``str`` literal becomes ``xform(literal)``, computed once.

    Example:
        >>> @overloaded_strs(str.upper)
        ... def f():
        ...     return "abc"
    """

    _type = "str"


class overloaded_bytes(_OverloadedLiterals):
    """Each ``bytes`` literal becomes ``xform(literal)``, computed once."""

    _type = "bytes"


class overloaded_ints(_OverloadedLiterals):
    """Each ``int`` literal becomes ``xform(literal)`` (``True``/``False`` are not int literals)."""

    _type = "int"


class overloaded_floats(_OverloadedLiterals):
    """Each ``float`` literal becomes ``xform(literal)``, computed once."""

    _type = "float"


class overloaded_complexes(_OverloadedLiterals):
    """Each imaginary literal (``2j``) becomes ``xform(literal)``, computed once."""

    _type = "complex"


#: ``"abc"`` is ``('a', 'b', 'c')``.
haskell_strs = overloaded_strs(tuple)
#: ``b"abc"`` is a new ``bytearray(b"abc")`` at each evaluation.
bytearray_literals = overloaded_bytes(bytearray, fresh=True)
#: ``0.1`` is ``Decimal('0.1')``, built from the literal's text.
decimal_literals = overloaded_floats(Decimal, from_text=True)
