"""``[[tool.callweave.transform]]``: the codetransformer transforms and the users'
``ast.NodeTransformer`` classes applied to whole modules by configuration, through the real
import hook (a fresh interpreter in a temporary project) and the ``callweave`` command.

Every child is started with an explicit environment: no inherited ``CALLWEAVE_*`` variables,
and bytecode writing (``PYTHONDONTWRITEBYTECODE``, which this machine sets) chosen per test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import callweave

CALLWEAVE_ROOT = Path(callweave.__file__).resolve().parent.parent
CONSOLE_SCRIPT = Path(sys.executable).with_name("callweave")
MARK = "@@CW "
TIMEOUT = 120

BILLING = {
    "billing/__init__.py": "",
    "billing/invoice.py": """\
        class Invoice:
            def total(self):
                return 0.1 + 0.2

            def rate(self):
                return 1.5

        def plain():
            return 0.1 + 0.2
    """,
    "billing/fractional.py": """\
        def half():
            return 0.5 + 0.25

        def scaled(x):
            return abs(x * -0.25)
    """,
    "billing/greetings.py": """\
        def greet():
            return "hello"

        def shout(name):
            return "hi " + name

        def untouched():
            return "quiet"
    """,
    "upper.py": """\
        import ast

        class Upper(ast.NodeTransformer):
            def visit_Constant(self, node):
                if isinstance(node.value, str):
                    return ast.copy_location(ast.Constant(node.value.upper()), node)
                return node
    """,
}

CONFIG = """\
[tool.callweave]
report = "none"

[[tool.callweave.transform]]
modules = ["billing.invoice"]
functions = ["Invoice.*"]
use = "decimal_literals"

[[tool.callweave.transform]]
modules = ["billing.fractional"]
use = "overloaded_floats"
args = ["fractions:Fraction"]

