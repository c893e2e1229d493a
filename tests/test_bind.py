"""Calls with ``*`` or ``**`` arguments through the call binder (issue 7 item 17, repro 27).

CPython reports argument-unpacking errors (``f() got multiple values for keyword argument``,
``f() argument after * must be an iterable``, ``... after ** must be a mapping``) in the
caller's frame, naming the callable on the stack. Rewritten code calls such calls as
``BIND(k, OUTER, ..., f, ...)(*a, **k)`` so that the callable on the stack stands for ``f``:
every message, location and result must be the plain call's under flat profiling, call
wrapping and both, through the decorators and through the import hook.
"""

from __future__ import annotations

import functools
import gc
import json
import re
import subprocess
import sys
import textwrap
import traceback
import weakref
from pathlib import Path
from typing import Any

import pytest

from callweave import _native, flat_profile, wrap_calls
from callweave.profiler import CallTimes, function_stats


def target(*args: Any, **kwargs: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    return args, kwargs


class Box:
    def method(self, *args: Any) -> tuple[Any, ...]:
        return args


class Made:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args


class Callable_:
    def __call__(self, *args: Any) -> tuple[Any, ...]:
        return args


PARTIAL = functools.partial(target)
INSTANCE = Callable_()


def c_multiple_values():
    return target(**{"a": 1}, a=2)


def c_keyword_then_mapping():
    return target(a=1, **{"a": 2})


def c_star_not_iterable():
    return target(*1)


def c_double_star_not_mapping():
    return target(**1)


def c_positional_then_star():
    return target(1, *2)


def c_method():
    return Box().method(*None)


def c_builtin():
    return len(*5)


def c_class():
    return Made(**{"x": 1}, x=2)


def c_partial():
    return PARTIAL(*1)


def c_instance():
    return INSTANCE(**[1])


def c_keywords_not_strings():
    return target(**{1: 2})


CASES = [
    c_multiple_values,
    c_keyword_then_mapping,
    c_star_not_iterable,
    c_double_star_not_mapping,
    c_positional_then_star,
    c_method,
    c_builtin,
    c_class,
    c_partial,
    c_instance,
    c_keywords_not_strings,
]


def wrapper(call, /, *args, **kwargs):
    return call(*args, **kwargs)


def site_wrapper(call, site, /, *args, **kwargs):
    return call(*args, **kwargs)


def profiled(func):
    return flat_profile(time_limit="1s", below_callback=None)(func)


LAYERS = {
    "profile": profiled,
    "wrap": wrap_calls(wrapper=wrapper),
    "wrap_site": wrap_calls(wrapper=site_wrapper, pass_site=True),
    "wrap_then_profile": lambda f: profiled(wrap_calls(wrapper=wrapper)(f)),
    "profile_then_wrap": lambda f: wrap_calls(wrapper=site_wrapper, pass_site=True)(profiled(f)),
}


def raised(func) -> tuple[str, tuple[Any, ...]]:
    """The TypeError's message and the location (line and columns) of its last entry."""
    with pytest.raises(TypeError) as info:
        func()
    last = traceback.extract_tb(info.value.__traceback__)[-1]
    return str(info.value), (last.lineno, last.end_lineno, last.colno, last.end_colno)


@pytest.mark.parametrize("layer", sorted(LAYERS))
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.__name__)
def test_unpacking_errors_are_the_plain_ones(case, layer):
    message, location = raised(case)
    assert raised(LAYERS[layer](case)) == (message, location)


def test_plain_messages_name_the_callee():
    """What the comparisons above are about (guards against a case that cannot fail)."""
    here = __name__
    assert raised(c_multiple_values)[0] == (
        f"{here}.target() got multiple values for keyword argument 'a'"
    )
    assert raised(c_method)[0] == (
        f"{here}.Box.method() argument after * must be an iterable, not NoneType"
    )
    assert raised(c_builtin)[0] == "len() argument after * must be an iterable, not int"
    assert raised(c_partial)[0].startswith("functools.partial(<function target at")
    assert raised(c_instance)[0].startswith(f"<{here}.Callable_ object at")


def star_calls(items, mapping):
    box = Box()
    return (
        target(*items),
        target(**mapping),
        target(0, *items, k=1, **mapping),
        box.method(*items),
        len(*[items]),
        Made(*items).args,
        target(*range(40), **{f"k{i}": i for i in range(20)}),
    )


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_star_call_results_are_unchanged(layer):
    items, mapping = [1, 2], {"m": 3}
    assert LAYERS[layer](star_calls)(items, mapping) == star_calls(items, mapping)


def one_star_call(items):
    return target(*items, **{"z": 1})


