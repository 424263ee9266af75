#!/bin/sh
# SPDX-License-Identifier: MIT
# Run every benchmark program of a build directory, in order, and print
# their reports. Usage: run-benchmarks.sh BUILDDIR [bench options...]
set -eu
build=$1
shift
status=0
for b in "$build"/bench/bench-*; do
	[ -f "$b" ] && [ -x "$b" ] || continue
	echo
	echo "=== $(basename "$b") ==="
	"$b" "$@" || status=1
done
exit $status
