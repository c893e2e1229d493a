"""Per-call overhead of callweave's flat profiler, side by side with its alternatives.

One process times a function making 10 calls of a small Python function in every variant:
plain; callweave ``flat_profile`` and ``wrap_calls``; recompyle 0.2.1's ``flat_profile`` and
``wrap_calls``; cProfile; and a hand-written pure-Python timing wrapper. It also times an empty
function plain and under each ``flat_profile`` (entry + exit + limit check, no callback fired).
Variants alternate round by round (round-robin, the starting variant rotating each round), so
machine noise hits all alike, and medians over the rounds are reported against the targets of
DESIGN.md's "Performance budget". A benchmark, not a test: it never fails because a target is
missed.

    bash benchmarks/run.sh [VERSION] [--quick | --rounds R --number N]

(run.sh builds the environment; run directly, this needs callweave and recompyle==0.2.1.)
"""

from __future__ import annotations

import argparse
import cProfile
import math
import platform
import statistics
import sys
import timeit
from collections.abc import Callable
from dataclasses import dataclass
from time import perf_counter_ns

from recompyle import flat_profile, wrap_calls  # recompyle matches its decorators by bare name

import callweave
from callweave import _native

CALLS = 10
LIMIT = 100  # seconds: never reached, and below_callback=None, so no callback ever fires

# DESIGN.md, "Performance budget".
TARGET_PER_CALL_US = 0.03
TARGET_ENTRY_EXIT_US = 0.1
TARGET_VS_RECOMPYLE = 10.0

DETAILS: dict[str, dict[str, object]] = {}


def details(name: str) -> dict[str, object]:
    """A ``rewrite_details`` dict, kept to check that the rewrite happened."""
    return DETAILS.setdefault(name, {})


def other(val1, val2):
    return val1 + val2


def pass_through(call, /, *args, **kwargs):
    return call(*args, **kwargs)


TIMING_TOTALS: dict[object, list[int]] = {}


def timing_wrapper(call, /, *args, **kwargs):
    """A minimal pure-Python flat profiler: count and total nanoseconds per callee."""
    start = perf_counter_ns()
    try:
        return call(*args, **kwargs)
    finally:
        elapsed = perf_counter_ns() - start
        entry = TIMING_TOTALS.get(call)
        if entry is None:
            TIMING_TOTALS[call] = [1, elapsed]
        else:
            entry[0] += 1
            entry[1] += elapsed


def plain():
    other(0, val2=1)
    other(0, val2=1)
    other(0, val2=1)
    other(0, val2=1)
    other(0, val2=1)
    other(0, val2=1)
    other(0, val2=1)
    other(0, val2=1)
    other(0, val2=1)
    other(0, val2=1)


@callweave.flat_profile(time_limit=LIMIT, below_callback=None, rewrite_details=details("cw_flat"))
def cw_flat():
    other(0, val2=1)
    other(0, val2=1)
    other(0, val2=1)
    other(0, val2=1)
    other(0, val2=1)
    other(0, val2=1)
    other(0, val2=1)
    other(0, val2=1)
    other(0, val2=1)
    other(0, val2=1)


@callweave.wrap_calls(wrapper=pass_through, rewrite_details=details("cw_wrap"))
def cw_wrap():
    other(0, val2=1)
    other(0, val2=1)
    other(0, val2=1)
    other(0, val2=1)
    other(0, val2=1)
    other(0, val2=1)
    other(0, val2=1)
    other(0, val2=1)
    other(0, val2=1)
    other(0, val2=1)


@flat_profile(time_limit=LIMIT, below_callback=None, rewrite_details=details("rc_flat"))
def rc_flat():
    other(0, val2=1)
    other(0, val2=1)
    other(0, val2=1)
    other(0, val2=1)
    other(0, val2=1)
    other(0, val2=1)
    other(0, val2=1)
    other(0, val2=1)
    other(0, val2=1)
    other(0, val2=1)


@wrap_calls(wrapper=pass_through, rewrite_details=details("rc_wrap"))
def rc_wrap():
    other(0, val2=1)
    other(0, val2=1)
    other(0, val2=1)
    other(0, val2=1)
    other(0, val2=1)
    other(0, val2=1)
    other(0, val2=1)
    other(0, val2=1)
    other(0, val2=1)
    other(0, val2=1)


@callweave.wrap_calls(wrapper=timing_wrapper, rewrite_details=details("py_timing"))
def py_timing():
    other(0, val2=1)
    other(0, val2=1)
    other(0, val2=1)
    other(0, val2=1)
    other(0, val2=1)
    other(0, val2=1)
    other(0, val2=1)
    other(0, val2=1)
    other(0, val2=1)
    other(0, val2=1)


