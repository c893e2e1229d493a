"""The constant-slot patcher: slot loads become constants, everything else stays as compiled."""

import asyncio
import dis
import importlib.util
import inspect
import sys
import textwrap
import traceback
import types
from collections import OrderedDict
from decimal import Decimal

import pytest

from callweave._slots import SlotError, patch_code, relayout

K1, K2, K3 = "__callweave_k_1__", "__callweave_k_2__", "__callweave_k_3__"


def code_objects(code):
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from code_objects(const)


def compile_module(source, values, filename="<slots>"):
    code = compile(textwrap.dedent(source), filename, "exec", dont_inherit=True)
    patched = patch_code(code, values)
    namespace = {"__name__": "slots_test"}
    exec(patched, namespace)
    return code, patched, namespace


def slot_loads(code, names):
    """Instructions of ``code`` and nested code that still read one of ``names``."""
    return [
        (c.co_qualname, i.opname)
        for c in code_objects(code)
        for i in dis.get_instructions(c)
        if i.argval in names and i.opname != "LOAD_CONST"
    ]


# A mix of what the stdlib's compiler output contains: try/except/finally, with, async,
# generators, match, comprehensions, class bodies, long jumps (EXTENDED_ARG).
RELAYOUT_MODULES = [
    "asyncio.base_events",
    "inspect",
    "dataclasses",
    "argparse",
    "json.decoder",
    "typing",
    "contextlib",
    "traceback",
]


@pytest.mark.parametrize("module", RELAYOUT_MODULES)
def test_unpatched_code_comes_back_byte_identical(module):
    spec = importlib.util.find_spec(module)
    source = spec.loader.get_source(module)
    code = compile(source, spec.origin, "exec", dont_inherit=True)
    for c in code_objects(code):
        again = relayout(c)
        assert again.co_code == c.co_code, c.co_qualname
        assert again.co_linetable == c.co_linetable, c.co_qualname
        assert again.co_exceptiontable == c.co_exceptiontable, c.co_qualname


def test_long_jumps_and_extended_args_come_back_byte_identical():
    body = "\n".join(
        f"        x{i} = x{i - 1} + {i}" if i else "        x0 = 0" for i in range(400)
    )
    source = f"def f(n):\n    while n:\n{body}\n        n -= 1\n    return n\n"
    code = compile(source, "<long>", "exec")
    for c in code_objects(code):
        again = relayout(c)
        assert (again.co_code, again.co_linetable) == (c.co_code, c.co_linetable)
    assert any(
        i.opname == "EXTENDED_ARG" for c in code_objects(code) for i in dis.get_instructions(c)
    )


def test_no_values_or_no_slot_returns_the_same_code():
    code = compile("def f():\n    return 1\n", "<x>", "exec")
    assert patch_code(code, {}) is code
    assert patch_code(code, {K1: 2}) is code


def test_slot_loads_become_constants_in_nested_code():
    value = Decimal("0.1")
    _, patched, ns = compile_module(
        f"""
        def f():
            a = {K1}
            g = lambda: {K1}
            comp = [{K1} for _ in range(2)]
            def inner():
                return {K1}
            class C:
                attr = {K1}
            return a, g(), comp, inner(), C.attr
        """,
        {K1: value},
    )
    a, from_lambda, comp, from_inner, attr = ns["f"]()
    assert all(v is value for v in (a, from_lambda, *comp, from_inner, attr))
    assert slot_loads(patched, {K1}) == []
    assert K1 not in ns  # nothing was bound as a global


def test_slot_in_call_position_keeps_the_null_order():
    _, _patched, ns = compile_module(
        f"""
        def f():
            first = {K1}(b"ab")
            first.append(1)
            return first, {K2}({{1: 2, **{{3: 4}}}})
        class Body:
            made = {K1}(b"c")
        """,
        {K1: bytearray, K2: OrderedDict},
    )
    a, b = ns["f"]()
    # A fresh bytearray at each call: the append of the first call is not seen by the second.
    assert a == bytearray(b"ab\x01") and ns["f"]()[0] == bytearray(b"ab\x01")
    assert type(b) is OrderedDict and list(b.items()) == [(1, 2), (3, 4)]
    assert ns["Body"].made == bytearray(b"c")


def test_constant_tuples_and_membership_sets_are_folded():
    _, _patched, ns = compile_module(
        f"""
        def f(x):
            t = ({K1}, ({K2}, 3))
            hit = x in {{{K2}}}
            listed = x in [{K1}, {K2}]
            seen = [y for y in ({K1}, {K2})]
            for y in [{K1}, {K2}]:
                seen.append(y)
            return t, hit, listed, seen
        """,
        {K1: Decimal("0.1"), K2: 3.0},
    )
    t, hit, listed, seen = ns["f"](3.0)
    assert t == (Decimal("0.1"), (3.0, 3)) and hit and listed
    assert seen == [Decimal("0.1"), 3.0] * 2
    consts = ns["f"].__code__.co_consts
    assert (Decimal("0.1"), (3.0, 3)) in consts
    assert frozenset({3.0}) in consts
    ops = [i.opname for i in dis.get_instructions(ns["f"])]
    assert ops.count("BUILD_TUPLE") == 1 and "BUILD_SET" not in ops  # the returned tuple


