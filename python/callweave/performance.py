"""Measure callweave's overhead, as recompyle's ``performance`` module did.

``python -m callweave.performance [--number N] [--repeat R]`` times a function with 10 calls:
plain, with ``wrap_calls`` and a pass-through wrapper, and with ``flat_profile`` with no
callback, with the default below callback, and with the default above callback. Variants run
round-robin, round by round, and medians are reported, so machine noise hits all alike.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import timeit

from callweave import flat_profile, wrap_calls

CALLS = 10


def simple_wrapper(call, /, *args, **kwargs):  # noqa: D103
    return call(*args, **kwargs)


def other(val1, val2):  # noqa: D103
    return val1 + val2


def unwrapped():  # noqa: D103
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


@wrap_calls(wrapper=simple_wrapper)
def wrapped_simple():  # noqa: D103
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


@flat_profile(time_limit=100, below_callback=None)
def wrapped_profiler():  # noqa: D103
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


@flat_profile(time_limit=100)  # the default below callback runs every time
def wrapped_profiler_below():  # noqa: D103
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


@flat_profile(time_limit=0)  # the default above callback runs every time
def wrapped_profiler_above():  # noqa: D103
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


@flat_profile(time_limit=100, below_callback=None)
def empty_profiled():  # noqa: D103
    pass


def empty_plain():  # noqa: D103
    pass


VARIANTS = {
    "unwrapped function": unwrapped,
    "wrap_calls, pass-through wrapper": wrapped_simple,
    "flat_profile, no callback": wrapped_profiler,
    "flat_profile, default below callback": wrapped_profiler_below,
    "flat_profile, default above callback": wrapped_profiler_above,
    "empty function": empty_plain,
    "empty function, flat_profile": empty_profiled,
}


def measure(number: int, repeat: int) -> dict[str, float]:
    """Median microseconds per invocation of each variant, round-robin over ``repeat`` rounds."""
    samples: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(repeat):
        for name, func in VARIANTS.items():
            samples[name].append(timeit.timeit(func, number=number) / number * 1e6)
    return {name: statistics.median(v) for name, v in samples.items()}


def main() -> None:
    """Runs the measurement and prints the results."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--number", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    # The above/below defaults log; keep the measurement about the profiler, not the console.
    logging.getLogger("callweave.profiler").addHandler(logging.NullHandler())
    logging.getLogger("callweave.profiler").propagate = False
    m = measure(args.number, args.repeat)
    for name, us in m.items():
        print(f"{name:42s} {us:8.3f} us per invocation")
    base = m["unwrapped function"]
    print()
    calls = m["wrap_calls, pass-through wrapper"] - base
    profiled = m["flat_profile, no callback"] - base
    entry = m["empty function, flat_profile"] - m["empty function"]
    below = m["flat_profile, default below callback"] - m["flat_profile, no callback"]
    above = m["flat_profile, default above callback"] - m["flat_profile, no callback"]
    print(f"wrap_calls cost per wrapped call:     {calls / CALLS:.4f} us")
    print(f"flat_profile cost per profiled call:  {profiled / CALLS:.4f} us")
    print(f"flat_profile entry + exit + check:    {entry:.4f} us")
    print(f"default below callback costs:         {below:.4f} us")
    print(f"default above callback costs:         {above:.4f} us")


if __name__ == "__main__":
    main()
