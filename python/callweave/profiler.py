"""Flat profiling: ``flat_profile``, its callbacks, and aggregate statistics.

A profiled function runs its body between ``RECORD = ENTER(i)`` and ``EXIT(RECORD)`` (in a
``finally``) and every call in it goes through callweave's native timer, so each invocation
has its own record (exact under recursion, threads, generators and asyncio) and the cost per
call is tens of nanoseconds.
When an invocation ends, its total is compared with the time limit and the above or below
callback runs: ``callback(total, limit, times, func)`` as in recompyle.

What an invocation's total counts:

- A generator's (or async generator's) total is the time its frame runs: the sum of its
  resumptions. The rewritten code stops the record's clock at each ``yield``
  (``RESUME(RECORD, (yield PAUSE(RECORD, value)))``), so time spent suspended while the
  consumer works is not counted. ``yield from`` counts in full: the delegating generator
  is running (its frame is on the stack) for the whole delegation. A generator closed early
  (``close()``, ``aclose()``: a ``break`` in the consumer, ``islice``, ``zip``) ends normally,
  not as an error.
- A coroutine's awaits stay timed in full, suspensions included: waiting is what an awaited
  call costs its caller, and that is what a profile of an ``async def`` is for.
- Time spent in above/below callbacks is profiler overhead: it is charged neither to the
  invocation that ran them nor to any enclosing timed call or invocation (a profiled caller's
  call site of a profiled callee does not include the callee's callback).

Custom callbacks receive every call's duration by callee name; the runtime keeps the names,
never the callees (which would keep objects such as open files alive until the invocation
ends). Names are computed once per distinct callee. At most ``MAX_CALLS`` calls per
invocation are kept one by one (16 bytes each); later ones still count in ``times.sites``
and are counted in ``times.dropped``.
"""

from __future__ import annotations

import copyreg
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ParamSpec, Protocol, TypeVar

from callweave import _native
from callweave._display import callee_label, format_duration, one_line
from callweave.config import parse_duration

__all__ = [
    "CallTimes",
    "FunctionStats",
    "ProfilerCallback",
    "SiteStats",
    "SiteTime",
    "default_above_log",
    "default_below_log",
    "flat_profile",
    "reset_stats",
    "stats",
]

log = logging.getLogger("callweave.profiler")

P = ParamSpec("P")
T = TypeVar("T")

#: Names injected into profiled code; the timers are shared by every rewrite.
TIMER_NAME = "__callweave_time__"
ATIMER_NAME = "__callweave_atime__"
EXIT_NAME = "__callweave_exit__"
PAUSE_NAME = "__callweave_pause__"
RESUME_NAME = "__callweave_resume__"
STRIP_NAME = "__callweave_strip__"
RECORD_NAME: str = _native.RECORD_NAME
#: The call binder, which calls with ``*`` or ``**`` arguments go through (both layers).
BIND_NAME: str = _native.BIND_NAME
RUNTIME_NAMES: dict[str, Any] = {
    BIND_NAME: _native.bind_call,
    TIMER_NAME: _native.time_call,
    ATIMER_NAME: _native.time_await,
    EXIT_NAME: _native.exit_record,
    PAUSE_NAME: _native.pause_record,
    RESUME_NAME: _native.resume_record,
    STRIP_NAME: _native.strip_locals,
}

# The binder is a module-level singleton of the extension: pickled by name (modules' globals
# hold it, and pickling a function by value takes them along).
copyreg.pickle(type(_native.bind_call), lambda binder: "bind_call")

#: Calls of one invocation kept one by one for custom callbacks (see the module docstring).
MAX_CALLS = 1 << 20


class ProfilerCallback(Protocol):
    """``callback(total, limit, times, func)``, run when a profiled invocation ends."""

    def __call__(
        self, total: float, limit: float, times: CallTimes, func: Callable[..., Any]
    ) -> None:
        """Receives the total and limit (seconds), the call times and the function."""
        ...


@dataclass(frozen=True, slots=True)
class SiteTime:
    """One call site's share of one invocation.

    Attributes:
        text: The call's source text.
        callee: The callee's call name, or None.
        line: The call's line.
        count: How many times it ran in this invocation.
        total: Seconds spent in it in this invocation.
        max: The longest single call, in seconds.
    """

    text: str
    callee: str | None
    line: int
    count: int
    total: float
    max: float


