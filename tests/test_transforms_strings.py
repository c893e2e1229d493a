"""``interpolated_strings``: codetransformer's tests, what is left alone, and positions."""

import asyncio
import inspect
import sys
import textwrap
import traceback

import pytest

from callweave import flat_profile, wrap_calls
from callweave.transforms import interpolated_strings

MODULE = sys.modules[__name__]

# ---- codetransformer's tests -----------------------------------------------------------------


def test_interpolated_bytes():
    @interpolated_strings(transform_bytes=True)
    def enabled(a, b, c):
        return b"{a} {b!r} {c}"

    @interpolated_strings()
    def default(a, b, c):
        return b"{a} {b!r} {c}"

    @interpolated_strings(transform_bytes=False)
    def disabled(a, b, c):
        return b"{a} {b!r} {c}"

    assert enabled(1, "2", 3) == "{a} {b!r} {c}".format(a=1, b="2", c=3) == "1 '2' 3"
    assert default(1, 2, 3) == "1 2 3"
    assert disabled(1, 2, 3) == b"{a} {b!r} {c}"


def test_interpolated_str():
    @interpolated_strings(transform_str=True)
    def enabled(a, b, c):
        return "{a} {b!r} {c}"

    @interpolated_strings()
    def default(a, b, c):
        return "{a} {b!r} {c}"

    assert enabled(1, 2, 3) == "1 2 3"
    assert default(1, 2, 3) == "{a} {b!r} {c}"


def test_no_cross_pollination():
    @interpolated_strings(transform_bytes=True)
    def ignore_str(a):
        u = "{a}"
        b = b"{a}"
        return u, b

    @interpolated_strings(transform_bytes=False, transform_str=True)
    def ignore_bytes(a):
        u = "{a}"
        b = b"{a}"
        return u, b

    assert ignore_str(1) == ("{a}", "1")
    assert ignore_bytes(1) == ("1", b"{a}")


def test_strings_in_nested_constants():
    @interpolated_strings(transform_str=True)
    def foo(a, b):
        return ("{a}", (("{b}",), "{a} {b}"), (1, 2))

    @interpolated_strings(transform_str=True)
    def bar(a):
        return "1" in {"{a}"}

    assert foo(1, 2) == ("1", (("2",), "1 2"), (1, 2))
    assert bar(1) and not bar(2)


def test_readme_example():
    @interpolated_strings()
    def foo(a, b):
        c = a + b  # noqa: F841 - read through locals()
        return b"{a} + {b} = {c}"

    assert foo(1, 2) == "1 + 2 = 3"


# ---- details ---------------------------------------------------------------------------------


def test_bytes_become_str_with_escapes_and_concatenation():
    @interpolated_strings()
    def f(a):
        plain = b"no fields"
        escaped = b"{{a}} {a}"
        joined = b"{a}-\x41"
        return plain, escaped, joined

    assert f(1) == ("no fields", "{a} 1", "1-A")


def test_locals_is_the_builtin_and_reads_the_evaluating_scope():
    @interpolated_strings()
    def f(a):
        class C:
            attr = b"{a}-class"

        inner = lambda b: b"{b}"  # noqa: E731
        return C.attr, inner(2), [b"{x}" for x in (3,)]

    MODULE.locals = lambda: {"a": "shadowed"}
    try:
        # The class body sees its own namespace (no `a` there): KeyError, as plain
        # `"...".format(**locals())` would.
        with pytest.raises(KeyError):
            f(1)
    finally:
        del MODULE.locals

    @interpolated_strings()
    def g(a):
        inner = lambda b: b"{b}"  # noqa: E731
        return inner(2), [b"{x}" for x in (3,)], b"{a}"

    assert g(1) == ("2", ["3"], "1")


def test_docstrings_fstrings_and_literal_statements_are_left_alone():
    @interpolated_strings(transform_str=True)
    def f(a):
        """Doc {a}."""
        "{missing} is never evaluated"
        b"{missing} neither"  # noqa: B018
        return f"{a}{{a}}", f"{{a}}{a}"

    assert f.__doc__ == "Doc {a}."
    assert f(1) == ("1{a}", "{a}1")


