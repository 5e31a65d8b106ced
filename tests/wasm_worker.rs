//! The JS-facing `Generator` inside a dedicated Web Worker (no `window`):
//! building from bytes, generating, and `load` through the worker's `fetch`
//! and Cache API.
#![cfg(target_arch = "wasm32")]

use js_sys::{Promise, Reflect, Uint8Array, JSON};
use wasm_bindgen::prelude::*;
use wasm_bindgen_test::*;

use kvcache_wasm::wasm::Generator;

mod wasm_common;
use wasm_common::{greedy_ids, CONFIG, TOKENIZER, WEIGHTS};

wasm_bindgen_test_configure!(run_in_dedicated_worker);

#[wasm_bindgen_test]
async fn generates_the_reference_ids_in_a_worker() {
    let global = js_sys::global();
    assert!(
        Reflect::get(&global, &"window".into())
            .unwrap()
            .is_undefined(),
        "this runs in a worker"
    );
    let exp = wasm_common::expected();

    let mut g = wasm_common::tiny_llama().unwrap();
    assert_eq!(greedy_ids(&mut g, &exp), exp.greedy_ids);

    // load() through a fake fetch on the worker's global scope.
    let fetch = Closure::<dyn FnMut(String) -> Promise>::new(|url: String| {
        let body: &[u8] = match url.rsplit('/').next().unwrap() {
            "config.json" => CONFIG.as_bytes(),
            "tokenizer.json" => TOKENIZER.as_bytes(),
            "model.safetensors" => WEIGHTS,
            "tokenizer_config.json" => {
                let init = web_sys::ResponseInit::new();
                init.set_status(404);
                let response: JsValue = web_sys::Response::new_with_opt_str_and_init(None, &init)
                    .unwrap()
                    .into();
                return Promise::resolve(&response);
            }
            other => panic!("unexpected request for {other}"),
        };
        let response: JsValue =
            web_sys::Response::new_with_opt_buffer_source(Some(&Uint8Array::from(body)))
                .unwrap()
                .into();
        Promise::resolve(&response)
    });
    let original = Reflect::get(&global, &"fetch".into()).unwrap();
    Reflect::set(&global, &"fetch".into(), fetch.as_ref()).unwrap();
    let loaded = Generator::load(
        "https://models.test/worker/tiny-llama/".into(),
        JSON::parse(r#"{"browserCache": false}"#).unwrap(),
    )
    .await;
    Reflect::set(&global, &"fetch".into(), &original).unwrap();
    let mut g = loaded.unwrap();
    assert_eq!(greedy_ids(&mut g, &exp), exp.greedy_ids);
}
