#!/usr/bin/env bash
# The one command that shows the KV cache at work: installs what is missing,
# generates from SmolLM2-135M-Instruct with the cache on and off in the
# terminal, then builds the WebAssembly package (if src/ changed since the
# last build) and serves the page at http://localhost:8080 (PORT overrides).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release --locked --bin kvcache
MODEL=models/SmolLM2-135M-Instruct.Q4_1.gguf
PROMPT=${PROMPT:-Once upon a time}
TOKENS=${TOKENS:-64}
echo "== with the KV cache"
./target/release/kvcache generate --model "$MODEL" --prompt "$PROMPT" --max-tokens "$TOKENS"
echo "== without the KV cache (recomputes the whole sequence for every token)"
./target/release/kvcache generate --model "$MODEL" --prompt "$PROMPT" --max-tokens "$TOKENS" --no-cache
if [ -f scripts/build-wasm.sh ]; then
  wasm=pkg/kvcache_wasm_bg.wasm
  if [ ! -f "$wasm" ] || [ -n "$(find src Cargo.toml Cargo.lock .cargo -newer "$wasm" -print -quit)" ]; then
    echo "== building the WebAssembly package (npm run build)"
    npm run build
  fi
  echo "== the page: open http://localhost:${PORT:-8080} and press \"Compare both\" (Ctrl-C stops)"
  exec node scripts/serve.mjs
fi
