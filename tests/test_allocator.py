"""The extension's allocator settings (``crates/callweave_python/src/allocator.rs``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

SCRIPT = "import json, callweave._native as n; print(json.dumps(n.allocator_options()))"


def options(**env: str) -> list[int]:
    """The allocator's ``(arena_eager_commit, purge_delay)`` in a new process with ``env``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MIMALLOC_")}
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result: list[int] = json.loads(out)
    return result


def test_memory_is_committed_on_demand_and_given_back_at_once():
    # mimalloc's defaults are (2, 1000): eager arena commit, freed memory kept for a second.
    # A bundled mimalloc whose option numbers moved would leave them so and fail here.
    assert options() == [0, 0]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"MIMALLOC_PURGE_DELAY": "50"}, [0, 50]),
        ({"MIMALLOC_ARENA_EAGER_COMMIT": "1"}, [1, 0]),
    ],
)
def test_the_environment_overrides_each_setting(env: dict[str, str], expected: list[int]):
    assert options(**env) == expected
