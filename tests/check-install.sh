#!/bin/sh
# SPDX-License-Identifier: MIT
# Install into a scratch DESTDIR and build an outside program with
# `pkg-config --static --cflags --libs pagestate` alone, then run it.
# Usage: check-install.sh BUILDDIR consumer.c "CC"
set -eu
build=$1 src=$2 cc=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
meson install -C "$build" --no-rebuild --destdir "$tmp/root" >"$tmp/log" 2>&1 ||
	{ cat "$tmp/log"; exit 1; }
pc=$(find "$tmp/root" -name pagestate.pc | head -n 1)
[ -n "$pc" ] || { echo "pagestate.pc was not installed"; exit 1; }
export PKG_CONFIG_PATH="$(dirname "$pc")"
export PKG_CONFIG_SYSROOT_DIR="$tmp/root"
flags=$(pkg-config --static --cflags --libs pagestate)
echo "pkg-config --static --cflags --libs pagestate: $flags"
# shellcheck disable=SC2086
$cc -std=c11 -Wall -Wextra -pedantic -Werror "$src" -o "$tmp/consumer" $flags
"$tmp/consumer"
