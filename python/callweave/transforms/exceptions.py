"""``pattern_matched_exceptions``: ``except`` clauses that match instances or anything else.

codetransformer's transformer, done at the source level: clauses may name exception
instances, or anything a matcher of yours accepts.

Each ``except EXPR:`` clause of the decorated function (nested functions, classes and lambdas
included) becomes ``except MATCH(EXPR):``, ``MATCH`` being loaded as a constant. CPython still
evaluates the clauses itself — lazily, in order, with the exception being handled in
:func:`sys.exc_info` — and ``MATCH`` only tells it what to match against, so the ``as`` binding
and its deletion, bare ``raise``, exception chaining and tracebacks are exactly plain Python's.
Bare ``except:`` and ``except*`` clauses are left as written.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import CodeType, TracebackType
from typing import Any, TypeVar

from callweave import _native
from callweave._functions import Layer, rewrite_with_layers, unique_suffix
from callweave._slots import patch_code

__all__ = ["Matcher", "match", "pattern_matched_exceptions"]

F = TypeVar("F", bound=Callable[..., Any])

#: ``matcher(expr, exc_type, exc_value, exc_traceback) -> bool``: whether the clause whose
#: expression evaluated to ``expr`` handles the exception being handled.
Matcher = Callable[
    [Any, type[BaseException] | None, BaseException | None, TracebackType | None], object
]

#: What ``MATCH`` hands CPython for a clause that matches, and for one that does not.
_MATCHES: type[BaseException] = BaseException
_NO_MATCH: tuple[()] = ()

_NOT_ALLOWED = "catching classes that do not inherit from BaseException is not allowed"


def _instance_matches(pattern: BaseException, exc: BaseException | None) -> bool:
    """Codetransformer's rule for an instance: the exception's type and ``args``."""
    return isinstance(exc, type(pattern)) and pattern.args == exc.args


def match(
    match_expr: Any,
    exc_type: type[BaseException] | None,
    exc_value: BaseException | None,
    exc_traceback: TracebackType | None,
) -> bool:
    """The default matching rule, as a matcher (for custom matchers to fall back on).

    Args:
        match_expr: The clause's value: an exception class, an exception instance, or a
            tuple of those.
        exc_type: The exception's type (``sys.exc_info()[0]``).
        exc_value: The exception.
        exc_traceback: Its traceback (unused).

    Returns:
        For a class, whether the exception is an instance of it (as plain ``except``); for an
        instance, whether the exception is of its type (or a subclass) with equal ``args``;
        for a tuple, whether any item matches.

    Raises:
        TypeError: Anything else, with CPython's message for such an ``except`` clause.
    """
    if isinstance(match_expr, tuple):
        return any(match(p, exc_type, exc_value, exc_traceback) for p in match_expr)
    if isinstance(match_expr, BaseException):
        return _instance_matches(match_expr, exc_value)
    if isinstance(match_expr, type) and issubclass(match_expr, BaseException):
        return exc_type is not None and issubclass(exc_type, match_expr)
    raise TypeError(_NOT_ALLOWED)


def _default_clause(pattern: Any) -> Any:
    """``MATCH`` for the default rule: what CPython matches the exception against.

    A class, a tuple of classes or anything invalid is handed back unchanged, so CPython
    matches it (or raises its own ``TypeError`` for it, at the clause). Instances are decided
    here; in a tuple, each instance is replaced by ``BaseException`` when it matches and left
    out when it does not.
    """
    if isinstance(pattern, BaseException):
        return _MATCHES if _instance_matches(pattern, sys.exception()) else _NO_MATCH
    if isinstance(pattern, tuple) and any(isinstance(p, BaseException) for p in pattern):
        exc = sys.exception()
        return tuple(
            _MATCHES if isinstance(p, BaseException) else p
            for p in pattern
            if not isinstance(p, BaseException) or _instance_matches(p, exc)
        )
    return pattern


def _custom_clause(matcher: Matcher) -> Callable[[Any], Any]:
    """``MATCH`` for a custom matcher: every clause's value goes to ``matcher``."""

    def clause(pattern: Any) -> Any:
        return _MATCHES if matcher(pattern, *sys.exc_info()) else _NO_MATCH

    clause.__qualname__ = clause.__name__ = f"pattern_matched_exceptions({matcher!r})"
    return clause


def pattern_matched_exceptions(matcher: Matcher | None = None) -> Callable[[F], F]:
    """Lets ``except`` clauses match exception instances, or anything ``matcher`` accepts.

    >>> @pattern_matched_exceptions()
    ... def foo():
    ...     try:
    ...         raise ValueError('bar')
    ...     except ValueError('buzz'):
    ...         return 'buzz'
    ...     except ValueError('bar'):
    ...         return 'bar'
    >>> foo()
    'bar'

    Args:
        matcher: ``matcher(expr, exc_type, exc_value, exc_traceback) -> bool`` is called with
            each clause's value, in order, until one returns true; that clause handles the
            exception. Default: exception classes (and tuples of them) keep their meaning;
            an exception instance matches an exception of its type (or a subclass) with equal
            ``args``; tuples may mix both (see :func:`match`).

    Returns:
        A decorator for functions, methods (any decorator order), closures, coroutines,
        generators and async generators.
    """
    if matcher is not None and not callable(matcher):
        raise TypeError(f"matcher must be callable, got {matcher!r}")
    clause = _default_clause if matcher is None else _custom_clause(matcher)

    def decorate(target: F) -> F:
        name = f"__callweave_match_{unique_suffix()}__"

        def make_rule(at: tuple[str, int]) -> _native.Rule:
            return _native.Rule(
                transform="pattern_matched_exceptions", options={"matcher": name}, at=at
            )

        def patch(code: CodeType, slots: list[_native.ConstantSlot]) -> CodeType:
            return patch_code(code, {name: clause})

        layer = Layer("pattern_matched_exceptions", make_rule, {name: clause}, patch=patch)
        return rewrite_with_layers(target, layer)

    return decorate
