#!/bin/sh
# SPDX-License-Identifier: MIT
# The dma-buf tests on a real kernel: boot a Debian 6.12 kernel (udmabuf and
# the system DMA heap built in, vgem as a module) under QEMU's software
# emulation (TCG: this machine's /dev/kvm cannot run stock kernels) with an
# initramfs holding busybox, the vgem module and its dependencies, and the
# statically linked test programs (tests/vm/Makemodule.am); each program's
# TAP lines come back through the serial console and are renumbered into
# one stream here, so each test counts. The io_uring tests run too, on a
# second kernel version.
#
# Needs: qemu-system-x86_64, busybox (static), cpio, gzip, and a kernel in
# the cache ($TFD_VM_CACHE, default ~/.cache/tensorfd-vm) put there by
# tests/vm/fetch-kernel.sh (make check does not download; set
# TFD_VM_FETCH=1 to let it). Without them the test is skipped, with the
# reason. TFD_VM_TIMEOUT bounds the VM (default 300 s).
set -u
builddir=${top_builddir:-.}
srcdir=${top_srcdir:-.}
cache=${TFD_VM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tensorfd-vm}
qemu=${QEMU_SYSTEM:-$(command -v qemu-system-x86_64 || true)}
busybox=$(command -v busybox || true)
tests=${VM_TESTS:-tests/vm/dmabuf}

skip() {
	echo "1..0 # SKIP $*"
	exit 0
}

[ "$(uname -m)" = x86_64 ] || skip "the VM test boots an x86_64 kernel"
[ "${VM_STATIC:-no}" = yes ] || skip "test programs cannot be linked statically here (sanitizer build, or no static liburing/libdrm)"
[ -n "$qemu" ] && [ -x "$qemu" ] || skip "qemu-system-x86_64 not found (apt-get install qemu-system-x86)"
[ -n "$busybox" ] || skip "busybox not found (apt-get install busybox-static)"
if ! file -L "$busybox" 2>/dev/null | grep -q 'statically linked' && ldd "$busybox" >/dev/null 2>&1; then
	skip "$busybox is not statically linked (apt-get install busybox-static)"
fi
command -v cpio >/dev/null || skip "cpio not found (apt-get install cpio)"
if ! [ -f "$cache/current" ] && [ "${TFD_VM_FETCH:-0}" = 1 ]; then
	sh "$srcdir/tests/vm/fetch-kernel.sh" >&2 || skip "fetching a kernel failed (see above)"
fi
[ -f "$cache/current" ] || skip "no kernel in $cache: run sh tests/vm/fetch-kernel.sh (or TFD_VM_FETCH=1)"
kdir=$cache/$(cat "$cache/current")
[ -f "$kdir/vmlinuz" ] || skip "$kdir/vmlinuz is missing: remove $cache and fetch again"
for t in $tests; do
	[ -x "$builddir/$t" ] || skip "$builddir/$t was not built"
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM
root=$work/root
mkdir -p "$root/bin" "$root/mod" "$root/t" "$root/proc" "$root/sys" "$root/dev" "$root/tmp"
cp "$busybox" "$root/bin/busybox"
for a in sh mount insmod cat cut sed mkdir poweroff sleep ls; do
	ln -s busybox "$root/bin/$a"
