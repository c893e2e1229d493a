"""``callweave.prometheus``: the collector, multiprocess mode with forks, and a real Prometheus."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from system_deps import require

import callweave
from callweave import _native, flat_profile
from callweave.config import Config, PrometheusSpec, parse_config
from callweave.errors import ConfigError

prometheus = pytest.importorskip("callweave.prometheus")

PACKAGE_ROOT = Path(callweave.__file__).resolve().parent.parent
#: Generous waits for other processes (never a bound on what is measured).
PATIENCE = 120.0


def _wait_for(what: str, probe: Callable[[], Any], timeout: float = PATIENCE) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return str(r.read().decode())
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def _registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    prometheus.register(registry)
    return registry


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


# --------------------------------------------------------------------------- collector


def test_histogram_counters_and_sites_match_the_native_aggregates():
    @flat_profile(time_limit=0, above_callback=None)
    def cw_prom_slow(n):
        time.sleep(0.002)
        return len([n]) + len([n, n])  # two sites on one line, same callee: one series

    @flat_profile(time_limit="1h", above_callback=None)
    def cw_prom_fails(n):
        if n % 2:
            raise ValueError(n)
        return abs(n)

    for i in range(3):
        cw_prom_slow(i)
    for i in range(5):
        try:
            cw_prom_fails(i)
        except ValueError:
            pass

    registry = _registry()
    slow = {"module": __name__, "function": cw_prom_slow.__qualname__}
    fails = {"module": __name__, "function": cw_prom_fails.__qualname__}

    assert _value(registry, "callweave_function_seconds_count", **slow) == 3
    assert _value(registry, "callweave_function_seconds_bucket", le="+Inf", **slow) == 3
    total = cw_prom_slow.__callweave_profile__.stats()["total"]
    assert _value(registry, "callweave_function_seconds_sum", **slow) == pytest.approx(total)
    # time_limit 0: every invocation is at or over it; "1h": none.
    assert _value(registry, "callweave_function_above_limit_total", **slow) == 3
    assert _value(registry, "callweave_function_above_limit_total", **fails) == 0
    assert _value(registry, "callweave_function_errors_total", **fails) == 2
    assert _value(registry, "callweave_function_errors_total", **slow) == 0

    # Every invocation slept 2 ms or more: none is under 2**20 ns (1.048576 ms), and the
    # buckets are cumulative.
    counts = [
        _value(registry, "callweave_function_seconds_bucket", le=le, **slow)
        for le in prometheus._LE
    ]
    assert counts == sorted(counts)
    assert _value(registry, "callweave_function_seconds_bucket", le="0.001048576", **slow) == 0

    line = cw_prom_slow.__code__.co_firstlineno + 3  # the decorator line, def, sleep
    site = {**slow, "line": str(line), "callee": "len"}
    assert _value(registry, "callweave_site_calls_total", **site) == 6
    sites = cw_prom_slow.__callweave_profile__.stats()["sites"]
    len_total = sum(s["total"] for s in sites[1:])  # sites: sleep, len, len
    assert _value(registry, "callweave_site_seconds_total", **site) == pytest.approx(len_total)


def test_buckets_are_the_native_histograms_own_edges():
    @flat_profile(time_limit="1h", above_callback=None)
    def cw_prom_edges(seconds):
        time.sleep(seconds)

    for seconds in (0, 0.0001, 0.001, 0.003, 0.02):
        cw_prom_edges(seconds)
    profile = cw_prom_edges.__callweave_profile__
    registry = _registry()
    labels = {"module": __name__, "function": cw_prom_edges.__qualname__}
    # Each bucket counts exactly the invocations whose native bucket ends at or below 2**k ns.
    native = profile.histogram()
    assert sum(n for _upper, n in native) == 5
    for k, le in zip(range(10, 37), prometheus._LE, strict=False):
        expected = sum(n for upper, n in native if upper is not None and upper <= 1 << k)
        assert _value(registry, "callweave_function_seconds_bucket", le=le, **labels) == expected
    assert prometheus.BUCKET_BOUNDS[0] == 1024e-9
    assert prometheus.BUCKET_BOUNDS[-1] == (1 << 36) / 1e9


def test_exposition_text():
    @flat_profile(time_limit="50ms", above_callback=None)
    def cw_prom_text(n):
        return sorted(range(n))

    cw_prom_text(3)
    text = generate_latest(_registry()).decode()
    assert "# TYPE callweave_function_seconds histogram" in text
    assert "# TYPE callweave_site_seconds_total counter" in text
    assert 'callweave_site_calls_total{callee="sorted",function="' in text


def test_a_new_registry_at_a_freed_ones_address_still_gets_the_collector():
    # CPython reuses a freed registry's memory for the next one: registering by id() skipped it.
    @flat_profile(time_limit="1h", above_callback=None)
    def cw_prom_reuse(n):
        return abs(n)

    cw_prom_reuse(1)
    labels = {"module": __name__, "function": cw_prom_reuse.__qualname__}
    addresses = set()
    for _ in range(20):
        registry = _registry()
        addresses.add(id(registry))
        assert _value(registry, "callweave_function_seconds_count", **labels) == 1
        del registry
    assert len(addresses) < 20  # the case the test is about did happen
    # Registering the same registry again stays idempotent.
    registry = _registry()
    assert prometheus.register(registry) is registry
    assert _value(registry, "callweave_function_seconds_count", **labels) == 1


# --------------------------------------------------------------------------- configuration


def test_prometheus_table_parses_and_round_trips_through_json():
    config = parse_config(
        {"prometheus": {"port": 9999, "address": "127.0.0.1", "interval": "250ms"}}, path=None
    )
    assert config.prometheus == PrometheusSpec(port=9999, address="127.0.0.1", interval=0.25)
    assert Config.from_json(config.to_json()).prometheus == config.prometheus
    assert parse_config({"prometheus": {}}, path=None).prometheus == PrometheusSpec()
    assert parse_config({}, path=None).prometheus is None


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"port": "9464"}, 'prometheus.port = "9464": must be an integer from 0 to 65535'),
        ({"port": 70000}, "prometheus.port = 70000: must be an integer from 0 to 65535"),
        ({"prot": 1}, "prometheus.prot = 1: unknown key; did you mean 'port'?"),
        ({"interval": "0s"}, 'prometheus.interval = "0s": must be longer than zero'),
    ],
)
def test_bad_prometheus_keys_are_named(table, message):
    with pytest.raises(ConfigError) as info:
        parse_config({"prometheus": table}, path=None)
    assert str(info.value) == f"tool.callweave.{message}"


def test_without_prometheus_client_a_config_naming_it_is_one_clear_error(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[tool.callweave.prometheus]\nport = 9464\n")
    script = (
        "import sys\n"
        "sys.modules['prometheus_client'] = None  # as if the extra were not installed\n"
        "from callweave.errors import ConfigError\n"
        "try:\n"
        "    import callweave.auto\n"
        "except ConfigError as exc:\n"
        "    print(exc)\n"
        "try:\n"
        "    import callweave.prometheus\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        check=True,
        timeout=PATIENCE,
    ).stdout
    assert out.splitlines() == [
        f"{tmp_path / 'pyproject.toml'}: tool.callweave.prometheus: needs the prometheus_client "
        "package, an optional extra: pip install 'callweave[prometheus]'",
        "callweave.prometheus needs the prometheus_client package, an optional extra: "
        "pip install 'callweave[prometheus]'",
    ]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CALLWEAVE", "PROMETHEUS"))}
    env["PYTHONPATH"] = os.pathsep.join([str(PACKAGE_ROOT), env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


# --------------------------------------------------------------------------- multiprocess

FORKING_SERVER = """
import os, sys, time
from callweave import flat_profile
import callweave.prometheus as cp

