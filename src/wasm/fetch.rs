//! Downloads for `Generator.load`: every file of a model streamed with
//! progress over all of them, and kept in the browser's Cache API when this
//! context has one (secure contexts only), so the next load reads it from there.
//! An `AbortSignal` cancels a download; a file that cannot be kept (a full
//! storage quota) is reported and the load goes on.

use js_sys::{Function, Object, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    AbortSignal, Cache, CacheStorage, ReadableStreamDefaultReader, ReadableStreamReadResult,
    Response, ResponseInit,
};

use super::js_bytes::JsBytes;
use crate::budget;
use crate::error::Error;
use crate::options::RemoteModel;
use crate::weights::bytes::FileBytes;

/// Name of the browser Cache API store that `Generator.load` keeps downloads in.
pub const BROWSER_CACHE_NAME: &str = "kvcache-wasm-models-v1";

/// A model's files, downloaded. The weights (a GGUF file, or a folder's
/// `model.safetensors`) stay in JS memory, read a tensor at a time; a
/// folder's `config.json`, `tokenizer.json` and `tokenizer_config.json` (the
/// chat template, where the folder has one) are copied into wasm memory.
pub(super) enum ModelFiles {
    Gguf(JsBytes),
    HfFolder {
        config_json: String,
        tokenizer_json: String,
        tokenizer_config_json: Option<String>,
        weights: JsBytes,
    },
}

/// Whether a model needs a file, or takes it where the server has it (a 404
/// then means there is none).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Need {
    Required,
    IfPresent,
}

/// How to download, from `Generator.load`'s options.
pub(super) struct Download {
    /// `onProgress(loaded, total)`, called as bytes arrive.
    pub on_progress: Option<Function>,
    /// Read from, and keep downloads in, the browser's Cache API.
    pub browser_cache: bool,
    /// Cancels the download when it aborts.
    pub signal: Option<AbortSignal>,
    /// `onStoreError(url, error)`, called when a downloaded file could not be kept.
    pub on_store_error: Option<Function>,
}

/// Downloads the files of the model at `source`, reporting progress over all of them.
pub(super) async fn download(source: &RemoteModel, how: &Download) -> Result<ModelFiles, JsValue> {
    match source {
        RemoteModel::Gguf(file) => {
            let [file] = fetch_all([(file.as_str(), Need::Required)], how).await?;
            Ok(ModelFiles::Gguf(file.expect("a required file")))
        }
        RemoteModel::HfFolder {
            config,
            weights,
            tokenizer,
            tokenizer_config,
        } => {
            let files = [
                (config.as_str(), Need::Required),
                (tokenizer.as_str(), Need::Required),
                (tokenizer_config.as_str(), Need::IfPresent),
                (weights.as_str(), Need::Required),
            ];
            let [config_json, tokenizer_json, tokenizer_config_json, weights] =
                fetch_all(files, how).await?;
            let required = |bytes: Option<JsBytes>| bytes.expect("a required file");
            let text = |bytes: JsBytes, url: &str| utf8(bytes.copied(url)?, url);
            Ok(ModelFiles::HfFolder {
                config_json: text(required(config_json), config)?,
                tokenizer_json: text(required(tokenizer_json), tokenizer)?,
                tokenizer_config_json: tokenizer_config_json
                    .map(|bytes| text(bytes, tokenizer_config))
                    .transpose()?,
                weights: required(weights),
            })
        }
    }
}

fn utf8(bytes: Vec<u8>, url: &str) -> Result<String, Error> {
    String::from_utf8(bytes).map_err(|_| Error::invalid(format!("{url} is not UTF-8 text")))
}

/// What a JS exception says, for our own messages.
fn message(error: &JsValue) -> String {
    match error.dyn_ref::<js_sys::Error>() {
        Some(e) => String::from(e.message()),
        None => error.as_string().unwrap_or_else(|| format!("{error:?}")),
    }
}

/// The error a cancelled download rejects with: an `Error` named `AbortError`,
/// like the one `fetch` throws.
fn cancelled(url: &str) -> JsValue {
    let error = js_sys::Error::new(&format!("the download of {url} was cancelled"));
    error.set_name("AbortError");
    error.into()
}

