"""Import-hook benchmarks, side by side, alternating variants round by round.

1. Cold import of a rewritten module vs a plain ``compile()`` of it: the loader's
   ``get_code`` with no cache (rewrite + compile + position remap) against ``compile()``.
2. Warm import: a module loaded from callweave's cache against an ordinary cached import
   (``.pyc``), each in a fresh interpreter. Both interpreters import ``callweave`` and
   ``callweave.hook`` before the timer and the instrumented one installs the hook there too:
   the ratio compares the imports of the profiled modules alone. callweave's own startup
   (importing it, and ``install()``: reading ``pyproject.toml``, resolving the rules) is a
   once-per-process cost printed beside it, not part of the target.
3. An installed finder that matches nothing, importing about 300 standard-library modules,
   against no finder, each in a fresh interpreter.

Usage: ``python benchmarks/imports.py [--rounds N] [--only cold,warm,finder] [--clock cpu|wall]``
(CPU time by default: less noise on a shared machine). Each target is printed at the end with
its ratio and a PASS/FAIL verdict: cold profile-all <= 1.5x and wrap-all <= 1.3x ``compile()``
(worst sample module); warm profile-all and wrap-all <= 1.10x an ordinary cached import; a
finder that matches nothing < 1% over about 300 standard-library imports.

The benchmark controls ``PYTHONDONTWRITEBYTECODE`` itself (many machines export it; it turns
off ordinary and callweave's bytecode caches alike): the fresh interpreters run without it.
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
from typing import Any

import callweave
from callweave import _native
from callweave.config import Config, ProfileRule, WrapRule
from callweave.hook import CallweaveFinder, CallweaveLoader

SAMPLES = ["typing", "argparse", "pydoc", "inspect", "tarfile", "difflib"]  # ast: excluded


def _some_functions(source: str, n: int = 5) -> tuple[str, ...]:
    tree = ast.parse(source)
    names = [d.name for d in tree.body if isinstance(d, ast.FunctionDef | ast.AsyncFunctionDef)]
    return tuple(names[:n]) or ("*",)


#: What is timed: the process's CPU time (``--clock cpu``, the default: on a shared machine other
#: processes' load adds less noise to it) or the wall clock (``--clock wall``).
CLOCK = time.process_time

#: (what, ratio, target, kind): kind "x" compares the ratio, "%" the overhead (ratio - 1).
RESULTS: list[tuple[str, float, float, str]] = []


def _verdicts() -> bool:
    print("Targets")
    ok = True
    for what, ratio, target, kind in RESULTS:
        if kind == "%":
            passed = ratio - 1 < target
            shown = f"{100 * (ratio - 1):+7.2f}%   target < {100 * target:.0f}%"
        else:
            passed = ratio <= target
            shown = f"{ratio:7.3f}x   target <= {target:.2f}x"
        ok &= passed
        print(f"  {what:36s} {shown:28s} {'PASS' if passed else 'FAIL'}")
    return ok


def cold(rounds: int) -> None:
    print("Cold: rewrite + compile + remap vs compile(), per module (medians, ms)")
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    worst: dict[str, float] = {}
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
            t = CLOCK()
            compile(source, str(path), "exec", dont_inherit=True)
            times["compile"].append(CLOCK() - t)
            for k, loader in loaders.items():
                t = CLOCK()
                loader._rewrite(name, str(path), data, "bench")
                times[k].append(CLOCK() - t)
        med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
        for k in variants:
            worst[k] = max(worst.get(k, 0.0), med[k] / med["compile"])
        ratios = "  ".join(f"{k} {med[k] / med['compile']:4.2f}x" for k in variants)
        print(f"  {name:10s} {len(data) / 1e3:6.1f} kB  compile {med['compile']:6.2f} ms  {ratios}")
    RESULTS.append(("cold profile-all (worst module)", worst["profile all"], 1.5, "x"))
    RESULTS.append(("cold wrap-all (worst module)", worst["wrap all"], 1.3, "x"))


#: The callweave under test comes first on the fresh interpreters' path.
CALLWEAVE_ROOT = str(Path(callweave.__file__).resolve().parent.parent)


def _env(path: str = "") -> dict[str, str]:
    """The environment of a fresh interpreter: no callweave config, bytecode written."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CALLWEAVE", "PYTHONDONT"))}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (path, CALLWEAVE_ROOT) if p)
    return env


def _fresh(code: str, env: dict[str, str], cwd: str, lines: int = 1) -> Any:
    """The last number the fresh interpreter prints (the last ``lines`` ones, if more)."""
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=cwd, check=True, capture_output=True, text=True
    ).stdout
    values = [float(line) for line in out.strip().splitlines()[-lines:]]
    return values[0] if lines == 1 else values


WARM_CONFIGS = {
    "profile-all": """
        [[tool.callweave.profile]]
        modules = ["bench_argparse.mod", "bench_pydoc.mod"]
        time_limit = "1s"
    """,
    "wrap-all": """
        [[tool.callweave.wrap]]
        modules = ["bench_argparse.mod", "bench_pydoc.mod"]
        wrapper = "operator:call"
    """,
}