def test_profiled_star_call_is_timed_once_per_call():
    seen: list[CallTimes] = []

    def below(total, limit, times, func):
        seen.append(times)

    prof = flat_profile(time_limit="1h", below_callback=below)(one_star_call)
    for _ in range(3):
        assert prof([1]) == ((1,), {"z": 1})
    assert [dict(t) for t in seen] == [{"target": [t["target"][0]]} for t in seen]
    assert all(len(t.sites) == 1 and t["target"][0] > 0 for t in seen)
    (site,) = function_stats(prof.__callweave_profile__).sites
    assert (site.callee, site.count) == ("target", 3)
    assert site.text == 'target(*items, **{"z": 1})'


def test_wrapper_sees_the_callee_and_the_arguments():
    calls = []

    def spy(call, /, *args, **kwargs):
        calls.append((call, args, kwargs))
        return call(*args, **kwargs)

    assert wrap_calls(wrapper=spy)(one_star_call)([7]) == ((7,), {"z": 1})
    assert calls == [(target, (7,), {"z": 1})]


def raiser(*args: Any, **kwargs: Any) -> None:
    raise ValueError(args, kwargs)


def c_callee_raises():
    return raiser(
        *[1],
        **{"k": 2},
    )


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_callee_errors_keep_the_plain_traceback(layer):
    """An error from inside the callee: the caller's entry keeps the call's line and carets,
    and no entry of callweave's is added."""

    def entries(func):
        with pytest.raises(ValueError) as info:
            func()
        tb = traceback.extract_tb(info.value.__traceback__)[1:]
        return [(e.name, e.lineno, e.end_lineno, e.colno, e.end_colno) for e in tb]

    plain = entries(c_callee_raises)
    assert [e[0] for e in plain] == ["c_callee_raises", "raiser"]
    assert entries(LAYERS[layer](c_callee_raises)) == plain


async def atarget(*args: Any) -> tuple[Any, ...]:
    return args


async def awaits_star(items):
    return await atarget(*items)


def test_profiled_awaited_star_call():
    import asyncio

    prof = flat_profile(time_limit="1h", below_callback=None)(awaits_star)
    assert asyncio.run(prof([1, 2])) == (1, 2)
    (site,) = function_stats(prof.__callweave_profile__).sites
    assert (site.callee, site.count) == ("atarget", 1)


class Holder:
    def call(self, *args: Any) -> tuple[Any, ...]:
        return args


def suspended(holder):
    yield holder.call(*(yield "first"))


@pytest.mark.parametrize("layer", ["wrap", "profile"])
def test_bound_call_on_a_suspended_generator_is_collectable(layer):
    """The bound call sits on the generator's value stack: a cycle through its callee
    (holder → generator → bound call → holder.call → holder) must be collected."""
    holder = Holder()
    holder.gen = LAYERS[layer](suspended)(holder)
    assert next(holder.gen) == "first"
    assert holder.gen.send([1, 2]) == (1, 2)
    holder.gen = LAYERS[layer](suspended)(holder)
    next(holder.gen)
    ref = weakref.ref(holder)
    del holder
    gc.collect()
    assert ref() is None


# --- the native binder itself ---


def outer(*args, **kwargs):
    return args, kwargs


def test_bind_call_forwards_and_stands_for_the_callee():
    bound = _native.bind_call(1, outer, "pre", target, "post")
    assert bound.__qualname__ == "target"
    assert bound.__name__ == "target"
    assert bound.__module__ == __name__
    assert str(bound) == str(target)
    assert repr(bound) == f"<callweave bound call of {target!r}>"
    assert bound(1, 2, k=3) == (("pre", target, "post", 1, 2), {"k": 3})
    assert bound() == (("pre", target, "post"), {})
    # More arguments than the stack array holds.
    many = bound(*range(30), **{f"k{i}": i for i in range(10)})
    assert many == (("pre", target, "post", *range(30)), {f"k{i}": i for i in range(10)})


def test_bind_call_callee_without_qualname():
    bound = _native.bind_call(0, outer, INSTANCE)
    with pytest.raises(AttributeError):
        bound.__qualname__  # noqa: B018
    assert str(bound) == str(INSTANCE)


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "message"),
    [
        ((3, outer, target), {}, IndexError, "callee index 3 out of range for 1 items"),
        ((-1, outer, target), {}, IndexError, "callee index -1 out of range"),
        ((0, outer), {}, TypeError, "bind_call() takes an index, a callable and at least one"),
        (("0", outer, target), {}, TypeError, "an integer is required"),
        ((0, outer, target), {"x": 1}, TypeError, "bind_call() takes no keyword arguments"),
    ],
)
def test_bind_call_rejects_bad_input(args, kwargs, error, message):
    with pytest.raises(error, match=re.escape(message)):
        _native.bind_call(*args, **kwargs)


