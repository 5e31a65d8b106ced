//! The exported `Bench` class: the cache strategies measured on a
//! `Generator`'s model ([`crate::bench`]), apart from the `Generator` class,
//! which keeps generation and the cache only. `npm run bench` calls it in the
//! page's worker.

use wasm_bindgen::prelude::*;

use super::convert::{count, string, to_js};
use super::generator::Generator;
use crate::bench;
use crate::cache::CacheStrategy;
use crate::error::Error;

/// Measurements of the KV cache strategies (static methods only). Each uses
/// fresh caches and leaves the generator's sequence and cache as they are.
#[wasm_bindgen]
pub struct Bench {}

#[wasm_bindgen]
impl Bench {
    /// Per-token milliseconds of `generator`'s cache strategy alone (cache
    /// update plus attention, no weights) over `tokens` one-token steps from an
    /// empty cache: what the strategy itself costs as the sequence grows.
    #[wasm_bindgen(js_name = cacheCost)]
    pub fn cache_cost(
        generator: &Generator,
        #[wasm_bindgen(unchecked_param_type = "number")] tokens: JsValue,
    ) -> Result<Vec<f64>, JsValue> {
        let tokens = count(&tokens, "cacheCost: tokens")?;
        Ok(bench::cache_cost(generator.engine(), tokens)?)
    }

    /// Greedy decoding of `prompt` for `tokens` new tokens with each of the
    /// named cache strategies ("window" uses `generator.window`), taking turns
    /// token by token and timing every whole step, so that the machine's drift
    /// falls on all alike.
    #[wasm_bindgen(unchecked_return_type = "Interleaved")]
    pub fn interleaved(
        generator: &Generator,
        #[wasm_bindgen(unchecked_param_type = "string")] prompt: JsValue,
        #[wasm_bindgen(unchecked_param_type = "string[]")] caches: JsValue,
        #[wasm_bindgen(unchecked_param_type = "number")] tokens: JsValue,
    ) -> Result<JsValue, JsValue> {
        let prompt = string(&prompt, "interleaved: the prompt")?;
        if !js_sys::Array::is_array(&caches) {
            return Err(Error::invalid(
                "interleaved: caches must be an array of strategy names, e.g. [\"concat\", \"prealloc\"]",
            )
            .into());
        }
        let strategies = js_sys::Array::from(&caches)
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let name = string(&name, &format!("interleaved: caches[{i}]"))?;
                CacheStrategy::parse(&name, generator.window())
            })
            .collect::<Result<Vec<_>, Error>>()?;
        let tokens = count(&tokens, "interleaved: tokens")?;
        to_js(&bench::interleaved(
            generator.engine(),
            &prompt,
            &strategies,
            tokens,
        )?)
    }
}
