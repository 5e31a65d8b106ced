#!/usr/bin/env bash
# Builds the npm package `kvcache-wasm` into pkg/ (`npm run build`):
# wasm-pack for --target web (ESM + .d.ts), the `wasm-release` profile
# (opt-level 3 + fat LTO, Cargo.toml), wasm SIMD (.cargo/config.toml),
# wasm-opt -O3 from npm binaryen@132; then the multi-threaded build in
# pkg/threads/ (scripts/build-wasm-threads.sh; the package's `kvcache-wasm/threads`);
# then scripts/finish-pkg.mjs adds the package README, exports and files.
# Needs the tools of scripts/setup-wasm.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
# binaryen@132's wasm-opt, ahead of any other (Debian's 108 corrupts wasm-bindgen output).
export PATH="$PWD/node_modules/.bin:$PATH"
if [ ! -x node_modules/.bin/wasm-opt ]; then
  echo "build-wasm: node_modules/.bin/wasm-opt is missing; run npm ci (or scripts/setup-wasm.sh)" >&2
  exit 1
fi
wasm-pack build --target web --profile wasm-release --out-dir pkg "$@"
# KVCACHE_THREADS=0 skips the multi-threaded build (quicker A/B builds of the single-thread one).
if [ "${KVCACHE_THREADS:-1}" = 0 ]; then rm -rf pkg/threads; else bash scripts/build-wasm-threads.sh; fi
node scripts/finish-pkg.mjs
for wasm in pkg/kvcache_wasm_bg.wasm pkg/threads/kvcache_wasm_bg.wasm; do
  [ -f "$wasm" ] || continue
  echo "build-wasm: $wasm is $(stat -c %s "$wasm") bytes, $(gzip -9 -c "$wasm" | wc -c) gzipped"
done
