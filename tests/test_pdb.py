"""pdb on profiled code shows the lines plain Python shows, ``--Return--`` included.

The exits of a profiled function (the ``finally: EXIT(RECORD)`` footer before each return)
carry no location of their own; they take the line of the instruction that reaches them, as
plain Python's returns do, so pdb never shows ``(None)`` or "lineno is None" there.
"""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
from pathlib import Path

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


def session(root: Path, mode: str) -> tuple[list[str], str]:
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
        input=COMMANDS,
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
