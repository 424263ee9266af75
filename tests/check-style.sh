#!/bin/sh
# SPDX-License-Identifier: MIT
# Mechanical checks of the project's atomics habits in include/ and lib/:
#   1. one vocabulary: C11 <stdatomic.h> only, no __sync_/__atomic_ builtins,
#      no volatile for synchronisation;
#   2. every atomic names its memory order (the *_explicit forms);
#   3. every memory order and fence is justified by a comment just above it
#      (one naming the order or its partner: "Relaxed: ...", "Acquire:
#      pairs with ...").
# Usage: check-style.sh SOURCE_ROOT
set -eu
root=$1
cd "$root"
fail=0
files=$(find include lib -name '*.[ch]' ! -name compiler.h | sort)

bad=$(grep -nE '__sync_|__atomic_|\bvolatile\b' $files || true)
if [ -n "$bad" ]; then
	echo "forbidden atomics vocabulary:"; echo "$bad"; fail=1
fi

bad=$(grep -nE '\batomic_(load|store|exchange|fetch_(add|sub|or|and|xor)|compare_exchange_(weak|strong))[[:space:]]*\(' $files || true)
if [ -n "$bad" ]; then
	echo "atomics without an explicit memory order:"; echo "$bad"; fail=1
fi

for f in $files; do
	awk -v file="$f" '
	# A justification names the order or its partner, in any case:
	# "Relaxed: ...", "S0 - release: ...", "pairs with ...".
	function justifies(line) {
		return tolower(line) ~ /(relaxed|acquire|release|acq_rel|seq_cst|ordering|pairs with)([^a-z_]|$)/
	}
	/^[[:space:]]*(\/\*|\*|\/\/)/ {
		if (justifies($0))
			last = NR
		next
	}
	/memory_order_(relaxed|acquire|release|acq_rel|seq_cst)|atomic_thread_fence/ {
		if ($0 ~ /\/\*|\/\//  && justifies($0))
			last = NR
		if (!last || NR - last > 12) {
			printf "%s:%d: memory order without a justifying comment above it\n", file, NR
			bad = 1
		}
	}
	END { exit bad }
	' "$f" || fail=1
done

[ $fail -eq 0 ] && echo "style: $(echo "$files" | wc -w) files clean"
exit $fail
