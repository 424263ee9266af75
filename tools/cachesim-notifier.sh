#!/bin/sh
# SPDX-License-Identifier: MIT
# Instructions and cache misses per notifier invalidation (start + end),
# from callgrind's cache simulator: the evidence for issue 14's "an
# invalidation adds at most two cache misses from 1,000 to 100,000
# subscriptions", which timings on a shared machine cannot give.
#
# Usage: cachesim-notifier.sh BUILDDIR [COUNT...]   (default 1000 100000)
#   BUILDDIR holds bench/bench-notifier (a release build with -g is best).
#   ITERS (default 200000) invalidations are measured after a warm-up
#   (docs/notifier.md's table is from the default).
#   The caches simulated are this machine's kind (AMD EPYC): D1 32 KiB
#   8-way, and the last level either its 512 KiB L2 (LL=l2, the default:
#   the level whose misses grow with the subscriptions) or its 32 MiB L3
#   (LL=l3). Valgrind's own guess here is a 256 MiB direct-mapped LL,
#   which counts only cold misses.
# Output: one line per count, per invalidation: Ir, D1 misses (reads +
# writes), LL misses; with VERBOSE=1 also the functions with the most D1
# misses.
set -eu
build=$1
shift
[ $# -gt 0 ] || set -- 1000 100000
iters=${ITERS:-200000}
case ${LL:-l2} in
l2) ll=524288,8,64 ;;
l3) ll=33554432,16,64 ;;
*) ll=$LL ;;
esac
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf '# D1 32768,8,64; LL %s; %s invalidations measured\n' "$ll" "$iters"
for n in "$@"; do
	out="$tmp/cg.$n"
	valgrind --tool=callgrind --cache-sim=yes --D1=32768,8,64 --LL="$ll" \
		--I1=32768,8,64 --toggle-collect=cachesim_measured \
		--callgrind-out-file="$out" \
		"$build/bench/bench-notifier" --cachesim "$n" --iters "$iters" \
		>/dev/null 2>"$tmp/log.$n"
	callgrind_annotate --inclusive=no "$out" >"$tmp/ann.$n" 2>/dev/null
	# events: Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw
	awk -v n="$n" -v it="$iters" '
		/^events:/ { for (i = 2; i <= NF; i++) ev[$i] = i - 1 }
		/^summary:/ {
			for (i = 2; i <= NF; i++) v[i - 1] = $i
			printf "n=%-7s Ir %7.1f  D1 miss %5.2f (rd %5.2f)  " \
				"LL miss %5.2f (rd %5.2f)\n", n,
				v[ev["Ir"]] / it,
				(v[ev["D1mr"]] + v[ev["D1mw"]]) / it,
				v[ev["D1mr"]] / it,
				(v[ev["DLmr"]] + v[ev["DLmw"]]) / it,
				v[ev["DLmr"]] / it
		}' "$out"
	if [ -n "${VERBOSE:-}" ]; then
		callgrind_annotate --inclusive=no --sort=D1mr,DLmr,Ir "$out" \
			2>/dev/null | sed -n '/^-* *$/,$p' | head -30
	fi
done