def empty_plain():
    pass


@callweave.flat_profile(
    time_limit=LIMIT, below_callback=None, rewrite_details=details("empty_cw_flat")
)
def empty_cw_flat():
    pass


@flat_profile(time_limit=LIMIT, below_callback=None, rewrite_details=details("empty_rc_flat"))
def empty_rc_flat():
    pass


def time_plain(func: Callable[[], object]) -> Callable[[int], float]:
    """Seconds for ``number`` invocations of ``func``."""
    timer = timeit.Timer(func)
    return timer.timeit


def time_cprofile(func: Callable[[], object]) -> Callable[[int], float]:
    """Seconds for ``number`` invocations of ``func`` under an enabled ``cProfile.Profile``."""
    timer = timeit.Timer(func)

    def run(number: int) -> float:
        profile = cProfile.Profile()
        profile.enable()
        try:
            return timer.timeit(number)
        finally:
            profile.disable()

    return run


@dataclass
class Variant:
    key: str
    label: str
    run: Callable[[int], float]
    samples: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def iqr(self) -> float:
        if len(self.samples) < 4:
            return math.nan
        q = statistics.quantiles(self.samples, n=4)
        return q[2] - q[0]


PY_TIMING_LABEL = "pure-Python timing wrapper *"

CALL_VARIANTS = [
    ("plain", "plain (unmodified)", time_plain(plain)),
    ("cw_flat", "callweave flat_profile", time_plain(cw_flat)),
    ("cw_wrap", "callweave wrap_calls, pass-through", time_plain(cw_wrap)),
    ("rc_flat", "recompyle 0.2.1 flat_profile", time_plain(rc_flat)),
    ("rc_wrap", "recompyle 0.2.1 wrap_calls, pass-through", time_plain(rc_wrap)),
    ("cprofile", "cProfile (plain, profiler enabled)", time_cprofile(plain)),
    ("py_timing", PY_TIMING_LABEL, time_plain(py_timing)),
]
EMPTY_VARIANTS = [
    ("empty_plain", "empty function, plain", time_plain(empty_plain)),
    ("empty_cw_flat", "empty function, callweave flat_profile", time_plain(empty_cw_flat)),
    ("empty_rc_flat", "empty function, recompyle flat_profile", time_plain(empty_rc_flat)),
]


def check_setup() -> list[str]:
    """Problems that would make the comparison meaningless (each variant is run once first)."""
    problems = []
    for name, d in DETAILS.items():
        if not d.get("new_source") or d.get("new_source") == d.get("original_source"):
            problems.append(f"{name}: not rewritten")
    TIMING_TOTALS.clear()
    callweave.reset_stats()
    for func in (
        plain,
        cw_flat,
        cw_wrap,
        rc_flat,
        rc_wrap,
        py_timing,
        empty_cw_flat,
        empty_rc_flat,
        empty_plain,
    ):
        func()
    if TIMING_TOTALS.get(other, [0])[0] != CALLS:
        problems.append("pure-Python timing wrapper: did not time the 10 calls")
    counts = {s.qualname: (s.count, sum(site.count for site in s.sites)) for s in callweave.stats()}
    if counts.get("cw_flat") != (1, CALLS):
        problems.append(f"callweave flat_profile: recorded {counts.get('cw_flat')}, not (1, 10)")
    if counts.get("empty_cw_flat") != (1, 0):
        problems.append(f"callweave flat_profile (empty): recorded {counts.get('empty_cw_flat')}")
    return problems


