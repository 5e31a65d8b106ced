#!/usr/bin/env bash
# Installs what the demo and the tests need on a fresh machine, skipping
# whatever is already there: the real models, and (once present) the wasm
# toolchain, Chromium and the npm packages. The models download in the background
# while the toolchain installs (mostly compiling); their log follows.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo >/dev/null || { echo "setup: cargo not found; install Rust with rustup first" >&2; exit 1; }
log=$(mktemp)
trap 'rm -f "$log"' EXIT
echo "setup: fetching the models in the background (scripts/fetch-model.sh)"
bash scripts/fetch-model.sh >"$log" 2>&1 &
models=$!
status=0
if [ -f scripts/setup-wasm.sh ]; then
  bash scripts/setup-wasm.sh || status=$?
fi
wait "$models" || status=$?
cat "$log"
exit "$status"
