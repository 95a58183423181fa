#!/bin/sh
# SPDX-License-Identifier: MIT
# The ABI guard: the functions libtensorfd.so exports are exactly the names
# in src/libtensorfd.sym, both ways, and each of them, and each inline
# helper of the header, has a man page.
srcdir=${top_srcdir:-.}
builddir=${top_builddir:-.}
# NM may carry options (libtool's is "nm -B"): it is split into words on use.
nm=${NM:-nm}
lib="$builddir/.libs/libtensorfd.so"
sym="$srcdir/src/libtensorfd.sym"

if [ ! -e "$lib" ]; then
	echo "1..0 # SKIP $lib was not built"
	exit 0
fi
set -- $nm
if ! command -v "$1" >/dev/null 2>&1; then
	echo "1..0 # SKIP no nm ($nm) to read the exported symbols"
	exit 0
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/tfd-symbols.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT

# Defined dynamic symbols, versions stripped. The version nodes themselves
# (TENSORFD_0.1, ...) are absolute symbols, type A: they are not functions.
if ! $nm -D --defined-only "$lib" >"$tmp/nm.out"; then
	echo "1..1"
	echo "not ok 1 - $nm -D --defined-only $lib failed"
	exit 1
fi
awk 'NF >= 2 && $(NF - 1) != "A" { sub(/@.*/, "", $NF); print $NF }' "$tmp/nm.out" |
	LC_ALL=C sort -u >"$tmp/exported"

# Every "name;" line of the version script: the global entries. "local:",
# "*;" and the "} NODE;" lines that close a node do not match.
sed -e 's/#.*//' "$sym" |
	sed -n -e 's/^[[:space:]]*\([A-Za-z_][A-Za-z0-9_]*\)[[:space:]]*;[[:space:]]*$/\1/p' |
	LC_ALL=C sort -u >"$tmp/listed"

LC_ALL=C sort -u "$tmp/exported" "$tmp/listed" >"$tmp/all"
n_all=$(wc -l <"$tmp/all")
n_exp=$(wc -l <"$tmp/exported")
if [ "$n_all" -eq 0 ]; then
	echo "1..1"
	echo "not ok 1 - no symbols found in $lib or $sym"
	exit 1
fi
# Public functions also include the header's static inline helpers.
sed -n -e 's/^static inline [^(]*[ *]\(tfd_[A-Za-z0-9_]*\)(.*/\1/p' \
	"$srcdir/include/tensorfd.h" | LC_ALL=C sort -u >"$tmp/inline"
LC_ALL=C sort -u "$tmp/exported" "$tmp/inline" >"$tmp/public"
n_pub=$(wc -l <"$tmp/public")
echo "1..$((n_all + n_pub))"

n=0
fail=0
while read -r name; do
	n=$((n + 1))
	in_lib=no
	in_sym=no
	grep -qx "$name" "$tmp/exported" && in_lib=yes
	grep -qx "$name" "$tmp/listed" && in_sym=yes
	if [ $in_lib = yes ] && [ $in_sym = yes ]; then
		echo "ok $n - $name exported and listed in libtensorfd.sym"
	elif [ $in_lib = yes ]; then
		echo "not ok $n - $name exported but not listed in libtensorfd.sym"
		fail=1
	else
		echo "not ok $n - $name listed in libtensorfd.sym but not exported"
		fail=1
	fi
done <"$tmp/all"

# the version node that first lists NAME in the version script: "0.2"
since() {
	awk -v f="$1" '/^TENSORFD_[0-9.]* *\{/ { v = $1; sub(/^TENSORFD_/, "", v) }
		$1 == f ";" { print v; exit }' "$sym"
}

while read -r name; do
	n=$((n + 1))
	page="$srcdir/man/man3/$name.3"
	if [ ! -f "$page" ]; then
		echo "not ok $n - $name has no man page man/man3/$name.3"
		fail=1
		continue
	fi
	# an alias page: the page it points at says when
	target=$(sed -n 's/^\.so[[:space:]]*\([^[:space:]]*\).*/\1/p' "$page")
	[ -n "$target" ] && page="$srcdir/man/$target"
	v=$(since "$name")
	if [ -n "$v" ] && ! grep -q "first appeared in tensorfd $v\.\$" "$page"; then
		echo "not ok $n - $name: $(basename "$page") does not say it first appeared in tensorfd $v (HISTORY)"
		fail=1
	else
		echo "ok $n - $name has man/man3/$name.3${v:+, first appeared in $v}"
	fi
done <"$tmp/public"

exit $fail
