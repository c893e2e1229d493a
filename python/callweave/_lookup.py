"""Finding a module's function objects without running any of the module's code.

``getattr`` on a class runs descriptors' ``__get__`` (and metaclass ``__getattr__``), which is
user code: pyparsing's ``_lazyclassproperty`` imports pyparsing from inside pyparsing. These
lookups read namespaces directly (a module's globals, a class's own ``__dict__``), unwrap only
callweave-known C types (``staticmethod``, ``classmethod``, ``property`` and ``__wrapped__``
chains of plain functions), and accept a function only if its code object is the one expected.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from types import CodeType, FunctionType
from typing import Any

__all__ = ["code_objects", "find_function"]

_CLASS_DICT = type.__dict__["__dict__"]
#: Bounds the unwrapping of ``__wrapped__`` chains (a chain can be made cyclic).
_MAX_UNWRAP = 32


def code_objects(code: CodeType) -> Iterator[CodeType]:
    """Every code object nested in ``code`` (not ``code`` itself)."""
    stack = [c for c in code.co_consts if type(c) is CodeType]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(c for c in current.co_consts if type(c) is CodeType)


def _class_namespace(obj: Any) -> Mapping[str, Any] | None:
    # issubclass on type(obj) and the type descriptor's __get__ are C code: a metaclass's
    # __getattribute__, __dict__ or __instancecheck__ is never consulted.
    if not issubclass(type(obj), type):
        return None
    namespace: Mapping[str, Any] = _CLASS_DICT.__get__(obj, type(obj))
    return namespace


def _candidates(obj: Any) -> Iterator[FunctionType]:
    """The plain functions ``obj`` stands for, through known wrappers only."""
    todo = [obj]
    for _ in range(_MAX_UNWRAP):
        if not todo:
            return
        current = todo.pop()
        kind = type(current)
        if kind is FunctionType:
            yield current
            wrapped = current.__dict__.get("__wrapped__")  # functools.wraps
            if wrapped is not None:
                todo.append(wrapped)
        elif kind is staticmethod or kind is classmethod:
            todo.append(current.__func__)
        elif kind is property:
            todo.extend(f for f in (current.fget, current.fset, current.fdel) if f is not None)


def find_function(namespace: Mapping[str, Any], qualname: str, code: CodeType) -> Any:
    """The function whose code is ``code``, found at ``qualname`` from ``namespace``.

    Args:
        namespace: A module's globals.
        qualname: The function's qualname (``Class.method``; ``<locals>`` parts are not
            reachable and give None).
        code: The function's code object, as executed.

    Returns:
        The function object, or None when it is not reachable without running user code.
    """
    *path, name = qualname.split(".")
    scope: Mapping[str, Any] | None = namespace
    for part in path:
        if scope is None:
            return None
        scope = _class_namespace(scope.get(part))
    if scope is None:
        return None
    for func in _candidates(scope.get(name)):
        if func.__code__ is code:
            return func
    return None
