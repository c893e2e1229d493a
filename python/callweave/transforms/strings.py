"""``interpolated_strings``: string literals formatted from the function's locals.

codetransformer's transformer, done at the source level.

``b"{a} {b!r}"`` in the decorated function (nested functions, classes, lambdas and
comprehensions included) evaluates to ``"{a} {b!r}".format(**locals())`` — a ``str``, the bytes
decoded as UTF-8, as codetransformer did — with ``locals`` the builtin whatever the function's
module binds to that name. The decoded text is a constant; only the ``format`` call runs.
"""

from __future__ import annotations

import ast
import builtins
from collections.abc import Callable
from types import CodeType
from typing import Any, TypeVar

from callweave import _native
from callweave._functions import Layer, rewrite_with_layers, unique_suffix
from callweave._slots import patch_code

__all__ = ["interpolated_strings", "literal_value"]

F = TypeVar("F", bound=Callable[..., Any])


def literal_value(text: str) -> str:
    """The ``str`` a rewritten literal stands for, from the literal's original text.

    Args:
        text: A string or bytes literal as written (implicitly concatenated parts included).

    Returns:
        The string; bytes are decoded as UTF-8.

    Raises:
        UnicodeDecodeError: A bytes literal that is not UTF-8.
    """
    value = ast.literal_eval(f"(\n{text}\n)")
    return value.decode("utf-8") if isinstance(value, bytes) else value


def interpolated_strings(
    *, transform_bytes: bool = True, transform_str: bool = False
) -> Callable[[F], F]:
    """Formats string literals from the locals where they are evaluated.

    >>> @interpolated_strings()
    ... def foo(a, b):
    ...     c = a + b
    ...     return b"{a} + {b} = {c}"
    >>> foo(1, 2)
    '1 + 2 = 3'

    Args:
        transform_bytes: Bytes literals become ``str`` literals (decoded as UTF-8) formatted
            from the locals.
        transform_str: ``str`` literals are formatted from the locals too.

    Docstrings, f-strings (and literals concatenated with one), ``case`` patterns and
    annotations are left as written.

    Returns:
        A decorator for functions, methods (any decorator order), closures, coroutines,
        generators and async generators.

    Raises:
        UnicodeDecodeError: When decorating: a bytes literal that is not valid UTF-8.
    """
    options = {"bytes": bool(transform_bytes), "str": bool(transform_str)}

    def decorate(target: F) -> F:
        locals_name = f"__callweave_locals_{unique_suffix()}__"

        def make_rule(at: tuple[str, int]) -> _native.Rule:
            return _native.Rule(
                transform="interpolated_strings",
                options={**options, "locals": locals_name},
                at=at,
            )

        def patch(code: CodeType, slots: list[_native.ConstantSlot]) -> CodeType:
            return patch_code(code, {locals_name: builtins.locals})

        layer = Layer(
            "interpolated_strings",
            make_rule,
            {locals_name: builtins.locals},
            constant=lambda slot: literal_value(slot.text),
            patch=patch,
        )
        return rewrite_with_layers(target, layer)

    return decorate
