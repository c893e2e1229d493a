"""Third-party test suites plainly, with every function wrapped, and flat-profiled.

Run by ``benchmarks/third_party.sh`` (which builds the environment); see its header. For each
package it unpacks the pinned sdist afresh for every run, removes the package's own source
from the copy so the tests import the INSTALLED package (the one the import hook rewrites),
and runs the package's tests three times, one run at a time:

- ``plain``: ``python -m pytest ...``;
- ``wrap``: ``callweave run -m pytest ...`` with a configuration that wraps every function of
  the package with a pass-through wrapper
  (``def passthrough(call, /, *args, **kwargs): return call(*args, **kwargs)``);
- ``profile``: ``callweave run -m pytest ...`` with every function of the package
  flat-profiled (``time_limit = "3600s"``, ``above``/``below = "none"``, ``report = "none"``).

Every run gets the same environment (``PYTHONPATH`` = the wrapper's folder and the sdist
root, as the suites' tox files set it; no ``CALLWEAVE_*`` variable but the configuration
for the callweave modes). It prints one table and then, for every mode that differs from
plain, the tests whose outcome differs with the first lines of the failure; it exits 1 if any
mode differs from plain (counts, per-test outcomes, exit status, or the number of
"Exception ignored" messages printed, e.g. by ``__del__`` at shutdown).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import time
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

MODES = ("plain", "wrap", "profile")
COUNT_KEYS = ("passed", "failed", "errors", "skipped", "xfailed", "xpassed")
WRAPPER_MODULE = "cw_suite_passthrough"
PROBE_MODULE = "cw_suite_probe"
PROBE_SOURCE = '''"""pytest plugin: at the end of the session, records which of the package's
modules the import hook loaded and callweave's import counters, in $CW_SUITE_PROBE."""

import json
import os
import sys


def pytest_unconfigure(config):
    tops = tuple(os.environ["CW_SUITE_MODULES"].split(","))
    names = sorted(n for n in list(sys.modules) if n.split(".")[0] in tops)
    hooked = [
        n for n in names
        if type(getattr(sys.modules[n], "__loader__", None)).__name__ == "CallweaveLoader"
    ]
    hook = sys.modules.get("callweave.hook")
    counters = hook.counters() if hook is not None else {}
    with open(os.environ["CW_SUITE_PROBE"], "w") as f:
        json.dump({"modules": names, "hooked": hooked, "counters": counters}, f)
'''
WRAPPER_SOURCE = '''"""A pass-through call wrapper: a Python frame, nothing else."""


def passthrough(call, /, *args, **kwargs):
    return call(*args, **kwargs)
