import io
import json
import marshal
import math
import os
import platform
import pstats
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fixtures import report_targets as t

import callweave
from callweave.config import Report
from callweave.profiler import FunctionStats, SiteStats
from callweave.reports import (
    EMPTY_PSTATS_KEY,
    JSON_SCHEMA,
    format_duration,
    merge_json,
    render_json,
    render_text,
    report,
    stats_from_json,
    to_json,
    to_pstats,
    write_exit_report,
    write_json,
    write_pstats,
)

HERE = Path(__file__).parent
MODULE = t.__name__
FILE = t.__file__


@pytest.fixture(autouse=True)
def clean_stats():
    callweave.reset_stats()
    yield
    callweave.reset_stats()


def run_all(rounds=1):
    for _ in range(rounds):
        for _ in range(3):
            t.heavy(10)
        for i in range(5):
            t.light(i)
        with pytest.raises(ValueError):
            t.failing(1)
        t.many(3.5)
        t.many(2)
        t.Greeter().greet("x")


def mine():
    """This process's stats of the fixture module only (other tests profile functions too)."""
    return [f for f in callweave.stats() if f.module == MODULE]


def by_name(functions):
    return {f.qualname: f for f in functions}


def site(f, text):
    (s,) = [s for s in f.sites if s.text == text]
    return s


def fake(qualname="f", *, line=10, count=2, total=1.0, sites=(), pid_p95=0.5, **kw):
    fields = dict(
        module="m",
        qualname=qualname,
        filename="/src/m.py",
        line=line,
        time_limit=5.0,
        count=count,
        errors=0,
        total=total,
        mean=total / count if count else 0.0,
        min=0.25,
        max=0.75,
        p50=0.5,
        p95=pid_p95,
        p99=0.75,
        sites=list(sites),
    )
    fields.update(kw)
    return FunctionStats(**fields)


# ---------------------------------------------------------------------------- text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0"),
        (1.5e-9, "1.50 ns"),
        (5e-7, "500 ns"),
        (2.5e-6, "2.50 \u00b5s"),
        (8.01e-6, "8.01 \u00b5s"),
        (999.4e-6, "999 \u00b5s"),
        (999.6e-6, "1.00 ms"),
        (0.0123, "12.3 ms"),
        (2.0, "2.00 s"),
        (123.4, "123 s"),
        (-0.002, "-2.00 ms"),
        (math.inf, "inf"),
    ],
)
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


def test_text_lists_functions_sorted_by_total_with_counts_and_errors():
    run_all()
    stats = mine()
    text = render_text(stats)
    lines = text.splitlines()
    assert lines[0] == "callweave: 5 profiled functions ran 12 times"
    assert lines[1] == f"2 never ran: {MODULE}:fact, {MODULE}:never"
    rows = {
        name: next(line for line in lines if line.startswith(f"{MODULE}:{name} "))
        for name in ("heavy", "light", "failing", "many", "Greeter.greet")
    }
    assert f"{MODULE}:never " not in text
    assert rows["heavy"].split()[1:3] == ["3", "0"]
    assert rows["light"].split()[1:3] == ["5", "0"]
    assert rows["failing"].split()[1:3] == ["1", "1"]
    assert rows["heavy"].split()[-2:] == ["1000", "s"]
    expected = [f.qualname for f in sorted(stats, key=lambda f: -f.total) if f.count]
    shown = [line.split()[0].partition(":")[2] for line in lines if line.startswith(MODULE)]
    assert shown == expected
    assert shown[0] == "heavy"


def test_text_columns_are_aligned():
    run_all()
    lines = render_text(mine()).splitlines()
    header = lines[3]
    assert header.startswith("function / call site")
    for column in ("count", "total", "max"):  # filled in every row, right-aligned
        end = header.index(column) + len(column)
        for line in lines[4:]:
            if line:
                assert line[end - 1] != " ", (column, line)
                assert line[end : end + 1] in ("", " "), (column, line)
    data = [line for line in lines[4:] if line.startswith(MODULE)]
    assert len({len(line) for line in data}) == 1


def test_text_shows_top_sites_by_total_with_lines():
    run_all()
    lines = render_text(mine()).splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{MODULE}:heavy "))
    pause_row = lines[start + 1].split()
    assert pause_row[:3] == [str(t.line_of("pause(0.003)")), "pause(0.003)", "3"]
    block = lines[start + 1 : start + 4]
    assert any(row.split()[:3] == [str(t.line_of("double(i)")), "double(i)", "30"] for row in block)
    # many() has 7 call sites: the top 5, then one line for the other 2
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{MODULE}:many "))
    block = lines[start + 1 : start + 7]
    assert "\u2026 2 more call sites" in block[5]
    assert block[5].split()[5] == "4"  # 2 sites, 2 calls each
    texts = [row.split()[1] for row in block[:5]]
    assert len(texts) == 5
    assert any("round(x," in row for row in lines)  # the multi-line call on one line


def test_text_top_sites_parameter():
    run_all()
    text = render_text(mine(), top_sites=1)
    assert "\u2026 6 more call sites" in text
    assert "\u2026 2 more call sites" in text  # heavy: 3 sites
    assert "pause(0.003)" in text


def test_text_when_nothing_ran():
    assert render_text([]) == "callweave: no profiled function ran\n"
    assert render_text(mine()) == (
        f"callweave: no profiled function ran (7 never ran: {MODULE}:Greeter.greet, "
        f"{MODULE}:fact, {MODULE}:failing, {MODULE}:heavy, {MODULE}:light, {MODULE}:many, "
        f"{MODULE}:never)\n"
    )


