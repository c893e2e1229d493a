#!/usr/bin/env bash
# Warm import in instructions (callgrind; repeatable on a loaded machine, unlike timings):
# importing copies of argparse and pydoc from callweave's cache (profile-all and wrap-all
# rules) against the same copies imported from their ordinary .pyc files, in a fresh
# interpreter that has imported callweave and callweave.hook (and, for callweave, installed
# the hook) before counting starts. The standard-library modules the copies import (gettext,
# platform, sysconfig...) are imported before counting too: the ratio compares the imports of
# the two rewritten modules alone (`python benchmarks/imports.py --only warm` times the same
# imports with those dependencies, a smaller ratio). On each CPython 3.11-3.13 built into
# .venvs/; prints each ratio with issue 10's target (<= 1.10x).
#
#   bash benchmarks/warm_instructions.sh [VERSION ...]      (default: every one in .venvs/)
set -euo pipefail
source "$(dirname "$0")/../scripts/pythons.sh"
cd "$ROOT"
command -v valgrind >/dev/null || { echo "valgrind not found (apt-get install valgrind)" >&2; exit 1; }
export PYTHONHASHSEED=0
# As benchmarks/imports.py: bytecode (callweave's cache and ordinary .pyc files) is written.
while read -r var; do unset "$var"; done < <(env | grep -o '^\(CALLWEAVE\|PYTHONDONT\)[A-Z_]*' || true)
tmp="$(mktemp -d)"
trap '[ -n "${KEEP:-}" ] || rm -rf "$tmp"' EXIT; [ -n "${KEEP:-}" ] && echo "temp: $tmp" >&2
# The imports are counted inside operator.length_hint (callgrind's toggle), nothing else.
# Two thresholds would otherwise sway a ratio by more than the work compared, each adding up
# to 0.7M instructions to whichever count crosses it: the collector's (a full collection
# first, so both counts start from the same state) and the table of interned strings' (it
# grows by rehashing every entry). A count is the least of three runs with 0, 4000 and 8000
# more strings interned first: at most one of them crosses the table's threshold.
# argv: plain|callweave, the number of strings to intern, then the dependencies to import.
code='import callweave, callweave.hook, gc, importlib, operator, sys
for name in sys.argv[3:]:
    importlib.import_module(name)
before = set(sys.modules)
if sys.argv[1] == "callweave":
    callweave.install(report_at_exit=False)
padding = [sys.intern(f"warm_instructions_{i}") for i in range(int(sys.argv[2]))]
gc.collect()
class Imports:
    def __length_hint__(self):
        import bench_argparse.mod, bench_pydoc.mod
        return 0
operator.length_hint(Imports())
print(*sorted(n for n in set(sys.modules) - before if not n.startswith("bench_")))'
count1() {  # count1 PYTHON ROOT (plain|callweave) PADDING DEPENDENCY...
  local py="$1" root="$2"
  shift 2
  (cd "$root" && PYTHONPATH="$root" valgrind --tool=callgrind --collect-atstart=no \
    --toggle-collect=_operator_length_hint --callgrind-out-file=/dev/null "$py" -c "$code" "$@" 2>&1 |
    grep -o 'Collected : [0-9]*' | grep -o '[0-9]*$')
}
count() {  # count PYTHON ROOT (plain|callweave) DEPENDENCY...: the least of three paddings
  local py="$1" root="$2" what="$3"
  shift 3
  for padding in 0 4000 8000; do count1 "$py" "$root" "$what" "$padding" "$@"; done | sort -n | head -1
}
profile_all='[[tool.callweave.profile]]
modules = ["bench_argparse.mod", "bench_pydoc.mod"]
time_limit = "1s"'
wrap_all='[[tool.callweave.wrap]]
modules = ["bench_argparse.mod", "bench_pydoc.mod"]
wrapper = "operator:call"'
while read -r v _; do
  [ $# -eq 0 ] || [[ " $* " == *" $v "* ]] || continue
  py="$ROOT/.venvs/py$v/bin/python"
  [ -x "$py" ] || { echo "== CPython $v: no .venvs/py$v (run scripts/test.sh first)"; continue; }
  stdlib="$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')"
  for config in profile-all wrap-all; do
    root="$tmp/$v/$config"
    for m in argparse pydoc; do
      mkdir -p "$root/bench_$m"
      : > "$root/bench_$m/__init__.py"
      cp "$stdlib/$m.py" "$root/bench_$m/mod.py"
      # Edited an hour ago: callweave stores a source's stat stamp once its mtime is settled.
      touch -d '1 hour ago' "$root/bench_$m/__init__.py" "$root/bench_$m/mod.py"
    done
    table="$profile_all"; [ "$config" = wrap-all ] && table="$wrap_all"
    printf '[tool.callweave]\n%s\n' "$table" > "$root/pyproject.toml"
    # Not counted: these write callweave's cache and the ordinary .pyc files.
    # The last one prints the dependencies (the same for both configs).
    (cd "$root" && PYTHONPATH="$root" "$py" -c "$code" callweave 0 >/dev/null)
    deps="$(cd "$root" && PYTHONPATH="$root" "$py" -c "$code" plain 0)"
  done
  # shellcheck disable=SC2086 # one word per module
  base="$(count "$py" "$tmp/$v/profile-all" plain $deps)"
  for config in profile-all wrap-all; do
    # shellcheck disable=SC2086
    n="$(count "$py" "$tmp/$v/$config" callweave $deps)"
    awk -v v="$v" -v c="$config" -v n="$n" -v b="$base" 'BEGIN {
      r = n / b
      printf "CPython %s warm %-12s %6.2fM / cached import %6.2fM = %.3fx  target <= 1.10x  %s\n",
        v, c, n / 1e6, b / 1e6, r, (r <= 1.10 ? "PASS" : "FAIL") }'
  done
done <<< "$(find_pythons)"
