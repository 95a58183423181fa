#!/bin/sh
# SPDX-License-Identifier: MIT
# The topic tools against live publishers, as a user drives them from a
# shell: tensorfd-pub publishes, tensorfd-ls, -echo, -hz and -record look
# and listen, tensorfd-play publishes the recording again. Exit codes and
# messages are the documented ones; every process runs under timeout(1),
# which kills what ignores its SIGTERM.
builddir=${top_builddir:-.}
T="$builddir/tools"
n=0
fail=0
pids=

ok() {
	n=$((n + 1))
	if [ "$1" -eq 0 ]; then
		echo "ok $n - $2"
	else
		echo "not ok $n - $2"
		fail=1
	fi
}

# check NAME COMMAND...: the command's exit status is the verdict
check() {
	what=$1
	shift
	"$@" >/dev/null 2>&1
	ok $? "$what"
}

# rc_is WANT NAME COMMAND...: the command exits with WANT
rc_is() {
	want=$1 what=$2
	shift 2
	timeout -k 5 30 "$@" >"$dir/out" 2>"$dir/err"
	rc=$?
	[ $rc -eq "$want" ]
	ok $? "$what (exit $rc, want $want)"
	[ $rc -eq "$want" ] || sed 's/^/# /' "$dir/err"
}

# bg COMMAND...: run in the background; its pid in $last, its output in $lastout
bg() {
	lastout="$dir/bg.$n.$#.out"
	"$@" >"$lastout" 2>&1 &
	last=$!
	pids="$pids $last"
}

wait_socket() {
	i=0
	while [ ! -S "$TENSORFD_RUNTIME_DIR/$1.sock" ] && [ $i -lt 100 ]; do
		sleep 0.05
		i=$((i + 1))
	done
	[ -S "$TENSORFD_RUNTIME_DIR/$1.sock" ]
}

cleanup() {
	for p in $pids; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	rm -rf "$dir"
}

if ! command -v timeout >/dev/null; then
	echo "1..0 # SKIP timeout(1) not found"
	exit 0
fi
dir=$(mktemp -d /tmp/tfd-cli-XXXXXX) || exit 1
trap cleanup EXIT
TENSORFD_RUNTIME_DIR="$dir/run"
export TENSORFD_RUNTIME_DIR
mkdir -m 700 "$TENSORFD_RUNTIME_DIR"

# --- every tool: --help, bad options ---
for tool in ls echo hz pub record play; do
	rc_is 0 "tensorfd-$tool --help" "$T/tensorfd-$tool" --help
	grep -q "^usage: tensorfd-$tool" "$dir/out"
	ok $? "tensorfd-$tool --help prints its usage"
	rc_is 2 "tensorfd-$tool --no-such-option is a usage error" "$T/tensorfd-$tool" --no-such-option
done
rc_is 2 "tensorfd-pub --dtype f7 is a usage error" "$T/tensorfd-pub" --dtype f7 t
rc_is 2 "tensorfd-pub --shape 3,-1 is a usage error" "$T/tensorfd-pub" --shape 3,-1 t
rc_is 2 "tensorfd-echo ../x (bad topic name) is a usage error" "$T/tensorfd-echo" ../x

# --- typed metadata and a capture time (tests/meta-peer publishes one latched message) ---
if [ -x "$builddir/tests/meta-peer" ]; then
	bg "$builddir/tests/meta-peer" pub meta/peer
	wait_socket meta/peer
	rc_is 0 "tensorfd-echo of a message with typed metadata" "$T/tensorfd-echo" --once meta/peer
	grep -q '^  frame: -7$' "$dir/out" && grep -q '^  frame_id: "cam/' "$dir/out" &&
		grep -q '^  keyframe: true$' "$dir/out" && grep -q '^  calib: <3 bytes: 000102>$' "$dir/out" &&
		grep -q '^  none: null$' "$dir/out" && grep -q '^  exposure_s: 0.0125$' "$dir/out"
	ok $? "prints each metadata value by type"
	grep -q "^  capture time 1234.567890123 age " "$dir/out"
	ok $? "prints the capture time and its age"
	! grep -q "user_data" "$dir/out"
	ok $? "and no raw user_data line for it"
	# it exits once a subscriber came, taking its socket with it
	wait "$last"
	# through a recording and its replay, the metadata and capture time stay
	bg "$builddir/tests/meta-peer" pub meta/rec
	wait_socket meta/rec
	rc_is 0 "tensorfd-record of a message with typed metadata" \
		"$T/tensorfd-record" --count 1 -o "$dir/meta.tfd" meta/rec
	wait "$last"
	bg "$T/tensorfd-play" --wait-subscribers 1 --remap meta/rec=meta/replay "$dir/meta.tfd"
	wait_socket meta/replay
	rc_is 0 "tensorfd-echo of its replay" "$T/tensorfd-echo" --once meta/replay
	grep -q '^  frame: -7$' "$dir/out" && grep -q '^  calib: <3 bytes: 000102>$' "$dir/out" &&
		grep -q "^  capture time 1234.567890123 " "$dir/out"
	ok $? "the replayed message has its metadata and capture time"
	wait "$last"
