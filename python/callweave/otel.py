"""OpenTelemetry export: a span for each slow invocation of a profiled function.

Needs the OpenTelemetry API: ``pip install 'callweave[otel]'``. The spans go through the
API's global tracer provider, so they reach whatever backend the service already exports to
(callweave configures no SDK or exporter).

``above = "otel"`` in a ``[[tool.callweave.profile]]`` rule, or
``above_callback=callweave.otel.span`` with ``flat_profile``, emits, when an invocation runs at
or over its time limit, one span:

- name ``<module>.<qualname>``; it started when the invocation started and ended when it
  ended (``total`` before the callback ran: a generator's total is its running time, so its
  span is as long as that, ending when it finished);
- parented to the span current where the invocation ended (the caller's, when one is active);
- attributes ``code.namespace``, ``code.function``, ``code.filepath``, ``code.lineno``,
  ``callweave.total_s``, ``callweave.time_limit_s``;
- one span event ``call`` per call site that ran, longest total first, with
  ``callweave.site.text``, ``callweave.site.callee``, ``callweave.site.line``,
  ``callweave.site.count``, ``callweave.site.total_s`` and ``callweave.site.max_s``.
  Events, not child spans: the runtime keeps each site's count, total and maximum, not when
  each call started, and a child span would claim timings nobody measured.

The callback needs only the per-site breakdown, so a rule using it keeps no per-call list
(its cost per call is that of the default log callback).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

try:
    from opentelemetry import trace
except ImportError as _missing:
    raise ImportError(
        "callweave.otel needs the OpenTelemetry API, an optional extra: "
        "pip install 'callweave[otel]'"
    ) from _missing

from callweave.profiler import CallTimes

__all__ = ["TRACER_NAME", "span"]

#: The instrumentation scope name of callweave's tracer.
TRACER_NAME = "callweave"


def span(total: float, limit: float, times: CallTimes, func: Callable[..., Any]) -> None:
    """Emits one span for a finished invocation (a ``ProfilerCallback``; see the module).

    Args:
        total: The invocation's total, seconds.
        limit: Its function's time limit, seconds.
        times: Its call times; only ``times.sites`` is read.
        func: The profiled function (or its stand-in in hook mode).
    """
    end = time.time_ns()
    start = end - round(total * 1e9)
    module = getattr(func, "__module__", None) or "?"
    qualname = getattr(func, "__qualname__", None) or getattr(func, "__name__", "?")
    code = getattr(func, "__code__", None)
    filename = getattr(func, "filename", None) or getattr(code, "co_filename", None)
    lineno = getattr(func, "lineno", None) or getattr(code, "co_firstlineno", None)
    attributes: dict[str, Any] = {
        "code.namespace": module,
        "code.function": qualname,
        "callweave.total_s": total,
        "callweave.time_limit_s": limit,
    }
    if filename is not None:
        attributes["code.filepath"] = filename
    if lineno is not None:
        attributes["code.lineno"] = lineno
    tracer = trace.get_tracer(TRACER_NAME)
    out = tracer.start_span(f"{module}.{qualname}", attributes=attributes, start_time=start)
    for site in getattr(times, "sites", ()):
        if not site.count:
            continue
        out.add_event(
            "call",
            {
                "callweave.site.text": site.text,
                "callweave.site.callee": site.callee or "?",
                "callweave.site.line": site.line,
                "callweave.site.count": site.count,
                "callweave.site.total_s": site.total,
                "callweave.site.max_s": site.max,
            },
            timestamp=end,
        )
    out.end(end_time=end)


#: Needs only ``times.sites``: the runtime keeps no per-call list for it (see the profiler).
span.__callweave_sites_only__ = True  # type: ignore[attr-defined]
