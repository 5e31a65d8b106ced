#!/usr/bin/env bash
# Installs what the demo and the tests need on a fresh machine, skipping
# whatever is already there: the real model, and (once present) the wasm
# toolchain, Chromium and the npm packages.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo >/dev/null || { echo "setup: cargo not found; install Rust with rustup first" >&2; exit 1; }
bash scripts/fetch-model.sh
if [ -f scripts/setup-wasm.sh ]; then
  bash scripts/setup-wasm.sh
fi
