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


def run(project, *args, env=None, timeout=120):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("CALLWEAVE")}
    full_env["PYTHONPATH"] = str(project)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "callweave", *args],
        cwd=project,
        env=full_env,
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
    exe = Path(sys.executable).with_name("callweave")
    assert exe.exists()
    r = subprocess.run(
        [str(exe), "show", "shopkit.orders:price"],
        cwd=project,
        env={**os.environ, "PYTHONPATH": str(project)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert "def price(i):" in r.stdout