class CallTimes(dict[str, list[float]]):
    """Maps each callee's name to this invocation's call durations in seconds, in call order.

    The name is the callable's ``__qualname__``, else ``__name__``, else that of its
    ``__wrapped__``, else its type's name (recompyle's rule). ``sites`` holds the per-site
    breakdown, sorted by total time, longest first. ``dropped`` counts the calls past
    ``MAX_CALLS`` in the invocation, which are in ``sites`` but not in the lists.
    """

    sites: list[SiteTime]
    dropped: int

    def __init__(self, *args: Any, sites: list[SiteTime] | None = None, dropped: int = 0) -> None:
        super().__init__(*args)
        self.sites = sites or []
        self.dropped = dropped


def callable_name(call: Any) -> str:
    """Recompyle's name for a callable: qualname, name, through ``__wrapped__``, type name.

    The runtime applies the same rule natively (``runtime/names.rs``) to name callees.
    """
    seen = 0
    while True:
        for attr in ("__qualname__", "__name__"):
            name = getattr(call, attr, None)
            if isinstance(name, str):
                return name
        wrapped = getattr(call, "__wrapped__", None)
        if wrapped is None or seen > 100:
            return type(call).__name__
        call, seen = wrapped, seen + 1


def _site_times(record: _native.Record, profile: _native.FunctionProfile) -> list[SiteTime]:
    sites = profile.sites
    out = [
        SiteTime(sites[i][0], sites[i][1], sites[i][2], count, total, longest)
        for (i, count, total, longest) in record.breakdown()
    ]
    out.sort(key=lambda s: s.total, reverse=True)
    return out


def _call_times(record: _native.Record, profile: _native.FunctionProfile) -> CallTimes:
    times = CallTimes(sites=_site_times(record, profile), dropped=record.dropped_calls)
    for _site, name, seconds in record.calls():
        lst = times.get(name)
        if lst is None:
            times[name] = [seconds]
        else:
            lst.append(seconds)
    return times


class _Described:
    """Stands in for a profiled function that is not reachable as an object (hook mode)."""

    def __init__(self, profile: _native.FunctionProfile) -> None:
        self.__qualname__ = profile.qualname
        self.__name__ = profile.qualname.rpartition(".")[2]
        self.__module__ = profile.module
        self.filename = profile.filename
        self.lineno = profile.line

    def __repr__(self) -> str:
        return f"<profiled function {self.__module__}.{self.__qualname__}>"


#: Finds the function object of a profile that has none set, when a callback needs it: the
#: import hook registers one per profile (it finds functions lazily, without running user code,
#: and holds them weakly). Keyed by (module, qualname, line).
FUNCTION_FINDERS: dict[tuple[str, str, int], Callable[[], Any]] = {}


#: Profile tables the import hook has not registered yet, by id: a module's profiled functions
#: are registered when one of them is first entered. Whatever reads the registry for every
#: function (:func:`stats`) registers them first (:func:`register_pending`).
PENDING: dict[int, Callable[[], object]] = {}


#: Functions a profile table registered natively on their first entry (``ProfileTable.cached``),
#: in order, as ``(table, index, profile)``, until the import hook's ``table.record(index,
#: profile)`` does its bookkeeping for them (:func:`record_registered`): whatever reads that
#: bookkeeping (:data:`FUNCTION_FINDERS`, the pending tables) records them first.
REGISTERED: list[tuple[Any, int, _native.FunctionProfile]] = []


def record_registered() -> None:
    """Hands the functions registered natively to their tables' bookkeeping, in order."""
    while REGISTERED:
        try:
            table, index, profile = REGISTERED.pop(0)  # atomic: each is recorded once
        except IndexError:  # another thread took the last one
            return
        table.record(index, profile)


def register_pending() -> None:
    """Registers the profile tables the import hook deferred, in import order."""
    record_registered()
    for key in list(PENDING):
        register = PENDING.pop(key, None)
        if register is not None:
            register()


def _function_of(profile: _native.FunctionProfile) -> Any:
    func = profile.function
    if func is None:
        if REGISTERED:
            record_registered()
        find = FUNCTION_FINDERS.get((profile.module, profile.qualname, profile.line))
        if find is not None:
            func = find()
    return func if func is not None else _Described(profile)


