"""pdb on profiled code shows the lines plain Python shows, ``--Return--`` included.

The exits of a profiled function (the ``finally: EXIT(RECORD)`` footer before each return)
carry no location of their own; they take the line of the instruction that reaches them, as
plain Python's returns do, so pdb never shows ``(None)`` or "lineno is None" there.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import callweave

CALLWEAVE_ROOT = Path(callweave.__file__).resolve().parent.parent

TARGET = """\
def statement(x):
    y = x + 1
    z = y * 2


def branches(x):
    if x:
        a = 1
    else:
        a = 2


def returns(x):
    if x:
        return 1
    y = x + 1
    return (
        y
    )


def loop(xs):
    for x in xs:
        y = x


def numbers(n):
    for i in range(n):
        yield i
    z = n
"""

APP = """\
import sys
if sys.argv[1] == "hook":
    import callweave
    from callweave.config import Config, ProfileRule
    callweave.install(Config(profile=(ProfileRule(modules=("target",), time_limit=1.0),)),
                      report_at_exit=False)
import target
target.statement(1)
target.branches(1)
target.branches(0)
target.returns(1)
target.returns(0)
target.loop([1])
list(target.numbers(1))
if sys.argv[1] == "hook":
    assert type(target.__loader__).__name__ == "CallweaveLoader", target.__loader__
