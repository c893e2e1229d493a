#!/usr/bin/env bash
# Engine throughput in instructions (callgrind; repeatable on a loaded machine, unlike the
# timings of engine_throughput.sh): one parse round (ruff's parser, the tree dropped) against
# one rewrite round (parse + plan + edit, every function selected and every call wrapped) of
# the `throughput` example over the same files, by default the standard library of the first
# CPython found. Prints the ratio with issue 10's target (engine >= 0.8x the parser).
#
#   bash benchmarks/engine_instructions.sh [DIR]
set -euo pipefail
source "$(dirname "$0")/../scripts/pythons.sh"
cd "$ROOT"
command -v valgrind >/dev/null || { echo "valgrind not found (apt-get install valgrind)" >&2; exit 1; }
dir="${1:-}"
if [ -z "$dir" ]; then
  read -r _ py <<< "$(find_pythons | head -1)"
  dir="$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')"
fi
# Symbols for the per-function counts; a target directory of its own keeps the release build's.
CARGO_PROFILE_RELEASE_DEBUG=true cargo build --release -q -p callweave_engine \
  --example throughput --target-dir target/instructions
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
valgrind --tool=callgrind --callgrind-out-file="$out" \
  target/instructions/release/examples/throughput "$dir" 1 >/dev/null 2>&1
callgrind_annotate --inclusive=yes --tree=calling "$out" 2>/dev/null | awk -v dir="$dir" '
  # The callees of the example main: the parse round is parse_module plus the drop of its
  # result, the rewrite round is rewrite().
  /\*  .*throughput::main \[/ { inside = 1; next }
  inside && /^ *$/ { exit }
  inside {
    n = $1; gsub(",", "", n)
    if ($0 ~ /rewrite::rewrite /) rewrite = n
    if ($0 ~ /parse_module /) parse += n
    if ($0 ~ /drop_in_place<core::result::Result<ruff_python_parser::Parsed/) parse += n
  }
  END {
    if (!rewrite || !parse) { print "no counts found in the callgrind output" > "/dev/stderr"; exit 1 }
    r = parse / rewrite
    printf "%s: parse round %.1fM, rewrite round %.1fM instructions\n", dir, parse / 1e6, rewrite / 1e6
    printf "engine / parser = %.3fx  target >= 0.8x  %s\n", r, (r >= 0.8 ? "PASS" : "FAIL")
  }'