def _format_above(total: float, limit: float, qualname: str, sites: list[SiteTime]) -> str:
    d = format_duration
    # The first line is recompyle's; the sites' durations are formatted for people.
    lines = [f"{qualname} finished in {total:g}s, above limit of {limit:g}s"]
    for s in sites:
        mean = s.total / s.count if s.count else 0.0
        lines.append(
            f"  {d(s.total)} total  {s.count}x  mean {d(mean)}  max {d(s.max)}  "
            f"line {s.line}  {callee_label(s.text, s.callee)}: {one_line(s.text)}"
        )
    return "\n".join(lines)


def _log_at(where: tuple[str, int, str], level: int, msg: str, *args: object) -> None:
    """Logs a record located at the profiled function: ``(filename, first line, name)``.

    The record's ``pathname``/``filename``, ``lineno`` and ``funcName`` are the function's,
    not this module's, so ``%(filename)s:%(lineno)d %(funcName)s`` says which function it is.
    """
    filename, line, name = where
    record = log.makeRecord(log.name, level, filename, line, msg, args, None, name)
    log.handle(record)


def _where_of(func: Any) -> tuple[str, int, str]:
    """The file, first line and name of a callback's ``func`` (a function or a stand-in)."""
    code = getattr(func, "__code__", None)
    name = getattr(func, "__name__", None) or "?"
    if code is not None:
        return code.co_filename, code.co_firstlineno, code.co_name
    return getattr(func, "filename", "?"), getattr(func, "lineno", 0), name


def _where_of_profile(profile: _native.FunctionProfile) -> tuple[str, int, str]:
    return profile.filename, profile.line, profile.qualname.rpartition(".")[2]


def default_below_log(
    total: float, limit: float, times: CallTimes, func: Callable[..., Any]
) -> None:
    """INFO ``"<qualname> finished in <t>s, below limit of <limit>s"`` (recompyle's text).

    The record carries the function's file, first line and name (``%(filename)s``,
    ``%(lineno)d``, ``%(funcName)s``).
    """
    if log.isEnabledFor(logging.INFO):
        _log_at(_where_of(func), logging.INFO, *_below_message(func.__qualname__, total, limit))


def _below_message(qualname: str, total: float, limit: float) -> tuple[str, str, float, float]:
    return ("%s finished in %gs, below limit of %gs", qualname, total, limit)


def default_above_log(
    total: float, limit: float, times: CallTimes, func: Callable[..., Any]
) -> None:
    """WARNING with the total and one line per call site, longest total first.

    The record carries the function's file, first line and name (``%(filename)s``,
    ``%(lineno)d``, ``%(funcName)s``).
    """
    if not log.isEnabledFor(logging.WARNING):
        return
    sites = getattr(times, "sites", None)
    if sites is None:  # a plain dict, as recompyle's callbacks receive
        sites = [
            SiteTime("", name, 0, len(v), sum(v), max(v, default=0.0)) for name, v in times.items()
        ]
        sites.sort(key=lambda s: s.total, reverse=True)
    text = _format_above(total, limit, func.__qualname__, sites)
    _log_at(_where_of(func), logging.WARNING, "%s", text)


def _dispatch(callback: Any, total: float, record: _native.Record) -> None:
    """Runs a callback for a finished invocation (called by the native record)."""
    profile = record.profile
    limit = profile.time_limit
    if callback is default_below_log:
        if log.isEnabledFor(logging.INFO):
            message = _below_message(profile.qualname, total, limit)
            _log_at(_where_of_profile(profile), logging.INFO, *message)
        return
    if callback is default_above_log:
        if log.isEnabledFor(logging.WARNING):
            sites = _site_times(record, profile)
            text = _format_above(total, limit, profile.qualname, sites)
            _log_at(_where_of_profile(profile), logging.WARNING, "%s", text)
        return
    if getattr(callback, "__callweave_sites_only__", False):
        times = CallTimes(sites=_site_times(record, profile))
        callback(total, limit, times, _function_of(profile))
        return
    callback(total, limit, _call_times(record, profile), _function_of(profile))


