#!/bin/sh
# SPDX-License-Identifier: MIT
# Every C and C++ file of include/ lib/ tests/ bench/ examples/ fuzz/ is
# laid out as .clang-format says: clang-format --dry-run --Werror finds
# nothing to change (tools/format.sh applies it). The layout depends on
# clang-format's version, so the check needs clang-format 14 (Debian 12's
# clang-format package, which `make test` installs) and skips (exit 77)
# without it. Comments are left to tools/reflow-check.py (the "comments"
# test): clang-format does not reflow them.
#
# Usage: check-format.sh SOURCE_ROOT
#        check-format.sh --self-test SOURCE_ROOT   (proves the check can fail)
set -eu

self=0
if [ "${1:-}" = --self-test ]; then
	self=1
	shift
fi
src=$(cd "$1" && pwd)
. "$src/tools/clang-format.sh"
if ! find_clang_format; then
	echo "format: SKIP: $clang_format_why"
	exit 77
fi

# check ROOT CONFIG: clang-format --dry-run over ROOT's files.
check() {
	files=$(project_c_files "$1")
	[ -n "$files" ] || { echo "format: no files under $1"; return 1; }
	if ! out=$(cd "$1" && "$clang_format" --dry-run --Werror \
		--style=file:"$2" $files 2>&1); then
		echo "$out" | head -n 60
		echo "format: clang-format would change $(echo "$out" |
			grep -c 'clang-format-violations') place(s) (the first" \
			"60 lines above); run tools/format.sh"
		return 1
	fi
	echo "format: $(echo "$files" | wc -w) files laid out as" \
		".clang-format says ($clang_format)"
}

if [ $self -eq 0 ]; then
	check "$src" "$src/.clang-format"
	exit
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/lib"
fail=0
# The project's layout, by hand: .clang-format must leave it alone.
cat >"$tmp/lib/good.c" <<'EOF'
/* The kernel's layout, as the project writes it. */
#include <stdint.h>

#define GOOD_SHIFT 4 /* a trailing comment */

struct good {
	uint64_t word;
	const char *name;
};

static const unsigned int good_table[] = {1, 2, 3};

static int good_fold(const struct good *g, uint64_t mask, uint64_t value,
		     int flags)
{
	int n = 0;

	for (int i = 0; i < 3; i++) {
		if (g->word & mask)
			n++;
		else
			n--;
	}
	switch (flags) {
	case 0:
		return n;
	default:
		break;
	}
	return (int)((value >> GOOD_SHIFT) & good_table[0]) + n +
	       (flags ? 1 : 0);
}
EOF
if ! (check "$tmp" "$src/.clang-format") >"$tmp/out" 2>&1; then
	echo "self-test: the kernel-style file is not .clang-format's layout:"
	cat "$tmp/out"
	fail=1
fi
# Each of these breaks one rule of that layout, and the check must fail:
# a function's brace on its own line, tabs, "} else", "char *p", spaces
# around binary operators, 80 columns, continuations aligned to the open
# parenthesis.
i=0
while IFS= read -r bad; do
	i=$((i + 1))
	rm -f "$tmp/lib/bad"*.c
	printf '%b\n' "$bad" >"$tmp/lib/bad$i.c"
	if (check "$tmp" "$src/.clang-format") >"$tmp/out" 2>&1 ||
		! grep -q "bad$i.c" "$tmp/out"; then
		echo "self-test: the check passed a misformatted file:"
		cat "$tmp/lib/bad$i.c"
		fail=1
	fi
done <<'EOF'
int f(void) {\n\treturn 0;\n}
int f(void)\n{\n    return 0;\n}
int f(void)\n{\n\tif (x) {\n\t\treturn 0;\n\t}\n\telse\n\t\treturn 1;\n}
char* p;
int f(int a, int b)\n{\n\treturn a+b;\n}
int g(void)\n{\n\treturn a_long_function_name(first_argument, second_argument, third_ones);\n}
int g(void)\n{\n\treturn long_function_name(first_argument,\n\t\tsecond);\n}
EOF
rm -f "$tmp/lib/bad"*.c
if [ $fail -eq 0 ]; then
	echo "format self-test: passed ($i misformatted files caught)"
fi
exit $fail
