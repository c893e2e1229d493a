"""``callweave.otel``: spans for slow invocations, through the real OpenTelemetry SDK."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import callweave
from callweave import flat_profile
from callweave.config import CallbackSpec, parse_config

otel = pytest.importorskip("callweave.otel")
from opentelemetry import trace  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)

PACKAGE_ROOT = Path(callweave.__file__).resolve().parent.parent

_EXPORTER = InMemorySpanExporter()


@pytest.fixture
def spans() -> InMemorySpanExporter:
    # The global provider can be set once per process: the first test sets it.
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
        trace.set_tracer_provider(provider)
    _EXPORTER.clear()
    return _EXPORTER


def test_a_slow_invocation_is_a_span_with_one_event_per_site(spans):
    @flat_profile(time_limit=0, above_callback=otel.span, below_callback=None)
    def cw_otel_slow(n):
        time.sleep(0.001)
        return sorted(range(n)) + sorted(range(n))

    cw_otel_slow(3)
    (span,) = spans.get_finished_spans()
    assert span.name == f"{__name__}.{cw_otel_slow.__qualname__}"
    assert span.instrumentation_scope.name == "callweave"
    assert span.parent is None
    total = cw_otel_slow.__callweave_profile__.stats()["total"]
    assert span.end_time - span.start_time == round(total * 1e9)
    attrs = dict(span.attributes)
    assert attrs["code.function"] == cw_otel_slow.__qualname__
    assert attrs["code.namespace"] == __name__
    assert attrs["code.filepath"] == __file__
    assert attrs["code.lineno"] == cw_otel_slow.__code__.co_firstlineno
    assert attrs["callweave.total_s"] == total
    assert attrs["callweave.time_limit_s"] == 0
    events = [(e.name, dict(e.attributes)) for e in span.events]
    assert sorted(a["callweave.site.text"] for _, a in events) == [
        "range(n)",
        "range(n)",
        "sorted(range(n))",
        "sorted(range(n))",
        "time.sleep(0.001)",
    ]
    line = cw_otel_slow.__code__.co_firstlineno + 2
    sleep = next(a for _, a in events if a["callweave.site.callee"] == "time.sleep")
    assert sleep["callweave.site.count"] == 1
    assert sleep["callweave.site.line"] == line
    assert sleep["callweave.site.max_s"] == sleep["callweave.site.total_s"] >= 0.001
    assert {name for name, _ in events} == {"call"}
    # Longest total first, as in the log callback.
    totals = [a["callweave.site.total_s"] for _, a in events]
    assert totals == sorted(totals, reverse=True)


def test_the_span_is_parented_to_the_current_span(spans):
    @flat_profile(time_limit=0, above_callback=otel.span, below_callback=None)
    def cw_otel_child(n):
        return abs(n)

    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("request") as request:
        cw_otel_child(-1)
    child, parent = spans.get_finished_spans()
    assert parent is not None and parent.name == "request"
    assert child.parent is not None
    assert child.parent.span_id == request.get_span_context().span_id
    assert child.context.trace_id == request.get_span_context().trace_id


def test_fast_invocations_make_no_span(spans):
    @flat_profile(time_limit="1h", above_callback=otel.span, below_callback=None)
    def cw_otel_fast(n):
        return abs(n)

    for i in range(10):
        cw_otel_fast(i)
    assert spans.get_finished_spans() == ()


def test_the_otel_callback_keeps_no_per_call_list():
    from callweave.profiler import is_default_callback

    assert is_default_callback(otel.span)


def test_above_otel_parses():
    config = parse_config(
        {"profile": [{"modules": ["m"], "time_limit": "1s", "above": "otel"}]}, path=None
    )
    assert config.profile[0].above == CallbackSpec("otel")
    assert str(config.profile[0].above) == "otel"


def _run_python(script: str, cwd: Path) -> str:
    """The output of ``python -c script`` run in ``cwd`` (no inherited callweave settings)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLWEAVE")}
    env["PYTHONPATH"] = os.pathsep.join([str(PACKAGE_ROOT), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout


HOOKED = """
import json
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)

import callweave.auto
import shop

with trace.get_tracer("app").start_as_current_span("POST /orders"):
    shop.place_order(3)
    shop.place_order(0)
print(json.dumps([json.loads(s.to_json()) for s in exporter.get_finished_spans()]))
"""

SHOP = """import time


def place_order(n):
    if n:
        time.sleep(0.002)
    return [str(i) for i in range(n)]
"""


def test_above_otel_in_the_configuration_emits_spans_from_hooked_modules(tmp_path):
    (tmp_path / "shop.py").write_text(SHOP)
    (tmp_path / "pyproject.toml").write_text(
        '[tool.callweave]\nreport = "none"\n'
        '[[tool.callweave.profile]]\nmodules = ["shop"]\ntime_limit = "1ms"\nabove = "otel"\n'
    )
    out = _run_python(HOOKED, tmp_path)
    slow, request = json.loads(out)
    assert request["name"] == "POST /orders"
    assert slow["name"] == "shop.place_order"
    assert slow["parent_id"] == request["context"]["span_id"]
    assert slow["attributes"]["code.filepath"] == str(tmp_path / "shop.py")
    assert slow["attributes"]["code.lineno"] == 4
    callees = {e["attributes"]["callweave.site.callee"]: e["attributes"] for e in slow["events"]}
    assert callees["time.sleep"]["callweave.site.count"] == 1
    assert callees["time.sleep"]["callweave.site.line"] == 6
    assert callees["str"]["callweave.site.count"] == 3


def test_without_opentelemetry_a_config_naming_it_is_one_clear_error(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        '[[tool.callweave.profile]]\nmodules = ["shop"]\ntime_limit = "1ms"\nabove = "otel"\n'
    )
    script = (
        "import sys\n"
        "sys.modules['opentelemetry'] = None  # as if the extra were not installed\n"
        "from callweave.errors import ConfigError\n"
        "try:\n"
        "    import callweave.auto\n"
        "except ConfigError as exc:\n"
        "    print(exc)\n"
        "try:\n"
        "    import callweave.otel\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = _run_python(script, tmp_path)
    assert out.splitlines() == [
        f"{tmp_path / 'pyproject.toml'}: tool.callweave.profile[0].above: needs the "
        "OpenTelemetry API, an optional extra: pip install 'callweave[otel]'",
        "callweave.otel needs the OpenTelemetry API, an optional extra: "
        "pip install 'callweave[otel]'",
    ]
