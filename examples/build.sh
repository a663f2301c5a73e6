#!/usr/bin/env bash
# Rebuilds the example functions and test fixtures from their C sources.
# The built .wasm files are committed, so users need no toolchain; to rebuild:
#   apt-get install -y clang lld wasi-libc libclang-rt-14-dev-wasm32
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cc() { clang --target=wasm32-wasi -O2 -s "$@"; }
cc -o "$root/examples/echo/echo.wasm" "$root/examples/echo/echo.c"
cc -o "$root/examples/primes/primes.wasm" "$root/examples/primes/primes.c"
for f in trap spin fail hog sleep dirty; do
  cc -o "$root/test/fixtures/$f.wasm" "$root/test/fixtures/$f.c"
done
# A module that declares a 1 GiB maximum memory, to test the deploy-time check.
cc -Wl,--max-memory=1073741824 -o "$root/test/fixtures/bigmax.wasm" "$root/examples/echo/echo.c"
echo "built: $(cd "$root" && ls examples/*/*.wasm test/fixtures/*.wasm | tr '\n' ' ')"
