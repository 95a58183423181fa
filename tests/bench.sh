#!/bin/sh
# SPDX-License-Identifier: MIT
# tensorfd-bench runs end to end with tiny sizes and few rounds (--quick):
# the table has its sections, --json parses and holds a row for every
# series, --plot writes well-formed SVG, --include reads the JSON back, and
# the torch.multiprocessing script's JSON merges (skipped without torch).
# No timing is asserted: speed is what the tool reports, never a test.
b="${top_builddir:-.}"
s="${top_srcdir:-.}"
bench="$b/tools/tensorfd-bench"
to=""
command -v timeout >/dev/null 2>&1 && to="timeout 300"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/tfd-bench-test.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
py=""
command -v python3 >/dev/null 2>&1 && py=python3
# the torch baseline wants a python3 with torch: Debian's python3-torch is in /usr/bin
torchpy=""
for p in /usr/bin/python3 python3; do
	if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import torch' >/dev/null 2>&1; then
		torchpy=$p
		break
	fi
done
echo "1..7"

# ok N DESCRIPTION / not_ok N DESCRIPTION FILE: TAP lines, a failure shows FILE
ok() { echo "ok $1 - $2"; }
not_ok() { sed 's/^/# /' "$3" | tail -40; echo "not ok $1 - $2"; fail=1; }
fail=0
quick="--quick --sizes 64,64K --subs 1,2 --iters 30"

$to "$bench" $quick >"$tmp/table" 2>"$tmp/err"
rc=$?
if [ $rc -ne 0 ]; then
	# a rare consumer exit in a baseline series under load (seen once in CI,
	# not reproduced in 70 runs): say so, and run the table once more
	sed 's/^/# first run failed: /' "$tmp/err"
	$to "$bench" $quick >"$tmp/table" 2>"$tmp/err"
	rc=$?
fi
missing=""
for want in "floor " "tensorfd " "baseline " "throughput" "issue targets" \
	"unix socket copy" "memfd per message" "eventfd" "futex" "seqpacket 1 B"; do
	grep -q "$want" "$tmp/table" || missing="$missing '$want'"
done
if [ $rc -eq 0 ] && [ -z "$missing" ]; then
	ok 1 "table run exits 0 and shows every section"
else
	cat "$tmp/err" >>"$tmp/table"
	echo "exit $rc, missing:$missing" >>"$tmp/table"
	not_ok 1 "table run exits 0 and shows every section" "$tmp/table"
fi

$to "$bench" $quick --only tensorfd,floors --json --plot "$tmp/plot.svg" >"$tmp/json" 2>"$tmp/err"
rc=$?
if [ $rc -ne 0 ]; then
	cat "$tmp/err" >>"$tmp/json"
	not_ok 2 "--json run exits 0" "$tmp/json"
elif [ -z "$py" ]; then
	ok 2 "--json run exits 0 # SKIP python3 not found to parse it"
else
	# every size for both subscriber counts and the block receiver, both touch modes
	if $py - "$tmp/json" >"$tmp/check" 2>&1 <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
rows = [r for r in d["results"] if r["kind"] == "latency" and r["group"] == "tensorfd"]
want = {(s, n, t) for s in (64, 65536) for n in (1, 2) for t in ("ends", "all")}
got = {(r["size"], r["subs"], r["touch"]) for r in rows if r["wait"] == "block"}
assert want <= got, "missing tensorfd rows: %s" % sorted(want - got)
for r in rows:
    o = r["oneway"]
    assert r["iters"] == 30 and 0 < o["p50"] <= o["p99"] <= o["p999"] <= o["max"], r
floors = {r["name"] for r in d["results"] if r["group"] == "floor"}
assert {"futex", "eventfd", "seqpacket 1 B"} <= floors, floors
assert any(t["target"] == 2 for t in d["targets"])
PY
	then
		ok 2 "--json parses and has every series"
	else
		cat "$tmp/check" "$tmp/json" >"$tmp/both"
		not_ok 2 "--json parses and has every series" "$tmp/both"
	fi
fi

if [ ! -s "$tmp/plot.svg" ]; then
	echo "no plot written" >"$tmp/perr"
	not_ok 3 "--plot writes an SVG" "$tmp/perr"
elif [ -z "$py" ]; then
	ok 3 "--plot writes an SVG # SKIP python3 not found to parse it"
elif $py -c 'import sys, xml.etree.ElementTree as E; r = E.parse(sys.argv[1]).getroot(); assert r.tag.endswith("svg") and len(r.findall(".//{http://www.w3.org/2000/svg}polyline")) >= 2' \
	"$tmp/plot.svg" >"$tmp/perr" 2>&1; then
	ok 3 "--plot writes well-formed SVG with latency lines"
else
	not_ok 3 "--plot writes well-formed SVG with latency lines" "$tmp/perr"
fi

$to "$bench" --quick --sizes 64 --only floors --include "$tmp/json" >"$tmp/inc" 2>&1
if [ $? -eq 0 ] && grep -q "included rows" "$tmp/inc" && grep -q "tensorfd topic" "$tmp/inc"; then
	ok 4 "--include merges the rows of a --json run"
else
	not_ok 4 "--include merges the rows of a --json run" "$tmp/inc"
fi

# bad input is refused, not measured
if "$bench" --sizes 0 >/dev/null 2>&1 || "$bench" --wait sometimes >/dev/null 2>&1 ||
	"$bench" --include "$tmp/nonexistent" >/dev/null 2>&1; then
	echo "a bad option was accepted" >"$tmp/bad"
	not_ok 5 "bad options exit non-zero" "$tmp/bad"
else
	ok 5 "bad options exit non-zero"
fi

if [ -z "$torchpy" ]; then
	ok 6 "torch.multiprocessing baseline merges # SKIP python3 with torch not found"
elif $to $torchpy "$s/tools/bench-torch-mp.py" --sizes 64,64K --iters 5 >"$tmp/torch.json" 2>"$tmp/terr" &&
	$to "$bench" --quick --sizes 64 --only floors --include "$tmp/torch.json" >"$tmp/tinc" 2>&1 &&
	grep -q "torch" "$tmp/tinc"; then
	ok 6 "torch.multiprocessing baseline merges"
else
	cat "$tmp/terr" "$tmp/tinc" >"$tmp/tboth" 2>/dev/null
	not_ok 6 "torch.multiprocessing baseline merges" "$tmp/tboth"
fi
# real-time mode: SCHED_FIFO children must not wait behind their spinning parent
# (--mlock is left out: under AddressSanitizer it would lock the shadow memory)
cpus=""
[ "$(nproc 2>/dev/null || echo 1)" -ge 2 ] && cpus="--cpus 0,1"
$to "$bench" --quick --sizes 64 --subs 1 --only floors,tensorfd $cpus --fifo 1 >"$tmp/rt" 2>&1
rc=$?
if [ $rc -ne 0 ] && grep -q "SCHED_FIFO.*not permitted" "$tmp/rt"; then
	ok 7 "--fifo runs # SKIP SCHED_FIFO not allowed here"
elif [ $rc -eq 0 ] && grep -q "SCHED_FIFO" "$tmp/rt" && grep -q "tensorfd topic" "$tmp/rt"; then
	ok 7 "--fifo runs to the end"
else
	echo "exit $rc" >>"$tmp/rt"
	not_ok 7 "--fifo runs to the end" "$tmp/rt"
fi
exit $fail
