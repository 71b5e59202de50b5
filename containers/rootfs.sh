#!/bin/bash
# Build (or reuse) the cached Debian bookworm root of the antrea image: debootstrap --variant=minbase
# from the Debian archive apt uses on this machine, plus the image's Debian packages.
# Usage: containers/rootfs.sh CACHE_DIR   -> prints the path of the cached base layer tarball.
# The cache key covers the suite, the mirror and the package list: change any and a new root is
# made; otherwise the existing tarball is reused (rebuilds of the image take seconds).
set -euo pipefail
cache=${1:?usage: rootfs.sh CACHE_DIR}
SUITE=bookworm
PACKAGES=(openvswitch-switch openvswitch-common iptables iproute2 iputils-arping kmod
          python3 python3-venv ca-certificates)

mirror() {
  local uri
  uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
    uri=$(awk '$1 == "deb" && $0 ~ /bookworm/ {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' /etc/apt/sources.list)
  fi
  echo "${uri:-http://deb.debian.org/debian}"
}

MIRROR=$(mirror)
key=$(printf '%s\n' "$SUITE" minbase "$MIRROR" "${PACKAGES[@]}" | sha256sum | cut -c1-16)
out="$cache/base-$key.tar"
if [ -s "$out" ]; then
  echo "$out"
  exit 0
fi
command -v debootstrap >/dev/null || { echo "rootfs: debootstrap is not installed (bin/setup installs it)" >&2; exit 1; }
mkdir -p "$cache"
# One debootstrap at a time per cache (concurrent builds share the .deb cache); a build that
# waited finds the root made by the other.
exec 9>"$cache/.rootfs.lock"
flock 9
if [ -s "$out" ]; then
  echo "$out"
  exit 0
fi
work=$(mktemp -d "$cache/root.XXXXXX")
cleanup() {
  for m in proc sys dev/pts dev; do umount -l "$work/root/$m" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
echo "rootfs: debootstrap $SUITE (minbase) from $MIRROR" >&2
include=$(IFS=,; echo "${PACKAGES[*]}")
mkdir -p "$cache/debs"
debootstrap --variant=minbase --cache-dir="$cache/debs" --include="$include" "$SUITE" "$work/root" "$MIRROR" >"$work/debootstrap.log" 2>&1 \
  || { tail -30 "$work/debootstrap.log" >&2; echo "rootfs: debootstrap failed" >&2; exit 1; }
# Slim the root: apt lists and caches, docs, man pages, locales other than C (the image never
# runs apt), and the machine-specific files the runtime provides.
rm -rf "$work/root/var/lib/apt/lists/"* "$work/root/var/cache/apt/"*.bin "$work/root/var/cache/apt/archives/"*.deb \
       "$work/root/usr/share/doc" "$work/root/usr/share/man" "$work/root/usr/share/info" \
       "$work/root/var/log/"*.log "$work/root/var/cache/debconf/"*-old
find "$work/root/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name 'locale.alias' -exec rm -rf {} + 2>/dev/null || true
: >"$work/root/etc/machine-id"
rm -f "$work/root/etc/hostname" "$work/root/etc/resolv.conf"
PYTHONPATH="$(dirname "$0")/../src" python3 -c 'import sys; from antrea.util.oci import tar_tree; tar_tree(sys.argv[1], sys.argv[2])' "$work/root" "$work/base.tar"
mv "$work/base.tar" "$out"
echo "$out"
