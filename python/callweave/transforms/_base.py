"""What every engine transform applied as a decorator shares."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from types import FunctionType
from typing import Any, TypeVar

from callweave import _native
from callweave._functions import Layer, rewrite_with_layers
from callweave.errors import RewriteError, SourceUnavailableError

__all__ = ["EngineTransform", "bytecode_fallback", "has_pseudo_file"]

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
        try:
            result: F = rewrite_with_layers(func, layer)
        except SourceUnavailableError:
            # No source (an eval'd lambda): codetransformer's way, on the bytecode.
            return bytecode_fallback(func, self.bytecode_transformer)
        except RewriteError:
            if not has_pseudo_file(func):
                raise
            # linecache held another "<string>"'s text: that is no source for this function.
            return bytecode_fallback(func, self.bytecode_transformer)
        return result

    def bytecode_transformer(self) -> Any:
        """The :mod:`callweave.bytecode` transformer for functions without source, or ``None``.

        Only called when the function has no source; ``None`` re-raises
        :class:`~callweave.errors.SourceUnavailableError`.
        """
        return None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} transform>"


def bytecode_fallback(func: F, make: Callable[[], Any]) -> F:
    """Applies ``make()``'s :mod:`callweave.bytecode` transformer to a function without source.

    Re-raises the :class:`~callweave.errors.SourceUnavailableError` being handled when ``func``
    is not a plain Python function, ``make()`` is ``None``, or the ``bytecode`` package
    (``pip install callweave[bytecode]``) is missing.
    """
    if not isinstance(func, FunctionType):
        raise  # re-raises the SourceUnavailableError being handled
    try:
        transformer = make()
    except ImportError as exc:
        raise SourceUnavailableError(
            f"{func.__qualname__} has no source, and transforming its bytecode needs the "
            f"bytecode package (pip install callweave[bytecode]): {exc}"
        ) from exc
    if transformer is None:
        handled = sys.exc_info()[1]
        if isinstance(handled, SourceUnavailableError):
            raise
        raise SourceUnavailableError(
            f"{func.__qualname__} has no source: its file "
            f"{func.__code__.co_filename} is a pseudo-file ({handled})"
        ) from handled
    result: F = transformer(func)
    return result


def has_pseudo_file(func: object) -> bool:
    """Whether ``func``'s code comes from a pseudo-file (``<string>``, ``<stdin>``).

    Several unrelated snippets share such a name, so a ``linecache`` entry under it (another
    ``exec``, an interactive session) is not necessarily this function's source.
    """
    code = getattr(getattr(func, "__func__", func), "__code__", None)
    filename = getattr(code, "co_filename", "")
    return isinstance(filename, str) and filename.startswith("<") and filename.endswith(">")
