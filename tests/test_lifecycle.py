"""The exit report survives SIGTERM and terminated pools (issue 7 item 16, repros 19 and 28).

Every test runs a program in a subprocess through the installed ``callweave`` console script.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

CONSOLE_SCRIPT = Path(sys.executable).with_name("callweave")

WORK = "def work(i):\n    return abs(i) + len(str(i))\n"

POOL = """
import multiprocessing as mp, sys, wmod
if __name__ == "__main__":
    with mp.get_context(sys.argv[1]).Pool(3) as pool:
        assert sum(pool.map(wmod.work, range(60))) > 0
"""

SELF_TERM = """
import os, signal, wmod
for i in range(7):
    wmod.work(i)
os.kill(os.getpid(), signal.SIGTERM)
raise SystemExit("still running after SIGTERM")
"""

WAIT_FOR_TERM = """
import sys, threading, wmod
for i in range(5):
    wmod.work(i)
print("ready", flush=True)
threading.Event().wait()   # until SIGTERM
"""


def env_for(project):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLWEAVE")}
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(project), os.environ.get("PYTHONPATH", "")) if p
    )
    # Where pool workers save their profiles; short, for forkserver's socket (AF_UNIX paths
    # are limited to about 100 bytes).
    env["TMPDIR"] = os.path.realpath(project / "tmp")
    return env


@pytest.fixture
def project(tmp_path):
    short_tmp = tempfile.mkdtemp(prefix="cwt")
    (tmp_path / "tmp").symlink_to(short_tmp)
    try:
        yield populate(tmp_path)
    finally:
        shutil.rmtree(short_tmp, ignore_errors=True)


def populate(tmp_path):
    (tmp_path / "wmod.py").write_text(WORK)
    (tmp_path / "pool.py").write_text(POOL)
    (tmp_path / "self_term.py").write_text(SELF_TERM)
    (tmp_path / "wait.py").write_text(WAIT_FOR_TERM)
    return tmp_path


def callweave(project, *args, timeout=180):
    return subprocess.run(
        [str(CONSOLE_SCRIPT), *args],
        cwd=project,
        env=env_for(project),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def work_count(paths):
    return sum(
        f["count"]
        for p in paths
        for f in json.loads(p.read_text())["functions"]
        if f["qualname"] == "work"
    )


def test_sigterm_writes_the_report_and_dies_by_sigterm(project):
    r = callweave(
        project, "run", "--profile", "wmod:work", "--report", "json:r.json", "self_term.py"
    )
    assert r.returncode == -signal.SIGTERM, r.stderr
    assert "still running" not in r.stderr
    assert work_count([project / "r.json"]) == 7


def test_sigterm_from_outside_writes_the_text_report(project):
    p = subprocess.Popen(
        [str(CONSOLE_SCRIPT), "run", "--profile", "wmod:work", "wait.py"],
        cwd=project,
        env=env_for(project),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert p.stdout.readline() == "ready\n"
        p.send_signal(signal.SIGTERM)
        _out, err = p.communicate(timeout=120)
    finally:
        p.kill()
    assert p.returncode == -signal.SIGTERM, err
    assert "wmod:work" in err and "1 profiled function ran 5 times" in err


POOL_HANDLERS = """
import multiprocessing as mp, signal, sys, wmod

def handler(_):
    h = signal.getsignal(signal.SIGTERM)
    return h.name if h in (signal.SIG_DFL, signal.SIG_IGN) else h.__module__

if __name__ == "__main__":
    with mp.get_context(sys.argv[1]).Pool(2) as pool:
        print(handler(0), *sorted(set(pool.map(handler, range(4)))), flush=True)
