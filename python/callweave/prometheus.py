"""Prometheus export: profiled functions' aggregates on a ``/metrics`` endpoint.

Needs the ``prometheus_client`` package: ``pip install 'callweave[prometheus]'``.

``start(port)`` (or ``[tool.callweave.prometheus] port = 9464``) serves ``/metrics`` with
prometheus_client's own HTTP server; ``register(registry)`` adds callweave's metrics to a
registry an application already serves. The metrics, per profiled function
(labels ``module``, ``function``) and per call site (plus ``line`` and ``callee``):

- ``callweave_function_seconds``: a histogram of invocation times;
- ``callweave_function_above_limit_total``: invocations at or over the time limit;
- ``callweave_function_errors_total``: invocations that ended with an exception;
- ``callweave_site_seconds_total`` and ``callweave_site_calls_total``: time spent in a call
  site, and how many times it ran.

In a single process a collector reads the runtime's aggregates when Prometheus scrapes: no
cost per call, no second bookkeeping. Histogram buckets are the native histogram's own edges
(it keeps 16 buckets per power of two of nanoseconds): the bucket ``le`` = 2**k ns, for k from
10 to 36 (1.024 µs to about 68.7 s), counts the invocations that took less than 2**k ns, so
every count is exact (an invocation of exactly 2**k ns, a 1 ns coincidence, counts in the next
bucket). Functions that share a module and qualname, and sites that share a line and callee,
are added together. Counters restart from zero when the aggregates are reset
(``callweave.reset_stats()``), which Prometheus treats as a counter reset.

Multi-process servers (gunicorn-style forks): with ``PROMETHEUS_MULTIPROC_DIR`` set before
``prometheus_client`` is imported, prometheus_client's multiprocess mode is used. Each process
writes its own aggregates into prometheus_client's per-process value files every ``interval``
seconds, at exit, and before it serves a scrape; the process serving ``/metrics`` (the one that
called ``start``) adds every process's files together with prometheus_client's
``MultiProcessCollector``. A forked child reports only its own invocations (its aggregates
start from zero, as for callweave's reports), and its files stay after it exits, so the
counts of finished workers remain in the totals. A worker killed between two writes loses at
most the last ``interval`` of its counts.
"""

from __future__ import annotations

import atexit
import errno
import logging
import os
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

try:
    import prometheus_client
    from prometheus_client import values as _values
    from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
    from prometheus_client.multiprocess import MultiProcessCollector
    from prometheus_client.registry import Collector, CollectorRegistry
    from prometheus_client.utils import floatToGoString as _untyped_float_to_go_string
except ImportError as _missing:
    raise ImportError(
        "callweave.prometheus needs the prometheus_client package, an optional extra: "
        "pip install 'callweave[prometheus]'"
    ) from _missing

from callweave import _native

#: prometheus_client's float formatting (what its own histograms write as ``le``).
_float_to_go = cast(Callable[[float], str], _untyped_float_to_go_string)

__all__ = [
    "BUCKET_BOUNDS",
    "CallweaveCollector",
    "multiprocess_mode",
    "register",
    "start",
    "sync",
]

#: Histogram bucket bounds in seconds: 2**k ns for k in 10..36 (edges of the native histogram).
BUCKET_BOUNDS: tuple[float, ...] = tuple((1 << k) / 1e9 for k in range(10, 37))
_BOUNDS_NS: tuple[int, ...] = tuple(1 << k for k in range(10, 37))
_LE: tuple[str, ...] = (*(_float_to_go(b) for b in BUCKET_BOUNDS), "+Inf")

log = logging.getLogger("callweave.prometheus")

_FUNCTION = "callweave_function_seconds"
_ABOVE = "callweave_function_above_limit"
_ERRORS = "callweave_function_errors"
_SITE_SECONDS = "callweave_site_seconds"
_SITE_CALLS = "callweave_site_calls"
_HELP = {
    _FUNCTION: "Invocation time of a profiled function (callweave).",
    _ABOVE: "Invocations of a profiled function at or over its time limit (callweave).",
    _ERRORS: "Invocations of a profiled function that raised (callweave).",
    _SITE_SECONDS: "Time spent in a call site of a profiled function (callweave).",
    _SITE_CALLS: "Calls made by a call site of a profiled function (callweave).",
}
_FUNCTION_LABELS = ("module", "function")
_SITE_LABELS = ("module", "function", "line", "callee")


@dataclass
class _Function:
    """One (module, qualname)'s aggregates, summed over its profiles."""

    buckets: list[int] = field(default_factory=lambda: [0] * (len(_BOUNDS_NS) + 1))
    total: float = 0.0
    above: int = 0
    errors: int = 0
    #: (line, callee) -> [calls, seconds]
    sites: dict[tuple[str, str], list[float]] = field(default_factory=dict)


