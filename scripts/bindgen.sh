#!/usr/bin/env bash
# One build of the package's wasm: `scripts/bindgen.sh OUT_DIR [CARGO_ARG...]` (run by
# scripts/build-wasm.sh and scripts/build-wasm-threads.sh). cargo builds the library for wasm32
# with the package's profile (wasm-release, Cargo.toml) and any CARGO_ARG; then wasm-bindgen,
# at the version in Cargo.lock, replaces OUT_DIR with the ES module glue for `--target web`,
# its TypeScript declarations and the wasm. This is what `wasm-pack build --target web` runs,
# without wasm-pack (a slow install); scripts/finish-pkg.mjs writes the package's manifest.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$1
shift
source scripts/wasm-bindgen-version.sh
if [ "$wasm_bindgen_on_path" != "$wasm_bindgen_locked" ]; then
  echo "bindgen: the crate links wasm-bindgen $wasm_bindgen_locked but wasm-bindgen on PATH is '${wasm_bindgen_on_path:-missing}'; run scripts/setup-wasm.sh" >&2
  exit 1
fi
cargo build --locked --lib --target wasm32-unknown-unknown --profile wasm-release "$@"
# cargo's target directory: target/, CARGO_TARGET_DIR or a cargo config's build.target-dir.
target_dir=$(cargo metadata --locked --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
rm -rf "$out"
wasm-bindgen --target web --typescript --out-dir "$out" \
  "$target_dir/wasm32-unknown-unknown/wasm-release/kvcache_wasm.wasm"
