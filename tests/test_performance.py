"""``python -m callweave.performance``: the forward comparison and its clock floor."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from callweave import _native


def test_clock_pair_cost_is_a_positive_finite_figure():
    ns = _native.clock_pair_ns(1000, 2)
    assert math.isfinite(ns)
    assert ns > 0
    with pytest.raises(OverflowError):
        _native.clock_pair_ns(-1)


def test_forward_only_prints_each_figure_with_its_ratio_and_the_clock_floor():
    args = ["--forward-only", "--rounds", "3", "--calls", "200"]
    out = subprocess.run(
        [sys.executable, "-m", "callweave.performance", *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,  # a hang guard, not a performance bound
    ).stdout
    rows = {line.split("  ")[1].strip(): line for line in out.splitlines() if line.startswith("  ")}
    assert "operator.call forward" in rows
    for label in ("timed call (time_call)", "entry + exit + limit check"):
        assert rows[label].rstrip().endswith(("PASS", "FAIL"))
    floor = rows["floor: two clock readings"]
    assert f"({_native.clock_source()}, native loop" in floor
    assert float(floor.split()[4]) > 0
