#!/usr/bin/env bash
# Installs what scripts/test-wasm.sh, the e2e tests and `npm run build` need,
# skipping what is already there (safe to run again): the wasm32 Rust target,
# the pinned nightly for the multi-threaded build, wasm-bindgen-cli at the version in
# Cargo.lock (the package's glue, scripts/bindgen.sh, and the wasm tests' runner), Debian's
# Chromium with its driver and Firefox ESR with geckodriver (from crates.io, pinned), and
# the npm dev dependencies (binaryen@132's wasm-opt, vite, the browser drivers)
# with `npm ci`.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "setup-wasm: node and npm are needed (Node 20.19 or later)" >&2
  exit 1
fi

# The downloads (Debian's browsers, the npm packages) run in the background while cargo compiles
# the tools below; their logs follow when all are done. apt stays in the foreground where it
# would ask sudo for a password.
logs=$(mktemp -d)
trap 'wait; rm -rf "$logs"' EXIT
started=()
background() { # NAME COMMAND...
  local name=$1
  shift
  echo "setup-wasm: $name in the background"
  "$@" >"$logs/$name" 2>&1 &
  started+=("$name:$!")
}

if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null || ! command -v firefox-esr >/dev/null; then
  browsers() {
    "${apt[@]}" update
    DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y chromium chromium-driver firefox-esr
  }
  if [ "$(id -u)" = 0 ]; then
    apt=(apt-get)
    background browsers browsers
  else
    apt=(sudo apt-get)
    browsers
  fi
fi

# npm ci only when node_modules is missing, older than package-lock.json, or incomplete.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ] \
  || ! npm ls --silent >/dev/null 2>&1; then
  background npm-ci npm ci --no-audit --no-fund
fi

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  rustup target add wasm32-unknown-unknown
fi

# The multi-threaded build (scripts/build-wasm-threads.sh) rebuilds std with atomics
# (-Z build-std): the nightly named in scripts/threads-toolchain, with rust-src and wasm32.
nightly=$(cat scripts/threads-toolchain)
if ! rustup component list --toolchain "$nightly" --installed 2>/dev/null | grep -q '^rust-src' \
  || ! rustup target list --toolchain "$nightly" --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  rustup toolchain install "$nightly" --profile minimal --component rust-src --target wasm32-unknown-unknown
fi

source scripts/wasm-bindgen-version.sh
if [ "$wasm_bindgen_on_path" != "$wasm_bindgen_locked" ] || ! command -v wasm-bindgen-test-runner >/dev/null; then
  # Without --locked: the way it is known to build with this toolchain.
  cargo install wasm-bindgen-cli --version "$wasm_bindgen_locked" --force
fi

# wasm-bindgen-test-runner drives Firefox through geckodriver. Unoptimized (--debug): a driver
# only relays commands, and it builds in two thirds of the time.
GECKODRIVER=0.37.1
if [ "$(geckodriver --version 2>/dev/null | awk 'NR == 1 { print $2 }')" != "$GECKODRIVER" ]; then
  cargo install geckodriver --version "$GECKODRIVER" --locked --debug
fi

status=0
for job in "${started[@]}"; do
  name=${job%%:*}
  wait "${job#*:}" || { status=$?; echo "setup-wasm: $name failed (its log below)" >&2; }
  sed "s/^/$name: /" "$logs/$name"
done
exit "$status"
