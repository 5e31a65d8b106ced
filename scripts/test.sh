#!/usr/bin/env bash
# The one command that runs every test from a fresh clone: installs what is
# missing, then native tests (cargo), then the browser and npm-package tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "== native tests (cargo test --release)"
cargo test --release --locked
echo "== the matmuls split over threads: unit and reference tests (cargo test --release --features threads)"
cargo test --release --locked --features threads --lib --test reference --test smollm2 --test gemma3
if [ -f scripts/test-wasm.sh ]; then
  echo "== wasm, npm package and page tests"
  bash scripts/test-wasm.sh
  echo "== the demo page in headless Chromium and Firefox, and from the static build (npm run test:e2e)"
  npm run test:e2e
fi
