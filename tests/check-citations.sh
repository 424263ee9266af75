#!/bin/sh
# SPDX-License-Identifier: MIT
# Installed headers cite nothing their reader cannot see. A program that
# includes <pagestate/...> has the headers, the man pages made from them and
# the docs installed under share/doc/libpagestate; it has no lib/, no tests/
# and no record of the discussions the first milestone was argued from. So
# this fails when a checked header (code or comment) holds
#   1. "seed" followed by a number ("seed 001", "seeds 001 and 005"): cite
#      the mailing-list thread by subject and list instead;
#   2. a rule label of lib/ as a word: S, G, P, U or M followed by digits
#      (S10, U1), or any other label a file of lib/ defines at the start of a
#      comment line ("F2  ...", "A3  ..."), unless the header defines that
#      one itself, as "(R1)" or at the start of a comment line (seq.h's R1
#      and W1 are its own): cite the section of docs/ instead;
#   3. a path under lib/ or tests/ ("lib/uffd.c", "../tests/x.c");
#   4. a path under docs/ that names no file of docs/ (docs/ is installed
#      whole, so every file there is the reader's).
# Each finding is printed as HEADER:LINE: what. Only the headers named on the
# command line are checked (names relative to include/pagestate/), so a
# header can be held to the rule once its text is ready; --all checks every
# installed header there (*.h and the config.h.in the build installs as
# config.h) and is the goal. The summary line names the installed headers
# not checked.
# Usage: check-citations.sh SOURCE_ROOT HEADER...
#        check-citations.sh SOURCE_ROOT --all
#        check-citations.sh --self-test   (proves each rule can fail)
set -eu

# The labels lib/ defines: "X<digits>" opening a comment line, followed by
# two spaces or a colon (" * U1  Library first, ...").
lib_labels() {
	[ -d "$1/lib" ] || return 0
	find "$1/lib" -name '*.[ch]' -exec cat {} + |
		sed -n 's/^[[:space:]]*\*[[:space:]]*\([A-Z][0-9][0-9]*\)\(  \|:\).*/\1/p' |
		sort -u | tr '\n' ' '
}

