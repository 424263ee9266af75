#!/bin/sh
# SPDX-License-Identifier: MIT
# The page word has one owner: include/pagestate/page.h (inline fast paths)
# and lib/page.c (slow paths). Every other file changes it only through the
# named operations page.h declares. This fails when a file elsewhere
#   1. uses page.h's internals: the CAS core and the other ps__page_*
#      helpers, their PS__PAGE_* verdicts;
#   2. calls an out-of-line slow path (ps_page_*_slow) instead of the
#      inline operation that wraps it;
#   3. touches the word itself (->word or .word of a struct ps_page);
#   4. in lib/ or include/, names PS_PAGE_LOCKED: the bit lock is taken and
#      released only by ps_page_lock()/ps_page_trylock()/ps_page_unlock().
# tests/test-page.c is exempt: it builds raw words to reach boundary states.
#
# Usage: check-page-owner.sh SOURCE_ROOT
#        check-page-owner.sh --self-test   (proves each rule can fail)
set -eu

check() {
	root=$1
	fail=0
	files=$(cd "$root" && find include lib tests bench fuzz examples \
		-name '*.[ch]' 2>/dev/null |
		grep -v -e '^include/pagestate/page\.h$' -e '^lib/page\.c$' \
			-e '^tests/test-page\.c$' | sort)
	[ -n "$files" ] || { echo "page-owner: no files under $root"; return 1; }
	cd "$root"
	bad=$(grep -nE '\bps__page_[a-z_]+|\bPS__PAGE_[A-Z_]+' $files || true)
	if [ -n "$bad" ]; then
		echo "page.h internals used outside page.h/lib/page.c:"
		echo "$bad"; fail=1
	fi
	bad=$(grep -nE '\bps_page_[a-z_]+_slow\b' $files || true)
	if [ -n "$bad" ]; then
		echo "page slow paths called directly (use the inline operation):"
		echo "$bad"; fail=1
	fi
	# A field named word that is indexed (an array of snapshots) is not
	# the page word.
	bad=$(grep -nE '(\.|->)[[:space:]]*word\b' $files |
		grep -vE '(\.|->)[[:space:]]*word[[:space:]]*\[' || true)
	if [ -n "$bad" ]; then
		echo "the page word touched outside page.h/lib/page.c:"
		echo "$bad"; fail=1
	fi
	lock_files=$(printf '%s\n' $files | grep -E '^(include|lib)/' || true)
	if [ -n "$lock_files" ]; then
		bad=$(grep -nE '\bPS_PAGE_LOCKED\b' $lock_files || true)
		if [ -n "$bad" ]; then
			echo "the page lock bit used directly (ps_page_lock()):"
			echo "$bad"; fail=1
		fi
	fi
	[ $fail -eq 0 ] &&
		echo "page-owner: $(echo "$files" | wc -w) files leave the page word to page.h"
	return $fail
}

self_test() {
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	mkdir -p "$tmp/include/pagestate" "$tmp/lib" "$tmp/tests"
	# The owner and the exempt test may do anything.
	printf 'static int x(struct ps_page *p) { return ps__page_cas(p) + p->word; }\n' \
		>"$tmp/include/pagestate/page.h"
	cp "$tmp/include/pagestate/page.h" "$tmp/lib/page.c"
	cp "$tmp/include/pagestate/page.h" "$tmp/tests/test-page.c"
	# Allowed elsewhere: named operations, reading LOCKED in a test, an
	# indexed field that happens to be called word.
	cat >"$tmp/lib/ok.c" <<-'EOF'
	static void f(struct ps_page *p, struct snap *s)
	{
		ps_page_lock(p);
		s->word[0] = ps_page_load(p);
		ps_page_unlock(p);
	}
	EOF
	printf 'int t(struct ps_page *p) { return ps_page_test_flags(p, PS_PAGE_LOCKED); }\n' \
		>"$tmp/tests/test-x.c"
	if ! (check "$tmp") >"$tmp/out" 2>&1; then
		echo "self-test: a clean tree was refused:"; cat "$tmp/out"
		return 1
	fi
	n=0
	for v in \
		'(void)ps__page_cas(p, 0, 0, 0, 0, 0, 0, false, memory_order_relaxed, &s, &w);' \
		'enum ps__page_verdict w = PS__PAGE_LIMIT;' \
		'ps_page_lock_slow(p);' \
		'atomic_fetch_or_explicit(&p->word, 1, memory_order_relaxed);' \
		'uint64_t w = page.word;' \
		'ps_page_set_flags(p, PS_PAGE_LOCKED);'; do
		printf 'void g(struct ps_page *p)\n{\n\t%s\n}\n' "$v" >"$tmp/lib/bad.c"
		if (check "$tmp") >"$tmp/out" 2>&1; then
			echo "self-test: not caught: $v"
			return 1
		fi
		n=$((n + 1))
	done
	rm "$tmp/lib/bad.c"
	echo "self-test: clean tree accepted, $n violations refused"
}

if [ "${1:-}" = "--self-test" ]; then
	self_test
else
	check "${1:?usage: check-page-owner.sh SOURCE_ROOT | --self-test}"
fi
