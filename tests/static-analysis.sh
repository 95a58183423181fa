#!/bin/sh
# SPDX-License-Identifier: MIT
# cppcheck over src/: warnings, performance and portability findings fail
# the test. A finding that is wrong is silenced where it occurs, with an
# inline "// cppcheck-suppress id" comment that says why.
srcdir=${top_srcdir:-.}

if ! command -v cppcheck >/dev/null 2>&1; then
	echo "1..0 # SKIP cppcheck not installed"
	exit 0
fi

echo "1..1"
if out=$(cppcheck --enable=warning,performance,portability --std=c11 --inline-suppr \
	--error-exitcode=1 -I"$srcdir/include" -I"$srcdir/src" -D__linux__ \
	--suppress=missingIncludeSystem --quiet "$srcdir/src" 2>&1); then
	echo "ok 1 - cppcheck src/"
else
	printf '%s\n' "$out" | sed -e 's/^/# /'
	echo "not ok 1 - cppcheck src/"
	exit 1
fi
