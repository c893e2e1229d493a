"""Reports of flat-profiling statistics: text, JSON, pstats and HTML, on demand or at exit.

:func:`report` is the entry point (``callweave.report("text")``, ``report("json", path)``,
``report(config.report)``); :func:`write_exit_report` is the same for ``atexit`` and never
raises. The formats:

``text``
    A table of the functions that ran (count, errors, total, self, mean, p95, max, limit),
    longest total first or by another sort key, the first ``top`` of them, each followed by
    its top call sites by total time; the first lines name the functions that never ran
    (:func:`render_text`). Durations are shown in ns, µs, ms or s (``8.01 µs``).

``json``
    ``{"schema": 1, "callweave": VERSION, "python": "3.12.3", "pid": 1234, "functions":
    [...]}``, one :meth:`FunctionStats.to_dict` per function (with its sites, its count of
    invocations above the limit and its histogram), longest total first (:func:`to_json`).
    :func:`merge_json` merges the documents (or files, :func:`load_json`) of several
    processes and :func:`stats_from_json` turns a document back into :class:`FunctionStats`.

``pstats``
    The ``marshal``-ed dict that CPython's profilers write, a call graph, so
    ``pstats.Stats(path)`` and snakeviz open it and ``pstats.Stats(path1, path2)`` adds
    several processes up (:func:`write_pstats`, model in :func:`to_pstats`).

``html``
    One self-contained page (:mod:`callweave.html_report`).

Entries of the same function (same module, qualname, file and first line), as when a
decorated function is defined again each time a factory runs, are combined in every format:
counts, totals, above-limit counts and histograms add up, ``min``/``max`` are the extremes,
and ``p50``/``p95``/``p99`` come from the added histograms (the buckets are the same in every
process); for entries without a full histogram (documents of earlier versions) they are the
largest of the entries' values, an upper bound of the combined percentile. The same rule
merges processes in :func:`merge_json`, which also keeps each process's own numbers.
"""

from __future__ import annotations

import errno
import json
import marshal
import math
import os
import stat
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final, TextIO, TypeAlias

from callweave._display import callee_label, format_duration, one_line
from callweave._native import __version__
from callweave.config import SORT_KEYS, Report
from callweave.profiler import FunctionStats, SiteStats
from callweave.profiler import stats as current_stats

__all__ = [
    "EMPTY_PSTATS_KEY",
    "JSON_SCHEMA",
    "SORT_KEYS",
    "format_duration",
    "load_json",
    "merge_json",
    "render_json",
    "render_text",
    "report",
    "stats_from_json",
    "to_json",
    "to_pstats",
    "write_document",
    "write_exit_report",
    "write_json",
    "write_pstats",
]

#: Version of the JSON document's layout; bumped when a field changes meaning or goes away.
JSON_SCHEMA: Final = 1
#: Call sites shown under each function in the text report.
TOP_SITES: Final = 5
#: Widest function or call-site label in the text report; longer ones are cut with "…".
NAME_WIDTH: Final = 72
KINDS: Final = ("text", "json", "pstats", "html", "none")
#: The only entry of a pstats file when no profiled function ran.
EMPTY_PSTATS_KEY: Final = ("~", 0, "<callweave: no profiled function ran>")

StatsInput: TypeAlias = Iterable[FunctionStats] | None
PathLike: TypeAlias = str | os.PathLike[str]
Bucket: TypeAlias = tuple[float, float, int]
PstatsKey: TypeAlias = tuple[str, int, str]
PstatsCall: TypeAlias = tuple[int, int, float, float]
PstatsEntry: TypeAlias = tuple[int, int, float, float, dict[PstatsKey, PstatsCall]]

_FunctionKey: TypeAlias = tuple[str, str, str, int]
_SiteKey: TypeAlias = tuple[int, str, str | None]

_PERCENTILES: Final = ("p50", "p95", "p99")
_PROCESS_FIELDS: Final = ("count", "errors", "above", "total", "min", "max", *_PERCENTILES)


# ---------------------------------------------------------------------------- combining


def _function_key(f: FunctionStats) -> _FunctionKey:
    return (f.module, f.qualname, f.filename, f.line)


def _site_key(s: SiteStats) -> _SiteKey:
    return (s.line, s.text, s.callee)


def _merge_sites(a: list[SiteStats], b: list[SiteStats]) -> list[SiteStats]:
    """Sites of both lists, those with the same line, text and callee added up."""
    merged: dict[_SiteKey, SiteStats] = {}
    for s in (*a, *b):
        key = _site_key(s)
        old = merged.get(key)
        if old is None:
            merged[key] = s
            continue
        count = old.count + s.count
        total = old.total + s.total
        merged[key] = SiteStats(
            text=s.text,
            callee=s.callee,
            line=s.line,
            count=count,
            total=total,
            mean=total / count if count else 0.0,
            max=max(old.max, s.max),
            nested=old.nested + s.nested,
        )
    return list(merged.values())


