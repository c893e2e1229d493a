"""Calls to rewritten functions are specialised like calls to ``def`` functions.

On CPython 3.13 a function built by ``types.FunctionType`` (or whose ``__defaults__``,
``__kwdefaults__`` or ``__code__`` was assigned) has no valid function version, so a
``CALL`` calling it never specialises to ``CALL_PY_EXACT_ARGS``/``CALL_PY_GENERAL``.
Every rewritten function is therefore built by ``MAKE_FUNCTION``
(``callweave._make_function.make_function``); these tests check the specialised opcode a
caller ends up with after warming, against the same caller of an equivalent plain function.
"""

from __future__ import annotations

import dis
import sys
import types
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from callweave import flat_profile, wrap_calls
from callweave._make_function import make_function
from callweave.transforms import decimal_literals

# Enough for the adaptive interpreter to specialise (it tries after a handful of calls).
WARM_CALLS = 200
# The unspecialised forms of CALL: a caller stuck on one of these did not specialise.
GENERIC = {"CALL", "CALL_ADAPTIVE", "PRECALL", "PRECALL_ADAPTIVE"}


def call_opcode(func: Callable[..., Any], args: str) -> str:
    """The CALL-family opcode of ``func(<args>)`` in a fresh caller, after warming it.

    Each caller is compiled anew: adaptive state lives on the code object, so a caller
    shared between cases would carry one case's specialisation into the next.
    """
    namespace: dict[str, Any] = {"func": func}
    exec(compile(f"def caller():\n    return func({args})\n", "<caller>", "exec"), namespace)
    caller = namespace["caller"]
    for _ in range(WARM_CALLS):
        caller()
    ops = [
        i.opname for i in dis.get_instructions(caller, adaptive=True) if i.opname.startswith("CALL")
    ]
    assert len(ops) == 1, ops
    return ops[0]


def identity_wrapper(call: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    return call(*args, **kwargs)


def quiet(*_: Any) -> None:
    pass


def plain_exact(a: int) -> int:
    return abs(a)


def plain_defaults(a: int, b: int = 2) -> int:
    return abs(a) + b


def plain_kwdefaults(a: int, *, k: int = 3) -> int:
    return abs(a) + k


@wrap_calls(wrapper=identity_wrapper)
def wrapped_exact(a: int) -> int:
    return abs(a)


@wrap_calls(wrapper=identity_wrapper)
def wrapped_defaults(a: int, b: int = 2) -> int:
    return abs(a) + b


@wrap_calls(wrapper=identity_wrapper)
def wrapped_kwdefaults(a: int, *, k: int = 3) -> int:
    return abs(a) + k


@flat_profile(time_limit=1000.0, below_callback=quiet, above_callback=None)
def profiled_exact(a: int) -> int:
    return abs(a)


@decimal_literals
def decimal_exact(a: int) -> Decimal:
    return 0.1  # type: ignore[return-value]


@decimal_literals
def decimal_defaults(a: int, b: int = 2) -> Decimal:
    return 0.1  # type: ignore[return-value]


def _closure() -> Callable[[int], int]:
    offset = 5

    @wrap_calls(wrapper=identity_wrapper)
    def inner(a: int) -> int:
        return abs(a) + offset

    return inner


CASES = [
    pytest.param(wrapped_exact, plain_exact, "1", id="wrap_calls"),
    pytest.param(wrapped_defaults, plain_defaults, "1", id="wrap_calls-defaults"),
    pytest.param(wrapped_kwdefaults, plain_kwdefaults, "1", id="wrap_calls-kwdefaults"),
    pytest.param(profiled_exact, plain_exact, "1", id="flat_profile"),
    pytest.param(decimal_exact, plain_exact, "1", id="decimal_literals"),
    pytest.param(decimal_defaults, plain_defaults, "1", id="decimal_literals-defaults"),
    pytest.param(_closure(), plain_exact, "1", id="wrap_calls-closure"),
]


@pytest.mark.parametrize(("rewritten", "plain", "args"), CASES)
def test_callers_of_rewritten_functions_specialise_like_callers_of_plain_ones(
    rewritten: Callable[..., Any], plain: Callable[..., Any], args: str
) -> None:
    assert isinstance(rewritten, types.FunctionType)
    assert rewritten.__code__ is not plain.__code__
    expected = call_opcode(plain, args)
    assert call_opcode(rewritten, args) == expected


@pytest.mark.parametrize(
    ("plain", "args"),
    [(plain_exact, "1"), (plain_defaults, "1")]
    + ([(plain_kwdefaults, "1")] if sys.version_info >= (3, 13) else []),
)
def test_the_plain_references_do_specialise(plain: Callable[..., Any], args: str) -> None:
    """Guards the comparison above: the reference callers reach a specialised CALL.

    (3.11 and 3.12 never specialise calls to functions with keyword-only defaults.)
    """
    assert call_opcode(plain, args) not in GENERIC


def test_codetransformer_output_specialises() -> None:
    pytest.importorskip("bytecode")
    from callweave.bytecode import CodeTransformer

    transformed = CodeTransformer()(plain_defaults)
    assert transformed.__code__ is not plain_defaults.__code__
    assert call_opcode(transformed, "1") == call_opcode(plain_defaults, "1")


# --- make_function itself -------------------------------------------------------------------


def _template() -> Callable[..., Any]:
    cell_value = [10]

    def template(a: int, b: int = 2, *args: int, k: int = 3, **kw: int) -> list[int]:
        """The docstring."""
        return [a, b, k, *args, *kw.values(), *cell_value]

    return template


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({}, id="bare"),
        pytest.param({"defaults": (20,)}, id="defaults"),
        pytest.param({"kwdefaults": {"k": 30}}, id="kwdefaults"),
        pytest.param({"annotations": {"a": int}}, id="annotations"),
        pytest.param(
            {"defaults": (20,), "kwdefaults": {"k": 30}, "annotations": {"return": list}},
            id="all",
        ),
    ],
)
def test_make_function_stores_what_it_is_given(kwargs: dict[str, Any]) -> None:
    template = _template()
    func = make_function(
        template.__code__, template.__globals__, None, closure=template.__closure__, **kwargs
    )
    assert func.__code__ is template.__code__
    assert func.__globals__ is template.__globals__
    assert func.__builtins__ is template.__builtins__  # type: ignore[attr-defined]
    assert func.__closure__ is template.__closure__
    assert func.__name__ == "template"
    assert func.__qualname__ == template.__qualname__
    assert func.__module__ == __name__
    assert func.__defaults__ is kwargs.get("defaults")
    assert func.__kwdefaults__ is kwargs.get("kwdefaults")
    if "annotations" in kwargs:
        assert func.__annotations__ is kwargs["annotations"]
    else:
        assert func.__annotations__ == {}
    if "defaults" in kwargs and "kwdefaults" in kwargs:
        assert func(1, 4, 5, x=6) == [1, 4, 30, 5, 6, 10]
        assert func(1) == [1, 20, 30, 10]
    template.__closure__[0].cell_contents.append(11)  # type: ignore[index]
    if "defaults" in kwargs and "kwdefaults" in kwargs:
        assert func(1) == [1, 20, 30, 10, 11]


