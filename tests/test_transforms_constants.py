"""``asconstants``: codetransformer's examples and tests, every binding form rejected with its
position, loads compiled as constants, and composition with the other decorators."""

import asyncio
import builtins
import dis
import inspect
import sys
import textwrap

import pytest

from callweave import flat_profile, rewrite_function, wrap_calls
from callweave.transforms import asconstants

MODULE = sys.modules[__name__]


def loads(func):
    """(opname, argval) of every instruction of ``func`` and of its nested code."""
    out = []
    stack = [func.__code__]
    while stack:
        code = stack.pop()
        out += [(i.opname, i.argval) for i in dis.get_instructions(code)]
        stack += [c for c in code.co_consts if hasattr(c, "co_code")]
    return out


def name_loads(func, name):
    """Loads of ``name`` by name left in ``func``'s code."""
    return [op for op, arg in loads(func) if arg == name and op.startswith("LOAD")]


def const_loads(func, value):
    """Instructions loading ``value`` as a constant."""
    return [op for op, arg in loads(func) if arg is value and op in ("LOAD_CONST", "RETURN_CONST")]


# ---- codetransformer's README and tests ------------------------------------------------------


def with_asconstants_source(x):
    return len(x) * 2


def test_readme_freezing_builtins():
    with_asconstants = asconstants("len")(with_asconstants_source)
    MODULE.len = lambda x: 0
    try:
        assert with_asconstants([1, 2, 3]) == 6
        assert with_asconstants_source([1, 2, 3]) == 0
    finally:
        del MODULE.len


def uses_a():
    return a  # noqa: F821 - frozen


def test_readme_custom_constants():
    f = asconstants(a=1)(uses_a)
    assert f() == 1
    MODULE.a = 5
    try:
        assert f() == 1
    finally:
        del MODULE.a
    assert name_loads(uses_a, "a") == ["LOAD_GLOBAL"]
    assert name_loads(f, "a") == [] and const_loads(f, 1)


def tuple_or_list(a):
    if a:
        return tuple
    return list


def test_builtin_names_are_the_builtins_even_when_shadowed():
    f = asconstants("tuple", "list")(tuple_or_list)
    MODULE.tuple = None
    try:
        assert f(True) is builtins.tuple
        assert f(False) is builtins.list
        assert tuple_or_list(True) is None
    finally:
        del MODULE.tuple


def test_closure():
    def f():
        a = 2

        @asconstants(a=1)
        def g():
            return a

        return g

    g = f()
    assert g() == 1
    assert g.__code__.co_freevars == ("a",)


def test_class_bodies_and_nested_scopes_load_constants():
    a = "enclosing"

    @asconstants(a="frozen", b="b")
    def f():
        class C:
            x = a
            y = b  # noqa: F821 - frozen

        inner = lambda: (a, b)  # noqa: E731, F821
        return C.x, C.y, inner(), [a for _ in range(1)]

    assert f() == ("frozen", "b", ("frozen", "b"), ["frozen"])
    assert a == "enclosing"


def test_no_arguments_freezes_every_builtin():
    def f(x):
        return len(x), isinstance(x, list), __name__

    g = asconstants()(f)
    MODULE.len = MODULE.isinstance = lambda *a: "shadowed"
    try:
        assert g([1]) == (1, True, __name__)
    finally:
        del MODULE.len, MODULE.isinstance
    assert name_loads(g, "len") == [] and const_loads(g, builtins.len)
    assert name_loads(g, "__name__") == ["LOAD_GLOBAL"]


# ---- errors ----------------------------------------------------------------------------------

