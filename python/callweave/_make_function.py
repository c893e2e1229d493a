"""Building a function from a code object the way a ``def`` statement does.

Every function callweave builds from a rewritten code object goes through
:func:`make_function`, never ``types.FunctionType(...)``: on CPython 3.13 a function made
by ``types.FunctionType`` has no valid ``func_version`` (only the ``MAKE_FUNCTION``
instruction sets it, from the code object's version), so no ``CALL`` site calling it is
ever specialised (``CALL_PY_EXACT_ARGS``/``CALL_PY_GENERAL``) and each call costs a few
nanoseconds more than a call to the same function made by ``def``. The 3.13 interpreter
also clears the version for good when ``__code__``, ``__defaults__`` or ``__kwdefaults__``
is assigned (even ``None``), or the closure is replaced. 3.11 and 3.12 assign a version
lazily at the first specialisation attempt (and again after such an assignment), so they
are not affected, but they take the same path here.

:func:`make_function` therefore runs a small "maker" code object that holds the new code
object as a constant and executes ``MAKE_FUNCTION`` on it (with its flags on 3.11/3.12,
followed by ``SET_FUNCTION_ATTRIBUTE`` on 3.13), so defaults, keyword defaults, closure
and annotations are stored the way a ``def`` statement stores them. Setting ``__name__``,
``__qualname__``, ``__doc__``, ``__module__``, ``__annotations__``, ``__type_params__`` or
``__dict__`` afterwards, or any attribute in ``__dict__``, keeps the version.
"""

from __future__ import annotations

import dis
import functools
import sys
import types
from typing import Any

__all__ = ["make_function"]

# MAKE_FUNCTION flag bits (3.11/3.12), and SET_FUNCTION_ATTRIBUTE arguments (3.13).
_DEFAULTS = 0x01
_KWDEFAULTS = 0x02
_ANNOTATIONS = 0x04
_CLOSURE = 0x08

# (flag, index of the maker's parameter), in the order a ``def`` statement pushes the
# attributes, which MAKE_FUNCTION (3.11/3.12) and SET_FUNCTION_ATTRIBUTE (3.13) pop in reverse.
_PUSHED = ((_DEFAULTS, 0), (_KWDEFAULTS, 1), (_ANNOTATIONS, 2), (_CLOSURE, 3))


def _maker_template(  # the shape of every maker: four positional parameters, no cells
    defaults: Any, kwdefaults: Any, annotations: Any, closure: Any
) -> None:
    pass


def _instr(name: str, arg: int = 0) -> bytes:
    """One instruction, followed by its inline cache entries (zeroed, as the compiler does)."""
    op = dis.opmap[name]
    # 3.11/3.12: a list indexed by opcode; 3.13: a dict keyed by name.
    entries: Any = dis._inline_cache_entries  # type: ignore[attr-defined]
    caches: int = entries.get(name, 0) if isinstance(entries, dict) else entries[op]
    return bytes((op, arg)) + b"\x00\x00" * caches


@functools.cache
def _maker_code(flags: int) -> types.CodeType:
    """The maker for a combination of attributes; its ``co_consts[0]`` is replaced per use.

    Its stack holds at most the four attributes and the code object (then the function).
    """
    code = _instr("RESUME")
    for flag, index in _PUSHED:
        if flags & flag:
            code += _instr("LOAD_FAST", index)
    code += _instr("LOAD_CONST", 0)
    if sys.version_info >= (3, 13):
        code += _instr("MAKE_FUNCTION")
        for flag, _ in reversed(_PUSHED):
            if flags & flag:
                code += _instr("SET_FUNCTION_ATTRIBUTE", flag)
    else:
        code += _instr("MAKE_FUNCTION", flags)
    code += _instr("RETURN_VALUE")
    return _maker_template.__code__.replace(
        co_code=code,
        co_consts=(None,),
        co_names=(),
        co_stacksize=5,
        co_linetable=b"",
        co_exceptiontable=b"",
        co_name="<callweave.make_function>",
        co_qualname="<callweave.make_function>",
    )


def make_function(
    code: types.CodeType,
    globals: dict[str, Any],
    name: str | None = None,
    defaults: tuple[Any, ...] | None = None,
    closure: tuple[types.CellType, ...] | None = None,
    *,
    kwdefaults: dict[str, Any] | None = None,
    annotations: dict[str, Any] | None = None,
    type_params: tuple[Any, ...] = (),
) -> types.FunctionType:
    """A function running ``code``, built by ``MAKE_FUNCTION`` like a ``def`` statement.

    Arguments as ``types.FunctionType(code, globals, name, defaults, closure)`` (builtins
    come from ``globals`` the same way; ``__qualname__`` is ``code.co_qualname``), plus the
    attributes a ``def`` sets while making the function. The objects passed are stored as
    they are (no copies), as the corresponding setters would.

    Args:
        code: The function's code object.
        globals: Its globals (builtins are ``globals["__builtins__"]``, as for any function).
        name: Its ``__name__``; ``code.co_name`` when omitted.
        defaults: Its positional defaults, or None.
        closure: One cell per name of ``code.co_freevars`` (None when there are none).
        kwdefaults: Its keyword-only defaults, or None.
        annotations: Its annotations dict, or None (then an empty dict on first access).
        type_params: Its ``__type_params__`` (3.12+ only, unless empty).

    Returns:
        The new function; its callers specialise their calls to it on 3.11 to 3.13.

    Raises:
        TypeError: An argument has the wrong type, or the closure does not match
            ``code.co_freevars`` (the checks ``types.FunctionType`` and the setters make:
            ``MAKE_FUNCTION`` trusts the compiler and checks nothing).
    """
    if not isinstance(code, types.CodeType):
        raise TypeError(f"code must be a code object, not {type(code).__name__}")
    if not isinstance(globals, dict):
        raise TypeError(f"globals must be a dict, not {type(globals).__name__}")
    if name is not None and not isinstance(name, str):
        raise TypeError(f"name must be a string, not {type(name).__name__}")
    if defaults is not None and type(defaults) is not tuple:
        raise TypeError(f"defaults must be a tuple or None, not {type(defaults).__name__}")
    if kwdefaults is not None and type(kwdefaults) is not dict:
        raise TypeError(f"kwdefaults must be a dict or None, not {type(kwdefaults).__name__}")
    if annotations is not None and not isinstance(annotations, dict):
        raise TypeError(f"annotations must be a dict or None, not {type(annotations).__name__}")
    cells = () if closure is None else closure
    if type(cells) is not tuple or not all(isinstance(c, types.CellType) for c in cells):
        raise TypeError("closure must be None or a tuple of cells")
    if len(cells) != len(code.co_freevars):
        raise TypeError(
            f"{code.co_name} requires closure of length {len(code.co_freevars)}, not {len(cells)}"
        )
    if type_params and sys.version_info < (3, 12):
        raise TypeError("type parameters need Python 3.12+")
    flags = (
        (_DEFAULTS if defaults is not None else 0)
        | (_KWDEFAULTS if kwdefaults is not None else 0)
        | (_ANNOTATIONS if annotations is not None else 0)
        | (_CLOSURE if cells else 0)
    )
    maker = types.FunctionType(_maker_code(flags).replace(co_consts=(code,)), globals)
    function: types.FunctionType = maker(defaults, kwdefaults, annotations, cells)
    if name is not None and name != function.__name__:
        function.__name__ = name
    if type_params:
        setattr(function, "__type_params__", type_params)  # noqa: B010  (3.12+)
    return function
