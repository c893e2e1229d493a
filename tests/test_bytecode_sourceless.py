"""callweave.transforms on functions without source go through callweave.bytecode."""

from __future__ import annotations

import linecache
from collections import OrderedDict
from collections.abc import Iterator
from decimal import Decimal

import pytest

pytest.importorskip("bytecode")

from callweave.bytecode import BytecodeError
from callweave.errors import SourceUnavailableError
from callweave.transforms import (
    asconstants,
    bytearray_literals,
    decimal_literals,
    frozenset_literals,
    haskell_strs,
    overloaded_bytes,
    overloaded_complexes,
    overloaded_dicts,
    overloaded_floats,
    overloaded_ints,
    overloaded_lists,
    overloaded_strs,
    overloaded_tuples,
    precomputed_slices,
)


@pytest.fixture(autouse=True)
def _restore_pseudo_file_sources() -> Iterator[None]:
    """Looking for an eval'd lambda's source may cache this module's text as "<string>".

    (3.13's linecache does so through the module's loader.) Other tests in the same process
    expect "<string>" to have no source, so the cache is put back as it was.
    """
    saved = {k: v for k, v in linecache.cache.items() if k.startswith("<")}
    yield
    for key in [k for k in linecache.cache if k.startswith("<")]:
        del linecache.cache[key]
    linecache.cache.update(saved)


def test_overloaded_dicts_of_an_evald_lambda() -> None:
    f = overloaded_dicts(OrderedDict)(eval("lambda m: ({'a': 1, 'b': 2}, {}, {'k': 0, **m})"))
    first, empty, merged = f({"z": 9})
    assert type(first) is OrderedDict and list(first.items()) == [("a", 1), ("b", 2)]
    assert type(empty) is OrderedDict and not empty
    assert type(merged) is OrderedDict and list(merged) == ["k", "z"]
    g = overloaded_dicts(dict)(eval("lambda: {'a': 1}"))
    assert g() == {"a": 1} and type(g()) is dict


def test_call_unpacking_is_not_a_display() -> None:
    f = overloaded_dicts(list)(eval("lambda f, m: f(**m)"))
    assert f(dict, {"a": 1}) == {"a": 1}
    g = overloaded_lists(tuple)(eval("lambda f, a: (f(*a, *a), [*a])"))
    assert g(lambda *xs: list(xs), [1]) == ([1, 1], (1,))


def test_comprehensions_are_refused_without_source() -> None:
    with pytest.raises(BytecodeError, match="comprehension"):
        overloaded_dicts(OrderedDict)(eval("lambda: {k: 1 for k in 'ab'}"))


def test_sets_and_lists() -> None:
    f = frozenset_literals(eval("lambda x: {1, x}"))
    assert f(2) == frozenset({1, 2}) and type(f(2)) is frozenset
    g = overloaded_lists(tuple)(eval("lambda: [1, 2]"))
    assert g() == (1, 2)


def test_constant_overloaders() -> None:
    f = eval("lambda x: ('ab', b'c', 3, 1.5, 2j, x in ('q', 'r'), True)")
    assert overloaded_strs(str.upper)(f)("Q")[0] == "AB"
    assert overloaded_strs(str.upper)(f)("Q")[5] is True  # inside the constant tuple
    assert overloaded_bytes(bytes.upper)(f)("")[1] == b"C"
    ints = overloaded_ints(lambda i: i * 10)(f)("")
    assert ints[2] == 30 and ints[6] is True  # True is no int literal
    assert overloaded_floats(str)(f)("")[3] == "1.5"
    assert overloaded_complexes(abs)(f)("")[4] == 2.0
    assert haskell_strs(eval("lambda: 'ab'"))() == ("a", "b")
    assert decimal_literals(eval("lambda: 0.1"))() == Decimal("0.1")


def test_fresh_values_per_evaluation() -> None:
    f = bytearray_literals(eval("lambda: b'x'"))
    first, second = f(), f()
    assert first == bytearray(b"x") and first is not second


def test_docstring_is_kept() -> None:
    namespace: dict[str, object] = {}
    exec("def f():\n    'doc'\n    return 'x'", namespace)
    g = overloaded_strs(str.upper)(namespace["f"])
    assert g() == "X" and g.__doc__ == "doc"


def test_asconstants_of_an_evald_lambda() -> None:
    f = asconstants("len", a=1)(eval("lambda x: len(x) + a", {"a": 5}))
    assert f([1, 2]) == 3
    with pytest.raises(SyntaxError, match="can't assign to constant name 'a'"):
        namespace: dict[str, object] = {}
        exec("def g():\n    global a\n    a = 2", namespace)
        asconstants(a=1)(namespace["g"])


def test_precomputed_slices_of_an_evald_lambda() -> None:
    f = precomputed_slices()(eval("lambda s, x: (s[1:3], s[::2], s[1:2:3], s[x:1:2], s[x:2])"))
    assert f("abcdef", 0) == ("bc", "ace", "b", "a", "ab")
    g = precomputed_slices()(eval("lambda s: ('k', s[0:2:1])"))
    assert g("abc") == ("k", "ab")
    assert slice(1, 3) in f.__code__.co_consts


def test_tuples_still_need_source() -> None:
    with pytest.raises(SourceUnavailableError):
        overloaded_tuples(list)(eval("lambda: (1, 2)"))


def test_another_snippets_text_in_linecache_is_no_source() -> None:
    import linecache

    saved = linecache.cache.get("<string>")
    text = "x = 1\n"
    linecache.cache["<string>"] = (len(text), None, [text], "<string>")
    try:
        f = overloaded_dicts(OrderedDict)(eval("lambda: {'a': 1}"))
        g = asconstants(a=2)(eval("lambda: a"))
    finally:
        if saved is None:
            linecache.cache.pop("<string>", None)
        else:
            linecache.cache["<string>"] = saved
    assert type(f()) is OrderedDict and g() == 2