"""

# Breakpoints on each function's first body line; `next` through `statement`, `returns(0)`,
# `loop` and the generator (pdb stops at no return of a generator's frame), `step` through
# `branches(0)`, `return` from `branches(1)` and `returns(1)`.
COMMANDS = """\
break target.py:2
break target.py:7
break target.py:14
break target.py:23
break target.py:28
continue
next
next
next
continue
return
continue
step
step
step
continue
return
continue
next
next
next
next
continue
next
next
next
continue
next
next
next
next
continue
quit
"""

STOP = re.compile(r"^(?:\(Pdb\) )*> .*?(\w+\.py)\((\w+)\)(\S*)$")


def session(root: Path, mode: str, commands: str = COMMANDS) -> tuple[list[str], str]:
    """The places pdb stops at (file, line, function and return value) and its output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CALLWEAVE_", "COVERAGE_"))}
    env.update(
        PYTHONDONTWRITEBYTECODE="1",
        PYTHONPATH=os.pathsep.join([str(CALLWEAVE_ROOT), str(root)]),
    )
    done = subprocess.run(
        [sys.executable, "-m", "pdb", "app.py", mode],
        cwd=root,
        env=env,
        input=commands,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    out = done.stdout + done.stderr
    stops = []
    for line in out.splitlines():
        if "--Return--" in line:
            stops.append("--Return--")
        m = STOP.match(line)
        if m:
            stops.append(" ".join(m.groups()))
    return stops, out


def test_pdb_stops_at_the_same_lines_as_plain(tmp_path):
    (tmp_path / "target.py").write_text(TARGET)
    (tmp_path / "app.py").write_text(APP)
    plain, plain_out = session(tmp_path, "plain")
    hooked, hooked_out = session(tmp_path, "hook")
    assert "Error" not in hooked_out and "Traceback" not in hooked_out, hooked_out
    assert "lineno is None" not in hooked_out
    assert "(None)" not in hooked_out
    # Every function's return is shown, at the line plain Python shows.
    returns = [stop for prev, stop in itertools.pairwise(plain) if prev == "--Return--"]
    assert set(returns) >= {
        "target.py 3 statement()->None",
        "target.py 8 branches()->None",
        "target.py 10 branches()->None",
        "target.py 15 returns()->1",
        "target.py 17 returns()->1",
        "target.py 23 loop()->None",
    }, plain_out
    assert hooked == plain, hooked_out


# --- The exception path ------------------------------------------------------------------
#
# An exception leaves a profiled function through the injected ``finally``'s handler, which
# has no line; the frame must still leave at the instruction that raised, as plain Python's
# does: tracers' ``return`` event, ``tb_frame.f_lineno`` afterwards and pdb's ``--Return--``.

RAISING = """\
import contextlib


def direct(x):
    y = x + 1
    raise ValueError(y)


def inner():
    raise KeyError(1)


def nested(x):
    y = x
    inner()
    return y


@contextlib.contextmanager
def managed():
    yield


def in_with(x):
    with managed():
        y = x
        raise ValueError(y)
    return 1


def reraises(x):
    try:
        y = x
        raise ValueError(y)
    except ValueError:
        z = 1
        raise
    return 2


def raises_from(x):
    try:
        inner()
    except KeyError as e:
        raise ValueError(x) from e


def own_finally(x):
    try:
        raise ValueError(x)
    finally:
        y = 1


def generator(x):
    yield x
    raise ValueError(x)


def suspended(x):
    yield x
    yield x + 1


async def coroutine(x):
    y = x
    raise ValueError(y)


async def async_generator(x):
    yield x
    raise ValueError(x)


def caught(x):
    try:
        inner()
    except KeyError:
        return 1


def in_loop(xs):
    for x in xs:
        if x:
            raise ValueError(x)
    return 0
"""

RAISING_APP = """\
import asyncio
import json
import sys

if sys.argv[1] == "hook":
    import callweave
    from callweave.config import Config, ProfileRule

    callweave.install(
        Config(profile=(ProfileRule(modules=("raising",), time_limit=1.0),)),
        report_at_exit=False,
    )
import raising

if sys.argv[1] == "hook":
    assert type(raising.__loader__).__name__ == "CallweaveLoader", raising.__loader__


def drain(agen):
    async def run():
        return [x async for x in agen]

    return asyncio.run(run())


def thrown():
    g = raising.suspended(1)
    next(g)
    g.throw(KeyError(2))


def closed():
    g = raising.suspended(1)
    next(g)
    g.close()


CASES = {
    "direct": lambda: raising.direct(1),
    "nested": lambda: raising.nested(1),
    "in_with": lambda: raising.in_with(1),
    "reraises": lambda: raising.reraises(1),
    "raises_from": lambda: raising.raises_from(1),
    "own_finally": lambda: raising.own_finally(1),
    "generator": lambda: list(raising.generator(1)),
    "thrown": thrown,
    "closed": closed,
    "coroutine": lambda: asyncio.run(raising.coroutine(1)),
    "async_generator": lambda: drain(raising.async_generator(1)),
    "caught": lambda: raising.caught(1),
    "in_loop": lambda: raising.in_loop([0, 1]),
}


def trace(case):
    events = []

    def tracer(frame, event, arg):
        if frame.f_code.co_filename.endswith("raising.py"):
            events.append([frame.f_code.co_name, event, frame.f_lineno])
        return tracer

    sys.settrace(tracer)
    try:
        case()
    except BaseException as e:
        tb = e.__traceback__.tb_next
        frames = []
        while tb is not None:
            # The frame's line after it was left, and the traceback entry's position.
            frames.append([tb.tb_frame.f_lineno, tb.tb_lineno, tb.tb_lasti >= 0])
            tb = tb.tb_next
        events.append(["raised", type(e).__name__, frames])
    finally:
        sys.settrace(None)
    return events


def monitor(case):
    mon = sys.monitoring
    tool = mon.PROFILER_ID
    mon.use_tool_id(tool, "test")
    events = []

    def line_of(code, offset):
        return next(
            (line for start, end, line in code.co_lines() if start <= offset < end), None
        )

    def on(name):
        def callback(code, offset, *rest):
            if code.co_filename.endswith("raising.py"):
                events.append([code.co_name, name, line_of(code, offset)])

        return callback

    names = ("PY_START", "PY_RESUME", "PY_RETURN", "PY_YIELD", "PY_THROW", "PY_UNWIND", "RAISE",
             "RERAISE", "EXCEPTION_HANDLED")
    for name in names:
        mon.register_callback(tool, getattr(mon.events, name), on(name))
    mon.register_callback(
        tool,
        mon.events.LINE,
        lambda code, line: events.append([code.co_name, "LINE", line])
        if code.co_filename.endswith("raising.py")
        else None,
    )
    mask = mon.events.LINE
    for name in names:
        mask |= getattr(mon.events, name)
    mon.set_events(tool, mask)
    try:
        case()
    except BaseException:
        pass
    finally:
        mon.set_events(tool, 0)
        mon.free_tool_id(tool)
    return events


out = {"trace": {name: trace(case) for name, case in CASES.items()}}
if sys.version_info >= (3, 12):
    out["monitor"] = {name: monitor(case) for name, case in CASES.items()}
print(json.dumps(out))
"""


def raising_events(root: Path, mode: str) -> dict[str, dict[str, list[list[object]]]]:
    """Trace and monitoring events of every case of ``RAISING_APP`` run ``plain`` or ``hook``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CALLWEAVE_", "COVERAGE_"))}
    env.update(
        PYTHONDONTWRITEBYTECODE="1",
        PYTHONPATH=os.pathsep.join([str(CALLWEAVE_ROOT), str(root)]),
    )
    done = subprocess.run(
        [sys.executable, "app.py", mode],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def raising_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """``RAISING_APP``'s events, plain and with every function of ``raising`` profiled."""
    root = tmp_path_factory.mktemp("raising")
    (root / "raising.py").write_text(RAISING)
    (root / "app.py").write_text(RAISING_APP)
    return {mode: raising_events(root, mode) for mode in ("plain", "hook")}


def closes_without_running(plain_trace: list[list[object]]) -> bool:
    """Whether ``close()`` left the plain generator's frame without running it.

    CPython 3.13 closes a generator suspended outside any ``try`` without throwing
    ``GeneratorExit`` into it; a profiled generator's yields are inside the injected ``try``,
    so its ``finally`` runs (it ends the invocation's record): a documented difference.
    """
    return not any(event == "exception" for _, event, _ in plain_trace)


def test_trace_events_on_the_exception_path_match_plain(raising_runs):
    plain, hooked = raising_runs["plain"]["trace"], raising_runs["hook"]["trace"]
    # The frame leaves at the line that raised: never None, and a line of its own body.
    for events in plain.values():
        assert all(line is not None for _, event, line in events if event == "return"), events
    for case in plain:
        if case == "closed" and closes_without_running(plain[case]):
            assert hooked[case][: len(plain[case])] == plain[case], case
            assert all(line is not None for *_, line in hooked[case]), hooked[case]
            continue
        assert hooked[case] == plain[case], case


@pytest.mark.skipif(sys.version_info < (3, 12), reason="sys.monitoring is new in 3.12")
def test_monitoring_events_on_the_exception_path(raising_runs):
    """Located events match; the injected handler adds only unlocated ones.

    The handler's own events cannot carry the raising line: ``EXCEPTION_HANDLED`` and
    ``RERAISE`` report the handler's instructions and ``PY_UNWIND`` the one that unwinds (as
    in plain Python's own ``try``/``finally`` or ``with``), which have no location.
    """
    plain, hooked = raising_runs["plain"]["monitor"], raising_runs["hook"]["monitor"]
    handler_events = {"EXCEPTION_HANDLED", "RERAISE", "PY_UNWIND"}
    for case in plain:
        if case == "closed" and closes_without_running(raising_runs["plain"]["trace"][case]):
            assert hooked[case][: len(plain[case])] == plain[case], case
            continue
        extra = [e for e in hooked[case] if e not in plain[case]]
        assert all(event in handler_events and line is None for _, event, line in extra), case

        def located(events: list[list[object]]) -> list[list[object]]:
            return [e for e in events if e[1] not in handler_events or e[2] is not None]

        def unwinds(events: list[list[object]]) -> list[object]:
            return [e[0] for e in events if e[1] == "PY_UNWIND"]

        plain_located = [e for e in located(plain[case]) if e[1] != "PY_UNWIND"]
        assert located(hooked[case]) == plain_located, case
        assert unwinds(hooked[case]) == unwinds(plain[case]), case


PDB_RAISING_APP = """\
import sys
if sys.argv[1] == "hook":
    import callweave
    from callweave.config import Config, ProfileRule
    callweave.install(Config(profile=(ProfileRule(modules=("raising",), time_limit=1.0),)),
                      report_at_exit=False)
import raising
for f in (raising.direct, raising.nested, raising.in_with, raising.reraises,
          raising.own_finally, lambda x: list(raising.generator(x))):
    try:
        f(1)
    except Exception:
        pass
if sys.argv[1] == "hook":
    assert type(raising.__loader__).__name__ == "CallweaveLoader", raising.__loader__
"""

# A breakpoint on the line that raises in each function, then `next` over the raise, out of
# the function (`--Return--`) and back into the loop; `step` through the generator's end.
PDB_RAISING_COMMANDS = """\
break raising.py:6
break raising.py:15
break raising.py:27
break raising.py:37
break raising.py:50
break raising.py:57
continue
next
next
next
continue
next
next
next
continue
next
next
next
next
continue
next
next
next
continue
next
next
next
next
continue
step
step
step
step
quit
"""


def test_pdb_steps_out_of_raising_functions_like_plain(tmp_path):
    (tmp_path / "raising.py").write_text(RAISING)
    (tmp_path / "app.py").write_text(PDB_RAISING_APP)
    plain, plain_out = session(tmp_path, "plain", PDB_RAISING_COMMANDS)
    hooked, hooked_out = session(tmp_path, "hook", PDB_RAISING_COMMANDS)
    assert "Traceback" not in hooked_out, hooked_out
    assert "lineno is None" not in hooked_out
    assert "(None)" not in hooked_out, hooked_out
    # pdb leaves each raising function at the line that raised (its `finally` for
    # own_finally), as plain Python does.
    returns = [stop for prev, stop in itertools.pairwise(plain) if prev == "--Return--"]
    assert set(returns) >= {
        "raising.py 6 direct()->None",
        "raising.py 15 nested()->None",
        "raising.py 27 in_with()->None",
        "raising.py 37 reraises()->None",
        "raising.py 52 own_finally()->None",
        "raising.py 57 generator()->None",
    }, plain_out
    assert hooked == plain, hooked_out
