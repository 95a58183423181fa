#!/bin/sh
# SPDX-License-Identifier: MIT
# The examples and the timing tool, run as the README shows them: each must
# exit 0 (the demo checks every word it was handed, the subscriber every
# frame), and the tool must print a table row for every size it was given.
b="${top_builddir:-.}"
to=""
command -v timeout >/dev/null 2>&1 && to="timeout 300"
n=0

# run COMMAND...: its output in $out, its exit status in $rc.
run() {
	out=$($to "$@" 2>&1)
	rc=$?
}

# why_failed [SIZE...]: nothing when the last run exited 0 and printed a row
# starting with each SIZE; otherwise what went wrong.
why_failed() {
	if [ "$rc" -ne 0 ]; then
		echo "exit $rc"
		return
	fi
	why=""
	for s in "$@"; do
		printf '%s\n' "$out" | grep -Eq "^ *$s \\|" || why="${why:+$why, }no row for size $s"
	done
	echo "$why"
}

# tap DESCRIPTION WHY: one TAP line, with the output as diagnostics on failure.
tap() {
	n=$((n + 1))
	if [ -z "$2" ]; then
		echo "ok $n - $1"
	else
		printf '%s\n' "$out" | sed 's/^/# /'
		echo "not ok $n - $1 ($2)"
	fi
}

echo "1..7"
run "$b/examples/hello"
tap "examples/hello" "$(why_failed)"
run "$b/examples/dmabuf"
tap "examples/dmabuf (a dma-buf frame to a child, or a note that there is no source)" "$(why_failed)"
run "$b/examples/demo" --size 64M
tap "examples/demo --size 64M" "$(why_failed)"
run "$b/tools/tensorfd-pingpong" --sizes 64,1M --iters 200
tap "tools/tensorfd-pingpong --sizes 64,1M --iters 200, a row per size" "$(why_failed 64 1M)"

# The publish/subscribe pair in a runtime directory of their own: the
# subscriber first, in the background, waiting for its publisher; then the
# publisher, which waits for it and publishes as many frames as it expects.
rundir=$(mktemp -d "${TMPDIR:-/tmp}/tfd-examples.XXXXXX") || exit 1
$to env TENSORFD_RUNTIME_DIR="$rundir" "$b/examples/subscriber" -n 20 -T 20 \
	>"$rundir/subscriber.out" 2>&1 &
sub=$!
run env TENSORFD_RUNTIME_DIR="$rundir" "$b/examples/publisher" -n 20 -r 200 -w 1
pub_rc=$rc
wait $sub
sub_rc=$?
out="$out
$(cat "$rundir/subscriber.out")"
why=""
[ $pub_rc -eq 0 ] || why="publisher exit $pub_rc"
[ $sub_rc -eq 0 ] || why="${why:+$why, }subscriber exit $sub_rc"
tap "examples/subscriber -n 20 and examples/publisher -n 20, both exit 0" "$why"
rm -rf "$rundir"

# every example answers --help with a usage line and exit 0
why=""
out=""
for e in hello dmabuf demo publisher subscriber $( [ -x "$b/examples/cuda" ] && echo cuda); do
	run "$b/examples/$e" --help
	[ "$rc" -eq 0 ] && printf '%s\n' "$out" | grep -q '^usage: ' || why="${why:+$why, }$e --help (exit $rc)"
done
tap "every example answers --help with its usage" "$why"

# the CUDA example, where configure found the toolkit: a GPU tensor to a
# child, or a note that there is no GPU here (exit 0 either way)
if [ -x "$b/examples/cuda" ]; then
	run "$b/examples/cuda"
	if [ "$rc" -eq 0 ] && printf '%s' "$out" | grep -q "no usable GPU"; then
		n=$((n + 1))
		echo "ok $n - examples/cuda # SKIP $(printf '%s' "$out" | head -1)"
	else
		tap "examples/cuda (a GPU tensor to a child, read in place)" "$(why_failed)"
	fi
else
	n=$((n + 1))
	echo "ok $n - examples/cuda # SKIP not built (no CUDA toolkit with libcudart)"
fi