def test_text_combines_entries_of_one_function_and_names_odd_callees():
    a = fake(sites=[SiteStats("g()()", "g", 12, 1, 0.25, 0.25, 0.25)], count=1, total=0.5)
    b = fake(sites=[SiteStats("g()()", "g", 12, 3, 0.25, 0.25 / 3, 0.125)], count=3, total=1.5)
    text = render_text([a, b])
    assert text.splitlines()[0] == "callweave: 1 profiled function ran 4 times"
    row = next(line for line in text.splitlines() if line.startswith("m:f"))
    assert row.split()[1:5] == ["4", "0", "2.00", "s"]
    site_row = next(line for line in text.splitlines() if "g()()" in line)
    assert site_row.split()[:3] == ["12", "g()()", "4"]  # callee is the text's prefix
    odd = fake(sites=[SiteStats("(lambda: 1)()", "lam", 12, 1, 0.25, 0.25, 0.25)])
    assert "(lambda: 1)()  [lam]" in render_text([odd])


def test_report_text_goes_to_stderr_file_or_path(capsys, tmp_path):
    run_all()
    assert report() is None
    err = capsys.readouterr().err
    assert f"{MODULE}:heavy" in err
    buf = io.StringIO()
    assert report("text", stats=mine(), file=buf) is None
    assert buf.getvalue() == render_text(mine())
    path = tmp_path / "sub" / "report.txt"
    assert report("text", path, stats=mine()) is None
    assert path.read_text(encoding="utf-8") == render_text(mine())
    assert capsys.readouterr().err == ""


# ---------------------------------------------------------------------------- JSON


def test_json_schema():
    run_all()
    doc = to_json(mine())
    assert list(doc) == ["schema", "callweave", "python", "pid", "functions"]
    assert doc["schema"] == JSON_SCHEMA == 1
    assert doc["callweave"] == callweave.__version__
    assert doc["python"] == platform.python_version()
    assert doc["pid"] == os.getpid()
    functions = {f["qualname"]: f for f in doc["functions"]}
    assert set(functions) == {"heavy", "light", "failing", "many", "Greeter.greet", "never", "fact"}
    heavy = functions["heavy"]
    assert set(heavy) == {
        "module",
        "qualname",
        "filename",
        "line",
        "time_limit",
        "count",
        "errors",
        "total",
        "mean",
        "min",
        "max",
        "p50",
        "p95",
        "p99",
        "sites",
        "above",
        "histogram",
    }
    assert (heavy["module"], heavy["filename"], heavy["count"]) == (MODULE, FILE, 3)
    assert heavy["above"] == 0  # the limit is 1000 s
    assert sum(n for _, _, n in heavy["histogram"]) == 3
    assert all(low < high for low, high, _ in heavy["histogram"])
    assert functions["failing"]["errors"] == 1
    assert functions["never"]["count"] == 0
    sites = {s["text"]: s for s in heavy["sites"]}
    assert sites["double(i)"] == {
        **sites["double(i)"],
        "callee": "double",
        "count": 30,
        "line": t.line_of("double(i)"),
    }
    assert set(sites["double(i)"]) == {
        *("text", "callee", "line", "count", "total", "mean", "max", "nested")
    }
    assert sites["double(i)"]["nested"] == 0.0  # double() is not profiled
    totals = [f["total"] for f in doc["functions"]]
    assert totals == sorted(totals, reverse=True)
    assert doc["functions"][0]["qualname"] == "heavy"


def test_json_round_trip():
    run_all()
    stats = mine()
    text = report("json", stats=stats)
    doc = json.loads(text)
    assert doc == to_json(stats)
    back = stats_from_json(doc)
    assert by_name(back) == by_name(stats)
    assert render_text(back) == render_text(stats)
    assert json.loads(render_json(stats)) == doc


def test_json_to_path_file_and_spec(tmp_path):
    run_all()
    stats = mine()
    p1, p2, p3 = tmp_path / "a.json", tmp_path / "deep" / "b.json", tmp_path / "c.json"
    assert report("json", p1, stats=stats) is None
    assert report(Report("json", p2), stats=stats) is None
    assert report(f"json:{p3}", stats=stats) is None
    write_json(stats, tmp_path / "d.json")
    for p in (p1, p2, p3, tmp_path / "d.json"):
        assert json.loads(p.read_text(encoding="utf-8")) == to_json(stats)
    buf = io.StringIO()
    assert report("json", stats=stats, file=buf) is None
    assert json.loads(buf.getvalue()) == to_json(stats)
    assert not list(tmp_path.glob(".*.tmp"))


def test_json_pid_placeholder(tmp_path):
    report("json", tmp_path / "r-{pid}.json", stats=[])
    assert (tmp_path / f"r-{os.getpid()}.json").exists()


def test_json_non_finite_values_become_null():
    doc = to_json([fake(time_limit=math.inf)])
    json.dumps(doc, allow_nan=False)
    assert doc["functions"][0]["time_limit"] is None
    assert stats_from_json(doc)[0].time_limit == math.inf


