"""Slice transforms: codetransformer's ``islice_literals`` and ``precomputed_slices``.

Engine transforms ``islice`` (transform/islice.rs): ``m[lo:hi:st]`` read in the function
becomes ``itertools.islice(m, lo, hi, st)`` (the callable loaded as a constant); and
``precomputed_slices`` (transform/precomputed_slices.rs): a slice whose bounds are all
constants loads as one ``slice`` constant built once here. Nothing is bound at run time.
"""

from __future__ import annotations

import ast
import itertools
from typing import Any

from callweave import _native
from callweave.transforms._base import EngineTransform
from callweave.transforms.literals import literal_value

__all__ = ["islice_literals", "precomputed_slices"]


class _IsliceLiterals(EngineTransform):
    """Subscripting with a slice returns ``itertools.islice`` of the object.

    Example:
        >>> @islice_literals
        ... def f():
        ...     return map(str, (1, 2, 3, 4))[:2]
    """

    transform = "islice"

    def constant(self, slot: _native.ConstantSlot) -> Any:
        """``itertools.islice``."""
        return itertools.islice


class precomputed_slices(EngineTransform):
    """Slices whose bounds are all constants load as one precomputed ``slice`` constant."""

    transform = "precomputed_slices"

    def constant(self, slot: _native.ConstantSlot) -> Any:
        """The ``slice`` the slot's text (``lo:hi:st``) spells."""
        tree = ast.parse(f"_[\n{slot.text}\n]", mode="eval")
        node = tree.body
        if not isinstance(node, ast.Subscript) or not isinstance(node.slice, ast.Slice):
            raise ValueError(f"not a slice: {slot.text!r}")
        parts = (node.slice.lower, node.slice.upper, node.slice.step)
        return slice(*(None if p is None else literal_value(ast.unparse(p)) for p in parts))

    def bytecode_transformer(self) -> Any:
        """Functions without source: constant-bound slices, as codetransformer did."""
        from callweave.bytecode.sourceless import PrecomputedSlices

        return PrecomputedSlices()


#: The ``islice_literals`` decorator.
islice_literals = _IsliceLiterals()
