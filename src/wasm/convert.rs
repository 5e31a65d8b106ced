//! JS values in and out of the engine. Options objects are read into the
//! engine's option structs (the checks themselves live in [`crate::options`],
//! shared with the CLI), with a message naming the call and the option that is
//! wrong; results go back as plain JS objects.

use js_sys::{Function, Object, Reflect};
use serde::de::DeserializeOwned;
use serde::Serialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use crate::error::Error;
use crate::generate::{GenerateOptions, TokenEvent};
use crate::options::{check_keys, ModelOptions, RunOptions};

/// Reads an options object: `undefined`/`null` are the defaults; keys other
/// than `T`'s and the named `extra` ones (callbacks) throw.
fn read_options<T: DeserializeOwned + Default>(
    what: &str,
    value: &JsValue,
    keys: &[&str],
    extra: &[&str],
) -> Result<T, Error> {
    if value.is_undefined() || value.is_null() {
        return Ok(T::default());
    }
    if !value.is_object() || value.is_function() || js_sys::Array::is_array(value) {
        return Err(Error::invalid(format!(
            "{what} options must be an object, got {}",
            value.js_typeof().as_string().unwrap_or_default()
        )));
    }
    let present: Vec<String> = Object::keys(value.unchecked_ref::<Object>())
        .iter()
        .filter_map(|key| key.as_string())
        .collect();
    check_keys(what, &present, &[keys, extra].concat())?;
    serde_path_to_error::deserialize(serde_wasm_bindgen::Deserializer::from(value.clone()))
        .map_err(|e| Error::invalid(format!("{what} option `{}`: {}", e.path(), e.inner())))
}

pub(super) fn model_options(
    what: &str,
    value: &JsValue,
    extra: &[&str],
) -> Result<ModelOptions, Error> {
    read_options(what, value, ModelOptions::KEYS, extra)
}

pub(super) fn run_options(
    what: &str,
    value: &JsValue,
    extra: &[&str],
) -> Result<GenerateOptions, Error> {
    read_options::<RunOptions>(what, value, RunOptions::KEYS, extra)?.generate_options()
}

/// `encode`'s options: `{ special }`.
#[derive(serde::Deserialize, Default)]
struct EncodeOptions {
    special: Option<bool>,
}

/// Whether `encode` adds the special tokens a prompt starts with.
pub(super) fn encode_special(options: &JsValue) -> Result<bool, Error> {
    let options: EncodeOptions = read_options("encode", options, &["special"], &[])?;
    Ok(options.special.unwrap_or(false))
}

/// The function under `key`, if any.
pub(super) fn callback(options: &JsValue, key: &str) -> Result<Option<Function>, Error> {
    let value = get(options, key);
    if value.is_undefined() || value.is_null() {
        return Ok(None);
    }
    value
        .dyn_into::<Function>()
        .map(Some)
        .map_err(|_| Error::invalid(format!("option `{key}` must be a function")))
}

/// The boolean under `key`, if any.
pub(super) fn flag(options: &JsValue, key: &str) -> Result<Option<bool>, Error> {
    let value = get(options, key);
    if value.is_undefined() || value.is_null() {
        return Ok(None);
    }
    value
        .as_bool()
        .map(Some)
        .ok_or_else(|| Error::invalid(format!("option `{key}` must be true or false")))
}

fn get(object: &JsValue, key: &str) -> JsValue {
    if object.is_object() {
        Reflect::get(object, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
    } else {
        JsValue::UNDEFINED
    }
}

/// A plain JS object (`null` for `None`, arrays for `Vec`s).
pub(super) fn to_js<T: Serialize + ?Sized>(value: &T) -> Result<JsValue, JsValue> {
    value
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(Into::into)
}

pub(super) fn event_to_js(event: Option<TokenEvent>) -> Result<JsValue, JsValue> {
    event.map_or(Ok(JsValue::NULL), |event| to_js(&event))
}
