#!/bin/sh
# SPDX-License-Identifier: MIT
# Every public header compiles alone: as C11 and C17 with
# -Wall -Wextra -pedantic -Werror, and from C++ (C++11, C++14, C++17 and
# C++23 when the compiler has them). GENINC holds the generated headers
# (pagestate/config.h). Usage: check-headers.sh INCDIR GENINC "CC" ["CXX"]
set -eu
inc=$1 gen=$2 cc=$3 cxx=${4:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
n=0
for h in "$inc"/pagestate/*.h "$gen"/pagestate/*.h; do
	name=$(basename "$h")
	printf '#include <pagestate/%s>\n#include <pagestate/%s>\nint ps_header_check_%s;\n' \
		"$name" "$name" "$(echo "$name" | tr -c 'a-z0-9\n' _)" >"$tmp/t.c"
	for std in c11 c17; do
		n=$((n + 1))
		if ! $cc -std=$std -Wall -Wextra -pedantic -Werror -Wshadow \
			-Wstrict-prototypes -Wmissing-prototypes -I"$inc" -I"$gen" \
			-c "$tmp/t.c" -o "$tmp/t.o" 2>"$tmp/err"; then
			echo "FAIL: $name as $std"; cat "$tmp/err"; fail=1
		fi
	done
	if [ -n "$cxx" ]; then
		cp "$tmp/t.c" "$tmp/t.cc"
		for std in c++11 c++14 c++17 c++23; do
			if ! $cxx -std=$std -fsyntax-only -x c++ /dev/null 2>/dev/null; then
				continue
			fi
			n=$((n + 1))
			if ! $cxx -std=$std -Wall -Wextra -pedantic -Werror \
				-I"$inc" -I"$gen" -c "$tmp/t.cc" -o "$tmp/t.o" 2>"$tmp/err"; then
				echo "FAIL: $name as $std"; cat "$tmp/err"; fail=1
			fi
		done
	fi
done
[ -n "$cxx" ] || echo "note: no C++ compiler, C++ checks skipped"
echo "$n header compilations"
exit $fail
