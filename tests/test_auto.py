"""``callweave.auto`` and the startup ``.pth``: who gets instrumented at interpreter start."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import callweave
from callweave.config import Config, ProfileRule, Report

#: The directory that holds the callweave package under test.
PACKAGE_ROOT = Path(callweave.__file__).resolve().parent.parent
#: The startup file of the source tree (installed into site-packages by maturin).
STARTUP_PTH = (
    Path(__file__).resolve().parent.parent / "startup" / "purelib" / ("callweave_startup.pth")
)

CONFIG_JSON = Config(
    profile=(ProfileRule(modules=("cw_auto_cmod",), time_limit=1.0),), report=Report("none")
).to_json()

# Runs with -S (no site): puts the package under test on the path, processes a site
# directory holding only the startup .pth (as site does at startup), then imports a module
# the inherited configuration selects.
CHILD = """
import site, sys
sys.path.insert(0, {root!r})
sys.path.insert(0, {tmp!r})
site.addsitedir({site_dir!r})
import cw_auto_cmod
print("auto imported:", "callweave.auto" in sys.modules)
print("instrumented:", type(cw_auto_cmod.__loader__).__name__ == "CallweaveLoader")
"""


@pytest.fixture
def child_script(tmp_path):
    site_dir = tmp_path / "site"
    site_dir.mkdir()
    shutil.copy(STARTUP_PTH, site_dir)
    (tmp_path / "cw_auto_cmod.py").write_text("def f(x):\n    return abs(x)\n")
    script = tmp_path / "child.py"
    script.write_text(
        CHILD.format(root=str(PACKAGE_ROOT), tmp=str(tmp_path), site_dir=str(site_dir))
    )
    return script


@pytest.mark.parametrize(
    ("flags", "instrumented"),
    [([], True), (["-E"], False), (["-I"], False)],
)
def test_startup_pth_honours_isolated_and_ignore_environment(child_script, flags, instrumented):
    # Repro 25 (issue 7 item 26): python -I / -E children are not instrumented through
    # CALLWEAVE_CONFIG_JSON; a plain child is.
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLWEAVE")}
    env["CALLWEAVE_CONFIG_JSON"] = CONFIG_JSON
    r = subprocess.run(
        [sys.executable, "-S", *flags, str(child_script)],
        cwd=child_script.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert f"auto imported: {instrumented}" in r.stdout
    assert f"instrumented: {instrumented}" in r.stdout


@pytest.mark.parametrize(("flags", "installed"), [([], True), (["-E"], False), (["-I"], False)])
def test_auto_ignores_callweave_variables_under_E_and_I(tmp_path, flags, installed):
    # An explicit `import callweave.auto` under -E/-I does not take its configuration from
    # CALLWEAVE_CONFIG_JSON or CALLWEAVE_CONFIG (there is no pyproject.toml here either).
    config = tmp_path / "cfg.toml"
    config.write_text(
        '[tool.callweave]\n[[tool.callweave.profile]]\nmodules = ["x"]\ntime_limit = "1s"\n'
    )
    code = (
        f"import sys; sys.path.insert(0, {str(PACKAGE_ROOT)!r}); import callweave.auto; "
        "print(callweave.auto.finder is not None)"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLWEAVE")}
    for var, value in (("CALLWEAVE_CONFIG_JSON", CONFIG_JSON), ("CALLWEAVE_CONFIG", str(config))):
        r = subprocess.run(
            [sys.executable, "-S", *flags, "-c", code],
            cwd=tmp_path,
            env={**env, var: value},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == str(installed), (var, r.stdout)
