#!/bin/sh
# SPDX-License-Identifier: MIT
# Install into a scratch DESTDIR, then use the installed tree as an outside
# project would, with pkg-config alone:
#   - tests/consumer.c built with the README's consumer line
#     (cc -std=c11 app.c $(pkg-config --static --cflags --libs pagestate))
#     and with plain `pkg-config --cflags --libs`, and run; against the
#     shared library when one is installed (it must be the one linked), and
#     against the archive when one is installed;
#   - every program of examples/ built with the README's consumer line and
#     nothing else (no -D flags: they define what they need);
#   - docs/ (every file), CHANGELOG.md and LICENSE are installed under
#     share/doc/libpagestate, and every docs/ file an installed header
#     cites is among them;
#   - every public function has its man page, and libpagestate(7) exists;
#     groff (when present) reads every page without a warning, and man
#     (when present) finds ps_space_pin_range through MANPATH.
# Usage: check-install.sh BUILDDIR SRCDIR "CC" man|noman
set -eu
build=$1 src=$2 cc=$3 man=${4:-man}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
meson install -C "$build" --no-rebuild --destdir "$tmp/root" >"$tmp/log" 2>&1 ||
	{ cat "$tmp/log"; exit 1; }
pc=$(find "$tmp/root" -name pagestate.pc | head -n 1)
[ -n "$pc" ] || { echo "pagestate.pc was not installed"; exit 1; }
libdir=$(dirname "$(dirname "$pc")")
PKG_CONFIG_PATH=$(dirname "$pc")
PKG_CONFIG_SYSROOT_DIR="$tmp/root"
export PKG_CONFIG_PATH PKG_CONFIG_SYSROOT_DIR
static=no shared=no
[ -f "$libdir/libpagestate.a" ] && static=yes
[ -n "$(find "$libdir" -maxdepth 1 -name 'libpagestate.so.*' -type f)" ] && shared=yes
echo "installed: archive $static, shared library $shared"
[ $static = yes ] || [ $shared = yes ] || { echo "no library installed"; exit 1; }
soname=""
if [ $shared = yes ]; then
	soname=$(readelf -d "$libdir/libpagestate.so" |
		sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
	[ -e "$libdir/$soname" ] || { echo "no $soname installed"; exit 1; }
fi

readme=$(pkg-config --static --cflags --libs pagestate)
plain=$(pkg-config --cflags --libs pagestate)
echo "pkg-config --static --cflags --libs pagestate: $readme"
echo "pkg-config --cflags --libs pagestate: $plain"
strict="-Wall -Wextra -pedantic -Werror"

# $1: name, $2: expected linkage (shared|static), then the flags.
consumer() {
	name=$1 want=$2
	shift 2
	# shellcheck disable=SC2086
	$cc -std=c11 $strict "$src/tests/consumer.c" -o "$tmp/$name" "$@"
	needed=$(readelf -d "$tmp/$name" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
	case $want in
	shared)
		echo "$needed" | grep -qx "$soname" ||
			{ echo "$name: does not need $soname: $needed"; exit 1; }
		;;
	static)
		if echo "$needed" | grep -q '^libpagestate'; then
			echo "$name: linked the shared library"; exit 1
		fi
		;;
	esac
	LD_LIBRARY_PATH="$libdir" "$tmp/$name"
	echo "$name: ok ($want)"
}

if [ $shared = yes ]; then
	# shellcheck disable=SC2086
	consumer consumer-readme shared $readme
	# shellcheck disable=SC2086
	consumer consumer-plain shared $plain
fi
if [ $static = yes ]; then
	# With both installed the linker takes the shared library: ask for the
	# archive by its file name.
	archive=$(echo "$readme" | sed 's/-lpagestate\b/-l:libpagestate.a/')
	# shellcheck disable=SC2086
	consumer consumer-static static $archive
	# shellcheck disable=SC2086
	[ $shared = yes ] || consumer consumer-static-plain static $plain
fi

for ex in "$src"/examples/*.c; do
	name=$(basename "$ex" .c)
	# shellcheck disable=SC2086
	if ! $cc -std=c11 -Wall -Werror "$ex" -o "$tmp/$name" $readme \
		2>"$tmp/err"; then
		echo "examples/$name.c does not build with the README's consumer line:"
		cat "$tmp/err"
		exit 1
	fi
	echo "examples/$name.c: builds with the README's consumer line"
done

# The docs the headers cite ("docs/uffd.md, ...") are the reader's too.
lic=$(find "$tmp/root" -path '*/share/doc/libpagestate/LICENSE' | head -n 1)
[ -n "$lic" ] || { echo "no share/doc/libpagestate/LICENSE installed"; exit 1; }
docdir=$(dirname "$lic")
missing="" cited=""
# docs/design/ holds proposals for work not built yet: not installed.
for f in CHANGELOG.md LICENSE $(cd "$src/docs" && find . -type f \
	-not -path './design/*' | sed 's|^\./||'); do
	[ -f "$docdir/$f" ] || missing="$missing $f"
done
inc=$(find "$tmp/root" -path '*/include/pagestate' -type d | head -n 1)
for f in $(grep -oh 'docs/[A-Za-z0-9_./-]*[A-Za-z0-9_]' "$inc"/*.h | sort -u); do
	[ -f "$docdir/${f#docs/}" ] || cited="$cited $f"
done
[ -z "$missing" ] || { echo "not installed in ${docdir#"$tmp/root"}:$missing"; exit 1; }
[ -z "$cited" ] || { echo "cited by an installed header, not installed:$cited"; exit 1; }
echo "docs: $(find "$docdir" -type f | wc -l) files installed under" \
	"${docdir#"$tmp/root"}, every one the headers cite among them"

[ "$man" = man ] || { echo "man pages: not built (-Dman=false)"; exit 0; }
page=$(find "$tmp/root" -path '*/man3/ps_space_pin_range.3' | head -n 1)
[ -n "$page" ] || { echo "no man page ps_space_pin_range.3 installed"; exit 1; }
mandir=$(dirname "$(dirname "$page")")
missing="" n=0
for p in $(python3 "$src/tools/gen-man.py" --list "$src/include"); do
	n=$((n + 1))
	f="$mandir/man${p##*.}/$p"
	if [ ! -f "$f" ]; then
		missing="$missing $p"
		continue
	fi
	if command -v groff >/dev/null 2>&1; then
		groff -man -Tutf8 -ww -z "$f" 2>"$tmp/err" || true
		if [ -s "$tmp/err" ]; then
			echo "groff warns about $p:"; cat "$tmp/err"; exit 1
		fi
	fi
done
[ -z "$missing" ] || { echo "man pages not installed:$missing"; exit 1; }
echo "man pages: all $n installed under ${mandir#"$tmp/root"}" \
	"$(command -v groff >/dev/null 2>&1 && echo '(groff: no warnings)')"
if command -v man >/dev/null 2>&1; then
	MANPATH="$mandir" man -w ps_space_pin_range >/dev/null ||
		{ echo "man -w ps_space_pin_range fails with MANPATH=$mandir"; exit 1; }
	MANPATH="$mandir" man -w 7 libpagestate >/dev/null ||
		{ echo "man -w 7 libpagestate fails"; exit 1; }
	echo "man finds ps_space_pin_range(3) and libpagestate(7)"
fi
