"""Import-hook benchmarks, side by side, alternating variants round by round.

1. Cold import of a rewritten module vs a plain ``compile()`` of it: the loader's
   ``get_code`` with no cache (rewrite + compile + position remap) against ``compile()``.
2. Warm import: a module loaded from callweave's cache against an ordinary cached import
   (``.pyc``), each in a fresh interpreter.
3. An installed finder that matches nothing, importing about 300 standard-library modules,
   against no finder, each in a fresh interpreter.

Usage: ``python benchmarks/imports.py [--rounds N]``. Targets (DESIGN.md): cold <= 1.5x,
warm <= 1.05x, finder overhead < 2%.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import os
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
import time
from pathlib import Path

from callweave import _native
from callweave.config import Config, ProfileRule, WrapRule
from callweave.hook import CallweaveFinder, CallweaveLoader

SAMPLES = ["typing", "argparse", "pydoc", "inspect", "ast", "difflib"]


def _some_functions(source: str, n: int = 5) -> tuple[str, ...]:
    tree = ast.parse(source)
    names = [d.name for d in tree.body if isinstance(d, ast.FunctionDef | ast.AsyncFunctionDef)]
    return tuple(names[:n]) or ("*",)


def cold(rounds: int) -> None:
    print("Cold: rewrite + compile + remap vs compile(), per module (medians, ms)")
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for name in SAMPLES:
        path = stdlib / f"{name}.py"
        data = path.read_bytes()
        source = importlib.util.decode_source(data)
        variants = {
            "profile all": Config(profile=(ProfileRule(modules=(name,), time_limit=1.0),)),
            "wrap all": Config(wrap=(WrapRule(modules=(name,), wrapper="builtins:print"),)),
            "profile 5": Config(
                profile=(
                    ProfileRule(modules=(name,), functions=_some_functions(source), time_limit=1.0),
                )
            ),
        }
        loaders = {
            k: CallweaveLoader(name, str(path), CallweaveFinder(c)) for k, c in variants.items()
        }
        times: dict[str, list[float]] = {"compile": [], **{k: [] for k in variants}}
        for _ in range(rounds):
            t = time.perf_counter()
            compile(source, str(path), "exec", dont_inherit=True)
            times["compile"].append(time.perf_counter() - t)
            for k, loader in loaders.items():
                t = time.perf_counter()
                loader._rewrite(name, str(path), data, "bench")
                times[k].append(time.perf_counter() - t)
        med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
        ratios = "  ".join(f"{k} {med[k] / med['compile']:4.2f}x" for k in variants)
        print(f"  {name:10s} {len(data) / 1e3:6.1f} kB  compile {med['compile']:6.2f} ms  {ratios}")


def _fresh(code: str, env: dict[str, str], cwd: str) -> float:
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=cwd, check=True, capture_output=True, text=True
    ).stdout
    return float(out.strip().splitlines()[-1])


def warm(rounds: int) -> None:
    print("Warm: import from callweave's cache vs an ordinary cached import (fresh process)")
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("argparse", "pydoc"):
            pkg = Path(tmp) / f"bench_{name}"
            pkg.mkdir()
            (pkg / "__init__.py").write_text("")
            (pkg / "mod.py").write_bytes((stdlib / f"{name}.py").read_bytes())
        (Path(tmp) / "pyproject.toml").write_text(
            textwrap.dedent("""
            [tool.callweave]
            [[tool.callweave.profile]]
            modules = ["bench_argparse.mod", "bench_pydoc.mod"]
            time_limit = "1s"
        """)
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CALLWEAVE", "PYTHONDONT"))}
        env["PYTHONPATH"] = tmp
        timer = (
            "import time, callweave{hook}\n{install}t = time.perf_counter()\n"
            "import bench_argparse.mod, bench_pydoc.mod\n"
            "print(time.perf_counter() - t)"
        )
        ours = timer.format(hook=", callweave.hook", install="callweave.install()\n")
        plain = timer.format(hook="", install="")
        _fresh(ours, env, tmp)  # writes callweave's cache
        _fresh(plain, env, tmp)  # writes ordinary .pyc files
        a, b = [], []
        for _ in range(rounds):
            a.append(_fresh(plain, env, tmp))
            b.append(_fresh(ours, env, tmp))
        p, o = statistics.median(a) * 1e3, statistics.median(b) * 1e3
        print(
            f"  2 modules (argparse, pydoc copies): plain {p:.2f} ms, callweave {o:.2f} ms,"
            f" ratio {o / p:.3f}x"
        )


def finder_overhead(rounds: int) -> None:
    print("Finder matching nothing, importing ~300 stdlib modules (fresh process)")
    names = sorted(
        n
        for n in sys.stdlib_module_names
        if not n.startswith(("_", "idlelib", "tkinter", "turtle", "antigravity", "this"))
    )
    code_tpl = textwrap.dedent("""
        import importlib, sys, time
        {install}
        t = time.perf_counter()
        n = 0
        for name in {names!r}:
            try:
                importlib.import_module(name)
                n += 1
            except Exception:
                pass
        print(n, file=sys.stderr)
        print(time.perf_counter() - t)
    """)
    install = (
        "import callweave\nfrom callweave.config import Config, ProfileRule, WrapRule\n"
        "callweave.install(Config(profile=(ProfileRule(modules=('nothing_matches.*',),"
        " time_limit=1.0),)), report_at_exit=False)"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLWEAVE")}
    plain_code = code_tpl.format(install="import callweave", names=names)
    hook_code = code_tpl.format(install=install, names=names)
    a, b = [], []
    for _ in range(rounds):
        a.append(_fresh(plain_code, env, "."))
        b.append(_fresh(hook_code, env, "."))
    p, o = statistics.median(a) * 1e3, statistics.median(b) * 1e3
    print(
        f"  {len(names)} names: no finder {p:.1f} ms, finder {o:.1f} ms,"
        f" overhead {100 * (o / p - 1):+.2f}%"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    print(f"CPython {sys.version.split()[0]}, callweave {_native.__version__}")
    cold(args.rounds)
    warm(args.rounds)
    finder_overhead(args.rounds)


if __name__ == "__main__":
    main()