/// Fails with [`cancelled`] once `signal` has aborted.
fn check_signal(signal: Option<&AbortSignal>, url: &str) -> Result<(), JsValue> {
    match signal {
        Some(signal) if signal.aborted() => Err(cancelled(url)),
        _ => Ok(()),
    }
}

/// Downloads every file in turn, reporting progress over all of them, through
/// the browser cache when there is one: each file's body, `None` for a file
/// [`Need::IfPresent`] that the server does not have. A failure names the URL.
async fn fetch_all<const N: usize>(
    files: [(&str, Need); N],
    how: &Download,
) -> Result<[Option<JsBytes>; N], JsValue> {
    let signal = how.signal.as_ref();
    let cache = if how.browser_cache {
        open_cache().await
    } else {
        None
    };
    let mut responses = Vec::new();
    for (url, need) in files {
        let cached = match &cache {
            Some(cache) => cached(cache, url).await,
            None => None,
        };
        let from_cache = cached.is_some();
        check_signal(signal, url)?;
        let response = match cached {
            Some(response) => Some(response),
            None => fetch(url, need, signal).await?,
        };
        responses.push((url, response, from_cache));
    }
    let lengths: Option<Vec<f64>> = responses
        .iter()
        .filter_map(|(_, r, _)| r.as_ref())
        .map(content_length)
        .collect();
    let total = lengths.map(|l| l.iter().sum::<f64>());
    let mut loaded = 0.0;
    let mut bodies = std::array::from_fn(|_| None);
    for (body, (url, response, from_cache)) in bodies.iter_mut().zip(responses) {
        let Some(response) = response else {
            continue;
        };
        let bytes = read_body(url, &response, signal, &mut |chunk| {
            loaded += chunk as f64;
            match &how.on_progress {
                Some(f) => f
                    .call2(
                        &JsValue::NULL,
                        &loaded.into(),
                        &total.map_or(JsValue::UNDEFINED, JsValue::from),
                    )
                    .map(|_| ()),
                None => Ok(()),
            }
        })
        .await?;
        if let (Some(cache), false) = (&cache, from_cache) {
            if let Err(error) = store(cache, url, bytes.array()).await {
                if let Some(f) = &how.on_store_error {
                    f.call2(&JsValue::NULL, &url.into(), &error)?;
                }
            }
        }
        *body = Some(bytes);
    }
    Ok(bodies)
}

/// The response for `url`; `None` for a file [`Need::IfPresent`] that the
/// server answers with 404 Not Found.
async fn fetch(
    url: &str,
    need: Need,
    signal: Option<&AbortSignal>,
) -> Result<Option<Response>, JsValue> {
    let global = js_sys::global();
    let fail = |why: String| -> JsValue {
        // A path, or a `file:` URL where fetch has none (Node): say what takes a file.
        let hint = if why.contains("parse URL") || url.starts_with("file:") {
            " (load() downloads a URL; for a file on disk, read its bytes and use \
             Generator.fromGguf or Generator.fromHfFiles)"
        } else {
            ""
        };
        Error::Download(format!("fetching {url}: {why}{hint}")).into()
    };
    let fetch: Function = Reflect::get(&global, &"fetch".into())
        .ok()
        .and_then(|f| f.dyn_into().ok())
        .ok_or_else(|| fail("this environment has no fetch()".into()))?;
    let init = Object::new();
    if let Some(signal) = signal {
        Reflect::set(&init, &"signal".into(), signal)?;
    }
    let promise: js_sys::Promise = fetch
        .call2(&global, &url.into(), &init)
        .map_err(|e| fail(message(&e)))?
        .unchecked_into();
    let response: Response = JsFuture::from(promise)
        .await
        .map_err(|e| {
            check_signal(signal, url)
                .err()
                .unwrap_or_else(|| fail(message(&e)))
        })?
        .unchecked_into();
    if need == Need::IfPresent && response.status() == 404 {
        return Ok(None);
    }
    if !response.ok() {
        return Err(fail(format!(
            "HTTP {} {}",
            response.status(),
            response.status_text()
        )));
    }
    Ok(Some(response))
}

