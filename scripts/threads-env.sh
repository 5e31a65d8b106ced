# The multi-threaded wasm build's toolchain, flags and target directory, sourced by
# scripts/build-wasm-threads.sh (the package's pkg/threads/) and scripts/test-wasm.sh (its tests)
# from the repository's root. Both build with these exactly, so `npm run build` reuses every crate
# the tests compiled.
#
# The nightly named in scripts/threads-toolchain, with rust-src: `-Z build-std` rebuilds std with
# atomics (scripts/setup-wasm.sh installs it); `test` is built beside std because a test build
# needs it (nothing in the package links it).
export RUSTUP_TOOLCHAIN="$(cat scripts/threads-toolchain)"
# Its own target directory: the flags below differ from the single-thread build's, so sharing
# one would rebuild every crate each time.
export CARGO_TARGET_DIR="${KVCACHE_THREADS_TARGET_DIR:-$PWD/target/wasm-threads}"
# rustc passes no shared-memory flags to wasm-ld for +atomics: the memory is made shared and
# imported, and the thread-local storage symbols exported for wasm-bindgen's thread transform.
# RUSTFLAGS replaces .cargo/config.toml's flags, so getrandom's backend is repeated here.
rustflags=(
  -C target-feature=+simd128,+atomics,+bulk-memory,+mutable-globals
  -C link-arg=--shared-memory -C link-arg=--import-memory -C link-arg=--max-memory=4294967296
  -C link-arg=--export=__wasm_init_tls -C link-arg=--export=__tls_size
  -C link-arg=--export=__tls_align -C link-arg=--export=__tls_base
  --cfg 'getrandom_backend="wasm_js"'
)
export RUSTFLAGS="${rustflags[*]}"
unset rustflags
# The cargo arguments besides the profile (wasm-release, as the single-thread package's): the
# flex backend alone. The ndarray baseline stays in the single-thread build and natively; here it
# would be the largest crate to compile (a third of the build's time, docs/performance.md) for
# a backend that neither the page nor the bench runs on threads.
threads_cargo_args=(--no-default-features --features flex,threads -Z build-std=panic_abort,std,test)
