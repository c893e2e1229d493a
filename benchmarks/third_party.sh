#!/usr/bin/env bash
# Fidelity on real code: six third-party packages' own test suites, run plainly, with every
# function of the package wrapped by a pass-through wrapper, and with every function of the
# package flat-profiled, must give the same results (issue 7's acceptance check).
#
#   bash benchmarks/third_party.sh [VERSION] [third_party.py options]
#   e.g. bash benchmarks/third_party.sh 3.13 --only sqlparse,jinja2 --modes plain,wrap
#
# VERSION (3.11, the default, 3.12 or 3.13) picks the CPython found by scripts/pythons.sh. The
# check has its own virtual environment, benchmarks/.venv-suites-VERSION, holding callweave
# built from this checkout as a release wheel (maturin build; its cargo target directory is
# benchmarks/.target-suites unless CARGO_TARGET_DIR is set, so other builds are not disturbed),
# the six packages installed from their pinned sdists (the sdists, which ship the tests, are
# kept in the venv's sdists/ folder) and the suites' pinned test requirements. Needs a Rust
# toolchain (cargo) and access to PyPI and crates.io, nothing else.
#
# benchmarks/third_party.py then runs each suite three times, one run at a time, and prints
# one table (package x mode: passed/failed/errors/skipped and the difference from plain),
# followed by every test whose outcome differs from plain with the first lines of its failure.
# The exit status is non-zero when any mode differs from plain. Logs, JUnit XML files and a
# JSON summary are kept in benchmarks/.venv-suites-VERSION/results/; `--reuse` reports them again
# without running (or runs only what is missing), `--help` lists the options (after the setup).
# Durations on a shared 2-core machine: about 30 minutes for 3.11 and 18 for 3.13, most of it
# pyparsing's suite (2-5 minutes plain, 8-20 minutes with every function wrapped).
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/pythons.sh"
BENCH="$ROOT/benchmarks"

version="3.11"
if [ $# -gt 0 ] && [[ "$1" =~ ^3\.[0-9]+$ ]]; then
  version="$1"
  shift
fi

py="$(python_for_build "$version")" || exit 1

# The packages under test, pinned; their sdists carry the test suites. Keep in step with
# SUITES in third_party.py.
PACKAGES=(
  "pyparsing==3.3.3"
  "jinja2==3.1.6"
  "markdown==3.11.3"
  "python-dateutil==4.0.0"
  "attrs==26.1.0"
  "sqlparse==0.6.1"
)
# What the suites need to run (their test requirements, pinned). matplotlib (pyparsing's
# mathtext cases) and pytidylib (Markdown's legacy tidy tests) are left out: those tests skip.
TEST_REQUIREMENTS=(
  "maturin>=1.5,<2"
  "pytest==9.2.0"
  "hypothesis==6.170.17"   # attrs, python-dateutil
  "freezegun==1.5.5"      # python-dateutil
  "pytest-cov==7.1.0"     # python-dateutil (its tests use the no_cover mark)
  "cloudpickle==3.1.3"    # attrs
  "pympler==1.1"          # attrs
  "trio==0.35.0"          # jinja2's async tests
  "railroad-diagrams==3.0.1"  # pyparsing's diagram tests (with jinja2, pinned above)
  "pyyaml==6.0.4"         # Markdown
)

venv="$BENCH/.venv-suites-$version"
if [ ! -x "$venv/bin/python" ]; then
  echo "== creating $venv from $py" >&2
  "$py" -m venv "$venv"
fi
vpy="$venv/bin/python"
pip=("$vpy" -m pip --disable-pip-version-check)

sdists="$venv/sdists"
mkdir -p "$sdists"
shopt -s nullglob
missing=()
for spec in "${PACKAGES[@]}"; do
  name="${spec%%==*}"
  ver="${spec##*==}"
  # sdist file names normalise the project name (PEP 625): python-dateutil -> python_dateutil.
  norm="$(echo "$name" | tr 'A-Z-.' 'a-z__')"
  # Plain paths, not patterns: nullglob would keep them whether or not they exist.
  [ -e "$sdists/$norm-$ver.tar.gz" ] || [ -e "$sdists/$name-$ver.tar.gz" ] || missing+=("$spec")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "== downloading sdists: ${missing[*]}" >&2
  "${pip[@]}" download --quiet --no-deps --no-binary :all: -d "$sdists" "${missing[@]}"
fi

echo "== installing the test requirements and the packages (from their sdists) into $venv" >&2
"${pip[@]}" install --quiet "${TEST_REQUIREMENTS[@]}" "${PACKAGES[@]}" \
    --no-binary "pyparsing,jinja2,markdown,python-dateutil,attrs,sqlparse" --find-links "$sdists"

wheels="$(mktemp -d)"
trap 'rm -rf "$wheels"' EXIT
echo "== building callweave (release wheel)" >&2
(cd "$ROOT" && CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$BENCH/.target-suites}" \
    "$venv/bin/maturin" build --release --quiet -i "$vpy" -o "$wheels" >&2)
built=("$wheels"/callweave-*.whl)
if [ "${#built[@]}" -ne 1 ]; then
  echo "expected one callweave wheel in $wheels, found ${#built[@]}" >&2
  exit 1
fi
"${pip[@]}" install --quiet --force-reinstall --no-deps "${built[0]}"
rm -rf "$wheels"
trap - EXIT

echo "== running benchmarks/third_party.py $*" >&2
exec "$vpy" "$BENCH/third_party.py" --venv "$venv" "$@"