done
cp "$kdir"/mod/*.ko "$root/mod/" 2>/dev/null
cp "$srcdir/tests/vm/init" "$root/init"
chmod +x "$root/init"
: > "$root/t/list"
for t in $tests; do
	n=$(basename "$t")
	# unpacking the initramfs is slow under TCG: no debug info
	strip -o "$root/t/$n" "$builddir/$t" 2>/dev/null || cp "$builddir/$t" "$root/t/$n"
	echo "$n" >> "$root/t/list"
done
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) > "$work/initrd.gz"

start=$(date +%s)
# thread=single: with one host thread per vCPU (MTTCG) the guest kernel
# sometimes oopses at boot on an int3 left by its own code patching
# (text_poke), seen in CI; one thread for both vCPUs is as fast here.
timeout "${TFD_VM_TIMEOUT:-300}" "$qemu" -accel tcg,thread=single -cpu max -m 2560 -smp 2 -nodefaults \
	-no-user-config -display none -serial "file:$work/console" -no-reboot \
	-kernel "$kdir/vmlinuz" -initrd "$work/initrd.gz" \
	-append "console=ttyS0 panic=-1 quiet loglevel=3" </dev/null >"$work/qemu.log" 2>&1
qrc=$?
wall=$(( $(date +%s) - start ))
tr -d '\r' < "$work/console" > "$work/console.txt"
[ -n "${TFD_VM_LOG:-}" ] && cp "$work/console.txt" "$TFD_VM_LOG"

# Renumber each program's TAP lines into one stream; a program that ended
# without its plan, with more or fewer results than planned, with a bail
# out or a nonzero exit counts as a failure.
awk -v qrc="$qrc" -v wall="$wall" -v tests="$tests" '
function fail(msg) { printf "not ok %d - %s\n", ++n, msg }
function pass(msg) { printf "ok %d - %s\n", ++n, msg }
BEGIN { nt = split(tests, list, " ") }
/^@vm: KERNEL / { kernel = $3; booted = $5 }
/^@vm: DONE / { done = $4 }
/^@[a-z0-9-]+: / {
	name = substr($1, 2, length($1) - 2)
	if (name == "vm") next
	line = substr($0, length($1) + 2)
	seen[name] = 1
	if (line ~ /^EXIT /) {
		split(line, e, " ")
		rc[name] = e[2]; took[name] = e[4] - e[3]
		next
	}
	if (line ~ /^1\.\.0/) { sub(/^1\.\.0 *# *[Ss][Kk][Ii][Pp] */, "", line); printf "ok %d - %s # SKIP %s\n", ++n, name, line; skipped[name] = 1; plan[name] = 0; next }
	if (line ~ /^1\.\.[0-9]+/) { plan[name] = substr(line, 4) + 0; next }
	if (line ~ /^(not )?ok /) {
		results[name]++
		bad = line ~ /^not /
		sub(/^(not )?ok [0-9]+ *(- )?/, "", line)
		if (line ~ /^# *SKIP/) { sub(/^# */, "", line); printf "ok %d - %s # %s\n", ++n, name, line }
		else printf "%s %d - %s: %s\n", bad ? "not ok" : "ok", ++n, name, line
		if (bad) failed[name]++
		next
	}
	if (line ~ /^Bail out!/) { bailed[name] = line; next }
	if (line ~ /^#/) { sub(/^# */, "", line); printf "# %s: %s\n", name, line; next }
	printf "# %s| %s\n", name, line
}
END {
	if (!kernel) { fail("the VM booted (qemu exit " qrc ", " wall " s): no output from /init"); }
	else printf "# VM: Linux %s under QEMU TCG, /init at %.2f s of uptime, all done at %s s; %s s wall from qemu start to exit\n", kernel, booted, done, wall
	for (i = 1; i <= nt; i++) {
		t = list[i]; sub(/.*\//, "", t)
		if (!seen[t]) { fail(t ": did not run (the VM stopped early)"); continue }
		if (bailed[t]) fail(t ": " bailed[t])
		if (!(t in rc)) { fail(t ": did not finish"); continue }
		if (!(t in plan)) fail(t ": printed no plan")
		else if (!skipped[t] && plan[t] != results[t]) fail(t ": planned " plan[t] " tests, ran " results[t])
		if (rc[t] != 0 && !failed[t]) fail(t ": exit status " rc[t])
		printf "# %s: %.2f s in the VM\n", t, took[t]
	}
	if (!done) fail("the VM finished all programs (qemu exit " qrc ", " wall " s)")
	printf "1..%d\n", n
}' "$work/console.txt" > "$work/tap"
cat "$work/tap"
if ! grep -q '^@vm: KERNEL' "$work/console.txt"; then
	echo "# console tail:"; tail -30 "$work/console.txt" | sed 's/^/#   /'
	echo "# qemu:"; sed 's/^/#   /' "$work/qemu.log"
fi
exit 0
