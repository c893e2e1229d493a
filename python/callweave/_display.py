"""How reports and log records show durations, call text and callees."""

from __future__ import annotations

import ast
import functools
import math
import re
from typing import Any, Final

__all__ = ["callee_label", "format_duration", "one_line"]

_UNITS: Final = (("s", 1.0), ("ms", 1e-3), ("\u00b5s", 1e-6), ("ns", 1e-9))
_INNER_SPACE: Final = re.compile(r"([(\[{]) | ([)\]}])")
#: Longest callee expression shown when a call has no name (``(a or b)(x)``).
_EXPRESSION_WIDTH: Final = 40


def format_duration(seconds: float) -> str:
    """A duration with three significant digits in s, ms, µs or ns: ``"1.25 ms"``, ``"980 ns"``.

    Args:
        seconds: The duration.

    Returns:
        The text; ``"0"`` for zero.
    """
    if not math.isfinite(seconds):
        return str(seconds)
    if seconds == 0:
        return "0"
    magnitude = abs(seconds)
    unit, scale = next(((u, f) for u, f in _UNITS if magnitude >= 0.9995 * f), _UNITS[-1])
    value = magnitude / scale
    decimals = 2 if value < 9.995 else 1 if value < 99.95 else 0
    sign = "-" if seconds < 0 else ""
    return f"{sign}{value:.{decimals}f} {unit}"


def one_line(text: str) -> str:
    """The text on one line: whitespace runs collapsed, none just inside brackets."""
    text = " ".join(text.split())
    return _INNER_SPACE.sub(lambda m: m.group(1) or m.group(2), text)


def _callable_name(call: Any) -> str:
    for attr in ("__qualname__", "__name__"):
        name = getattr(call, attr, None)
        if isinstance(name, str):
            return name
    return type(call).__name__


@functools.lru_cache(maxsize=4096)
def _expression_name(text: str) -> str | None:
    """The callee of a call without a call name, from the call's source text.

    A method of a literal (``"".join(parts)``, ``b",".split(x)``, ``{}.get(k)``) is named as
    the method really is (``str.join``); any other callee by its expression on one line.
    """
    try:
        tree = ast.parse(f"(\n{text}\n)", mode="eval")
    except SyntaxError:
        return None
    call = tree.body
    if not isinstance(call, ast.Call):
        return None
    func = call.func
    if isinstance(func, ast.Attribute):
        try:
            receiver = ast.literal_eval(func.value)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            receiver = None
        else:
            method = getattr(type(receiver), func.attr, None)
            if method is not None:
                return _callable_name(method)
    expression = one_line(ast.unparse(func))
    if len(expression) > _EXPRESSION_WIDTH:
        expression = expression[: _EXPRESSION_WIDTH - 1] + "\u2026"
    return expression


def callee_label(text: str, callee: str | None) -> str:
    """What a call site calls: its call name, else the name found from its text.

    Args:
        text: The call's source text.
        callee: Its call name (None for a callee that has none, such as ``"".join``).

    Returns:
        ``callee`` when given; for a method of a literal its real name (``"".join(x)`` is
        ``str.join``); otherwise the callee expression (``(a or b)``), or ``"?"``.
    """
    if callee:
        return callee
    return _expression_name(text) or "?"