fn content_length(response: &Response) -> Option<f64> {
    response
        .headers()
        .get("content-length")
        .ok()
        .flatten()?
        .trim()
        .parse()
        .ok()
}

/// Reads a response's body into a JS buffer, calling `on_chunk` with each
/// chunk's length; stops (and cancels the stream) when it fails or `signal` aborts.
async fn read_body(
    url: &str,
    response: &Response,
    signal: Option<&AbortSignal>,
    on_chunk: &mut dyn FnMut(usize) -> Result<(), JsValue>,
) -> Result<JsBytes, JsValue> {
    let fail = |e: JsValue| -> JsValue {
        check_signal(signal, url)
            .err()
            .unwrap_or_else(|| Error::Download(format!("reading {url}: {}", message(&e))).into())
    };
    let what = format!("downloading {url}");
    // Content-Length comes from the server: checked against the budget before allocating.
    let length = content_length(response).filter(|l| l.is_finite() && *l >= 0.0);
    let mut bytes = room(None, 0, length.unwrap_or(0.0) as u64, &what)?;
    let mut len = 0;
    let Some(body) = response.body() else {
        return Ok(bytes.truncated(len));
    };
    let reader: ReadableStreamDefaultReader = body.get_reader().unchecked_into();
    loop {
        let result: ReadableStreamReadResult = JsFuture::from(reader.read())
            .await
            .map_err(fail)?
            .unchecked_into();
        if result.get_done().unwrap_or(false) {
            break;
        }
        let chunk: Uint8Array = result.get_value().unchecked_into();
        let more = chunk.length() as usize;
        if len + more > bytes.len() {
            bytes = room(Some(&bytes.truncated(len)), len, more as u64, &what)?;
        }
        bytes.write(len, &chunk);
        len += more;
        if let Err(e) = on_chunk(more).and(check_signal(signal, url)) {
            let _ = reader.cancel();
            return Err(e);
        }
    }
    Ok(bytes.truncated(len))
}

/// A buffer with room for `more` bytes after the first `len`, holding `old`'s
/// bytes: twice as large as before (so that chunks do not reallocate each
/// time) within the memory budget, since the weights made from a file take
/// about as much wasm memory as the file.
fn room(old: Option<&JsBytes>, len: usize, more: u64, what: &str) -> Result<JsBytes, JsValue> {
    let wanted = (len as u64).checked_add(more);
    budget::check(what, wanted)?;
    let wanted = wanted.unwrap_or(u64::MAX) as usize;
    let doubled = old.map_or(0, |old| old.len().saturating_mul(2));
    let size = wanted
        .max(doubled)
        .min(budget::MEMORY_BUDGET_BYTES.min(usize::MAX as u64) as usize);
    let bytes = JsBytes::zeroed(size, what)?;
    if let Some(old) = old {
        bytes.write(0, old.array());
    }
    Ok(bytes)
}

/// The browser's Cache API store, if this context has one (secure contexts only).
async fn open_cache() -> Option<Cache> {
    let caches: CacheStorage = Reflect::get(&js_sys::global(), &"caches".into())
        .ok()?
        .dyn_into()
        .ok()?;
    JsFuture::from(caches.open(BROWSER_CACHE_NAME))
        .await
        .ok()?
        .dyn_into()
        .ok()
}

async fn cached(cache: &Cache, url: &str) -> Option<Response> {
    let found = JsFuture::from(cache.match_with_str(url)).await.ok()?;
    found.dyn_into::<Response>().ok().filter(Response::ok)
}

/// Keeps a download in the browser's cache. A refused write (a full storage
/// quota: a `QuotaExceededError`) only costs a download next time.
async fn store(cache: &Cache, url: &str, body: &Uint8Array) -> Result<(), JsValue> {
    let headers = Object::new();
    let _ = Reflect::set(
        &headers,
        &"content-length".into(),
        &body.length().to_string().into(),
    );
    let init = ResponseInit::new();
    init.set_headers(&headers);
    let response = Response::new_with_opt_buffer_source_and_init(Some(body), &init)?;
    JsFuture::from(cache.put_with_str(url, &response)).await?;
    Ok(())
}