def _merge_histograms(a: list[Bucket], b: list[Bucket]) -> list[Bucket]:
    """Buckets of both histograms, those with the same range added up, in increasing order."""
    counts: dict[tuple[float, float], int] = {}
    for low, high, n in (*a, *b):
        counts[(low, high)] = counts.get((low, high), 0) + n
    return [(low, high, n) for (low, high), n in sorted(counts.items())]


def _percentile(histogram: list[Bucket], q: float, low: float, high: float) -> float:
    """The native rule: the midpoint of the bucket holding rank ceil(q·n), within [low, high]."""
    total = sum(n for _, _, n in histogram)
    rank = min(max(math.ceil(q * total), 1), total)
    seen = 0
    for start, end, n in histogram:
        seen += n
        if seen >= rank:
            return min(max((start + end) / 2, low), high)
    return high


def _merge_functions(a: FunctionStats, b: FunctionStats) -> FunctionStats:
    """Two entries of one function as one.

    Percentiles come from the added histograms when both entries carry theirs in full (the
    buckets are the same everywhere); otherwise they are the larger (an upper bound).
    """
    count = a.count + b.count
    total = a.total + b.total
    ran = [f for f in (a, b) if f.count]
    histogram = _merge_histograms(a.histogram, b.histogram)
    low = min((f.min for f in ran), default=0.0)
    high = max(a.max, b.max)
    exact = count and all(sum(n for _, _, n in f.histogram) == f.count for f in (a, b))
    if exact:
        p50, p95, p99 = (_percentile(histogram, q, low, high) for q in (0.50, 0.95, 0.99))
    else:
        p50, p95, p99 = max(a.p50, b.p50), max(a.p95, b.p95), max(a.p99, b.p99)
    return FunctionStats(
        module=a.module,
        qualname=a.qualname,
        filename=a.filename,
        line=a.line,
        time_limit=min(a.time_limit, b.time_limit),
        count=count,
        errors=a.errors + b.errors,
        total=total,
        mean=total / count if count else 0.0,
        min=low,
        max=high,
        p50=p50,
        p95=p95,
        p99=p99,
        sites=_merge_sites(a.sites, b.sites),
        above=a.above + b.above,
        histogram=histogram,
    )


def _combine(stats: StatsInput) -> list[FunctionStats]:
    """The stats (this process's when None) with entries of the same function combined."""
    combined: dict[_FunctionKey, FunctionStats] = {}
    for f in current_stats() if stats is None else stats:
        key = _function_key(f)
        old = combined.get(key)
        combined[key] = f if old is None else _merge_functions(old, f)
    return list(combined.values())


def _by_total(functions: Iterable[FunctionStats]) -> list[FunctionStats]:
    return sorted(functions, key=lambda f: (-f.total, f.module, f.qualname, f.line))


# ---------------------------------------------------------------------------- text


#: Functions named on the "never ran" line of the text report; more are counted.
NEVER_RAN_SHOWN: Final = 10


def _sort_key(key: str) -> Any:
    """The ``sorted`` key of a sort key of :data:`SORT_KEYS` (largest first; name A-Z)."""
    if key not in SORT_KEYS:
        raise ValueError(f"unknown sort key {key!r}; expected one of {', '.join(SORT_KEYS)}")
    if key == "name":
        return lambda f: (f.module, f.qualname, f.line)
    attr = "self_time" if key == "self" else key
    return lambda f: (-getattr(f, attr), f.module, f.qualname, f.line)


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "\u2026"


def _site_label(s: SiteStats, line_width: int) -> str:
    text = one_line(s.text)
    label = f"  {s.line:>{line_width}}  {text}"
    name = callee_label(s.text, s.callee)
    if not text.startswith(name):
        label += f"  [{name}]"
    return label


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def _function_name(f: FunctionStats) -> str:
    return f"{f.module}:{f.qualname}"


