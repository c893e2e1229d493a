#!/usr/bin/env bash
# Rebuilds callweave (release) into the existing .venvs/pyVERSION (default 3.11) for quick
# iteration; scripts/test.sh creates the environments. Refreshes the environment's build stamp
# (see setup_venv in scripts/pythons.sh).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
venv="$ROOT/.venvs/py${1:-3.11}"
cd "$ROOT" && VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH" "$venv/bin/maturin" develop --release --quiet
# What was built is current (the dev requirements are taken as installed): the next
# scripts/test.sh or demo.sh need not build it again.
source "$ROOT/scripts/pythons.sh"
build_inputs_hash "$venv/bin/python" > "$venv/.callweave-build"
