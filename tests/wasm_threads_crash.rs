//! A panic on a thread of the multi-threaded build's pool reaches the call that
//! waits for it, as a panic of its own (the wasm panic hook turns that into the
//! engine's crash error), instead of leaving the call waiting forever. Its own
//! test binary: the panic ends the module instance it happens in.
#![cfg(all(target_arch = "wasm32", feature = "threads"))]

use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;

use kvcache_wasm::pool;
use kvcache_wasm::wasm::init_thread_pool;

mod wasm_common;

wasm_bindgen_test_configure!(run_in_dedicated_worker);

#[wasm_bindgen_test]
#[should_panic(expected = "a thread of the pool panicked")]
async fn a_panic_on_the_pool_reaches_the_waiting_call() {
    JsFuture::from(init_thread_pool(2)).await.unwrap();
    assert_eq!(pool::threads(), 2, "the pool has started");
    // The package's panic hook (installed by its every constructor) notes a pool thread's panic;
    // the test harness's own hook runs first, to see the message the test expects.
    let harness = std::panic::take_hook();
    let g = wasm_common::tiny_llama();
    assert!(g.is_ok());
    let package = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        harness(info);
        package(info);
    }));
    pool::on_pool(|| panic!("on purpose, on a thread of the pool"));
}
