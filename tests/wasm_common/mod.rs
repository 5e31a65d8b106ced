//! The tiny Llama fixture as the worker tests embed it (tests/wasm_worker.rs,
//! tests/wasm_threads.rs, tests/wasm_threads_crash.rs): its files, the
//! reference's prompt and greedy ids, a generator built from it, and its
//! greedy ids through the JS-facing API.
#![allow(dead_code)] // each test file uses its own part

use js_sys::{Uint8Array, JSON};
use serde::Deserialize;
use wasm_bindgen::JsValue;

use kvcache_wasm::wasm::Generator;

pub const CONFIG: &str = include_str!("../fixtures/tiny-llama/config.json");
pub const WEIGHTS: &[u8] = include_bytes!("../fixtures/tiny-llama/model.safetensors");
pub const TOKENIZER: &str = include_str!("../fixtures/tiny-llama/tokenizer.json");
const EXPECTED: &str = include_str!("../fixtures/tiny-llama/expected.json");

/// What the numpy reference wrote for the fixture (tests/fixtures/).
#[derive(Deserialize)]
pub struct Expected {
    pub prompt: String,
    pub greedy_ids: Vec<u32>,
}

pub fn expected() -> Expected {
    serde_json::from_str(EXPECTED).unwrap()
}

/// A generator of the fixture, from its three files.
pub fn tiny_llama() -> Result<Generator, JsValue> {
    Generator::from_hf_files(
        CONFIG.into(),
        Uint8Array::from(WEIGHTS).into(),
        TOKENIZER.into(),
        JsValue::UNDEFINED,
    )
}

#[derive(Deserialize)]
struct Generation {
    ids: Vec<u32>,
}

/// The first 16 greedy ids after the reference's prompt, stop ids off.
pub fn greedy_ids(g: &mut Generator, exp: &Expected) -> Vec<u32> {
    let options = JSON::parse(r#"{"maxTokens": 16, "stopIds": []}"#).unwrap();
    let out = g.generate((&exp.prompt).into(), options).unwrap();
    serde_wasm_bindgen::from_value::<Generation>(out)
        .unwrap()
        .ids
}