def warm(rounds: int) -> None:
    print("Warm: import from callweave's cache vs an ordinary cached import (fresh process)")
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    timer = (
        "import time\ns = time.CLOCK()\nimport callweave{hook}\n{install}t = time.CLOCK()\n"
        "import bench_argparse.mod, bench_pydoc.mod\n"
        "print(t - s)\nprint(time.CLOCK() - t)"
    )
    timer = timer.replace("CLOCK", CLOCK.__name__)
    ours = timer.format(hook=", callweave.hook", install="callweave.install()\n")
    # The same modules imported before the timer, no finder installed.
    plain = timer.format(hook=", callweave.hook", install="")
    old = time.time_ns() - 3600 * 10**9
    with tempfile.TemporaryDirectory() as tmp:
        dirs = {}
        for config, table in WARM_CONFIGS.items():
            root = Path(tmp) / config
            for name in ("argparse", "pydoc"):
                pkg = root / f"bench_{name}"
                pkg.mkdir(parents=True)
                (pkg / "__init__.py").write_text("")
                (pkg / "mod.py").write_bytes((stdlib / f"{name}.py").read_bytes())
                # Sources edited an hour ago, not a moment before the import: callweave
                # stores a source's stat stamp only once its mtime is settled.
                for source in (pkg / "__init__.py", pkg / "mod.py"):
                    os.utime(source, ns=(old, old))
            (root / "pyproject.toml").write_text("[tool.callweave]\n" + textwrap.dedent(table))
            dirs[config] = str(root)
            env = _env(str(root))
            _fresh(ours, env, str(root))  # writes callweave's cache
            _fresh(plain, env, str(root))  # writes ordinary .pyc files
        times: dict[str, list[float]] = {"plain": []} | {c: [] for c in WARM_CONFIGS}
        startup: dict[str, list[float]] = {k: [] for k in times}
        for _ in range(rounds):
            for config, root in dirs.items():
                env = _env(root)
                if config == "profile-all":
                    start, took = _fresh(plain, env, root, lines=2)
                    startup["plain"].append(start)
                    times["plain"].append(took)
                start, took = _fresh(ours, env, root, lines=2)
                startup[config].append(start)
                times[config].append(took)
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    up = {k: statistics.median(v) * 1e3 for k, v in startup.items()}
    print(
        f"  2 modules (argparse, pydoc copies): plain {med['plain']:.2f} ms"
        f" (before the timer: import callweave, callweave.hook {up['plain']:.2f} ms)"
    )
    for config in WARM_CONFIGS:
        ratio = med[config] / med["plain"]
        print(
            f"    {config:12s} {med[config]:.2f} ms, ratio {ratio:.3f}x"
            f" (before the timer: the same and install() {up[config]:.2f} ms)"
        )
        RESULTS.append((f"warm {config}", ratio, 1.10, "x"))


def finder_overhead(rounds: int) -> None:
    print("Finder matching nothing, importing ~300 stdlib modules (fresh process)")
    names = sorted(
        n
        for n in sys.stdlib_module_names
        if not n.startswith(("_", "idlelib", "tkinter", "turtle", "antigravity", "this"))
    )
    code_tpl = textwrap.dedent("""
        import importlib, sys, time, warnings
        warnings.simplefilter("ignore")
        import callweave
        from callweave.config import Config, ProfileRule
        callweave.install(Config(profile=(ProfileRule(modules=('nothing_matches.*',),
                          time_limit=1.0),)), report_at_exit=False)
        {uninstall}
        t = time.CLOCK()
        n = 0
        for name in {names!r}:
            try:
                importlib.import_module(name)
                n += 1
            except Exception:
                pass
        print(n, file=sys.stderr)
        print(time.CLOCK() - t)
    """)
    # Both processes import and install callweave (the same modules are loaded before the
    # timer); the plain one removes the finder again.
    env = _env()
    code_tpl = code_tpl.replace("CLOCK", CLOCK.__name__)
    plain_code = code_tpl.format(uninstall="callweave.uninstall()", names=names)
    hook_code = code_tpl.format(uninstall="", names=names)
    _fresh(plain_code, env, ".")  # ordinary .pyc files written where they may be
    a, b = [], []
    for _ in range(rounds):
        a.append(_fresh(plain_code, env, "."))
        b.append(_fresh(hook_code, env, "."))
    p, o = statistics.median(a) * 1e3, statistics.median(b) * 1e3
    print(
        f"  {len(names)} names: no finder {p:.1f} ms, finder {o:.1f} ms,"
        f" overhead {100 * (o / p - 1):+.2f}%"
    )
    RESULTS.append(("finder matching nothing", o / p, 0.01, "%"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument(
        "--only",
        default="cold,warm,finder",
        help="comma-separated benchmarks to run (default: cold,warm,finder)",
    )
    parser.add_argument(
        "--clock",
        choices=("cpu", "wall"),
        default="cpu",
        help="time CPU time (time.process_time, default) or wall time (time.perf_counter)",
    )
    args = parser.parse_args()
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    benchmarks = {"cold": cold, "warm": warm, "finder": finder_overhead}
    print(
        f"CPython {sys.version.split()[0]}, callweave {_native.__version__},"
        f" clock {CLOCK.__name__}, {args.rounds} rounds"
    )
    for name in args.only.split(","):
        benchmarks[name.strip()](args.rounds)
    _verdicts()


if __name__ == "__main__":
    main()
