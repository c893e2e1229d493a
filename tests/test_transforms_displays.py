"""callweave.transforms.displays and .slices: display and slice overloading, on source."""

import dis
import inspect
import itertools
import traceback
from collections import OrderedDict

import pytest

from callweave import wrap_calls
from callweave.transforms import (
    frozenset_literals,
    islice_literals,
    ordereddict_literals,
    overloaded_dicts,
    overloaded_lists,
    overloaded_sets,
    overloaded_slices,
    overloaded_tuples,
    precomputed_slices,
)


def test_readme_ordereddict_literals():
    @ordereddict_literals
    def f():
        return {"a": 1, "b": 2, "c": 3}

    @ordereddict_literals
    def comprehension():
        return {k: v for k, v in zip("abc", (1, 2, 3), strict=True)}

    expected = OrderedDict([("a", 1), ("b", 2), ("c", 3)])
    assert f() == expected and type(f()) is OrderedDict
    assert comprehension() == expected and type(comprehension()) is OrderedDict


def test_dicts_keep_insertion_and_evaluation_order():
    order = []

    def k(v):
        order.append(v)
        return v

    @ordereddict_literals
    def f(m):
        return {k("b"): k(1), **m, k("a"): k(2), k("b"): k(3)}

    result = f({"z": 0})
    assert list(result.items()) == [("b", 3), ("z", 0), ("a", 2)]
    assert order == ["b", 1, "a", 2, "b", 3]
    assert type(f({})) is OrderedDict


def test_codetransformer_list_cases():
    @overloaded_lists(tuple)
    def frozen_list():
        return [1, 2, 3]

    @overloaded_lists(tuple)
    def frozen_in_tuple():
        return [1, 2, 3], [4, 5, 6]

    @overloaded_lists(tuple)
    def frozen_in_set():
        # lists are not hashable but tuples are.
        return [1, 2, 3] in {[1, 2, 3]}

    @overloaded_lists(tuple)
    def comprehension(xs):
        return [x * 2 for x in xs]

    assert frozen_list() == (1, 2, 3)
    assert frozen_in_tuple() == ((1, 2, 3), (4, 5, 6))
    assert frozen_in_set()
    assert comprehension([1, 2]) == (2, 4)


def test_codetransformer_set_cases():
    @frozenset_literals
    def f():
        return {"a", "b", "c"}

    assert isinstance(f(), frozenset) and f() == frozenset({"a", "b", "c"})

    class invertedset(set):
        def __contains__(self, e):
            return not super().__contains__(e)

    @overloaded_sets(invertedset)
    def containment_with_consts():
        return "d" in {"e"}

    @overloaded_sets(invertedset)
    def comprehension():
        return 1 in {x for x in (1, 2)}

    assert containment_with_consts()
    assert not comprehension()


def test_codetransformer_tuple_cases():
    @overloaded_tuples(list)
    def nonconst():
        a = 1
        b = 2
        c = 3
        return (a, b, c)

    @overloaded_tuples(list)
    def const():
        return (1, 2, 3)

    @overloaded_tuples(list)
    def unparenthesized(d):
        x, y = 4, 5  # the target is not a display, the value is
        return d[x, y], x, y

    class Echo:
        def __getitem__(self, k):
            return k

    assert nonconst() == [1, 2, 3]
    assert const() == [1, 2, 3]
    assert unparenthesized(Echo()) == [[4, 5], 4, 5]


def test_codetransformer_slice_case():
    def concrete_slice(slice_):
        return tuple(range(slice_.start, slice_.stop))[:: slice_.step]

    class C:
        _idx = None

        def __getitem__(self, idx):
            self._idx = idx
            return idx

    c = C()

    @overloaded_slices(concrete_slice)
    def f():
        return c[1:10:2]

    f()
    assert c._idx == (1, 3, 5, 7, 9)


def test_islice_literals():
    @islice_literals
    def f():
        return map(str, (1, 2, 3, 4))[:2]

    assert isinstance(f(), itertools.islice)
    assert tuple(f()) == ("1", "2")
    assert itertools.islice in f.__code__.co_consts

    @islice_literals
    def other_subscripts(d, xs):
        xs[0:1] = [9]  # stores are untouched
        return d["k"], xs

    assert other_subscripts({"k": 1}, [1, 2]) == (1, [9, 2])


def test_islice_composes_with_wrap_calls():
    seen = []

    def wrapper(call, *args, **kwargs):
        seen.append(call)
        return call(*args, **kwargs)

    @wrap_calls(wrapper=wrapper)
    @islice_literals
    def f(xs):
        return tuple(map(str, xs)[1:3])

    assert f([1, 2, 3, 4]) == ("2", "3")
    assert map in seen and tuple in seen


def test_precomputed_slices_are_one_constant():
    @precomputed_slices()
    def f(a, i):
        return a[1:5], a[::2], a[-3:], a[:i], a[i:-1]

    assert f(list(range(10)), 4) == (
        [1, 2, 3, 4],
        [0, 2, 4, 6, 8],
        [7, 8, 9],
        [0, 1, 2, 3],
        [4, 5, 6, 7, 8],
    )
    consts = [c for c in f.__code__.co_consts if isinstance(c, slice)]
    assert slice(1, 5) in consts and slice(None, None, 2) in consts and slice(-3, None) in consts
    # Slices with a variable bound are untouched.
    assert len(consts) == 3
    ops = [i.opname for i in dis.get_instructions(f)]
    assert "BUILD_SLICE" not in ops or ops.count("BUILD_SLICE") == 2


def test_displays_in_methods_generators_and_positions():
    class C:
        @staticmethod
        @overloaded_lists(tuple)
        def gen():
            yield [1, 2]

        @overloaded_dicts(OrderedDict)
        @classmethod
        def build(cls, n):
            return {i: [i] for i in range(n)}

    assert list(C.gen()) == [(1, 2)]
    assert C.build(2) == OrderedDict([(0, [0]), (1, [1])])

    def original(x):
        return [x, 1 / x]

    f = overloaded_lists(tuple)(original)
    assert f(2) == (2, 0.5)
    assert inspect.getsource(f) == inspect.getsource(original)
    with pytest.raises(ZeroDivisionError) as info:
        f(0)
    frame = traceback.extract_tb(info.value.__traceback__)[-1]
    lines, first = inspect.getsourcelines(original)
    text = lines[-1]
    assert frame.lineno == first + len(lines) - 1
    assert (frame.colno, frame.end_colno) == (text.index("1 / x"), text.index("1 / x") + 5)


def test_display_transforms_compose():
    @overloaded_tuples(list)
    @overloaded_lists(tuple)
    def f():
        return [1], ([2], 3)

    assert f() == [(1,), [(2,), 3]]