[[tool.callweave.transform]]
modules = ["billing.greetings"]
functions = ["greet", "shout"]
use = "upper:Upper"
"""

PROBE = """\
import json, sys
import callweave
callweave.install()
from billing.invoice import Invoice, plain
from billing.fractional import half, scaled
from billing.greetings import greet, shout, untouched
from callweave.hook import counters
inv = Invoice()
print("@@CW " + json.dumps({
    "total": repr(inv.total()),
    "rate": repr(inv.rate()),
    "plain": repr(plain()),
    "half": repr(half()),
    "scaled": repr(scaled(3)),
    "greet": greet(),
    "shout": shout("ann"),
    "untouched": untouched(),
    "greet_line": greet.__code__.co_firstlineno,
    "counters": counters(),
}))
"""


def write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def env(project: Path, *, write_bytecode: bool) -> dict[str, str]:
    out = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("CALLWEAVE") and k != "PYTHONDONTWRITEBYTECODE"
    }
    out["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(project), str(CALLWEAVE_ROOT), os.environ.get("PYTHONPATH")) if p
    )
    if not write_bytecode:
        out["PYTHONDONTWRITEBYTECODE"] = "1"
    return out


def python(
    project: Path, code: str, *, write_bytecode: bool = False
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=project,
        env=env(project, write_bytecode=write_bytecode),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


def result(proc: subprocess.CompletedProcess[str]) -> dict:
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith(MARK)]
    assert lines, proc.stdout + proc.stderr
    return json.loads(lines[-1][len(MARK) :])


def cli(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CONSOLE_SCRIPT), *args],
        cwd=project,
        env=env(project, write_bytecode=False),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    write(tmp_path, BILLING)
    (tmp_path / "pyproject.toml").write_text(CONFIG)
    return tmp_path


EXPECTED = {
    "total": "Decimal('0.3')",
    "rate": "Decimal('1.5')",
    "plain": "0.30000000000000004",
    "half": "Fraction(3, 4)",
    "scaled": "Fraction(3, 4)",
    "greet": "HELLO",
    "shout": "HI ann",
    "untouched": "quiet",
    "greet_line": 1,
}


def test_transform_rules_rewrite_modules_at_import(project: Path) -> None:
    data = result(python(project, PROBE))
    assert {k: data[k] for k in EXPECTED} == EXPECTED
    assert data["counters"] == {"rewritten": 3, "cache_hits": 0, "fallbacks": 0}


def test_second_import_from_the_cache_gives_the_same_results(project: Path) -> None:
    first = result(python(project, PROBE, write_bytecode=True))
    assert first["counters"]["rewritten"] == 3
    cached = sorted(p.name for p in (project / "billing" / "__pycache__").glob("*.callweave.pyc"))
    assert len(cached) == 3, cached
    second = result(python(project, PROBE, write_bytecode=True))
    assert {k: second[k] for k in EXPECTED} == EXPECTED
    assert second["counters"] == {"rewritten": 0, "cache_hits": 3, "fallbacks": 0}


def test_editing_the_transformer_module_invalidates_the_cache(project: Path) -> None:
    result(python(project, PROBE, write_bytecode=True))
    upper = project / "upper.py"
    upper.write_text(upper.read_text().replace("upper()", "lower() + '!'"))
    data = result(python(project, PROBE, write_bytecode=True))
    assert data["greet"] == "hello!"
    assert data["shout"] == "hi !ann"
    assert data["total"] == "Decimal('0.3')"
    # Only the module the user's transformer rewrites is rewritten again.
    assert data["counters"] == {"rewritten": 1, "cache_hits": 2, "fallbacks": 0}


def test_transform_composes_with_wrap_rules(project: Path) -> None:
    (project / "tracing.py").write_text(
        "CALLS = []\ndef trace(call, /, *args, **kwargs):\n"
        "    CALLS.append(getattr(call, '__name__', '?'))\n    return call(*args, **kwargs)\n"
    )
    (project / "pyproject.toml").write_text(
        CONFIG + '\n[[tool.callweave.wrap]]\nmodules = ["billing.fractional"]\n'
        'wrapper = "tracing:trace"\n'
    )
    code = (
        "import json, callweave\ncallweave.install()\n"
        "from billing.fractional import scaled\nimport tracing\n"
        "v = scaled(3)\n"
        "print('@@CW ' + json.dumps({'v': repr(v), 'calls': tracing.CALLS}))\n"
    )
    data = result(python(project, code))
    assert data == {"v": "Fraction(3, 4)", "calls": ["abs"]}


def test_a_value_that_cannot_be_computed_imports_unmodified_with_one_warning(
    project: Path,
) -> None:
    (project / "bad.py").write_text("def boom(text):\n    raise ValueError('no ' + str(text))\n")
    (project / "pyproject.toml").write_text(
        '[tool.callweave]\n[[tool.callweave.transform]]\nmodules = ["billing.fractional"]\n'
        'use = "overloaded_floats"\nargs = ["bad:boom"]\n'
    )
    code = (
        "import json, warnings, callweave\ncallweave.install()\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        "    from billing.fractional import half\n"
        "print('@@CW ' + json.dumps({'half': half(), 'w': [str(x.message) for x in w]}))\n"
    )
    data = result(python(project, code))
    assert data["half"] == 0.75
    assert len(data["w"]) == 1
    assert "importing 'billing.fractional' unmodified" in data["w"][0]
    assert "ValueError" in data["w"][0]


ERRORS = [
    (
        'use = "decimal_literal"',
        'tool.callweave.transform[0].use = "decimal_literal": unknown transform; the built-in '
        "transforms are: asconstants, bytearray_literals, decimal_literals,",
    ),
    (
        'use = "overloaded_floats"',
        "tool.callweave.transform[0].args: required key is missing: overloaded_floats takes 1 "
        "callable(s), 0 given",
    ),
    (
        'use = "decimal_literals"\nargs = ["fractions:Fraction"]',
        'tool.callweave.transform[0].args = ["fractions:Fraction"]: decimal_literals takes no args',
    ),
    (
        'use = "fractions:Fraction"',
        'tool.callweave.transform[0].use = "fractions:Fraction": is not an ast.NodeTransformer '
        "subclass",
    ),
    (
        'use = "upper:Missing"',
        "tool.callweave.transform[0].use = \"upper:Missing\": 'upper' has no attribute 'Missing'",
    ),
    (
        'use = "overloaded_floats"\nargs = ["nowhere:thing"]',
        "tool.callweave.transform[0].args[0] = \"nowhere:thing\": cannot import module 'nowhere'",
    ),
    ("use = 3", "tool.callweave.transform[0].use = 3: must be a string, not an integer"),
    ("", "tool.callweave.transform[0].use: required key is missing"),
    (
        'use = "decimal_literals"\nwrapper = "a:b"',
        'tool.callweave.transform[0].wrapper = "a:b": unknown key; it is a key of '
        "[[tool.callweave.wrap]] rules",
    ),
]


@pytest.mark.parametrize(("body", "message"), ERRORS)
def test_config_errors_name_the_key_when_the_hook_is_installed(
    project: Path, body: str, message: str
) -> None:
    (project / "pyproject.toml").write_text(
        f'[tool.callweave]\n[[tool.callweave.transform]]\nmodules = ["billing.**"]\n{body}\n'
    )
    code = (
        "import json, callweave\n"
        "try:\n    callweave.install()\nexcept callweave.ConfigError as e:\n"
        "    print('@@CW ' + json.dumps(str(e)))\n"
    )
    text = result(python(project, code))
    assert text.startswith(f"{project / 'pyproject.toml'}: ")
    assert message in text
    assert "\n" not in text


def test_check_lists_what_each_transform_rule_would_transform(project: Path) -> None:
    # check imports nothing it looks at: a module that raises when imported is listed.
    invoice = project / "billing" / "invoice.py"
    invoice.write_text(invoice.read_text() + "\nraise SystemExit('imported!')\n")
    r = cli(project, "check")
    assert r.returncode == 0, r.stderr
    assert "imported!" not in r.stdout + r.stderr
    assert "    transform[0] (decimal_literals): Invoice.total, Invoice.rate\n" in r.stdout
    assert "    transform[1] (overloaded_floats): half, scaled\n" in r.stdout
    assert "    transform[2] (upper:Upper): greet, shout\n" in r.stdout


def test_show_prints_a_transform_rules_result(project: Path) -> None:
    r = cli(project, "show", "billing.greetings")
    assert r.returncode == 0, r.stderr
    assert "return 'HELLO'" in r.stdout
    assert "return 'HI ' + name" in r.stdout
    assert 'return "quiet"' in r.stdout
    r = cli(project, "show", "billing.invoice", "--diff")
    assert r.returncode == 0, r.stderr
    assert "-        return 0.1 + 0.2" in r.stdout
    assert "+        return __callweave_k_0__ + __callweave_k_1__" in r.stdout


def test_a_transformer_building_a_broken_tree_imports_the_module_unmodified(
    project: Path,
) -> None:
    (project / "broken.py").write_text(
        "import ast\n"
        "class Broken(ast.NodeTransformer):\n"
        "    def visit_Return(self, node):\n"
        "        return ast.copy_location(ast.Return(value=ast.Constant(object())), node)\n"
    )
    (project / "pyproject.toml").write_text(
        '[tool.callweave]\n[[tool.callweave.transform]]\nmodules = ["billing.greetings"]\n'
        'use = "broken:Broken"\n'
    )
    code = (
        "import json, warnings, callweave\ncallweave.install()\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        "    from billing.greetings import greet\n"
        "print('@@CW ' + json.dumps({'greet': greet(), 'w': [str(x.message) for x in w]}))\n"
    )
    data = result(python(project, code))
    assert data["greet"] == "hello"
    assert len(data["w"]) == 1, data["w"]
    assert "importing 'billing.greetings' unmodified" in data["w"][0]
    assert "does not compile" in data["w"][0]


def test_a_transformer_that_raises_imports_the_module_unmodified(project: Path) -> None:
    (project / "raising.py").write_text(
        "import ast\n"
        "class Raising(ast.NodeTransformer):\n"
        "    def visit_Return(self, node):\n"
        "        raise RuntimeError('nope')\n"
    )
    (project / "pyproject.toml").write_text(
        '[tool.callweave]\n[[tool.callweave.transform]]\nmodules = ["billing.greetings"]\n'
        'use = "raising:Raising"\n'
    )
    code = (
        "import json, warnings, callweave\ncallweave.install()\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        "    from billing.greetings import greet\n"
        "print('@@CW ' + json.dumps({'greet': greet(), 'w': [str(x.message) for x in w]}))\n"
    )
    data = result(python(project, code))
    assert data["greet"] == "hello"
    assert len(data["w"]) == 1, data["w"]
    assert "transformer raising:Raising failed on 'greet': RuntimeError: nope" in data["w"][0]


def test_asconstants_and_pattern_matched_exceptions_by_configuration(project: Path) -> None:
    write(
        project,
        {
            "frozen/__init__.py": "",
            "frozen/code.py": """\
                def size(x):
                    return len(x)

                def which():
                    try:
                        raise ValueError("bar")
                    except ValueError("buzz"):
                        return "buzz"
                    except ValueError("bar"):
                        return "bar"
            """,
        },
    )
    (project / "pyproject.toml").write_text(
        '[tool.callweave]\n[[tool.callweave.transform]]\nmodules = ["frozen.code"]\n'
        'functions = ["size"]\nuse = "asconstants"\nargs = ["builtins:len"]\n'
        '[[tool.callweave.transform]]\nmodules = ["frozen.code"]\n'
        'use = "pattern_matched_exceptions"\n'
    )
    code = (
        "import json, callweave\ncallweave.install()\n"
        "import frozen.code as m\n"
        "m.len = lambda x: -1\n"
        "print('@@CW ' + json.dumps({'size': m.size([1, 2]), 'which': m.which(),\n"
        "    'consts': len in m.size.__code__.co_consts}))\n"
    )
    for _ in range(2):  # rewritten, then from the cache
        data = result(python(project, code, write_bytecode=True))
        assert data == {"size": 2, "which": "bar", "consts": True}


def test_asconstants_assignment_is_the_users_syntax_error_with_file_and_line(
    project: Path,
) -> None:
    write(
        project,
        {
            "frozen/__init__.py": "",
            "frozen/bad.py": """\
                def f(x):
                    y = 1
                    len = 2
                    return len
            """,
        },
    )
    (project / "pyproject.toml").write_text(
        '[tool.callweave]\n[[tool.callweave.transform]]\nmodules = ["frozen.bad"]\n'
        'use = "asconstants"\nargs = ["builtins:len"]\n'
    )
    code = (
        "import json, callweave\ncallweave.install()\n"
        "try:\n    import frozen.bad\n"
        "except SyntaxError as e:\n"
        "    print('@@CW ' + json.dumps({'msg': e.msg, 'file': e.filename, 'line': e.lineno,\n"
        "        'offset': e.offset, 'text': e.text, 'context': e.__context__ is None}))\n"
    )
    data = result(python(project, code))
    assert data["file"] == str(project / "frozen" / "bad.py")
    assert data["line"] == 3
    assert data["offset"] == 5
    assert data["text"].strip() == "len = 2"
    assert "len" in data["msg"]
