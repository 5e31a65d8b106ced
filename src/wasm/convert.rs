//! JS values in and out of the engine. Every argument arrives as a `JsValue`
//! and is checked here, with a message naming the call and the argument (or
//! option) that is wrong, before anything reaches the engine: the glue that
//! wasm-bindgen generates for typed parameters would coerce or trap instead.
//!
//! Options objects are turned into JSON and deserialized into the engine's
//! option structs ([`crate::options`], shared with the CLI, holds the checks),
//! so JS and native callers go through one path and get the same messages.
//! Results go back as plain JS objects.

use js_sys::{
    Array, ArrayBuffer, BigInt, DataView, Float64Array, Function, Object, Reflect, Set,
    Uint32Array, Uint8Array,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Number, Value};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::AbortSignal;

use super::js_bytes::JsBytes;
use crate::error::Error;
use crate::generate::{ChatOptions, RunOptions, Score, TokenEvent};
use crate::options::{check_keys, js_number, ModelOptions, PrefillOptions};

/// How deep an options object may nest (they are flat today; this only stops
/// a cyclic object from recursing forever).
const MAX_DEPTH: usize = 8;

/// 2^53: every whole number up to this is exact in a JS number.
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_992.0;

/// What a JS value is, for messages: `number 5`, `string "2"`, `an array`,
/// `a Set`, `a Uint8Array`, `an object`, ...
fn describe(value: &JsValue) -> String {
    if value.is_undefined() {
        "undefined".into()
    } else if value.is_null() {
        "null".into()
    } else if let Some(b) = value.as_bool() {
        format!("boolean {b}")
    } else if let Some(n) = value.as_f64() {
        format!("number {}", js_number(n))
    } else if let Some(s) = value.as_string() {
        format!("string {}", shortened(&s))
    } else if let Some(n) = value.dyn_ref::<BigInt>() {
        let digits = n.to_string(10).map(String::from).unwrap_or_default();
        format!("bigint {digits}n")
    } else if value.is_symbol() {
        "a symbol".into()
    } else if Array::is_array(value) {
        "an array".into()
    } else if value.is_function() {
        "a function".into()
    } else if let Some(kind) = built_in(value) {
        let kind: String = kind.chars().take(40).collect();
        let article = match kind.starts_with(['A', 'E', 'I', 'O']) {
            true => "an",
            false => "a",
        };
        format!("{article} {kind}")
    } else {
        "an object".into()
    }
}

/// `s` quoted, cut after 40 characters.
fn shortened(s: &str) -> String {
    let shown: String = s.chars().take(40).collect();
    let more = if shown.len() < s.len() { "..." } else { "" };
    format!("{shown:?}{more}")
}

/// The kind of a JS object that is not a plain one, as `Object.prototype.toString` names it
/// (`Set`, `Map`, `Uint8Array`, `Date`, `Promise`, ...); `None` for a plain object (or an
/// instance of a class of the caller's), which is read key by key.
fn built_in(value: &JsValue) -> Option<String> {
    if !value.is_object() {
        return None;
    }
    // `Object.prototype.toString.call(value)` is "[object Set]", "[object Object]", ...
    let prototype = Object::get_prototype_of(&Object::new().into());
    let to_string: Function = Reflect::get(&prototype, &"toString".into())
        .ok()?
        .dyn_into()
        .ok()?;
    let tag = to_string.call0(value).ok()?.as_string()?;
    let kind = tag.strip_prefix("[object ")?.strip_suffix(']')?;
    (kind != "Object").then(|| kind.to_string())
}

/// The items of a JS value that an options array accepts: an `Array`, a typed array (not a
/// `DataView`, whose bytes are not items) or a `Set` (its items in insertion order).
fn items(value: &JsValue) -> Option<Array> {
    if Array::is_array(value) {
        Some(value.clone().unchecked_into())
    } else if ArrayBuffer::is_view(value) && !value.is_instance_of::<DataView>() {
        Some(Array::from(value))
    } else {
        value.dyn_ref::<Set>().map(|set| Array::from(set))
    }
}

/// A string argument.
pub(super) fn string(value: &JsValue, what: &str) -> Result<String, Error> {
    value
        .as_string()
        .ok_or_else(|| Error::invalid(format!("{what} must be a string, got {}", describe(value))))
}

/// A boolean argument (no truthiness: `"no"` is refused, not `true`).
pub(super) fn boolean(value: &JsValue, what: &str) -> Result<bool, Error> {
    value.as_bool().ok_or_else(|| {
        Error::invalid(format!(
            "{what} must be true or false, got {}",
            describe(value)
        ))
    })
}

