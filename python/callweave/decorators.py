"""``wrap_calls`` and ``rewrite_function``: recompyle's decorator API on callweave's engine."""

from __future__ import annotations

import ast
import copyreg
import dis
import functools
import inspect
import linecache
import types
from collections.abc import Callable, Iterable
from typing import Any, ParamSpec, Protocol, TypeVar

from callweave import _native
from callweave._functions import Layer, rewrite_with_layers, unique_suffix
from callweave.sites import make_sites

__all__ = [
    "CallWrapper",
    "callee_call_offsets",
    "make_trampoline",
    "rewrite_function",
    "wrap_calls",
]

P = ParamSpec("P")
T = TypeVar("T")


class CallWrapper(Protocol):
    """A call wrapper: runs ``call(*args, **kwargs)`` and returns its result.

    With ``pass_site=True`` it is called as ``wrapper(call, site, *args, **kwargs)`` where
    ``site`` is a :class:`callweave.CallSite`. Declare ``call`` (and ``site``) positional-only
    (``def wrapper(call, /, *args, **kwargs)``): a wrapped call that passes its own ``call=``
    or ``site=`` keyword must reach the callee, not collide with the wrapper's parameter.
    """

    def __call__(self, call: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Runs the call."""
        ...


def _wrapper_code(wrapper: Any) -> tuple[types.CodeType, int] | None:
    """The code object whose frame runs when ``wrapper`` is called.

    Returns:
        The code object and the index of the parameter that receives the callee (0 for a
        function, 1 for a method or ``__call__``), or None for other callables.
    """
    if isinstance(wrapper, types.FunctionType):
        return wrapper.__code__, 0
    if isinstance(wrapper, types.MethodType) and isinstance(wrapper.__func__, types.FunctionType):
        return wrapper.__func__.__code__, 1
    method = inspect.getattr_static(type(wrapper), "__call__", None)
    if isinstance(method, types.FunctionType) and not isinstance(wrapper, type):
        return method.__code__, 1
    return None


@functools.lru_cache(maxsize=64)
def _call_spans(filename: str, name: str, source: str) -> frozenset[tuple[Any, ...]]:
    """The source spans of the calls ``name(...)`` in a file."""
    try:
        tree = ast.parse(source, filename)
    except (SyntaxError, ValueError):
        return frozenset()
    return frozenset(
        (n.lineno, n.end_lineno, n.col_offset, n.end_col_offset)
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == name
    )


def callee_call_offsets(wrapper: Any) -> tuple[types.CodeType | None, frozenset[int]]:
    """Where a call wrapper calls its callee: its code object and those instructions' offsets.

    The instructions are those of each call ``call(...)`` of the wrapper's first parameter
    (``call`` being its name) in the wrapper's own body, found by matching the instructions'
    source positions with the calls in the wrapper's source file. An exception whose traceback
    entry for the wrapper's frame sits at one of these offsets came out of the callee.

    Args:
        wrapper: A function, a bound method, or an object whose class defines ``__call__`` as a
            Python function. Anything else (a C function, a ``functools.partial``) gives none.

    Returns:
        The code object and the offsets, or ``(None, frozenset())`` when the wrapper's code,
        its callee parameter or its source cannot be found.
    """
    found = _wrapper_code(wrapper)
    if found is None:
        return None, frozenset()
    code, index = found
    if index >= code.co_argcount:
        return None, frozenset()
    name = code.co_varnames[index]
    lines = linecache.getlines(code.co_filename)
    if not lines:
        return None, frozenset()
    spans = _call_spans(code.co_filename, name, "".join(lines))
    offsets = frozenset(
        i.offset
        for i in dis.get_instructions(code)
        if (p := i.positions) is not None
        and (p.lineno, p.end_lineno, p.col_offset, p.end_col_offset) in spans
    )
    if not offsets:
        return None, frozenset()
    return code, offsets


def make_trampoline(wrapper: Any, *, pass_site: bool = False) -> Any:
    """The object rewritten code calls in place of ``wrapper``: a C-level trampoline.

    It calls ``wrapper(call, [site,] *args, **kwargs)``, except for callees that read their
    caller's frame (``warnings.warn``, logging, ``namedtuple``, ``TypeVar``, ``sys._getframe``
    …), which it calls directly so they see the user's function; and it removes the wrapper's
    entries from the traceback of an exception that came out of the callee.

    Args:
        wrapper: The user's call wrapper.
        pass_site: Whether calls pass a site after the callee.

    Returns:
        The trampoline (its ``__wrapped__`` is ``wrapper``).
    """
    code, offsets = callee_call_offsets(wrapper)
    return _native.make_trampoline(wrapper, 1 if pass_site else 0, code, offsets)


def _reduce_trampoline(trampoline: Any) -> tuple[Any, tuple[Any, ...]]:
    """Pickles a trampoline as its wrapper (by reference, as pickle does functions)."""
    return _unpickle_trampoline, (trampoline.__wrapped__, bool(trampoline.__callweave_post__))


def _unpickle_trampoline(wrapper: Any, pass_site: bool) -> Any:
    return make_trampoline(wrapper, pass_site=pass_site)


# Rewritten modules hold their trampolines in their globals, which pickling a function by value
# (cloudpickle) takes along.
copyreg.pickle(type(make_trampoline(print)), _reduce_trampoline)


def _names(value: Iterable[str] | None, what: str) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        raise TypeError(f"{what} must be a collection of call names, not a string: {value!r}")
    return list(value)


def call_lists(
    ignore_builtins: bool, blacklist: Iterable[str] | None, whitelist: Iterable[str] | None
) -> tuple[list[str] | None, list[str] | None]:
    """Checks a decorator's call lists now, so errors name the entry at decoration time.

    Returns:
        The blacklist and whitelist as lists (or None).

    Raises:
        TypeError: A list given as a single string.
        ValueError: An entry not in the call-name syntax, or both lists at once.
    """
    black = _names(blacklist, "blacklist")
    white = _names(whitelist, "whitelist")
    _native.Rule(
        "wrap",
        {"wrapper": "__callweave_check__"},
        functions=["x"],
        ignore_builtins=ignore_builtins,
        blacklist=black,
        whitelist=white,
    )
    return black, white


def wrap_calls(
    *,
    wrapper: CallWrapper,
    ignore_builtins: bool = False,
    blacklist: Iterable[str] | None = None,
    whitelist: Iterable[str] | None = None,
    rewrite_details: dict[str, object] | None = None,
    pass_site: bool = False,
) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """Rewrites the decorated function so that every call in it goes through ``wrapper``.

    ``f(a, *b, k=1)`` runs as ``wrapper(f, a, *b, k=1)``; the wrapper must make the call and
    return its result. Calls in nested functions, lambdas, comprehensions and f-strings are
    wrapped too. Calls that read their caller's frame (``super()``, ``locals()``, ``eval`` …)
    are never wrapped.

    Args:
        wrapper: The call wrapper.
        ignore_builtins: Skip calls of builtins (names the module or function rebinds are not
            builtins).
        blacklist: Call names not to wrap, e.g. ``"log.info"``, ``"a[b]"`` for ``a["b"]()``,
            ``"a[*]"`` for any subscript of ``a``.
        whitelist: Call names to wrap; nothing else is. Not together with ``blacklist``.
        rewrite_details: If given, filled with ``original_func``, ``original_source`` and
            ``new_source``.
        pass_site: Call ``wrapper(call, site, *args, **kwargs)`` with a
            :class:`callweave.CallSite` (declare it ``def wrapper(call, site, /, *args,
            **kwargs)``).

    Returns:
        A decorator for functions, methods, classmethods and staticmethods.

    Raises:
        ValueError: An invalid blacklist/whitelist entry, or both lists at once.
    """
    if not callable(wrapper):
        raise TypeError(f"wrapper must be callable, got {wrapper!r}")
    black, white = call_lists(ignore_builtins, blacklist, whitelist)

    def decorate(target: Callable[P, T]) -> Callable[P, T]:
        n = unique_suffix()
        wrapper_name = f"__callweave_wrap_{n}__"
        sites_name = f"__callweave_sites_{n}__" if pass_site else None
        names: dict[str, Any] = {
            wrapper_name: make_trampoline(wrapper, pass_site=pass_site),
            # Calls with `*` or `**` arguments: `bind_call(0, wrapper, f)(*a)`.
            _native.BIND_NAME: _native.bind_call,
        }

        def make_rule(at: tuple[str, int]) -> _native.Rule:
            return _native.Rule(
                "wrap",
                {"wrapper": wrapper_name, "sites": sites_name},
                at=at,
                ignore_builtins=ignore_builtins,
                blacklist=black,
                whitelist=white,
            )

        def bind(new: Any, result: _native.Rewritten, layers: Any) -> None:
            if sites_name is not None:
                code = new.__code__
                new.__globals__[sites_name] = make_sites(
                    new.__module__, code.co_filename, result.sites
                )

        layer = Layer("wrap_calls", make_rule, names, bind)
        return rewrite_with_layers(target, layer, rewrite_details)

    return decorate


def rewrite_function(
    target_func: Callable[P, T],
    transformers: Iterable[ast.NodeTransformer] = (),
    *,
    rewrite_details: dict[str, object] | None = None,
) -> Callable[P, T]:
    """Rewrites a function with custom ``ast.NodeTransformer`` instances (recompyle's API).

    The transformers visit the function's ``FunctionDef`` node, in order, after callweave's
    own layers (if the function already carries some) have been applied; nodes they keep keep
    their original positions, and nodes they add take their location from the node they
    replace (``ast.copy_location``) or from their parent.

    Args:
        target_func: The function, method, classmethod or staticmethod to rewrite.
        transformers: Transformer instances applied in order.
        rewrite_details: If given, filled with ``original_func``, ``original_source`` and
            ``new_source`` (the latter before the custom transformers, as text).

    Returns:
        The rewritten function.
    """
    transformers = list(transformers)
    for t in transformers:
        if not isinstance(t, ast.NodeTransformer):
            raise TypeError(f"transformers must be ast.NodeTransformer instances, got {t!r}")

    def make_rule(at: tuple[str, int]) -> _native.Rule:
        # Selects the function without routing any call: the whitelist matches nothing.
        return _native.Rule(
            "wrap", {"wrapper": "__callweave_unused__"}, at=at, whitelist=["__callweave_no_call__"]
        )

    layer = Layer("rewrite_function", make_rule, {}, None, transformers)
    return rewrite_with_layers(target_func, layer, rewrite_details)
