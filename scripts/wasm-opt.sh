#!/usr/bin/env bash
# Optimizes a wasm-bindgen output in place: `scripts/wasm-opt.sh FILE [FLAG...]` (run by
# scripts/build-wasm.sh and scripts/build-wasm-threads.sh). wasm-opt -O3 from npm binaryen@132
# (Debian's binaryen 108 corrupts wasm-bindgen output), with the features rustc enables for
# wasm32 plus SIMD (.cargo/config.toml), and any FLAG besides (the threaded build's
# --enable-threads).
set -euo pipefail
wasm_opt="$(dirname "$0")/../node_modules/.bin/wasm-opt"
wasm=$1
shift
"$wasm_opt" -O3 --enable-simd --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
  --enable-mutable-globals --enable-reference-types --enable-multivalue "$@" "$wasm" -o "$wasm.opt"
mv "$wasm.opt" "$wasm"
