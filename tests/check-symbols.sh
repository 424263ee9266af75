#!/bin/sh
# SPDX-License-Identifier: MIT
# Every symbol the static library defines globally starts with ps_.
# Usage: check-symbols.sh libpagestate.a
set -eu
lib=$1
syms=$(nm -g --defined-only "$lib" | awk 'NF == 3 { print $3 }')
[ -n "$syms" ] || { echo "no symbols found in $lib"; exit 1; }
bad=$(printf '%s\n' "$syms" | grep -v '^ps_' || true)
if [ -n "$bad" ]; then
	echo "symbols without the ps_ prefix:"
	printf '%s\n' "$bad"
	exit 1
fi
echo "$(printf '%s\n' "$syms" | wc -l) exported symbols, all ps_*"
