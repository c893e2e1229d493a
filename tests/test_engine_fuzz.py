"""The engine never crashes, whatever the nesting: a corpus of generated deep sources.

Each shape (call chains, operators, prefix operators, lambdas, displays, calls, subscripts,
f-strings, conditional expressions, nested blocks) is generated at sizes around CPython's
limits and far beyond them. In a subprocess (a crash must not take the test run with it), every
case goes through ``callweave._native.rewrite`` (a wrap and a profile rule) and is imported
through the import hook under a profile rule. The subprocess must end normally (no signal, no
abort); where CPython rejects the source, the hooked import raises exactly CPython's error;
where CPython compiles it, the hooked import works (rewritten, or unmodified with the usual
warning). Long call chains, which must be rewritten, are tested in tests/test_compile.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable

import pytest


def _blocks(header: str) -> Callable[[int], str]:
    def make(n: int) -> str:
        lines = ["def g(x):"]
        lines += [" " * (i + 1) + header for i in range(n)]
        lines.append(" " * (n + 1) + "return f(x)")
        return "\n".join(lines) + "\n"

    return make


def _fstrings(n: int) -> str:
    expr = "f(x)"
    for i in range(n):
        q = "'" if i % 2 else '"'
        expr = f"f{q}{{{expr}}}{q}"
    return f"def g(x):\n    return {expr}\n"


def _expr(body: Callable[[int], str]) -> Callable[[int], str]:
    return lambda n: f"def g(x):\n    return {body(n)}\n"


SHAPES: dict[str, tuple[Callable[[int], str], tuple[int, ...]]] = {
    "chain": (_expr(lambda n: "f" + "()" * n), (250, 2_500, 3_000, 19_900, 20_000, 100_000)),
    "fluent": (_expr(lambda n: "x" + ".m()" * n), (250, 3_000, 9_900, 50_000)),
    "binop": (_expr(lambda n: "+".join(["x"] * n)), (1_000, 5_000, 19_900, 70_000)),
    "unary": (_expr(lambda n: "-" * n + "f(x)"), (1_000, 5_000, 19_900, 100_000)),
    "not": (_expr(lambda n: "not " * n + "f(x)"), (1_000, 5_000, 19_900, 100_000)),
    "lambda": (_expr(lambda n: "lambda a, b=f(x): " * n + "f(x)"), (100, 3_000, 3_900, 100_000)),
    "await": (
        lambda n: "async def g(x):\n    return " + "await " * n + "f(x)\n",
        (100, 3_000, 19_900, 50_000),
    ),
    "list": (_expr(lambda n: "[" * n + "f(x)" + "]" * n), (150, 200, 201, 100_000)),
    "dict": (_expr(lambda n: "{1: " * n + "f(x)" + "}" * n), (150, 201, 50_000)),
    "call": (_expr(lambda n: "f(" * n + "x" + ")" * n), (150, 200, 201, 50_000)),
    "subscript": (_expr(lambda n: "x[" * n + "f(x)" + "]" * n), (150, 201, 50_000)),
    "parens": (_expr(lambda n: "(" * n + "f(x)" + ")" * n), (200, 201, 100_000)),
    "ternary": (_expr(lambda n: "f(x) if x else " * n + "f(x)"), (1_000, 5_000, 6_600, 50_000)),
    "power": (_expr(lambda n: "**".join(["x"] * n)), (1_000, 5_000, 19_900, 50_000)),
    "fstring": (_fstrings, (2, 50, 150, 300)),
    "if": (_blocks("if x:"), (50, 98, 99, 100, 1_000)),
    "for": (_blocks("for x in f(x):"), (50, 99, 100, 1_000)),
    "with": (_blocks("with f(x):"), (50, 99, 100)),
    "def": (_blocks("def h(x):"), (50, 99, 100)),
}

RUNNER = textwrap.dedent(
    """
    import json, sys, threading, warnings

    import callweave
    from callweave import _native
    from callweave.config import Config, ProfileRule

    names = json.loads(sys.argv[1])
    RULES = [
        _native.Rule("wrap", {"wrapper": "__w__"}),
        _native.Rule(
            "profile",
            {
                "enter": "__e__",
                "exit": "__x__",
                "timer": "__t__",
                "atimer": "__at__",
                "record": "__r__",
            },
        ),
    ]

    def outcome(fn):
        try:
            fn()
            return None
        except BaseException as exc:  # every outcome is compared
            return [type(exc).__name__, str(exc)]

    out = {}
    for name in names:
        src = open(name + ".py").read()
        out[name] = {
            "plain": outcome(lambda: compile(src, name + ".py", "exec")),
            "engine": outcome(lambda: _native.rewrite(src, RULES)),
        }
        # A small thread stack (1 MiB) must not matter: the engine runs on its own thread.
        box = []
        threading.stack_size(1 << 20)
        work = lambda: box.append(outcome(lambda: _native.rewrite(src, RULES)))  # noqa: E731
        t = threading.Thread(target=work)
        t.start()
        t.join()
        threading.stack_size(0)
        out[name]["thread"] = box[0]

    callweave.install(
        Config(profile=(ProfileRule(modules=tuple(names), time_limit=1.0),)),
        report_at_exit=False,
    )
    for name in names:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a fallback's warning
            out[name]["hook"] = outcome(lambda: __import__(name))
    print(json.dumps(out))
    """
)


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_engine_survives_deep_nesting(shape, tmp_path):
    make, sizes = SHAPES[shape]
    names = []
    for n in sizes:
        name = f"m_{shape}_{n}"
        (tmp_path / f"{name}.py").write_text(make(n))
        names.append(name)
    (tmp_path / "run.py").write_text(RUNNER)
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    env.pop("CALLWEAVE_CONFIG_JSON", None)
    proc = subprocess.run(
        [sys.executable, "run.py", json.dumps(names)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, (
        f"returncode {proc.returncode}"
        f"{' (' + signal.Signals(-proc.returncode).name + ')' if proc.returncode < 0 else ''}"
        f": {proc.stderr[-2000:]}"
    )
    assert "panicked" not in proc.stderr
    results = json.loads(proc.stdout.splitlines()[-1])
    for name in names:
        r = results[name]
        # The engine's answer does not depend on the caller's stack.
        assert r["thread"] == r["engine"], name
        if r["plain"] is not None:
            # CPython rejects it: the hooked import gives CPython's own error.
            assert r["hook"] == r["plain"], name
        else:
            # CPython compiles it: the hooked import works (rewritten, or unmodified with the
            # usual warning: a profiled body 98 blocks deep gets one level more, `try:`).
            assert r["hook"] is None, f"{name}: {r['hook']}"
