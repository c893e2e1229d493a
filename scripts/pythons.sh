# Sourced by the other scripts: finds CPython 3.11, 3.12 and 3.13 on this machine and builds
# callweave into one virtual environment per version under .venvs/.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Prints "VERSION PATH" for each supported CPython found (pyenv installs, then PATH).
find_pythons() {
  local v cand found
  for v in 3.11 3.12 3.13; do
    found=""
    for cand in "$(pyenv root 2>/dev/null || echo /nonexistent)"/versions/"$v".*/bin/python"$v" \
                /usr/local/bin/python"$v" /usr/bin/python"$v" "$(command -v python"$v" 2>/dev/null || true)"; do
      [ -n "$cand" ] && [ -x "$cand" ] || continue
      if "$cand" -c "import sys; assert sys.version_info[:2] == tuple(map(int, '$v'.split('.')))" 2>/dev/null; then
        found="$cand"; break
      fi
    done
    [ -n "$found" ] && echo "$v $found"
  done
  return 0
}

# python_for_build VERSION: prints the path of that CPython (3.11, 3.12 or 3.13) for a script
# that builds callweave; says why on stderr and fails when it or cargo is missing.
python_for_build() {
  local py
  py="$(find_pythons | awk -v v="$1" '$1 == v { print $2 }')"
  if [ -z "$py" ]; then
    echo "CPython $1 not found (scripts/pythons.sh looks for 3.11, 3.12 and 3.13)" >&2
    return 1
  fi
  if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo not found: building callweave needs a Rust toolchain" >&2
    return 1
  fi
  echo "$py"
}

# build_inputs_hash PYTHON: a digest of what the built extension and the install depend on:
# the Rust sources and manifests (crates/*/src, Cargo.toml, Cargo.lock, build.rs), pyproject.toml,
# the startup .pth, the dev requirements, and the interpreter (its path and `sys.version`).
# python/callweave itself is not in it: `maturin develop` installs the package editable (a
# callweave.pth pointing at python/), so edits there are live without a rebuild.
build_inputs_hash() {
  (
    cd "$ROOT"
    "$1" -c 'import sys; print(sys.executable, sys.version)'
    local inputs=() p
    for p in Cargo.toml Cargo.lock pyproject.toml scripts/requirements-dev.txt startup \
             crates/*/Cargo.toml crates/*/build.rs crates/*/src; do
      [ -e "$p" ] && inputs+=("$p")
    done
    find "${inputs[@]}" -type f | LC_ALL=C sort | while read -r f; do
      printf '%s ' "$f"; sha256sum < "$f"
    done
  ) | sha256sum | cut -d' ' -f1
}

# setup_venv VERSION PYTHON: creates .venvs/pyVERSION with the test tools and callweave built
# (release mode) into it; prints nothing but errors. Echoes the venv's python path.
# When nothing it depends on changed since the last build into that environment (the stamp
# .venvs/pyVERSION/.callweave-build holds build_inputs_hash), it neither reinstalls nor
# rebuilds; any change to a Rust source, a manifest, Cargo.lock, pyproject.toml, the
# requirements or the interpreter rebuilds. CALLWEAVE_REBUILD=1 forces a rebuild.
setup_venv() {
  local v="$1" py="$2" venv="$ROOT/.venvs/py$1" stamp digest
  stamp="$ROOT/.venvs/py$1/.callweave-build"
  if [ ! -x "$venv/bin/python" ]; then
    "$py" -m venv "$venv" >&2
  fi
  digest="$(build_inputs_hash "$venv/bin/python")"
  if [ "${CALLWEAVE_REBUILD:-0}" != 1 ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$digest" ] \
     && "$venv/bin/python" -c 'import callweave._native' 2>/dev/null; then
    echo "$venv/bin/python"
    return 0
  fi
  rm -f "$stamp"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
      -r "$ROOT/scripts/requirements-dev.txt" >&2
  (cd "$ROOT" && VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH" \
      "$venv/bin/maturin" develop --release --quiet >&2)
  echo "$digest" > "$stamp"
  echo "$venv/bin/python"
}
