"""The flat-profiling transform as tracers, debuggers and the profiled code itself see it.

- coverage.py (line and branch, every core of this Python) reports the same for a profiled
  module as for the plain one: entry and exit code carry no location (issue 7, item 13).
- A stub body after a multi-line signature keeps its line (item 24); a suite continued onto
  the next line with a backslash after ``def f():`` is rewritten (item 20a).
- ``yield`` goes through the pause/resume hooks with values, throws and closes unchanged, and
  ``gen.throw`` tracebacks keep the yield's position (item 12, engine half).
- ``locals()``, ``vars()`` and ``dir()`` go through the strip hook (item 10, engine half).

The pause/resume/strip hooks here are Python stand-ins bound in the module's globals, so these
tests exercise the engine's rewrite whatever the native runtime implements.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import traceback
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import coverage
import pytest

import callweave
from callweave import _native
from callweave._compile import compile_rewritten

CALLWEAVE_ROOT = Path(callweave.__file__).resolve().parent.parent
RECORD = "__r__"


class Record:
    """What the stand-in hooks keep per invocation."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.events: list[tuple[str, Any]] = []
        self.running = True
        self.exited = False


def stand_ins(records: list[Record]) -> dict[str, Callable[..., Any]]:
    """Runtime names for profiled code: they record what happens and pass values through."""

    def enter(index: int) -> Record:
        records.append(Record(index))
        return records[-1]

    def exit_(record: Record, raised: object = None) -> None:
        record.exited = True

    def timer(record: Record, site: int, call: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        return call(*args, **kw)

    async def atimer(record: Record, site: int, call: Callable[..., Any], *a: Any, **kw: Any):
        return await call(*a, **kw)

    # A value thrown in at a `yield` (gen.throw, close) skips RESUME: the next PAUSE or the
    # exit may find the record paused.
    def pause(record: Record, value: Any) -> Any:
        record.running = False
        record.events.append(("pause", value))
        return value

    def resume(record: Record, sent: Any) -> Any:
        assert not record.running, "resumed while running"
        record.running = True
        record.events.append(("resume", sent))
        return sent

    def strip(namespace: Any) -> Any:
        if isinstance(namespace, dict):
            del namespace[RECORD]
        else:
            namespace.remove(RECORD)
        return namespace

    return {
        "__e__": enter,
        "__x__": exit_,
        "__t__": timer,
        "__at__": atimer,
        "__p__": pause,
        "__rs__": resume,
        "__s__": strip,
    }


RULE = _native.Rule(
    "profile",
    {
        "enter": "__e__",
        "exit": "__x__",
        "timer": "__t__",
        "atimer": "__at__",
        "record": RECORD,
        "pause": "__p__",
        "resume": "__rs__",
        "strip": "__s__",
    },
)


def load(source: str, *, profiled: bool, records: list[Record] | None = None) -> Any:
    """Runs ``source`` as module ``m`` (file ``m.py``), rewritten with ``RULE`` if profiled."""
    source = textwrap.dedent(source)
    module = types.ModuleType("m")
    module.__file__ = "m.py"
    if profiled:
        code, _ = compile_rewritten(source, "m.py", [RULE])
        module.__dict__.update(stand_ins([] if records is None else records))
    else:
        code = compile(source, "m.py", "exec", dont_inherit=True)
    exec(code, module.__dict__)
    return module


def line_events(func: Callable[..., Any], *args: Any) -> list[tuple[str, int | None]]:
    """``call``, ``line`` and ``exception`` events of ``m.py`` frames while ``func`` runs."""
    events: list[tuple[str, int | None]] = []

    def tracer(frame: types.FrameType, event: str, arg: object) -> Any:
        if frame.f_code.co_filename != "m.py":
            return None
        if event != "return":
            events.append((event, frame.f_lineno))
        return tracer

    sys.settrace(tracer)
    try:
        func(*args)
    except Exception:  # the events up to the exception are the point
        pass
    finally:
        sys.settrace(None)
    return events


# -- coverage.py (item 13) -------------------------------------------------------------------

COVERED = """\
def setup(obj, value):
    if obj.get("a") is None:
        obj["a"] = value
    if obj.get("b") is None:
        obj["b"] = value


def each(items, out):
    for item in items:
        out.append(abs(item))


def early(x):
    if x:
        return 1
    y = x + 1
    return y


def guarded(x):
    try:
        return 1 / x
    except ZeroDivisionError:
        if x is None:
            return None
        raise


def countdown(n):
    while n:
        n -= 1
    else:
        n = -1


def inline(x): return str(x) if x else None


def stub(
    x,
) -> None: ...


class Reader:
    def first(self, flag):
        with open(__file__) as fh:
            if flag:
                return fh.readline()


def quiet(x):
    with __import__("contextlib").suppress(ZeroDivisionError):
        y = 1 / x


def handled(x):
    try:
        y = 1 / x
    except ZeroDivisionError:
        y = None


def branches(x):
    if x:
        a = 1
    else:
        a = 2


def numbers(n):
    for i in range(n):
        yield i
    z = n


async def coro(x):
    if x:
        return x
    y = x
"""

COVER_APP = """\
import sys
if sys.argv[1] == "hook":
    import callweave
    from callweave.config import Config, ProfileRule
    callweave.install(Config(profile=(ProfileRule(modules=("covmod",), time_limit=1.0),)),
                      report_at_exit=False)
import covmod
covmod.setup({}, 1); covmod.setup({"a": 1, "b": 2}, 1)
covmod.each([1, -2], [])
covmod.early(0); covmod.early(1)
covmod.guarded(2)
try:
    covmod.guarded(0)
except ZeroDivisionError:
    pass
covmod.countdown(2)
covmod.inline(0)
covmod.stub(1)
covmod.Reader().first(False)
covmod.quiet(0); covmod.quiet(1); covmod.handled(0); covmod.handled(1)
covmod.branches(0); covmod.branches(1); list(covmod.numbers(2))
import asyncio
asyncio.run(covmod.coro(0)); asyncio.run(covmod.coro(1))
if sys.argv[1] == "hook":
    assert type(covmod.__loader__).__name__ == "CallweaveLoader", covmod.__loader__
"""

CORES = ["ctrace", "pytrace"] + (["sysmon"] if sys.version_info >= (3, 12) else [])


def coverage_of(root: Path, mode: str, core: str) -> dict[str, Any]:
    """Line and branch data of ``covmod.py`` under ``coverage run --branch``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CALLWEAVE_", "COVERAGE_"))}
    env.update(
        PYTHONDONTWRITEBYTECODE="1",
        COVERAGE_CORE=core,
        PYTHONPATH=os.pathsep.join([str(CALLWEAVE_ROOT), str(root)]),
    )
    data = f".coverage.{mode}"
    common = [sys.executable, "-m", "coverage"]
    subprocess.run(
        [*common, "run", "--branch", f"--data-file={data}", "--include=covmod.py", "app.py", mode],
        cwd=root,
        env=env,
        check=True,
        timeout=120,
    )
    report = root / f"{mode}.json"
    subprocess.run(
        [*common, "json", f"--data-file={data}", "-o", str(report)],
        cwd=root,
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    (covmod,) = json.loads(report.read_text())["files"].values()
    raw = coverage.CoverageData(basename=str(root / data))
    raw.read()
    (path,) = raw.measured_files()
    fields = ("executed_lines", "missing_lines", "executed_branches", "missing_branches")
    return {"arcs": sorted(raw.arcs(path) or ()), **{f: covmod[f] for f in fields}}


@pytest.mark.parametrize("core", CORES)
def test_branch_coverage_of_a_profiled_module_matches_plain(tmp_path, core):
    (tmp_path / "covmod.py").write_text(COVERED)
    (tmp_path / "app.py").write_text(COVER_APP)
    plain = coverage_of(tmp_path, "plain", core)
    hooked = coverage_of(tmp_path, "hook", core)
    # Functions ending in if/for/while/with, early returns, re-raise, one-line and stub bodies;
    # exits reached from two lines (copied), a suppressing `with`, generators and coroutines.
    assert [4, -1] in plain["executed_branches"] and [9, -8] in plain["executed_branches"]
    assert hooked == plain


def test_tracers_see_only_the_users_lines():
    source = COVERED.replace("open(__file__)", "open(__import__('os').devnull)")
    plain, profiled = load(source, profiled=False), load(source, profiled=True)
    calls = [
        ("setup", lambda: ({}, 1)),
        ("setup", lambda: ({"a": 1, "b": 2}, 1)),
        ("each", lambda: ([1, -2], [])),
        ("early", lambda: (0,)),
        ("early", lambda: (1,)),
        ("guarded", lambda: (0,)),
        ("countdown", lambda: (2,)),
        ("inline", lambda: (0,)),
        ("stub", lambda: (1,)),
    ]
    for name, args in calls:
        before = line_events(getattr(plain, name), *args())
        after = line_events(getattr(profiled, name), *args())
        assert after == before, name


# -- layout: stub bodies (item 24) and backslash continuations (item 20a) ---------------------

STUB = """\
class Base:
    def hook(
        self,
        value: int,
    ) -> None: ...

def g(x): \\
    return str(x)

def h(x): \\
    "doc"; return [x]
"""


def test_stub_body_after_multiline_signature_keeps_its_line():
    plain, profiled = load(STUB, profiled=False), load(STUB, profiled=True)

    def lines(func: Any) -> list[int]:
        return sorted({ln for _, _, ln in func.__code__.co_lines() if ln is not None})

    assert 5 in lines(profiled.Base.hook)
    assert lines(profiled.Base.hook) == lines(plain.Base.hook)
    assert line_events(profiled.Base().hook, 1) == line_events(plain.Base().hook, 1)
    assert line_events(profiled.Base().hook, 1) == [("call", 2), ("line", 5)]


def test_backslash_after_def_header_is_rewritten():
    records: list[Record] = []
    profiled = load(STUB, profiled=True, records=records)
    assert profiled.g(1) == "1"
    assert profiled.h(2) == [2]
    assert profiled.h.__doc__ == "doc"
    assert [r.exited for r in records] == [True, True]
    plain = load(STUB, profiled=False)
    assert line_events(profiled.g, 1) == line_events(plain.g, 1) == [("call", 7), ("line", 8)]


# -- yields (item 12) ------------------------------------------------------------------------

GENERATORS = """\
def echo(first):
    got = yield first
    while got != "stop":
        try:
            got = yield got
        except KeyError as exc:
            got = (yield), exc.args
    return "done"

def pairs(n):
    yield 0, "a"
    yield (n), (yield n)
    total = yield from range(n)
    yield [total] if total is None else total

def closing(log):
    try:
        yield 1
        yield 2
    finally:
        log.append("closed")

async def agen(n):
    for i in range(n):
        sent = yield str(i)
        if sent:
            yield sent

async def drive():
    out = []
    g = agen(3)
    out.append(await g.asend(None))
    out.append(await g.asend("s"))
    async for v in g:
        out.append(v)
    g = agen(1)
    out.append(await g.asend(None))
    try:
        await g.athrow(ValueError("x"))
    except ValueError as exc:
        out.append(repr(exc))
    return out
"""


def drive_echo(m: Any) -> list[Any]:
    g = m.echo("a")
    out = [next(g), g.send("b"), g.throw(KeyError("k")), g.send(None)]
    try:
        g.send("stop")
    except StopIteration as stop:
        out.append(stop.value)
    return out


def test_generator_values_sends_throws_and_closes_pass_unchanged():
    import asyncio

    records: list[Record] = []
    plain, profiled = (
        load(GENERATORS, profiled=False),
        load(GENERATORS, profiled=True, records=records),
    )
    assert drive_echo(profiled) == drive_echo(plain)
    assert list(profiled.pairs(3)) == list(plain.pairs(3))
    g = profiled.pairs(2)
    assert [next(g), next(g), g.send("s")] == [(0, "a"), 2, (2, "s")]
    log: list[str] = []
    g = profiled.closing(log)
    assert next(g) == 1
    g.close()
    assert log == ["closed"]
    assert asyncio.run(profiled.drive()) == asyncio.run(plain.drive())

    echo = records[0]
    assert echo.exited and echo.running
    # Every resumption goes through RESUME with what was sent; a throw skips it (the KeyError
    # thrown at the second pause).
    assert echo.events == [
        ("pause", "a"),
        ("resume", "b"),
        ("pause", "b"),
        ("pause", None),
        ("resume", None),
        ("pause", (None, ("k",))),
        ("resume", "stop"),
    ]


def test_generator_is_paused_while_its_consumer_runs():
    records: list[Record] = []
    m = load(GENERATORS, profiled=True, records=records)
    seen = []
    for value in m.pairs(2):
        # The consumer runs between a PAUSE and the next RESUME, except while the generator
        # delegates with `yield from`, which stays timed in full.
        seen.append((value, records[0].running))
    assert seen == [
        ((0, "a"), False),
        (2, False),
        ((2, None), False),
        (0, True),
        (1, True),
        ([None], False),
    ]
    pauses = [v for e, v in records[0].events if e == "pause"]
    assert pauses == [(0, "a"), 2, (2, None), [None]]
    assert records[0].exited and records[0].running


def test_throw_into_a_generator_shows_the_yield_position():
    def thrown(m: Any) -> tuple[Any, ...]:
        g = m.echo("a")
        next(g)
        g.send("b")
        try:
            g.throw(ValueError("v"))
        except ValueError as exc:
            frame = traceback.extract_tb(exc.__traceback__)[-1]
            return frame.name, frame.lineno, frame.end_lineno, frame.colno, frame.end_colno
        raise AssertionError("no exception")

    plain, profiled = load(GENERATORS, profiled=False), load(GENERATORS, profiled=True)
    assert thrown(profiled) == thrown(plain) == ("echo", 5, 5, 18, 27)


# -- locals(), vars(), dir() (item 10) -------------------------------------------------------

NAMESPACES = """\
import json

def make_config(host, port):
    timeout = int("30")
    return locals()

def describe(name, size):
    return json.dumps(vars())

def names(a, b):
    return dir(), sorted(locals().keys()), locals().get("a")

def inside(xs):
    return [sorted(locals()) for x in xs], (lambda y: sorted(locals()))(1)

def gen(x):
    yield dict(locals())
"""


def test_locals_vars_and_dir_do_not_show_the_record():
    plain, profiled = load(NAMESPACES, profiled=False), load(NAMESPACES, profiled=True)
    for name, args in [
        ("make_config", ("h", 1)),
        ("describe", ("a", 2)),
        ("names", (1, 2)),
        ("inside", ([1],)),
    ]:
        assert getattr(profiled, name)(*args) == getattr(plain, name)(*args), name
    assert list(profiled.gen(3)) == list(plain.gen(3)) == [{"x": 3}]
    assert profiled.make_config("h", 1) == {"host": "h", "port": 1, "timeout": 30}


# -- return lines: what pdb's --Return-- shows (frame.f_lineno at the return event) ----------

EXITS = """\
import contextlib

def statement(x):
    y = x + 1
    z = y * 2

def branches(x):
    if x:
        a = 1
    else:
        a = 2

def only_if(x):
    if x:
        a = 1

def loop(xs):
    for x in xs:
        y = x

def countdown(n):
    while n:
        n -= 1

def handled(x):
    try:
        y = 1 / x
    except ZeroDivisionError:
        y = None

def managed(x):
    with contextlib.nullcontext():
        y = x

def suppressed(x):
    with contextlib.suppress(ZeroDivisionError):
        y = 1 / x

def returns(x):
    if x:
        return 1
    y = x + 1
    return (
        y
    )

def bare(x):
    if x:
        return
    x += 1

def gen(n):
    for i in range(n):
        yield i
    z = n

def gen_returns(n):
    if n:
        return n
    yield 1

async def coro(x):
    y = x

async def coro_returns(x):
    if x:
        return x
    y = x
"""

EXIT_CALLS: list[tuple[str, tuple[Any, ...]]] = [
    ("statement", (1,)),
    ("branches", (1,)),
    ("branches", (0,)),
    ("only_if", (1,)),
    ("only_if", (0,)),
    ("loop", ([1, 2],)),
    ("loop", ([],)),
    ("countdown", (2,)),
    ("handled", (1,)),
    ("handled", (0,)),
    ("managed", (1,)),
    ("suppressed", (1,)),
    ("suppressed", (0,)),
    ("returns", (1,)),
    ("returns", (0,)),
    ("bare", (1,)),
    ("bare", (0,)),
    ("gen", (2,)),
    ("gen_returns", (1,)),
    ("gen_returns", (0,)),
    ("coro", (1,)),
    ("coro_returns", (1,)),
    ("coro_returns", (0,)),
]


def drive(func: Callable[..., Any], *args: Any) -> Any:
    """Calls ``func``; runs a generator to its end and a coroutine to completion."""
    import asyncio
    import inspect

    if inspect.iscoroutinefunction(func):
        return asyncio.run(func(*args))
    result = func(*args)
    return list(result) if inspect.isgenerator(result) else result


def trace_events(func: Callable[..., Any], *args: Any) -> list[tuple[str, int | None]]:
    """Every ``sys.settrace`` event of ``m.py`` frames, with ``frame.f_lineno``."""
    events: list[tuple[str, int | None]] = []

    def tracer(frame: types.FrameType, event: str, arg: object) -> Any:
        if frame.f_code.co_filename != "m.py":
            return None
        events.append((event, frame.f_lineno))
        return tracer

    sys.settrace(tracer)
    try:
        drive(func, *args)
    finally:
        sys.settrace(None)
    return events


def test_return_events_have_the_lines_of_plain_python():
    plain, profiled = load(EXITS, profiled=False), load(EXITS, profiled=True)
    for name, args in EXIT_CALLS:
        before = trace_events(getattr(plain, name), *args)
        after = trace_events(getattr(profiled, name), *args)
        assert after == before, (name, args)
        assert all(line is not None for event, line in after if event == "return"), name
    # The cases where one exit is reached from two lines (each gets its own line).
    returns = [
        [line for event, line in trace_events(profiled.branches, x) if event == "return"]
        for x in (1, 0)
    ]
    assert returns == [[9], [11]]


def test_profiled_results_are_unchanged_by_the_exit_copies():
    records: list[Record] = []
    plain, profiled = load(EXITS, profiled=False), load(EXITS, profiled=True, records=records)
    for name, args in EXIT_CALLS:
        assert drive(getattr(profiled, name), *args) == drive(getattr(plain, name), *args)
    assert len(records) == len(EXIT_CALLS)
    assert all(r.exited for r in records)


@pytest.mark.skipif(sys.version_info < (3, 12), reason="sys.monitoring is new in 3.12")
def test_py_return_events_have_the_lines_of_plain_python():
    mon = sys.monitoring  # type: ignore[attr-defined]
    tool = mon.DEBUGGER_ID

    def returns(func: Callable[..., Any], *args: Any) -> list[tuple[int | None, int | None]]:
        seen: list[tuple[int | None, int | None]] = []

        def on_return(code: types.CodeType, offset: int, retval: object) -> None:
            if code.co_filename == "m.py":
                frame = sys._getframe(1)
                assert frame.f_code is code
                by_offset = {start: line for start, _, line in code.co_lines()}
                at = max(start for start in by_offset if start <= offset)
                seen.append((frame.f_lineno, by_offset[at]))

        mon.use_tool_id(tool, "callweave-test")
        try:
            mon.register_callback(tool, mon.events.PY_RETURN, on_return)
            mon.set_events(tool, mon.events.PY_RETURN)
            drive(func, *args)
        finally:
            mon.set_events(tool, 0)
            mon.register_callback(tool, mon.events.PY_RETURN, None)
            mon.free_tool_id(tool)
        return seen

    plain, profiled = load(EXITS, profiled=False), load(EXITS, profiled=True)
    for name, args in EXIT_CALLS:
        after = returns(getattr(profiled, name), *args)
        assert after == returns(getattr(plain, name), *args), (name, args)
        assert after and all(a is not None and a == b for a, b in after), (name, args)
