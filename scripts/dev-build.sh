#!/usr/bin/env bash
# Rebuilds callweave (release) into the existing .venvs/pyVERSION (default 3.11) for quick
# iteration; scripts/test.sh creates the environments.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
venv="$ROOT/.venvs/py${1:-3.11}"
cd "$ROOT" && VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH" "$venv/bin/maturin" develop --release --quiet
