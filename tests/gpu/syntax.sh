#!/bin/sh
# SPDX-License-Identifier: MIT
# tests/gpu/run.sh needs a GPU and is run by hand; make check only makes
# sure it still parses.
srcdir=${top_srcdir:-.}
echo "1..1"
if sh -n "$srcdir/tests/gpu/run.sh"; then
	echo "ok 1 - tests/gpu/run.sh parses (sh -n; it runs only on a GPU machine, by hand)"
else
	echo "not ok 1 - tests/gpu/run.sh does not parse"
	exit 1
fi
