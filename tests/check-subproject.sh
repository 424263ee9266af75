#!/bin/sh
# SPDX-License-Identifier: MIT
# docs/building.md's subproject recipe works: a small meson project with
# this tree at subprojects/libpagestate (a symlink: no copy, no network)
# finds it with dependency('pagestate', fallback : [...]), and once the
# subproject is configured a plain dependency('pagestate') resolves to it
# (meson.override_dependency). tests/consumer.c is built that way and run.
# Usage: check-subproject.sh SRCDIR
set -eu
src=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/app/subprojects"
ln -s "$src" "$tmp/app/subprojects/libpagestate"
cp "$src/tests/consumer.c" "$tmp/app/app.c"
cat >"$tmp/app/meson.build" <<'MESON'
project('app', 'c', default_options : ['c_std=c11', 'warning_level=3',
  'werror=true'])
pagestate_dep = dependency('pagestate',
  fallback : ['libpagestate', 'pagestate_dep'],
  default_options : ['default_library=static', 'tests=disabled',
    'bench=false', 'examples=false', 'man=false'])
# The override: no fallback needed any more, the same dependency comes back.
again = dependency('pagestate')
executable('app', 'app.c', dependencies : [pagestate_dep, again])
MESON
# --force-fallback-for: the subproject even where pagestate is installed;
# nodownload: nothing may be fetched.
if ! meson setup "$tmp/build" "$tmp/app" --buildtype=debug \
	--wrap-mode=nodownload --force-fallback-for=pagestate \
	>"$tmp/log" 2>&1; then
	cat "$tmp/log"
	exit 1
fi
grep -q "Executing subproject libpagestate" "$tmp/log" ||
	{ cat "$tmp/log"; echo "the subproject was not used"; exit 1; }
meson compile -C "$tmp/build" >"$tmp/log" 2>&1 || { cat "$tmp/log"; exit 1; }
"$tmp/build/app"
echo "subproject recipe: built and ran tests/consumer.c"