BINDINGS = {
    "assign": "a = 1",
    "augmented": "a += 1",
    "annotated": "a: int = 1",
    "annotation only": "a: int",
    "unpacking": "x, *a = [1, 2]",
    "for": "for a in []: pass",
    "with": "with open(__file__) as a: pass",
    "except as": "try: pass\n    except Exception as a: pass",
    "import": "import a",
    "import dotted": "import a.b",
    "import as": "import os as a",
    "from import": "from os import a",
    "from import as": "from os import path as a",
    "walrus": "(a := 1)",
    "comprehension": "[0 for a in []]",
    "match capture": "match 1:\n        case [*a]: pass",
    "match as": "match 1:\n        case 1 as a: pass",
    "match mapping rest": "match {}:\n        case {**a}: pass",
    "nested def": "def a(): pass",
    "nested class": "class a: pass",
    "nested function body": "def g():\n        a = 1",
    "lambda default scope": "lambda: [a for a in []]",
}


def write_module(tmp_path, name, body):
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    sys.path.insert(0, str(tmp_path))
    try:
        __import__(name)
        return sys.modules.pop(name), path
    finally:
        sys.path.remove(str(tmp_path))


@pytest.mark.parametrize("statement", list(BINDINGS.values()), ids=list(BINDINGS))
def test_binding_a_constant_name_is_a_syntax_error_at_that_line(tmp_path, statement):
    mod, path = write_module(
        tmp_path,
        "binding_" + str(abs(hash(statement))),
        f"def f():\n    x = 0\n    {statement}\n    return x\n",
    )
    with pytest.raises(SyntaxError) as err:
        asconstants(a=1)(mod.f)
    assert err.value.msg == "can't assign to constant name 'a'"
    assert err.value.filename == str(path)
    # The binding is on the statement's last line.
    assert err.value.lineno == 3 + statement.count("\n")
    assert str(err.value).endswith(f"({path.name}, line {err.value.lineno})")


def test_deleting_a_constant_name_is_a_syntax_error(tmp_path):
    mod, path = write_module(tmp_path, "deleting", "def f():\n    del a\n")
    with pytest.raises(SyntaxError) as err:
        asconstants(a=1)(mod.f)
    assert err.value.msg == "can't delete constant name 'a'"
    assert (err.value.filename, err.value.lineno, err.value.offset) == (str(path), 2, 9)
    assert str(err.value) == f"can't delete constant name 'a' ({path.name}, line 2)"
    assert err.value.text == "    del a\n"


def test_the_offset_counts_characters_as_cpython_does(tmp_path):
    mod, _ = write_module(tmp_path, "offsets", "def f():\n    é = 'ü'; a = 1\n")
    with pytest.raises(SyntaxError) as err:
        asconstants(a=1)(mod.f)
    assert (err.value.lineno, err.value.offset) == (2, 14)
    assert err.value.text[err.value.offset - 1] == "a"


def test_global_and_nonlocal_declarations_alone_are_accepted(tmp_path):
    mod, _ = write_module(tmp_path, "declaring", "def f():\n    global a\n    return a\n")
    assert asconstants(a=1)(mod.f)() == 1


def test_argument_names_overlap():
    def f(a):
        pass

    with pytest.raises(SyntaxError) as err:
        asconstants(a=1)(f)
    assert str(err.value) == "argument names overlap with constant names: {'a'}"

    def g(x, *a, b=1, **c):
        pass

    with pytest.raises(SyntaxError) as err:
        asconstants(a=1, b=2, c=3)(g)
    assert str(err.value) == "argument names overlap with constant names: {'a', 'b', 'c'}"


def test_nested_argument_names_overlap_with_the_position(tmp_path):
    mod, path = write_module(tmp_path, "nested_args", "def f():\n    return [lambda a: a]\n")
    with pytest.raises(SyntaxError) as err:
        asconstants(a=1)(mod.f)
    assert err.value.msg == "argument names overlap with constant names: {'a'}"
    assert (err.value.filename, err.value.lineno) == (str(path), 2)


def test_bad_arguments_of_the_factory():
    with pytest.raises(ValueError, match="not the name of a builtin"):
        asconstants("no_such_builtin")
    with pytest.raises(TypeError, match="both"):
        asconstants("len", len=1)
    with pytest.raises(ValueError, match="not a name"):
        asconstants(**{"a b": 1})