_native.set_dispatcher(_dispatch)


def is_default_callback(callback: Any) -> bool:
    """Whether the callback needs no per-call list.

    True for callweave's defaults and for callbacks marked ``__callweave_sites_only__ = True``
    (they receive ``times.sites`` and an empty dict).
    """
    return (
        callback is None
        or callback is default_below_log
        or callback is default_above_log
        or getattr(callback, "__callweave_sites_only__", False) is True
    )


def records_calls(above: Any, below: Any) -> bool:
    """Whether a function with these callbacks keeps its calls one by one (``record_calls``)."""
    return not (is_default_callback(above) and is_default_callback(below))


def register_profile(
    *,
    module: str,
    qualname: str,
    filename: str,
    line: int,
    sites: Sequence[_native.Site] | Sequence[tuple[str, str | None, int, int, int, int]],
    time_limit: float,
    above: Any,
    below: Any,
) -> _native.FunctionProfile:
    """Registers one profiled function with the runtime.

    Args:
        module: Its module's name.
        qualname: Its qualname.
        filename: Its file.
        line: Its first line.
        sites: Its sites (from the rewrite's site table), in local-index order: ``Site``
            objects or ``(text, callee, line, end line, column, end column)`` tuples.
        time_limit: Seconds.
        above: Callback at or over the limit, or None.
        below: Callback under the limit, or None.

    Returns:
        The native profile.
    """
    return _native.FunctionProfile(
        module=module,
        qualname=qualname,
        filename=filename,
        line=line,
        sites=[
            (s.text, s.callee, s.line, s.end_line, s.col, s.end_col)
            if isinstance(s, _native.Site)
            else s
            for s in sites
        ],
        time_limit=time_limit,
        above=above,
        below=below,
        record_calls=records_calls(above, below),
    )


def flat_profile(
    *,
    time_limit: float | str,
    below_callback: ProfilerCallback | None = default_below_log,
    above_callback: ProfilerCallback | None = default_above_log,
    ignore_builtins: bool = False,
    blacklist: Iterable[str] | None = None,
    whitelist: Iterable[str] | None = None,
    rewrite_details: dict[str, object] | None = None,
) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """Times every call in the decorated function and reports invocations by their total.

    When an invocation ends, ``above_callback`` runs if its total is at or over
    ``time_limit``, ``below_callback`` otherwise, as ``callback(total, limit, times, func)``.

    Args:
        time_limit: Seconds, or a duration string (``"50ms"``, ``"2s"``, ``"150us"``).
        below_callback: Run when the total is under the limit; None for nothing.
        above_callback: Run when the total is at or over the limit; None for nothing.
        ignore_builtins: Do not time calls of builtins.
        blacklist: Call names not to time (recompyle's syntax).
        whitelist: Call names to time; nothing else is.
        rewrite_details: If given, filled with ``original_func``, ``original_source`` and
            ``new_source``.

    Returns:
        A decorator for functions, methods, classmethods and staticmethods.

    Raises:
        ValueError: Both callbacks are None, a bad time limit, or bad call-name lists.
    """
    if below_callback is None and above_callback is None:
        raise ValueError("at least one of below_callback and above_callback must be given")
    # The decorators' rewriting machinery: imported on first use, not by the import hook.
    from callweave._functions import Layer, rewrite_with_layers, unique_suffix
    from callweave.decorators import call_lists

    try:
        limit = parse_duration(time_limit)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"time_limit={time_limit!r}: {exc}") from None
    black, white = call_lists(ignore_builtins, blacklist, whitelist)

    def decorate(target: Callable[P, T]) -> Callable[P, T]:
        enter_name = f"__callweave_enter_{unique_suffix()}__"

        def make_rule(at: tuple[str, int]) -> _native.Rule:
            return _native.Rule(
                "profile",
                {
                    "enter": enter_name,
                    "exit": EXIT_NAME,
                    "timer": TIMER_NAME,
                    "atimer": ATIMER_NAME,
                    "record": RECORD_NAME,
                },
                at=at,
                ignore_builtins=ignore_builtins,
                blacklist=black,
                whitelist=white,
            )

        registered: list[_native.FunctionProfile] = []

        def bind(new: Any, result: _native.Rewritten, layers: Any) -> None:
            if sum(1 for lay in layers if lay.name == "flat_profile") > 1:
                raise ValueError(f"{new.__qualname__!r} is already profiled by flat_profile")
            if registered:
                # A later decorator rewrote the function again: it keeps its one profile (and
                # the entry global, which the earlier function object still uses).
                new.__callweave_profile__ = registered[0]
                return
            code = new.__code__
            (profiled,) = [f.profile for f in result.functions if f.profile is not None]
            sites = [result.sites[i] for i in profiled.sites]
            profile = register_profile(
                module=new.__module__,
                qualname=new.__qualname__,
                filename=code.co_filename,
                line=code.co_firstlineno,
                sites=sites,
                time_limit=limit,
                above=above_callback,
                below=below_callback,
            )
            profile.set_function(new)
            new.__globals__[enter_name] = _native.ProfileTable([profile]).enter_function()
            new.__callweave_profile__ = profile
            registered.append(profile)

        names = dict(RUNTIME_NAMES)
        layer = Layer("flat_profile", make_rule, names, bind)
        return rewrite_with_layers(target, layer, rewrite_details)

    return decorate