def test_merge_json_sums_counts_and_keeps_processes():
    run_all()
    first = to_json(mine())
    callweave.reset_stats()
    run_all(rounds=2)
    second = to_json(mine())
    second["pid"] = first["pid"] + 1  # as if another process
    merged = merge_json([first, second])
    assert merged["schema"] == 1
    assert merged["pid"] is None
    assert merged["python"] == platform.python_version()
    assert [p["pid"] for p in merged["processes"]] == [first["pid"], first["pid"] + 1]
    f1 = {f["qualname"]: f for f in first["functions"]}
    f2 = {f["qualname"]: f for f in second["functions"]}
    fm = {f["qualname"]: f for f in merged["functions"]}
    heavy = fm["heavy"]
    assert heavy["count"] == 9
    assert heavy["errors"] == 0
    assert fm["failing"]["errors"] == 3
    assert heavy["total"] == pytest.approx(f1["heavy"]["total"] + f2["heavy"]["total"])
    assert heavy["mean"] == pytest.approx(heavy["total"] / 9)
    assert heavy["min"] == min(f1["heavy"]["min"], f2["heavy"]["min"])
    assert heavy["max"] == max(f1["heavy"]["max"], f2["heavy"]["max"])
    # percentiles come from the added histograms (see test_merged_histograms_...)
    assert sum(n for _, _, n in heavy["histogram"]) == 9
    assert heavy["min"] <= heavy["p50"] <= heavy["p95"] <= heavy["p99"] <= heavy["max"]
    assert [(e["pid"], e["count"], e["p95"]) for e in heavy["processes"]] == [
        (first["pid"], 3, f1["heavy"]["p95"]),
        (first["pid"] + 1, 6, f2["heavy"]["p95"]),
    ]
    sites = {s["text"]: s for s in heavy["sites"]}
    assert sites["double(i)"]["count"] == 90
    assert fm["never"]["count"] == 0 and fm["never"]["min"] == 0.0
    totals = [f["total"] for f in merged["functions"]]
    assert totals == sorted(totals, reverse=True)
    json.dumps(merged, allow_nan=False)
    # the merged document reads back and renders
    back = by_name(stats_from_json(merged))
    assert back["heavy"].count == 9
    assert f"{MODULE}:heavy" in render_text(back.values())


def test_merge_json_is_associative():
    docs = []
    for pid in (1, 2, 3):
        callweave.reset_stats()
        run_all()
        doc = to_json(mine())
        doc["pid"] = pid
        docs.append(doc)
    flat = merge_json(docs)
    nested = merge_json([merge_json(docs[:2]), docs[2]])
    assert nested == flat
    assert [p["pid"] for p in flat["processes"]] == [1, 2, 3]
    heavy = next(f for f in flat["functions"] if f["qualname"] == "heavy")
    assert [e["pid"] for e in heavy["processes"]] == [1, 2, 3]
    assert merge_json([])["functions"] == []


