"""Wrap mode without the wrapper's frame (issue 7, "Wrap mode: the wrapper's frame").

A call wrapper is a Python function, so it adds a frame between the rewritten function and the
callee. Rewritten code calls a C-level trampoline instead of the wrapper itself: it calls the
callees that read their caller's frame directly, and removes the wrapper's entries from the
traceback of an exception that came out of the callee. These tests compare each behaviour
with the same function undecorated. The wrappers live in a module of their own (written to
``tmp_path``), as a real wrapper would, so that "the wrapper's module" is distinguishable.
"""

from __future__ import annotations

import collections
import enum
import importlib
import json
import logging
import pickle
import subprocess
import sys
import textwrap
import traceback
import typing
import uuid
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import callweave
from callweave import _native, wrap_calls
from callweave.decorators import callee_call_offsets, make_trampoline

CALLWEAVE_ROOT = Path(callweave.__file__).resolve().parent.parent

WRAPPERS = """\
seen = []

def passthrough(call, /, *args, **kwargs):
    seen.append(call)
    return call(*args, **kwargs)

def with_site(call, site, /, *args, **kwargs):
    seen.append((call, site))
    return call(*args, **kwargs)

def timed(call, /, *args, **kwargs):
    try:
        return call(*args, **kwargs)
    finally:
        seen.append(call)

def reraise_as_is(call, /, *args, **kwargs):
    try:
        return call(*args, **kwargs)
    except Exception as e:
        raise e

def broken(call, /, *args, **kwargs):
    raise RuntimeError("wrapper bug")

def translating(call, /, *args, **kwargs):
    try:
        return call(*args, **kwargs)
    except ZeroDivisionError:
        raise ValueError("translated") from None

class Tracer:
    def __call__(self, call, /, *args, **kwargs):
        seen.append(call)
        return call(*args, **kwargs)

    def method(self, call, /, *args, **kwargs):
        seen.append(call)
        return call(*args, **kwargs)
"""


