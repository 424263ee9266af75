#!/bin/sh
# SPDX-License-Identifier: MIT
# Lay out the project's C and C++ files with .clang-format, in place.
# Usage: tools/format.sh [FILE...]   (default: every C/C++ file of include/
#                                     lib/ tests/ bench/ examples/ fuzz/)
# Needs clang-format 14 (Debian 12's clang-format package): another version
# lays some lines out differently from what tests/check-format.sh expects,
# so this refuses to run with one. Set CLANG_FORMAT to pick the binary.
# clang-format leaves comments alone (ReflowComments is off); after
# editing a comment, run tools/reflow-check.py --root . (or --fix FILE).
set -eu
cd "$(dirname "$0")/.."
. tools/clang-format.sh
if ! find_clang_format; then
	echo "format.sh: $clang_format_why" >&2
	exit 1
fi
if [ $# -eq 0 ]; then
	set -- $(project_c_files .)
fi
"$clang_format" -i --style=file:.clang-format "$@"
