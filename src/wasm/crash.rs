//! What a panic does in wasm. A Rust panic aborts (there is no unwinding in
//! wasm32 builds): the instance's stack and every object borrowed at that
//! moment stay as they were, so the instance must not be used again. The hook
//! installed here turns the panic into a JS `Error` whose message starts with
//! [`ENGINE_CRASHED`], and schedules a fresh instance of the module.
//!
//! The package's JS (npm/engine-guard.js, appended to the generated glue) does
//! the rest for every call, also for crashes that are not panics (a trap such
//! as running out of memory): the call that crashed throws that message, the
//! instance is replaced at once, every object of the crashed instance throws
//! it from then on, and new objects (`Generator.fromGguf`, `Generator.load`,
//! ...) work on the fresh instance.

use std::sync::Once;

/// How every error caused by a crash begins (also checked by npm/engine-guard.js).
pub const ENGINE_CRASHED: &str = "the engine crashed: create a new one";

/// Installs the panic hook (once per instance; a fresh instance installs its own).
pub(super) fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            // The panic's location and message, with a stack, in the console.
            console_error_panic_hook::hook(info);
            // On a thread of the pool (the multi-threaded build), for the thread waiting on it.
            crate::pool::note_panic(&info.to_string());
            wasm_bindgen::handler::schedule_reinit();
            wasm_bindgen::throw_str(&format!("{ENGINE_CRASHED} ({info})"));
        }));
    });
}