def render_text(
    stats: StatsInput = None,
    *,
    top_sites: int = TOP_SITES,
    top: int | None = None,
    sort: str = "total",
) -> str:
    """A readable table of the functions that ran and their costliest call sites.

    Each function's row shows ``module:qualname``, invocations, invocations that raised,
    total time, self time (its time outside its timed calls), mean, p95 and max time and the
    time limit. Under it come its ``top_sites`` call sites by total time (line, the call's
    text on one line, calls, total, mean and max time; the callee's name is added in
    brackets when the text does not start with it, such as ``[str.join]`` for
    ``"".join(parts)``), then one line adding up the rest. The first line counts the
    functions and invocations and names the profiled functions that never ran.

    Args:
        stats: The statistics; None for this process's (:func:`callweave.stats`).
        top_sites: Call sites listed per function.
        top: Functions listed (the first by ``sort``); None for all. The others are counted
            on a last line.
        sort: One of :data:`SORT_KEYS`: ``total`` (default), ``self``, ``mean``, ``max``,
            ``p95``, ``count``, ``errors``, ``above`` (largest first) or ``name``.

    Returns:
        The report, ending with a newline; ``"callweave: no profiled function ran"`` when no
        function ran.

    Raises:
        ValueError: An unknown sort key or a ``top`` below 1.
    """
    order = _sort_key(sort)
    if top is not None and top < 1:
        raise ValueError(f"top must be at least 1, not {top!r}")
    functions = _combine(stats)
    ran = sorted((f for f in functions if f.count), key=order)
    idle = sorted((f for f in functions if not f.count), key=_sort_key("name"))
    if not ran:
        text = "callweave: no profiled function ran"
        if idle:
            text += f" ({_never_ran(idle)})"
        return text + "\n"
    shown = ran if top is None else ran[:top]
    d = format_duration
    header: tuple[str, ...] = (
        "function / call site",
        "count",
        "errors",
        "total",
        "self",
        "mean",
        "p95",
        "max",
        "limit",
    )
    line_width = max((len(str(s.line)) for f in shown for s in f.sites), default=1)
    blocks: list[list[tuple[str, ...]]] = []
    for f in shown:
        block: list[tuple[str, ...]] = [
            (
                _function_name(f),
                f"{f.count:,}",
                f"{f.errors:,}",
                d(f.total),
                d(f.self_time),
                d(f.mean),
                d(f.p95),
                d(f.max),
                d(f.time_limit),
            ),
        ]
        sites = sorted((s for s in f.sites if s.count), key=lambda s: (-s.total, s.line, s.text))
        for s in sites[: max(top_sites, 0)]:
            block.append(
                (
                    _site_label(s, line_width),
                    f"{s.count:,}",
                    "",
                    d(s.total),
                    "",
                    d(s.mean),
                    "",
                    d(s.max),
                    "",
                )
            )
        rest = sites[max(top_sites, 0) :]
        if rest:
            label = f"  {'':>{line_width}}  \u2026 {len(rest)} more call site"
            label += "" if len(rest) == 1 else "s"
            block.append(
                (
                    label,
                    f"{sum(s.count for s in rest):,}",
                    "",
                    d(sum(s.total for s in rest)),
                    "",
                    "",
                    "",
                    d(max(s.max for s in rest)),
                    "",
                )
            )
        blocks.append(block)
    rows = [row for block in blocks for row in block]
    name_width = min(max(len(header[0]), *(len(r[0]) for r in rows)), NAME_WIDTH)
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) for i in range(1, len(header))]

    def line(row: tuple[str, ...]) -> str:
        cells = [_cut(row[0], name_width).ljust(name_width)]
        cells += [cell.rjust(width) for cell, width in zip(row[1:], widths, strict=True)]
        return "  ".join(cells).rstrip()

    invocations = sum(f.count for f in ran)
    title = (
        f"callweave: {_plural(len(ran), 'profiled function')} ran {_plural(invocations, 'time')}"
    )
    if sort != "total":
        title += f", sorted by {sort}"
    out = [title]
    if idle:
        out.append(_never_ran(idle))
    out += ["", line(header)]
    for i, block in enumerate(blocks):
        if i and len(blocks[i - 1]) + len(block) > 2:
            out.append("")
        out.extend(line(row) for row in block)
    hidden = ran[len(shown) :]
    if hidden:
        out.append("")
        out.append(
            f"\u2026 {_plural(len(hidden), 'more function')} (top {top}), "
            f"{d(sum(f.total for f in hidden))} in total"
        )
    return "\n".join(out) + "\n"


def _never_ran(idle: list[FunctionStats]) -> str:
    names = ", ".join(_function_name(f) for f in idle[:NEVER_RAN_SHOWN])
    more = len(idle) - NEVER_RAN_SHOWN
    if more > 0:
        names += f" and {more:,} more"
    return f"{len(idle):,} never ran: {names}"


# ---------------------------------------------------------------------------- JSON