@pytest.fixture
def w(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """A module of call wrappers (its own file, so its own ``__name__`` and source)."""
    name = f"cw_wrappers_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(WRAPPERS)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module(name)
    yield module
    sys.modules.pop(name, None)


# ---- functions rewritten by the tests (module level: the decorator needs their source) ----


def fail() -> float:
    return 1 / 0


def calls_fail() -> float:
    return fail()


def calls_len() -> int:
    return len(1, 2)  # type: ignore[call-arg]


def call_trimmed(func: Any, *args: Any) -> Any:
    """pyparsing's ``_trim_arity``: drop leading arguments while the TypeError is our call's."""
    for limit in range(len(args) + 1):
        try:
            return func(*args[limit:])
        except TypeError as te:
            if traceback.extract_tb(te.__traceback__)[-1].name != "call_trimmed":
                raise
    return None


log = logging.getLogger("cw.test_wrap_frames")


def logs() -> None:
    log.warning("from logs")
    logging.warning("module-level")
    adapter = logging.LoggerAdapter(log, {})
    adapter.warning("adapted")


def warns() -> None:
    warnings.warn("level one", DeprecationWarning, stacklevel=1)


def deprecated_api() -> None:
    warnings.warn("level two", DeprecationWarning, stacklevel=2)


def makes_types() -> dict[str, Any]:
    return {
        "namedtuple": collections.namedtuple("NT", "x y"),
        "enum": enum.Enum("Colour", "RED GREEN"),
        "typevar": typing.TypeVar("TV"),
        "newtype": typing.NewType("NewInt", int),
        "typeddict": typing.TypedDict("TD", {"x": int}),
        "named": typing.NamedTuple("NT2", [("x", int)]),
    }


getframe = sys._getframe


def caller_name() -> str:
    return getframe(1).f_code.co_name


def outer() -> str:
    return caller_name()


def enum_lookup_and_vars(obj: Any) -> tuple[Any, Any]:
    colour = enum.Enum("Colour", "RED GREEN")
    return colour(1), vars(obj)


def fail_with_site() -> float:
    warnings.warn("with site", UserWarning, stacklevel=1)
    return fail()


# ---- tests ----


def names_of(func: Any) -> list[str]:
    """The function names in the traceback of what ``func()`` raises, from ``func`` inward."""
    try:
        func()
    except Exception as exc:
        return [f.name for f in traceback.extract_tb(exc.__traceback__)][1:]
    raise AssertionError("no exception")


@pytest.mark.parametrize("wrapper", ["passthrough", "timed", "reraise_as_is", "tracer", "method"])
def test_traceback_of_a_python_callee_has_no_wrapper_frame(w, wrapper):
    wrap = {"tracer": w.Tracer(), "method": w.Tracer().method}.get(wrapper) or getattr(w, wrapper)
    assert names_of(calls_fail) == ["calls_fail", "fail"]
    assert names_of(wrap_calls(wrapper=wrap)(calls_fail)) == ["calls_fail", "fail"]


def test_traceback_of_a_c_callee_has_no_wrapper_frame(w):
    assert names_of(wrap_calls(wrapper=w.passthrough)(calls_len)) == names_of(calls_len)


def test_traceback_keeps_position_and_carets(w):
    def lines(func: Any) -> list[str]:
        try:
            func()
        except ZeroDivisionError:
            return traceback.format_exc().splitlines()[1:]
        raise AssertionError("no exception")

    assert lines(wrap_calls(wrapper=w.passthrough)(calls_fail)) == lines(calls_fail)


def test_errors_of_the_wrapper_itself_keep_its_frame(w):
    assert names_of(wrap_calls(wrapper=w.broken)(calls_fail)) == ["calls_fail", "broken"]
    translated = names_of(wrap_calls(wrapper=w.translating)(calls_fail))
    assert translated == ["calls_fail", "translating"]


def test_arity_detection_by_traceback_works(w):
    # repro hook/r_trim_arity_pattern.py: pyparsing's parse actions under wrap mode
    def action(toks: str) -> str:
        return toks.upper()

    assert call_trimmed(action, "s", 0, "toks") == "TOKS"
    assert wrap_calls(wrapper=w.passthrough)(call_trimmed)(action, "s", 0, "toks") == "TOKS"


def test_logging_records_name_the_rewritten_function(w, caplog):
    def where() -> list[tuple[str, int, str]]:
        return [(r.filename, r.lineno, r.funcName) for r in caplog.records]

    with caplog.at_level(logging.WARNING):
        logs()
        plain = where()
        caplog.clear()
        wrap_calls(wrapper=w.passthrough)(logs)()
        wrapped = where()
    assert len(plain) == 3
    assert wrapped == plain


@pytest.mark.parametrize("func", [warns, deprecated_api], ids=["stacklevel1", "stacklevel2"])
def test_warnings_point_where_they_point_without_wrapping(w, func):
    def where(f: Any) -> tuple[str, int]:
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            f()
        return rec[0].filename, rec[0].lineno

    assert where(wrap_calls(wrapper=w.passthrough)(func)) == where(func)


def test_types_made_by_the_function_belong_to_its_module(w):
    made = wrap_calls(wrapper=w.passthrough)(makes_types)()
    for kind, obj in made.items():
        assert obj.__module__ == __name__, kind
    nt = made["namedtuple"]
    globals()["NT"] = nt
    try:
        assert pickle.loads(pickle.dumps(nt(1, 2))) == (1, 2)
    finally:
        del globals()["NT"]


def test_getframe_through_another_name_sees_the_caller(w):
    # repro hook/r_getframe_alias.py (pyparsing's autoname_elements)
    assert outer() == "outer"
    rewritten = wrap_calls(wrapper=w.passthrough)(caller_name)
    globals()["caller_name"], original = rewritten, caller_name
    try:
        assert outer() == "outer"
    finally:
        globals()["caller_name"] = original


def test_the_wrapper_sees_every_call_but_the_frame_readers(w):
    class Obj:
        x = 1

    obj = Obj()
    obj.y = 2
    colour, attrs = wrap_calls(wrapper=w.passthrough)(enum_lookup_and_vars)(obj)
    assert attrs == {"y": 2}
    assert colour.name == "RED"
    # the functional Enum call was made directly; the lookup colour(1) and vars(obj) were not
    assert [type(c).__name__ if isinstance(c, enum.EnumType) else c for c in w.seen] == [
        "EnumType",
        vars,
    ]


def test_sites_are_dropped_for_direct_calls(w, recwarn):
    warnings.simplefilter("always")
    rewritten = wrap_calls(wrapper=w.with_site, pass_site=True)(fail_with_site)
    assert names_of(rewritten) == ["fail_with_site", "fail"]
    assert [c for c, _site in w.seen] == [fail]
    assert recwarn[0].lineno == fail_with_site.__code__.co_firstlineno + 1


def test_stacked_wrappers(w):
    twice = wrap_calls(wrapper=w.timed)(wrap_calls(wrapper=w.passthrough)(calls_fail))
    assert names_of(twice) == ["calls_fail", "fail"]
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        wrap_calls(wrapper=w.timed)(wrap_calls(wrapper=w.passthrough)(warns))()
    assert rec[0].lineno == warns.__code__.co_firstlineno + 1


def test_trampoline_object(w):
    t = make_trampoline(w.passthrough)
    assert t.__wrapped__ is w.passthrough
    assert _native.is_trampoline(t)
    assert "passthrough" in repr(t)
    assert t(len, [1, 2]) == 2
    assert t(dict, a=1) == {"a": 1}
    assert w.seen == [len, dict]
    code, offsets = callee_call_offsets(w.passthrough)
    assert code is w.passthrough.__code__ and offsets
    assert callee_call_offsets(len) == (None, frozenset())
    with pytest.raises(TypeError, match="must be callable"):
        _native.make_trampoline(1, 0, None, frozenset())


HOOK_MODULE = """\
import collections, logging, sys, traceback, warnings

log = logging.getLogger("app")

def fail():
    return 1 / 0

def run():
    Point = collections.namedtuple("Point", "x y")
    log.warning("building")
    warnings.warn("deprecated", DeprecationWarning, stacklevel=1)
    try:
        fail()
    except ZeroDivisionError as e:
        names = [f.name for f in traceback.extract_tb(e.__traceback__)]
    return Point.__module__, names
"""

HOOK_MAIN = """\
import json, logging, sys, warnings
records = []
class H(logging.Handler):
    def emit(self, r):
        records.append([r.filename, r.lineno, r.funcName])
logging.getLogger().addHandler(H())
import callweave
if sys.argv[1] == "wrap":
    callweave.install(sys.argv[2])
import appmod
with warnings.catch_warnings(record=True) as rec:
    warnings.simplefilter("always")
    module, names = appmod.run()
print("@@CW " + json.dumps({
    "module": module, "names": names, "records": records,
    "warning": [rec[0].filename.rsplit("/", 1)[-1], rec[0].lineno],
    "wrapped": len(__import__("wrappers").seen),
}))
"""


def test_import_hook_wrap_rule(tmp_path):
    (tmp_path / "appmod.py").write_text(HOOK_MODULE)
    (tmp_path / "wrappers.py").write_text(WRAPPERS)
    (tmp_path / "main.py").write_text(HOOK_MAIN)
    config = tmp_path / "cw.toml"
    config.write_text(
        textwrap.dedent("""\
        [tool.callweave]
        report = "none"
        [[tool.callweave.wrap]]
        modules = ["appmod"]
        wrapper = "wrappers:passthrough"
        """)
    )
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{CALLWEAVE_ROOT}:{tmp_path}"}

    def child(mode: str) -> dict[str, Any]:
        proc = subprocess.run(
            [sys.executable, "main.py", mode, str(config)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        line = [x for x in proc.stdout.splitlines() if x.startswith("@@CW ")][-1]
        return json.loads(line[5:])

    plain, wrapped = child("plain"), child("wrap")
    assert wrapped["wrapped"] > 0  # the rule applied: `fail()` went through the wrapper
    del plain["wrapped"], wrapped["wrapped"]
    assert wrapped == plain


RECURSION = """\
import sys
sys.path.insert(0, sys.argv[1])
from wrappers import passthrough
from callweave import wrap_calls
import recursive
down = wrap_calls(wrapper=passthrough)(recursive.down)
recursive.down = down
sys.setrecursionlimit(1000)
try:
    down(10**6)
except RecursionError:
    pass
default_depth = min(recursive.reached)
recursive.reached.clear()
sys.setrecursionlimit(200_000)
try:
    down(150_000)
    print("no RecursionError")
except RecursionError:
    print("RecursionError", default_depth)
"""

RECURSIVE = """\
reached = []

def down(n):
    reached.append(n)
    return 0 if n == 0 else down(n - 1) + 1
"""


def test_deep_wrapped_recursion_raises_recursion_error_not_a_crash(tmp_path):
    # Every wrapped level re-enters the interpreter from the trampoline; 3.11 does not bound the
    # C stack itself, so with a raised limit the process would segfault (as it does with the
    # bare wrapper, whose `call(*args, **kwargs)` re-enters from C on 3.11 too).
    (tmp_path / "wrappers.py").write_text(WRAPPERS)
    (tmp_path / "recursive.py").write_text(RECURSIVE)
    (tmp_path / "main.py").write_text(RECURSION)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(CALLWEAVE_ROOT)}
    proc = subprocess.run(
        [sys.executable, "main.py", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    word, depth = proc.stdout.split()
    assert word == "RecursionError"
    # with the default limit, a wrapped recursion reaches half the plain depth (two frames a
    # level: the function's and the wrapper's)
    levels = 10**6 - int(depth) + 1
    assert 480 <= levels <= 500


def imports_warning_module(name: str) -> ModuleType:
    return importlib.import_module(name)


def test_a_module_imported_by_import_module_sees_the_importer(w, tmp_path):
    # python-dateutil's zoneinfo walks the frames above its import (skipping importlib's and
    # dateutil's own) to warn at the importing line: the wrapper's frame stopped the walk.
    def chain(f: Any) -> list[str]:
        name = f"framemod_{uuid.uuid4().hex}"
        (tmp_path / f"{name}.py").write_text(
            "import sys\n"
            "f, CHAIN = sys._getframe(1), []\n"
            "while f is not None and len(CHAIN) < 3:\n"
            "    name = f.f_code.co_filename\n"
            "    if not ('importlib' in name and '_bootstrap' in name):\n"
            "        CHAIN.append(f.f_code.co_name)\n"
            "    f = f.f_back\n"
        )
        return f(name).CHAIN

    plain = chain(imports_warning_module)
    assert plain[:2] == ["import_module", "imports_warning_module"]
    assert chain(wrap_calls(wrapper=w.passthrough)(imports_warning_module)) == plain