def test_merge_json_python_versions_differ():
    a, b = to_json([fake()]), to_json([fake()])
    b["python"] = "3.99.0"
    merged = merge_json([a, b])
    assert merged["python"] is None
    assert [p["python"] for p in merged["processes"]] == [a["python"], "3.99.0"]


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({}, "report 1 is not a callweave JSON report"),
        ({"schema": 99, "functions": []}, "report 1 has schema 99"),
        ({"schema": "1", "functions": []}, "report 1 has a bad schema '1'"),
        ({"schema": 1}, "report 1 has no 'functions' list"),
        ({"schema": 1, "functions": [{"module": "m"}]}, "report 1: a function entry"),
    ],
)
def test_merge_json_rejects_bad_documents(doc, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        merge_json([to_json([]), doc])


def test_stats_from_json_rejects_bad_documents():
    with pytest.raises(ValueError, match="not a callweave JSON report"):
        stats_from_json({"functions": []})


# ---------------------------------------------------------------------------- pstats


def key_of(qualname):
    f = by_name(mine())[qualname]
    return (f.filename, f.line, f.qualname)


def test_pstats_loads_with_function_and_site_nodes(tmp_path):
    run_all()
    stats = by_name(mine())
    path = tmp_path / "out.prof"
    assert report("pstats", path, stats=stats.values()) is None
    loaded = pstats.Stats(str(path))
    heavy_key = key_of("heavy")
    cc, nc, tt, ct, callers = loaded.stats[heavy_key]
    heavy = stats["heavy"]
    assert (cc, nc, callers) == (3, 3, {})
    assert ct == heavy.total
    assert tt == pytest.approx(heavy.total - sum(s.total for s in heavy.sites))
    assert 0 <= tt < ct
    pause_key = (FILE, t.line_of("pause(0.003)"), "pause")
    pause = site(heavy, "pause(0.003)")
    assert loaded.stats[pause_key] == (
        3,
        3,
        pause.total,
        pause.total,
        {heavy_key: (3, 3, pause.total, pause.total)},
    )
    double_key = (FILE, t.line_of("double(i)"), "double")
    assert loaded.stats[double_key][:2] == (30, 30)
    assert loaded.stats[key_of("failing")][:2] == (1, 1)
    assert loaded.stats[key_of("Greeter.greet")][:2] == (1, 1)
    # one node per function that ran and per site that ran; never() is absent
    ran = [f for f in stats.values() if f.count]
    assert len(loaded.stats) == len(ran) + sum(1 for f in ran for s in f.sites if s.count)
    assert all(k[2] != "never" for k in loaded.stats)
    assert loaded.total_calls == sum(f.count + sum(s.count for s in f.sites) for f in ran)
    assert loaded.total_tt == pytest.approx(sum(f.total for f in ran))


def test_pstats_print_stats_shows_names_and_numbers(tmp_path):
    run_all()
    path = tmp_path / "out.prof"
    write_pstats(mine(), path)
    buf = io.StringIO()
    pstats.Stats(str(path), stream=buf).sort_stats("cumulative").print_stats()
    out = buf.getvalue()
    for name in ("(heavy)", "(pause)", "(double)", "(light)", "(Greeter.greet)", "(str)"):
        assert name in out
    rows = [line.split() for line in out.splitlines() if FILE in line]
    assert rows[0][-1].endswith("(heavy)")
    assert rows[0][0] == "3"
    assert float(rows[0][3]) == pytest.approx(by_name(mine())["heavy"].total, abs=5e-4)
    buf = io.StringIO()
    pstats.Stats(str(path), stream=buf).print_callers("pause")
    assert "(heavy)" in buf.getvalue()


def test_pstats_of_several_processes_add_up(tmp_path):
    run_all()
    first = by_name(mine())
    p1, p2 = tmp_path / "1.prof", tmp_path / "2.prof"
    write_pstats(first.values(), p1)
    callweave.reset_stats()
    run_all(rounds=2)
    second = by_name(mine())
    write_pstats(second.values(), p2)
    heavy_key = key_of("heavy")
    pause_key = (FILE, t.line_of("pause(0.003)"), "pause")
    both = pstats.Stats(str(p1), str(p2))
    added = pstats.Stats(str(p1))
    added.add(str(p2))
    for merged in (both, added):
        cc, nc, _tt, ct, _callers = merged.stats[heavy_key]
        assert (cc, nc) == (9, 9)
        assert ct == pytest.approx(first["heavy"].total + second["heavy"].total)
        assert merged.stats[pause_key][4][heavy_key][:2] == (9, 9)
        merged.sort_stats("cumulative").print_stats(0)


def test_pstats_model_edge_cases():
    # a site keyed like a profiled function, overlapping sites (tottime clamped at 0),
    # two sites on one line with the same callee, a site without a callee name
    rec = fake(
        "f",
        line=3,
        total=1.0,
        sites=[
            SiteStats("f(n - 1)", "f", 3, 1, 0.75, 0.75, 0.75),
            SiteStats("sum(g(x) for x in y)", "sum", 4, 2, 0.5, 0.25, 0.25),
            SiteStats("g(x)", "g", 4, 6, 0.25, 0.25 / 6, 0.0625),
            SiteStats("h(1)", "h", 5, 1, 0.125, 0.125, 0.125),
            SiteStats("h(2)", "h", 5, 1, 0.125, 0.125, 0.125),
            SiteStats("x()()", None, 6, 1, 0.0625, 0.0625, 0.0625),
            SiteStats("unused()", "unused", 7, 0, 0.0, 0.0, 0.0),
        ],
    )
    d = to_pstats([rec])
    fkey = ("/src/m.py", 3, "f")
    # the recursive call is an edge from f to itself, not a node of its own
    assert d[fkey] == (2, 2, 0.0, 1.0, {fkey: (1, 1, 0.0, 0.75)})
    assert ("/src/m.py", 3, "f (call)") not in d
    assert d[("/src/m.py", 5, "h")] == (2, 2, 0.25, 0.25, {fkey: (2, 2, 0.25, 0.25)})
    assert d[("/src/m.py", 6, "x()")][:2] == (1, 1)  # named by its callee expression
    # a site named like a profiled function it does not call (another file's) stays a leaf,
    # renamed so that the two keys differ
    other = fake("g", line=4, filename="/src/m.py", count=6, total=0.1)
    twin = fake("g", line=9, filename="/src/n.py", count=6, total=0.1)
    d = to_pstats([rec, other, twin])
    assert ("/src/m.py", 4, "g (call)") not in d
    assert set(d[("/src/m.py", 4, "g")][4]) == {fkey}  # linked: the g in f's own file
    # a g that ran fewer times than the site called: not it; the leaf is renamed
    d = to_pstats([rec, fake("g", line=4, filename="/src/m.py", count=1, total=0.1)])
    assert d[("/src/m.py", 4, "g (call)")][:2] == (6, 6)
    assert d[("/src/m.py", 4, "g")][4] == {}
    assert ("/src/m.py", 7, "unused") not in d
    marshal.loads(marshal.dumps(d))


def test_pstats_when_nothing_ran(tmp_path):
    path = tmp_path / "empty.prof"
    write_pstats(mine(), path)
    loaded = pstats.Stats(str(path), stream=io.StringIO())
    assert list(loaded.stats) == [EMPTY_PSTATS_KEY]
    loaded.sort_stats("cumulative").print_stats()


# ---------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (("xml",), {}, "unknown report kind 'xml'"),
        (("TEXT",), {}, "unknown report kind 'TEXT'"),
        (("xml:out.xml",), {}, "bad report 'xml:out.xml'"),
        (("json:",), {}, "bad report 'json:'"),
        (("text:out.txt",), {}, "bad report 'text:out.txt'"),
        (("pstats",), {}, "a 'pstats' report needs a path"),
        (("none", "out.txt"), {}, "a 'none' report takes no path, got 'out.txt'"),
        (("json", ""), {}, "bad report path ''"),
        (("text", "out.txt"), {"file": io.StringIO()}, "give a path or a file, not both"),
        (("pstats", "out.prof"), {"file": io.StringIO()}, "give a path or a file, not both"),
        ((Report("json", Path("a.json")), "b.json"), {}, "not both (path 'b.json')"),
    ],
)
def test_report_rejects_bad_arguments(tmp_path, monkeypatch, args, kwargs, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=re.escape(message)):
        report(*args, stats=[], **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_report_rejects_other_types():
    with pytest.raises(TypeError, match="not int"):
        report(42)  # type: ignore[arg-type]


def test_pstats_report_needs_a_path_not_a_file():
    with pytest.raises(ValueError, match="a 'pstats' report needs a path"):
        report("pstats", file=io.StringIO(), stats=[])


def test_report_none_does_nothing(capsys):
    run_all()
    assert report("none") is None
    assert report(Report("none")) is None
    assert capsys.readouterr() == ("", "")


def test_report_to_unwritable_path_raises(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OSError):
        report("json", blocker / "out.json", stats=[])


# ---------------------------------------------------------------------------- at exit


def test_exit_report_writes(tmp_path, capsys):
    run_all()
    write_exit_report(Report("pstats", tmp_path / "x.prof"))
    assert pstats.Stats(str(tmp_path / "x.prof")).stats[key_of("heavy")][1] == 3
    write_exit_report(f"json:{tmp_path / 'x.json'}")
    assert json.loads((tmp_path / "x.json").read_text(encoding="utf-8"))["functions"]
    write_exit_report(Report("text"))
    assert f"{MODULE}:heavy" in capsys.readouterr().err
    write_exit_report(None)
    write_exit_report(Report("none"))
    assert capsys.readouterr() == ("", "")


def broken_stats(exc):
    yield from ()
    raise exc


@pytest.mark.parametrize(
    ("spec", "stats", "expected"),
    [
        (
            "xml",
            None,
            "callweave: could not write the exit report to stderr: ValueError: "
            "unknown report kind 'xml'",
        ),
        (
            "json:{blocker}/out.json",
            None,
            "callweave: could not write the json report to {blocker}/out.json: ",
        ),
        (
            "text",
            "runtime",
            "callweave: could not write the text report to stderr: RuntimeError: boom",
        ),
        (
            "pstats:{tmp}/p.prof",
            "interrupt",
            "callweave: could not write the pstats report to {tmp}/p.prof: KeyboardInterrupt",
        ),
    ],
)
def test_exit_report_never_raises(tmp_path, capsys, spec, stats, expected):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    fill = {"blocker": blocker, "tmp": tmp_path}
    errors = {"runtime": RuntimeError("boom\nsecond line"), "interrupt": KeyboardInterrupt()}
    data = None if stats is None else broken_stats(errors[stats])
    write_exit_report(spec.format(**fill), stats=data)
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(expected.format(**fill))
    assert not (tmp_path / "p.prof").exists()


def test_exit_report_survives_a_closed_stderr(monkeypatch):
    closed = io.StringIO()
    closed.close()
    monkeypatch.setattr(sys, "stderr", closed)
    write_exit_report("xml")
    monkeypatch.setattr(sys, "stderr", None)
    write_exit_report("xml")
    write_exit_report("text")


def test_exit_report_from_atexit_in_a_subprocess(tmp_path):
    code = (
        "import atexit\n"
        "from callweave.config import Report\n"
        "from callweave.reports import write_exit_report\n"
        "from fixtures import report_targets as t\n"
        "atexit.register(write_exit_report, Report('json', __import__('pathlib').Path(\n"
        f"    {str(tmp_path / 'exit-{pid}.json')!r})))\n"
        f"atexit.register(write_exit_report, 'pstats:{tmp_path / 'file' / 'x.prof'}')\n"
        "t.heavy(2)\n"
        "t.light(1)\n"
    )
    (tmp_path / "file").write_text("x")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    (written,) = tmp_path.glob("exit-*.json")
    assert written.name == f"exit-{json.loads(written.read_text())['pid']}.json"
    doc = json.loads(written.read_text(encoding="utf-8"))
    counts = {f["qualname"]: f["count"] for f in doc["functions"]}
    assert counts["heavy"] == 1 and counts["light"] == 1 and counts["never"] == 0
    lines = done.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(
        f"callweave: could not write the pstats report to {tmp_path / 'file' / 'x.prof'}: "
    )


# ---------------------------------------------------------------------------- special files
# Repro 09 (issue 7 item 9): reports never replace links, FIFOs or devices.


def kind_of(path):
    import stat

    mode = os.lstat(path).st_mode
    for name in ("LNK", "FIFO", "CHR", "REG"):
        if getattr(stat, f"S_IS{name}")(mode):
            return name
    return "?"


def test_report_through_a_symlink_replaces_the_file_it_points_to(tmp_path):
    real = tmp_path / "real" / "report.json"
    real.parent.mkdir()
    real.write_text("old")
    real.chmod(0o640)
    link = tmp_path / "link.json"
    link.symlink_to(real)
    report("json", link, stats=[fake()])
    assert kind_of(link) == "LNK" and os.readlink(link) == str(real)
    assert json.loads(real.read_text())["functions"][0]["qualname"] == "f"
    assert (real.stat().st_mode & 0o777) == 0o640  # the replaced file keeps its mode
    assert sorted(p.name for p in real.parent.iterdir()) == ["report.json"]  # no temp left


def test_report_through_a_dangling_symlink_creates_its_target(tmp_path):
    link = tmp_path / "link.prof"
    link.symlink_to("made.prof")
    report("pstats", link, stats=[fake()])
    assert kind_of(link) == "LNK"
    assert pstats.Stats(str(tmp_path / "made.prof")).stats


def test_report_into_a_fifo_is_written_through(tmp_path):
    import threading

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = []
    reader_ready = threading.Event()

    def read():
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # does not wait for a writer
        reader_ready.set()
        chunks = []
        # Until the writer comes, a read finds no writer and returns b"": wait for data,
        # then read to the real end of file.
        while True:
            select.select([fd], [], [])
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                continue
            if chunk:
                chunks.append(chunk)
            elif chunks:
                break
            else:
                time.sleep(0.001)
        os.close(fd)
        got.append(b"".join(chunks))

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    reader_ready.wait()
    # Big enough to fill a pipe's buffer several times: the writer must block, not fail.
    many = [fake(f"f{i}", sites=()) for i in range(2000)]
    report("json", fifo, stats=many)
    assert kind_of(fifo) == "FIFO"  # (a replaced FIFO leaves the reader waiting: no join)
    thread.join()
    assert len(json.loads(got[0])["functions"]) == 2000


def test_report_into_a_fifo_nobody_reads_is_an_error_not_a_hang(tmp_path, capsys):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="no process is reading the FIFO"):
        report("json", fifo, stats=[])
    write_exit_report(f"json:{fifo}", stats=[])
    err = capsys.readouterr().err
    assert err == f"callweave: could not write the json report to {fifo}: OSError: [Errno 6] " + (
        f"no process is reading the FIFO: '{fifo}'\n"
    )
    assert kind_of(fifo) == "FIFO"


