#!/bin/sh
# SPDX-License-Identifier: MIT
# The names a library gives its users:
#   - an archive (.a): every symbol it defines globally starts with ps_
#     (internal ones with ps__: the objects share them);
#   - a shared library (.so*): every dynamic symbol it exports starts with
#     ps_, and none with ps__ (internal names stay inside).
# Usage: check-symbols.sh libpagestate.a|libpagestate.so
set -eu
lib=$1
case $lib in
*.a)
	syms=$(nm -g --defined-only "$lib" | awk 'NF == 3 { print $3 }')
	what="global symbols of the archive"
	;;
*)
	# Type A: the version node (LIBPAGESTATE_0.x), not a symbol of code.
	syms=$(nm -D --defined-only "$lib" |
		awk 'NF == 3 && $2 != "A" { sub(/@.*/, "", $3); print $3 }')
	what="exported dynamic symbols"
	;;
esac
[ -n "$syms" ] || { echo "no symbols found in $lib"; exit 1; }
bad=$(printf '%s\n' "$syms" | grep -v '^ps_' || true)
if [ -n "$bad" ]; then
	echo "symbols without the ps_ prefix:"
	printf '%s\n' "$bad"
	exit 1
fi
case $lib in
*.a) ;;
*)
	internal=$(printf '%s\n' "$syms" | grep '^ps__' || true)
	if [ -n "$internal" ]; then
		echo "internal ps__ symbols exported:"
		printf '%s\n' "$internal"
		exit 1
	fi
	;;
esac
echo "$(printf '%s\n' "$syms" | wc -l) $what, all ps_*$(case $lib in *.a) ;; *) echo ', no ps__*' ;; esac)"
