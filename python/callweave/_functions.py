"""Rewriting one function in place: the machinery behind the decorators.

A decorated function is rewritten by rewriting its whole module source with a rule that
selects exactly that function (its qualname and first line), compiling that module source,
and taking the function's code object from the result. Compiling the function in its real
context keeps private-name mangling, ``__future__`` flags, closures and positions exact; the
module's code itself is never executed. Injected names get a unique suffix per rewrite and
are set in the function's globals.
"""

from __future__ import annotations

import ast
import inspect
import itertools
import linecache
import re
import threading
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from callweave import _native
from callweave._compile import compile_rewritten, find_code
from callweave._make_function import make_function
from callweave._slots import SlotError, patch_code
from callweave.errors import RewriteError, SourceUnavailableError

__all__ = ["Layer", "rewrite_with_layers"]

#: What a decorator receives and returns: a function, classmethod or staticmethod.
_F = TypeVar("_F")

_ids = itertools.count()
_ids_lock = threading.Lock()


def unique_suffix() -> int:
    """A number no other rewrite in this process has used."""
    with _ids_lock:
        return next(_ids)


@dataclass
class Layer:
    """One callweave decorator applied to a function.

    Attributes:
        name: The decorator's name, for messages.
        make_rule: Builds the native rule, given ``at=(qualname, first_line)``.
        names: Globals the rewritten code needs (injected name → object).
        bind: Called after compiling with the new function and the native rewrite result;
            returns the function to hand back (the same one, or a wrapper around it).
        transformers: Python ``ast`` transformers applied to the function's rewritten tree.
        constant: For transforms that take constant slots: the value of one slot of this
            layer's rule, computed once; the compiled code loads it as a constant (see
            ``callweave._slots``).
        patch: Called after the constant slots are loaded, with the function's code object
            and the slots this layer's rule took; returns the code to use (e.g. with more
            names loaded as constants by ``callweave._slots.patch_code``: injected names,
            names frozen by ``asconstants``). Layers patch in order, innermost first.
    """

    name: str
    make_rule: Callable[[tuple[str, int]], _native.Rule]
    names: dict[str, Any] = field(default_factory=dict)
    bind: Callable[[types.FunctionType, _native.Rewritten, Sequence[Layer]], Any] | None = None
    transformers: Sequence[ast.NodeTransformer] = ()
    constant: Callable[[_native.ConstantSlot], Any] | None = None
    patch: Callable[[types.CodeType, list[_native.ConstantSlot]], types.CodeType] | None = None


@dataclass(frozen=True)
class Rewritten:
    """What callweave keeps on a rewritten function (its ``__callweave__`` attribute).

    Attributes:
        original: The function as written, before any callweave decorator.
        layers: The decorators applied, innermost first.
        original_source: The function's original text.
        new_source: The function's rewritten text.
    """

    original: types.FunctionType
    layers: tuple[Layer, ...]
    original_source: str
    new_source: str


def _unwrap_method(target: Any) -> tuple[types.FunctionType, Callable[[Any], Any]]:
    """Splits classmethod/staticmethod into the function and a re-wrapper."""
    if isinstance(target, classmethod | staticmethod):
        kind = type(target)
        inner, rewrap = _unwrap_method(target.__func__)
        return inner, lambda f: kind(rewrap(f))
    if isinstance(target, types.MethodType):
        raise TypeError(
            "callweave rewrites functions, not bound methods: decorate "
            f"{target.__func__.__qualname__!r} "
            "in its class instead"
        )
    if not isinstance(target, types.FunctionType):
        what = getattr(target, "__qualname__", None) or type(target).__name__
        raise SourceUnavailableError(
            f"cannot rewrite {what!r}: it is a {type(target).__name__}, not a Python function "
            "with source (builtins and C functions have none; put callweave's decorator directly "
            "above the def)"
        )
    return target, lambda f: f


_DEF_OR_DECORATOR = re.compile(r"^\s*@|\bdef\b")


def _module_source(func: types.FunctionType) -> tuple[str, str]:
    code = func.__code__
    filename = code.co_filename
    # The file may have been edited since linecache read it (an edited module reloaded):
    # rewriting stale text would compile the old body under the new function's name.
    linecache.checkcache(filename)
    lines = linecache.getlines(filename, func.__globals__)
    if not lines:
        raise SourceUnavailableError(
            f"cannot rewrite {code.co_qualname!r}: no source is available for {filename!r} "
            "(functions typed at a prompt or built by exec() have none)"
        )
    # Pseudo-files share names: on 3.13 linecache holds the `python -c` command as "<string>",
    # which is also the file name of every exec()'d function. The line co_firstlineno points
    # at must be the function's first decorator or its `def`, or the text is someone else's.
    first = lines[code.co_firstlineno - 1] if 0 < code.co_firstlineno <= len(lines) else ""
    if not _DEF_OR_DECORATOR.search(first):
        raise SourceUnavailableError(
            f"cannot rewrite {code.co_qualname!r}: the source available for {filename!r} does "
            f"not define it at line {code.co_firstlineno} (functions typed at a prompt or built "
            "by exec() have none)"
        )
    return "".join(lines), filename