def test_report_into_a_device_and_a_link_to_it(tmp_path):
    # Never the real /dev/null: before the fix, a report replaced it (as root). A null
    # device node of our own where we may make one (root), and a link to /dev/null.
    import stat

    paths = []
    node = tmp_path / "null"
    try:
        os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        paths.append(node)
    except PermissionError:
        pass
    link = tmp_path / "devnull"
    link.symlink_to(os.devnull)
    paths.append(link)
    for path in paths:
        report("pstats", path, stats=[fake()])
        report("json", path, stats=[fake()])
    if node in paths:
        assert kind_of(node) == "CHR"
    assert kind_of(link) == "LNK" and os.readlink(link) == os.devnull
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd (Linux)")
def test_report_into_a_pty_through_proc_self_fd():
    import pty

    leader, follower = pty.openpty()
    try:
        link = f"/proc/self/fd/{follower}"  # a link to the pty's device node
        report("text", link, stats=[fake()])
        data = os.read(leader, 65536)
        assert kind_of(link) == "LNK"
    finally:
        os.close(leader)
        os.close(follower)
    assert b"m:f" in data


# "/dev/fd/1" stands for "/dev/stdout" (the same link chain into /proc/self/fd): run as root
# against a callweave with the bug, a "/dev/stdout" report would replace the machine's
# /dev/stdout, while "/dev/fd/1" only fails.
@pytest.mark.skipif(not Path("/dev/fd/1").exists(), reason="needs /dev/fd")
@pytest.mark.parametrize("target", ["/dev/fd/1", "/proc/self/fd/1", "file"])
def test_exit_report_to_dev_stdout_follows_the_programs_output(tmp_path, target):
    # stdout redirected to a file: the report goes after what the program printed, the file
    # is neither replaced nor truncated (also when it is named by its own path).
    out = tmp_path / "out.txt"
    spec = f"json:{out if target == 'file' else target}"
    code = (
        "import sys\n"
        "from callweave.reports import write_exit_report\n"
        "print('program output')\n"
        f"write_exit_report({spec!r}, stats=[])\n"
    )
    with open(out, "wb") as stdout:
        done = subprocess.run(
            [sys.executable, "-c", code], stdout=stdout, stderr=subprocess.PIPE, timeout=60
        )
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    assert text.startswith("program output\n{")
    assert json.loads(text.partition("\n")[2])["functions"] == []
    assert kind_of(out) == "REG"


