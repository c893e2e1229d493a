"""callweave: rewrite Python functions so that every call goes through a wrapper.

The decorators :func:`wrap_calls` and :func:`rewrite_function` keep recompyle's API; the
rewrite itself is done by a Rust engine that edits the source text in place and maps every
position back, so tracebacks, ``inspect`` and debuggers see the code as written.
"""

from callweave._native import __version__
from callweave.decorators import CallWrapper, rewrite_function, wrap_calls
from callweave.errors import CallweaveError, ConfigError, RewriteError, SourceUnavailableError
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