def _finite(value: Any) -> Any:
    """The value with non-finite floats replaced by None (strict JSON has no Infinity)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def to_json(stats: StatsInput = None) -> dict[str, Any]:
    """The statistics as a JSON-ready document.

    Layout (``schema`` 1)::

        {"schema": 1, "callweave": "0.1.0", "python": "3.12.3", "pid": 1234,
         "functions": [{"module", "qualname", "filename", "line", "time_limit", "count",
                        "errors", "total", "mean", "min", "max", "p50", "p95", "p99",
                        "sites": [{"text", "callee", "line", "count", "total", "mean",
                                   "max", "nested"}, ...],
                        "above", "histogram": [[low, high, count], ...]}, ...]}

    Times are in seconds. ``above`` counts the invocations at or over the limit;
    ``histogram`` holds the latency histogram's non-empty buckets (documents without these
    two, from earlier versions, read as 0 and an empty histogram). A site's ``nested`` is the
    time of profiled invocations inside its calls (0 in documents of earlier versions).
    Functions are sorted by
    total time, longest first, and include those that never ran (``count`` 0); sites are in
    source order.

    Args:
        stats: The statistics; None for this process's.

    Returns:
        The document.
    """
    import platform

    return {
        "schema": JSON_SCHEMA,
        "callweave": __version__,
        "python": platform.python_version(),
        "pid": os.getpid(),
        "functions": [_finite(f.to_dict()) for f in _by_total(_combine(stats))],
    }


def render_json(stats: StatsInput = None) -> str:
    """:func:`to_json` as indented JSON text ending with a newline."""
    return _dumps(to_json(stats))


def _dumps(doc: Mapping[str, Any]) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def write_json(stats: StatsInput, path: PathLike) -> None:
    """Writes :func:`render_json` to a file (UTF-8).

    A regular file is replaced atomically, a FIFO or a device written through (see
    :func:`report`).

    Args:
        stats: The statistics; None for this process's.
        path: The file; missing parent directories are created.

    Raises:
        OSError: The file could not be written.
    """
    _write_file(path, render_json(stats).encode("utf-8"))


def write_document(doc: Mapping[str, Any], path: PathLike) -> None:
    """Writes a JSON document (such as :func:`merge_json`'s) as :func:`write_json` does.

    Args:
        doc: The document.
        path: The file (replaced atomically; parent directories are created).

    Raises:
        OSError: The file could not be written.
    """
    _write_file(path, _dumps(doc).encode("utf-8"))


def _check_doc(doc: object, where: str) -> Mapping[str, Any]:
    if not isinstance(doc, Mapping) or "schema" not in doc:
        raise ValueError(f"{where} is not a callweave JSON report (it has no 'schema')")
    schema = doc["schema"]
    if not isinstance(schema, int) or isinstance(schema, bool) or schema < 1:
        raise ValueError(f"{where} has a bad schema {schema!r}")
    if schema > JSON_SCHEMA:
        raise ValueError(
            f"{where} has schema {schema}; this callweave ({__version__}) reads up to {JSON_SCHEMA}"
        )
    if not isinstance(doc.get("functions"), list):
        raise ValueError(f"{where} has no 'functions' list")
    return doc


def _function_from_json(data: Mapping[str, Any], where: str) -> FunctionStats:
    try:
        sites = [
            SiteStats(
                text=s["text"],
                callee=s["callee"],
                line=s["line"],
                count=s["count"],
                total=s["total"],
                mean=s["mean"],
                max=s["max"],
                nested=s.get("nested", 0.0),  # absent from older documents
            )
            for s in data.get("sites", [])
        ]
        low, high = data["min"], data["max"]

        def clamp(value: float) -> float:  # reports of older versions could exceed max
            return min(max(value, low), high) if data["count"] else value

        return FunctionStats(
            module=data["module"],
            qualname=data["qualname"],
            filename=data["filename"],
            line=data["line"],
            time_limit=math.inf if data["time_limit"] is None else data["time_limit"],
            count=data["count"],
            errors=data["errors"],
            total=data["total"],
            mean=data["mean"],
            min=low,
            max=high,
            p50=clamp(data["p50"]),
            p95=clamp(data["p95"]),
            p99=clamp(data["p99"]),
            sites=sites,
            above=data.get("above", 0),
            histogram=[(b[0], b[1], b[2]) for b in data.get("histogram", [])],
        )
    except (KeyError, TypeError, IndexError) as exc:
        raise ValueError(f"{where}: a function entry lacks or mangles {exc}") from None


def stats_from_json(doc: Mapping[str, Any]) -> list[FunctionStats]:
    """The :class:`FunctionStats` of a document of :func:`to_json` or :func:`merge_json`.

    Args:
        doc: The parsed document.

    Returns:
        Its functions, in the document's order (extra keys such as ``processes`` are
        ignored).

    Raises:
        ValueError: Not a callweave document, a newer schema, or a malformed entry.
    """
    doc = _check_doc(doc, "the document")
    return [_function_from_json(f, "the document") for f in doc["functions"]]


def _process_entry(f: FunctionStats, pid: object) -> dict[str, Any]:
    entry: dict[str, Any] = {"pid": pid}
    entry.update({name: getattr(f, name) for name in _PROCESS_FIELDS})
    return entry


def load_json(path: PathLike) -> dict[str, Any]:
    """Reads a JSON report (of :func:`to_json` or :func:`merge_json`) from a file.

    Args:
        path: The file.

    Returns:
        The parsed document, checked to be a callweave report.

    Raises:
        OSError: The file could not be read.
        ValueError: It is not JSON, or not a callweave report; the message names the file.
    """
    where = os.fspath(path)
    try:
        doc = json.loads(Path(path).read_bytes())
    except UnicodeDecodeError as exc:
        raise ValueError(f"{where} is not a JSON report ({exc.reason})") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where} is not a JSON report ({exc})") from None
    return dict(_check_doc(doc, where))


def merge_json(docs: Iterable[Mapping[str, Any] | PathLike]) -> dict[str, Any]:
    """Merges the JSON reports of several processes (or earlier merges) into one.

    The result has the layout of :func:`to_json` with ``"pid": null``, ``"python"`` set only
    when all processes agree, and a ``"processes"`` list of ``{"pid", "python",
    "callweave"}``. Functions are matched by module, qualname, file and first line; sites by
    line, text and callee. Counts, errors, above-limit counts, totals and histograms are
    summed, means recomputed, ``min`` and ``max`` are the extremes, ``time_limit`` the
    smallest. ``p50``/``p95``/``p99`` come from the summed histograms (within 1/16 of the
    true merged percentile); when a document lacks a full histogram (earlier versions) they
    are the largest of the processes' values, an upper bound of the true merged
    percentile. Each merged function also keeps ``"processes"``: per process its ``pid``,
    ``count``, ``errors``, ``above``, ``total``, ``min``, ``max`` and percentiles. Merging
    is associative: merged documents can be merged again.

    Args:
        docs: Parsed documents from :func:`to_json` or :func:`merge_json`, or the paths of
            files holding them (read with :func:`load_json`).

    Returns:
        The merged document, functions sorted by total time, longest first.

    Raises:
        ValueError: A document is not a callweave report, has a newer schema or a
            malformed entry; the message says which (the file, or the position from 0).
        OSError: A file could not be read.
    """
    processes: list[dict[str, Any]] = []
    functions: dict[_FunctionKey, FunctionStats] = {}
    per_process: dict[_FunctionKey, list[dict[str, Any]]] = {}
    for i, raw in enumerate(docs):
        doc: Mapping[str, Any]
        if isinstance(raw, str | os.PathLike):
            where = os.fspath(raw)
            doc = load_json(raw)
        else:
            where = f"report {i}"
            doc = _check_doc(raw, where)
        merged_before = isinstance(doc.get("processes"), list)
        if merged_before:
            processes.extend(dict(p) for p in doc["processes"])
        else:
            processes.append(
                {
                    "pid": doc.get("pid"),
                    "python": doc.get("python"),
                    "callweave": doc.get("callweave"),
                }
            )
        for data in doc["functions"]:
            f = _function_from_json(data, where)
            key = _function_key(f)
            old = functions.get(key)
            functions[key] = f if old is None else _merge_functions(old, f)
            entries = data.get("processes") if merged_before else None
            if isinstance(entries, list):
                per_process.setdefault(key, []).extend(dict(e) for e in entries)
            else:
                per_process.setdefault(key, []).append(_process_entry(f, doc.get("pid")))
    pythons = {p.get("python") for p in processes}
    out_functions = []
    for f in _by_total(functions.values()):
        data = _finite(f.to_dict())
        data["processes"] = _finite(per_process[_function_key(f)])
        out_functions.append(data)
    return {
        "schema": JSON_SCHEMA,
        "callweave": __version__,
        "python": pythons.pop() if len(pythons) == 1 else None,
        "pid": None,
        "processes": processes,
        "functions": out_functions,
    }


# ---------------------------------------------------------------------------- pstats


def _site_name(s: SiteStats) -> str:
    return _cut(callee_label(s.text, s.callee), 60)


def _add_entry(
    out: dict[PstatsKey, PstatsEntry],
    key: PstatsKey,
    calls: int,
    tottime: float,
    cumtime: float,
    caller: PstatsKey | None,
) -> None:
    old = out.get(key)
    callers: dict[PstatsKey, PstatsCall] = {} if old is None else old[4]
    if caller is not None:
        prev = callers.get(caller, (0, 0, 0.0, 0.0))
        callers[caller] = (prev[0] + calls, prev[1] + calls, prev[2] + tottime, prev[3] + cumtime)
    if old is None:
        out[key] = (calls, calls, tottime, cumtime, callers)
    else:
        out[key] = (old[0] + calls, old[1] + calls, old[2] + tottime, old[3] + cumtime, callers)


def _last_name(name: str) -> str:
    return name.rpartition(".")[2]


class _Callees:
    """Finds the profiled function a call site calls, by the callee's name.

    A site's callee is known by its call name only (``helper``, ``self.step``,
    ``shop.db.query``), so a site is linked to a profiled function whose qualname ends with
    the call name's last part: the one in the caller's own file when there is one there,
    else the only one anywhere. Names matching several functions stay unlinked, and so does
    a site that made more calls than the function has invocations left to explain (a
    ``handler.run(x)`` that calls many classes' ``run``, one of them profiled).
    """

    def __init__(self, functions: list[FunctionStats]) -> None:
        self.by_name: dict[str, list[FunctionStats]] = {}
        self.left: dict[int, int] = {}
        for f in functions:
            self.by_name.setdefault(_last_name(f.qualname), []).append(f)
            self.left[id(f)] = f.count

    def find(self, caller: FunctionStats, s: SiteStats) -> FunctionStats | None:
        callee = self._by_name(caller, s)
        if callee is None or s.count > self.left[id(callee)]:
            return None
        self.left[id(callee)] -= s.count
        return callee

    def _by_name(self, caller: FunctionStats, s: SiteStats) -> FunctionStats | None:
        if not s.callee:
            return None
        candidates = self.by_name.get(_last_name(s.callee), [])
        dotted = s.callee.replace("[", ".").split(".")
        exact = [
            f for f in candidates if ".".join(dotted[-len(f.qualname.split(".")) :]) == f.qualname
        ]
        for group in (exact, candidates):
            local = [f for f in group if f.filename == caller.filename]
            if len(local) == 1:
                return local[0]
            if len(group) == 1:
                return group[0]
        return None


def to_pstats(stats: StatsInput = None) -> dict[PstatsKey, PstatsEntry]:
    """The statistics in the layout of ``pstats.Stats.stats``: a call graph.

    Keys are ``(filename, line, name)``; values ``(primitive calls, calls, tottime,
    cumtime, callers)`` with ``callers`` mapping a caller's key to ``(calls, primitive
    calls, tottime, cumtime)`` as cProfile writes them. The model:

    * each profiled function that ran is a node ``(its file, its first line, its qualname)``
      with ``cumtime`` its total and ``tottime`` its self time (its total minus the time in
      its timed calls, never below zero);
    * a call site whose callee is profiled too (found by name, see :class:`_Callees`) is an
      edge: the caller is added to the callee's own node's callers (calls, and the site's
      total as cumtime), so ``print_callers``/``print_callees`` chain and snakeviz draws one
      tree;
    * any other call site that ran is a leaf node ``(the function's file, the call's line,
      the callee's name)`` (``str.join`` for ``"".join(...)``, the callee expression when it
      has no name), called by its function, with ``cumtime`` the site's total and
      ``tottime`` the site's total less its ``nested`` time (the profiled invocations that
      ran inside its calls, whose own nodes hold that time). Sites on one line with the same
      callee share a node; a leaf whose key equals a profiled function's gets `` (call)``
      appended to its name.

    So the tottimes add up to the time of the outermost profiled invocations (the header's
    total), each nanosecond counted once, also when a profiled function is reached through
    an unprofiled call of another (``A`` → ``U`` → ``B``: ``U``'s leaf keeps only its time
    outside ``B``; ``B`` is not drawn under ``U``, which the runtime cannot name). Time that
    runs inside two timed calls of one function still counts in both: the calls of a
    generator expression passed to ``sum``. Documents of earlier versions have no nested
    times: there ``U``'s leaf holds ``B``'s time too.

    When no function ran, the dict holds one entry ``EMPTY_PSTATS_KEY`` with no calls, as
    ``pstats`` refuses to load an empty one.

    Args:
        stats: The statistics; None for this process's.

    Returns:
        The dict, ready for ``marshal.dump``.
    """
    functions = [f for f in _combine(stats) if f.count]
    function_keys = {(f.filename, f.line, f.qualname) for f in functions}
    callees = _Callees(functions)
    out: dict[PstatsKey, PstatsEntry] = {}
    for f in functions:
        _add_entry(out, (f.filename, f.line, f.qualname), f.count, f.self_time, f.total, None)
    for f in functions:
        key = (f.filename, f.line, f.qualname)
        for s in f.sites:
            if not s.count:
                continue
            callee = callees.find(f, s)
            if callee is not None:
                share = callee.self_time * (s.total / callee.total) if callee.total else 0.0
                _add_caller(out, (callee.filename, callee.line, callee.qualname), key, s, share)
                continue
            site_key = (f.filename, s.line, _site_name(s))
            if site_key in function_keys:
                site_key = (f.filename, s.line, f"{site_key[2]} (call)")
            own = max(s.total - s.nested, 0.0)
            _add_entry(out, site_key, s.count, own, s.total, key)
    if not out:  # pstats refuses to load an empty dict
        out[EMPTY_PSTATS_KEY] = (0, 0, 0.0, 0.0, {})
    return out


def _add_caller(
    out: dict[PstatsKey, PstatsEntry],
    callee: PstatsKey,
    caller: PstatsKey,
    s: SiteStats,
    tottime: float,
) -> None:
    """Adds a site's calls to a profiled callee's callers (its own totals stay its own)."""
    callers = out[callee][4]
    prev = callers.get(caller, (0, 0, 0.0, 0.0))
    callers[caller] = (prev[0] + s.count, prev[1] + s.count, prev[2] + tottime, prev[3] + s.total)


def write_pstats(stats: StatsInput, path: PathLike) -> None:
    """Writes a pstats file that ``pstats.Stats(path)`` and snakeviz open.

    The model is that of :func:`to_pstats`. Files of several processes add up with
    ``pstats.Stats(path1, path2)`` or ``Stats.add``.

    Args:
        stats: The statistics; None for this process's.
        path: The file (a regular file is replaced atomically, a FIFO or device written
            through); missing parent directories are created.

    Raises:
        OSError: The file could not be written.
    """
    _write_file(path, marshal.dumps(to_pstats(stats)))


# ---------------------------------------------------------------------------- files


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _standard_stream_fd(target: os.stat_result) -> int | None:
    """The standard output or error file descriptor that ``target`` is, if either."""
    for fd in (1, 2):
        try:
            if _same_file(os.fstat(fd), target):
                return fd
        except OSError:
            continue
    return None


def _write_fd(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _write_through(path: Path, data: bytes, mode: int) -> None:
    """Writes into an existing FIFO or device (or a link to one) without replacing it."""
    flags = os.O_WRONLY | getattr(os, "O_CLOEXEC", 0)
    if stat.S_ISFIFO(mode):
        # Opening a FIFO for writing blocks until a reader comes; at exit nobody may come.
        try:
            fd = os.open(path, flags | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno == errno.ENXIO:
                raise OSError(exc.errno, "no process is reading the FIFO", str(path)) from None
            raise
        os.set_blocking(fd, True)
    else:
        fd = os.open(path, flags)
    try:
        _write_fd(fd, data)
    finally:
        os.close(fd)


def _replace_atomically(target: Path, data: bytes) -> None:
    """Writes a regular file through a temporary file beside it and ``os.replace``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    try:
        with open(temp, "xb") as out:  # O_EXCL: never through a planted link
            out.write(data)
        try:  # a replaced file keeps its permissions
            os.chmod(temp, stat.S_IMODE(os.stat(target).st_mode))
        except FileNotFoundError:
            pass
        os.replace(temp, target)
    except BaseException:
        try:
            temp.unlink()
        except OSError:
            pass
        raise