def test_bound_call_cannot_be_made_directly():
    bound = _native.bind_call(0, outer, target)
    with pytest.raises(TypeError):
        type(bound)()


# --- through the import hook ---

STARMOD = """\
import functools


def target(*args, **kwargs):
    return args, kwargs


class Box:
    def method(self, *args):
        return args


class Callable_:
    def __call__(self, *args):
        return args


PARTIAL = functools.partial(target)
INSTANCE = Callable_()


def cases():
    return [
        lambda: target(**{"a": 1}, a=2),
        lambda: target(*1),
        lambda: target(**1),
        lambda: Box().method(*None),
        lambda: len(*5),
        lambda: Box(**{"x": 1}, x=2),
        lambda: PARTIAL(*1),
        lambda: INSTANCE(**[1]),
    ]


def messages():
    out = []
    for case in cases():
        try:
            case()
        except TypeError as e:
            out.append(str(e))
    return out


def results(items):
    return target(*items, **{"k": 1}), Box().method(*items), len(*[items])
"""

WRAPMOD = """\
def w(call, /, *args, **kwargs):
    return call(*args, **kwargs)
"""

CHILD = """\
import json, sys
import callweave
from callweave.config import Config, ProfileRule, WrapRule

mode = sys.argv[1]
wrap = (WrapRule(modules=("starmod",), wrapper="wrapmod:w"),) if "wrap" in mode else ()
profile = (ProfileRule(modules=("starmod",), time_limit=3600.0),) if "profile" in mode else ()
if wrap or profile:
    callweave.install(Config(wrap=wrap, profile=profile), report_at_exit=False)
import starmod


def names(code):
    found = set(code.co_names)
    for const in code.co_consts:
        if hasattr(const, "co_names"):
            found |= names(const)
    return found


print(json.dumps({
    "messages": [m.split(" at 0x")[0] for m in starmod.messages()],
    "results": repr(starmod.results([1, 2])),
    "rewritten": "__callweave_bind__" in names(starmod.cases.__code__),
}))
"""


def test_import_hook_keeps_the_plain_messages(tmp_path: Path):
    (tmp_path / "starmod.py").write_text(STARMOD)
    (tmp_path / "wrapmod.py").write_text(WRAPMOD)
    (tmp_path / "child.py").write_text(textwrap.dedent(CHILD))
    modes = ["plain", "profile", "wrap", "wrap+profile"]
    procs = {
        mode: subprocess.Popen(
            [sys.executable, "child.py", mode],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for mode in modes
    }
    out = {}
    for mode, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr
        out[mode] = json.loads(stdout)
    plain = out.pop("plain")
    assert not plain["rewritten"]
    assert len(plain["messages"]) == 8
    assert plain["messages"][0] == "starmod.target() got multiple values for keyword argument 'a'"
    for mode, data in out.items():
        assert data["rewritten"], mode
        assert data["messages"] == plain["messages"], mode
        assert data["results"] == plain["results"], mode


RECURSION_MODULE = """\
def deep(n):
    return deep(*[n - 1], **{}) + 1 if n else 0
"""

RECURSION_SCRIPT = """\
import sys
import deepmod
from callweave import flat_profile, wrap_calls

limit, layer = sys.argv[1], sys.argv[2]
if limit != "None":
    sys.setrecursionlimit(int(limit))


def w(call, /, *args, **kwargs):
    return call(*args, **kwargs)


if layer == "profile":
    deepmod.deep = flat_profile(time_limit=10, below_callback=None)(deepmod.deep)
else:
    deepmod.deep = wrap_calls(wrapper=w)(deepmod.deep)
try:
    deepmod.deep(10**6)
except RecursionError:
    print("RecursionError")
else:
    print("no error")
print(deepmod.deep(50))
"""


@pytest.mark.parametrize("layer", ["profile", "wrap"])
@pytest.mark.parametrize("limit", [None, 100_000])
def test_deep_recursion_through_star_calls_never_crashes(tmp_path: Path, limit, layer):
    """Each level adds the bound call's C frame; the timer's and the trampoline's stack guard
    (3.11, 3.12) still turn exhaustion into RecursionError."""
    (tmp_path / "deepmod.py").write_text(RECURSION_MODULE)
    (tmp_path / "run.py").write_text(RECURSION_SCRIPT)
    proc = subprocess.run(
        [sys.executable, "run.py", str(limit), layer],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["RecursionError", "50"]
