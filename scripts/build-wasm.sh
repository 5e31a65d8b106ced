#!/usr/bin/env bash
# Builds the npm package `kvcache-wasm` into pkg/ (`npm run build`):
# scripts/bindgen.sh (cargo and wasm-bindgen for --target web: ESM + .d.ts), the `wasm-release`
# profile (opt-level 3, one codegen unit per crate, Cargo.toml), wasm SIMD (.cargo/config.toml),
# scripts/wasm-opt.sh; then the multi-threaded build in pkg/threads/
# (scripts/build-wasm-threads.sh; the package's `kvcache-wasm/threads`);
# then scripts/finish-pkg.mjs writes the manifest and adds the package README.
# Needs the tools of scripts/setup-wasm.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x node_modules/.bin/wasm-opt ]; then
  echo "build-wasm: node_modules/.bin/wasm-opt (scripts/wasm-opt.sh) is missing; run npm ci (or scripts/setup-wasm.sh)" >&2
  exit 1
fi
bash scripts/bindgen.sh pkg "$@"
# Its wasm-opt in the background, beside the multi-threaded build and that build's own
# wasm-opt: binaryen's (npm) runs on one core, so two of them keep two cores busy.
bash scripts/wasm-opt.sh pkg/kvcache_wasm_bg.wasm &
opt=$!
status=0
# KVCACHE_THREADS=0 skips the multi-threaded build (quicker A/B builds of the single-thread one).
if [ "${KVCACHE_THREADS:-1}" = 0 ]; then rm -rf pkg/threads; else bash scripts/build-wasm-threads.sh || status=$?; fi
wait "$opt" || status=$?
[ "$status" = 0 ] || exit "$status"
node scripts/finish-pkg.mjs
for wasm in pkg/kvcache_wasm_bg.wasm pkg/threads/kvcache_wasm_bg.wasm; do
  [ -f "$wasm" ] || continue
  echo "build-wasm: $wasm is $(stat -c %s "$wasm") bytes, $(gzip -9 -c "$wasm" | wc -c) gzipped"
done
