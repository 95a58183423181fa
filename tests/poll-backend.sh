#!/bin/sh
# SPDX-License-Identifier: MIT
# The channel tests again with the poll(2) notification backend, the one
# used where io_uring is blocked (seccomp, kernel.io_uring_disabled).
tests="roundtrip reuse peer-death recv-modes hostile listener pubsub pubsub-crash"
n=0
for t in $tests; do
	n=$((n + 1))
	out=$(TENSORFD_NOTIFY=poll "${top_builddir:-.}/tests/$t" 2>&1)
	rc=$?
	if [ $rc -eq 0 ]; then
		echo "ok $n - $t with TENSORFD_NOTIFY=poll"
	else
		echo "$out" | sed 's/^/# /'
		echo "not ok $n - $t with TENSORFD_NOTIFY=poll (exit $rc)"
	fi
done
echo "1..$n"
