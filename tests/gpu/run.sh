#!/bin/sh
# SPDX-License-Identifier: MIT
#
# The real GPU tests, run BY HAND on a machine with an NVIDIA GPU and its
# driver (not part of make check, which only checks that this parses). It
# builds the tree (or takes a build made elsewhere), then runs:
#   - tests/cuda: loading and refusal paths, now next to a real driver;
#   - tests/gpu/gpu-test: producer and consumer processes; GPU tensors of
#     4 KiB, 2 MiB, 64 MiB, 1 GiB and 4 GiB verified on the device; ordering
#     behind 401 queued memsets; SIGKILL of either side; the import cache;
#     memory outliving its producer; classic IPC and cuIpcOpenMemHandle cost;
#     the external-memory (OPAQUE_FD) experiment; host registration and H2D
#     bandwidth; first-send and steady-state latencies;
#   - tests/gpu/torch-ipc.py, if PyTorch with CUDA is importable: classic IPC
#     of a caching-allocator tensor to a C consumer.
# One line per check: PASS, FAIL, SKIP or INFO. Exit status 1 if any FAIL.
# Meant to finish well within 10 minutes (16 cores, one H100).
#
# Usage, from the top of the source tree:
#   tests/gpu/run.sh                  build in $TFD_GPU_BUILD (default
#                                     /tmp/tfd-gpu-build), then test
#   tests/gpu/run.sh BUILDDIR         test a tree already built in BUILDDIR
#   tests/gpu/run.sh --build-only DIR build only, for a machine without
#                                     autotools or liburing-dev: liburing is
#                                     linked statically into gpu-test, so
#                                     DIR can be carried to the GPU machine
# Without a GPU, TFD_GPU_FAKE=1 runs everything against the test-only fake
# driver to check the script itself; every line then says FAKE DRIVER.
set -u

top=$(cd "$(dirname "$0")/../.." && pwd)
t0=$(date +%s)
fails=0
jobs=$(nproc 2>/dev/null || echo 4)

say() { printf '%s\n' "$*"; }
fail() { fails=$((fails + 1)); say "FAIL $*"; }

build_tree() {
	dir=$1
	if [ ! -x "$top/configure" ]; then
		command -v autoreconf >/dev/null 2>&1 ||
			{ fail "build: no configure and no autoreconf (build elsewhere with --build-only)"; return 1; }
		(cd "$top" && autoreconf -fi) >"$dir.autoreconf.log" 2>&1 ||
			{ fail "build: autoreconf failed, see $dir.autoreconf.log"; return 1; }
	fi
	mkdir -p "$dir" || return 1
	if [ ! -e "$dir/config.status" ]; then
		(cd "$dir" && "$top/configure" --without-libdrm \
			--with-cuda="${CUDA_HOME:-/usr/local/cuda}") >"$dir/configure.out" 2>&1 ||
			{ fail "build: configure failed: $(tail -3 "$dir/configure.out" | tr '\n' ' ')"; return 1; }
	fi
	static=
	[ -n "${STATIC_URING:-}" ] && static='LIBURING_LIBS=-l:liburing.a'
	(cd "$dir" && make -j"$jobs" $static libtensorfd.la tests/gpu/gpu-test tests/cuda \
		tests/fake-libcuda.la && { [ ! -e "${CUDA_HOME:-/usr/local/cuda}/lib64/libcudart.so" ] ||
		make examples/cuda; }) >"$dir/make.out" 2>&1 ||
		{ fail "build: make failed: $(tail -5 "$dir/make.out" | tr '\n' ' ')"; return 1; }
	say "INFO build: $dir built in $(($(date +%s) - t0)) s"
}

case "${1:-}" in
--build-only)
	STATIC_URING=1 build_tree "$(mkdir -p "${2:?directory}" && cd "$2" && pwd)"
	exit $((fails > 0))
	;;