def test_match_patterns_are_left_alone():
    @interpolated_strings(transform_str=True)
    def f(value):
        match value:
            case "{a}":
                return "literal"
            case b"{a}":
                return "bytes literal"
            case _:
                return "other"

    assert f("{a}") == "literal"
    assert f(b"{a}") == "bytes literal"
    assert f("x") == "other"


def test_invalid_utf8_bytes_fail_when_decorating(tmp_path):
    path = tmp_path / "undecodable.py"
    path.write_text('def f():\n    return b"\\xff{a}"\n')
    sys.path.insert(0, str(tmp_path))
    try:
        import undecodable
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("undecodable", None)
    with pytest.raises(UnicodeDecodeError):
        interpolated_strings()(undecodable.f)


def missing_name(a):
    return b"{a} {missing}"


def test_missing_names_raise_key_error_at_the_literal():
    f = interpolated_strings()(missing_name)
    with pytest.raises(KeyError) as err:
        f(1)
    assert err.value.args == ("missing",)
    entry = traceback.extract_tb(err.value.__traceback__)[-1]
    line = inspect.getsource(missing_name).splitlines()[1]
    assert entry.lineno == missing_name.__code__.co_firstlineno + 1
    assert (entry.colno, entry.end_colno) == (line.index("b"), len(line))


def keeps(a, b=2, *, c=3):
    """Docstring kept."""
    return b"{a}{b}{c}"


def test_keeps_metadata_and_positions():
    f = interpolated_strings()(keeps)
    assert f.__doc__ == keeps.__doc__ and f.__qualname__ == keeps.__qualname__
    assert inspect.signature(f) == inspect.signature(keeps)
    assert f.__defaults__ == (2,) and f.__kwdefaults__ == {"c": 3}
    assert inspect.getsource(f) == inspect.getsource(keeps)
    assert f(1) == "123"
    original = {p for p in keeps.__code__.co_positions() if p[0] is not None}
    assert original <= set(f.__code__.co_positions())


def test_kinds_of_functions():
    class C:
        @interpolated_strings()
        def method(self, a):
            return b"m{a}"

        @staticmethod
        @interpolated_strings()
        def static(a):
            return b"s{a}"

        @interpolated_strings()
        @classmethod
        def cls(cls, a):
            return b"c{a}"

    def outer(a):
        @interpolated_strings()
        def closure():
            return b"{a}", a

        return closure

    @interpolated_strings()
    async def coroutine(a):
        await asyncio.sleep(0)
        return b"a{a}"

    @interpolated_strings()
    def generator(a):
        yield b"g{a}"

    @interpolated_strings()
    async def async_generator(a):
        yield b"ag{a}"

    async def collect():
        return [v async for v in async_generator(1)]

    assert (C().method(1), C.static(1), C.cls(1)) == ("m1", "s1", "c1")
    assert outer(5)() == ("5", 5)
    assert asyncio.run(coroutine(1)) == "a1"
    assert list(generator(1)) == ["g1"]
    assert asyncio.run(collect()) == ["ag1"]


def composed(a):
    return str(b"{a}")


def test_composes_with_wrap_calls_and_flat_profile():
    seen = []

    def wrapper(call, /, *args, **kwargs):
        seen.append(call)
        return call(*args, **kwargs)

    f = wrap_calls(wrapper=wrapper)(interpolated_strings()(composed))
    g = interpolated_strings()(wrap_calls(wrapper=wrapper)(composed))
    assert f(1) == g(1) == "1"
    assert seen == [str, str]
    totals = []
    h = flat_profile(time_limit=0, above_callback=lambda *a: totals.append(a))(
        interpolated_strings()(composed)
    )
    assert h(2) == "2" and len(totals) == 1


def test_source_text_is_edited_in_place():
    f = interpolated_strings()(composed)
    new = f.__callweave__.new_source
    assert new.startswith("def composed(a):\n    return str(")
    assert ".format(**__callweave_locals_" in new
    assert textwrap.dedent(inspect.getsource(f)) == inspect.getsource(composed)