@pytest.mark.skipif(not Path("/dev/fd/1").exists(), reason="needs /dev/fd")
def test_exit_report_to_dev_stdout_through_a_pipe():
    code = (
        "from callweave.reports import write_exit_report\n"
        "print('first')\n"
        "write_exit_report('json:/dev/fd/1', stats=[])\n"
        "print('last')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    first, _, rest = done.stdout.partition("\n")
    assert first == "first" and rest.endswith("}\nlast\n")


# ---------------------------------------------------------------------------- issue 11


def graph():
    """The stats of the calling functions of fixtures/report_graph after two top() calls."""
    from fixtures import report_graph as g

    g.top(1)
    g.top(2)
    return [f for f in callweave.stats() if f.module == g.__name__], g


def test_text_self_time_column_and_callee_of_a_literal_method():
    stats, g = graph()
    text = render_text(stats)
    lines = text.splitlines()
    header = lines[3].split()
    assert header[-8:] == ["count", "errors", "total", "self", "mean", "p95", "max", "limit"]
    middle = by_name(stats)["middle"]
    row = next(line for line in lines if line.startswith(f"{g.__name__}:middle "))
    assert " ".join(row.split()[5:7]) == format_duration(middle.self_time)
    assert middle.self_time == pytest.approx(middle.total - sum(s.total for s in middle.sites))
    assert 0 < middle.self_time < middle.total
    join = next(line for line in lines if '"".join(parts)' in line)
    assert '"".join(parts)  [str.join]' in join
    assert lines[1] == f"1 never ran: {g.__name__}:idle"


def test_text_top_and_sort():
    stats, g = graph()
    m = g.__name__
    by_total = [line.split()[0] for line in render_text(stats).splitlines() if line.startswith(m)]
    ran = sorted((f for f in stats if f.count), key=lambda f: -f.total)
    assert by_total == [f"{m}:{f.qualname}" for f in ran]
    assert by_total[0] == f"{m}:top"
    text = render_text(stats, top=1, sort="count")
    shown = [line.split()[0] for line in text.splitlines() if line.startswith(m)]
    assert shown == [f"{m}:leaf"]  # 6 invocations
    assert text.splitlines()[0].endswith(", sorted by count")
    assert text.splitlines()[-1].startswith("\u2026 2 more functions (top 1), ")
    by_name_ = render_text(stats, sort="name").splitlines()
    assert [line.split()[0] for line in by_name_ if line.startswith(m)] == sorted(by_total)
    by_self = [f.qualname for f in sorted(stats, key=lambda f: -f.self_time) if f.count]
    shown = [line.split()[0] for line in render_text(stats, sort="self").splitlines() if line]
    assert [s.partition(":")[2] for s in shown if s.startswith(m)] == by_self
    with pytest.raises(ValueError, match="unknown sort key 'speed'"):
        render_text(stats, sort="speed")
    with pytest.raises(ValueError, match="top must be at least 1"):
        render_text(stats, top=0)


def test_report_config_top_and_sort_reach_the_exit_report(tmp_path):
    from callweave.config import parse_config

    stats, _g = graph()
    config = parse_config({"report": "text", "top": 2, "sort": "count"}, path=None)
    assert config.report == Report("text", top=2, sort="count")
    assert parse_config(config.to_table(), path=None).report == config.report
    out = io.StringIO()
    report(config.report, stats=stats, file=out)
    assert out.getvalue() == render_text(stats, top=2, sort="count")
    for table, message in [
        ({"top": 0}, "top = 0: must be a whole number of functions >= 1"),
        ({"top": "5"}, 'top = "5": must be a whole number'),
        ({"sort": "speed"}, 'sort = "speed": must be one of total, self'),
    ]:
        with pytest.raises(callweave.ConfigError, match=re.escape(message)):
            parse_config(table, path=None)


def test_pstats_is_a_call_graph_whose_total_is_the_outermost_time(tmp_path):
    stats, g = graph()
    f = by_name(stats)
    path = tmp_path / "graph.prof"
    write_pstats(stats, path)
    loaded = pstats.Stats(str(path), stream=io.StringIO())
    key = {name: (g.__file__, f[name].line, name) for name in ("top", "middle", "leaf")}
    # each profiled function is one node with its own count; its callers are the profiled
    # functions that call it, one edge per caller
    assert loaded.stats[key["top"]][:2] == (2, 2) and loaded.stats[key["top"]][4] == {}
    assert set(loaded.stats[key["middle"]][4]) == {key["top"]}
    assert loaded.stats[key["middle"]][4][key["top"]][:2] == (2, 2)
    leaf_callers = loaded.stats[key["leaf"]][4]
    assert set(leaf_callers) == {key["top"], key["middle"]}
    assert leaf_callers[key["middle"]][:2] == (4, 4)
    assert leaf_callers[key["top"]][:2] == (2, 2)
    assert loaded.stats[key["leaf"]][:2] == (6, 6)
    assert loaded.stats[key["leaf"]][2] == pytest.approx(f["leaf"].self_time)
    # no separate node for a call of a profiled function
    assert not any(k[2] in ("middle", "leaf") and k not in key.values() for k in loaded.stats)
    # the header's total is the outermost functions' time, each part counted once
    assert loaded.total_tt == pytest.approx(f["top"].total, rel=0.01)
    assert loaded.total_tt <= f["top"].total
    # print_callees chains: top -> middle -> leaf
    buf = io.StringIO()
    pstats.Stats(str(path), stream=buf).print_callees("middle")
    assert "(leaf)" in buf.getvalue() and "(str.join)" in buf.getvalue()
    buf = io.StringIO()
    pstats.Stats(str(path), stream=buf).print_callers("leaf")
    assert "(top)" in buf.getvalue() and "(middle)" in buf.getvalue()


def test_pstats_links_by_name_only_when_unambiguous():
    a = fake("f", line=3, sites=[SiteStats("g(1)", "g", 4, 1, 0.5, 0.5, 0.5)])
    g1 = fake("g", line=20, count=1, total=0.4, sites=[])
    other = fake("g", line=5, count=1, total=0.1, filename="/src/other.py", module="o")
    d = to_pstats([a, g1, other])
    assert set(d[("/src/m.py", 20, "g")][4]) == {("/src/m.py", 3, "f")}  # same file wins
    assert d[("/src/other.py", 5, "g")][4] == {}
    d = to_pstats([a, other])  # the only g anywhere
    assert set(d[("/src/other.py", 5, "g")][4]) == {("/src/m.py", 3, "f")}
    two = [a, fake("g", line=5, filename="/x.py"), fake("g", line=6, filename="/y.py")]
    d = to_pstats(two)
    assert ("/src/m.py", 4, "g") in d  # ambiguous: a leaf of its own


def test_percentiles_within_min_and_max():
    stats, _ = graph()
    for f in stats:
        if f.count:
            assert f.min <= f.p50 <= f.p95 <= f.p99 <= f.max, f
            assert sum(n for _, _, n in f.histogram) == f.count
    # older reports whose p95 exceeded max are clamped when read
    doc = to_json([fake(count=2, min=0.25, max=0.75, p95=0.8, p99=0.9)])
    doc["functions"][0]["p95"] = 0.8
    (f,) = stats_from_json(doc)
    assert (f.p95, f.p99) == (0.75, 0.75)


def test_merged_histograms_give_merged_percentiles():
    a = fake(
        count=3,
        min=0.001,
        max=0.003,
        p50=0.002,
        p95=0.003,
        p99=0.003,
        histogram=[(0.00099, 0.00101, 1), (0.00199, 0.00201, 1), (0.00299, 0.00301, 1)],
    )
    b = fake(
        count=1,
        min=0.009,
        max=0.011,
        p50=0.01,
        p95=0.01,
        p99=0.01,
        histogram=[(0.0099, 0.0101, 1)],
        above=1,
    )
    merged = stats_from_json(merge_json([to_json([a]), to_json([b])]))[0]
    assert merged.count == 4 and merged.above == 1
    assert merged.histogram == [
        (0.00099, 0.00101, 1),
        (0.00199, 0.00201, 1),
        (0.00299, 0.00301, 1),
        (0.0099, 0.0101, 1),
    ]
    assert merged.p50 == pytest.approx(0.002)
    assert merged.p95 == pytest.approx(0.01)


def test_merge_json_accepts_paths(tmp_path):
    stats, _g = graph()
    first, second = tmp_path / "1.json", tmp_path / "2.json"
    write_json(stats, first)
    write_json(stats, second)
    merged = merge_json([first, str(second)])
    top = next(f for f in merged["functions"] if f["qualname"] == "top")
    assert top["count"] == 4
    assert merge_json([first, json.loads(second.read_text())]) == merged | {
        "processes": merged["processes"]
    }
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match=re.escape(f"{bad} is not a JSON report")):
        merge_json([first, bad])
    bad.write_text('{"functions": []}')
    with pytest.raises(ValueError, match=re.escape(f"{bad} is not a callweave JSON report")):
        merge_json([bad])
    with pytest.raises(FileNotFoundError):
        merge_json([tmp_path / "missing.json"])


