#!/usr/bin/env bash
# The WebAssembly side of the tests (run by scripts/test.sh; the tools come
# from scripts/setup-wasm.sh):
#   1. tests/wasm.rs and tests/wasm_worker.rs in headless Chromium and Firefox
#      (page and dedicated worker), release mode: the JS-facing Generator on the
#      fixtures;
#   2. the npm package build (pkg/);
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

echo "== npm package (npm run build)"
npm run build

echo "== Node import test and bundler check (npm test)"
npm test
