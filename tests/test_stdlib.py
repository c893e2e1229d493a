"""The standard library, rewritten: every file compiles with its positions, and real modules
pass their own test suites with every call wrapped.

The sweep rewrites every function of every standard-library file (15-25 s per Python). The
test-module runs use tests/stdlib_wrapped_run.py in subprocesses: once plain, once with the
modules under test rewritten so that every call in every function goes through a counting
pass-through wrapper.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from stdlib_sweep import stdlib_files, sweep
from stdlib_wrapped_run import RESULT_MARKER

RUNNER = Path(__file__).resolve().with_name("stdlib_wrapped_run.py")


def test_sweep_rewrites_compiles_and_keeps_positions_across_the_standard_library():
    files = stdlib_files()
    r = sweep(files)
    engine_errors, compile_errors, losses = r.engine_errors, r.compile_errors, r.position_losses

    assert not engine_errors, "\n".join(engine_errors[:20])
    assert not compile_errors, "\n".join(compile_errors[:20])
    assert not losses, f"{len(losses)} files lost positions:\n" + "\n".join(losses[:20])
    assert not r.fused_names, "\n".join(r.fused_names[:20])
    # Only the deliberately broken test data is rejected by the running Python itself
    # (17 files on 3.11 and 3.12, 5 on 3.13).
    assert r.files + r.rejected_by_python == len(files)
    assert r.rejected_by_python <= 0.02 * len(files)
    # Measured here: 1721-1773 files, 31-33 MB, 313k-339k wrapped calls; the bounds catch a
    # sweep that silently skipped a large part of the library (e.g. the test package).
    assert r.compiled == r.files > 1000
    assert r.bytes > 20_000_000
    assert r.sites > 150_000


# name: (test module, modules rewritten (packages first, then in dependency order), minimum
# number of wrapped calls). Measured on 3.11-3.13: json 1.95M-2.14M calls, textwrap 10.5k,
# statistics 8.3M (93M on 3.13), difflib 1.76M, fractions 5.5k (3.11) to 43k.
CASES = {
    "json": (
        "test.test_json",
        ("json", "json.scanner", "json.decoder", "json.encoder", "json.tool"),
        500_000,
    ),
    "textwrap": ("test.test_textwrap", ("textwrap",), 5_000),
    # The whole module runs: on 3.13 TestKDE.test_kde_random alone takes ~13 s plain, and the
    # wrapped run ~30-45 s, in parallel with the plain one (the longest case here).
    "statistics": ("test.test_statistics", ("statistics",), 1_000_000),
    "difflib": ("test.test_difflib", ("difflib",), 500_000),
    "fractions": ("test.test_fractions", ("fractions",), 2_000),
}


def start(args: list[str], out: Path) -> tuple[subprocess.Popen, Path]:
    with out.open("wb") as stdout, out.with_suffix(".err").open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, str(RUNNER), *args], stdout=stdout, stderr=stderr, cwd=out.parent
        )
    return proc, out


def finish(proc: subprocess.Popen, out: Path) -> dict:
    returncode = proc.wait(timeout=600)
    stdout = out.read_text(errors="replace")
    stderr = out.with_suffix(".err").read_text(errors="replace")
    reports = [line for line in stdout.splitlines() if line.startswith(RESULT_MARKER)]
    assert reports, f"no result from {proc.args}:\n{stderr[-4000:]}"
    report = json.loads(reports[-1][len(RESULT_MARKER) :])
    report["returncode"] = returncode
    report["stderr"] = stderr
    return report


@pytest.mark.skipif(
    importlib.util.find_spec("test.support") is None, reason="this Python has no test package"
)
@pytest.mark.parametrize("name", list(CASES))
def test_stdlib_module_passes_its_own_tests_with_every_call_wrapped(name, tmp_path):
    test_module, targets, min_calls = CASES[name]
    # Both runs at once: the wrapped statistics run alone takes ~30 s on 3.13.
    runs = [
        start([test_module], tmp_path / "plain.out"),
        start([test_module, "--wrap", *targets], tmp_path / "wrapped.out"),
    ]
    plain, wrapped = (finish(*run) for run in runs)

    assert plain["returncode"] == 0, plain["stderr"][-4000:]
    assert wrapped["returncode"] == 0, wrapped["stderr"][-4000:]
    assert wrapped["tests_run"] == plain["tests_run"] > 30
    for outcome in ("failures", "errors", "unexpected_successes"):
        assert set(wrapped[outcome]) <= set(plain[outcome]), outcome
    assert wrapped["skipped"] == plain["skipped"]
    assert wrapped["expected_failures"] == plain["expected_failures"]

    # The wrapping was live: every module under test was loaded rewritten, with call sites,
    # and the tests drove many calls through the wrapper.
    assert plain["wrapped_calls"] == 0
    assert plain["loads"] == {}
    assert wrapped["wrapped_calls"] >= min_calls
    for target in targets:
        assert wrapped["loads"].get(target, 0) >= 1, target
        assert wrapped["sites"][target] > 0, target
    if name == "json":
        # test.test_json re-imports json twice with import_fresh_module (with and without
        # _json); those copies, which the PyTest and CTest cases use, are rewritten too.
        assert wrapped["loads"]["json"] >= 3
        assert wrapped["loads"]["json.decoder"] >= 3
