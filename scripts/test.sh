#!/usr/bin/env bash
# Runs the whole test suite: the Rust workspace's tests, ruff and mypy (strict) on the package,
# then pytest on every CPython among 3.11, 3.12 and 3.13 found on this machine, each with
# callweave built for it.
# Extra arguments go to pytest.
source "$(dirname "$0")/pythons.sh"
cd "$ROOT"

# The programs some tests talk to for real (Chromium, Prometheus); with them installed, a test
# that cannot find one fails instead of skipping.
bash scripts/system-deps.sh
export CALLWEAVE_REQUIRE_SYSTEM_DEPS=1

echo "== cargo fmt, clippy"
cargo fmt --all -- --check
cargo clippy --quiet --workspace --all-targets -- -D warnings

echo "== cargo test (engine)"
cargo test --quiet --package callweave_engine

pythons="$(find_pythons)"
if [ -z "$pythons" ]; then
  echo "no CPython 3.11, 3.12 or 3.13 found" >&2
  exit 1
fi
status=0
first=1
while read -r v py; do
  echo "== CPython $v ($py)"
  vpy="$(setup_venv "$v" "$py")"
  if [ $first = 1 ]; then
    echo "== ruff"
    "$(dirname "$vpy")/ruff" check python tests benchmarks examples || status=1
    "$(dirname "$vpy")/ruff" format --check python tests benchmarks examples || status=1
    echo "== mypy --strict (python/callweave, for 3.11, 3.12, 3.13), stubtest (_native.pyi)"
    for target in 3.11 3.12 3.13; do
      "$vpy" -m mypy --python-version "$target" || status=1
    done
    # The stub against the built extension: run outside the tree so the installed package
    # is the one imported.
    (cd "$(dirname "$vpy")" && "$vpy" -m mypy.stubtest --ignore-disjoint-bases \
        --allowlist "$ROOT/scripts/stubtest-allowlist.txt" callweave._native) || status=1
    first=0
  fi
  "$vpy" -m pytest -q -p no:cacheprovider "$@" tests || status=1
done <<< "$pythons"
exit $status
