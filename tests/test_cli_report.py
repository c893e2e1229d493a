"""``callweave report FILE...``: saved JSON reports shown as text or written as HTML."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from callweave.profiler import FunctionStats, SiteStats
from callweave.reports import render_text, stats_from_json, to_json

#: The installed console script (users run it from their project directory).
CONSOLE_SCRIPT = Path(sys.executable).with_name("callweave")


def stats(pid_scale=1):
    return [
        FunctionStats(
            module="shop",
            qualname="order",
            filename="/src/shop.py",
            line=3,
            time_limit=0.01,
            count=2 * pid_scale,
            errors=1,
            total=0.03 * pid_scale,
            mean=0.015,
            min=0.005,
            max=0.025,
            p50=0.005,
            p95=0.025,
            p99=0.025,
            sites=[SiteStats('"".join(parts)', None, 5, 2, 0.01, 0.005, 0.006)],
            above=1,
            histogram=[(0.0049, 0.0051, pid_scale), (0.0249, 0.0251, pid_scale)],
        ),
        FunctionStats(
            module="shop",
            qualname="refund",
            filename="/src/shop.py",
            line=9,
            time_limit=0.01,
            count=0,
            errors=0,
            total=0.0,
            mean=0.0,
            min=0.0,
            max=0.0,
            p50=0.0,
            p95=0.0,
            p99=0.0,
        ),
    ]


@pytest.fixture
def saved(tmp_path):
    """Two processes' JSON reports in a project directory."""
    paths = []
    for i, scale in enumerate((1, 2)):
        doc = to_json(stats(scale))
        doc["pid"] = 100 + i
        path = tmp_path / f"child-{i}.json"
        path.write_text(json.dumps(doc), encoding="utf-8")
        paths.append(path)
    return paths


def cli(cwd, *args):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLWEAVE")}
    return subprocess.run(
        [str(CONSOLE_SCRIPT), "report", *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_report_merges_files_and_prints_text(saved, tmp_path):
    r = cli(tmp_path, *(p.name for p in saved))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "callweave: 1 profiled function ran 6 times"
    assert lines[1] == "1 never ran: shop:refund"
    row = next(line for line in lines if line.startswith("shop:order "))
    assert row.split()[1:5] == ["6", "2", "90.0", "ms"]
    assert '"".join(parts)  [str.join]' in r.stdout
    assert r.stderr == ""


def test_report_top_and_sort(saved, tmp_path):
    r = cli(tmp_path, saved[0], "--top", "1", "--sort", "self")
    assert r.returncode == 0, r.stderr
    doc = json.loads(saved[0].read_text())
    assert r.stdout == render_text(stats_from_json(doc), top=1, sort="self")
    for args, message in [
        (("--top", "0"), "--top: must be a whole number >= 1, not '0'"),
        (("--sort", "speed"), "invalid choice: 'speed'"),
    ]:
        bad = cli(tmp_path, saved[0], *args)
        assert bad.returncode == 2
        assert message in bad.stderr


def test_report_writes_html_and_merged_json(saved, tmp_path):
    page, merged = tmp_path / "out" / "report.html", tmp_path / "merged.json"
    r = cli(tmp_path, *saved, "--html", page, "--json", merged)
    assert r.returncode == 0, r.stderr
    assert r.stdout == ""
    text = page.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    assert "shop:order</a>" in text and "shop:refund<" in text
    doc = json.loads(merged.read_text(encoding="utf-8"))
    assert [p["pid"] for p in doc["processes"]] == [100, 101]
    (order,) = [f for f in doc["functions"] if f["qualname"] == "order"]
    assert (order["count"], order["above"]) == (6, 2)
    assert order["histogram"] == [[0.0049, 0.0051, 3], [0.0249, 0.0251, 3]]
    both = cli(tmp_path, *saved, "--html", page, "--text")
    assert both.stdout.startswith("callweave: 1 profiled function ran 6 times")


def test_report_errors_are_one_line_with_status_2(saved, tmp_path):
    (tmp_path / "junk.json").write_text("[1, 2")
    for args, message in [
        (("missing.json",), "callweave report: missing.json: No such file or directory"),
        (("junk.json",), "callweave report: junk.json is not a JSON report"),
        ((saved[0], "--html", tmp_path), f"{tmp_path}: is a directory"),
    ]:
        r = cli(tmp_path, *args)
        assert r.returncode == 2, (args, r.stderr)
        assert len(r.stderr.splitlines()) == 1, r.stderr
        assert message in r.stderr
        assert "Traceback" not in r.stderr
