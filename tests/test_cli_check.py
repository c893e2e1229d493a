"""``callweave check`` and ``show`` on awkward trees (issue 7 item 8, repro 15)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import callweave

ROOT = Path(callweave.__file__).resolve().parent.parent


@pytest.fixture
def tree(tmp_path):
    (tmp_path / "a_latin.py").write_bytes(b"# Author: Fran\xe7ois\ndef g():\n    return len('x')\n")
    (tmp_path / "b_broken.py").write_text("def g():\n    return 1 +\n")
    (tmp_path / "c_good.py").write_text("def g():\n    return len('x')\n")
    (tmp_path / "pyproject.toml").write_text(
        '[tool.callweave]\nreport = "none"\n[[tool.callweave.profile]]\n'
        'modules = ["a_latin", "b_broken", "c_good"]\ntime_limit = "1s"\n'
    )
    return tmp_path


def cli(cwd, *args):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLWEAVE_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "callweave", *args], cwd=cwd, env=env, capture_output=True, text=True
    )


def test_check_lists_every_module_and_names_syntax_errors(tree):
    p = cli(tree, "check")
    assert p.returncode == 0 and p.stderr == "", p.stderr
    lines = p.stdout.splitlines()
    assert f"a_latin ({tree / 'a_latin.py'}): 1 function(s), 1 call site(s)" in lines
    broken = [line for line in lines if line.startswith("b_broken:")]
    assert broken == [
        f"b_broken: syntax error: invalid syntax ({tree / 'b_broken.py'}, line 2) "
        "(importing it raises SyntaxError)"
    ]
    assert f"c_good ({tree / 'c_good.py'}): 1 function(s), 1 call site(s)" in lines


def test_show_handles_undecodable_comments_and_names_syntax_errors(tree):
    p = cli(tree, "show", "a_latin")
    assert p.returncode == 0 and p.stderr == "", p.stderr
    assert p.stdout.splitlines()[0] == "# Author: Fran?ois"
    assert "__callweave_time__" in p.stdout
    p = cli(tree, "show", "b_broken")
    assert p.returncode == 2
    assert p.stderr == (
        f"callweave: b_broken: syntax error: invalid syntax ({tree / 'b_broken.py'}, line 2)\n"
    )


# ----------------------------------------------------------------------- issue 11: check

CONSOLE_SCRIPT = Path(sys.executable).with_name("callweave")

ORDERS = """
def price(i):
    return i * 2


class Cart:
    def place_order(self, n):
        return sum(price(i) for i in range(n))
"""

TRACING = """
def trace_call(call, /, *args, **kwargs):
    return call(*args, **kwargs)

NOT_CALLABLE = 42
"""


@pytest.fixture
def shop(tmp_path):
    (tmp_path / "shop").mkdir()
    (tmp_path / "shop" / "__init__.py").write_text("")
    (tmp_path / "shop" / "orders.py").write_text(ORDERS)
    (tmp_path / "shop" / "tracing.py").write_text(TRACING)
    return tmp_path


def console(cwd, *args):
    """The installed console script, from the project, nothing of it on PYTHONPATH."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("CALLWEAVE_") and k != "PYTHONPATH"
    }
    return subprocess.run(
        [str(CONSOLE_SCRIPT), *args], cwd=cwd, env=env, capture_output=True, text=True
    )


def configure(project, rules, *, strict=False):
    (project / "pyproject.toml").write_text(
        f'[tool.callweave]\nreport = "none"\nstrict = {str(strict).lower()}\n{rules}'
    )
    return project / "pyproject.toml"


