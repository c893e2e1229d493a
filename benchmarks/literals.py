"""Transformed literals against plain constants and module globals, side by side in one run.

A function returning a transformed literal (``decimal_literals``, ``haskell_strs``,
``precomputed_slices``) loads a constant computed once, so it should run as fast as one
returning a plain constant, and faster than one reading a module-level global holding the same
value. Variants alternate round by round; the medians are printed with the ratios.

Usage: ``python benchmarks/literals.py [--rounds N] [--loops N]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from decimal import Decimal

from callweave.transforms import decimal_literals, haskell_strs, precomputed_slices

DECIMAL = Decimal("0.1")
CHARS = ("a", "b", "c")
HALF = slice(None, 2)
DATA = [1, 2, 3]


def plain_float() -> float:
    return 0.1


def global_decimal() -> Decimal:
    return DECIMAL


@decimal_literals
def transformed_decimal() -> Decimal:
    return 0.1


def plain_tuple() -> tuple[str, ...]:
    return ("a", "b", "c")


def global_tuple() -> tuple[str, ...]:
    return CHARS


@haskell_strs
def transformed_tuple() -> tuple[str, ...]:
    return "abc"  # type: ignore[return-value]


def plain_slice() -> list[int]:
    return DATA[:2]


def global_slice() -> list[int]:
    return DATA[HALF]


@precomputed_slices()
def transformed_slice() -> list[int]:
    return DATA[:2]


#: Ten loads per iteration: the cost of the load itself, not the call's.
LOOP = range(10)


def plain_loads() -> object:
    x = None
    for _ in LOOP:
        x = 0.1
        x = 0.1
        x = 0.1
        x = 0.1
        x = 0.1
        x = 0.1
        x = 0.1
        x = 0.1
        x = 0.1
        x = 0.1
    return x


def global_loads() -> object:
    x = None
    for _ in LOOP:
        x = DECIMAL
        x = DECIMAL
        x = DECIMAL
        x = DECIMAL
        x = DECIMAL
        x = DECIMAL
        x = DECIMAL
        x = DECIMAL
        x = DECIMAL
        x = DECIMAL
    return x


@decimal_literals
def transformed_loads() -> object:
    x = None
    for _ in LOOP:
        x = 0.1
        x = 0.1
        x = 0.1
        x = 0.1
        x = 0.1
        x = 0.1
        x = 0.1
        x = 0.1
        x = 0.1
        x = 0.1
    return x


GROUPS: dict[str, dict[str, Callable[[], object]]] = {
    "decimal_literals (0.1)": {
        "plain constant": plain_float,
        "module global": global_decimal,
        "transformed": transformed_decimal,
    },
    "haskell_strs ('abc')": {
        "plain constant": plain_tuple,
        "module global": global_tuple,
        "transformed": transformed_tuple,
    },
    "100 loads of 0.1 per call": {
        "plain constant": plain_loads,
        "module global": global_loads,
        "transformed": transformed_loads,
    },
    "precomputed_slices (a[:2])": {
        "plain constant": plain_slice,
        "module global": global_slice,
        "transformed": transformed_slice,
    },
}


def per_call(func: Callable[[], object], loops: int) -> float:
    """Seconds per call of ``func`` over ``loops`` calls (loop overhead included)."""
    t = time.perf_counter()
    for _ in range(loops):
        func()
        func()
        func()
        func()
        func()
    return (time.perf_counter() - t) / (loops * 5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--loops", type=int, default=200_000)
    args = parser.parse_args()
    assert transformed_decimal() == Decimal("0.1") and transformed_tuple() == CHARS
    print(f"Python {sys.version.split()[0]}: medians of {args.rounds} rounds, ns per call")
    for group, variants in GROUPS.items():
        times: dict[str, list[float]] = {k: [] for k in variants}
        for _ in range(args.rounds):
            for name, func in variants.items():
                times[name].append(per_call(func, args.loops))
        med = {k: statistics.median(v) * 1e9 for k, v in times.items()}
        t = med["transformed"]
        print(
            f"  {group:28s} plain {med['plain constant']:6.1f}  global {med['module global']:6.1f}"
            f"  transformed {t:6.1f}   transformed/plain {t / med['plain constant']:4.2f}x"
            f"  transformed/global {t / med['module global']:4.2f}x"
        )


if __name__ == "__main__":
    main()