def _bucket_index(upper_ns: int | None) -> int:
    """The index in ``_LE`` of the first bound at or above a native bucket's upper bound."""
    if upper_ns is None:
        return len(_BOUNDS_NS)
    for i, bound in enumerate(_BOUNDS_NS):
        if upper_ns <= bound:
            return i
    return len(_BOUNDS_NS)


def _gather(profiles: Iterable[_native.FunctionProfile]) -> dict[tuple[str, str], _Function]:
    out: dict[tuple[str, str], _Function] = {}
    for profile in profiles:
        count, errors, total, _min, _max, _p50, _p95, _p99, site_aggs, above, _ = (
            profile.aggregates()
        )
        key = (profile.module, profile.qualname)
        fn = out.get(key)
        if fn is None:
            fn = out[key] = _Function()
        if count:
            for upper, n in profile.histogram():
                fn.buckets[_bucket_index(upper)] += n
            fn.total += total
            fn.above += above
            fn.errors += errors
        for (_text, callee, line, *_), (calls, spent, _max, _nested) in zip(
            profile.sites, site_aggs, strict=True
        ):
            site = fn.sites.setdefault((str(line), callee or "?"), [0, 0.0])
            site[0] += calls
            site[1] += spent
    return out


class CallweaveCollector(Collector):
    """A prometheus_client collector of this process's profiled functions, read at scrape time."""

    def collect(self) -> Iterator[Metric]:
        """The metric families (see the module docstring)."""
        hist = HistogramMetricFamily(_FUNCTION, _HELP[_FUNCTION], labels=_FUNCTION_LABELS)
        above = CounterMetricFamily(_ABOVE, _HELP[_ABOVE], labels=_FUNCTION_LABELS)
        errors = CounterMetricFamily(_ERRORS, _HELP[_ERRORS], labels=_FUNCTION_LABELS)
        seconds = CounterMetricFamily(_SITE_SECONDS, _HELP[_SITE_SECONDS], labels=_SITE_LABELS)
        calls = CounterMetricFamily(_SITE_CALLS, _HELP[_SITE_CALLS], labels=_SITE_LABELS)
        for (module, qualname), fn in _gather(_native.all_profiles()).items():
            labels = [module, qualname]
            cumulative, acc = [], 0
            for le, n in zip(_LE, fn.buckets, strict=True):
                acc += n
                cumulative.append((le, float(acc)))
            hist.add_metric(labels, cumulative, fn.total)
            above.add_metric(labels, fn.above)
            errors.add_metric(labels, fn.errors)
            for (line, callee), (n_calls, spent) in fn.sites.items():
                seconds.add_metric([*labels, line, callee], spent)
                calls.add_metric([*labels, line, callee], n_calls)
        yield from (hist, above, errors, seconds, calls)


# --------------------------------------------------------------------------- multiprocess


def multiprocess_mode() -> bool:
    """Whether prometheus_client runs in multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``)."""
    return bool(getattr(_values.ValueClass, "_multiprocess", False))


class _Writer:
    """Writes this process's aggregates into prometheus_client's per-process value files."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.lock = threading.Lock()
        self.values: dict[tuple[str, str, tuple[str, ...]], Any] = {}
        self.written: tuple[int, list[int]] | None = None
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def _set(self, typ: str, metric: str, name: str, labels: tuple[str, ...], v: float) -> None:
        key = (metric, name, labels)
        value = self.values.get(key)
        if value is None:
            names = _SITE_LABELS if metric.startswith("callweave_site") else _FUNCTION_LABELS
            if name.endswith("_bucket"):
                names = (*names, "le")
            value = _values.ValueClass(typ, metric, name, names, labels, _HELP[metric])
            self.values[key] = value
        value.set(v)

    def sync(self) -> None:
        """Writes the aggregates if any changed since the last write."""
        with self.lock:
            counts = _native.profile_counts()
            if counts == self.written:
                return
            for (module, qualname), fn in _gather(_native.all_profiles()).items():
                labels = (module, qualname)
                for le, n in zip(_LE, fn.buckets, strict=True):
                    self._set("histogram", _FUNCTION, f"{_FUNCTION}_bucket", (*labels, le), n)
                self._set("histogram", _FUNCTION, f"{_FUNCTION}_sum", labels, fn.total)
                self._set("counter", _ABOVE, f"{_ABOVE}_total", labels, fn.above)
                self._set("counter", _ERRORS, f"{_ERRORS}_total", labels, fn.errors)
                for (line, callee), (n_calls, spent) in fn.sites.items():
                    site = (*labels, line, callee)
                    self._set("counter", _SITE_SECONDS, f"{_SITE_SECONDS}_total", site, spent)
                    self._set("counter", _SITE_CALLS, f"{_SITE_CALLS}_total", site, n_calls)
            self.written = counts

    def _run(self) -> None:
        while not self.stop.wait(self.interval):
            self.sync()

    def start(self) -> None:
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="callweave-prometheus", daemon=True)
        self.thread.start()

    def after_fork_in_child(self) -> None:
        # The parent's thread and lock are gone or held by a thread that no longer exists;
        # the value files are the parent's until prometheus_client sees the new pid. A forked
        # child reports its own invocations only (as callweave's exit reports do).
        from callweave.profiler import reset_stats

        reset_stats()
        self.lock = threading.Lock()
        self.written = None
        self.start()


_state: dict[str, Any] = {"writer": None, "collector": None, "server": None}
_state_lock = threading.Lock()


def _writer(interval: float) -> _Writer:
    with _state_lock:
        writer: _Writer | None = _state["writer"]
        if writer is None:
            writer = _state["writer"] = _Writer(interval)
            writer.start()
            atexit.register(writer.sync)
            os.register_at_fork(after_in_child=writer.after_fork_in_child)
        return writer


def sync() -> None:
    """Multiprocess mode: writes this process's aggregates to its value files now."""
    writer: _Writer | None = _state["writer"]
    if writer is not None:
        writer.sync()


