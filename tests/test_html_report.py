"""The HTML report: its content, and the page as a real headless Chromium renders it."""

import json
import re
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from fixtures import report_targets as t
from system_deps import require

import callweave
from callweave.config import Report, parse_config
from callweave.html_report import render_html
from callweave.profiler import FunctionStats, SiteStats
from callweave.reports import report, write_exit_report

MODULE = t.__name__


@pytest.fixture(autouse=True)
def clean_stats():
    callweave.reset_stats()
    yield
    callweave.reset_stats()


def run_all():
    for _ in range(3):
        t.heavy(10)
    for i in range(5):
        t.light(i)
    with pytest.raises(ValueError):
        t.failing(1)
    t.many(3.5)
    t.Greeter().greet("x")


def mine():
    return [f for f in callweave.stats() if f.module == MODULE]


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def tags(page):
    parser = _Tags()
    parser.feed(page)
    return parser.tags


def test_page_is_self_contained_and_lists_everything():
    run_all()
    page = render_html(mine())
    found = tags(page)
    # nothing is fetched: no external script, style sheet, image or font
    for tag, attrs in found:
        for attr in ("src", "href"):
            value = attrs.get(attr)
            assert value is None or value.startswith("#"), (tag, attrs)
    assert not re.search(r"(?:https?:)?//[\w.-]+\.\w+/", page.replace("http://www.w3.org", ""))
    rows = [a for tag, a in found if tag == "tr" and a.get("id", "").startswith("row-")]
    assert len(rows) == 5  # the functions that ran
    for name in ("heavy", "light", "failing", "many", "Greeter.greet"):
        assert f"{MODULE}:{name}</a>" in page
    # never() and fact() never ran: named in their own list
    idle = page[page.index('id="never-ran"') :]
    assert f"{MODULE}:never<" in idle and f"{MODULE}:fact<" in idle
    # heavy's sites as bars; many's call sites; a histogram per function
    bars = [a for tag, a in found if tag == "rect" and a.get("class") == "site-bar"]
    assert len(bars) == 3 + 2 + 2 + 7 + 1  # heavy, light, failing, many, greet
    buckets = [a for tag, a in found if tag == "rect" and "bucket" in a.get("class", "")]
    assert sum(int(a["data-count"]) for a in buckets) == 3 + 5 + 1 + 1 + 1
    assert "every call site ran" in page


def test_page_shows_errors_limit_above_count_and_sites_that_never_ran():
    f = FunctionStats(
        module="shop",
        qualname="order",
        filename="/src/shop.py",
        line=3,
        time_limit=0.01,
        count=4,
        errors=1,
        total=0.08,
        mean=0.02,
        min=0.005,
        max=0.04,
        p50=0.02,
        p95=0.04,
        p99=0.04,
        sites=[
            SiteStats('"".join(parts)', None, 5, 4, 0.02, 0.005, 0.01),
            SiteStats("refund(x)", "refund", 7, 0, 0.0, 0.0, 0.0),
        ],
        above=3,
        histogram=[(0.004, 0.006, 1), (0.016, 0.018, 2), (0.032, 0.034, 1)],
    )
    page = render_html([f], title="Shop <profile>")
    assert "<title>Shop &lt;profile&gt;</title>" in page
    facts = dict(re.findall(r"<dt>([^<]+)</dt><dd[^>]*>([^<]+)</dd>", page))
    assert facts["errors"] == "1"
    assert facts["limit"] == "10.0 ms"
    assert facts["above limit"] == "3"
    assert '<dd class="bad">3</dd>' in page
    never = page[page.index("Call sites that never ran (1)") :]
    assert "7: refund(x)" in never
    assert "[str.join]" in page  # the callee's real name in the bar's tooltip
    # the buckets at or above the limit are marked, and the limit is drawn
    over = re.findall(r'class="bucket over"[^>]*data-count="(\d+)"', page)
    assert over == ["2", "1"]
    assert 'class="limit"' in page


def test_report_html_kind_config_and_exit_report(tmp_path):
    run_all()
    path = tmp_path / "out" / "report.html"
    assert report("html", path, stats=mine()) is None
    assert '<table id="functions">' in path.read_text(encoding="utf-8")
    config = parse_config({"report": "html:prof.html"}, path=tmp_path / "pyproject.toml")
    assert config.report == Report("html", tmp_path / "prof.html")
    write_exit_report(config.report, stats=mine())
    assert f"{MODULE}:heavy" in (tmp_path / "prof.html").read_text(encoding="utf-8")
    with pytest.raises(ValueError, match="'html' report needs a path"):
        report("html", stats=[])
    with pytest.raises(ValueError, match='"html" needs a file'):
        Report.parse("html:")