"""


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_a_terminated_pool_ends_and_its_workers_keep_the_default_sigterm(project, method):
    # `with Pool() as p:` ends with Pool.terminate(), which holds the task queue's lock while it
    # sends SIGTERM to every worker and joins them. A Python-level SIGTERM handler in a worker
    # could be left pending by a worker about to block on that lock: the pool then never
    # ended (seen about once in ten runs). Workers keep SIGTERM's default action.
    (project / "handlers.py").write_text(POOL_HANDLERS)
    r = callweave(
        project, "run", "--profile", "wmod:work", "--report", "json:r.json", "handlers.py", method
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["callweave.lifecycle", "SIG_DFL"]


def spool_dirs(project):
    return sorted((project / "tmp").glob("callweave-pool-*"))


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_a_terminated_pool_keeps_what_its_workers_profiled(project, method):
    # Each worker saves its profile at the end of each task, before it sends the result: the
    # workers that Pool.terminate() kills leave it to the parent's report, the others (a
    # worker may take the pool's end-of-work sentinel first) write their own reports. Every
    # call is counted once, in one report or the other, and nothing is left behind.
    for _ in range(3):
        shutil.rmtree(project / "reps", ignore_errors=True)
        r = callweave(
            project,
            "run",
            "--profile",
            "wmod:work",
            "--report",
            "json:reps/r.json",
            "pool.py",
            method,
        )
        assert r.returncode == 0, r.stderr
        assert "callweave:" not in r.stderr
        assert work_count(sorted((project / "reps").glob("*.json"))) == 60
        assert spool_dirs(project) == []


def test_a_terminated_pool_is_in_the_text_report(project):
    r = callweave(project, "run", "--profile", "wmod:work", "pool.py", "fork")
    assert r.returncode == 0, r.stderr
    # The parent's report (the last one written) has the terminated workers' calls; a worker
    # that took the sentinel first printed its own.
    counts = re.findall(r"ran (\d+) times?", r.stderr)
    assert sum(map(int, counts)) == 60, r.stderr
    assert spool_dirs(project) == []


CLOSE_JOIN = """
import multiprocessing as mp, sys, wmod
if __name__ == "__main__":
    pool = mp.get_context(sys.argv[1]).Pool(3)
    assert sum(pool.map(wmod.work, range(60))) > 0
    pool.close()
    pool.join()
"""


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_a_joined_pools_workers_write_their_own_reports(project, method):
    (project / "close_join.py").write_text(CLOSE_JOIN)
    r = callweave(
        project,
        "run",
        "--profile",
        "wmod:work",
        "--report",
        "json:reps/r.json",
        "close_join.py",
        method,
    )
    assert r.returncode == 0, r.stderr
    assert work_count([project / "reps" / "r.json"]) == 0  # the parent ran none itself
    assert work_count(sorted((project / "reps").glob("r.*.json"))) == 60
    assert spool_dirs(project) == []


DIES_IN_A_TASK = """
import multiprocessing as mp, os, sys, time, wmod

def die(marker):
    wmod.work(1)  # lost: the worker dies before the task ends
    open(marker, "w").close()
    os._exit(1)

if __name__ == "__main__":
    with mp.get_context(sys.argv[1]).Pool(2) as pool:
        assert len(pool.map(wmod.work, range(40), chunksize=1)) == 40
        pool.apply_async(die, ("died",))
        while not os.path.exists("died"):
            time.sleep(0.01)
"""


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_a_worker_that_dies_in_a_task_keeps_its_finished_tasks_and_says_so(project, method):
    (project / "dies.py").write_text(DIES_IN_A_TASK)
    r = callweave(
        project, "run", "--profile", "wmod:work", "--report", "json:reps/r.json", "dies.py", method
    )
    assert r.returncode == 0, r.stderr
    # The 40 finished tasks are counted (in the parent's report for workers that did not end
    # normally); the call inside the task cut short by os._exit is lost, and said so in one
    # line by the parent.
    assert work_count(sorted((project / "reps").glob("*.json"))) == 40
    lines = [line for line in r.stderr.splitlines() if line.startswith("callweave:")]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("callweave: 1 pool worker ended inside a task"), r.stderr
    assert spool_dirs(project) == []


HANDLER_CHECK = """
import signal, sys
{before}
import callweave.auto
handler = signal.getsignal(signal.SIGTERM)
print(handler.name if handler in (signal.SIG_DFL, signal.SIG_IGN) else handler.__module__)
"""


@pytest.mark.parametrize(
    ("before", "report", "expected"),
    [
        ("", "text", "callweave.lifecycle"),  # installed where SIGTERM is default
        ("", "none", "SIG_DFL"),  # no report, no handler
        ("signal.signal(signal.SIGTERM, signal.SIG_IGN)", "text", "SIG_IGN"),
        ("signal.signal(signal.SIGTERM, lambda *a: None)", "text", "__main__"),
    ],
)
def test_the_handler_is_installed_only_over_the_default(project, before, report, expected):
    (project / "pyproject.toml").write_text(
        f'[tool.callweave]\nreport = "{report}"\n[[tool.callweave.profile]]\n'
        'modules = ["wmod"]\ntime_limit = "1s"\n'
    )
    r = subprocess.run(
        [sys.executable, "-c", HANDLER_CHECK.format(before=before)],
        cwd=project,
        env=env_for(project),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == expected


def test_a_programs_own_sigterm_handler_wins(project):
    # A program that handles SIGTERM itself and exits normally: atexit writes the report.
    (project / "own.py").write_text(
        "import os, signal, sys, wmod\n"
        "signal.signal(signal.SIGTERM, lambda *a: sys.exit(3))\n"
        "wmod.work(1)\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n"
    )
    r = callweave(project, "run", "--profile", "wmod:work", "--report", "json:r.json", "own.py")
    assert r.returncode == 3, r.stderr
    assert work_count([project / "r.json"]) == 1


def test_installing_outside_the_main_thread_says_sigterm_loses_the_report(project):
    code = (
        "import signal, threading, warnings\n"
        "from callweave.config import Config, ProfileRule, Report\n"
        "import callweave\n"
        "config = Config(profile=(ProfileRule(modules=('wmod',), time_limit=1.0),),\n"
        "                report=Report('text'))\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    t = threading.Thread(target=callweave.install, args=(config,))\n"
        "    t.start(); t.join()\n"
        "print(signal.getsignal(signal.SIGTERM) is signal.SIG_DFL)\n"
        "print([str(w.message) for w in caught])\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code],
        cwd=project,
        env=env_for(project),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    default, messages = r.stdout.splitlines()
    assert default == "True"
    assert "a SIGTERM will end the process without writing the report" in messages


SIGTERM_DURING_WRITE = """
import os, signal, sys
from pathlib import Path
from callweave import lifecycle, reports
from callweave.config import Report