else
	n=$((n + 1)); echo "ok $n # SKIP tests/meta-peer not built"
	n=$((n + 1)); echo "ok $n # SKIP tests/meta-peer not built"
	n=$((n + 1)); echo "ok $n # SKIP tests/meta-peer not built"
	n=$((n + 1)); echo "ok $n # SKIP tests/meta-peer not built"
	for i in 1 2 3; do n=$((n + 1)); echo "ok $n # SKIP tests/meta-peer not built"; done
fi

# --- nothing there ---
rc_is 0 "tensorfd-ls in an empty runtime directory" "$T/tensorfd-ls" --json
grep -q '"topics": \[' "$dir/out"
ok $? "its JSON has an empty topic list"
rc_is 0 "tensorfd-ls in text in an empty runtime directory" "$T/tensorfd-ls"
grep -q "^no topics in " "$dir/out"
ok $? "says 'no topics in DIR' instead of printing nothing"
rc_is 3 "tensorfd-echo on a missing topic" "$T/tensorfd-echo" --once cam/none
grep -q "no such topic cam/none" "$dir/err"
ok $? "and says 'no such topic'"
rc_is 3 "tensorfd-hz on a missing topic" "$T/tensorfd-hz" cam/none
rc_is 3 "tensorfd-record on a missing topic" "$T/tensorfd-record" -o "$dir/x.tfd" cam/none
rc_is 3 "tensorfd-ls on a named missing topic" "$T/tensorfd-ls" cam/none

# --- a live publisher ---
bg "$T/tensorfd-pub" --rate 50 --shape 3,4 --fill ramp cam/front
pub=$last
wait_socket cam/front
ok $? "tensorfd-pub made its socket"
rc_is 0 "tensorfd-ls lists it" "$T/tensorfd-ls"
grep -q "^cam/front  publisher pid $pub uid $(id -u) (\(lt-\)\{0,1\}tensorfd-pub)" "$dir/out"
ok $? "with the publisher's pid, uid and command name"
rc_is 0 "tensorfd-echo --once --stats" "$T/tensorfd-echo" --once --stats cam/front
grep -q "^seq [0-9]* timestamp [0-9]*\.[0-9]* latency [0-9.]* ms tensors 1$" "$dir/out"
ok $? "prints sequence, timestamp, latency"
grep -q "^  data: f32 shape \[3, 4\] strides \[4, 1\] cpu:0 48 bytes$" "$dir/out"
ok $? "prints the tensor's name, dtype, shape, strides, device, size"
grep -q "^    min 0 max 11 mean 5.5 nan 0$" "$dir/out"
ok $? "prints min, max, mean, NaN count"
grep -q "^    \[0, 1, 2, 3, 4, 5, 6, 7, \.\.\.\]$" "$dir/out"
ok $? "prints the first values of the tensor"
rc_is 0 "tensorfd-echo --count 3" "$T/tensorfd-echo" --count 3 cam/front
[ "$(grep -c '^seq' "$dir/out")" -eq 3 ]
ok $? "prints exactly 3 messages"

bg "$T/tensorfd-echo" --count 100000 cam/front
sub=$last
i=0
while [ $i -lt 100 ]; do
	timeout 10 "$T/tensorfd-ls" --json cam/front >"$dir/ls.json" 2>&1
	grep -q '"subscriber_count": 1' "$dir/ls.json" && break
	sleep 0.05
	i=$((i + 1))