def test_check_imports_the_callables_and_reports_each_that_fails(shop):
    config = configure(
        shop,
        """
[[tool.callweave.wrap]]
modules = ["shop.orders"]
wrapper = "shop.tracing:trace_call"

[[tool.callweave.wrap]]
modules = ["shop.orders"]
wrapper = "shop.tracing:missing"

[[tool.callweave.wrap]]
modules = ["shop.orders"]
wrapper = "shop.nosuch:trace_call"

[[tool.callweave.profile]]
modules = ["shop.orders"]
time_limit = "1s"
above = "shop.tracing:NOT_CALLABLE"
""",
    )
    r = console(shop, "check")
    assert r.returncode == 2
    errors = [line for line in r.stderr.splitlines() if line.startswith("callweave: error: ")]
    assert errors == [
        f"callweave: error: {config}: tool.callweave.profile[0].above = "
        "\"shop.tracing:NOT_CALLABLE\": 'shop.tracing.NOT_CALLABLE' is not callable: it is a int",
        f"callweave: error: {config}: tool.callweave.wrap[1].wrapper = "
        "\"shop.tracing:missing\": 'shop.tracing' has no attribute 'missing' "
        "(module 'shop.tracing' has no attribute 'missing')",
        f"callweave: error: {config}: tool.callweave.wrap[2].wrapper = "
        "\"shop.nosuch:trace_call\": cannot import module 'shop.nosuch': ModuleNotFoundError: "
        "No module named 'shop.nosuch'",
    ]
    assert r.stderr.splitlines()[-1] == f"callweave: configuration {config}: 3 error(s)"
    assert "is valid" not in r.stdout


def test_check_with_good_callables_is_valid(shop):
    config = configure(
        shop,
        '[[tool.callweave.wrap]]\nmodules = ["shop.orders"]\nwrapper = "shop.tracing:trace_call"\n',
    )
    r = console(shop, "check")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert r.stdout.splitlines()[-1] == f"callweave: configuration {config} is valid"


UNMATCHED = """
[[tool.callweave.profile]]
modules = ["shop.ordrs", "shop.orders", "shp.*"]
functions = ["Cart.place_ordr", "price"]
time_limit = "1s"
"""


def test_check_reports_rules_that_match_nothing_with_did_you_mean(shop):
    config = configure(shop, UNMATCHED)
    r = console(shop, "check")
    assert r.returncode == 0, r.stderr
    key = f"{config}: tool.callweave.profile[0]"
    assert r.stderr.splitlines() == [
        f'callweave: warning: {key}.modules[0] = "shop.ordrs": matches no module on sys.path; '
        'did you mean "shop.orders"?',
        f'callweave: warning: {key}.modules[2] = "shp.*": matches no module on sys.path; '
        'did you mean "shop.*"?',
        f'callweave: warning: {key}.functions[0] = "Cart.place_ordr": matches no function in '
        'shop.orders; did you mean "Cart.place_order"?',
    ]
    # strict = true: the same lines are errors.
    configure(shop, UNMATCHED, strict=True)
    r = console(shop, "check")
    assert r.returncode == 2
    assert [line.partition(": error: ")[2][:40] for line in r.stderr.splitlines()[:3]] == [
        f"{key}.modules[0]"[:40],
        f"{key}.modules[2]"[:40],
        f"{key}.functions[0]"[:40],
    ]
    assert r.stderr.splitlines()[-1] == f"callweave: configuration {config}: 3 error(s)"


def test_check_names_a_module_with_a_syntax_error_only_the_compiler_finds(shop):
    # The engine's parser accepts it; compiling it fails.
    (shop / "shop" / "late.py").write_text("def f():\n    x = 1\n    global x\n")
    configure(shop, '[[tool.callweave.profile]]\nmodules = ["shop.late"]\ntime_limit = "1s"\n')
    r = console(shop, "check")
    assert r.returncode == 0, r.stderr
    (line,) = [line for line in r.stdout.splitlines() if line.startswith("shop.late")]
    assert line == (
        "shop.late: syntax error: name 'x' is assigned to before global declaration "
        f"({shop / 'shop' / 'late.py'}, line 3) (importing it raises SyntaxError)"
    )
    assert "would import unmodified" not in r.stdout
