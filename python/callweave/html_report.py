"""The HTML report: one self-contained page of the flat-profiling statistics.

``report = "html:PATH"``, ``callweave.report("html", PATH)`` and ``callweave report --html
PATH FILE...`` write it. The page needs no network: its style and the script that sorts
the table are inline and its charts are inline SVG drawn here. It holds:

- the functions that ran in one table (count, errors, invocations above the limit, total,
  self, mean, p50, p95 and max time, the limit), sorted by a click on a column header;
- per function: where it is, its facts (errors, limit, invocations above it), its call
  sites' total time as a bar chart (``rect.site-bar``), its latency histogram with the limit
  marked, and its call sites that never ran;
- the profiled functions that never ran.

The page's template is the package resource ``report_template.html``.
"""

from __future__ import annotations

import datetime
import html
import importlib.resources
import math
from collections.abc import Iterable
from string import Template
from typing import Final

from callweave._display import callee_label, format_duration, one_line
from callweave._native import __version__
from callweave.profiler import FunctionStats, SiteStats

__all__ = ["render_html"]

_TEMPLATE: Final = "report_template.html"
#: Widths (px) of the charts' parts.
_LABEL_WIDTH: Final = 360
_BAR_WIDTH: Final = 420
_ROW_HEIGHT: Final = 22
_HIST_WIDTH: Final = 760
_HIST_HEIGHT: Final = 150
_MAX_BARS: Final = 40


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _num(value: float) -> str:
    """A sort value for ``data-value`` (JSON-safe: infinity sorts last as a huge number)."""
    return repr(value) if math.isfinite(value) else "1e308"


def _function_id(index: int) -> str:
    return f"f{index}"


def _cell(text: str, value: float | None = None, css: str = "") -> str:
    attrs = "" if value is None else f' data-value="{_num(value)}"'
    attrs += f' class="{css}"' if css else ""
    return f"<td{attrs}>{text}</td>"


def _row(index: int, f: FunctionStats) -> str:
    d = format_duration
    name = f'<a href="#{_function_id(index)}" class="mono">{_e(f.module)}:{_e(f.qualname)}</a>'
    cells = [
        f'<td data-value="{_e(f.module + ":" + f.qualname)}">{name}</td>',
        _cell(f"{f.count:,}", f.count),
        _cell(f"{f.errors:,}", f.errors, "bad" if f.errors else ""),
        _cell(f"{f.above:,}", f.above, "bad" if f.above else ""),
        _cell(d(f.total), f.total),
        _cell(d(f.self_time), f.self_time),
        _cell(d(f.mean), f.mean),
        _cell(d(f.p50), f.p50),
        _cell(d(f.p95), f.p95),
        _cell(d(f.max), f.max),
        _cell(d(f.time_limit), f.time_limit),
    ]
    return f'<tr id="row-{_function_id(index)}">' + "".join(cells) + "</tr>"