calls = []


def slow_write(spec, **kwargs):
    calls.append(spec)
    os.kill(os.getpid(), signal.SIGTERM)  # arrives while the exit report is being written
    total = 0
    for i in range(10000):  # the handler runs between these bytecodes
        total += i
    Path(sys.argv[1]).write_text(f"finished {len(calls)}")


reports.write_exit_report = slow_write
lifecycle.arm(Report("text"), child=False)
"""


def test_sigterm_while_the_exit_report_is_written_waits_for_it(project):
    # atexit is writing; the handler must not write again nor cut the write short, and the
    # process still ends by SIGTERM.
    marker = project / "marker"
    r = subprocess.run(
        [sys.executable, "-c", SIGTERM_DURING_WRITE, str(marker)],
        cwd=project,
        env=env_for(project),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == -signal.SIGTERM, r.stderr
    assert marker.read_text() == "finished 1"


SLOTS = """
import os, sys, wmod
from pathlib import Path
from callweave import lifecycle
from callweave.profiler import stats

spool = Path(sys.argv[1])
spooler = lifecycle._Spooler(spool)
slot = [spool / f"{os.getpid()}.{i}.spool" for i in (0, 1)]

def mine():
    return [s for s in stats() if s.count]

spooler.flush()                          # nothing recorded yet: nothing written
print("idle", spooler.sequence, [p.exists() for p in slot])
wmod.work(1)
spooler.flush()                          # slot 0
first = mine()
print("saved", spooler.sequence, lifecycle._read_slot(slot[0]) == (0, first))
spooler.flush()                          # nothing recorded since: skipped
print("unchanged", spooler.sequence)
wmod.work(2)
spooler.flush()                          # slot 1
print("saved", spooler.sequence, lifecycle._read_slot(slot[1]) == (1, mine()))
from callweave.profiler import reset_stats
reset_stats()
wmod.work(3)                             # the same count as after the first save, new numbers
spooler.flush()                          # slot 0 again
print("after reset", spooler.sequence, lifecycle._read_slot(slot[0]) == (2, mine()))
data = slot[0].read_bytes()
slot[0].write_bytes(data[:-3])           # a write cut short: the older slot still holds
print("torn", lifecycle._read_slot(slot[0]), lifecycle._read_slot(slot[1])[0])
"""


def test_a_pool_workers_save_is_skipped_when_unchanged_and_a_torn_slot_is_refused(project):
    (project / "slots.py").write_text(SLOTS)
    r = callweave(project, "run", "--profile", "wmod:work", "slots.py", str(project / "spool"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "idle 0 [False, False]",
        "saved 1 True",
        "unchanged 1",
        "saved 2 True",
        "after reset 3 True",
        "torn None 1",
    ], r.stderr