@flat_profile(time_limit=0, above_callback=None)
def handle(n):
    return sum(range(n))

assert cp.multiprocess_mode()
cp.start(0, "127.0.0.1", interval=0.2)
print(cp.server_port(), flush=True)
handle(1)                       # the parent's own invocation
children = []
for calls in (3, 4):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:                # a worker, gunicorn-style
        os.close(w)
        for i in range(calls):
            handle(i)
        if calls == 3:
            sys.exit(0)         # this one ends at once: its values are written at exit
        os.read(r, 1)           # this one keeps running until the parent says stop
        os._exit(0)
    os.close(r)
    children.append((pid, w))
print("forked", flush=True)
sys.stdin.readline()            # the test has scraped
for pid, w in children:
    try:
        os.write(w, b"x")
    except BrokenPipeError:     # the worker that has exited
        pass
    status = os.waitpid(pid, 0)[1]
    assert os.waitstatus_to_exitcode(status) == 0
"""


@pytest.fixture
def process() -> Iterator[Callable[..., subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []

    def start(*args: Any, **kwargs: Any) -> subprocess.Popen[str]:
        p = subprocess.Popen(*args, text=True, **kwargs)
        started.append(p)
        return p

    yield start
    for p in started:
        if p.poll() is None:
            p.kill()
        p.wait(timeout=PATIENCE)


def test_multiprocess_mode_adds_up_forked_workers(tmp_path, process):
    multiproc = tmp_path / "multiproc"
    multiproc.mkdir()
    script = tmp_path / "server.py"
    script.write_text(FORKING_SERVER)
    server = process(
        [sys.executable, str(script)],
        env=_env(PROMETHEUS_MULTIPROC_DIR=str(multiproc)),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert server.stdout is not None and server.stdin is not None
    port = int(server.stdout.readline())
    assert server.stdout.readline() == "forked\n"
    url = f"http://127.0.0.1:{port}/metrics"
    want = 'callweave_function_seconds_count{function="handle",module="__main__"} 8.0'

    # 1 in the parent + 3 in the worker that exited + 4 in the one still running: a fork
    # starts from zero (no double count of the parent's invocation).
    text = _wait_for("all workers' invocations", lambda: (t := _get(url)) and want in t and t)
    assert 'callweave_site_calls_total{callee="sum",function="handle",line="8",' in text
    assert 'callweave_function_above_limit_total{function="handle",module="__main__"} 8.0' in text
    server.stdin.write("done\n")
    server.stdin.close()
    assert server.wait(timeout=PATIENCE) == 0


SIBLING = """
import sys
from callweave import flat_profile
import callweave.prometheus as cp

