#!/usr/bin/env bash
# Fills fuzz/corpus/<target>/ with the seed inputs (the fixtures) and the
# regression inputs, for `cargo +nightly fuzz run <target> fuzz/corpus/<target>`.
set -euo pipefail
cd "$(dirname "$0")/.."
f=tests/fixtures
seed() {
  local target=$1
  shift
  mkdir -p "fuzz/corpus/$target"
  cp "$@" "fuzz/corpus/$target/"
}
seed gguf $f/tiny-llama.gguf
seed safetensors $f/tiny-llama/model.safetensors $f/tiny-gpt2/model.safetensors
seed config_json $f/tiny-llama/config.json $f/tiny-gpt2/config.json $f/llama-3.2-1b-config.json
seed tokenizer_json $f/tiny-llama/tokenizer.json $f/tiny-tokenizer.json
mkdir -p fuzz/corpus/options
printf '%s' '{"cache":"window","window":8,"maxSeqLen":32,"useCache":false,"backend":"ndarray"}' > fuzz/corpus/options/model.json
printf '%s' '{"maxTokens":3,"temperature":0.7,"topK":3,"topP":0.9,"seed":4,"stopIds":[1,2]}' > fuzz/corpus/options/run.json
for dir in fuzz/regressions/*/; do
  target=$(basename "$dir")
  find "$dir" -type f ! -name '.*' -exec cp {} "fuzz/corpus/$target/" \;
done
echo "fuzz/corpus/ ready: cargo +nightly fuzz run <target> fuzz/corpus/<target>"