/// A whole number (of either sign, exact in a JS number).
pub(super) fn integer(value: &JsValue, what: &str) -> Result<i64, Error> {
    match value.as_f64() {
        Some(n) if n.fract() == 0.0 && n.abs() <= MAX_SAFE_INTEGER => Ok(n as i64),
        _ => Err(Error::invalid(format!(
            "{what} must be a whole number, got {}",
            describe(value)
        ))),
    }
}

/// A whole number in `min..=max`.
pub(super) fn whole(value: &JsValue, what: &str, min: u64, max: u64) -> Result<u64, Error> {
    let n = integer(value, what)?;
    if n < 0 || (n as u64) < min || n as u64 > max {
        return Err(Error::invalid(format!(
            "{what} must be from {min} to {max}, got {n}"
        )));
    }
    Ok(n as u64)
}

/// A count of tokens or steps (`what` names it), at least 1.
pub(super) fn count(value: &JsValue, what: &str) -> Result<usize, Error> {
    Ok(whole(value, what, 1, u32::MAX as u64)? as usize)
}

/// A `Uint8Array` (or an `ArrayBuffer`), left where it is in JS memory.
pub(super) fn js_bytes(value: &JsValue, what: &str) -> Result<JsBytes, Error> {
    if let Some(array) = value.dyn_ref::<Uint8Array>() {
        Ok(JsBytes::new(array.clone()))
    } else if let Some(buffer) = value.dyn_ref::<ArrayBuffer>() {
        Ok(JsBytes::new(Uint8Array::new(buffer)))
    } else {
        Err(Error::invalid(format!(
            "{what} must be a Uint8Array (or an ArrayBuffer), got {}",
            describe(value)
        )))
    }
}

/// Bytes from a `Uint8Array` (or an `ArrayBuffer`), copied into wasm memory
/// with a fallible allocation: a model file is legitimately large, and running
/// out of memory is an error, not a crash.
pub(super) fn bytes(value: &JsValue, what: &str) -> Result<Vec<u8>, Error> {
    js_bytes(value, what)?.copied(what)
}

/// Token ids: an array (or typed array) of whole numbers in `0..2^32`. Not a `Set`: the order
/// and repeats of a sequence's ids matter.
pub(super) fn token_ids(value: &JsValue, what: &str) -> Result<Vec<u32>, Error> {
    let items = match items(value) {
        Some(items) if !value.is_instance_of::<Set>() => items,
        _ => {
            return Err(Error::invalid(format!(
                "{what} must be an array of token ids (or a Uint32Array), got {}",
                describe(value)
            )))
        }
    };
    (0..items.length())
        .map(|i| {
            whole(&items.get(i), &format!("{what}[{i}]"), 0, u32::MAX as u64).map(|id| id as u32)
        })
        .collect()
}

/// The JSON of a JS options value, so that it deserializes exactly as the
/// same options written as JSON do natively. `path` names it in messages.
fn json(value: &JsValue, what: &str, path: &str, depth: usize) -> Result<Value, Error> {
    let wrong = |expected: &str| {
        Error::invalid(format!(
            "{what} option `{path}` must be {expected}, got {}",
            describe(value)
        ))
    };
    if value.is_null() {
        return Ok(Value::Null);
    }
    if let Some(b) = value.as_bool() {
        return Ok(Value::Bool(b));
    }
    if let Some(n) = value.as_f64() {
        return json_number(n).ok_or_else(|| wrong("a finite number"));
    }
    if let Some(s) = value.as_string() {
        return Ok(Value::String(s));
    }
    if depth >= MAX_DEPTH {
        return Err(Error::invalid(format!(
            "{what} option `{path}` is nested too deeply"
        )));
    }
    if let Some(items) = items(value) {
        return (0..items.length())
            .map(|i| json(&items.get(i), what, &format!("{path}[{i}]"), depth + 1))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array);
    }
    if value.is_object() && !value.is_function() && built_in(value).is_none() {
        let mut map = Map::new();
        for key in Object::keys(value.unchecked_ref::<Object>()).iter() {
            let key = key.as_string().unwrap_or_default();
            let member = get(value, &key);
            if !member.is_undefined() {
                let inner = format!("{path}.{key}");
                map.insert(key, json(&member, what, &inner, depth + 1)?);
            }
        }
        return Ok(Value::Object(map));
    }
    Err(wrong(
        "a plain value (a number, string, boolean, array or object)",
    ))
}

/// Integers stay integers (so a count of `-1` is reported as `-1`, not `-1.0`).
fn json_number(n: f64) -> Option<Value> {
    if !n.is_finite() {
        return None;
    }
    if n.fract() == 0.0 && n.abs() <= MAX_SAFE_INTEGER {
        return Some(Value::Number(Number::from(n as i64)));
    }
    Number::from_f64(n).map(Value::Number)
}

