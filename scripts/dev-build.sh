#!/usr/bin/env bash
# Rebuilds callweave (release) into the existing .venvs/pyVERSION (default 3.11) for quick
# iteration; scripts/test.sh creates the environments. Refreshes the environment's build stamp
# (see setup_venv in scripts/pythons.sh).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
venv="$ROOT/.venvs/py${1:-3.11}"
# The dev requirements first: the stamp below says they are installed (a requirement added
# since the environment was made would otherwise be missing until a forced rebuild).
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    -r "$ROOT/scripts/requirements-dev.txt"
cd "$ROOT" && VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH" "$venv/bin/maturin" develop --release --quiet
# What was built is current: the next scripts/test.sh or demo.sh need not build it again.
source "$ROOT/scripts/pythons.sh"
build_inputs_hash "$venv/bin/python" > "$venv/.callweave-build"