# check ROOT HEADER...: 0 if every header is clean, 1 with the findings.
check() {
	root=$1
	shift
	inc=$root/include/pagestate
	installed=$(find "$inc" -maxdepth 1 \( -name '*.h' -o -name '*.h.in' \) |
		sed 's|.*/||' | sort)
	if [ "$1" = --all ]; then
		# shellcheck disable=SC2086
		set -- $installed
	fi
	labels=$(lib_labels "$root")
	fail=0
	for h in "$@"; do
		if [ ! -f "$inc/$h" ]; then
			echo "$h: no such header in include/pagestate"
			fail=1
			continue
		fi
		awk -v h="$h" -v docs="$root/docs" -v labels="$labels" '
		function report(what) {
			printf "%s:%d: %s\n", h, FNR, what
			bad = 1
		}
		# Is @path (relative to docs/) a file of docs/?
		function have_doc(path,   line, r) {
			r = (getline line < (docs "/" path))
			close(docs "/" path)
			return r >= 0 && path !~ /(^|\/)\.\.(\/|$)/
		}
		BEGIN {
			n = split(labels, l, " ")
			for (i = 1; i <= n; i++)
				known[l[i]] = 1
		}
		# First pass: the labels the header defines itself.
		FNR == NR {
			s = $0
			while (match(s, /\([A-Z][0-9]+\)/)) {
				own[substr(s, RSTART + 1, RLENGTH - 2)] = 1
				s = substr(s, RSTART + RLENGTH)
			}
			if (match($0, /^[ \t]*\*[ \t]*[A-Z][0-9]+(  |:)/)) {
				s = substr($0, RSTART, RLENGTH)
				gsub(/[^A-Z0-9]/, "", s)
				own[s] = 1
			}
			next
		}
		{
			line = $0
			# The text without its comment prefix, and the last word
			# of the line before: "seed" may end one line and its
			# number start the next.
			text = line
			sub(/^[ \t]*(\/\*+|\*+\/?|\/\/)?[ \t]*/, "", text)
			joined = tolower(prev " " text)
			if (match(joined, /(^|[^a-z0-9_])seeds?[ \t#:-]*(no\.?[ \t]*)?[0-9]/))
				report("\"" substr(joined, RSTART, RLENGTH) \
					"\": a seed number (cite the thread" \
					" by subject and list)")
			nw = split(text, w, /[ \t]+/)
			prev = nw ? w[nw] : ""

			s = line
			while (match(s, /(^|[^A-Za-z0-9_])[A-Z][0-9]+([^A-Za-z0-9_]|$)/)) {
				tok = substr(s, RSTART, RLENGTH)
				s = substr(s, RSTART + RLENGTH - 1)
				gsub(/[^A-Z0-9]/, "", tok)
				if (tok ~ /^[SGPUM]/ || ((tok in known) && !(tok in own)))
					report("\"" tok "\": a rule label of lib/" \
						" (cite the section of docs/" \
						" instead)")
			}
			s = line
			under = "(lib|tests)\\/[A-Za-z0-9_.\\/-]*"
			while (match(s, "(^|[^A-Za-z0-9_.\\/-]|\\.\\.\\/)" under)) {
				tok = substr(s, RSTART, RLENGTH)
				s = substr(s, RSTART + RLENGTH)
				sub(/^[^.lt]*/, "", tok)
				report("\"" tok "\": a path under lib/ or" \
					" tests/, which is not installed")
			}
			s = line
			while (match(s, /(^|[^A-Za-z0-9_.\/-])docs\/[A-Za-z0-9_.\/-]*/)) {
				tok = substr(s, RSTART, RLENGTH)
				s = substr(s, RSTART + RLENGTH)
				sub(/^[^d]*/, "", tok)
				sub(/[.\/-]+$/, "", tok) # the sentence goes on
				path = substr(tok, 6)
				if (path != "" && !have_doc(path))
					report("\"" tok "\": no such file in docs/")
			}
		}
		END { exit bad }' "$inc/$h" "$inc/$h" || fail=1
	done
	unchecked=""
	for i in $installed; do
		case " $* " in
		*" $i "*) ;;
		*) unchecked="$unchecked $i" ;;
		esac
	done
	if [ $fail = 0 ]; then
		echo "citations: $# headers cite only what an installed reader has" \
			"${unchecked:+(not checked yet:$unchecked)}"
	fi
	return $fail
}

self_test() {
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	inc=$tmp/include/pagestate
	mkdir -p "$inc" "$tmp/docs" "$tmp/lib"
	printf '# Thing\n' >"$tmp/docs/thing.md"
	cat >"$tmp/lib/thing.c" <<-'EOF'
	/*
	 * A2  A rule of this file.
	 * Q1: another.
	 */
	EOF
	# What must pass: the words the rules must not take for citations.
	cat >"$inc/thing.h" <<-'EOF'
	/*
	 * pagestate/thing.h - a header that cites docs/thing.md, section
	 * "Design", and docs/thing.md. Three seeds of 250 operations
	 * (PS_THING_SEEDS); liburcu, /usr/lib/x86_64-linux-gnu/liburcu-bp.so,
	 * a P2P transfer, PS_S1_FLAG, SIGSEGV, x86-64, SEV-SNP, the A3 paper
	 * size, Linux's mm/userfaultfd.c and Documentation/admin-guide/mm/
	 * userfaultfd.rst; docs/ is installed. Its own rule (Q1) is
	 * cited as Q1.
	 */
	#define PS_THING_U1 1
	EOF
	grep -v 'Q1' "$inc/thing.h" >"$inc/other.h"
	if ! (check "$tmp" thing.h) >"$tmp/out" 2>&1; then
		echo "self-test: a clean header was refused:"; cat "$tmp/out"
		return 1
	fi
	# HEADER|what the finding must say|the violation
	n=0
	while IFS='|' read -r f want line; do
		cp "$inc/thing.h" "$tmp/save"
		cp "$inc/other.h" "$tmp/save-other"
		# (%b: a value may hold a line break, as "seed\n * 001")
		[ "$f" = nosuch.h ] || printf '/*\n%b\n */\n' "$line" >>"$inc/$f"
		args=thing.h
		[ "$f" = other.h ] && args=--all
		[ "$f" = nosuch.h ] && args="thing.h nosuch.h"
		# shellcheck disable=SC2086
		if (check "$tmp" $args) >"$tmp/out" 2>&1; then
			echo "self-test: not caught: $f: $line"
			return 1
		fi
		if ! grep -q "$want" "$tmp/out"; then
			echo "self-test: $f: $line: not reported as \"$want\":"
			cat "$tmp/out"
			return 1
		fi
		cp "$tmp/save" "$inc/thing.h"
		cp "$tmp/save-other" "$inc/other.h"
		n=$((n + 1))
	done <<-'EOF'
	thing.h|seed number| * as argued in seed 001.
	thing.h|seed number| * (seeds 001 and 005).
	thing.h|seed number| * the discussion of seed\n * 001.
	thing.h|rule label| * S10 drops the page.
	thing.h|rule label| * as U1 says.
	thing.h|rule label| * Ordering: G7.
	thing.h|rule label| * the rule P12.
	thing.h|rule label| * M1..M4.
	thing.h|rule label| * as A2 states.
	thing.h|rule label| * (S10) the space drops the page.
	other.h|rule label| * Q1 too.
	other.h|rule label| * other.h cites U6.
	thing.h|path under| * see lib/uffd.c.
	thing.h|path under| * see tests/test-uffd.c.
	thing.h|path under| * #include "../lib/hbitmap.h"
	thing.h|no such file| * see docs/missing.md, section "Design".
	thing.h|no such file| * see docs/thing.txt.
	nosuch.h|no such header|
	EOF
	# A header not named is not checked (until --all).
	printf '/* seed 001 */\n' >>"$inc/other.h"
	if ! (check "$tmp" thing.h) >"$tmp/out" 2>&1; then
		echo "self-test: a header not named was checked:"; cat "$tmp/out"
		return 1
	fi
	echo "self-test: clean header accepted, $n violations refused"
}

if [ "${1:-}" = "--self-test" ]; then
	self_test
else
	root=${1:?usage: check-citations.sh SOURCE_ROOT HEADER...|--all | --self-test}
	shift
	if [ $# -eq 0 ]; then
		echo "usage: check-citations.sh SOURCE_ROOT HEADER...|--all"
		exit 2
	fi
	check "$root" "$@"
fi
