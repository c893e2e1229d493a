#!/usr/bin/env bash
# Engine throughput over real code: parse alone, and parse + plan + edit with every function
# selected and every call wrapped, single thread, measured side by side over the same files.
# Target (issue 10): the engine at >= 0.8x the parser's throughput; each run prints the ratio
# and PASS or FAIL. Runs the engine's `throughput` example over the standard library of each
# CPython 3.11, 3.12 and 3.13 found.
#
#   bash benchmarks/engine_throughput.sh [ROUNDS]     (best of ROUNDS, default 5)
source "$(dirname "$0")/../scripts/pythons.sh"
cd "$ROOT"

rounds="${1:-5}"
pythons="$(find_pythons)"
if [ -z "$pythons" ]; then
  echo "no CPython 3.11, 3.12 or 3.13 found" >&2
  exit 1
fi
while read -r v py; do
  stdlib="$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')"
  echo "== CPython $v standard library ($stdlib)"
  cargo run --release -q -p callweave_engine --example throughput -- "$stdlib" "$rounds"
done <<< "$pythons"