'''


@dataclass(frozen=True)
class Suite:
    """A package under test.

    Attributes:
        name: The PyPI project name.
        sdist: The sdist's file stem (also its top-level folder), e.g. ``jinja2-3.1.6``.
        modules: The package's top-level import names: every module under them is selected.
        tests: Test paths relative to the sdist root (what the project's tox file runs).
        options: Extra pytest options (deterministic hypothesis examples).
    """

    name: str
    sdist: str
    modules: tuple[str, ...]
    tests: tuple[str, ...]
    options: tuple[str, ...] = ()

    @property
    def module_globs(self) -> list[str]:
        """The module globs that select every module of the package."""
        return [g for m in self.modules for g in (m, f"{m}.**")]


# Keep in step with PACKAGES in third_party.sh.
SUITES = (
    Suite("pyparsing", "pyparsing-3.3.3", ("pyparsing",), ("tests", "examples/tiny/tests")),
    Suite("jinja2", "jinja2-3.1.6", ("jinja2",), ("tests",)),
    # Markdown's tests are unittest TestCases (its tox file runs unittest discovery), and
    # tests/test_legacy.py turns every warning into an error when imported, which makes pytest's
    # warning about an imported unittest.TestSuite class abort the collection: collect only
    # TestCase subclasses, as unittest does.
    Suite(
        "markdown",
        "markdown-3.11.3",
        ("markdown",),
        ("tests",),
        ("-o", "python_classes=NoPlainTestClasses"),
    ),
    Suite(
        "python-dateutil",
        "python_dateutil-4.0.0",
        ("dateutil",),
        ("tests", "docs"),
        ("--hypothesis-seed=0",),
    ),
    Suite("attrs", "attrs-26.1.0", ("attr", "attrs"), ("tests",), ("--hypothesis-seed=0",)),
    Suite("sqlparse", "sqlparse-0.6.1", ("sqlparse",), ("tests",)),
)


@dataclass
class Run:
    """The result of one suite in one mode."""

    suite: str
    mode: str
    returncode: int | None  # None: timed out
    seconds: float
    counts: dict[str, int]
    summary: str
    outcomes: dict[str, str]
    messages: dict[str, str]
    unraisable: list[str]
    log: str
    junit: bool
    probe: dict[str, object]
    differences: list[str] = field(default_factory=list)


def _config(suite: Suite, mode: str) -> str:
    modules = json.dumps(suite.module_globs)
    head = '[tool.callweave]\nreport = "none"\n\n'
    if mode == "wrap":
        return (
            f"{head}[[tool.callweave.wrap]]\nmodules = {modules}\n"
            f'wrapper = "{WRAPPER_MODULE}:passthrough"\n'
        )
    return (
        f"{head}[[tool.callweave.profile]]\nmodules = {modules}\n"
        'time_limit = "3600s"\nabove = "none"\nbelow = "none"\n'
    )


def _unpack(suite: Suite, sdists: Path, dest: Path) -> Path:
    """Unpacks the sdist into ``dest`` and removes the package's source from the copy."""
    matches = sorted(sdists.glob(f"{suite.sdist}.tar.gz"))
    if not matches:
        raise SystemExit(f"{suite.name}: no {suite.sdist}.tar.gz in {sdists}")
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    with tarfile.open(matches[0]) as tar:
        tar.extractall(dest, filter="data")
    root = dest / suite.sdist
    if not root.is_dir():
        raise SystemExit(f"{suite.name}: {matches[0]} has no top-level folder {suite.sdist}")
    # The tests must import the installed package, which the hook rewrites.
    for name in suite.modules:
        for where in (root, root / "src"):
            shutil.rmtree(where / name, ignore_errors=True)
            (where / f"{name}.py").unlink(missing_ok=True)
    for info in [*root.glob("*.egg-info"), *root.glob("src/*.egg-info")]:
        shutil.rmtree(info)
    return root


def _environment(helper: Path, root: Path, config: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CALLWEAVE_", "CW_SUITE_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(helper), str(root)])
    env.pop("PYTEST_ADDOPTS", None)
    if config is not None:
        env["CALLWEAVE_CONFIG"] = str(config)
    return env


def _check_installed(
    python: Path, venv: Path, suite: Suite, root: Path, env: dict[str, str]
) -> None:
    code = (
        "import importlib, sys\nfor n in sys.argv[1:]: print(importlib.import_module(n).__file__)"
    )
    out = subprocess.run(
        [str(python), "-c", code, *suite.modules],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    files = out.stdout.split()
    if out.returncode != 0 or len(files) != len(suite.modules):
        raise SystemExit(f"{suite.name}: cannot import {suite.modules}: {out.stderr.strip()}")
    for f in files:
        if not Path(f).resolve().is_relative_to(venv.resolve()):
            raise SystemExit(f"{suite.name}: the tests would import {f}, not the installed package")


_COUNT_RE = re.compile(r"(\d+) (passed|failed|errors?|skipped|xfailed|xpassed|deselected)\b")


def _summary(log: str) -> tuple[dict[str, int], str]:
    """pytest's closing counts (the last line with counts and a duration)."""
    for line in reversed(log.splitlines()):
        if re.search(r" in [\d.]+s\b", line) and (_COUNT_RE.search(line) or "no tests ran" in line):
            counts = dict.fromkeys(COUNT_KEYS, 0)
            for n, key in _COUNT_RE.findall(line):
                key = "errors" if key.startswith("error") else key
                if key in counts:
                    counts[key] = int(n)
            return counts, line.strip(" =")
    return dict.fromkeys(COUNT_KEYS, 0), "(no pytest summary line)"


def _first_lines(element: ET.Element) -> str:
    """A failure's exception line(s) and where pytest says it was raised."""
    message = (element.get("message") or "").strip()
    lines = [ln for ln in message.splitlines() if ln.strip()][:3]
    text = element.text or ""
    where = [ln for ln in text.splitlines() if re.match(r"^[^\s].*:\d+: \w", ln)]
    if where:
        lines.append(f"at {where[-1].strip()}")
    elif not lines:
        lines = [ln for ln in text.strip().splitlines() if ln.strip()][-3:]
    return "\n".join(ln[:240] for ln in lines)


def _junit(path: Path) -> tuple[dict[str, str], dict[str, str]] | None:
    try:
        tree = ET.parse(path)
    except (OSError, ET.ParseError):
        return None
    outcomes: dict[str, str] = {}
    messages: dict[str, str] = {}
    for case in tree.iter("testcase"):
        test_id = f"{case.get('classname', '')}::{case.get('name', '')}"
        n, base = 2, test_id
        while test_id in outcomes:
            test_id, n = f"{base} #{n}", n + 1
        kinds = []
        for child in case:
            if child.tag == "failure":
                kinds.append("failed")
            elif child.tag == "error":
                kinds.append("error")
            elif child.tag == "skipped":
                kinds.append("xfailed" if child.get("type") == "pytest.xfail" else "skipped")
            else:
                continue
            if child.tag in ("failure", "error"):
                messages[test_id] = _first_lines(child)
        # Subtests add one element each: keep each kind once.
        outcomes[test_id] = "+".join(dict.fromkeys(kinds)) or "passed"
    return outcomes, messages


def _unraisable(log: str) -> list[str]:
    """The first lines of each "Exception ignored ..." block CPython printed."""
    lines = log.splitlines()
    found = []
    for i, line in enumerate(lines):
        if line.startswith("Exception ignored"):
            tail = [ln for ln in lines[i + 1 : i + 12] if ln and not ln.startswith(" ")][:1]
            found.append(" / ".join([line.strip(), *tail]))
    return found


def _run(
    suite: Suite,
    mode: str,
    venv: Path,
    sdists: Path,
    helper: Path,
    work: Path,
    results: Path,
    timeout: float,
) -> Run:
    python = venv / "bin" / "python"
    # The same path in every mode (test ids contain it), outside any project whose pytest
    # configuration could apply.
    root = _unpack(suite, sdists, work / suite.name)
    config = None
    if mode != "plain":
        config = helper / f"{suite.name}-{mode}.toml"
        config.write_text(_config(suite, mode))
    env = _environment(helper, root, config)
    probe = results / f"{suite.name}-{mode}.probe.json"
    probe.unlink(missing_ok=True)
    status = results / f"{suite.name}-{mode}.status.json"
    status.unlink(missing_ok=True)
    env["CW_SUITE_PROBE"] = str(probe)
    env["CW_SUITE_MODULES"] = ",".join(suite.modules)
    if mode == "plain":
        _check_installed(python, venv, suite, root, _environment(helper, root, None))
    junit = results / f"{suite.name}-{mode}.xml"
    junit.unlink(missing_ok=True)
    basetemp = work / f"{suite.name}-tmp"
    pytest_args = [
        *suite.tests,
        "-q",
        f"--rootdir={root}",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:randomly",
        "-p",
        PROBE_MODULE,
        f"--junitxml={junit}",
        f"--basetemp={basetemp}",
        *suite.options,
    ]
    if mode == "plain":
        cmd = [str(python), "-m", "pytest", *pytest_args]
    else:
        cmd = [str(venv / "bin" / "callweave"), "run", "-m", "pytest", *pytest_args]
    log_path = results / f"{suite.name}-{mode}.log"
    print(f"== {suite.name} [{mode}]: {' '.join(cmd[:4])} ... (log: {log_path})", file=sys.stderr)
    start = time.perf_counter()
    with open(log_path, "w", encoding="utf-8", errors="replace") as log_file:
        proc = subprocess.Popen(
            cmd,
            cwd=root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            returncode: int | None = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            returncode = None
    seconds = time.perf_counter() - start
    status.write_text(json.dumps({"returncode": returncode, "seconds": seconds}))
    shutil.rmtree(basetemp, ignore_errors=True)
    shutil.rmtree(root.parent, ignore_errors=True)
    return _collect(suite, mode, results)


def _collect(suite: Suite, mode: str, results: Path) -> Run:
    """Reads what a run left in ``results``: status, log, JUnit XML and probe."""
    stem = results / f"{suite.name}-{mode}"
    status = json.loads(Path(f"{stem}.status.json").read_text())
    log_path = Path(f"{stem}.log")
    log = log_path.read_text(encoding="utf-8", errors="replace")
    counts, summary = _summary(log)
    parsed = _junit(Path(f"{stem}.xml"))
    outcomes, messages = parsed if parsed is not None else ({}, {})
    try:
        probed = json.loads(Path(f"{stem}.probe.json").read_text())
    except (OSError, ValueError):
        probed = {}
    return Run(
        suite=suite.name,
        mode=mode,
        returncode=status["returncode"],
        seconds=status["seconds"],
        counts=counts,
        summary=summary,
        outcomes=outcomes,
        messages=messages,
        unraisable=_unraisable(log),
        log=str(log_path),
        junit=parsed is not None,
        probe=probed,
    )


def _compare(plain: Run, other: Run) -> list[str]:
    """Human-readable differences of ``other`` from ``plain`` (empty: the same)."""
    diffs = []
    hooked = len(other.probe.get("hooked", []))  # type: ignore[arg-type]
    if not other.probe:
        diffs.append("the probe plugin wrote nothing")
    elif hooked == 0:
        diffs.append("no module of the package was rewritten")
    fallbacks = other.probe.get("counters", {}).get("fallbacks", 0)  # type: ignore[union-attr]
    if fallbacks:
        diffs.append(f"{fallbacks} module(s) imported unmodified (fallback)")
    if other.returncode != plain.returncode:
        what = "timed out" if other.returncode is None else f"exit {other.returncode}"
        diffs.append(f"{what} (plain: exit {plain.returncode})")
    if not other.junit:
        diffs.append("no JUnit XML written (crash?)")
    for key in COUNT_KEYS:
        delta = other.counts[key] - plain.counts[key]
        if delta:
            diffs.append(f"{delta:+d} {key}")
    delta = len(other.unraisable) - len(plain.unraisable)
    if delta:
        diffs.append(f"{delta:+d} 'Exception ignored'")
    changed = [
        t
        for t in sorted(set(plain.outcomes) | set(other.outcomes))
        if plain.outcomes.get(t) != other.outcomes.get(t)
    ]
    if changed and not any("passed" in d or "failed" in d for d in diffs):
        diffs.append(f"{len(changed)} test(s) changed outcome")
    return diffs


def _table(runs: dict[str, dict[str, Run]]) -> str:
    header = f"{'package':<16} {'mode':<8}" + "".join(f"{k:>8}" for k in COUNT_KEYS)
    header += f"{'time':>7} {'hooked':>7}  vs plain"
    out = [header, "-" * len(header)]
    for name, by_mode in runs.items():
        for i, (mode, run) in enumerate(by_mode.items()):
            row = f"{name if i == 0 else '':<16} {mode:<8}"
            row += "".join(f"{run.counts[k]:>8}" for k in COUNT_KEYS)
            hooked = f"{len(run.probe.get('hooked', []))}/{len(run.probe.get('modules', []))}"
            row += f"{run.seconds:>6.0f}s {hooked if run.probe else '?':>7}  "
            if mode == "plain":
                row += "" if run.returncode is not None else "timed out"
            else:
                row += ", ".join(run.differences) or "same"
            out.append(row)
    return "\n".join(out)


def _details(runs: dict[str, dict[str, Run]], limit: int, max_groups: int) -> str:
    out = []
    for name, by_mode in runs.items():
        plain = by_mode.get("plain")
        if plain is None:
            continue
        for mode, run in by_mode.items():
            if mode == "plain" or not run.differences:
                continue
            out.append(f"\n### {name} [{mode}]: {', '.join(run.differences)}  (log: {run.log})")
            changed = [
                t
                for t in sorted(set(plain.outcomes) | set(run.outcomes))
                if plain.outcomes.get(t) != run.outcomes.get(t)
            ]
            # Group by the exception line with names, quoted text and numbers blotted out, so
            # a systematic cause shows once (with its first example's message).
            groups: dict[str, list[str]] = {}
            for t in changed:
                first = (run.messages.get(t) or "").partition("\n")[0]
                first = re.sub(r"\d+", "N", re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", first))
                first = re.sub(r"[\w.<>]+(\(\) takes)", r"…\1", first)
                head = f"{plain.outcomes.get(t, 'absent')} -> {run.outcomes.get(t, 'absent')}"
                groups.setdefault(f"{head}\0{first}", []).append(t)
            ordered = sorted(groups.items(), key=lambda kv: -len(kv[1]))
            for key, tests in ordered[:max_groups]:
                out.append(f"- {len(tests)} test(s) {key.partition(chr(0))[0]}")
                for t in tests[:limit]:
                    out.append(f"    {t}")
                if len(tests) > limit:
                    out.append(f"    ... and {len(tests) - limit} more")
                message = run.messages.get(tests[0], "")
                if message:
                    out.append(textwrap.indent(message, "      | "))
            rest = ordered[max_groups:]
            if rest:
                n = sum(len(tests) for _, tests in rest)
                out.append(f"- {n} more test(s) in {len(rest)} other group(s): see {run.log}")
            extra = Counter(run.unraisable) - Counter(plain.unraisable)
            for line, n in extra.most_common(5):
                out.append(f"- {n}x {line[:300]}")
            if not run.junit:
                tail = Path(run.log).read_text(errors="replace").splitlines()[-15:]
                out.append(textwrap.indent("\n".join(tail), "      | "))
    return "\n".join(out)


def main() -> int:
    """Runs the suites and prints the comparison; 1 if any mode differs from plain."""
    names = [s.name for s in SUITES]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--venv", type=Path, required=True, help="the prepared environment")
    parser.add_argument(
        "--only", default=",".join(names), help=f"comma-separated of {names}, run in this order"
    )
    parser.add_argument(
        "--modes", default=",".join(MODES), help="comma-separated of plain, wrap, profile"
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="report the results kept from an earlier run instead of running again",
    )
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per run")
    parser.add_argument("--limit", type=int, default=5, help="tests listed per failure group")
    parser.add_argument("--groups", type=int, default=12, help="failure groups listed per mode")
    args = parser.parse_args()
    only = [n.strip() for n in args.only.split(",") if n.strip()]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = sorted(set(only) - set(names)) + sorted(set(modes) - set(MODES))
    if unknown:
        parser.error(f"unknown package or mode: {', '.join(unknown)}")
    if "plain" not in modes:
        modes.insert(0, "plain")  # the reference

    venv = args.venv.resolve()
    sdists = venv / "sdists"
    results = venv / "results"
    results.mkdir(exist_ok=True)
    runs: dict[str, dict[str, Run]] = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="callweave-suites-") as tmp:
        helper = Path(tmp) / "path"
        helper.mkdir()
        (helper / f"{WRAPPER_MODULE}.py").write_text(WRAPPER_SOURCE)
        (helper / f"{PROBE_MODULE}.py").write_text(PROBE_SOURCE)
        for suite in sorted(
            (s for s in SUITES if s.name in only), key=lambda s: only.index(s.name)
        ):
            by_mode = runs.setdefault(suite.name, {})
            for mode in MODES:
                if mode not in modes:
                    continue
                if args.reuse and (results / f"{suite.name}-{mode}.status.json").exists():
                    by_mode[mode] = _collect(suite, mode, results)
                else:
                    by_mode[mode] = _run(
                        suite, mode, venv, sdists, helper, Path(tmp), results, args.timeout
                    )
            for mode, run in by_mode.items():
                if mode != "plain":
                    run.differences = _compare(by_mode["plain"], run)

    print(f"Python {sys.version.split()[0]}; total {time.perf_counter() - started:.0f}s")
    print(_table(runs))
    details = _details(runs, args.limit, args.groups)
    if details:
        print(details)
    summary = {
        name: {
            mode: {k: v for k, v in vars(run).items() if k != "messages"}
            for mode, run in by_mode.items()
        }
        for name, by_mode in runs.items()
    }
    (results / "summary.json").write_text(json.dumps(summary, indent=1))
    differs = any(run.differences for by_mode in runs.values() for run in by_mode.values())
    return 1 if differs else 0


if __name__ == "__main__":
    sys.exit(main())
