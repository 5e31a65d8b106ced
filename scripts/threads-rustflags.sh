#!/usr/bin/env bash
# Prints the RUSTFLAGS of the multi-threaded wasm build (scripts/build-wasm-threads.sh, and its
# tests in scripts/test-wasm.sh). rustc passes no shared-memory flags to wasm-ld for +atomics:
# the memory is made shared and imported, and the thread-local storage symbols exported for
# wasm-bindgen's thread transform. RUSTFLAGS replaces .cargo/config.toml's flags, so getrandom's
# backend is repeated here.
flags=(
  -C target-feature=+simd128,+atomics,+bulk-memory,+mutable-globals
  -C link-arg=--shared-memory -C link-arg=--import-memory -C link-arg=--max-memory=4294967296
  -C link-arg=--export=__wasm_init_tls -C link-arg=--export=__tls_size
  -C link-arg=--export=__tls_align -C link-arg=--export=__tls_base
  --cfg 'getrandom_backend="wasm_js"'
)
echo "${flags[*]}"
