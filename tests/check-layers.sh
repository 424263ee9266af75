#!/bin/sh
# SPDX-License-Identifier: MIT
# No circles between modules. Every file of lib/ and include/ belongs to a
# module, and every module has a layer:
#
#   utilities   compiler.h, config.h; then version.h, fork, hbitmap, rec,
#               failpoint; then rcu; then itree, history
#   page        page.h, lib/page.c
#   pte, seq,   pte.h; seq.h; x86.h, lib/x86.c       (siblings)
#   x86
#   pgtable     pgtable.h, lib/pgtable*
#   notifier    notifier.h, lib/notifier*
#   space       space.h, ledger.h, lib/space*
#   prot, uffd  prot.h, lib/prot*; uffd.h, lib/uffd*, lib/linux-uapi.h
#               (siblings)
#   umbrella    pagestate.h
#
# A file may use its own module and the modules of lower layers, nothing
# else: not a higher layer, not a sibling. This fails when a file of lib/ or
# include/
#   1. has no module (add it to MODULES below);
#   2. includes a header of a higher layer or a sibling;
#   3. includes a header private to another module (lib/space-impl.h: the
#      space's struct, for lib/space*.c only; lib/prot-impl.h;
#      lib/pgtable-internal.h);
#   4. names, outside comments and strings, an identifier of a higher layer
#      or a sibling: a function it calls, a type, a macro, found by its
#      prefix (NAMESPACES below: ps_space_, ps__space_, ps_prot_, ...).
# Tests, examples, benchmarks and fuzzers are users, not layers.
#
# Usage: check-layers.sh SOURCE_ROOT
#        check-layers.sh --self-test   (proves each rule can fail)
set -eu

# module rank files (globs, first match wins; tested in this order)
MODULES='
compiler	0	include/pagestate/compiler.h include/pagestate/config.h
version		1	include/pagestate/version.h lib/version.c
rcu		2	lib/rcu.h lib/rcu.c
hbitmap		1	lib/hbitmap.h lib/hbitmap.c
rec		1	lib/rec.h
failpoint	1	lib/failpoint.h lib/failpoint.c
fork		1	include/pagestate/fork.h lib/fork.h lib/fork.c
itree		3	lib/itree.h lib/itree.c lib/itree-*.[ch]
history		3	lib/history.h lib/history.c
page		4	include/pagestate/page.h lib/page.c lib/page-*.[ch]
pte		5	include/pagestate/pte.h lib/pte.c lib/pte-*.[ch]
seq		5	include/pagestate/seq.h lib/seq.c lib/seq-*.[ch]
x86		5	include/pagestate/x86.h lib/x86.c lib/x86-*.[ch]
pgtable		6	include/pagestate/pgtable.h lib/pgtable.c lib/pgtable-*.[ch]
notifier	7	include/pagestate/notifier.h lib/notifier.c lib/notifier-*.[ch]
space		8	include/pagestate/space.h include/pagestate/ledger.h lib/space.c lib/space-*.[ch]
prot		9	include/pagestate/prot.h lib/prot.c lib/prot-*.[ch]
uffd		9	include/pagestate/uffd.h lib/uffd.c lib/uffd-*.[ch] lib/linux-uapi.h
umbrella	10	include/pagestate/pagestate.h
'

# Headers only their own module may include.
PRIVATE='
lib/space-impl.h	space
lib/space-huge.h	space
lib/prot-impl.h	prot
lib/pgtable-internal.h	pgtable
'

# Identifier prefixes and the module that owns them: an identifier is its
# prefix, or starts with the prefix and "_"; the longest prefix wins. The
# installed headers' namespaces come from the naming table at the top of
# include/pagestate/pagestate.h (a header x.h is module x); these are the
# internal utilities'.
NAMESPACES='
ps__rcu rcu
ps__hbm hbitmap
PS__HBM hbitmap
ps__rec rec
ps__itree itree
ps__hist history
'

# The comment and literal stripper both meta checks share.
here=$(cd "$(dirname "$0")" && pwd)
c_scan=$here/c-scan.awk

