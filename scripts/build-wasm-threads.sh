#!/usr/bin/env bash
# Builds the multi-threaded wasm into pkg/threads/ (run by scripts/build-wasm.sh after the
# single-thread build's wasm-bindgen step, beside its wasm-opt; scripts/finish-pkg.mjs then
# completes both): the cargo feature `threads` (rayon's pool as Web Workers through
# wasm-bindgen-rayon, src/pool.rs), wasm atomics and a shared memory, with the nightly
# toolchain and flags of scripts/threads-env.sh. Only a cross-origin isolated page can
# instantiate it; it starts the pool with `initThreadPool(n)`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/threads-env.sh
out=pkg/threads
bash scripts/bindgen.sh "$out" "${threads_cargo_args[@]}"
bash scripts/wasm-opt.sh "$out/kvcache_wasm_bg.wasm" --enable-threads
grep -q "shared:true" "$out/kvcache_wasm.js" || { echo "build-wasm-threads: the memory is not shared" >&2; exit 1; }