@dataclass(frozen=True, slots=True)
class SiteStats:
    """Aggregates of one call site across invocations (seconds)."""

    text: str
    callee: str | None
    line: int
    count: int
    total: float
    mean: float
    max: float
    #: Time of profiled invocations inside this site's calls (the outermost ones): the part
    #: of ``total`` that profiled functions' own totals account for.
    nested: float = 0.0


@dataclass(frozen=True, slots=True)
class FunctionStats:
    """Aggregates of one profiled function across invocations (seconds).

    Percentiles come from a fixed-size histogram and are within 1/16 of the true value (and
    within ``[min, max]``). ``above`` counts the invocations at or over ``time_limit``;
    ``histogram`` holds the histogram's non-empty buckets ``(low, high, count)``, each
    counting the invocations that took from ``low`` up to ``high`` seconds, in increasing
    order (the layout is fixed, so the buckets of several processes add up).
    """

    module: str
    qualname: str
    filename: str
    line: int
    time_limit: float
    count: int
    errors: int
    total: float
    mean: float
    min: float
    max: float
    p50: float
    p95: float
    p99: float
    sites: list[SiteStats] = field(default_factory=list)
    above: int = 0
    histogram: list[tuple[float, float, int]] = field(default_factory=list)

    @property
    def self_time(self) -> float:
        """Seconds spent in the function outside its timed calls (never below zero).

        Calls that run inside other timed calls (a generator expression's calls passed to
        ``sum``) count in both, so the difference is clamped at zero.
        """
        return max(0.0, self.total - sum(s.total for s in self.sites))

    def to_dict(self) -> dict[str, Any]:
        """The stats as plain data (JSON-ready: the histogram's buckets are lists)."""
        data = asdict(self)
        data["histogram"] = [list(b) for b in self.histogram]
        return data


def function_stats(profile: _native.FunctionProfile) -> FunctionStats:
    """Aggregates of one native profile."""
    raw = profile.stats()
    sites = [
        SiteStats(
            text,
            callee,
            line,
            s["count"],
            s["total"],
            s["total"] / s["count"] if s["count"] else 0.0,
            s["max"],
            s["nested"],
        )
        for (text, callee, line, *_), s in zip(profile.sites, raw["sites"], strict=True)
    ]
    count = raw["count"]
    return FunctionStats(
        module=profile.module,
        qualname=profile.qualname,
        filename=profile.filename,
        line=profile.line,
        time_limit=profile.time_limit,
        count=count,
        errors=raw["errors"],
        total=raw["total"],
        mean=raw["total"] / count if count else 0.0,
        min=raw["min"],
        max=raw["max"],
        p50=raw["p50"],
        p95=raw["p95"],
        p99=raw["p99"],
        sites=sites,
        above=raw["above"],
        histogram=[tuple(b) for b in raw["histogram"]],
    )


def stats() -> list[FunctionStats]:
    """Aggregates of every profiled function of this process, in registration order."""
    register_pending()
    return [function_stats(p) for p in _native.all_profiles()]


def reset_stats() -> None:
    """Clears the aggregates of every profiled function."""
    _native.reset_stats()