def test_above_counts_the_invocations_that_ran_the_above_callback():
    from callweave import flat_profile
    from callweave.profiler import function_stats

    ran = []

    def f(x):
        return abs(x)

    over = flat_profile(time_limit=0, above_callback=lambda *a: ran.append(1), below_callback=None)(
        f
    )
    under = flat_profile(time_limit=1000, above_callback=None, below_callback=lambda *a: None)(f)
    for i in range(3):
        over(i)
        under(i)
    assert function_stats(over.__callweave_profile__).above == len(ran) == 3
    assert function_stats(under.__callweave_profile__).above == 0
    over.__callweave_profile__.reset()
    assert function_stats(over.__callweave_profile__).above == 0
    assert function_stats(over.__callweave_profile__).histogram == []


def test_pstats_does_not_link_a_site_with_more_calls_than_the_callee_ran():
    # `handler.run(x)` ran 9 times; the only profiled `run` ran 3 times: another class's run
    # made the other calls, so the site stays a leaf with its whole time
    caller = fake(
        "convert",
        line=1,
        count=3,
        total=1.0,
        sites=[SiteStats("handler.run(x)", "handler.run", 2, 9, 0.9, 0.1, 0.5)],
    )
    run = fake("Inline.run", line=40, count=3, total=0.6, filename="/src/t.py")
    d = to_pstats([caller, run])
    assert d[("/src/m.py", 2, "handler.run")][:4] == (9, 9, 0.9, 0.9)
    assert d[("/src/t.py", 40, "Inline.run")][4] == {}


