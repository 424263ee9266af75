#!/bin/sh
# SPDX-License-Identifier: MIT
# Compare the benchmarks of two or more git revisions on this machine.
# Usage: bench-compare.sh [options] REV REV... [-- bench options...]
#   A REV is any git revision, or LABEL=REV to print LABEL for it.
#   -r N        rounds (default 5): in each round every program runs once per
#               revision, revision by revision, the order of the revisions
#               rotating from round to round
#   -p "LIST"   programs, without the bench- prefix (default
#               "page pgtable notifier space prot")
#   -o FILE     also write the markdown report to FILE
#   -t F        regression threshold (default 1.05): a case is a regression
#               when every round's ratio new/old is above F
#   -w DIR      work directory (default /tmp/bench-compare); each revision
#               is exported there with git archive into DIR/<hash>/src and
#               built in release mode in DIR/<hash>/build, both kept for
#               the next comparison
#   Bench options after -- go to every program (default --quick).
# Each revision is configured as tools/run-benchmarks.sh's build-release
# is (make bench): --buildtype=release -Dtests=disabled, with -Dman=false
# and -Dck=enabled where the revision has those options, and without the
# examples. Results of each program run go to
# DIR/results-<stamp>/<hash>/<program>.<round>.jsonl, then
# tools/bench-compare.py prints, per case that exists in both revisions of
# a pair (matched by program, group, op and implementation), each
# revision's median of its round medians, the ratio new/old with min..max
# over the rounds, and a verdict. Pairs: every revision against the first
# and against the one before it.
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
rounds=5
progs="page pgtable notifier space prot"
out=
thr=1.05
work=/tmp/bench-compare
while getopts r:p:o:t:w: opt; do
	case $opt in
	r) rounds=$OPTARG ;;
	p) progs=$OPTARG ;;
	o) out=$OPTARG ;;
	t) thr=$OPTARG ;;
	w) work=$OPTARG ;;
	*) sed -n '3,28p' "$0" >&2; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
revs=
while [ $# -gt 0 ] && [ "$1" != -- ]; do
	revs="$revs $1"
	shift
done
[ $# -gt 0 ] && shift
[ $# -gt 0 ] || set -- --quick
# shellcheck disable=SC2086 # $revs and $hashes: one word per revision
nrev=$(echo $revs | wc -w)
if [ "$nrev" -lt 2 ]; then
	echo "bench-compare.sh: give at least two revisions" >&2
	exit 2
fi

# build REV: export and build REV once; prints its full hash.
build() {
	h=$(git -C "$src" rev-parse --verify "$1^{commit}")
	d="$work/$h"
	if [ ! -d "$d/src" ]; then
		mkdir -p "$d/src.tmp"
		git -C "$src" archive "$h" | tar -x -C "$d/src.tmp"
		mv "$d/src.tmp" "$d/src"
	fi
	if [ ! -f "$d/build/build.ninja" ]; then
		opts="--buildtype=release -Dtests=disabled -Dexamples=false"
		for o in man=false ck=enabled; do
			grep -q "option('${o%%=*}'" "$d/src/meson_options.txt" &&
				opts="$opts -D$o"
		done
		# shellcheck disable=SC2086 # one word per option
		meson setup "$d/build" "$d/src" $opts >&2
	fi
	ninja -C "$d/build" -j "${JOBS:-2}" >&2
	echo "$h"
}

hashes=
for r in $revs; do
	echo "=== building $r" >&2
	hashes="$hashes $(build "${r#*=}")"
done

stamp=$(date -u +%Y%m%dT%H%M%SZ)
res="$work/results-$stamp"
mkdir -p "$res"
i=0
for h in $hashes; do
	i=$((i + 1))
	# shellcheck disable=SC2086
	name=$(echo $revs | cut -d' ' -f$i)
	name=${name%%=*}
	mkdir -p "$res/$h"
	echo "$name" >"$res/$h/name"
	echo "$i" >"$res/$h/order"
done

start=$(date +%s)
round=1
while [ "$round" -le "$rounds" ]; do
	# Rotate the order of the revisions by one each round, so that none
	# always runs first (after another program) or last.
	shift_by=$(((round - 1) % nrev))
	# shellcheck disable=SC2086
	order=$(echo $hashes | tr ' ' '\n' | awk -v s="$shift_by" \
		'{ a[NR] = $0 } END { for (i = 0; i < NR; i++)
			print a[(i + s) % NR + 1] }')
	for p in $progs; do
		for h in $order; do
			b="$work/$h/build/bench/bench-$p"
			if [ ! -x "$b" ]; then
				echo "  round $round: no bench-$p in $h" >&2
				continue
			fi
			echo "  round $round/$rounds: bench-$p ${h%"${h#???????????}"}" >&2
			"$b" --format json "$@" >"$res/$h/$p.$round.jsonl" \
				2>/dev/null || echo "    (exit $?)" >&2
		done
	done
	echo "  round $round done after $(($(date +%s) - start)) s" >&2
	round=$((round + 1))
done

cmd="tools/bench-compare.sh -r $rounds -p \"$progs\" -t $thr$revs -- $*"
if [ -n "$out" ]; then
	python3 "$src/tools/bench-compare.py" --threshold "$thr" \
		--command "$cmd" "$res" | tee "$out"
else
	python3 "$src/tools/bench-compare.py" --threshold "$thr" \
		--command "$cmd" "$res"
fi
