"""callweave.transforms.literals: codetransformer's literal overloading, on source."""

import ast
import asyncio
import dis
import inspect
import traceback
from decimal import Decimal
from fractions import Fraction

import pytest

from callweave import flat_profile, rewrite_function, wrap_calls
from callweave.transforms import (
    bytearray_literals,
    decimal_literals,
    haskell_strs,
    overloaded_bytes,
    overloaded_complexes,
    overloaded_floats,
    overloaded_ints,
    overloaded_strs,
)


def global_loads(func):
    """Names ``func``'s code (and nested code) loads as globals."""
    out = set()
    stack = [func.__code__]
    while stack:
        code = stack.pop()
        for ins in dis.get_instructions(code):
            if ins.opname in ("LOAD_GLOBAL", "LOAD_NAME"):
                out.add(ins.argval)
        stack.extend(c for c in code.co_consts if isinstance(c, type(code)))
    return out


def test_readme_decimal_literals():
    @decimal_literals
    def f():
        return 1.5

    assert f() == Decimal("1.5") and type(f()) is Decimal


def test_decimals_are_built_from_the_source_text():
    @decimal_literals
    def f():
        return 0.1 + 0.2, 1_000.25, 1e-3, 0.1

    total, sep, exp, tenth = f()
    assert total == Decimal("0.3")
    assert sep == Decimal("1000.25") and exp == Decimal("0.001")
    assert str(tenth) == "0.1"  # not the binary float's expansion


def test_values_are_constants_computed_once():
    calls = []

    def xform(value):
        calls.append(value)
        return Fraction(value)

    @overloaded_ints(xform)
    def f():
        return 3

    assert calls == [3]
    assert f() == Fraction(3) and f() is f()
    assert calls == [3]
    assert Fraction(3) in f.__code__.co_consts
    assert not any(name.startswith("__callweave_k") for name in global_loads(f))


def test_literals_inside_constant_tuples_and_frozensets():
    @overloaded_floats(Decimal)
    def f(x):
        return x in {3.0}, (2, 2.0, 3.5), [2, 2.0]

    inside, tup, lst = f(Decimal(3))
    assert inside and not f(Decimal(4))[0]
    assert tup == (2, Decimal(2), Decimal("3.5")) and type(tup[1]) is Decimal
    assert lst == [2, Decimal(2)]
    frozen = [c for c in f.__code__.co_consts if isinstance(c, frozenset)]
    assert frozen and all(type(v) is Decimal for v in frozen[0])
    assert (2, Decimal(2), Decimal("3.5")) in f.__code__.co_consts


def test_codetransformer_bytes_cases():
    @overloaded_bytes(list)
    def bytes_to_list():
        return ["unicode", b"bytes", 1, 2, 3]

    assert bytes_to_list() == ["unicode", list(b"bytes"), 1, 2, 3]

    @overloaded_bytes(list)
    def bytes_to_list_tuple():
        return "unicode", b"bytes", 1, 2, 3

    assert bytes_to_list_tuple() == ("unicode", list(b"bytes"), 1, 2, 3)

    @overloaded_bytes(int)
    def bytes_in_set(x):
        return x in {b"3"}

    assert not bytes_in_set(b"3")
    assert bytes_in_set(3)


def test_codetransformer_str_cases():
    @haskell_strs
    def f():
        return "abc"

    @overloaded_strs(tuple)
    def cs_in_tuple():
        return "abc", "def"

    assert f() == ("a", "b", "c")
    assert cs_in_tuple() == (("a", "b", "c"), ("d", "e", "f"))

    @overloaded_strs(lambda s: "ayy lmao ")
    def prepend_foo(s):
        return "foo" + s

    assert prepend_foo("bar") == "ayy lmao bar"


def test_docstrings_and_fstring_fragments_are_not_literals():
    @overloaded_strs(str.upper)
    def f(x):
        """docstring"""

        def inner():
            "inner doc"

        class C:
            "class doc"

        return f"fragment {x} {'field'}", "implicit concatenation", inner.__doc__, C.__doc__

    assert f.__doc__ == "docstring"
    assert f(1) == ("fragment 1 FIELD", "IMPLICIT CONCATENATION", "inner doc", "class doc")


def test_match_patterns_stay_patterns():
    @overloaded_strs(str.upper)
    def f(x):
        match x:
            case "a":
                return "matched"
            case _:
                return "other"

    assert f("a") == "MATCHED" and f("A") == "OTHER"


def test_negative_numbers_are_the_negation_of_the_literal():
    @overloaded_ints(lambda v: v * 10)
    def f():
        return -1, 2 - 1, True

    assert f() == (-10, 10, True)


def test_complexes_and_ints():
    @overloaded_complexes(lambda c: c.imag)
    def f():
        return 2j, 1 + 3j

    assert f() == (2.0, 4.0)

    @overloaded_ints(str)
    def g():
        return 1, 0x10, 1_000, 1.5

    assert g() == ("1", "16", "1000", 1.5)


