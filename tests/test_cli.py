"""``callweave run``, ``show`` and ``check``, in subprocesses."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

APP = """
import sys
import shopkit.orders

def main():
    print("args", sys.argv[1:])
    print("total", shopkit.orders.place_order(int(sys.argv[1])))
    return int(sys.argv[2])

if __name__ == "__main__":
    sys.exit(main())
"""

ORDERS = '''
def price(i):
    return i * 2


def place_order(n):
    """Sum of prices."""
    total = 0
    for i in range(n):
        total += price(i)
    return total
'''

CHILD = """
import json, multiprocessing, subprocess, sys
import shopkit.orders

def work(n):
    return shopkit.orders.place_order(n)

if __name__ == "__main__":
    work(3)
    subprocess.run([sys.executable, "-c", "import shopkit.orders; shopkit.orders.place_order(5)"],
                   check=True)
    for method in ("spawn", "fork", "forkserver"):
        p = multiprocessing.get_context(method).Process(target=work, args=(4,))
        p.start()
        p.join()
        assert p.exitcode == 0
"""


@pytest.fixture
def project(tmp_path):
    (tmp_path / "shopkit").mkdir()
    (tmp_path / "shopkit" / "__init__.py").write_text("")
    (tmp_path / "shopkit" / "orders.py").write_text(ORDERS)
    (tmp_path / "app.py").write_text(APP)
    (tmp_path / "child.py").write_text(CHILD)
    return tmp_path


#: The installed console script (CLI tests run through it, as users do).
CONSOLE_SCRIPT = Path(sys.executable).with_name("callweave")


def child_env(project, env=None):
    """The environment of a child: no CALLWEAVE_* variables, ``project`` first on the path
    (before an inherited PYTHONPATH, which may point at the callweave under test)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("CALLWEAVE")}
    full_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(project), os.environ.get("PYTHONPATH", "")) if p
    )
    full_env.update(env or {})
    return full_env


