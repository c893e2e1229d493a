"""The README's wrapper examples work on wrapped calls that pass ``call=`` or ``site=``.

Issue 7 item 31: with ``def wrapper(call, *args, **kwargs)`` a wrapped ``f(x, call=cb)`` fails
with "got multiple values for argument 'call'"; the documented signature is positional-only.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from callweave import wrap_calls

README = Path(__file__).resolve().parent.parent / "README.md"
PYTHON_BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
# Functions whose first parameter is `call`: the wrappers the README shows.
WRAPPER_DEFS = [
    m for block in PYTHON_BLOCKS for m in re.findall(r"^def \w+\(call\b[^)]*\):", block, re.M)
]


def submit(job, call=None, site=None):
    return (job, call, site)


def test_the_readme_shows_wrappers_and_each_is_positional_only():
    assert WRAPPER_DEFS
    for signature in WRAPPER_DEFS:
        assert re.search(r"\(call(, site)?, /, ", signature), signature


def test_the_readmes_wrapper_passes_call_and_site_keywords_through(capsys):
    (block,) = [b for b in PYTHON_BLOCKS if "def basic_wrapper(" in b]
    namespace: dict = {}
    exec(block.partition("@wrap_calls")[0], namespace)
    basic_wrapper = namespace["basic_wrapper"]

    @wrap_calls(wrapper=basic_wrapper)
    def uses_call_keywords():
        return submit(1, call="cb"), submit(2, site="s", call=None)

    assert uses_call_keywords() == ((1, "cb", None), (2, None, "s"))
    assert "Before submit" in capsys.readouterr().out


def test_the_documented_pass_site_signature_passes_call_and_site_keywords_through():
    seen = []

    def with_site(call, site, /, *args, **kwargs):
        seen.append(site.source)
        return call(*args, **kwargs)

    @wrap_calls(wrapper=with_site, pass_site=True)
    def uses_call_keywords():
        return submit(1, call="cb", site="s")

    assert uses_call_keywords() == (1, "cb", "s")
    assert seen == ['submit(1, call="cb", site="s")']


# Issue 11: every Python example of the README runs as written (no undefined names), as a
# script a user saved it to.
RUNNABLE = [b for b in PYTHON_BLOCKS if "callweave.bytecode" not in b]


def run_example(tmp_path, block):
    script = tmp_path / "example.py"
    script.write_text(block)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLWEAVE")}
    return subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True
    )


@pytest.mark.parametrize("index", range(len(RUNNABLE)))
def test_the_readmes_python_examples_run_as_written(index, tmp_path):
    r = run_example(tmp_path, RUNNABLE[index])
    assert r.returncode == 0, r.stderr


def test_the_readmes_bytecode_example_runs_as_written(tmp_path):
    pytest.importorskip("bytecode")
    (block,) = [b for b in PYTHON_BLOCKS if "callweave.bytecode" in b]
    r = run_example(tmp_path, block + "\nassert f() == 3\n")
    assert r.returncode == 0, r.stderr


def test_the_readmes_decorator_examples_print_what_they_say(tmp_path):
    (wrap_block,) = [b for b in PYTHON_BLOCKS if "def basic_wrapper(" in b]
    r = run_example(tmp_path, wrap_block)
    out = r.stdout.splitlines()
    assert out[0] == "Before range, args: (2,), kwargs: {}"
    assert out[-2:] == [
        "Before other_function, args: (), kwargs: {'val': 123.45}",
        "After other_function",
    ]
    (profile_block,) = [b for b in PYTHON_BLOCKS if "@flat_profile(" in b]
    r = run_example(tmp_path, profile_block)
    assert r.returncode == 0, r.stderr
    warnings = [line for line in r.stderr.splitlines() if line.startswith("WARNING")]
    assert len(warnings) == 1 and "above limit of 0.3s" in warnings[0], r.stderr
    assert "slow_function(val=123.45)" in r.stderr