@flat_profile(time_limit=0, above_callback=None)
def handle(n):
    return sum(range(n))

cp.start(int(sys.argv[1]), "127.0.0.1", interval=0.2)
print(cp.server_port(), flush=True)
handle(1)
handle(2)
"""


def test_multiprocess_workers_that_each_start_the_server_share_the_first_ones(tmp_path, process):
    # Workers that each import the application (no preloading in a master) all call start():
    # the first serves, the others find the port in use and only write their values.
    multiproc = tmp_path / "multiproc"
    multiproc.mkdir()
    server_script, sibling_script = tmp_path / "server.py", tmp_path / "sibling.py"
    server_script.write_text(FORKING_SERVER)
    sibling_script.write_text(SIBLING)
    env = _env(PROMETHEUS_MULTIPROC_DIR=str(multiproc))
    server = process(
        [sys.executable, str(server_script)],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert server.stdout is not None and server.stdin is not None
    port = int(server.stdout.readline())
    sibling = subprocess.run(
        [sys.executable, str(sibling_script), str(port)],
        env=env,
        capture_output=True,
        text=True,
        timeout=PATIENCE,
    )
    assert sibling.returncode == 0, sibling.stderr
    assert sibling.stdout == "None\n"  # it serves nothing
    url = f"http://127.0.0.1:{port}/metrics"
    want = 'callweave_function_seconds_count{function="handle",module="__main__"} 10.0'
    _wait_for("the sibling's invocations", lambda: (t := _get(url)) and want in t)
    server.stdin.write("done\n")
    server.stdin.close()
    assert server.wait(timeout=PATIENCE) == 0


# --------------------------------------------------------------------------- real Prometheus

APP = """
import sys, time