# ---------------------------------------------------------------------------- in a browser

#: Put first in <head>: collects the page's errors and console errors.
CAPTURE = """<script>
window.__errors = [];
window.addEventListener("error", function (e) { window.__errors.push("error: " + e.message); });
(function () {
  var original = console.error;
  console.error = function () {
    window.__errors.push("console.error: " + Array.prototype.join.call(arguments, " "));
    original.apply(console, arguments);
  };
})();
</script>"""

#: Put last in <body>: checks what a person would see and click, writes the result as JSON.
SELF_CHECK = """<script>
(function () {
  var out = {};
  try {
    var table = document.getElementById("functions");
    var rows = function () {
      return Array.prototype.map.call(table.tBodies[0].rows, function (r) {
        return [r.cells[0].textContent, parseFloat(r.cells[1].getAttribute("data-value"))];
      });
    };
    var box = table.getBoundingClientRect();
    out.table = {width: box.width, height: box.height, rows: rows()};
    out.bars = Array.prototype.map.call(document.querySelectorAll("rect.site-bar"), function (b) {
      var r = b.getBoundingClientRect();
      return {fn: b.closest("section").querySelector("h2").textContent,
              line: b.parentNode.getAttribute("data-line"), width: r.width, height: r.height};
    });
    out.buckets = document.querySelectorAll("rect.bucket").length;
    var count = table.tHead.rows[0].cells[1];
    count.click();
    out.byCount = rows();
    out.ariaFirst = count.getAttribute("aria-sort");
    count.click();
    out.byCountAgain = rows();
    out.ariaSecond = count.getAttribute("aria-sort");
    table.tHead.rows[0].cells[0].click();
    out.byName = rows();
  } catch (e) {
    window.__errors.push("self-check: " + e);
  }
  out.errors = window.__errors;
  var pre = document.createElement("pre");
  pre.id = "self-check";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
</script>"""


def in_chromium(page: str, tmp_path: Path) -> dict:
    """Loads the page from a file:// URL in headless Chromium; the self-check's result."""
    chromium = require("chromium")
    assert page.count("<head>") == 1 and page.count("</body>") == 1
    page = page.replace("<head>", "<head>" + CAPTURE).replace("</body>", SELF_CHECK + "</body>")
    path = tmp_path / "page.html"
    path.write_text(page, encoding="utf-8")
    result = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1280,2000",
            "--dump-dom",
            path.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=300,  # a hang guard, not a performance bound
        check=False,
    )
    match = re.search(r'<pre id="self-check">(.*?)</pre>', result.stdout, re.S)
    assert match, f"no self-check in the DOM (exit {result.returncode}): {result.stderr[-2000:]}"
    text = match.group(1).replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"')
    return json.loads(text.replace("&amp;", "&"))


def test_page_in_a_headless_browser(tmp_path):
    run_all()
    stats = mine()
    checked = in_chromium(render_html(stats), tmp_path)
    assert checked["errors"] == []
    table = checked["table"]
    assert table["width"] > 0 and table["height"] > 0
    ran = sorted((f for f in stats if f.count), key=lambda f: -f.total)
    assert [name for name, _ in table["rows"]] == [f"{MODULE}:{f.qualname}" for f in ran]
    # a site's bar is drawn, the longest site of a function the widest
    heavy = [b for b in checked["bars"] if b["fn"] == f"{MODULE}:heavy"]
    assert len(heavy) == 3
    assert all(b["width"] > 0 and b["height"] > 0 for b in heavy)
    assert heavy[0]["line"] == str(t.line_of("pause(0.003)"))
    assert heavy[0]["width"] == max(b["width"] for b in heavy)
    assert checked["buckets"] >= 5
    # a click on "count" sorts by count, largest first; a second click reverses
    counts = [n for _, n in checked["byCount"]]
    assert counts == sorted(counts, reverse=True) and counts[0] == 5
    assert checked["ariaFirst"] == "descending"
    again = [n for _, n in checked["byCountAgain"]]
    assert again == sorted(again)
    assert checked["ariaSecond"] == "ascending"
    names = [name for name, _ in checked["byName"]]
    assert names == sorted(names, key=str.lower)


def test_page_without_functions_in_a_headless_browser(tmp_path):
    checked = in_chromium(render_html([]), tmp_path)
    assert checked["errors"] == []
    assert checked["table"]["rows"] == []
