"""callweave: rewrite Python functions so that every call goes through a wrapper.

The decorators :func:`wrap_calls` and :func:`rewrite_function` keep recompyle's API; the
rewrite itself is done by a Rust engine that edits the source text in place and maps every
position back, so tracebacks, ``inspect`` and debuggers see the code as written.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from callweave._native import __version__
from callweave.errors import CallweaveError, ConfigError, RewriteError, SourceUnavailableError

if TYPE_CHECKING:
    from callweave.decorators import CallWrapper, rewrite_function, wrap_calls
    from callweave.hook import install, uninstall
    from callweave.profiler import (
        CallTimes,
        FunctionStats,
        SiteStats,
        default_above_log,
        default_below_log,
        flat_profile,
        reset_stats,
        stats,
    )
    from callweave.reports import report
    from callweave.sites import CallSite

#: Where each public name that is imported on first use lives (PEP 562): ``import callweave``
#: (done by every process that enables callweave) does not pay for the decorators' rewriting
#: machinery, the profiler's Python layer or the reports until they are used.
_LAZY: dict[str, str] = {
    "CallSite": "callweave.sites",
    "CallTimes": "callweave.profiler",
    "CallWrapper": "callweave.decorators",
    "FunctionStats": "callweave.profiler",
    "SiteStats": "callweave.profiler",
    "default_above_log": "callweave.profiler",
    "default_below_log": "callweave.profiler",
    "flat_profile": "callweave.profiler",
    "install": "callweave.hook",
    "report": "callweave.reports",
    "reset_stats": "callweave.profiler",
    "rewrite_function": "callweave.decorators",
    "stats": "callweave.profiler",
    "uninstall": "callweave.hook",
    "wrap_calls": "callweave.decorators",
}

#: The submodules that ``import callweave`` used to import (and so bind as attributes of the
#: package): ``callweave.profiler`` after a bare ``import callweave`` still works.
_SUBMODULES = frozenset(
    {"config", "decorators", "hook", "lifecycle", "profiler", "reports", "sites", "transforms"}
)


def __getattr__(name: str) -> Any:
    """Imports a public name's module on first use (PEP 562), and binds the name here."""
    module = _LAZY.get(name)
    if module is not None:
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f"callweave.{name}")
    raise AttributeError(f"module 'callweave' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__all__ = [
    "CallSite",
    "CallTimes",
    "CallWrapper",
    "CallweaveError",
    "ConfigError",
    "FunctionStats",
    "RewriteError",
    "SiteStats",
    "SourceUnavailableError",
    "__version__",
    "default_above_log",
    "default_below_log",
    "flat_profile",
    "install",
    "report",
    "reset_stats",
    "rewrite_function",
    "stats",
    "uninstall",
    "wrap_calls",
]