class _MultiProcess(Collector):
    """Every process's values (this one's written first), added together."""

    def __init__(self, writer: _Writer) -> None:
        self.writer = writer
        # Not registered anywhere (registry None): this collector calls it.
        self.files: Any = MultiProcessCollector(None)  # type: ignore[no-untyped-call]

    def collect(self) -> Iterable[Metric]:
        """This process's values written, then every process's read from the files."""
        self.writer.sync()
        metrics: Iterable[Metric] = self.files.collect()
        return metrics


def register(
    registry: CollectorRegistry | None = None, *, interval: float = 1.0
) -> CollectorRegistry:
    """Adds callweave's metrics to ``registry`` (default: prometheus_client's ``REGISTRY``).

    In multiprocess mode nothing is added to the registry: this process starts writing its
    aggregates to its value files every ``interval`` seconds (and at exit), which the
    ``MultiProcessCollector`` of whichever process serves the metrics reads. Idempotent.

    Returns:
        The registry.
    """
    registry = prometheus_client.REGISTRY if registry is None else registry
    if multiprocess_mode():
        _writer(interval)
        return registry
    with _state_lock:
        collector = _state["collector"]
        if collector is None:
            collector = _state["collector"] = CallweaveCollector()
        # Weak: a registry's id() can be reused once it is freed, and a new registry at the
        # address of a dead one must still get the collector.
        registered: weakref.WeakSet[CollectorRegistry] = _state.setdefault(
            "registries", weakref.WeakSet()
        )
        if registry not in registered:
            registry.register(collector)
            registered.add(registry)
    return registry


def start(port: int = 9464, addr: str = "0.0.0.0", *, interval: float = 1.0) -> None:
    """Serves ``/metrics`` on ``addr:port`` from a daemon thread (prometheus_client's server).

    In a single process it serves prometheus_client's ``REGISTRY`` with callweave's metrics
    added. In multiprocess mode it serves every process's callweave metrics, read from
    ``PROMETHEUS_MULTIPROC_DIR`` (and this process writes its own, as :func:`register` does).
    Call it in one process: the one whose children are the workers. In multiprocess mode, a
    port already in use is taken to be a sibling process's server (workers that each import
    the application start it alike): this process then only writes its values, and says so
    in an INFO log line.

    Args:
        port: TCP port (0: any free port; see ``server_port()``).
        addr: Address to listen on.
        interval: Multiprocess mode: seconds between writes of each process's values.

    Raises:
        RuntimeError: The server is already running.
        OSError: The port cannot be bound (other than in use, in multiprocess mode).
    """
    with _state_lock:
        if _state["server"] is not None:
            raise RuntimeError("callweave.prometheus: the /metrics server is already running")
    if multiprocess_mode():
        registry = CollectorRegistry()
        registry.register(_MultiProcess(_writer(interval)))
    else:
        registry = register()
    try:
        server, _thread = prometheus_client.start_http_server(port, addr, registry=registry)
    except OSError as exc:
        if not (multiprocess_mode() and exc.errno == errno.EADDRINUSE):
            raise
        log.info(
            "callweave: %s:%d is in use (another process's /metrics?); this process "
            "(pid %d) writes its values to PROMETHEUS_MULTIPROC_DIR only",
            addr,
            port,
            os.getpid(),
        )
        return
    with _state_lock:
        _state["server"] = server


def server_port() -> int | None:
    """The port the ``/metrics`` server listens on, or None when none was started."""
    server = _state["server"]
    return None if server is None else int(server.server_port)
