"""Cost of saving a pool worker's profile at each task's end, side by side.

callweave makes each ``multiprocessing.Pool`` worker save its profile before it sends a
task's result (so that ``Pool.terminate()`` loses nothing a worker finished). This runs
``pool.map`` of a tiny profiled function, one item per task (``chunksize=1``, the worst case),
in pools whose workers save (the default) and in pools whose workers do not (their
initializer turns the save, and the marks in and out of a task, into no-ops), alternating
round by round, and prints the time per task of each and their ratio.

With ``--task idle`` each task runs an unprofiled function instead: a worker skips the save
when nothing was recorded since its last one, so this measures what remains (marking the
worker inside a task and out of it).

Usage: ``python benchmarks/pool_flush.py [--tasks N] [--rounds N] [--method fork|spawn|...]
[--task tiny|idle]`` (run it with the Python callweave is installed in; it instruments
itself).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TINY = "def tiny(i):\n    return abs(i) + len(str(i))\n\n\ndef idle(i):\n    return i\n"


def no_save() -> None:
    """Pool initializer: the worker skips the per-task save and busy marks (the baseline)."""
    from callweave import lifecycle

    lifecycle._Spooler.flush = lambda self: None  # type: ignore[method-assign]
    lifecycle._Spooler.busy = lambda self, busy: None  # type: ignore[method-assign]


def measure(method: str, tasks: int, save: bool, task: str) -> float:
    """Seconds per task of ``pool.map`` (pool start-up excluded)."""
    import benchtiny

    ctx = mp.get_context(method)
    run = getattr(benchtiny, task)
    with ctx.Pool(2, initializer=None if save else no_save) as pool:
        pool.map(benchtiny.tiny, range(20), chunksize=1)  # workers up and warm
        start = time.perf_counter()
        pool.map(run, range(tasks), chunksize=1)
        return (time.perf_counter() - start) / tasks


def child(args: argparse.Namespace) -> None:
    for _ in range(args.rounds):
        for save in (True, False):
            print(
                "save" if save else "none",
                measure(args.method, args.tasks, save, args.task),
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--method", default="fork", choices=mp.get_all_start_methods())
    parser.add_argument("--task", default="tiny", choices=["tiny", "idle"])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "benchtiny.py").write_text(TINY)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CALLWEAVE")}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (tmp, env.get("PYTHONPATH")) if p)
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "callweave",
                "run",
                "--profile",
                "benchtiny:tiny",
                "--report",
                f"json:{tmp}/r.json",
                __file__,
                "--child",
                "--tasks",
                str(args.tasks),
                "--rounds",
                str(args.rounds),
                "--method",
                args.method,
                "--task",
                args.task,
            ],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            cwd=tmp,
        ).stdout
    times: dict[str, list[float]] = {"save": [], "none": []}
    for line in out.splitlines():
        kind, value = line.split()
        times[kind].append(float(value))
    save, none = statistics.median(times["save"]), statistics.median(times["none"])
    print(
        f"pool.map of {args.task}, {args.method}, 2 workers, chunksize=1, "
        f"{args.tasks} tasks x {args.rounds} rounds"
    )
    print(f"  without the per-task save: {none * 1e6:8.1f} us per task")
    print(f"  with the per-task save:    {save * 1e6:8.1f} us per task")
    print(f"  ratio {save / none:.2f}x, cost {(save - none) * 1e6:.1f} us per task (medians)")


if __name__ == "__main__":
    main()