done
grep -q '"subscriber_count": 1' "$dir/ls.json"
ok $? "tensorfd-ls --json sees one subscriber (tensorfd-ls itself is not one)"
grep -q "{\"pid\": $sub, \"uid\": $(id -u)," "$dir/ls.json"
ok $? "with the subscriber's pid and uid"
grep -q '"published": [1-9]' "$dir/ls.json" && grep -q '"state": "live"' "$dir/ls.json" &&
	grep -q '"pool": {"buffers": [1-9]' "$dir/ls.json"
ok $? "and messages published, state, pool"
kill "$sub"

rc_is 0 "tensorfd-hz --count 2" "$T/tensorfd-hz" --interval 0.3 --count 2 cam/front
[ "$(grep -c '^rate [0-9.]* Hz  latency p50 [0-9.]* ms p99 [0-9.]* ms max [0-9.]* ms  bandwidth ' "$dir/out")" -eq 2 ]
ok $? "prints one line per report when piped"
grep -q '^rate 0.00 Hz' "$dir/out"
ok $((! $?)) "and sees messages flowing"

if command -v script >/dev/null; then
	# on a terminal the report is rewritten in place: carriage return, erase line
	timeout 30 script -qec "'$T/tensorfd-hz' --interval 0.3 --count 2 cam/front" /dev/null >"$dir/tty" 2>&1
	grep -q "$(printf '\r\033')\[Krate " "$dir/tty"
	ok $? "tensorfd-hz on a terminal rewrites its line in place"
else
	n=$((n + 1))
	echo "ok $n # SKIP script(1) not found, no terminal to try tensorfd-hz on"
fi

# --- a dead publisher leaves a stale socket ---
kill -9 "$pub"
wait "$pub" 2>/dev/null
rc_is 0 "tensorfd-ls with a stale socket" "$T/tensorfd-ls"
grep -q "^cam/front  stale: " "$dir/out"
ok $? "shows it as stale"
rc_is 3 "tensorfd-echo on a stale topic" "$T/tensorfd-echo" --once cam/front
grep -q "topic cam/front has no publisher" "$dir/err"
ok $? "and says it has no publisher"
rc_is 0 "tensorfd-ls --clean" "$T/tensorfd-ls" --clean --json
[ ! -e "$TENSORFD_RUNTIME_DIR/cam/front.sock" ]
ok $? "removes the stale socket"
grep -q '"state": "removed"' "$dir/out"
ok $? "and says so"

# --- refused: the publisher allows another uid only ---
bg "$T/tensorfd-pub" --rate 50 --allow-uid $(($(id -u) + 1)) cam/guarded
wait_socket cam/guarded
rc_is 4 "tensorfd-echo refused by the publisher" "$T/tensorfd-echo" --once cam/guarded
grep -q "permission denied" "$dir/err"
ok $? "says permission denied"
rc_is 0 "tensorfd-ls with a refusing publisher" "$T/tensorfd-ls" cam/guarded
grep -q "^cam/guarded  denied: " "$dir/out"
ok $? "shows it as denied"
kill "$last"

# --- the publisher goes away under a subscriber ---
bg "$T/tensorfd-pub" --rate 100 --count 3 --wait-subscribers 1 cam/short
wait_socket cam/short
rc_is 6 "tensorfd-echo when the publisher leaves" "$T/tensorfd-echo" --count 10 cam/short
[ "$(grep -c '^seq' "$dir/out")" -eq 3 ]
ok $? "after printing the 3 messages it had"
rc_is 5 "tensorfd-echo --timeout with nothing published" "$T/tensorfd-echo" --wait --timeout 300 cam/never