def run(project, *args, env=None, timeout=120):
    return subprocess.run(
        [sys.executable, "-m", "callweave", *args],
        cwd=project,
        env=child_env(project, env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def cli(project, *args, env=None, timeout=120):
    """``callweave ARGS`` through the installed console script."""
    return subprocess.run(
        [str(CONSOLE_SCRIPT), *args],
        cwd=project,
        env=child_env(project, env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_run_script_passes_arguments_and_exit_code(project):
    r = run(project, "run", "--profile", "shopkit.orders:place_order", "app.py", "4", "7")
    assert r.returncode == 7, r.stderr
    assert "args ['4', '7']" in r.stdout
    assert "total 12" in r.stdout
    # The text report at exit names the profiled function and its call sites.
    assert "place_order" in r.stderr
    assert "price(i)" in r.stderr


def test_run_module_and_json_report(project):
    out = project / "report.json"
    r = run(
        project,
        "run",
        "--profile",
        "shopkit.orders",
        "--report",
        f"json:{out}",
        "-m",
        "app",
        "3",
        "0",
    )
    assert r.returncode == 0, r.stderr
    doc = json.loads(out.read_text())
    names = {f["qualname"] for f in doc["functions"]}
    assert {"place_order", "price"} <= names
    orders = next(f for f in doc["functions"] if f["qualname"] == "place_order")
    assert orders["count"] == 1


def test_run_instruments_main_by_script_name(project):
    out = project / "main.json"
    r = run(project, "run", "--profile", "app:main", "--report", f"json:{out}", "app.py", "2", "0")
    assert r.returncode == 0, r.stderr
    doc = json.loads(out.read_text())
    (main,) = [f for f in doc["functions"] if f["qualname"] == "main"]
    assert main["module"] == "__main__"
    assert any("place_order" in s["text"] for s in main["sites"])


def test_time_limit_logs_invocations_over_it(project):
    r = run(
        project,
        "run",
        "--profile",
        "shopkit.orders:place_order",
        "--time-limit",
        "0s",
        "--report",
        "none",
        "app.py",
        "3",
        "0",
    )
    assert r.returncode == 0, r.stderr
    assert "place_order finished in" in r.stderr and "above limit of 0s" in r.stderr


def test_run_propagates_the_programs_exception(project):
    (project / "bad.py").write_text("raise KeyError('boom')\n")
    r = run(project, "run", "--profile", "shopkit.orders", "bad.py")
    assert r.returncode == 1
    assert "KeyError: 'boom'" in r.stderr


def test_children_are_profiled_and_report_separately(project):
    out = project / "r.json"
    r = run(
        project,
        "run",
        "--profile",
        "shopkit.orders:place_order",
        "--report",
        f"json:{out}",
        "child.py",
        timeout=240,
    )
    assert r.returncode == 0, r.stderr
    parent = json.loads(out.read_text())
    assert [f["count"] for f in parent["functions"] if f["qualname"] == "place_order"] == [1]
    children = sorted(project.glob("r.*.json"))
    # one subprocess and three multiprocessing children (spawn, fork, forkserver)
    counts = []
    for path in children:
        doc = json.loads(path.read_text())
        counts += [f["count"] for f in doc["functions"] if f["qualname"] == "place_order"]
    assert sorted(counts) == [1, 1, 1, 1], [p.name for p in children]


def test_run_missing_script_is_a_clear_error(project):
    r = run(project, "run", "nosuch.py")
    assert r.returncode == 2
    assert "no such script 'nosuch.py'" in r.stderr
    assert "Traceback" not in r.stderr


def test_run_bad_option_is_a_clear_error(project):
    r = run(project, "run", "--frobnicate", "app.py")
    assert r.returncode == 2
    assert "unknown option '--frobnicate'" in r.stderr


def test_show_prints_rewritten_source_and_diff(project):
    r = run(project, "show", "shopkit.orders:place_order")
    assert r.returncode == 0, r.stderr
    assert "__callweave_time__" in r.stdout and "def place_order(n):" in r.stdout
    d = run(project, "show", "shopkit.orders", "--diff")
    assert d.stdout.startswith("---") and "+    for i in __callweave_time__" in d.stdout


def test_show_missing_module_is_a_clear_error(project):
    r = run(project, "show", "nosuchmodule")
    assert r.returncode == 2
    assert "nosuchmodule" in r.stderr


def test_check_lists_functions_without_importing(project):
    (project / "pyproject.toml").write_text(
        textwrap.dedent("""
        [tool.callweave]
        [[tool.callweave.profile]]
        modules = ["shopkit.**"]
        functions = ["place_*"]
        time_limit = "10ms"
    """)
    )
    # Importing shopkit.orders would fail: check must not import it.
    orders = project / "shopkit" / "orders.py"
    orders.write_text(ORDERS + "\nraise SystemExit('imported!')\n")
    r = run(project, "check")
    assert r.returncode == 0, r.stderr
    assert "shopkit.orders" in r.stdout and "place_order" in r.stdout
    assert "imported!" not in r.stdout + r.stderr


def test_check_reports_config_errors(project):
    (project / "pyproject.toml").write_text(
        '[tool.callweave]\n[[tool.callweave.profile]]\nmodules = ["a"]\ntime_limt = "1s"\n'
    )
    r = run(project, "check")
    assert r.returncode == 2
    assert "time_limt" in r.stderr


def test_python_dash_m_and_console_script_agree(project):
    assert CONSOLE_SCRIPT.exists()
    r = cli(project, "show", "shopkit.orders:price")
    assert r.returncode == 0, r.stderr
    assert "def price(i):" in r.stdout


# ----------------------------------------------------------------------- issue 7 regressions

REPORT_NONE = """
[tool.callweave]
report = "none"

[[tool.callweave.profile]]
modules = ["shopkit.orders"]
time_limit = "10s"
above = "none"
below = "none"
"""


def test_run_keeps_report_none_from_the_config(project):
    # Repro hook/report_none (item 30): the config's explicit "none" wins over the text report
    # that profile rules imply.
    (project / "pyproject.toml").write_text(REPORT_NONE)
    r = cli(project, "run", "app.py", "2", "0")
    assert r.returncode == 0, r.stderr
    assert "total 2" in r.stdout
    assert "place_order" not in r.stderr and "profiled function" not in r.stderr
    # Without the key, profile rules still mean a text report; --profile too.
    (project / "pyproject.toml").write_text(REPORT_NONE.replace('report = "none"\n', ""))
    r = cli(project, "run", "app.py", "2", "0")
    assert "place_order" in r.stderr
    (project / "pyproject.toml").write_text(REPORT_NONE)
    r = cli(project, "run", "--profile", "shopkit.orders:price", "app.py", "2", "0")
    assert r.returncode == 0 and "profiled function" not in r.stderr, r.stderr
    # --report on the command line wins over the file.
    r = cli(project, "run", "--report", "text", "app.py", "2", "0")
    assert "place_order" in r.stderr


@pytest.mark.parametrize(
    ("option", "value", "reason"),
    [
        ("--time-limit", "5x", "--time-limit '5x': unknown unit 'x'"),
        ("--time-limit", "1m30", "--time-limit '1m30': a duration string needs a unit"),
        ("--report", "html", "--report 'html': must be \"text\""),
        ("--report", "json", "--report 'json': \"json\" needs a file"),
    ],
)
def test_run_bad_option_values_are_one_line_errors(project, option, value, reason):
    r = cli(project, "run", "--profile", "shopkit.orders", option, value, "app.py", "1", "0")
    assert r.returncode == 2
    assert r.stderr == f"callweave: {reason}" + r.stderr.partition(reason)[2]
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_run_time_limit_accepts_go_style_durations(project):
    r = cli(
        project,
        *("run", "--profile", "shopkit.orders:place_order", "--time-limit", "1h2m3.5s"),
        *("--report", "json:r.json", "app.py", "2", "0"),
    )
    assert r.returncode == 0, r.stderr
    doc = json.loads((project / "r.json").read_text())
    (f,) = [f for f in doc["functions"] if f["qualname"] == "place_order"]
    assert f["time_limit"] == 3723.5


def test_run_wrap_with_the_documented_signature_passes_call_keywords(project):
    # Item 31: a wrapped call with its own call= / site= keywords reaches the callee.
    (project / "tracing.py").write_text(
        "def trace(call, /, *args, **kwargs):\n"
        "    print('traced', getattr(call, '__name__', '?'))\n"
        "    return call(*args, **kwargs)\n"
    )
    (project / "jobs.py").write_text(
        "def submit(job, call=None, site=None):\n"
        "    return (job, call, site)\n\n"
        "def main():\n"
        "    print(submit(1, call='cb', site='s'))\n\n"
        "main()\n"
    )
    r = cli(project, "run", "--wrap", "jobs:main=tracing:trace", "jobs.py")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["traced submit", "traced print", "(1, 'cb', 's')"]


def test_check_says_when_rewritten_modules_are_not_cached(project):
    (project / "pyproject.toml").write_text(
        textwrap.dedent("""
        [tool.callweave]
        [[tool.callweave.profile]]
        modules = ["shopkit.**"]
        time_limit = "10ms"
    """)
    )
    off = run(project, "check", env={"PYTHONDONTWRITEBYTECODE": "1"})
    assert off.returncode == 0, off.stderr
    assert "PYTHONDONTWRITEBYTECODE is set" in off.stdout
    assert "not cached" in off.stdout
    env = {k: v for k, v in child_env(project).items() if k != "PYTHONDONTWRITEBYTECODE"}
    on = subprocess.run(
        [sys.executable, "-m", "callweave", "check"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert on.returncode == 0, on.stderr
    assert "PYTHONDONTWRITEBYTECODE" not in on.stdout