# Print "FILE<TAB>LINE<TAB>IDENTIFIER" for every identifier outside
# comments and string or character literals, and "FILE<TAB>LINE<TAB>#HEADER"
# for every #include "x" / <pagestate/x> (resolved to a path from the root).
scan() {
	awk -f "$c_scan" -f /dev/stdin "$@" <<-'EOF'
	FNR == 1 { c_incomment = 0; file = FILENAME; dir = file; sub(/\/[^\/]*$/, "", dir) }
	{
		line = $0
		if (!c_incomment && line ~ /^[ \t]*#[ \t]*include[ \t]*[<"]/) {
			h = line
			sub(/^[ \t]*#[ \t]*include[ \t]*/, "", h)
			if (h ~ /^<pagestate\//) {
				sub(/^</, "", h); sub(/>.*/, "", h)
				print file "\t" FNR "\t#include/" h
			} else if (h ~ /^"/) {
				sub(/^"/, "", h); sub(/".*/, "", h)
				print file "\t" FNR "\t#" dir "/" h
			}
			next
		}
		out = c_code(line)
		while (match(out, /[A-Za-z_][A-Za-z0-9_]*/)) {
			print file "\t" FNR "\t" substr(out, RSTART, RLENGTH)
			out = substr(out, RSTART + RLENGTH)
		}
	}
	EOF
}

check() {
	root=$1
	cd "$root"
	files=$(find include lib -name '*.[ch]' 2>/dev/null | sort)
	[ -n "$files" ] || { echo "layers: no files under $root"; return 1; }
	fail=0

	# Each file's module and rank, as "file module rank" lines.
	map=$(for f in $files; do
		echo "$MODULES" | while read -r mod rank globs; do
			[ -n "$mod" ] || continue
			hit=
			for g in $globs; do
				# shellcheck disable=SC2254
				case $f in $g) hit=1 ;; esac
			done
			if [ -n "$hit" ]; then
				echo "$f $mod $rank"
				break
			fi
		done
	done)
	for f in $files; do
		if ! echo "$map" | grep -q "^$f "; then
			echo "$f: no layer: add it to MODULES in tests/check-layers.sh"
			fail=1
		fi
	done

	# The public namespaces: a function prefix with its capital and
	# internal forms, and what else each header owns.
	public=$(awk -f "$here/names-table.awk" include/pagestate/pagestate.h |
		awk '$2 == "fn" || $2 == "own" {
			m = $1; sub(/\.h$/, "", m)
			if (m == "pagestate") m = "umbrella"
			if (m == "ledger") m = "space"	# ledger.h: the space module
			p = $3; sub(/_$/, "", p)
			print p, m
			if ($2 == "fn") {
				q = "ps__" substr(p, 4)
				print q, m; print toupper(p), m; print toupper(q), m
			}
		}')
	[ -n "$public" ] || { echo "layers: no naming table in pagestate.h"; return 1; }

	# shellcheck disable=SC2086
	scan $files | awk -F '\t' -v map="$map" -v private="$PRIVATE" \
		-v namespaces="$NAMESPACES
$public" '
	BEGIN {
		n = split(map, lines, "\n")
		for (i = 1; i <= n; i++) {
			if (split(lines[i], w, " ") == 3) {
				mod[w[1]] = w[2]; rank[w[2]] = w[3]
			}
		}
		n = split(private, lines, "\n")
		for (i = 1; i <= n; i++)
			if (split(lines[i], w, /[ \t]+/) == 2)
				owner[w[1]] = w[2]
		n = split(namespaces, lines, "\n")
		for (i = 1; i <= n; i++)
			if (split(lines[i], w, " ") == 2)
				ns[w[1]] = w[2]
	}
	# The module that owns identifier @id ("" if none): longest prefix.
	function owner_of(id,    p, best, bl) {
		best = ""; bl = 0
		for (p in ns) {
			if ((id == p || index(id, p "_") == 1) && length(p) > bl) {
				best = ns[p]; bl = length(p)
			}
		}
		return best
	}
	function bad(file, line, what, tmod) {
		printf "%s:%s: %s: module %s (layer %s) may not use %s (layer %s)\n",
			file, line, what, mod[file], rank[mod[file]], tmod,
			rank[tmod]
		failed = 1
	}
	!($1 in mod) { next }
	{
		m = mod[$1]
		if (substr($3, 1, 1) == "#") {
			h = substr($3, 2)
			if (!(h in mod))
				next	# a system header
			if ((h in owner) && owner[h] != m) {
				printf "%s:%s: includes %s, private to %s\n",
					$1, $2, h, owner[h]
				failed = 1
			} else if (mod[h] != m && rank[mod[h]] + 0 >= rank[m] + 0) {
				bad($1, $2, "includes " h, mod[h])
			}
			next
		}
		if (!($3 in seen)) {
			seen[$3] = owner_of($3)
		}
		t = seen[$3]
		if (t != "" && t != m && rank[t] + 0 >= rank[m] + 0)
			bad($1, $2, $3, t)
	}
	END { exit failed }
	' || fail=1

	[ $fail -eq 0 ] &&
		echo "layers: $(echo "$files" | wc -w) files use only their own and lower layers"
	return $fail
}

