#!/usr/bin/env bash
# Cold import in instructions (callgrind; repeatable on a loaded machine, unlike timings): one
# rewrite by the import hook's loader (engine, compile of the rewritten source, position
# remap, cache rows; no cache read or write) against one plain compile() of the same standard
# library module, for profile-all and wrap-all rules, on each CPython 3.11-3.13 built into
# .venvs/. Prints each ratio with issue 10's targets (profile-all <= 1.5x, wrap-all <= 1.3x).
#
#   bash benchmarks/cold_instructions.sh [MODULE ...]      (default: argparse)
#
# `python benchmarks/imports.py --only cold` times the same work on six modules.
set -euo pipefail
source "$(dirname "$0")/../scripts/pythons.sh"
cd "$ROOT"
command -v valgrind >/dev/null || { echo "valgrind not found (apt-get install valgrind)" >&2; exit 1; }
export PYTHONHASHSEED=0
modules=("${@:-argparse}")
code='import functools, importlib.util, sys, sysconfig
from pathlib import Path
from callweave.config import Config, ProfileRule, WrapRule
from callweave.hook import CallweaveFinder, CallweaveLoader
name, kind = sys.argv[1], sys.argv[2]
path = str(Path(sysconfig.get_paths()["stdlib"]) / f"{name}.py")
data = Path(path).read_bytes()
if kind == "compile":
    source = importlib.util.decode_source(data)
    work = lambda: compile(source, path, "exec", dont_inherit=True)
else:
    rules = {"profile": dict(profile=(ProfileRule(modules=(name,), time_limit=1.0),)),
             "wrap": dict(wrap=(WrapRule(modules=(name,), wrapper="operator:call"),))}
    loader = CallweaveLoader(name, path, CallweaveFinder(Config(**rules[kind])))
    work = lambda: loader._rewrite(name, path, data, "bench")
work()  # warm-up, not counted: first-use costs
functools.reduce(lambda a, b: work(), [0, 0])  # counted: exactly one call'
count() {
  valgrind --tool=callgrind --collect-atstart=no --toggle-collect='functools_reduce*' \
    --callgrind-out-file=/dev/null "$1" -c "$code" "$2" "$3" 2>&1 |
    grep -o 'Collected : [0-9]*' | grep -o '[0-9]*$'
}
while read -r v _; do
  py="$ROOT/.venvs/py$v/bin/python"
  [ -x "$py" ] || { echo "== CPython $v: no .venvs/py$v (run scripts/test.sh first)"; continue; }
  for m in "${modules[@]}"; do
    base="$(count "$py" "$m" compile)"
    for kind in profile wrap; do
      n="$(count "$py" "$m" "$kind")"
      target=1.5; [ "$kind" = wrap ] && target=1.3
      awk -v v="$v" -v m="$m" -v k="$kind" -v n="$n" -v b="$base" -v t="$target" 'BEGIN {
        r = n / b
        printf "CPython %s %-10s %-12s %6.1fM / compile %6.1fM = %.3fx  target <= %sx  %s\n",
          v, m, k "-all", n / 1e6, b / 1e6, r, t, (r <= t ? "PASS" : "FAIL") }'
    done
  done
done <<< "$(find_pythons)"
