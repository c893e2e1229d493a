"""Asking the other finders on ``sys.meta_path`` for a module's spec."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any


def spec_from_others(fullname: str, path: Any, target: Any, skip: Callable[[object], bool]) -> Any:
    """The first spec a finder on ``sys.meta_path`` gives for ``fullname``, or None.

    Finders for which ``skip`` is true (the caller itself) and finders without ``find_spec``
    are passed over. The list is copied first: a finder may add or remove entries while it
    looks.
    """
    for finder in list(sys.meta_path):
        if skip(finder):
            continue
        find = getattr(finder, "find_spec", None)
        if find is None:
            continue
        spec = find(fullname, path, target)
        if spec is not None:
            return spec
    return None