def measure(rounds: int, number: int) -> dict[str, Variant]:
    """Times every variant ``rounds`` times, round-robin; samples are µs per invocation."""
    variants = [Variant(k, label, run, []) for (k, label, run) in CALL_VARIANTS + EMPTY_VARIANTS]
    for v in variants:  # warm-up round, not recorded
        v.run(max(1, number // 10))
    n = len(variants)
    for r in range(rounds):
        for i in range(n):
            v = variants[(r + i) % n]
            v.samples.append(v.run(number) / number * 1e6)
        if sys.stderr.isatty():
            print(f"\rround {r + 1}/{rounds}", end="", file=sys.stderr, flush=True)
    if sys.stderr.isatty():
        print(file=sys.stderr)
    return {v.key: v for v in variants}


def ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator``; inf when the denominator is not above zero (unmeasurable)."""
    return numerator / denominator if denominator > 0 else math.inf


def fmt_ratio(value: float) -> str:
    return "n/a (callweave cost ≤ 0: below noise)" if math.isinf(value) else f"{value:.1f}x"


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def report(m: dict[str, Variant], rounds: int, number: int, problems: list[str]) -> None:
    """Prints the tables, ratios and targets."""
    v = sys.version_info
    print(
        f"Python {platform.python_implementation()} {platform.python_version()} ({sys.executable})"
    )
    print(
        f"callweave {callweave.__version__} ({callweave.__file__}); "
        f"clock_source() = {_native.clock_source()!r}"
    )
    print(
        f"{rounds} rounds x {number:,} invocations per variant, round-robin; "
        f"medians over rounds; IQR = interquartile range over rounds"
    )
    for p in problems:
        print(f"SETUP PROBLEM: {p}")
    print()

    base = m["plain"].median
    per_call = {k: (m[k].median - base) / CALLS for k, _, _ in CALL_VARIANTS}
    print(f"Function making {CALLS} calls of other(0, val2=1):")
    print(f"  {'variant':44s} {'µs/invocation':>13s} {'IQR':>7s} {'added µs/call':>14s}")
    for key, label, _ in CALL_VARIANTS:
        added = "—" if key == "plain" else f"{per_call[key]:.4f}"
        print(f"  {label:44s} {m[key].median:13.4f} {m[key].iqr:7.4f} {added:>14s}")
    print(
        f"  * {PY_TIMING_LABEL[:-2]}: a hand-written wrapper timing each call with\n"
        "    time.perf_counter_ns (count + total per callee), applied with callweave's wrap_calls"
    )
    print("  added µs/call = (variant - plain) / 10; it includes the function's own share")
    print("  (profiled entry/exit, recompyle's outer wrapper, cProfile's event for the function)")
    print()

    empty = m["empty_plain"].median
    entry_cw = m["empty_cw_flat"].median - empty
    entry_rc = m["empty_rc_flat"].median - empty
    print("Entry + exit + limit check, no callback fired (empty function):")
    print(f"  {'variant':44s} {'µs/invocation':>13s} {'IQR':>7s} {'added µs':>14s}")
    for key, label, _ in EMPTY_VARIANTS:
        added = "—" if key == "empty_plain" else f"{m[key].median - empty:.4f}"
        print(f"  {label:44s} {m[key].median:13.4f} {m[key].iqr:7.4f} {added:>14s}")
    print()

    cw = per_call["cw_flat"]
    r_rc = ratio(per_call["rc_flat"], cw)
    r_cp = ratio(per_call["cprofile"], cw)
    r_py = ratio(per_call["py_timing"], cw)
    print("Ratios of added cost per call (higher = callweave flat_profile cheaper):")
    print(f"  recompyle flat_profile / callweave flat_profile:  {fmt_ratio(r_rc)}")
    print(f"  cProfile / callweave flat_profile:                {fmt_ratio(r_cp)}")
    print(f"  pure-Python wrapper / callweave flat_profile:     {fmt_ratio(r_py)}")
    print()

    on_311 = "" if v[:2] == (3, 11) else f" (set for CPython 3.11; this is {v[0]}.{v[1]})"
    net = cw - entry_cw / CALLS
    print(f"Targets (DESIGN.md, Performance budget){on_311}:")
    rows = [
        (
            f"added cost per profiled call ≤ {TARGET_PER_CALL_US} µs",
            f"{cw:.4f} µs",
            cw <= TARGET_PER_CALL_US,
            f"net of its entry + exit share: {net:.4f} µs",
        ),
        (
            f"entry + exit + limit check ≤ {TARGET_ENTRY_EXIT_US} µs",
            f"{entry_cw:.4f} µs",
            entry_cw <= TARGET_ENTRY_EXIT_US,
            f"recompyle: {entry_rc:.4f} µs",
        ),
        (
            f"≥ {TARGET_VS_RECOMPYLE:g}x cheaper per call than recompyle's flat_profile",
            fmt_ratio(r_rc),
            r_rc >= TARGET_VS_RECOMPYLE,
            "",
        ),
        ("cheaper per call than cProfile", fmt_ratio(r_cp), r_cp > 1, ""),
    ]
    for label, value, ok, note in rows:
        print(f"  {label:52s} {value:>10s}  {verdict(ok):7s}  {note}".rstrip())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="a quick run: 21 rounds of 5,000 invocations (noisier)"
    )
    parser.add_argument("--rounds", type=int, help="rounds (default 301; 21 with --quick)")
    parser.add_argument(
        "--number",
        type=int,
        help="invocations per variant per round (default 20000; 5000 with --quick)",
    )
    args = parser.parse_args()
    rounds = args.rounds or (21 if args.quick else 301)
    number = args.number or (5_000 if args.quick else 20_000)
    sys.stdout.reconfigure(errors="backslashreplace")
    problems = check_setup()
    m = measure(rounds, number)
    report(m, rounds, number, problems)


if __name__ == "__main__":
    main()
