#!/usr/bin/env bash
# Instructions per call (callgrind; repeatable on a loaded machine, unlike timings) of the loops
# of `python -m callweave.performance --forward-only`: each loop runs N times in one process and
# 0 times in another, and the difference of their instruction totals is divided by N.
#
#   bash benchmarks/entry_instructions.sh [PYTHON] [N]      (default .venvs/py3.11/bin/python, 200000)
#
# Added costs are differences of these lines (e.g. entry + exit = "empty(), flat_profile" minus
# "empty(), plain"; the forward = "operator.call(f, x)" minus "f(x), plain"). Instruction counts
# ignore what an instruction costs: a TSC read counts 1 but takes ~15 ns on this class of VM.
set -euo pipefail
PY="${1:-.venvs/py3.11/bin/python}"
N="${2:-200000}"
export PYTHONHASHSEED=0
code='import sys
from callweave import performance as p
loop = p.FORWARD_VARIANTS[sys.argv[1]]
loop(1000, 1)
loop(int(sys.argv[2]), 1)'
count() {
  valgrind --tool=callgrind --callgrind-out-file=/dev/null "$PY" -c "$code" "$1" "$2" 2>&1 |
    grep -o 'Collected : [0-9]*' | grep -o '[0-9]*$'
}
for v in "f(x), plain" "operator.call(f, x)" "f(x), timed (flat_profile)" "empty(), plain" "empty(), flat_profile"; do
  a="$(count "$v" 0)"
  b="$(count "$v" "$N")"
  printf '%-28s %6d instructions per call\n' "$v" "$(((b - a) / N))"
done
