"""What every engine transform applied as a decorator shares."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from callweave import _native
from callweave._functions import Layer, rewrite_with_layers

__all__ = ["EngineTransform"]

F = TypeVar("F")


class EngineTransform:
    """A source transform of the engine, applied to one function as a decorator.

    Subclasses name their engine transform (``transform``), give its rule options
    (:meth:`options`) and compute the value of each constant slot the engine takes
    (:meth:`constant`). Applying the instance to a function (or classmethod/staticmethod, in
    any decorator order, composed with the other callweave decorators) rewrites that function's
    source; every original position is kept.
    """

    #: The engine transform's registry name.
    transform: str = ""

    def options(self) -> Mapping[str, _native.OptionValue]:
        """The engine rule's options."""
        return {}

    def constant(self, slot: _native.ConstantSlot) -> Any:
        """The value of one constant slot, computed once when the function is rewritten."""
        raise NotImplementedError

    def __call__(self, func: F) -> F:
        """Rewrites ``func``.

        Args:
            func: A function with source (or a classmethod/staticmethod of one).

        Returns:
            The rewritten function.
        """
        options = dict(self.options())

        def make_rule(at: tuple[str, int]) -> _native.Rule:
            return _native.Rule(self.transform, options, at=at)

        layer = Layer(type(self).__name__, make_rule, constant=self.constant)
        result: F = rewrite_with_layers(func, layer)
        return result

    def __repr__(self) -> str:
        return f"<{type(self).__name__} transform>"
