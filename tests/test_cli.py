"""``callweave run``, ``show`` and ``check``, in subprocesses."""

import json
import os
import re
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


PROFILE_SHOPKIT = """
[tool.callweave]
report = "none"

[[tool.callweave.profile]]
modules = ["shopkit.**"]
time_limit = "10s"
"""


def test_show_prints_rewritten_source_and_diff(project):
    (project / "pyproject.toml").write_text(PROFILE_SHOPKIT)
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
    (project / "pyproject.toml").write_text(PROFILE_SHOPKIT)
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
        ("--time-limit", "1m30", "--time-limit '1m30': a duration needs a unit"),
        ("--report", "xml", "--report 'xml': must be \"text\""),
        ("--report", "html", "--report 'html': \"html\" needs a file"),
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


# ----------------------------------------------------------------------- issue 11: the CLI
# Through the installed console script, from the project's directory, with nothing of the
# project on PYTHONPATH (as a user runs it).


def project_env(env=None):
    full_env = {
        k: v for k, v in os.environ.items() if not k.startswith("CALLWEAVE") and k != "PYTHONPATH"
    }
    full_env.update(env or {})
    return full_env


def console(project, *args, env=None, timeout=120):
    """``callweave ARGS`` through the installed console script, from ``project``."""
    return subprocess.run(
        [str(CONSOLE_SCRIPT), *args],
        cwd=project,
        env=project_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def dash_m(project, *args, env=None, timeout=120):
    """``python -m callweave ARGS`` from ``project``."""
    return subprocess.run(
        [sys.executable, "-m", "callweave", *args],
        cwd=project,
        env=project_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


TRACING = """
def trace_call(call, /, *args, **kwargs):
    print("traced", getattr(call, "__name__", "?"))
    return call(*args, **kwargs)

NOT_CALLABLE = 42
"""

PROJECT_CONFIG = """
[tool.callweave]
report = "json:report.json"

[[tool.callweave.profile]]
modules = ["shopkit.orders"]
functions = ["place_order"]
time_limit = "10s"

[[tool.callweave.wrap]]
modules = ["shopkit.orders"]
functions = ["place_order"]
wrapper = "shopkit.tracing:trace_call"
"""


@pytest.fixture
def wrapped_project(project):
    (project / "shopkit" / "tracing.py").write_text(TRACING)
    (project / "shopkit" / "__main__.py").write_text(
        "import sys\nfrom shopkit.orders import place_order\n"
        "print('total', place_order(int(sys.argv[1])))\n"
    )
    (project / "pyproject.toml").write_text(PROJECT_CONFIG)
    return project


@pytest.mark.parametrize("how", [console, dash_m], ids=["console-script", "python-m"])
def test_the_console_script_finds_the_projects_modules_as_python_m_does(wrapped_project, how):
    project = wrapped_project
    r = how(project, "run", "-m", "shopkit", "3")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["traced range"] + ["traced price"] * 3 + ["total 6"]
    doc = json.loads((project / "report.json").read_text())
    assert [(f["qualname"], f["count"]) for f in doc["functions"]] == [("place_order", 1)]
    (project / "report.json").unlink()
    r = how(project, "run", "app.py", "2", "0")
    assert r.returncode == 0, r.stderr
    assert "total 2" in r.stdout and "traced price" in r.stdout
    r = how(project, "show", "shopkit.orders:place_order")
    assert r.returncode == 0, r.stderr
    assert "def place_order(n):" in r.stdout
    r = how(project, "check")
    assert r.returncode == 0, r.stderr
    assert f"shopkit.orders ({project / 'shopkit' / 'orders.py'}): 1 function(s)" in r.stdout


ONE_LINE_ERRORS = [
    (
        ["--time-limit", "fast"],
        "--time-limit 'fast': not a duration: expected numbers with units",
    ),
    (
        ["--time-limit", "5"],
        "--time-limit '5': a duration needs a unit after every number (ns, us, ms, s, m or h), "
        "such as 50ms, 1.5s or 1m30s",
    ),
    (["--profile", "pkg/x"], "--profile 'pkg/x': module 'pkg/x': "),
    (["--profile", "shopkit.orders:"], "--profile 'shopkit.orders:': expected MODULE or"),
    (["--report", "html"], "--report 'html': \"html\" needs a file"),
    (["--report", "xml"], "--report 'xml': must be \"text\""),
    (["--wrap", "shopkit.orders"], "--wrap 'shopkit.orders': expected MOD[:FUNC]=pkg.mod:callable"),
    (
        ["--wrap", "shopkit.orders=shopkit.tracing:nothing"],
        "--wrap 'shopkit.orders=shopkit.tracing:nothing': 'shopkit.tracing' has no attribute "
        "'nothing'",
    ),
    (
        ["--wrap", "shopkit.orders=shopkit.tracing:NOT_CALLABLE"],
        "--wrap 'shopkit.orders=shopkit.tracing:NOT_CALLABLE': 'shopkit.tracing.NOT_CALLABLE' "
        "is not callable: it is a int",
    ),
    (["-m", "missing_module"], "-m 'missing_module': no module named 'missing_module'"),
    (
        ["-m", "shopkit.ordrs"],
        "-m 'shopkit.ordrs': no module named 'shopkit.ordrs'; did you mean \"shopkit.orders\"",
    ),
    (["-m", "shopkit"], "-m 'shopkit': is a package without a __main__ module"),
    (["nosuch.py"], "callweave run: no such script 'nosuch.py'"),
]


@pytest.mark.parametrize(("args", "message"), ONE_LINE_ERRORS)
def test_every_run_error_is_one_line_with_status_2_and_no_report(project, args, message):
    (project / "shopkit" / "tracing.py").write_text(TRACING)
    # A configuration with a report: an error must not leave an empty one behind.
    (project / "pyproject.toml").write_text(
        PROFILE_SHOPKIT.replace('report = "none"', 'report = "json:report.json"')
    )
    if args[0] in ("--profile", "--time-limit", "--report", "--wrap"):
        args = [*args, "app.py", "1", "0"]
    if args[0] == "--time-limit":
        args = ["--profile", "shopkit.orders", *args]
    r = console(project, "run", *args)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith(f"callweave: {message}"), r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert "tool.callweave" not in r.stderr
    assert r.stdout == ""
    assert not list(project.glob("report*.json"))


def test_usage_errors_are_one_line(project):
    for args in (["frobnicate"], ["show"], []):
        r = console(project, *args)
        assert r.returncode == 2
        assert r.stderr.startswith("callweave: ") and r.stderr.count("\n") == 1, r.stderr


def test_version_and_help(project):
    r = console(project, "--version")
    assert r.returncode == 0
    assert re.fullmatch(r"callweave \d+\.\d+\.\d+\S*\n", r.stdout), r.stdout
    for args in (["--help"], ["run", "--help"], ["show", "--help"], ["check", "--help"]):
        r = console(project, *args)
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith("usage: callweave")
        # Plain text: no reStructuredText markup.
        assert "``" not in r.stdout and ":func:" not in r.stdout and ":mod:" not in r.stdout
    r = console(project, "run", "--help")
    assert "the file's rule applies" in r.stdout


def test_cli_rules_combine_with_the_files_and_errors_name_the_option(wrapped_project):
    project = wrapped_project
    # The file profiles place_order; --profile adds price: both are in the report.
    r = console(project, "run", "--profile", "shopkit.orders:price", "-m", "shopkit", "2")
    assert r.returncode == 0, r.stderr
    doc = json.loads((project / "report.json").read_text())
    assert sorted(f["qualname"] for f in doc["functions"]) == ["place_order", "price"]
    # A file's rule and a command-line rule for the same function: the file's applies.
    r = console(
        project,
        *("run", "--profile", "shopkit.orders:place_order", "--time-limit", "0s"),
        *("-m", "shopkit", "2"),
    )
    assert r.returncode == 0, r.stderr
    doc = json.loads((project / "report.json").read_text())
    (f,) = [f for f in doc["functions"] if f["qualname"] == "place_order"]
    assert f["time_limit"] == 10.0


def test_show_diff_has_the_files_line_numbers_and_newlines(project):
    (project / "pyproject.toml").write_text(PROFILE_SHOPKIT)
    r = console(project, "show", "shopkit.orders:place_order", "--diff")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    source = (project / "shopkit" / "orders.py").read_text().splitlines()
    first = source.index("def place_order(n):") + 1
    hunks = [line for line in lines if line.startswith("@@")]
    assert hunks, r.stdout
    start = int(re.match(r"@@ -(\d+)", hunks[0])[1])
    # The hunk starts at the file's line: the lines it shows are the file's lines there.
    context = [line[1:] for line in lines[lines.index(hunks[0]) + 1 :] if line[:1] in " -"]
    assert context[0] == source[start - 1] and start >= first
    # One diff line per output line: the function's last line is not glued to the next.
    assert "-        total += price(i)" in lines
    assert all(not line.endswith("total") or line[1:].strip() == "return total" for line in lines)
    # The whole module: line numbers of the file too.
    r = console(project, "show", "shopkit.orders", "--diff")
    hunk = next(line for line in r.stdout.splitlines() if line.startswith("@@"))
    assert hunk.startswith("@@ -")


def test_show_says_when_the_config_does_not_select_the_module(project):
    (project / "pyproject.toml").write_text(PROFILE_SHOPKIT.replace("shopkit.**", "other.**"))
    r = console(project, "show", "shopkit.orders", "--diff")
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr == (
        f"callweave: shopkit.orders: no rule of {project / 'pyproject.toml'} selects this "
        "module; it imports unmodified\n"
    )
    (project / "pyproject.toml").unlink()
    r = console(project, "show", "shopkit.orders")
    assert r.returncode == 2 and "no [tool.callweave] configuration found" in r.stderr


STRICT = """
[tool.callweave]
report = "none"
strict = true

[[tool.callweave.profile]]
modules = [{modules}]
{functions}
time_limit = "10s"
"""


def strict_config(project, modules, functions=None):
    text = STRICT.format(
        modules=", ".join(f'"{m}"' for m in modules),
        functions="" if functions is None else f"functions = {json.dumps(functions)}",
    )
    (project / "pyproject.toml").write_text(text)


def test_strict_module_name_matching_nothing_is_an_error_at_install(project):
    strict_config(project, ["shopkit.ordrs"])
    r = console(project, "run", "app.py", "1", "0")
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr == (
        f"callweave: {project / 'pyproject.toml'}: tool.callweave.profile[0].modules[0] = "
        '"shopkit.ordrs": matches no module on sys.path; did you mean "shopkit.orders"? '
        "(strict = true)\n"
    )
    # Without strict, the program runs.
    (project / "pyproject.toml").write_text(
        (project / "pyproject.toml").read_text().replace("strict = true", "strict = false")
    )
    r = console(project, "run", "app.py", "1", "0")
    assert r.returncode == 0, r.stderr


def test_strict_function_glob_matching_nothing_fails_the_import(project):
    strict_config(project, ["shopkit.orders"], ["plce_order"])
    r = console(project, "run", "app.py", "1", "0")
    assert r.returncode == 1
    assert (
        f"ImportError: callweave: {project / 'pyproject.toml'}: "
        'tool.callweave.profile[0].functions[0] = "plce_order": matches no function in '
        'shopkit.orders; did you mean "place_order"? (strict = true)'
    ) in r.stderr
    # A command-line rule is named by its option.
    strict_config(project, ["other"])
    (project / "other.py").write_text("")
    r = console(project, "run", "--profile", "shopkit.orders:plce_*", "app.py", "1", "0")
    assert r.returncode == 1
    assert (
        "ImportError: callweave: --profile 'shopkit.orders:plce_*': matches no function in "
        "shopkit.orders (strict = true)"
    ) in r.stderr


def test_strict_globs_that_matched_nothing_in_the_run_are_warned_at_exit(project):
    strict_config(project, ["shopkit.*", "nothere.*"], ["place_*", "nothing_*"])
    r = console(project, "run", "app.py", "1", "0")
    assert r.returncode == 0, r.stderr
    config = project / "pyproject.toml"
    assert r.stderr.splitlines() == [
        f"callweave: warning: {config}: tool.callweave.profile[0].modules[1] = "
        '"nothere.*": matches no module imported by the program (strict = true)',
        f"callweave: warning: {config}: tool.callweave.profile[0].functions[1] = "
        '"nothing_*": matches no function in shopkit.orders (strict = true)',
    ]


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
