#!/usr/bin/env bash
# The one command that shows the KV cache at work: installs what is missing,
# then generates from SmolLM2-135M-Instruct with the cache on and off and
# prints both timings.
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
