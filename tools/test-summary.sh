#!/bin/sh
# SPDX-License-Identifier: MIT
# Sum meson's per-build test summaries into the last lines of `make test`.
# Usage: test-summary.sh BUILDDIR...
set -eu
total_ok=0 total_fail=0 total_skip=0 total_timeout=0
echo
echo "=== make test summary ==="
for b in "$@"; do
	log="$b/meson-logs/testlog.txt"
	[ -f "$log" ] || { echo "$b: no test log"; total_fail=$((total_fail + 1)); continue; }
	ok=$(grep -E '^Ok:' "$log" | tail -n 1 | awk '{print $2}')
	fail=$(grep -E '^Fail:' "$log" | tail -n 1 | awk '{print $2}')
	skip=$(grep -E '^Skipped:' "$log" | tail -n 1 | awk '{print $2}')
	tmo=$(grep -E '^Timeout:' "$log" | tail -n 1 | awk '{print $2}')
	checks=$(grep -oE 'Checks: [0-9]+' "$log" | awk '{s += $2} END {print s + 0}')
	printf '%-14s ok %3s  fail %s  skipped %s  timeout %s  (%s Check tests)\n' \
		"$b" "${ok:-0}" "${fail:-0}" "${skip:-0}" "${tmo:-0}" "$checks"
	total_ok=$((total_ok + ${ok:-0}))
	total_fail=$((total_fail + ${fail:-0}))
	total_skip=$((total_skip + ${skip:-0}))
	total_timeout=$((total_timeout + ${tmo:-0}))
done
echo "Ok: $total_ok  Fail: $total_fail  Skipped: $total_skip  Timeout: $total_timeout"
[ "$total_fail" -eq 0 ] && [ "$total_timeout" -eq 0 ]
