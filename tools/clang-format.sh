# SPDX-License-Identifier: MIT
# Sourced by tools/format.sh and tests/check-format.sh: which clang-format,
# and which files.

# find_clang_format: set clang_format to a clang-format of major version 14
# ($CLANG_FORMAT, else clang-format-14, else clang-format) and return 0; or
# set clang_format_why and return 1.
find_clang_format() {
	clang_format_why=
	for clang_format in ${CLANG_FORMAT:-clang-format-14 clang-format}; do
		command -v "$clang_format" >/dev/null 2>&1 || continue
		v=$("$clang_format" --version 2>/dev/null || true)
		case $v in
		*"clang-format version 14."*) return 0 ;;
		esac
		clang_format_why="$clang_format is not version 14 ($v);"
	done
	clang_format_why="${clang_format_why:+$clang_format_why }no clang-format 14"
	clang_format_why="$clang_format_why found (Debian 12: apt-get install"
	clang_format_why="$clang_format_why clang-format; or set CLANG_FORMAT)"
	return 1
}

# project_c_files ROOT: the C and C++ files clang-format lays out, relative
# to ROOT, sorted.
project_c_files() {
	(cd "$1" && find include lib tests bench examples fuzz -type f \
		\( -name '*.[ch]' -o -name '*.cc' \) | LC_ALL=C sort)
}
