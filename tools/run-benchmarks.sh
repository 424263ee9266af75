#!/bin/sh
# SPDX-License-Identifier: MIT
# Run every benchmark program of a build directory, then again linked with
# the shared library, then write the report.
# Usage: run-benchmarks.sh BUILDDIR [bench options...]
#   Each program writes JSON lines to BUILDDIR/bench-results/<name>.jsonl,
#   with one progress line per result on stderr. Then the same programs,
#   built in BUILDDIR-shared (set up here with BUILDDIR's options and
#   -Ddefault_library=shared if it does not exist, and compiled), run linked
#   with libpagestate.so and write BUILDDIR-shared/bench-results/.
#   tools/bench-report.py then writes bench/report.md (with a second targets
#   table for the shared library) and bench/plots/*.png and prints the
#   report.
#   BENCH_SHARED=0 skips the shared-library run; BENCH_SHARED_DIR names
#   another directory for it.
#   For a program's own text output run it directly, for example
#   BUILDDIR/bench/bench-page --quick.
set -eu
build=$1
shift
src=$(cd "$(dirname "$0")/.." && pwd)
shared=${BENCH_SHARED_DIR:-$build-shared}
status=0

# run_all DIR [bench options...]: every bench program of DIR, into
# DIR/bench-results.
run_all() {
	dir=$1
	shift
	results="$dir/bench-results"
	mkdir -p "$results"
	rm -f "$results"/*.jsonl
	for b in "$dir"/bench/bench-*; do
		[ -f "$b" ] && [ -x "$b" ] || continue
		name=${b##*/bench-}
		echo "=== bench-$name ($dir)" >&2
		"$b" --format json "$@" >"$results/$name.jsonl" || status=1
	done
}

# The options of BUILDDIR that decide what the programs measure, for the
# shared build: the same build type, RCU TLS model and peers.
shared_setup() {
	opts=$(meson introspect "$build" --buildoptions | python3 -c '
import json, sys
o = {x["name"]: x["value"] for x in json.load(sys.stdin)}
v = lambda x: str(x).lower() if isinstance(x, bool) else str(x)
print(" ".join("-D%s=%s" % (k, v(o[k])) for k in
               ("buildtype", "rcu_tls", "ck", "uffd", "b_lto") if k in o))')
	# shellcheck disable=SC2086 # one word per option
	meson setup "$shared" "$src" $opts -Ddefault_library=shared \
		-Dtests=disabled -Dman=false -Dexamples=false >&2
}

run_all "$build" "$@"
shared_args=
if [ "${BENCH_SHARED:-1}" != 0 ]; then
	if [ ! -f "$shared/build.ninja" ]; then
		shared_setup || status=1
	fi
	if meson compile -C "$shared" >&2; then
		run_all "$shared" "$@"
		shared_args="$shared/bench-results"
	else
		status=1
	fi
fi
# shellcheck disable=SC2086 # empty when the shared run was skipped
python3 "$src/tools/bench-report.py" "$build/bench-results" "$src/bench" \
	$shared_args || status=1
exit $status
