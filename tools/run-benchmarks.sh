#!/bin/sh
# SPDX-License-Identifier: MIT
# Run every benchmark program of a build directory, then write the report.
# Usage: run-benchmarks.sh BUILDDIR [bench options...]
#   Each program writes JSON lines to BUILDDIR/bench-results/<name>.jsonl,
#   with one progress line per result on stderr. tools/bench-report.py then
#   writes bench/report.md and bench/plots/*.png and prints the report.
#   For a program's own text output run it directly, for example
#   BUILDDIR/bench/bench-page --quick.
set -eu
build=$1
shift
src=$(cd "$(dirname "$0")/.." && pwd)
results="$build/bench-results"
mkdir -p "$results"
rm -f "$results"/*.jsonl
status=0
for b in "$build"/bench/bench-*; do
	[ -f "$b" ] && [ -x "$b" ] || continue
	name=${b##*/bench-}
	echo "=== bench-$name" >&2
	"$b" --format json "$@" >"$results/$name.jsonl" || status=1
done
python3 "$src/tools/bench-report.py" "$results" "$src/bench" || status=1
exit $status
