#!/bin/sh
# SPDX-License-Identifier: MIT
# Every man page (man1 tools, man3 functions, man7) passes "mandoc -T lint"
# without a message and its footer (.TH) names configure's version; an alias page
# (".so man3/other.3") points at a page that exists; and man/Makemodule.am
# installs exactly the pages that are there; every tool of tools/Makemodule.am has
# its section 1 page.
#
# The level is -W style, which is what plain "mandoc -T lint" reports: it
# includes every warning and error, and also catches trailing whitespace,
# which mandoc ranks as style.
srcdir=${top_srcdir:-.}

if [ -z "$MANDOC" ]; then
	echo "1..0 # SKIP mandoc not found"
	exit 0
fi

pages=$(cd "$srcdir/man" && ls man1/*.1 man3/*.3 man7/*.7 2>/dev/null)
if [ -z "$pages" ]; then
	echo "1..1"
	echo "not ok 1 - no man pages under $srcdir/man"
	exit 1
fi
set -- $pages
# the installed tools of tools/Makemodule.am: each has a section 1 page
tools=$(sed -n -e '/^CLI_TOOLS =/,/^$/p' "$srcdir/tools/Makemodule.am" 2>/dev/null |
	tr ' \t\\' '\n\n\n' | sed -n -e 's/^tools\/\(tensorfd-[a-z-]*\)$/\1/p')
n_tools=$(echo $tools | wc -w)
echo "1..$(($# + 1 + n_tools))"

n=0
fail=0
for page in "$@"; do
	n=$((n + 1))
	file="$srcdir/man/$page"
	# An alias page is a single .so request (comments allowed).
	target=$(sed -n -e '/^\.\\"/d' -e 's/^\.so[[:space:]][[:space:]]*\([^[:space:]]*\).*/\1/p' "$file")
	if [ -n "$target" ]; then
		if [ "$(grep -cv '^\.\\"' "$file")" -ne 1 ]; then
			echo "not ok $n - $page: a .so page must hold nothing but the .so line"
			fail=1
		elif [ -f "$srcdir/man/$target" ] && ! grep -q '^\.so[[:space:]]' "$srcdir/man/$target"; then
			echo "ok $n - $page is an alias of $target"
		else
			echo "not ok $n - $page: .so target $target is missing or is itself an alias"
			fail=1
		fi
		continue
	fi
	out=$("$MANDOC" -T lint -W style "$file" 2>&1)
	rc=$?
	# the footer names the release being built: configure's version, one for all
	th=$(sed -n 's/^\.TH [^"]*"\([^"]*\)".*/\1/p' "$file" | head -1)
	if [ -n "${VERSION:-}" ] && [ "$th" != "tensorfd $VERSION" ]; then
		out="${out:+$out
}.TH says \"$th\", configure says \"tensorfd $VERSION\""
		rc=1
	fi
	if [ $rc -eq 0 ] && [ -z "$out" ]; then
		echo "ok $n - $page is lint clean"
	else
		echo "$out" | sed 's/^/# /'
		echo "not ok $n - $page: mandoc -T lint -W style (exit $rc)"
		fail=1
	fi
done

# dist_man_MANS must name each page once, and nothing else.
n=$((n + 1))
listed=$(sed -n -e 's/^[[:space:]]*\(man\/man[0-9]\/[^[:space:]\\]*\).*/\1/p' \
	"$srcdir/man/Makemodule.am" | LC_ALL=C sort)
ondisk=$(for p in "$@"; do echo "man/$p"; done | LC_ALL=C sort)
if [ "$listed" = "$ondisk" ]; then
	echo "ok $n - man/Makemodule.am lists every page"
else
	echo "$listed" >"${TMPDIR:-/tmp}/tfd-manlint-listed.$$"
	echo "$ondisk" | diff "${TMPDIR:-/tmp}/tfd-manlint-listed.$$" - | sed 's/^/# /'
	rm -f "${TMPDIR:-/tmp}/tfd-manlint-listed.$$"
	echo "not ok $n - man/Makemodule.am and the pages on disk differ (< listed, > on disk)"
	fail=1
fi

for tool in $tools; do
	n=$((n + 1))
	if [ -f "$srcdir/man/man1/$tool.1" ]; then
		echo "ok $n - $tool has a man page in section 1"
	else
		echo "not ok $n - $tool is installed but man/man1/$tool.1 is missing"
		fail=1
	fi
done

exit $fail
