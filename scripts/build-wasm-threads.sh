#!/usr/bin/env bash
# Builds the multi-threaded wasm into pkg/threads/ (run by scripts/build-wasm.sh, after the
# single-thread build in pkg/; scripts/finish-pkg.mjs then completes both): the cargo feature
# `threads` (rayon's pool as Web Workers through wasm-bindgen-rayon, src/pool.rs), wasm atomics
# and a shared memory. These need the nightly toolchain named in scripts/threads-toolchain, with
# rust-src (`-Z build-std` rebuilds std with atomics; scripts/setup-wasm.sh installs it). Only a
# cross-origin isolated page can instantiate it; it starts the pool with `initThreadPool(n)`.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/node_modules/.bin:$PATH"
# Its own target directory: the flags below differ from the single-thread build's, so sharing
# one would rebuild every crate each time.
export RUSTUP_TOOLCHAIN="$(cat scripts/threads-toolchain)" CARGO_TARGET_DIR="${KVCACHE_THREADS_TARGET_DIR:-$PWD/target/wasm-threads}"
export RUSTFLAGS="$(bash scripts/threads-rustflags.sh)"
out=pkg/threads
# `test` is built beside std (nothing links it) because the threaded tests' build needs it
# (scripts/test-wasm.sh): with the same standard library, this build reuses all their crates.
wasm-pack build --target web --profile wasm-release --out-dir "$out" --no-opt -- \
  --features threads -Z build-std=panic_abort,std,test
wasm=$out/kvcache_wasm_bg.wasm
wasm-opt -O3 --enable-simd --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
  --enable-mutable-globals --enable-reference-types --enable-multivalue --enable-threads "$wasm" -o "$wasm.opt"
mv "$wasm.opt" "$wasm"
grep -q "shared:true" "$out/kvcache_wasm.js" || { echo "build-wasm-threads: the memory is not shared" >&2; exit 1; }