# ---- kinds of functions ---------------------------------------------------------------------


def keeps(x, y=2, *, z=3) -> int:
    """Docstring kept."""
    return len(x) + y + z


def test_keeps_metadata_positions_and_traceback():
    f = asconstants("len")(keeps)
    assert f.__doc__ == keeps.__doc__ and f.__qualname__ == keeps.__qualname__
    assert inspect.signature(f) == inspect.signature(keeps)
    assert f.__defaults__ == (2,) and f.__kwdefaults__ == {"z": 3}
    assert inspect.getsource(f) == inspect.getsource(keeps)
    assert f([1]) == 6
    original = {p for p in keeps.__code__.co_positions() if p[0] is not None}
    assert original <= set(f.__code__.co_positions())
    with pytest.raises(TypeError) as err:
        f(1)
    with pytest.raises(TypeError) as plain:
        keeps(1)
    last = err.traceback[-1]
    assert (last.lineno, last.frame.code.name) == (plain.traceback[-1].lineno, "keeps")
    assert err.value.args == plain.value.args


def test_kinds_of_functions():
    class C:
        @asconstants(k="method")
        def method(self):
            return k  # noqa: F821

        @staticmethod
        @asconstants(k="static")
        def static():
            return k  # noqa: F821

        @asconstants(k="class")
        @classmethod
        def cls(cls):
            return k  # noqa: F821

    @asconstants(k="async")
    async def coroutine():
        await asyncio.sleep(0)
        return k  # noqa: F821

    @asconstants(k="gen")
    def generator():
        yield k  # noqa: F821

    @asconstants(k="agen")
    async def async_generator():
        yield k  # noqa: F821

    async def collect():
        return [v async for v in async_generator()]

    assert (C().method(), C.static(), C.cls()) == ("method", "static", "class")
    assert asyncio.run(coroutine()) == "async"
    assert list(generator()) == ["gen"]
    assert asyncio.run(collect()) == ["agen"]


# ---- composition -----------------------------------------------------------------------------


def composed(x):
    return len(x)


@pytest.mark.parametrize("order", ["constants inside", "constants outside"])
def test_composes_with_wrap_calls(order):
    seen = []

    def wrapper(call, /, *args, **kwargs):
        seen.append(call)
        return call(*args, **kwargs)

    frozen = asconstants("len")
    wrap = wrap_calls(wrapper=wrapper)
    f = wrap(frozen(composed)) if order == "constants inside" else frozen(wrap(composed))
    MODULE.len = lambda x: "shadowed"
    try:
        assert f([1, 2]) == 2
    finally:
        del MODULE.len
    assert seen == [builtins.len]


def test_composes_with_flat_profile_and_rewrite_function():
    import ast

    totals = []
    f = flat_profile(time_limit=0, above_callback=lambda *a: totals.append(a))(
        asconstants("len")(composed)
    )
    assert f("abc") == 3 and len(totals) == 1

    class Double(ast.NodeTransformer):
        def visit_Return(self, node):
            node.value = ast.BinOp(node.value, ast.Mult(), ast.Constant(2))
            return ast.fix_missing_locations(ast.copy_location(node, node))

    g = rewrite_function(asconstants("len")(composed), [Double()])
    assert g("abc") == 6
    assert name_loads(g, "len") == [] and const_loads(g, builtins.len)


def test_every_builtin_frozen_keeps_zero_argument_super_and_locals():
    class Base:
        def hello(self):
            return "base"

    class Child(Base):
        def hello(self):
            x = 1
            return super().hello(), sorted(locals()), x

    plain = Child().hello()
    Child.hello = asconstants()(Child.__dict__["hello"])
    assert Child().hello() == plain
    assert name_loads(Child.hello, "super") == [] and const_loads(Child.hello, super)
