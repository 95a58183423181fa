#!/bin/sh
# SPDX-License-Identifier: MIT
# The README's quick start on a fresh Debian 12 (or Ubuntu) machine:
#   sh quickstart.sh demo    install, build, run the two-process 1 GiB demo
#   sh quickstart.sh test    install, build, run the test suite
# Builds out of tree in ./build. Installs packages with apt-get when it can
# (as root, or through sudo); set TFD_NO_APT=1 to skip that step.
set -eu
mode=${1:-demo}
case $mode in demo|test) ;; *) echo "usage: sh quickstart.sh demo|test" >&2; exit 2;; esac
cd "$(dirname "$0")"

deps="build-essential autoconf automake libtool pkg-config liburing-dev libdrm-dev mandoc cppcheck
	libzmq3-dev python3-dev python3-pytest python3-numpy python3-torch python3-venv"
if [ -z "${TFD_NO_APT:-}" ] && command -v apt-get >/dev/null; then
	sudo=""
	[ "$(id -u)" = 0 ] || sudo="sudo"
	# wait for another apt or unattended-upgrades instead of failing at once
	lock="-o DPkg::Lock::Timeout=600"
	$sudo apt-get $lock update -qq
	$sudo env DEBIAN_FRONTEND=noninteractive apt-get $lock install -y -qq --no-install-recommends \
		$deps >/dev/null
fi

[ -x configure ] || autoreconf -fi
mkdir -p build
cd build
[ -f Makefile ] || ../configure ${CONFIGURE_FLAGS:-}
jobs=$(nproc 2>/dev/null || echo 2)
make -j"$jobs"

if [ "$mode" = demo ]; then
	# the examples are check programs (make check builds them so they never
	# rot); build the demo alone here
	make -j"$jobs" examples/demo
	exec ./examples/demo
fi
set +e
# make's status, not tee's
{ make -j"$jobs" check 2>&1; echo $? > check.rc; } | tee check.log
rc=$(cat check.rc)
set -e
# automake counts every TAP line; say it the way CI readers expect
awk '/^# PASS:/ {p=$3} /^# SKIP:/ {s=$3} /^# (FAIL|ERROR|XPASS):/ {f+=$3}
     END {printf "tests: %d passed, %d failed, %d skipped\n", p, f, s}' check.log
[ "$rc" -eq 0 ] || { cat test-suite.log 2>/dev/null | tail -60; exit "$rc"; }