def _write_file(path: PathLike, data: bytes) -> None:
    """Writes a report file; replaces only regular files, and those atomically.

    - the process's own standard output or error (``/dev/stdout``, ``/proc/self/fd/2``, or
      the file either is redirected to): written to that file descriptor, after what Python
      buffered for it, so the report follows the program's output instead of replacing it;
    - a FIFO or a device, or a symbolic link to one: written through, never replaced (a FIFO
      nobody reads is an error rather than a hang);
    - a regular file, or a symbolic link to one: the file is replaced atomically (a temporary
      file beside it, then ``os.replace``); a link stays a link and its target is replaced;
    - a missing file (or a dangling link): created the same way, parent directories too.
    """
    target = Path(path)
    try:
        followed = os.stat(target)
    except FileNotFoundError:
        followed = None
    if followed is not None:
        fd = _standard_stream_fd(followed)
        if fd is not None:
            for stream in (sys.stdout, sys.stderr):
                try:
                    if stream is not None:
                        stream.flush()
                except (OSError, ValueError):
                    pass
            _write_fd(fd, data)
            return
        if not stat.S_ISREG(followed.st_mode):
            if stat.S_ISDIR(followed.st_mode):
                raise IsADirectoryError(errno.EISDIR, "is a directory", str(target))
            _write_through(target, data, followed.st_mode)
            return
    # A regular file or nothing: replace the file the path finally names (not the link).
    _replace_atomically(Path(os.path.realpath(target)), data)