def test_unhashable_values_in_a_set_display_raise_at_run_time():
    _, _patched, ns = compile_module(
        f"def f(x):\n    return x in {{{K1}}}\n",
        {K1: []},
    )
    with pytest.raises(TypeError, match="unhashable"):
        ns["f"](1)


def test_long_constant_lists_and_sets_extend_from_one_constant():
    _, _patched, ns = compile_module(
        f"def f():\n    return [{K1}, {K2}, {K1}], {{{K1}, {K2}, {K1}}}\n",
        {K1: 1.5, K2: "s"},
    )
    a, b = ns["f"]()
    assert a == [1.5, "s", 1.5] and b == {1.5, "s"}
    a.append(0)
    assert ns["f"]()[0] == [1.5, "s", 1.5]  # a fresh list at each call
    ops = [i.opname for i in dis.get_instructions(ns["f"])]
    assert "LIST_EXTEND" in ops and "SET_UPDATE" in ops


@pytest.mark.skipif(sys.version_info < (3, 12), reason="RETURN_CONST is 3.12+")
def test_returned_slot_is_one_return_const():
    _, _, ns = compile_module(f"def f():\n    return {K1}\n", {K1: Decimal(1)})
    plain = {}
    exec("def f():\n    return 1\n", plain)
    ops = [i.opname for i in dis.get_instructions(ns["f"])]
    assert ops == [i.opname for i in dis.get_instructions(plain["f"])]


def test_positions_flags_and_names_are_kept():
    source = f"""
    def f(a, *args, k=1, **kw):
        try:
            x = {K1} + a
        except TypeError:
            x = (
                {K2},
                {K1},
            )
        finally:
            y = [v for v in args]
        return x, y
    """
    code, patched, ns = compile_module(source, {K1: 10, K2: "two"})
    for before, after in zip(code_objects(code), code_objects(patched), strict=True):
        for attr in ("co_flags", "co_qualname", "co_varnames", "co_names", "co_firstlineno"):
            assert getattr(before, attr) == getattr(after, attr)
        # Every position of the original survives except those of the folded tuple's items
        # (CPython's own constant tuples have none either).
        lost = set(before.co_positions()) - set(after.co_positions())
        assert all(p[0] in (7, 8) for p in lost), lost
        assert {line for *_, line in after.co_lines()} <= {line for *_, line in before.co_lines()}
    assert ns["f"](1) == (11, [])
    assert ns["f"]("s") == (("two", 10), [])


def test_tracebacks_point_at_the_slot_and_handlers_still_catch():
    source = textwrap.dedent(
        f"""
        def f(n):
            total = 0
            while n:
                try:
                    total += {K1} / (n - 5)
                except ZeroDivisionError:
                    return "caught"
                n -= 1
            return total + {K2}["missing"]
        """
    )
    _, _, ns = compile_module(source, {K1: 6, K2: {}}, filename="<tb>")
    assert ns["f"](5) == "caught"
    with pytest.raises(KeyError) as info:
        ns["f"](2)
    frame = traceback.extract_tb(info.value.__traceback__)[-1]
    lineno, line = next((i, t) for i, t in enumerate(source.splitlines(), 1) if "missing" in t)
    expected = (lineno, line.index(K2), line.index('"]') + 2)
    assert (frame.lineno, frame.colno, frame.end_colno) == expected


def test_generators_and_coroutines():
    _, _, ns = compile_module(
        f"""
        def gen():
            yield {K1}
            yield from ({K1}, {K2})
        async def coro():
            return [{K2} async for _ in agen()]
        async def agen():
            yield {K1}
        """,
        {K1: "a", K2: "b"},
    )
    assert list(ns["gen"]()) == ["a", "a", "b"]
    assert asyncio.run(ns["coro"]()) == ["b"]
    assert inspect.isasyncgenfunction(ns["agen"])


@pytest.mark.skipif(sys.version_info < (3, 12), reason="annotation scopes are 3.12+")
def test_annotation_scopes_in_class_bodies():
    source = f"""
    class C:
        type A = {K1}
        def m[T](self, x: {K1}) -> T: ...
    """
    _, patched, ns = compile_module(source, {K1: 42})
    assert ns["C"].A.__value__ == 42
    assert ns["C"].m.__annotations__["x"] == 42
    assert slot_loads(patched, {K1}) == []


def test_assigning_a_slot_is_refused():
    code = compile(f"def f():\n    global {K1}\n    {K1} = 1\n", "<x>", "exec")
    with pytest.raises(SlotError, match="read-only"):
        patch_code(code, {K1: 2})
