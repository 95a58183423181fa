#!/bin/sh
# SPDX-License-Identifier: MIT
# The test programs again with the poll(2) notification backend, the one
# used where io_uring is blocked (seccomp, kernel.io_uring_disabled).
# The whole suite, soak kept short; fault-inject drives both backends itself.
tests="layout idmap buffer wire roundtrip reuse hostile peer-death listener recv-modes topic
	pubsub pubsub-crash pubsub-policy pubsub-access pubsub-hostile pubsub-flood pubsub-loans soak conn-flood threads
	sub-why meta runtime-tree introspect"
n=0
for t in $tests; do
	n=$((n + 1))
	out=$(TENSORFD_NOTIFY=poll SOAK_SECONDS=10 "${top_builddir:-.}/tests/$t" 2>&1)
	rc=$?
	if [ $rc -eq 0 ]; then
		echo "ok $n - $t with TENSORFD_NOTIFY=poll"
	else
		echo "$out" | sed 's/^/# /'
		echo "not ok $n - $t with TENSORFD_NOTIFY=poll (exit $rc)"
	fi
done
echo "1..$n"
