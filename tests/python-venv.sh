#!/bin/sh
# SPDX-License-Identifier: MIT
# The Python package as a user outside Debian's python3-* packages installs
# it: the library installed (here into a DESTDIR), then
#   pip install ./bindings/python
# into a fresh virtual environment, offline (--no-index: the in-tree build
# backend needs nothing from the network), and a round trip through the
# installed package, which must be the venv's and report the library's
# version.
set -u
: "${top_srcdir:=.}" "${top_builddir:=.}"
python=${PYTHON:-/usr/bin/python3}
skip() { echo "1..0 # SKIP $*"; exit 0; }

[ "${TFD_PYTHON_BINDING:-}" = yes ] || skip "Python binding not built"
[ "${TFD_PYTHON_SANITIZED:-}" = yes ] && skip "sanitizer build: the pip-built extension is not instrumented"
"$python" -c 'import ensurepip, venv' 2>/dev/null || skip "no venv/ensurepip for $python (apt-get install python3-venv)"
"$python" -c 'import numpy' 2>/dev/null || skip "numpy is missing for $python (apt-get install python3-numpy)"
command -v pkg-config >/dev/null || skip "pkg-config is missing"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/tfd-venv.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
log=$tmp/log
n=0
tap() {
	n=$((n + 1))
	if [ "$1" -eq 0 ]; then
		echo "ok $n - $2"
	else
		sed 's/^/# /' "$log"
		echo "not ok $n - $2"
	fi
}

echo "1..4"
root=$tmp/root
make -C "$top_builddir" install DESTDIR="$root" >"$log" 2>&1
tap $? "make install DESTDIR=... (the library the package builds against)"
pc=$(find "$root" -name tensorfd.pc | head -1)
libdir=$(dirname "$(find "$root" -name 'libtensorfd.so.*' | head -1)")

# --system-site-packages for numpy only; the venv's own tensorfd comes first
"$python" -m venv --system-site-packages "$tmp/venv" >"$log" 2>&1 &&
PKG_CONFIG_PATH=$(dirname "$pc") PKG_CONFIG_SYSROOT_DIR=$root \
	"$tmp/venv/bin/python" -m pip install --no-index --disable-pip-version-check -q \
	"$top_srcdir/bindings/python" >>"$log" 2>&1
tap $? "pip install --no-index ./bindings/python into a fresh venv"

version=$(sed -n 's/^Version: *//p' "$pc")
cd "$tmp" && LD_LIBRARY_PATH=$libdir TENSORFD_RUNTIME_DIR=$tmp PYTHONDONTWRITEBYTECODE=1 \
	"$tmp/venv/bin/python" - "$tmp/venv" "$version" >"$log" 2>&1 <<'PY'
import sys, time
import numpy as np
import tensorfd

venv, version = sys.argv[1], sys.argv[2]
assert tensorfd.__file__.startswith(venv), tensorfd.__file__
assert tensorfd.__version__ == version, (tensorfd.__version__, version)
with tensorfd.Publisher("venv/check") as pub, tensorfd.Subscriber("venv/check") as sub:
    end = time.monotonic() + 20
    while pub.stats()["subscribers"] < 1 and time.monotonic() < end:
        pub.dispatch(0.01)
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    pub.send(a=a, step=7)
    msg = sub.recv(timeout=10)
    np.testing.assert_array_equal(msg.get("a", kind="numpy"), a)
    assert msg.step == 7
print("ok", tensorfd.__file__, tensorfd.__version__)
PY
tap $? "the venv's tensorfd $version round-trips a numpy array"

"$tmp/venv/bin/python" -m pip uninstall -y -q tensorfd >"$log" 2>&1 &&
! "$tmp/venv/bin/python" -c 'import sys, tensorfd; assert tensorfd.__file__.startswith(sys.argv[1])' "$tmp/venv" 2>/dev/null
tap $? "pip uninstall removes it again"