def test_bytearray_literals_are_fresh_at_each_evaluation():
    @bytearray_literals
    def f():
        buf = b"ab"
        buf.append(ord("c"))
        return buf

    assert f() == bytearray(b"abc") == f()
    assert isinstance(f(), bytearray)
    assert bytearray in f.__code__.co_consts
    assert "bytearray" not in global_loads(f)


def test_scopes_functions_methods_closures_generators_async():
    scale = 2

    class C:
        @classmethod
        @haskell_strs
        def cm(cls):
            return "ab"

        @haskell_strs
        @staticmethod
        def sm():
            return "cd"

        @haskell_strs
        def method(self):
            return "ef", [s for s in ["gh"]], (lambda: "ij")()

    @overloaded_ints(lambda v: v * scale)
    def closure():
        return 1 + scale

    @haskell_strs
    def gen():
        yield "xy"

    @haskell_strs
    async def coro():
        return "zz"

    @haskell_strs
    async def agen():
        yield "ww"

    async def drain():
        return [v async for v in agen()]

    assert C.cm() == ("a", "b") and C.sm() == ("c", "d")
    assert C().method() == (("e", "f"), [("g", "h")], ("i", "j"))
    assert closure() == 4 and closure.__closure__
    assert list(gen()) == [("x", "y")]
    assert asyncio.run(coro()) == ("z", "z")
    assert asyncio.run(drain()) == [("w", "w")]
    assert inspect.isasyncgenfunction(agen) and inspect.isgeneratorfunction(gen)


def test_metadata_and_positions_are_kept():
    def original(a, b=1.5, *, c=2.5):
        """Docs."""
        x = 0.25
        return a / x + b + c

    f = decimal_literals(original)
    assert f.__doc__ == "Docs." and f.__qualname__ == original.__qualname__
    assert inspect.signature(f) == inspect.signature(original)
    assert f.__defaults__ == (1.5,) and f.__kwdefaults__ == {"c": 2.5}  # run in the caller
    assert inspect.getsource(f) == inspect.getsource(original)
    assert f.__code__.co_firstlineno == original.__code__.co_firstlineno
    assert f(Decimal(1), Decimal(1), c=Decimal(2)) == Decimal(7)
    with pytest.raises(TypeError) as info:
        f("s")
    frame = traceback.extract_tb(info.value.__traceback__)[-1]
    lines, first = inspect.getsourcelines(original)
    line = next(i for i, t in enumerate(lines, first) if "return" in t)
    text = lines[line - first]
    assert (frame.lineno, frame.colno, frame.end_colno) == (
        line,
        text.index("a / x"),
        text.index("a / x") + len("a / x"),
    )


def test_composes_with_wrap_calls_flat_profile_and_rewrite_function():
    seen = []

    def wrapper(call, *args, **kwargs):
        seen.append(call)
        return call(*args, **kwargs)

    @wrap_calls(wrapper=wrapper)
    @haskell_strs
    def wrapped():
        return len("abc"), "de".count(chr(100))

    assert wrapped() == (3, 1)
    assert len in seen

    records = []

    @haskell_strs
    @flat_profile(time_limit=0, above_callback=lambda *a: records.append(a), below_callback=None)
    def profiled():
        return repr("ab")

    assert profiled() == "('a', 'b')"
    assert len(records) == 1

    class Doubler(ast.NodeTransformer):
        def visit_BinOp(self, node):
            return ast.copy_location(ast.BinOp(node.left, ast.Mult(), node.right), node)

    def custom():
        return 0.5 + 0.25

    both = rewrite_function(decimal_literals(custom), [Doubler()])
    assert both() == Decimal("0.125") and type(both()) is Decimal


def test_options_are_checked():
    with pytest.raises(TypeError):
        overloaded_strs("not callable")


def test_the_readme_example_runs(tmp_path, monkeypatch):
    import importlib
    import re
    from pathlib import Path

    readme = Path(__file__).resolve().parent.parent / "README.md"
    blocks = re.findall(r"```python\n(.*?)```", readme.read_text(encoding="utf-8"), re.S)
    (block,) = [b for b in blocks if "@decimal_literals" in b]
    (tmp_path / "readme_transforms.py").write_text(block, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("readme_transforms")
    assert module.total() == Decimal("0.3")


def test_transformed_literals_compile_to_the_plain_constants_bytecode():
    """As fast as the plain literal: the same instructions, the value in ``co_consts``."""

    @haskell_strs
    def transformed(x):
        return "abc", x in {"d"}

    def plain(x):
        return ("a", "b", "c"), x in {("d",)}

    def ops(f):
        return [(i.opname, i.argval) for i in dis.get_instructions(f)]

    assert ops(transformed) == ops(plain)
    assert transformed(("d",)) == plain(("d",)) == (("a", "b", "c"), True)