def _find_def(tree: ast.Module, qualname: str, def_line: int, result: _native.Rewritten) -> Any:
    """The (Async)FunctionDef node for ``qualname`` defined at original ``def_line``."""
    found: list[tuple[ast.AST, str, ast.AST]] = []

    def walk(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                q = f"{prefix}{child.name}"
                if q == qualname and result.original_line(child.lineno) == def_line:
                    found.append((child, q, node))
                walk(child, f"{q}.<locals>.")
            elif isinstance(child, ast.ClassDef):
                walk(child, f"{prefix}{child.name}.")
            else:
                walk(child, prefix)

    walk(tree, "")
    return found[0] if found else None


def _patch_constants(
    code: types.CodeType, result: _native.Rewritten, layers: Sequence[Layer]
) -> types.CodeType:
    """``code`` with the constant slots of ``result`` loaded as the values their layers give."""
    slots = result.constants
    if not slots:
        return code
    values: dict[str, Any] = {}
    for slot in slots:
        layer = layers[slot.rule]
        if layer.constant is None:
            raise RewriteError(f"{layer.name} took constant slot {slot.name} without a value")
        values[slot.name] = layer.constant(slot)
    try:
        return patch_code(code, values)
    except SlotError as exc:
        raise RewriteError(f"cannot load constants into {code.co_qualname!r}: {exc}") from None


def rewrite_with_layers(
    target: _F, layer: Layer, rewrite_details: dict[str, object] | None = None
) -> _F:
    """Applies ``layer`` on top of any callweave layers already on ``target``.

    Args:
        target: A function, classmethod or staticmethod (possibly already rewritten).
        layer: The new, outermost layer.
        rewrite_details: If given, filled with ``original_func``, ``original_source`` and
            ``new_source``.

    Returns:
        The rewritten function, wrapped again as classmethod/staticmethod if it was.
    """
    func, rewrap = _unwrap_method(target)
    previous: Rewritten | None = getattr(func, "__callweave__", None)
    original = previous.original if previous is not None else func
    layers = (*(previous.layers if previous is not None else ()), layer)

    source, filename = _module_source(original)
    code = original.__code__
    at = (code.co_qualname, code.co_firstlineno)
    rules = [layer.make_rule(at) for layer in layers]
    transformers = [t for layer in layers for t in layer.transformers]

    def tree_hook(tree: ast.Module, result: _native.Rewritten) -> ast.Module:
        functions = [f for f in result.functions if (f.qualname, f.first_line) == at]
        def_line = functions[0].def_line if functions else code.co_firstlineno
        found = _find_def(tree, code.co_qualname, def_line, result)
        if found is None:
            raise RewriteError(f"cannot find {code.co_qualname!r} in the rewritten source")
        node, _, parent = found
        new_node = node
        for transformer in transformers:
            new_node = transformer.visit(new_node)
        if new_node is not node:
            for _field, value in ast.iter_fields(parent):
                if isinstance(value, list) and node in value:
                    value[value.index(node)] = new_node
                    break
        return tree

    try:
        # The module was compiled normally when it was imported: its compile-time warnings
        # were issued then.
        module_code, result = compile_rewritten(
            source,
            filename,
            rules,
            tree_hook=tree_hook if transformers else None,
            emit_warnings=False,
        )
    except RewriteError as exc:
        raise RewriteError(f"cannot rewrite {code.co_qualname!r}: {exc}") from None
    new_code = find_code(module_code, *at)
    if new_code is None:
        raise RewriteError(
            f"cannot rewrite {code.co_qualname!r}: its code was not found after rewriting "
            f"{filename!r} (was the file edited after it was imported?)"
        )
    if new_code.co_freevars != code.co_freevars:
        raise RewriteError(
            f"cannot rewrite {code.co_qualname!r}: its free variables changed "
            f"({code.co_freevars} → {new_code.co_freevars})"
        )
    new_code = _patch_constants(new_code, result, layers)
    for index, lay in enumerate(layers):
        if lay.patch is not None:
            new_code = lay.patch(new_code, [c for c in result.constants if c.rule == index])
    for lay in layers:
        original.__globals__.update(lay.names)

    # Built by MAKE_FUNCTION, not types.FunctionType, so that callers specialise their calls
    # to it on 3.13 (see _make_function); the attributes set afterwards keep that.
    new = make_function(
        new_code,
        original.__globals__,
        original.__name__,
        original.__defaults__,
        original.__closure__,
        kwdefaults=original.__kwdefaults__,
        annotations=original.__annotations__,
        type_params=getattr(original, "__type_params__", ()),
    )
    new.__dict__.update(original.__dict__)
    new.__qualname__ = original.__qualname__
    new.__doc__ = original.__doc__
    new.__module__ = original.__module__
    info = [f for f in result.functions if (f.qualname, f.first_line) == at]
    new_source = info[0].new_text if info else ""
    rewritten = Rewritten(
        original=original,
        layers=layers,
        original_source=inspect.getsource(original),
        new_source=new_source,
    )
    setattr(new, "__callweave__", rewritten)  # noqa: B010
    bound: Any = new
    for lay in layers:
        if lay.bind is not None:
            bound = lay.bind(new, result, layers) or bound
    if rewrite_details is not None:
        rewrite_details["original_func"] = target
        rewrite_details["original_source"] = rewritten.original_source
        rewrite_details["new_source"] = new_source
    return cast(_F, rewrap(bound))
