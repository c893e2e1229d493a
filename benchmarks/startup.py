"""callweave's own start-up cost against a bare interpreter start, side by side in one run.

Every process that enables callweave pays it: ``callweave run``, an explicit ``install()``,
and each child process of an instrumented one (the startup ``.pth`` installed with callweave
imports ``callweave.auto`` there). Each variant runs in a fresh interpreter, the variants
alternating round by round, from a small project directory whose ``pyproject.toml`` has a
``[tool.callweave]`` table with one profile rule and one wrap rule (which match no module the
benchmark imports):

- ``bare``: ``python -c pass``;
- ``import``: ``import callweave, callweave.hook``;
- ``install``: the same and ``callweave.install()`` (reads ``pyproject.toml``, resolves the
  rules, arms the exit report), and the exit report (nothing profiled: nothing written);
- ``child``: ``python -c pass`` with ``CALLWEAVE_CONFIG_JSON`` set, as in a child process of
  an instrumented one (only where callweave's startup ``.pth`` is installed).

The whole process is timed from outside (its CPU time by default, less noisy on a shared
machine; ``--clock wall`` for the wall clock), and each variant is printed as the median in
ms, its excess over ``bare`` and its ratio to it (and the fastest run, the least disturbed by
other load). Inside the ``install`` processes, the
import and ``install()`` are also timed apart (CPU time), and the modules loaded counted.
This is a measurement, not a target: nothing passes or fails.

Usage: ``python benchmarks/startup.py [--rounds N] [--clock cpu|wall]``. The fresh
interpreters write bytecode caches (``PYTHONDONTWRITEBYTECODE`` is removed from their
environment) and import the callweave that this interpreter imports.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import site
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import callweave
from callweave import _native
from callweave.config import load_config

#: The callweave under test comes first on the fresh interpreters' path.
CALLWEAVE_ROOT = str(Path(callweave.__file__).resolve().parent.parent)

CONFIG = """\
[tool.callweave]

[[tool.callweave.profile]]
modules = ["startup_bench_app.*"]
time_limit = "100ms"

[[tool.callweave.wrap]]
modules = ["startup_bench_app.core"]
wrapper = "operator:call"
"""

INSTALL = "import callweave, callweave.hook; callweave.install()"

#: Run inside the ``install`` processes: CPU time of the import and of install(), modules.
INSIDE = textwrap.dedent("""
    import sys, time
    t0 = time.process_time()
    import callweave, callweave.hook
    t1 = time.process_time()
    callweave.install()
    t2 = time.process_time()
    print(t1 - t0, t2 - t1, len(sys.modules))
""")


def _env(**extra: str) -> dict[str, str]:
    """A fresh interpreter's environment: no callweave configuration, bytecode written."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CALLWEAVE", "PYTHONDONT"))}
    env["PYTHONPATH"] = CALLWEAVE_ROOT
    env.update(extra)
    return env


def _startup_pth_installed() -> bool:
    """Whether callweave's startup ``.pth`` is in a site-packages directory of this Python."""
    dirs = [*site.getsitepackages(), site.getusersitepackages()]
    return any(Path(d, "callweave_startup.pth").is_file() for d in dirs)


def _run(code: str, env: dict[str, str], cwd: str, wall: bool) -> float:
    """Seconds that ``python -c code`` took, CPU time (user + system) or wall clock."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=cwd,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    took = time.perf_counter() - start
    if wall:
        return took
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    args = parser.parse_args()
    wall = args.clock == "wall"
    print(
        f"CPython {sys.version.split()[0]}, callweave {_native.__version__},"
        f" clock {'wall' if wall else 'process CPU time'}, {args.rounds} rounds (medians, ms)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "pyproject.toml").write_text(CONFIG)
        config = load_config(Path(tmp) / "pyproject.toml")
        assert config is not None
        variants: dict[str, tuple[str, dict[str, str]]] = {
            "bare": ("pass", _env()),
            "import": ("import callweave, callweave.hook", _env()),
            "install": (INSTALL, _env()),
        }
        if _startup_pth_installed():
            variants["child"] = ("pass", _env(CALLWEAVE_CONFIG_JSON=config.to_json()))
        for code, env in variants.values():  # bytecode caches written
            _run(code, env, tmp, wall)
        times: dict[str, list[float]] = {k: [] for k in variants}
        inside: list[list[float]] = []
        for _ in range(args.rounds):
            for name, (code, env) in variants.items():
                times[name].append(_run(code, env, tmp, wall))
            out = subprocess.run(
                [sys.executable, "-c", INSIDE],
                env=_env(),
                cwd=tmp,
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            inside.append([float(x) for x in out.split()])
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    low = {k: min(v) * 1e3 for k, v in times.items()}
    for name, ms in med.items():
        extra = ""
        if name != "bare":
            extra = f"  +{ms - med['bare']:6.1f} ms  {ms / med['bare']:5.2f}x bare"
        print(f"  {name:8s} {ms:7.1f} ms{extra}   (fastest {low[name]:.1f} ms)")
    if "child" not in med:
        print("  (child: callweave's startup .pth is not installed here, not measured)")
    imp, inst, modules = (statistics.median(column) for column in zip(*inside, strict=True))
    print(
        f"  inside the install process (CPU): import {imp * 1e3:.1f} ms, install()"
        f" {inst * 1e3:.1f} ms, {modules:.0f} modules loaded"
    )
    print(json.dumps({"ms": {k: round(v, 2) for k, v in med.items()}}))


if __name__ == "__main__":
    main()