def test_make_function_name_and_type_params() -> None:
    func = make_function(plain_exact.__code__, plain_exact.__globals__, "renamed")
    assert func.__name__ == "renamed"
    assert func.__qualname__ == "plain_exact"
    assert func(-2) == 2
    if sys.version_info >= (3, 12):
        namespace: dict[str, Any] = {}
        exec("def generic[T](a: T) -> T:\n    return a\n", namespace)
        generic = namespace["generic"]
        copy = make_function(
            generic.__code__,
            namespace,
            annotations=generic.__annotations__,
            type_params=generic.__type_params__,
        )
        assert copy.__type_params__ == generic.__type_params__  # type: ignore[attr-defined]
        assert call_opcode(copy, "1") == call_opcode(generic, "1") == "CALL_PY_EXACT_ARGS"
    else:
        with pytest.raises(TypeError, match=r"3\.12"):
            make_function(plain_exact.__code__, {}, type_params=(object(),))


def test_make_function_builtins_come_from_globals() -> None:
    namespace: dict[str, Any] = {"__builtins__": {"len": lambda _: 42}}
    exec("def f(x):\n    return len(x)\n", namespace)
    func = make_function(namespace["f"].__code__, namespace)
    assert func([1]) == 42


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"closure": None}, "closure of length 1, not 0"),
        ({"closure": ()}, "closure of length 1, not 0"),
        ({"closure": (1,)}, "tuple of cells"),
        ({"closure": [types.CellType(1)]}, "tuple of cells"),
        ({"defaults": [1]}, "defaults must be a tuple"),
        ({"kwdefaults": [("k", 1)]}, "kwdefaults must be a dict"),
        ({"annotations": ()}, "annotations must be a dict"),
        ({"name": 3}, "name must be a string"),
    ],
)
def test_make_function_rejects_what_make_function_would_not_check(
    kwargs: dict[str, Any], message: str
) -> None:
    template = _template()
    kwargs = {"closure": template.__closure__, **kwargs}
    with pytest.raises(TypeError, match=message):
        make_function(template.__code__, template.__globals__, **kwargs)


def test_make_function_rejects_non_code_and_non_dict_globals() -> None:
    with pytest.raises(TypeError, match="code must be a code object"):
        make_function(plain_exact, {})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="globals must be a dict"):
        make_function(plain_exact.__code__, types.MappingProxyType({}))  # type: ignore[arg-type]
