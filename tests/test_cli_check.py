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
