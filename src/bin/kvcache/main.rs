//! `kvcache`: the engine from the command line (the commands are in `cli`).
//!
//! Native only. Cargo builds every binary for a target's integration tests,
//! wasm32's included, where this one is an empty `main`: nothing of the engine
//! or of clap is compiled or linked into it.

#[cfg(not(target_arch = "wasm32"))]
mod cli;

#[cfg(not(target_arch = "wasm32"))]
fn main() -> std::process::ExitCode {
    cli::main()
}

#[cfg(target_arch = "wasm32")]
fn main() {}
