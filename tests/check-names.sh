#!/bin/sh
# SPDX-License-Identifier: MIT
# Names say where things live. The rule and its table are at the top of
# include/pagestate/pagestate.h: a function's prefix names its header, and
# a header's types, enum constants and macros carry that prefix or a
# namespace the table gives the header. This fails when
#   1. an installed header has no row in the table, or a row names no
#      header;
#   2. a namespace belongs to two headers (a function prefix ps_x counts
#      with its capital and internal forms PS_X, ps__x, PS__X; a namespace
#      N covers N and N_*, so one inside another counts too);
#   3. a function a header declares or defines lacks the header's function
#      prefixes (or their internal form ps__x_);
#   4. a type, enum constant or macro of a header is outside its namespaces
#      (its include guard PAGESTATE_<NAME>_H excepted).
# Usage: check-names.sh SOURCE_ROOT
#        check-names.sh --self-test   (proves each rule can fail)
set -eu

here=$(cd "$(dirname "$0")" && pwd)

check() {
	root=$1
	cd "$root/include/pagestate"
	table=$(awk -f "$here/names-table.awk" pagestate.h)
	[ -n "$table" ] || { echo "names: no table in pagestate.h"; return 1; }
	headers=$(find . -maxdepth 1 -name '*.h' | sed 's|^\./||' | sort)
	# shellcheck disable=SC2086
	awk -f "$here/c-scan.awk" -f "$here/c-decls.awk" $headers |
	awk -F '\t' -v table="$table" -v headers="$headers" '
	function up(s) { return toupper(s) }
	function covers(name, stem) {
		return name == stem || index(name, stem "_") == 1
	}
	function add(h, stem, fn) {
		if ((stem in owner) && owner[stem] != h) {
			printf "namespace %s belongs to %s and %s\n", stem,
				owner[stem], h
			failed = 1
		}
		owner[stem] = h
		nstem[h]++
		stems[h, nstem[h]] = stem
		if (fn) {
			nfn[h]++
			fns[h, nfn[h]] = stem
		}
	}
	BEGIN {
		n = split(table, lines, "\n")
		for (i = 1; i <= n; i++) {
			split(lines[i], w, " ")
			h = w[1]
			if (w[2] == "row") {
				row[h] = 1
			} else if (w[2] == "fn") {
				p = w[3]; sub(/_$/, "", p)
				q = "ps__" substr(p, 4)
				add(h, p, 1); add(h, q, 1)
				add(h, up(p), 0); add(h, up(q), 0)
			} else if (w[2] == "own") {
				p = w[3]; sub(/_$/, "", p)
				add(h, p, 0)
			}
		}
		for (a in owner)
			for (b in owner)
				if (a != b && owner[a] != owner[b] &&
				    index(b, a "_") == 1) {
					printf "namespace %s (%s) holds %s (%s)\n",
						a, owner[a], b, owner[b]
					failed = 1
				}
		n = split(headers, hs, "\n")
		for (i = 1; i <= n; i++) {
			present[hs[i]] = 1
			if (!(hs[i] in row)) {
				printf "%s: no row in the naming table of pagestate.h\n", hs[i]
				failed = 1
			}
		}
		for (h in row)
			if (!(h in present)) {
				printf "pagestate.h: the naming table names %s, which does not exist\n", h
				failed = 1
			}
	}
	{
		h = $1; kind = $3; name = $4
		ok = 0
		if (kind == "func") {
			for (i = 1; i <= nfn[h]; i++)
				if (covers(name, fns[h, i]))
					ok = 1
		} else {
			guard = h; sub(/\.h$/, "", guard)
			if (name == "PAGESTATE_" up(guard) "_H")
				ok = 1
			for (i = 1; i <= nstem[h]; i++)
				if (covers(name, stems[h, i]))
					ok = 1
		}
		if (!ok) {
			printf "%s:%s: %s %s is outside %s'"'"'s names (pagestate.h)\n",
				h, $2, kind, name, h
			failed = 1
		}
		count++
	}
	END {
		if (!failed)
			printf "names: %d declarations in %d headers carry their header'"'"'s names\n",
				count, split(headers, hs, "\n")
		exit failed
	}'
}

self_test() {
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	inc=$tmp/include/pagestate
	mkdir -p "$inc"
	table=' *   header       functions        types, constants and macros also in
 *   page.h       ps_page          ps_cache_mode PS_CACHE
 *   space.h      ps_space         PS_MAP ps_writeback
 *   pagestate.h  -
 *'
	printf '/*\n * Names.\n *\n%s\n */\n#ifndef PAGESTATE_PAGESTATE_H\n#define PAGESTATE_PAGESTATE_H\n#endif\n' \
		"$table" >"$inc/pagestate.h"
	cat >"$inc/page.h" <<-'EOF'
	#ifndef PAGESTATE_PAGE_H
	#define PAGESTATE_PAGE_H
	/* ps_space_map() is not declared here: comments do not count. */
	#define PS_PAGE_DIRTY 1u
	#define PS_PAGE_INIT(r) \
		{ r }
	enum ps_cache_mode { PS_CACHE_WB, PS_CACHE_WC = 1, };
	struct ps_page { unsigned long word; };
	typedef void (*ps_page_hook_t)(const struct ps_page *p, int why);
	enum ps__page_verdict { PS__PAGE_OK };
	static inline enum ps_cache_mode
	ps_page_cache_mode(const struct ps_page *p)
	{
		enum { LOCAL_NAME = 3 };
		int other_name = LOCAL_NAME;
		return other_name ? PS_CACHE_WB : PS_CACHE_WC;
	}
	int ps__page_slow(struct ps_page *p);
	const char *ps_page_name(enum ps_cache_mode m);
	#endif
	EOF
	cat >"$inc/space.h" <<-'EOF'
	#include <pagestate/page.h>
	struct ps_space;
	#define PS_MAP_WRITE 1u
	typedef int (*ps_writeback_fn)(void *ctx, struct ps_page *p);
	struct ps_space_config { int size; };
	int ps_space_map(struct ps_space *s, const char *why);
	EOF
	if ! (check "$tmp") >"$tmp/out" 2>&1; then
		echo "self-test: a clean tree was refused:"; cat "$tmp/out"
		return 1
	fi
	n=0
	for v in \
		'page.h|int ps_space_thing(void);' \
		'page.h|#define PS_MAP_FOO 1' \
		'space.h|struct ps_page_extra { int x; };' \
		'space.h|enum { PS_FOO = 1 };' \
		'space.h|typedef unsigned long space_word_t;' \
		'space.h|static inline int helper(void) { return 0; }' \
		'extra.h|int ps_extra(void);' \
		'pagestate.h| *   page.h       ps_page          PS_MAP'; do
		f=${v%%|*}
		cp -r "$inc" "$tmp/save"
		if [ "$f" = pagestate.h ]; then
			# A second owner of PS_MAP: a row before the table's end.
			awk -v row="${v#*|}" '/^ \*   pagestate\.h/ { print row } { print }' \
				"$tmp/save/pagestate.h" >"$inc/pagestate.h"
		else
			printf '%s\n' "${v#*|}" >>"$inc/$f"
		fi
		if (check "$tmp") >"$tmp/out" 2>&1; then
			echo "self-test: not caught: $f: ${v#*|}"
			return 1
		fi
		rm -rf "$inc"
		mv "$tmp/save" "$inc"
		n=$((n + 1))
	done
	echo "self-test: clean tree accepted, $n violations refused"
}

if [ "${1:-}" = "--self-test" ]; then
	self_test
else
	check "${1:?usage: check-names.sh SOURCE_ROOT | --self-test}"
fi
