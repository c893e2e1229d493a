"""``asconstants``: names frozen as constants in a function (codetransformer's transformer).

Loads of the frozen names in the decorated function (nested functions, classes, lambdas and
comprehensions included) become constant loads: globals, builtins and variables of enclosing
functions alike, so rebinding the name elsewhere later changes nothing, and the load is as fast
as a literal's. Code that would bind or delete a frozen name in that scope is a
``SyntaxError`` at that statement, raised when decorating.
"""

from __future__ import annotations

import builtins
import keyword
from collections.abc import Callable, Mapping
from types import CodeType, FunctionType
from typing import Any, TypeVar

from callweave import _native
from callweave._functions import Layer, rewrite_with_layers
from callweave._slots import patch_code
from callweave.errors import RewriteError, SourceUnavailableError
from callweave.transforms._base import bytecode_fallback, has_pseudo_file

__all__ = ["asconstants"]


def _frozen_names(constants: Mapping[str, Any]) -> Any:
    """Functions without source: global and builtin loads, as codetransformer did."""
    from callweave.bytecode.sourceless import FrozenNames

    return FrozenNames(constants)


F = TypeVar("F", bound=Callable[..., Any])

#: Names of the ``builtins`` module that are not builtins a function looks up: the module's own
#: metadata (a function's ``__name__`` is its module's) and the interactive ``_``.
_NOT_BUILTINS = frozenset(
    {"__name__", "__doc__", "__package__", "__loader__", "__spec__", "__builtins__", "_"}
)


def _all_builtins() -> dict[str, Any]:
    """Every builtin a function can load by name.

    ``None``, ``True`` and ``False`` are keywords, constants already.
    """
    return {
        k: v
        for k, v in vars(builtins).items()
        if k not in _NOT_BUILTINS and not keyword.iskeyword(k)
    }


def _argument_names(code: CodeType) -> list[str]:
    """The parameters of ``code``, ``*args`` and ``**kwargs`` included."""
    count = code.co_argcount + code.co_kwonlyargcount
    count += bool(code.co_flags & 0x04) + bool(code.co_flags & 0x08)  # VARARGS, VARKEYWORDS
    return list(code.co_varnames[:count])


def _overlap_error(names: Mapping[str, Any], func: FunctionType) -> SyntaxError | None:
    overlap = sorted(set(names) & set(_argument_names(func.__code__)))
    if not overlap:
        return None
    listed = ", ".join(repr(n) for n in overlap)
    return SyntaxError(f"argument names overlap with constant names: {{{listed}}}")


def asconstants(*builtin_names: str, **values: Any) -> Callable[[F], F]:
    """Freezes names as constants in the decorated function.

    >>> @asconstants('len', a=1)
    ... def f(x):
    ...     return len(x) + a
    >>> a = 5
    >>> f([1, 2])
    3

    Args:
        *builtin_names: Names of builtins (``"len"``, ``"print"``), frozen as the builtin
            objects they are now, whatever the function's module or a later assignment binds
            to them.
        **values: More names, frozen to these values.

    With no argument at all, every builtin is frozen (but the ``builtins`` module's own
    ``__name__``, ``__doc__``, ``__package__``, ``__loader__``, ``__spec__`` and the
    interactive ``_``, which are not builtins a function looks up).

    Returns:
        A decorator for functions, methods (any decorator order), closures, coroutines,
        generators and async generators.

    Raises:
        ValueError: A positional name that is not a builtin, or a name that is not an
            identifier (or is a keyword).
        TypeError: A name given both ways.
        SyntaxError: When decorating: a parameter of the function has a frozen name
            (``argument names overlap with constant names: {'a'}``); code in it would bind
            (``can't assign to constant name 'a'``) or delete (``can't delete constant name
            'a'``) one — with the file, line and column of that code.
    """
    available = vars(builtins)
    constants: dict[str, Any] = {}
    for name in builtin_names:
        if not isinstance(name, str):
            raise TypeError(f"builtin names must be strings, got {name!r}")
        if name not in available:
            raise ValueError(f"{name!r} is not the name of a builtin")
        constants[name] = available[name]
    duplicates = constants.keys() & values.keys()
    if duplicates:
        raise TypeError(f"names given both as builtins and as values: {sorted(duplicates)}")
    constants.update(values)
    if not builtin_names and not values:
        constants = _all_builtins()
    for name in constants:
        if not name.isidentifier() or keyword.iskeyword(name):
            raise ValueError(f"cannot freeze {name!r}: it is not a name Python code can load")
    frozen_names = sorted(constants)

    def decorate(target: F) -> F:
        func = getattr(target, "__func__", target)
        if isinstance(func, FunctionType):
            error = _overlap_error(constants, func)
            if error is not None:
                raise error

        def make_rule(at: tuple[str, int]) -> _native.Rule:
            return _native.Rule(transform="asconstants", options={"names": frozen_names}, at=at)

        def patch(code: CodeType, slots: list[_native.ConstantSlot]) -> CodeType:
            return patch_code(code, constants)

        layer = Layer("asconstants", make_rule, patch=patch)
        try:
            return rewrite_with_layers(target, layer)
        except SourceUnavailableError:
            return bytecode_fallback(target, lambda: _frozen_names(constants))
        except RewriteError:
            if not has_pseudo_file(target):
                raise
            return bytecode_fallback(target, lambda: _frozen_names(constants))

    return decorate