/// Reads an options object: `undefined`/`null` are the defaults; keys other
/// than `T`'s and the named `extra` ones (callbacks, read with [`callback`]
/// and [`flag`]) throw.
fn read_options<T: DeserializeOwned + Default>(
    what: &str,
    value: &JsValue,
    keys: &[&str],
    extra: &[&str],
) -> Result<T, Error> {
    if value.is_undefined() || value.is_null() {
        return Ok(T::default());
    }
    if !value.is_object() || value.is_function() || Array::is_array(value) {
        return Err(Error::invalid(format!(
            "{what} options must be an object, got {}",
            describe(value)
        )));
    }
    if built_in(value).is_some() {
        return Err(Error::invalid(format!(
            "{what} options must be a plain object, got {}",
            describe(value)
        )));
    }
    let present: Vec<String> = Object::keys(value.unchecked_ref::<Object>())
        .iter()
        .filter_map(|key| key.as_string())
        .collect();
    check_keys(what, &present, &[keys, extra].concat())?;
    let mut fields = Map::new();
    for key in present.iter().filter(|key| !extra.contains(&key.as_str())) {
        let member = get(value, key);
        if !member.is_undefined() {
            fields.insert(key.clone(), json(&member, what, key, 1)?);
        }
    }
    serde_path_to_error::deserialize(Value::Object(fields))
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
) -> Result<RunOptions, Error> {
    read_options::<PrefillOptions>(what, value, PrefillOptions::KEYS, extra)?.run_options()
}

/// Options of `chat` and `chatPrefill` (`what`): a run's (but `chat`), `reuse`, and the extra
/// keys (`onToken`).
pub(super) fn chat_options(
    what: &str,
    value: &JsValue,
    extra: &[&str],
) -> Result<ChatOptions, Error> {
    let extra = [extra, &["reuse"]].concat();
    let run: PrefillOptions = read_options(what, value, &PrefillOptions::chat_keys(), &extra)?;
    run.chat_options(flag(value, "reuse")?)
}

/// Options of `encode`.
#[derive(serde::Deserialize, Default, tsify::Tsify)]
#[serde(default)]
struct EncodeOptions {
    /// Add the special tokens a prompt starts with (the model's BOS, where it wants one). Default false.
    special: Option<bool>,
}

/// Whether `encode` adds the special tokens a prompt starts with.
pub(super) fn encode_special(options: &JsValue) -> Result<bool, Error> {
    let options: EncodeOptions = read_options("encode", options, &["special"], &[])?;
    Ok(options.special.unwrap_or(false))
}

/// The function under `key`, if any.
pub(super) fn callback(options: &JsValue, key: &str) -> Result<Option<Function>, Error> {
    instance(options, key, "a function")
}

/// The `AbortSignal` under `key`, if any.
pub(super) fn abort_signal(options: &JsValue, key: &str) -> Result<Option<AbortSignal>, Error> {
    instance(options, key, "an AbortSignal")
}

/// The `T` (`what`, for the error) under `key`, if any.
fn instance<T: JsCast>(options: &JsValue, key: &str, what: &str) -> Result<Option<T>, Error> {
    let value = get(options, key);
    if value.is_undefined() || value.is_null() {
        return Ok(None);
    }
    value.dyn_into::<T>().map(Some).map_err(|value| {
        Error::invalid(format!(
            "option `{key}` must be {what}, got {}",
            describe(&value)
        ))
    })
}

/// The boolean under `key`, if any.
pub(super) fn flag(options: &JsValue, key: &str) -> Result<Option<bool>, Error> {
    let value = get(options, key);
    if value.is_undefined() || value.is_null() {
        return Ok(None);
    }
    boolean(&value, &format!("option `{key}`")).map(Some)
}

/// A string option, `None` when absent (`undefined` or `null`).
pub(super) fn text(options: &JsValue, key: &str) -> Result<Option<String>, Error> {
    let value = get(options, key);
    if value.is_undefined() || value.is_null() {
        return Ok(None);
    }
    string(&value, &format!("option `{key}`")).map(Some)
}

/// `object[key]`, or `undefined` (also when reading it throws, as a getter may).
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

/// `{ ids: Uint32Array, nll: Float64Array, perplexity: number }`.
pub(super) fn score_to_js(score: &Score) -> Result<JsValue, JsValue> {
    let object = Object::new();
    Reflect::set(&object, &"ids".into(), &Uint32Array::from(&score.ids[..]))?;
    Reflect::set(&object, &"nll".into(), &Float64Array::from(&score.nll[..]))?;
    Reflect::set(&object, &"perplexity".into(), &score.perplexity.into())?;
    Ok(object.into())
}
