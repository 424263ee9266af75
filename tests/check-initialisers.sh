#!/bin/sh
# SPDX-License-Identifier: MIT
# Every static initialiser of the public headers (each PS_*_INIT macro but
# compiler.h's shim) is used by the C++ consumer test, so that a new one
# cannot skip the C++11 build. Usage: check-initialisers.sh INCDIR consumer-cxx.cc
set -eu
inc=$1 src=$2
names=$(grep -ho '^#define PS_[A-Z0-9_]*_INIT\b' "$inc"/pagestate/*.h |
	sed 's/^#define //' | grep -v '^PS_ATOMIC_INIT$' | sort -u)
[ -n "$names" ] || { echo "no PS_*_INIT found under $inc"; exit 1; }
missing=""
for n in $names; do
	grep -q "\\b$n\\b" "$src" || missing="$missing $n"
done
if [ -n "$missing" ]; then
	echo "not used by $(basename "$src"):$missing"
	exit 1
fi
# shellcheck disable=SC2086 # one word per name
echo "every initialiser is used by $(basename "$src"):" $names