self_test() {
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	mkdir -p "$tmp/include/pagestate" "$tmp/lib"
	cat >"$tmp/include/pagestate/pagestate.h" <<-'EOF'
	/*
	 *   header       functions        types, constants and macros also in
	 *   page.h       ps_page
	 *   space.h      ps_space
	 *   prot.h       ps_prot
	 *   uffd.h       ps_uffd
	 *
	 */
	#include <pagestate/prot.h>
	#include <pagestate/uffd.h>
	EOF
	cat >"$tmp/include/pagestate/page.h" <<-'EOF'
	/* The page word; prot.h and ps_space_map() build on it. */
	struct ps_page { int w; };
	EOF
	cat >"$tmp/include/pagestate/space.h" <<-'EOF'
	#include <pagestate/page.h>
	struct ps_space;
	int ps_space_map(struct ps_space *s, struct ps_page *p);
	EOF
	cat >"$tmp/include/pagestate/prot.h" <<-'EOF'
	#include <pagestate/space.h>
	int ps_prot_kmap(struct ps_space *s);
	EOF
	cat >"$tmp/include/pagestate/uffd.h" <<-'EOF'
	#include <pagestate/space.h>
	int ps_uffd_attach(struct ps_space *s);
	EOF
	cat >"$tmp/lib/space-impl.h" <<-'EOF'
	#include "space-internal.h"
	struct ps_space { int x; };
	EOF
	cat >"$tmp/lib/space-internal.h" <<-'EOF'
	#include <pagestate/space.h>
	void ps__space_writer_lock(struct ps_space *s);
	EOF
	cat >"$tmp/lib/space.c" <<-'EOF'
	#include <pagestate/space.h>
	#include "space-impl.h"
	#include <stdio.h>
	/* Not prot's business: ps_prot_kmap() is above us. */
	// nor ps_uffd_attach()
	int ps_space_map(struct ps_space *s, struct ps_page *p)
	{
		puts("ps_prot_kmap is a string here");
		return s->x + p->w + 'p';
	}
	EOF
	cat >"$tmp/lib/prot.c" <<-'EOF'
	#include <pagestate/prot.h>
	#include "space-internal.h"
	int ps_prot_kmap(struct ps_space *s)
	{
		ps__space_writer_lock(s);
		return ps_space_map(s, 0);
	}
	EOF
	cat >"$tmp/lib/uffd.c" <<-'EOF'
	#include <pagestate/uffd.h>
	int ps_uffd_attach(struct ps_space *s) { return ps_space_map(s, 0); }
	EOF
	if ! (check "$tmp") >"$tmp/out" 2>&1; then
		echo "self-test: a clean tree was refused:"; cat "$tmp/out"
		return 1
	fi
	n=0
	# file|line appended to it
	for v in \
		'lib/space.c|#include <pagestate/prot.h>' \
		'lib/space.c|int f(struct ps_space *s) { return ps_prot_kmap(s); }' \
		'lib/space.c|int ps__prot_space_init(struct ps_space *s);' \
		'include/pagestate/page.h|struct ps_space *ps_page_space(void);' \
		'include/pagestate/space.h|#include <pagestate/uffd.h>' \
		'lib/prot.c|#include "space-impl.h"' \
		'lib/uffd.c|int g(struct ps_space *s) { return ps_prot_kmap(s); }' \
		'lib/prot.c|int h(void) { return PS_UFFD_ASYNC; }' \
		'lib/foo.c|int foo;'; do
		f=${v%%|*}
		mkdir "$tmp/save"
		cp -r "$tmp/include" "$tmp/lib" "$tmp/save/"
		printf '%s\n' "${v#*|}" >>"$tmp/$f"
		if (check "$tmp") >"$tmp/out" 2>&1; then
			echo "self-test: not caught: $f: ${v#*|}"
			return 1
		fi
		rm -rf "${tmp:?}/include" "${tmp:?}/lib"
		mv "$tmp/save/include" "$tmp/save/lib" "$tmp/"
		rmdir "$tmp/save"
		n=$((n + 1))
	done
	if ! (check "$tmp") >"$tmp/out" 2>&1; then
		echo "self-test: the restored tree was refused:"; cat "$tmp/out"
		return 1
	fi
	echo "self-test: clean tree accepted, $n violations refused"
}

if [ "${1:-}" = "--self-test" ]; then
	self_test
else
	check "${1:?usage: check-layers.sh SOURCE_ROOT | --self-test}"
fi
