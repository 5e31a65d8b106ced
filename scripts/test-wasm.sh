#!/usr/bin/env bash
# The WebAssembly side of the tests (run by scripts/test.sh; the tools come
# from scripts/setup-wasm.sh):
#   1. the crate's unit tests, tests/wasm.rs and tests/wasm_worker.rs in headless
#      Chromium and Firefox (page and dedicated worker): the JS-facing Generator on
#      the fixtures; then the same, tests/wasm_threads.rs (the pool started in a
#      worker) and tests/wasm_threads_crash.rs (a panic on the pool) built as the
#      multi-threaded build is (scripts/build-wasm-threads.sh),
#      in both browsers again: the page loads that build where it is cross-origin
#      isolated;
#   2. the npm package build (pkg/ and pkg/threads/);
#   3. the Node test importing pkg/ as a user would, and a Vite build of a page
#      importing it (npm test).
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in wasm-bindgen wasm-bindgen-test-runner chromedriver geckodriver node npm; do
  command -v "$tool" >/dev/null || { echo "test-wasm: $tool not found; run scripts/setup-wasm.sh" >&2; exit 1; }
done
# Per-test budget in the browser (the runner's default, 20 s, is tight for a cold 2-core machine).
export WASM_BINDGEN_TEST_TIMEOUT="${WASM_BINDGEN_TEST_TIMEOUT:-300}"

# `cargo test` for wasm32 with wasm-bindgen-test-runner as its runner, headless in `$1` (chrome
# or firefox), over the unit tests and the suites with browser tests; the rest of the arguments
# go to cargo. This is what `wasm-pack test --headless --$1` runs, without the build of every
# test target (`cargo build --tests`) it does first: most suites are native-only.
in_browser() {
  local driver
  case "$1" in
    chrome) driver="CHROMEDRIVER=$(command -v chromedriver)" ;;
    firefox) driver="GECKODRIVER=$(command -v geckodriver)" ;;
    *) echo "test-wasm: in_browser takes chrome or firefox, not '$1'" >&2; return 1 ;;
  esac
  shift
  env "$driver" CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner WASM_BINDGEN_TEST_ONLY_WEB=1 \
    cargo test --locked --target wasm32-unknown-unknown --lib --test wasm --test wasm_worker "$@"
}
# Built with the package's profile (wasm-release), so `npm run build` below reuses
# every dependency this build compiles.
echo "== wasm tests in headless Chromium (the package's profile, wasm-release)"
in_browser chrome --profile wasm-release
echo "== wasm tests in headless Firefox"
in_browser firefox --profile wasm-release

# With the package's toolchain, flags and profile (scripts/threads-env.sh), so `npm run build`
# reuses this build's crates.
threaded() {
  (
    source scripts/threads-env.sh
    in_browser "$1" --profile wasm-release --test wasm_threads --test wasm_threads_crash "${threads_cargo_args[@]}"
  )
}
echo "== the multi-threaded build's wasm tests in headless Chromium (cargo feature threads, nightly)"
threaded chrome
echo "== the multi-threaded build's wasm tests in headless Firefox"
threaded firefox

echo "== npm package (npm run build)"
npm run build

echo "== Node import test and bundler check (npm test)"
npm test
