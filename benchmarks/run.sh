#!/usr/bin/env bash
# Per-call overhead, side by side in one run: plain, callweave's flat_profile and wrap_calls,
# recompyle 0.2.1's flat_profile and wrap_calls, cProfile, and a pure-Python timing wrapper.
#
#   bash benchmarks/run.sh [VERSION] [calls.py options]     e.g. bash benchmarks/run.sh 3.11 --quick
#
# VERSION (3.11, the default, 3.12 or 3.13) picks the CPython found by scripts/pythons.sh. The
# benchmark has its own virtual environment, benchmarks/.venv-VERSION, with recompyle 0.2.1 from
# PyPI and callweave built from this checkout as a release wheel (maturin build; its cargo target
# directory is benchmarks/.target unless CARGO_TARGET_DIR is set, so other builds are not
# disturbed). Needs a Rust toolchain (cargo) and access to PyPI and crates.io.
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/pythons.sh"
BENCH="$ROOT/benchmarks"

version="3.11"
if [ $# -gt 0 ] && [[ "$1" =~ ^3\.[0-9]+$ ]]; then
  version="$1"
  shift
fi

py="$(python_for_build "$version")" || exit 1

venv="$BENCH/.venv-$version"
if [ ! -x "$venv/bin/python" ]; then
  echo "== creating $venv from $py" >&2
  "$py" -m venv "$venv"
fi
vpy="$venv/bin/python"
pip=("$vpy" -m pip install --quiet --disable-pip-version-check)

echo "== installing recompyle==0.2.1 and maturin into $venv" >&2
"${pip[@]}" "recompyle==0.2.1" "maturin>=1.5,<2"

wheels="$(mktemp -d)"
trap 'rm -rf "$wheels"' EXIT
echo "== building callweave (release wheel)" >&2
(cd "$ROOT" && CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$BENCH/.target}" \
    "$venv/bin/maturin" build --release --quiet -i "$vpy" -o "$wheels" >&2)
shopt -s nullglob
built=("$wheels"/callweave-*.whl)
if [ "${#built[@]}" -ne 1 ]; then
  echo "expected one callweave wheel in $wheels, found ${#built[@]}" >&2
  exit 1
fi
"${pip[@]}" --force-reinstall --no-deps "${built[0]}"
rm -rf "$wheels"
trap - EXIT

echo "== running benchmarks/calls.py $*" >&2
cd "$ROOT"
exec "$vpy" benchmarks/calls.py "$@"