# --- .npy input, C and Fortran order ---
npy() { # file descr fortran shape data(printf)
	h="{'descr': '$2', 'fortran_order': $3, 'shape': $4, }"
	pad=$((64 - (10 + ${#h} + 1) % 64))
	{
		printf '\223NUMPY\001\000'
		printf "\\$(printf %03o $(((${#h} + pad + 1) % 256)))\\$(printf %03o $(((${#h} + pad + 1) / 256)))"
		printf '%s%*s\n' "$h" $pad ''
		printf "$5"
	} >"$1"
}
npy "$dir/img.npy" '|u1' False '(2, 3)' '\000\001\002\003\004\005'
npy "$dir/f.npy" '<i2' True '(2, 3)' '\001\000\002\000\003\000\004\000\005\000\006\000'
bg "$T/tensorfd-pub" --once --wait-subscribers 1 --npy "$dir/img.npy" --npy col="$dir/f.npy" cam/npy
wait_socket cam/npy
rc_is 0 "tensorfd-echo of tensors from .npy files" "$T/tensorfd-echo" --once --stats cam/npy
grep -q "^  img: u8 shape \[2, 3\] strides \[3, 1\] cpu:0 6 bytes$" "$dir/out"
ok $? "a C-order array keeps its name, dtype and shape"
grep -q "^  col: i16 shape \[2, 3\] strides \[1, 2\] cpu:0 12 bytes$" "$dir/out"
ok $? "a Fortran-order array gets column-major strides"
[ "$(grep -c '^    min 0 max 5 mean 2.5 nan 0$\|^    min 1 max 6 mean 3.5 nan 0$' "$dir/out")" -eq 2 ]
ok $? "their values arrive"
# a strided (Fortran-order) tensor is recorded in C order
bg "$T/tensorfd-pub" --once --wait-subscribers 1 --npy col="$dir/f.npy" cam/npy2
npy2_pub=$last
wait_socket cam/npy2
rc_is 0 "tensorfd-record of a column-major tensor" "$T/tensorfd-record" --count 1 -o "$dir/f.tfd" cam/npy2
od -An -tx1 -v "$dir/f.tfd" | tr -d ' \n' | grep -q '010003000500020004000600$'
ok $? "writes its elements in C order"
wait "$npy2_pub" # gone, so its topic is free for the player
bg "$T/tensorfd-play" --wait-subscribers 1 "$dir/f.tfd"
wait_socket cam/npy2
rc_is 0 "tensorfd-echo of it replayed" "$T/tensorfd-echo" --once --stats cam/npy2
grep -q "^  col: i16 shape \[2, 3\] strides \[3, 1\] cpu:0 12 bytes$" "$dir/out" &&
	grep -q "^    min 1 max 6 mean 3.5 nan 0$" "$dir/out"
ok $? "arrives C-contiguous with its values"
printf 'not numpy' >"$dir/bad.npy"
rc_is 2 "tensorfd-pub --npy of a file that is not .npy" "$T/tensorfd-pub" --npy "$dir/bad.npy" cam/x
grep -q "not a .npy file" "$dir/err"
ok $? "says so"
rc_is 0 "tensorfd-pub --fill nan, tensorfd-echo --stats counts NaNs" sh -c \
	"'$T/tensorfd-pub' --once -S 1 --fill nan --shape 5 cam/nan & \
	 until [ -S '$TENSORFD_RUNTIME_DIR/cam/nan.sock' ]; do sleep 0.05; done; \
	 '$T/tensorfd-echo' --once --stats cam/nan | grep -q 'min - max - mean - nan 5'"

# --- record and replay ---
bg "$T/tensorfd-pub" --rate 100 --count 5 --wait-subscribers 1 --shape 2,2 --fill ramp cam/rec
bg "$T/tensorfd-pub" --rate 100 --count 5 --wait-subscribers 1 --dtype u8 --shape 3 --fill 7 cam/rec2
wait_socket cam/rec && wait_socket cam/rec2
rc_is 0 "tensorfd-record of two topics" "$T/tensorfd-record" --count 10 -o "$dir/r.tfd" cam/rec cam/rec2
[ "$(grep -c '"topic":"cam/rec"' "$dir/r.tfd")" -eq 5 ] && [ "$(grep -c '"topic":"cam/rec2"' "$dir/r.tfd")" -eq 5 ]
ok $? "writes 5 messages of each"
head -c 8 "$dir/r.tfd" | od -An -tu8 | grep -q '^ *[0-9]*[02468]$'
ok $? "the file starts with a safetensors header length"
rc_is 0 "tensorfd-record --info of the recording" "$T/tensorfd-record" --info "$dir/r.tfd"
grep -q '^messages:  10$' "$dir/out" && grep -q '^topics:    2$' "$dir/out" &&
	grep -q '^  cam/rec: 5 messages, .* Hz$' "$dir/out" && grep -q '^    data: f32 \[2, 2\]$' "$dir/out" &&
	grep -q '^  cam/rec2: 5 messages' "$dir/out" && grep -q '^    data: u8 \[3\]$' "$dir/out" &&
	grep -q '^duration:  [0-9.]* s$' "$dir/out"
ok $? "says its topics, messages, duration, rates and layouts"
bg "$T/tensorfd-play" --block --wait-subscribers 1 --rate 2 --remap cam/rec=replay/a --remap cam/rec2=replay/b "$dir/r.tfd"
wait_socket replay/a && wait_socket replay/b
bg "$T/tensorfd-echo" --count 5 --stats replay/b
echo_b=$last
echo_b_out=$lastout
rc_is 0 "tensorfd-echo of a replayed topic" "$T/tensorfd-echo" --count 5 --stats replay/a
[ "$(grep -c '^    min 0 max 3 mean 1.5 nan 0$' "$dir/out")" -eq 5 ]
ok $? "the 5 recorded messages arrive with their values"
wait "$echo_b"
ok $? "the other topic's subscriber got its 5 too"
[ "$(grep -c '^  data: u8 shape \[3\] strides \[1\] cpu:0 3 bytes$' "$echo_b_out")" -eq 5 ] &&
	[ "$(grep -c '^    min 7 max 7 mean 7 nan 0$' "$echo_b_out")" -eq 5 ]
ok $? "with its values"
bg "$T/tensorfd-pub" --rate 100 --count 2 --wait-subscribers 1 cam/brief
wait_socket cam/brief
rc_is 6 "tensorfd-record when every publisher left before the count" \
	"$T/tensorfd-record" --count 10 -o "$dir/brief.tfd" cam/brief
[ "$(grep -c '"topic":"cam/brief"' "$dir/brief.tfd")" -eq 2 ]
ok $? "keeps the 2 messages it got"
head -c 200 "$dir/r.tfd" >"$dir/cut.tfd"
rc_is 1 "tensorfd-play of a truncated file" "$T/tensorfd-play" --fast "$dir/cut.tfd"
grep -q "truncated" "$dir/err"
ok $? "says truncated"
printf '\020\000\000\000\000\000\000\000{"a":1}        ' >"$dir/junk.tfd"
rc_is 1 "tensorfd-play of a file that is not a recording" "$T/tensorfd-play" "$dir/junk.tfd"
rc_is 1 "tensorfd-record --info of a truncated file" "$T/tensorfd-record" --info "$dir/cut.tfd"

# --- dtypes and layouts the tools must survive ---
bg "$T/tensorfd-pub" --once -S 1 --dtype c128 --shape 3 --fill 2 cam/c128
wait_socket cam/c128
rc_is 0 "tensorfd-echo --stats of a c128 tensor" "$T/tensorfd-echo" --once --stats cam/c128
grep -q '^    (no statistics for c128)$' "$dir/out"
ok $? "says it has no statistics for c128, naming the dtype"
# 2^60 elements in one byte: statistics weigh the one element, they do not walk 2^60
bg "$T/tensorfd-pub" --once -S 1 --dtype u8 --shape 1152921504606846976 --strides 0 --fill 3 cam/bcast
wait_socket cam/bcast
rc_is 0 "tensorfd-echo --stats of a 2^60-element broadcast" "$T/tensorfd-echo" --once --stats cam/bcast
grep -q '^  data: u8 shape \[1152921504606846976\] strides \[0\] ' "$dir/out" &&
	grep -q '^    min 3 max 3 mean 3 nan 0$' "$dir/out"
ok $? "its statistics are those of its one value"
# elements that alias without a stride of 0: the walk is bounded by the span
bg "$T/tensorfd-pub" --once -S 1 --dtype u8 --shape 1048576,1048576,1048576 --strides 1,1,1 \
	--fill 1 cam/alias
wait_socket cam/alias
rc_is 0 "tensorfd-echo --stats of 2^60 aliasing elements" "$T/tensorfd-echo" --once --stats cam/alias
grep -q '^    min 1 max 1 mean 1 nan 0 (over 3145726 of 1152921504606846976 elements)$' "$dir/out"
ok $? "walks as many elements as the span holds, and says so"
bg "$T/tensorfd-pub" --rate 1 -S 1 --dtype f32 --shape 1024,1024,1024,1024 --strides 0,0,0,1 \
	--fill 1 cam/slow
wait_socket cam/slow
bg timeout -s KILL 30 "$T/tensorfd-echo" --count 10 --stats cam/slow
echo_slow=$last
i=0
until grep -q '^    min' "$lastout" || [ $i -ge 300 ]; do sleep 0.1; i=$((i + 1)); done
kill -INT "$echo_slow"
wait "$echo_slow"
ok $? "tensorfd-echo --stats of a broadcast stops on SIGINT, exit 0"

# --- the recorder: broadcasts, bad messages, names that need escaping ---
bg "$T/tensorfd-pub" --once -S 1 --dtype u8 --shape 1099511627776 --strides 0 --fill 3 cam/b40
wait_socket cam/b40
rc_is 0 "tensorfd-record of a 2^40-element broadcast" "$T/tensorfd-record" --count 1 -o "$dir/b40.tfd" cam/b40
[ "$(wc -c <"$dir/b40.tfd")" -lt 4096 ]
ok $? "the file holds the tensor's span, not 1 TiB"
wait "$last"
bg "$T/tensorfd-play" --wait-subscribers 1 "$dir/b40.tfd"
wait_socket cam/b40
rc_is 0 "tensorfd-echo of the broadcast replayed" "$T/tensorfd-echo" --once --stats cam/b40
grep -q '^  data: u8 shape \[1099511627776\] strides \[0\] ' "$dir/out" &&
	grep -q '^    min 3 max 3 mean 3 nan 0$' "$dir/out"
ok $? "arrives as a broadcast again, with its value"
bg "$T/tensorfd-pub" --rate 50 --dtype f32x4 --shape 2 cam/lanes
# the other topic is slower, so messages of the first come in between
bg "$T/tensorfd-pub" --rate 10 --shape 2 --fill 5 cam/good
wait_socket cam/lanes && wait_socket cam/good
rc_is 0 "tensorfd-record goes on after a message it cannot write" \
	"$T/tensorfd-record" --count 5 -o "$dir/lanes.tfd" cam/lanes cam/good
[ "$(grep -c '"topic":"cam/good"' "$dir/lanes.tfd")" -eq 5 ]
ok $? "records the other topic's 5 messages"
grep -q '^tensorfd-record: cam/lanes: skipped message [0-9]*: tensor data: dtype f32x4 has no safetensors name$' \
	"$dir/err" && grep -q '^tensorfd-record: skipped [1-9][0-9]* messages$' "$dir/err"
ok $? "says which it skipped, why, and how many"
bg "$T/tensorfd-pub" --once -S 1 --shape 2 --fill 4 --name 'a"b\c,"x":{' cam/quote
wait_socket cam/quote
rc_is 0 "tensorfd-record of a tensor whose name needs escaping" \
	"$T/tensorfd-record" --count 1 -o "$dir/quote.tfd" cam/quote
wait "$last"
bg "$T/tensorfd-play" --wait-subscribers 1 "$dir/quote.tfd"
wait_socket cam/quote
rc_is 0 "tensorfd-echo of it replayed" "$T/tensorfd-echo" --once --stats cam/quote
grep -q '^  a"b\\c,"x":{: f32 shape \[2\]' "$dir/out" && grep -q '^    min 4 max 4 mean 4' "$dir/out"
ok $? "the name arrives whole, with its value"

# --- the player refuses what it cannot publish whole ---
# doc JSON [DATA]: a safetensors document, its header length little-endian
doc() {
	len=${#1}
	printf "\\$(printf %03o $((len % 256)))\\$(printf %03o $((len / 256)))\\000\\000\\000\\000\\000\\000"
	printf '%s' "$1"
	printf "${2:-}"
}
{
	doc '{"__metadata__":{"format":"tensorfd-record","version":"1","topics":"cam/bad"}}'
	doc '{"__metadata__":{"topic":"cam/bad","seq":"1","t_ns":"0","timestamp":"0"},"ok":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a b":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}' '\001\002'
} >"$dir/badname.tfd"
bg "$T/tensorfd-play" --wait-subscribers 1 "$dir/badname.tfd"
play_bad=$last
play_bad_out=$lastout
wait_socket cam/bad
rc_is 6 "a subscriber of a message tensorfd-play cannot publish gets none" \
	"$T/tensorfd-echo" --once cam/bad
wait "$play_bad"
[ $? -eq 1 ] && grep -q "tensor 'a b'" "$play_bad_out"
ok $? "tensorfd-play exits 1 and says which tensor"

echo "1..$n"
exit $fail
