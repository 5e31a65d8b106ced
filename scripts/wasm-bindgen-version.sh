# The wasm-bindgen versions that must agree, sourced from the repository's root by
# scripts/setup-wasm.sh (which installs the CLI when they differ) and scripts/bindgen.sh (which
# refuses to build with another): the library the crate links, as Cargo.lock pins it, and the
# `wasm-bindgen` CLI on PATH (empty when missing). The CLI's output must come from the version
# the crate links: its glue and the wasm's imports change between versions.
wasm_bindgen_locked=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
wasm_bindgen_on_path=$(wasm-bindgen --version 2>/dev/null | awk '{ print $2 }' || true)
