#!/bin/sh
# SPDX-License-Identifier: MIT
# Install the Debian packages a make target needs, when they are missing.
# Usage: install-deps.sh build|test|bench|fuzz
# Runs apt-get (after `apt-get update`) only if something is missing; needs
# root or sudo then. Prints what it installs.
set -eu
what=${1:-build}

build="make meson ninja-build pkg-config gcc g++ liburcu-dev"
test="$build check libasan8 libubsan1 libtsan2 clang libclang-rt-14-dev"
bench="$build libck-dev python3 gnuplot-nox"
fuzz="$build clang libclang-rt-14-dev"
case $what in
build) pkgs=$build ;;
test) pkgs=$test ;;
bench) pkgs=$bench ;;
fuzz) pkgs=$fuzz ;;
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
