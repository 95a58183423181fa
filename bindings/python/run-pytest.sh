#!/bin/sh
# SPDX-License-Identifier: MIT
# The Python binding's pytest suite, run against the build tree, as TAP.
# It imports the package from a staging directory that links the sources'
# tensorfd/__init__.py and the built tensorfd/.libs/_tensorfd.so together.
set -u
: "${top_srcdir:=.}" "${top_builddir:=.}"
python=${PYTHON:-/usr/bin/python3}
skip() { echo "1..0 # SKIP $*"; exit 0; }

[ "${TFD_PYTHON_BINDING:-}" = yes ] || skip "Python binding not built (no Python.h for $python, or --disable-python)"
preload=
if [ "${TFD_PYTHON_SANITIZED:-}" = yes ]; then
	# an instrumented extension loads into the interpreter after the runtimes
	for lib in libasan.so libubsan.so; do
		p=$(${CC:-cc} -print-file-name=$lib 2>/dev/null)
		[ -f "$p" ] || skip "sanitizer build: $lib not found to preload into the interpreter"
		preload="$preload $p"
	done
fi
so=$top_builddir/bindings/python/tensorfd/.libs/_tensorfd.so
[ -f "$so" ] || skip "$so was not built"
"$python" -c 'import pytest' 2>/dev/null || skip "pytest is missing for $python (apt-get install python3-pytest)"
"$python" -c 'import numpy' 2>/dev/null || skip "numpy is missing for $python (apt-get install python3-numpy)"

abs() { (cd "$1" && pwd); }
src=$(abs "$top_srcdir")/bindings/python
out=$(abs "$top_builddir")/bindings/python
mkdir -p "$out/stage/tensorfd"
ln -sf "$src/tensorfd/__init__.py" "$out/stage/tensorfd/__init__.py"
ln -sf "$src/tensorfd/recording.py" "$out/stage/tensorfd/recording.py"
ln -sf "$out/tensorfd/.libs/_tensorfd.so" "$out/stage/tensorfd/_tensorfd.so"

tap=$out/pytest.tap
log=$out/pytest.log
rm -f "$tap"
# a private runtime directory: topics of parallel runs never meet
rt=$(mktemp -d "${TMPDIR:-/tmp}/tfd-py.XXXXXX")
trap 'rm -rf "$rt"' EXIT
# the interpreter's own leaks are not ours: leak checking stays off
if [ -n "$preload" ]; then
	export LD_PRELOAD="${preload# }" ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
	export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
fi
PYTHONPATH=$out/stage${PYTHONPATH:+:$PYTHONPATH} PYTHONDONTWRITEBYTECODE=1 \
	TFD_TAP_FILE=$tap TENSORFD_RUNTIME_DIR=$rt \
	timeout 900 "$python" -m pytest -p no:cacheprovider -q -rs --rootdir "$src/tests" "$src/tests" >"$log" 2>&1
rc=$?
unset LD_PRELOAD
sed 's/^/# /' "$log"
n=0
[ -f "$tap" ] && n=$(wc -l <"$tap")
if [ "$n" -eq 0 ]; then
	echo "1..1"
	echo "not ok 1 - pytest ran no test (exit status $rc)"
	exit 0
fi
fails=$(grep -c '^not ok' "$tap")
if [ "$rc" -ne 0 ] && [ "$fails" -eq 0 ]; then
	echo "1..$((n + 1))"
	cat "$tap"
	echo "not ok $((n + 1)) - pytest exit status $rc"
else
	echo "1..$n"
	cat "$tap"
fi
