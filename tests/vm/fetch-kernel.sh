#!/bin/sh
# SPDX-License-Identifier: MIT
# Fetch a Debian 6.12 kernel for the dma-buf VM tests (tests/vm/run.sh) and
# keep only what the VM needs: vmlinuz and the vgem module with its
# dependencies, decompressed (busybox insmod reads plain .ko files).
#
#   sh tests/vm/fetch-kernel.sh            fetch into the cache, unless there
#
# The cache is $TFD_VM_CACHE, by default ${XDG_CACHE_HOME:-~/.cache}/tensorfd-vm,
# outside the source tree so later runs do not download again. The package
# comes from bookworm-backports through a private apt configuration under
# the cache (the system's apt setup is not touched); the version is resolved
# through linux-image-amd64's dependency, never hard-coded. The 6.12 kernels
# have udmabuf and the system DMA heap built in and ship vgem as a module.
# The mirror is $TFD_VM_MIRROR, else the one this machine's apt already uses
# for the suite's release (bookworm; sources.list or deb822 .sources files,
# as apt itself reads them): no host is named here.
# Needs apt-get and dpkg-deb (Debian or Ubuntu); no root needed.
set -eu
cache=${TFD_VM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tensorfd-vm}
suite=${TFD_VM_SUITE:-bookworm-backports}
mods="drm drm_kms_helper drm_shmem_helper vgem udmabuf"
# vivid, the virtual V4L2 camera, and its dependencies in load order
mods="$mods mc videobuf2-common videodev videobuf2-v4l2 v4l2-tpg v4l2-dv-timings rc-core cec"
mods="$mods videobuf2-memops videobuf2-vmalloc videobuf2-dma-contig vivid"

if [ -f "$cache/current" ] && [ -f "$cache/$(cat "$cache/current")/vmlinuz" ] &&
	[ -f "$cache/$(cat "$cache/current")/mod/vivid.ko" ]; then
	echo "fetch-kernel: cached: $cache/$(cat "$cache/current")"
	exit 0
fi
for tool in apt-get apt-cache dpkg-deb xz; do
	command -v $tool >/dev/null || { echo "fetch-kernel: $tool is missing" >&2; exit 1; }
done

# the machine's own Debian mirror: the first that serves the suite's release
release=${suite%-backports}
mirror=${TFD_VM_MIRROR:-$(apt-get indextargets --no-release-info \
	--format '$(REPO_URI) $(RELEASE) $(TARGET_OF)' 2>/dev/null |
	awk -v r="$release" '$2 == r && $3 == "deb" { sub(/\/+$/, "", $1); print $1; exit }')}
if [ -z "$mirror" ]; then
	echo "fetch-kernel: apt here has no mirror for Debian $release; set TFD_VM_MIRROR" \
		"(a Debian archive, the one that serves $suite)" >&2
	exit 1
fi
echo "fetch-kernel: mirror $mirror"

apt=$cache/apt
mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/etc/sources.list.d" \
	"$apt/etc/preferences.d"
: > "$apt/status"
echo "deb $mirror $suite main" > "$apt/etc/sources.list"
set -- -o Dir::Etc::sourcelist="$apt/etc/sources.list" \
	-o Dir::Etc::sourceparts="$apt/etc/sources.list.d" \
	-o Dir::Etc::preferencesparts="$apt/etc/preferences.d" \
	-o Dir::State::Lists="$apt/lists" -o Dir::State::status="$apt/status" \
	-o Dir::Cache="$apt/cache" -o Debug::NoLocking=1 -o APT::Sandbox::User=root
apt-get "$@" -qq update
# linux-image-amd64 depends on exactly one versioned image package
pkg=$(apt-cache "$@" depends linux-image-amd64 | sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*\).*/\1/p' | head -1)
[ -n "$pkg" ] || { echo "fetch-kernel: cannot resolve linux-image-amd64 in $suite" >&2; exit 1; }
kver=${pkg#linux-image-}
echo "fetch-kernel: $pkg from $suite"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && apt-get "$@" -qq download "$pkg")
dpkg-deb -x "$tmp"/"$pkg"_*.deb "$tmp/root"
out=$cache/$kver
mkdir -p "$out/mod"
cp "$tmp/root/boot/vmlinuz-$kver" "$out/vmlinuz"
md=$(ls -d "$tmp/root/lib/modules/$kver" "$tmp/root/usr/lib/modules/$kver" 2>/dev/null | head -1)
for m in $mods; do
	f=$(find "$md" -name "$m.ko" -o -name "$m.ko.xz" -o -name "$m.ko.zst" | head -1)
	[ -n "$f" ] || continue	# built in (udmabuf on 6.12)
	case $f in
	*.xz) xz -dc "$f" > "$out/mod/$m.ko" ;;
	*.zst) zstd -qdc "$f" > "$out/mod/$m.ko" ;;
	*) cp "$f" "$out/mod/$m.ko" ;;
	esac
done
grep -E '^CONFIG_(UDMABUF|DMABUF_HEAPS|DMABUF_HEAPS_SYSTEM|DRM_VGEM)=' "$tmp/root/boot/config-$kver" \
	> "$out/config" || true
echo "$kver" > "$cache/current"
rm -rf "$apt/cache/archives"/*.deb
echo "fetch-kernel: cached in $out ($(du -sh "$out" | cut -f1))"
