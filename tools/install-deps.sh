#!/bin/sh
# SPDX-License-Identifier: MIT
# Install the Debian packages a make target uses, when they are missing.
# Usage: install-deps.sh all|install|test|bench|fuzz|format
#   install  `make install`: the library, headers, .pc and man pages
#   all      `make`: the development build (library, tests, examples,
#            benchmarks; C++ for the C++ tests)
#   test     `make test`: `make`'s, plus the sanitizer runtimes, clang
#            for the fuzz smoke build and clang-format (14, Debian 12's)
#            for the layout check
#   format   `make format`: clang-format
#   bench    `make bench`: the release build, Concurrency Kit (the
#            ck_sequence peer), gnuplot (the report's plots)
#   fuzz     `make fuzz`: clang and its libFuzzer runtime
# Runs apt-get (after `apt-get update`) only if something is missing; needs
# root or sudo then. Prints what it installs. meson needs python3, which
# also runs tools/*.py (man pages, checks, the benchmark report). Packages
# are installed without their recommendations, so each list names what it
# needs itself: gcc only recommends the C library's headers (libc6-dev).
set -eu
what=${1:-all}

install="make meson ninja-build pkg-config gcc libc6-dev python3 liburcu-dev"
all="$install check g++"
test="$all libasan8 libubsan1 libtsan2 clang libclang-rt-14-dev clang-format"
bench="$install libck-dev gnuplot-nox"
format="clang-format"
fuzz="$install clang libclang-rt-14-dev"
case $what in
install) pkgs=$install ;;
all|build) pkgs=$all ;;
test) pkgs=$test ;;
bench) pkgs=$bench ;;
fuzz) pkgs=$fuzz ;;
format) pkgs=$format ;;
*) echo "install-deps.sh: unknown target $what" >&2; exit 2 ;;
esac

missing=""
for p in $pkgs; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null |
		grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done
[ -n "$missing" ] || exit 0

echo "installing Debian packages:$missing"
if [ "$(id -u)" -eq 0 ]; then
	sudo=""
elif command -v sudo >/dev/null 2>&1; then
	sudo="sudo"
else
	echo "missing packages:$missing; run as root or install them" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# shellcheck disable=SC2086
$sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