# ---------------------------------------------------------------------------- entry points


def _resolve(kind: str | Report | None, path: PathLike | None) -> tuple[str, Path | None]:
    """Validates a kind and path (or a Report, or ``"json:PATH"``) and expands ``{pid}``."""
    if kind is None:
        kind = "none"
    if isinstance(kind, Report):
        if path is not None:
            raise ValueError(f"give a Report or a kind and a path, not both (path {path!r})")
        path = kind.path
        kind = kind.kind
    elif not isinstance(kind, str):
        raise TypeError(f"the report kind must be a str or a Report, not {type(kind).__name__}")
    elif path is None and ":" in kind:
        try:
            parsed = Report.parse(kind)
        except ValueError as exc:
            raise ValueError(f"bad report {kind!r}: {exc}") from None
        path = parsed.path
        kind = parsed.kind
    if kind not in KINDS:
        raise ValueError(
            f"unknown report kind {kind!r}; expected 'text', 'json', 'pstats', 'html' or 'none'"
        )
    if path is None:
        if kind in ("pstats", "html"):
            raise ValueError(f"a {kind!r} report needs a path")
        return kind, None
    if kind == "none":
        raise ValueError(f"a 'none' report takes no path, got {path!r}")
    text = os.fspath(path)
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"bad report path {path!r}")
    return kind, Path(text.replace("{pid}", str(os.getpid())))