def place_order(n):
    time.sleep(0.001)
    return sorted(range(n)) + sorted(range(n))

def fail(n):
    raise ValueError(n)
"""

RUN_APP = """
import callweave.auto, callweave.prometheus as cp
import shopapp
for i in range(7):
    shopapp.place_order(i)
for i in range(2):
    try:
        shopapp.fail(i)
    except ValueError:
        pass
print(cp.server_port(), flush=True)
import sys; sys.stdin.readline()
"""


def _query(prom: str, expr: str) -> list[dict[str, Any]]:
    text = _get(f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    if text is None:
        return []
    doc = json.loads(text)
    assert doc["status"] == "success", doc
    return list(doc["data"]["result"])


def test_a_real_prometheus_server_scrapes_the_series(tmp_path, process):
    binary = require("prometheus")
    app_port, prom_port = _free_port(), _free_port()
    (tmp_path / "shopapp.py").write_text(APP)
    (tmp_path / "pyproject.toml").write_text(
        textwrap.dedent(
            f"""
            [tool.callweave]
            report = "none"
            [tool.callweave.prometheus]
            port = {app_port}
            address = "127.0.0.1"
            [[tool.callweave.profile]]
            modules = ["shopapp"]
            time_limit = "500us"
            above = "none"
            """
        )
    )
    app = process(
        [sys.executable, "-c", RUN_APP],
        cwd=tmp_path,
        env=_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert app.stdout is not None
    assert int(app.stdout.readline()) == app_port

    (tmp_path / "prometheus.yml").write_text(
        textwrap.dedent(
            f"""
            global:
              scrape_interval: 1s
              evaluation_interval: 1s
            scrape_configs:
              - job_name: shop
                static_configs:
                  - targets: ["127.0.0.1:{app_port}"]
            """
        )
    )
    prom = process(
        [
            binary,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{prom_port}"
    try:
        _wait_for("Prometheus to be ready", lambda: _get(f"{base}/-/ready") is not None)
        count = _wait_for(
            "a scrape with the function's histogram",
            lambda: _query(base, 'callweave_function_seconds_count{function="place_order"}'),
        )
        assert count[0]["metric"]["module"] == "shopapp"
        assert count[0]["metric"]["job"] == "shop"
        assert float(count[0]["value"][1]) == 7
        # Every invocation slept 1 ms, at or over the 500 µs limit.
        above = _query(base, 'callweave_function_above_limit_total{function="place_order"}')
        assert float(above[0]["value"][1]) == 7
        errors = _query(base, 'callweave_function_errors_total{function="fail"}')
        assert float(errors[0]["value"][1]) == 2
        sites = _query(base, 'callweave_site_calls_total{function="place_order",callee="sorted"}')
        assert [(s["metric"]["line"], float(s["value"][1])) for s in sites] == [("6", 14.0)]
        p99 = _query(
            base,
            'histogram_quantile(0.99, callweave_function_seconds_bucket{function="place_order"})',
        )
        assert float(p99[0]["value"][1]) >= 0.001
    finally:
        prom.send_signal(signal.SIGTERM)
        prom.wait(timeout=PATIENCE)


def test_native_above_limit_count_matches_the_callbacks():
    fired: list[float] = []

    def above(total, limit, times, func):
        fired.append(total)

    @flat_profile(time_limit="1ms", above_callback=above, below_callback=None)
    def cw_prom_limit(seconds):
        time.sleep(seconds)

    for seconds in (0, 0.002, 0, 0.003):
        cw_prom_limit(seconds)
    profile: _native.FunctionProfile = cw_prom_limit.__callweave_profile__
    assert profile.above_limit == len(fired) >= 2
    profile.reset()
    assert profile.above_limit == 0
    assert profile.histogram() == []