"")
	build=${TFD_GPU_BUILD:-/tmp/tfd-gpu-build}
	build_tree "$build" || { say "FAIL gpu tests: could not build ($fails failures)"; exit 1; }
	;;
*)
	build=$(cd "$1" && pwd)
	;;
esac

# --- the machine ---
say "INFO kernel: $(uname -r)"
if command -v nvidia-smi >/dev/null 2>&1; then
	say "INFO nvidia-smi: $(nvidia-smi -L 2>&1 | head -4 | tr '\n' ';')"
	say "INFO nvidia-smi: $(nvidia-smi --query-gpu=driver_version,memory.total,compute_mode --format=csv,noheader 2>&1 | head -1)"
fi
[ -r /proc/driver/nvidia/version ] &&
	say "INFO driver: $(head -1 /proc/driver/nvidia/version)"
say "INFO CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES-<unset>}"

if [ -n "${TFD_GPU_FAKE:-}" ]; then
	TENSORFD_LIBCUDA=$build/tests/.libs/fake-libcuda.so
	export TENSORFD_LIBCUDA
	: "${TFD_GPU_MAX_SIZE:=67108864}"
	export TFD_GPU_MAX_SIZE
	say "INFO FAKE DRIVER: $TENSORFD_LIBCUDA (not a GPU: this checks the script only)"
fi

# --- loading and refusal (the make check test, next to a real driver) ---
if (cd "$build" && top_builddir=. timeout 60 ./tests/cuda) >"$build/cuda.tap" 2>&1 &&
	! grep -q '^not ok' "$build/cuda.tap"; then
	say "PASS loading: tests/cuda ($(grep -c '^ok' "$build/cuda.tap") checks)"
else
	fail "loading: tests/cuda: $(grep '^not ok' "$build/cuda.tap" | head -3 | tr '\n' ' ')"
fi

# --- the CUDA example, as a user would run it ---
if [ -x "$build/examples/cuda" ]; then
	if out=$(timeout 60 "$build/examples/cuda" 2>&1) && printf '%s' "$out" | grep -q ': ok'; then
		say "PASS example: examples/cuda: $out"
	else
		fail "example: examples/cuda: $out"
	fi
fi

# --- the GPU checks ---
timeout 420 "$build/tests/gpu/gpu-test" >"$build/gpu-test.out" 2>&1
rc=$?
cat "$build/gpu-test.out"
[ $rc -eq 0 ] || grep -q '^FAIL' "$build/gpu-test.out" || fail "gpu-test exited $rc"

# --- PyTorch, if there is one with CUDA ---
if [ -n "${TFD_GPU_FAKE:-}" ]; then
	say "SKIP torch: not against the fake driver"
elif ! timeout 120 python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' \
	>/dev/null 2>&1; then
	say "SKIP torch: no PyTorch with CUDA for python3"
else
	sock=$build/torch-ipc.sock
	rm -f "$sock"
	timeout 180 "$build/tests/gpu/gpu-test" torch-consumer "$sock" >"$build/torch-consumer.out" 2>&1 &
	cpid=$!
	i=0
	while ! grep -q READY "$build/torch-consumer.out" 2>/dev/null && [ $i -lt 100 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	say "INFO torch: $(python3 -c 'import torch; print(torch.__version__, torch.version.cuda)' 2>&1)"
	timeout 150 python3 "$top/tests/gpu/torch-ipc.py" "$build/.libs/libtensorfd.so" "$sock" 2>&1 |
		tail -5
	wait $cpid
	rc=$?
	grep -v READY "$build/torch-consumer.out"
	[ $rc -eq 0 ] || fail "torch: the consumer exited $rc"
fi

fails=$((fails + $(grep -c '^FAIL' "$build/gpu-test.out")))
say "$([ $fails -eq 0 ] && echo PASS || echo FAIL) tests/gpu/run.sh: $fails failure(s) in $(($(date +%s) - t0)) s"
[ $fails -eq 0 ]