def report(
    kind: str | Report = "text",
    path: PathLike | None = None,
    *,
    stats: StatsInput = None,
    file: TextIO | None = None,
    top: int | None = None,
    sort: str | None = None,
) -> str | None:
    """Writes a report of the profiling statistics now.

    Args:
        kind: ``"text"``, ``"json"``, ``"pstats"``, ``"html"`` or ``"none"``; a
            configuration spec such as ``"json:out.json"``; or a
            :class:`callweave.config.Report` (``report(config.report)``, whose ``top`` and
            ``sort`` apply unless given here).
        path: The output file (parent directories are created). A regular file is
            replaced atomically (a symbolic link stays a link: the file it points to is
            replaced); a FIFO or a device, or a link to one, is written through, never
            replaced; the process's own standard output or error (``/dev/stdout``) gets the
            report after the program's output. ``{pid}`` in it becomes the process id, so
            processes sharing one configuration write separate files. Required for
            ``"pstats"``; for ``"text"`` the default is ``file``; for ``"json"`` the text is
            returned instead. Required for ``"html"`` (:mod:`callweave.html_report`).
        stats: The statistics; None for this process's (:func:`callweave.stats`).
        file: Where a ``"text"`` report (default ``sys.stderr``) or a ``"json"`` report
            without a path goes.
        top: The text report lists this many functions; None for all.
        sort: What the text report sorts functions by (:data:`SORT_KEYS`); default total.

    Returns:
        The JSON text for a ``"json"`` report with neither path nor file; otherwise None.

    Raises:
        ValueError: An unknown kind, a missing path for ``"pstats"``, a path for
            ``"none"``, or both a path and a file; the message names the value.
        TypeError: ``kind`` is neither a string nor a Report.
        OSError: The file could not be written.
    """
    if isinstance(kind, Report):
        top = kind.top if top is None else top
        sort = kind.sort if sort is None else sort
    kind, target = _resolve(kind, path)
    if target is not None and file is not None:
        raise ValueError(f"give a path or a file, not both (path {os.fspath(target)!r})")
    if kind == "none":
        return None
    if kind == "pstats":
        assert target is not None  # _resolve requires it
        write_pstats(stats, target)
        return None
    if kind == "html":
        from callweave.html_report import render_html

        assert target is not None  # _resolve requires it
        _write_file(target, render_html(stats).encode("utf-8"))
        return None
    if kind == "text":
        text = render_text(stats, top=top, sort=sort or "total")
    else:
        text = render_json(stats)
    if target is not None:
        _write_file(target, text.encode("utf-8"))
        return None
    if kind == "json" and file is None:
        return text
    out = file if file is not None else sys.stderr
    if out is not None:  # sys.stderr is None under pythonw
        out.write(text)
        out.flush()
    return None


def write_exit_report(report_spec: Report | str | None, *, stats: StatsInput = None) -> None:
    """Writes the configured report; for ``atexit``, so it never raises.

    On failure it writes one line to ``sys.stderr``: ``callweave: could not write the
    <kind> report to <path>: <error>``.

    Args:
        report_spec: A :class:`callweave.config.Report`, a spec such as ``"text"`` or
            ``"pstats:out.prof"``, or None for nothing.
        stats: The statistics; None for this process's.
    """
    what, where = "exit", "stderr"
    try:
        kind, target = _resolve(report_spec, None)
        what = kind
        if target is not None:
            where = os.fspath(target)
        if isinstance(report_spec, Report):
            report(kind, target, stats=stats, top=report_spec.top, sort=report_spec.sort)
        else:
            report(kind, target, stats=stats)
    except BaseException as exc:  # an exit hook must not raise
        try:
            error = " ".join(f"{type(exc).__name__}: {exc}".split())
            if sys.stderr is not None:
                sys.stderr.write(
                    f"callweave: could not write the {what} report to {where}: {error}\n"
                )
                sys.stderr.flush()
        except BaseException:  # nowhere left to say it
            pass