def _site_chart(sites: list[SiteStats]) -> str:
    """The sites that ran as horizontal bars of their total time, longest first."""
    ran = sorted((s for s in sites if s.count), key=lambda s: (-s.total, s.line, s.text))
    if not ran:
        return '<p class="none">no timed call ran</p>'
    longest = max(s.total for s in ran) or 1.0
    height = _ROW_HEIGHT * len(ran) + 6
    width = _LABEL_WIDTH + _BAR_WIDTH + 150
    parts = [
        f'<svg class="sites" role="img" aria-label="time per call site" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}">'
    ]
    for i, s in enumerate(ran):
        y = i * _ROW_HEIGHT + 3
        text = one_line(s.text)
        name = callee_label(s.text, s.callee)
        label = f"{s.line}: {text}"
        if len(label) > 48:
            label = label[:47] + "\u2026"
        bar = max(1.0, _BAR_WIDTH * s.total / longest)
        tip = (
            f"line {s.line}: {text} [{name}]\n{s.count:,} calls, {format_duration(s.total)} "
            f"total, mean {format_duration(s.mean)}, max {format_duration(s.max)}"
        )
        parts.append(
            f'<g class="site" data-line="{s.line}"><title>{_e(tip)}</title>'
            f'<text x="0" y="{y + 14}">{_e(label)}</text>'
            f'<rect class="site-bar" x="{_LABEL_WIDTH}" y="{y + 2}" width="{bar:.1f}" '
            f'height="{_ROW_HEIGHT - 6}" rx="2" data-total="{_num(s.total)}"></rect>'
            f'<text class="value" x="{_LABEL_WIDTH + bar + 6:.1f}" y="{y + 14}">'
            f"{_e(format_duration(s.total))} \u00b7 {s.count:,}\u00d7</text></g>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _histogram_chart(f: FunctionStats) -> str:
    """The invocations' latency histogram on a log scale, the limit marked.

    One bar per non-empty bucket, placed at its range (empty ranges stay empty), its height
    the bucket's count; buckets at or above the limit are drawn in the warning colour. The
    limit is drawn when it lies within three decades of the invocations' range.
    """
    buckets = [b for b in f.histogram if b[2]]
    if not buckets:
        return '<p class="none">no histogram in this report</p>'
    if len(buckets) > _MAX_BARS:  # merge neighbours so that the bars stay readable
        step = math.ceil(len(buckets) / _MAX_BARS)
        buckets = [
            (group[0][0], group[-1][1], sum(n for _, _, n in group))
            for group in (buckets[i : i + step] for i in range(0, len(buckets), step))
        ]
    floor = 1e-9
    start, stop = max(buckets[0][0], floor), max(buckets[-1][1], floor * 2)
    limit = f.time_limit
    show_limit = math.isfinite(limit) and start / 1e3 <= limit <= stop * 1e3 and limit > 0
    if show_limit:
        start, stop = min(start, limit), max(stop, limit * 1.05)
    span = math.log(stop) - math.log(start) or 1.0
    left, right, top, bottom = 8, 8, 22, 34
    width = _HIST_WIDTH - left - right
    plot = _HIST_HEIGHT - top - bottom

    def x(seconds: float) -> float:
        return left + width * (math.log(max(seconds, start)) - math.log(start)) / span

    tallest = max(n for _, _, n in buckets)
    parts = [
        f'<svg class="histogram" role="img" aria-label="latency histogram" '
        f'width="{_HIST_WIDTH}" height="{_HIST_HEIGHT}" '
        f'viewBox="0 0 {_HIST_WIDTH} {_HIST_HEIGHT}">',
        f'<line class="axis" x1="{left}" x2="{left + width}" y1="{top + plot}" '
        f'y2="{top + plot}"></line>',
    ]
    for low, high, n in buckets:
        h = max(1.0, plot * n / tallest)
        x0 = x(low)
        bar = max(2.0, x(high) - x0 - 1)
        css = "bucket over" if low >= limit else "bucket"
        tip = f"{format_duration(low)} \u2013 {format_duration(high)}: {n:,} invocations"
        parts.append(
            f'<rect class="{css}" x="{x0:.1f}" y="{top + plot - h:.1f}" width="{bar:.1f}" '
            f'height="{h:.1f}" data-count="{n}"><title>{_e(tip)}</title></rect>'
        )
    parts.append(
        f'<text class="value" x="{left}" y="{_HIST_HEIGHT - 10}">{_e(format_duration(start))}'
        "</text>"
        f'<text class="value" x="{left + width}" y="{_HIST_HEIGHT - 10}" text-anchor="end">'
        f"{_e(format_duration(stop))} (log scale)</text>"
        f'<text class="value" x="{left + width}" y="12" text-anchor="end">'
        f"tallest bar: {tallest:,} invocation{'' if tallest == 1 else 's'}</text>"
    )
    if show_limit:
        lx = x(limit)
        anchor = "end" if lx > left + width / 2 else "start"
        tx = lx - 4 if anchor == "end" else lx + 4
        parts.append(
            f'<line class="limit" x1="{lx:.1f}" x2="{lx:.1f}" y1="{top - 6}" '
            f'y2="{top + plot}"></line>'
            f'<text class="value" x="{tx:.1f}" y="{top + 6}" text-anchor="{anchor}">limit '
            f"{_e(format_duration(limit))}</text>"
        )
    else:
        parts.append(
            f'<text class="value" x="{left}" y="12">limit {_e(format_duration(limit))} '
            "(off the chart)</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _fact(term: str, value: str, bad: bool = False) -> str:
    css = ' class="bad"' if bad else ""
    return f"<div><dt>{_e(term)}</dt><dd{css}>{_e(value)}</dd></div>"


def _details(index: int, f: FunctionStats) -> str:
    d = format_duration
    idle = sorted((s for s in f.sites if not s.count), key=lambda s: (s.line, s.text))
    facts = "".join(
        [
            _fact("invocations", f"{f.count:,}"),
            _fact("errors", f"{f.errors:,}", bool(f.errors)),
            _fact("limit", d(f.time_limit)),
            _fact("above limit", f"{f.above:,}", bool(f.above)),
            _fact("total", d(f.total)),
            _fact("self", d(f.self_time)),
            _fact("mean", d(f.mean)),
            _fact("min", d(f.min)),
            _fact("p50", d(f.p50)),
            _fact("p95", d(f.p95)),
            _fact("p99", d(f.p99)),
            _fact("max", d(f.max)),
        ]
    )
    if idle:
        items = "".join(
            f'<li><span class="mono">{s.line}: {_e(one_line(s.text))}</span></li>' for s in idle
        )
        never = f'<ul class="never-ran">{items}</ul>'
    else:
        never = '<p class="none">every call site ran</p>'
    return (
        f'<section class="function" id="{_function_id(index)}">'
        f"<h2>{_e(f.module)}:{_e(f.qualname)}</h2>"
        f'<p class="where mono">{_e(f.filename)}:{f.line}</p>'
        f'<dl class="facts">{facts}</dl>'
        f"<h3>Call sites by total time</h3>{_site_chart(f.sites)}"
        f"<h3>Latency of its invocations</h3>{_histogram_chart(f)}"
        f"<h3>Call sites that never ran ({len(idle)})</h3>{never}"
        "</section>"
    )


def render_html(stats: Iterable[FunctionStats] | None = None, *, title: str | None = None) -> str:
    """The HTML report of the statistics: one self-contained page.

    Args:
        stats: The statistics; None for this process's (:func:`callweave.stats`). Entries of
            one function are combined as in the other reports.
        title: The page's title; default ``"callweave profile"``.

    Returns:
        The page's text.
    """
    from callweave.reports import _combine

    functions = _combine(stats)
    ran = sorted((f for f in functions if f.count), key=lambda f: (-f.total, f.module, f.qualname))
    idle = sorted((f for f in functions if not f.count), key=lambda f: (f.module, f.qualname))
    invocations = sum(f.count for f in ran)
    summary = (
        f"{len(ran):,} profiled function{'s' if len(ran) != 1 else ''} ran "
        f"{invocations:,} time{'s' if invocations != 1 else ''}"
    )
    if ran:
        summary += f", {format_duration(sum(f.self_time for f in ran))} in their own code"
        errors = sum(f.errors for f in ran)
        above = sum(f.above for f in ran)
        summary += f"; {errors:,} raised, {above:,} at or above their limit."
    else:
        summary += "."
    if idle:
        names = "".join(f'<li class="mono">{_e(f.module)}:{_e(f.qualname)}</li>' for f in idle)
        idle_html = (
            f'<h3 id="never-ran">Profiled functions that never ran ({len(idle)})</h3>'
            f'<ul class="never-ran">{names}</ul>'
        )
    else:
        idle_html = ""
    template = Template(
        importlib.resources.files("callweave").joinpath(_TEMPLATE).read_text(encoding="utf-8")
    )
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return template.substitute(
        title=_e(title or "callweave profile"),
        version=_e(__version__),
        generated=_e(now),
        summary=_e(summary),
        idle=idle_html,
        rows="\n".join(_row(i, f) for i, f in enumerate(ran)),
        details="\n".join(_details(i, f) for i, f in enumerate(ran)),
    )
