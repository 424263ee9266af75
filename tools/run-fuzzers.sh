#!/bin/sh
# SPDX-License-Identifier: MIT
# Run every libFuzzer target of a build directory for a bounded time.
# Usage: run-fuzzers.sh BUILDDIR [SECONDS_PER_TARGET]
# Each target starts from the committed seeds (fuzz/corpus/<target>/) plus
# what earlier runs found (BUILDDIR/corpus/<target>/). Crashes are written to
# BUILDDIR/crashes/<target>/; copy one to fuzz/regressions/<target>/ to make
# it a regression test that `make test` replays.
set -eu
build=$1
seconds=${2:-60}
src=$(cd "$(dirname "$0")/.." && pwd)
status=0
# UBSan stops at its first report, so libFuzzer keeps the input.
UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
export UBSAN_OPTIONS
for exe in "$build"/fuzz/fuzz-*; do
	[ -f "$exe" ] && [ -x "$exe" ] || continue
	t=${exe##*/fuzz-}
	corpus="$build/corpus/$t"
	crashes="$build/crashes/$t"
	mkdir -p "$corpus" "$crashes"
	[ -d "$src/fuzz/corpus/$t" ] && cp -n "$src/fuzz/corpus/$t"/* "$corpus"/ 2>/dev/null || true
	echo "=== fuzz-$t: ${seconds}s"
	if "$exe" -max_total_time="$seconds" -max_len=4096 -print_final_stats=1 \
		-artifact_prefix="$crashes/" "$corpus" >"$build/fuzz-$t.log" 2>&1; then
		grep -E '^stat::(number_of_executed_units|peak_rss_mb)' "$build/fuzz-$t.log" || true
		echo "fuzz-$t: no crash ($(ls "$corpus" | wc -l) corpus units)"
	else
		status=1
		tail -n 30 "$build/fuzz-$t.log"
		echo "fuzz-$t: CRASH, input kept in $crashes/"
	fi
done
exit $status