def nested_graph():
    """The stats of fixtures/report_nested after two outer() calls."""
    from fixtures import report_nested as g

    g.outer(1)
    g.outer(2)
    return by_name(f for f in callweave.stats() if f.module == g.__name__), g


def test_sites_know_the_time_of_profiled_invocations_inside_them():
    f, _g = nested_graph()
    outer = f["outer"]
    # through an unprofiled call: relay()'s calls hold all of hidden()'s invocations
    relay = site(outer, "relay(n)")
    assert relay.nested == pytest.approx(f["hidden"].total, rel=1e-6, abs=1e-6)
    assert 0 < relay.nested < relay.total
    # a direct call of a profiled function: nearly all of it is the callee's own time
    direct = site(outer, "inner(n)")
    assert direct.nested == pytest.approx(f["inner"].total, rel=1e-6, abs=1e-6)
    assert direct.nested <= direct.total
    # recursion: only the outermost invocation counts (not the sum of the levels)
    levels = site(outer, "countdown(2)")
    recursive = site(f["countdown"], "countdown(k - 1)")
    assert f["countdown"].count == 6
    assert levels.nested <= levels.total < f["countdown"].total
    assert recursive.nested <= recursive.total
    assert levels.nested + recursive.nested == pytest.approx(f["countdown"].total, rel=1e-6)
    # a generator consumed inside a call: its running time, suspensions excluded
    consumed = site(outer, "list(produce(2))")
    assert consumed.nested == pytest.approx(f["produce"].total, rel=1e-6, abs=1e-6)
    assert consumed.nested <= consumed.total
    # the JSON document keeps nested times; older documents read as 0
    doc = to_json(list(f.values()))
    back = by_name(stats_from_json(doc))
    assert site(back["outer"], "relay(n)").nested == relay.nested
    for entry in doc["functions"]:
        for s in entry["sites"]:
            del s["nested"]
    assert site(by_name(stats_from_json(doc))["outer"], "relay(n)").nested == 0.0
    # merging adds them up
    merged = by_name(stats_from_json(merge_json([to_json(list(f.values()))] * 2)))
    assert site(merged["outer"], "relay(n)").nested == pytest.approx(2 * relay.nested)


def test_pstats_counts_a_function_reached_through_an_unprofiled_call_once(tmp_path):
    f, g = nested_graph()
    path = tmp_path / "nested.prof"
    write_pstats(f.values(), path)
    loaded = pstats.Stats(str(path), stream=io.StringIO())
    outer = f["outer"]
    # the header's total is outer()'s time: hidden()'s time is in its own node only, not in
    # relay()'s leaf as well (before: about 1.6x outer's total)
    assert loaded.total_tt == pytest.approx(outer.total, rel=0.01)
    assert loaded.total_tt <= outer.total * (1 + 1e-9)
    hidden_key = (g.__file__, f["hidden"].line, "hidden")
    assert loaded.stats[hidden_key][2] == pytest.approx(f["hidden"].self_time)
    relay = site(outer, "relay(n)")
    relay_key = (g.__file__, relay.line, "relay")
    cc, nc, tt, ct, _callers = loaded.stats[relay_key]
    assert (cc, nc) == (2, 2)
    assert ct == relay.total
    assert tt == pytest.approx(relay.total - relay.nested)
    assert 0 < tt < ct


def test_nested_times_per_thread_and_of_awaits():
    import asyncio
    import threading

    from fixtures import report_nested as g

    threads = [threading.Thread(target=g.outer, args=(i,)) for i in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    asyncio.run(g.aouter())
    f = by_name(f for f in callweave.stats() if f.module == g.__name__)
    # each thread's counter is its own: relay()'s calls hold exactly hidden()'s invocations
    assert f["hidden"].count == 8
    relay = site(f["outer"], "relay(n)")
    assert relay.nested == pytest.approx(f["hidden"].total, rel=1e-6, abs=1e-6)
    # an awaited profiled coroutine: the await's nested time is the callee's total
    awaited = [s for s in f["aouter"].sites if s.text == "ainner()"]
    assert [s.count for s in awaited] == [1, 1]
    nested = sum(s.nested for s in awaited)
    assert nested == pytest.approx(f["ainner"].total, rel=1e-6, abs=1e-6)
    assert all(0 < s.nested <= s.total for s in awaited)
