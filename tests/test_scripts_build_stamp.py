"""scripts/pythons.sh rebuilds callweave only when what the build depends on changed (issue 11).

The scripts are run on a copy of the tree's layout with stand-in files: a stand-in
``maturin`` records that it was called, nothing is built.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def tree(tmp_path):
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "pythons.sh", tmp_path / "scripts" / "pythons.sh")
    (tmp_path / "scripts" / "requirements-dev.txt").write_text("")
    for name, text in {
        "Cargo.toml": "[workspace]\n",
        "Cargo.lock": "version = 4\n",
        "pyproject.toml": "[project]\nname = 'x'\n",
        "crates/engine/Cargo.toml": "[package]\n",
        "crates/engine/src/lib.rs": "pub fn f() {}\n",
        "crates/engine/tests/golden.rs": "\n",
        "startup/purelib/x.pth": "import x\n",
        "python/callweave/cli.py": "x = 1\n",
    }.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    venv = tmp_path / ".venvs" / "py3.99"
    (venv / "bin").mkdir(parents=True)
    # The environment's python: this one (which imports callweave._native).
    python = venv / "bin" / "python"
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    maturin = venv / "bin" / "maturin"
    maturin.write_text(f'#!/bin/sh\necho built >> "{tmp_path / "maturin.log"}"\n')
    for f in (python, maturin):
        f.chmod(0o755)
    return tmp_path


def bash(tree, command):
    env = {k: v for k, v in os.environ.items() if k != "CALLWEAVE_REBUILD"}
    return subprocess.run(
        ["bash", "-c", f"source scripts/pythons.sh && {command}"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def setup(tree):
    bash(tree, f'setup_venv 3.99 "{sys.executable}" >/dev/null')
    log = tree / "maturin.log"
    return len(log.read_text().splitlines()) if log.exists() else 0


def digest(tree):
    return bash(tree, "build_inputs_hash .venvs/py3.99/bin/python")


def test_the_digest_follows_the_builds_inputs_only(tree):
    first = digest(tree)
    assert digest(tree) == first
    # python/ is installed editable; engine tests are not part of the extension.
    (tree / "python" / "callweave" / "cli.py").write_text("x = 2\n")
    (tree / "crates" / "engine" / "tests" / "golden.rs").write_text("// changed\n")
    assert digest(tree) == first
    seen = {first}
    for name in (
        "crates/engine/src/lib.rs",
        "crates/engine/Cargo.toml",
        "Cargo.lock",
        "pyproject.toml",
        "startup/purelib/x.pth",
        "scripts/requirements-dev.txt",
    ):
        with (tree / name).open("a") as f:
            f.write("\n# changed\n")
        now = digest(tree)
        assert now not in seen, name
        seen.add(now)
    (tree / "crates" / "engine" / "src" / "new.rs").write_text("\n")
    assert digest(tree) not in seen


def test_setup_venv_builds_once_and_again_only_after_a_change(tree):
    assert setup(tree) == 1
    assert (tree / ".venvs" / "py3.99" / ".callweave-build").read_text().strip() == digest(tree)
    assert setup(tree) == 1  # nothing changed: no rebuild
    (tree / "python" / "callweave" / "cli.py").write_text("x = 3\n")
    assert setup(tree) == 1
    (tree / "crates" / "engine" / "src" / "lib.rs").write_text("pub fn g() {}\n")
    assert setup(tree) == 2
    assert setup(tree) == 2
    bash(tree, f'CALLWEAVE_REBUILD=1 setup_venv 3.99 "{sys.executable}" >/dev/null')
    assert setup(tree) == 3
