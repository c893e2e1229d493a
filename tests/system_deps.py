"""Locating the system programs (Debian packages) some tests talk to for real.

``scripts/system-deps.sh`` installs them and ``scripts/test.sh`` sets
``CALLWEAVE_REQUIRE_SYSTEM_DEPS=1``, so under the test command a missing program is a test
failure. A bare ``pytest`` run on a machine without them skips those tests and says which
program is missing.
"""

from __future__ import annotations

import os
import shutil

import pytest


def require(program: str) -> str:
    """Returns the path of ``program``, or skips (fails under the test command) without it.

    Args:
        program: The executable's name, looked up on ``PATH``.

    Returns:
        The executable's absolute path.
    """
    path = shutil.which(program)
    if path is not None:
        return path
    reason = f"{program} is not installed (scripts/system-deps.sh installs it)"
    if os.environ.get("CALLWEAVE_REQUIRE_SYSTEM_DEPS") == "1":
        pytest.fail(reason)
    pytest.skip(reason)
