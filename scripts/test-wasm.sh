#!/usr/bin/env bash
# The WebAssembly side of the tests (run by scripts/test.sh; the tools come
# from scripts/setup-wasm.sh):
#   1. tests/wasm.rs and tests/wasm_worker.rs in headless Chromium and Firefox
#      (page and dedicated worker), release mode: the JS-facing Generator on the
#      fixtures; then the same, tests/wasm_threads.rs (the pool started in a
#      worker) and tests/wasm_threads_crash.rs (a panic on the pool) built as the
#      multi-threaded build is (scripts/build-wasm-threads.sh),
#      in both browsers again: the page loads that build where it is cross-origin
#      isolated;
#   2. the npm package build (pkg/ and pkg/threads/);
#   3. the Node test importing pkg/ as a user would, and a Vite build of a page
#      importing it (npm test).
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in wasm-pack wasm-bindgen-test-runner chromedriver geckodriver node npm; do
  command -v "$tool" >/dev/null || { echo "test-wasm: $tool not found; run scripts/setup-wasm.sh" >&2; exit 1; }
done
# Per-test budget in the browser (the runner's default, 20 s, is tight for a cold 2-core machine).
export WASM_BINDGEN_TEST_TIMEOUT="${WASM_BINDGEN_TEST_TIMEOUT:-300}"

echo "== wasm tests in headless Chromium (wasm-pack test --headless --chrome --release)"
wasm-pack test --headless --chrome --release
echo "== wasm tests in headless Firefox (wasm-pack test --headless --firefox --release)"
wasm-pack test --headless --firefox --release

threaded() {
  RUSTUP_TOOLCHAIN="$(cat scripts/threads-toolchain)" RUSTFLAGS="$(bash scripts/threads-rustflags.sh)" \
    CARGO_TARGET_DIR="${KVCACHE_THREADS_TARGET_DIR:-$PWD/target/wasm-threads}" \
    wasm-pack test --headless "$1" --release -- --features threads -Z build-std=panic_abort,std
}
echo "== the multi-threaded build's wasm tests in headless Chromium (cargo feature threads, nightly)"
threaded --chrome
echo "== the multi-threaded build's wasm tests in headless Firefox"
threaded --firefox

echo "== npm package (npm run build)"
npm run build

echo "== Node import test and bundler check (npm test)"
npm test
