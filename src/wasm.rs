//! The JS API: one `Generator` class, a thin wasm-bindgen layer over
//! [`crate::Generator`]. It only reads JS values into the engine's option
//! structs ([`crate::options`], where the checks live), turns results back
//! into plain JS objects and engine errors into JS `Error`s, and fetches model
//! files for [`Generator::load`]. Everything else is the same Rust the native
//! tests drive.

use js_sys::{Function, Object, Reflect, Uint8Array};
use serde::de::DeserializeOwned;
use serde::Serialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    Cache, CacheStorage, ReadableStreamDefaultReader, ReadableStreamReadResult, Response,
    ResponseInit,
};

use crate::backend::BackendKind;
use crate::cache::CacheStrategy;
use crate::error::Error;
use crate::generate::{GenerateOptions, Generator as Engine, GeneratorOptions, TokenEvent};
use crate::load::{self, Loaded};
use crate::options::{check_keys, ModelOptions, RemoteModel, RunOptions};

/// Name of the browser Cache API store that [`Generator::load`] keeps downloads in.
pub const BROWSER_CACHE_NAME: &str = "kvcache-wasm-models-v1";

#[wasm_bindgen(typescript_custom_section)]
const TS_TYPES: &'static str = r#"
/** How to build a generator. Every key is optional; unknown keys throw. */
export interface ModelOptions {
  /** KV cache strategy (default "concat"). "window" needs `window`. */
  cache?: "concat" | "prealloc" | "window";
  /** Sliding-window size, 1..=maxSeqLen; only with cache: "window". */
  window?: number;
  /** Longest sequence, and what "prealloc" allocates (default min(model context, 1024)). */
  maxSeqLen?: number;
  /** Seed of randomGpt2's weights (default 0). */
  seed?: number;
  /** burn backend (default "flex"). */
  backend?: "flex" | "ndarray";
  /** KV cache on (default) or off. */
  useCache?: boolean;
}

/** Options of Generator.load. */
export interface LoadOptions extends ModelOptions {
  /** Called as bytes arrive; `total` is undefined when a server does not send Content-Length. */
  onProgress?: (loaded: number, total: number | undefined) => void;
  /** Keep downloads in the browser Cache API, when there is one (default true). */
  browserCache?: boolean;
}

/** Options of prefill (and generate). Every key is optional; unknown keys throw. */
export interface PrefillOptions {
  /** New tokens at most (default 64). */
  maxTokens?: number;
  /** 0 (default) is greedy; must be finite and >= 0. */
  temperature?: number;
  /** Keep the k most likely tokens; 0 (default) keeps all. */
  topK?: number;
  /** Nucleus sampling, in (0, 1] (default 1). */
  topP?: number;
  /** Sampling seed (default 0). */
  seed?: number;
  /** Token ids that end the run (not emitted); absent or null: the model's EOS ids; []: none. */
  stopIds?: number[] | Uint32Array | null;
  /** Wrap the prompt in the ChatML template (instruct models). */
  chat?: boolean;
  /** System message, with chat: true. */
  systemPrompt?: string;
}

/** Options of generate. */
export interface GenerateOptions extends PrefillOptions {
  /** Called for every token as it is produced; throwing stops the run. */
  onToken?: (token: TokenEvent) => void;
}

/** One generated token. */
export interface TokenEvent {
  id: number;
  /** The text this token completes (may be "" while a character is split across tokens). */
  text: string;
  /** Wall time of the step that produced it; the first includes the prompt's prefill. */
  ms: number;
  /** Position this token occupies in the sequence. */
  position: number;
  cacheLen: number;
  cacheBytes: number;
}

/** The summary of a run. */
export interface Generation {
  promptIds: number[];
  ids: number[];
  text: string;
  /** One per generated token; stepMs[0] is the prefill (time to first token). */
  stepMs: number[];
  prefillMs: number;
  /** Decode speed: tokens after the first over their time. */
  tokensPerSec: number;
  cacheLen: number;
  cacheBytes: number;
  stopReason: "maxTokens" | "stopToken" | "contextFull" | null;
}

/** Generator.interleaved's measurement: whole decode steps, the strategies taking turns. */
export interface Interleaved {
  /** As given; "window" shows its size, e.g. "window(64)". */
  strategies: string[];
  /** The greedy tokens, from the first strategy's logits, fed to every strategy. */
  ids: number[];
  /** Per strategy, the milliseconds of each decode step (ids.length - 1 of them; the prefill is not timed). */
  stepMs: number[][];
  /** Steps at which another strategy's logits picked a different token than the first's. */
  disagreements: number;
}

/** Model hyper-parameters (the Rust ModelConfig, keys in camelCase). */
export interface ModelConfig {
  architecture: "gpt2" | "llama";
  vocabSize: number;
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  intermediateSize: number;
  maxPositionEmbeddings: number;
  normEps: number;
  ropeTheta: number;
  ropeScaling: { type: string; factor: number; [key: string]: number | string } | null;
  qkvBias: boolean;
  tieWordEmbeddings: boolean;
  bosTokenId: number | null;
  eosTokenIds: number[];
}
"#;

impl From<Error> for JsValue {
    fn from(error: Error) -> JsValue {
        js_sys::Error::new(&error.to_string()).into()
    }
}

/// A decoder LLM with its tokenizer and KV cache. Every method throws an
/// `Error` saying what is wrong, and a failed call leaves the generator as it was.
#[wasm_bindgen]
pub struct Generator {
    inner: Engine,
    backend: BackendKind,
    /// Window size for `cacheStrategy = "window"`, remembered across strategy changes.
    window: Option<usize>,
}

#[wasm_bindgen]
impl Generator {
    /// A model from Hugging Face files: `config.json` text, `model.safetensors` bytes, `tokenizer.json` text.
    #[wasm_bindgen(js_name = fromHfFiles)]
    pub fn from_hf_files(
        config_json: &str,
        weights: Vec<u8>,
        tokenizer_json: &str,
        #[wasm_bindgen(unchecked_optional_param_type = "ModelOptions")] options: JsValue,
    ) -> Result<Generator, JsValue> {
        let options = model_options("model", &options, &[])?;
        Self::build(&options, |device| {
            load::from_hf_files(config_json, weights, tokenizer_json, device)
        })
    }

    /// A model from the bytes of a `.gguf` file (weights, config and tokenizer).
    #[wasm_bindgen(js_name = fromGguf)]
    pub fn from_gguf(
        bytes: Vec<u8>,
        #[wasm_bindgen(unchecked_optional_param_type = "ModelOptions")] options: JsValue,
    ) -> Result<Generator, JsValue> {
        let options = model_options("model", &options, &[])?;
        Self::build(&options, |device| load::from_gguf_bytes(bytes, device))
    }

    /// GPT-2 124M with seeded random weights (`options.seed`) and GPT-2's tokenizer: no files needed.
    #[wasm_bindgen(js_name = randomGpt2)]
    pub fn random_gpt2(
        #[wasm_bindgen(unchecked_optional_param_type = "ModelOptions")] options: JsValue,
    ) -> Result<Generator, JsValue> {
        let options = model_options("model", &options, &[])?;
        let seed = options.weights_seed();
        Self::build(&options, |device| load::random_gpt2(seed, device))
    }

    /// Downloads a model: a URL ending in `.gguf`, or a folder URL holding
    /// `config.json`, `model.safetensors` and `tokenizer.json`. Streams with
    /// progress and keeps the files in the browser Cache API when there is one.
    pub async fn load(
        url: String,
        #[wasm_bindgen(unchecked_optional_param_type = "LoadOptions")] options: JsValue,
    ) -> Result<Generator, JsValue> {
        let model = model_options("load", &options, &["onProgress", "browserCache"])?;
        // Check everything that can be checked before downloading anything.
        model.generator_options()?;
        model.backend()?;
        let on_progress = callback(&options, "onProgress")?;
        let browser_cache = flag(&options, "browserCache")?.unwrap_or(true);
        let source = RemoteModel::from_url(&url)?;
        let urls = match &source {
            RemoteModel::Gguf(file) => vec![file.clone()],
            RemoteModel::HfFolder {
                config,
                weights,
                tokenizer,
            } => {
                vec![config.clone(), tokenizer.clone(), weights.clone()]
            }
        };
        let mut files = fetch_all(&urls, on_progress.as_ref(), browser_cache)
            .await?
            .into_iter();
        let mut next = || files.next().expect("one body per URL");
        match source {
            RemoteModel::Gguf(_) => {
                let bytes = next();
                Self::build(&model, |device| load::from_gguf_bytes(bytes, device))
            }
            RemoteModel::HfFolder {
                config, tokenizer, ..
            } => {
                let config_json = utf8(next(), &config)?;
                let tokenizer_json = utf8(next(), &tokenizer)?;
                let weights = next();
                Self::build(&model, |device| {
                    load::from_hf_files(&config_json, weights, &tokenizer_json, device)
                })
            }
        }
    }

    /// Runs `prompt` (after whatever the sequence already holds) and then one
    /// token at a time until a stop id, `maxTokens`, or a full context.
    #[wasm_bindgen(unchecked_return_type = "Generation")]
    pub fn generate(
        &mut self,
        prompt: &str,
        #[wasm_bindgen(unchecked_optional_param_type = "GenerateOptions")] options: JsValue,
    ) -> Result<JsValue, JsValue> {
        let run = run_options("generate", &options, &["onToken"])?;
        let on_token = callback(&options, "onToken")?;
        let generation = self
            .inner
            .try_generate(prompt, &run, |event: &TokenEvent| {
                if let Some(on_token) = &on_token {
                    on_token.call1(&JsValue::NULL, &to_js(event)?)?;
                }
                Ok::<(), JsValue>(())
            })?;
        to_js(&generation)
    }

    /// Runs the prompt and returns the first new token, or null (a stop id, or maxTokens 0).
    /// Then call `step()` once per token, so a worker can yield between tokens.
    #[wasm_bindgen(unchecked_return_type = "TokenEvent | null")]
    pub fn prefill(
        &mut self,
        prompt: &str,
        #[wasm_bindgen(unchecked_optional_param_type = "PrefillOptions")] options: JsValue,
    ) -> Result<JsValue, JsValue> {
        let run = run_options("prefill", &options, &[])?;
        event_to_js(self.inner.prefill(prompt, &run)?)
    }

    /// The next token, or null once the run has stopped.
    #[wasm_bindgen(unchecked_return_type = "TokenEvent | null")]
    pub fn step(&mut self) -> Result<JsValue, JsValue> {
        event_to_js(self.inner.step()?)
    }

    /// The summary of the run started by `prefill` (complete once `step()` returned null).
    #[wasm_bindgen(unchecked_return_type = "Generation")]
    pub fn finish(&mut self) -> Result<JsValue, JsValue> {
        to_js(&self.inner.finish()?)
    }

    /// Per-token milliseconds of the current cache strategy alone (cache update
    /// plus attention, no weights) over `tokens` one-token steps from an empty
    /// cache: what the strategy itself costs as the sequence grows. Leaves this
    /// generator's sequence and cache as they are.
    #[wasm_bindgen(js_name = cacheCost)]
    pub fn cache_cost(&self, tokens: usize) -> Result<Vec<f64>, JsValue> {
        Ok(self.inner.cache_cost(tokens)?)
    }

    /// Greedy decoding of `prompt` for `tokens` new tokens with each of the named
    /// cache strategies ("window" uses `window`), taking turns token by token and
    /// timing every whole step, so that the machine's drift falls on all alike.
    /// Uses fresh caches; leaves this generator's sequence and cache as they are.
    #[wasm_bindgen(unchecked_return_type = "Interleaved")]
    pub fn interleaved(
        &self,
        prompt: &str,
        caches: Vec<String>,
        tokens: usize,
    ) -> Result<JsValue, JsValue> {
        let strategies = caches
            .iter()
            .map(|name| CacheStrategy::parse(name, self.window))
            .collect::<Result<Vec<_>, Error>>()?;
        to_js(&self.inner.interleaved(prompt, &strategies, tokens)?)
    }

    /// Empties the KV cache; position back to 0.
    pub fn reset(&mut self) {
        self.inner.reset();
    }

    /// Whether the KV cache is used (true by default); setting it resets the sequence.
    #[wasm_bindgen(getter = useCache)]
    pub fn use_cache(&self) -> bool {
        self.inner.options().use_cache
    }

    #[wasm_bindgen(setter = useCache)]
    pub fn set_use_cache(&mut self, use_cache: bool) {
        self.inner.set_use_cache(use_cache);
    }

    /// "concat", "prealloc" or "window" (which uses `window`); setting it resets the cache.
    #[wasm_bindgen(getter = cacheStrategy)]
    pub fn cache_strategy(&self) -> String {
        self.inner.options().strategy.name().to_string()
    }

    #[wasm_bindgen(setter = cacheStrategy)]
    pub fn set_cache_strategy(&mut self, name: &str) -> Result<(), JsValue> {
        if name == "window" && self.window.is_none() {
            return Err(Error::invalid(
                "the `window` cache strategy needs a window size: set `window` first (g.window = 64), or pass it in the options",
            )
            .into());
        }
        let strategy = CacheStrategy::parse(name, self.window)?;
        self.inner.set_strategy(strategy)?;
        Ok(())
    }

    /// The sliding-window size (undefined until given); setting it while the
    /// strategy is "window" resets the cache.
    #[wasm_bindgen(getter)]
    pub fn window(&self) -> Option<usize> {
        self.window
    }

    #[wasm_bindgen(setter)]
    pub fn set_window(&mut self, size: usize) -> Result<(), JsValue> {
        match self.inner.options().strategy {
            CacheStrategy::Window { .. } => {
                self.inner.set_strategy(CacheStrategy::Window { size })?
            }
            _ if size == 0 || size > self.inner.max_seq_len() => {
                return Err(Error::invalid(format!(
                    "window must be between 1 and maxSeqLen ({}), got {size}",
                    self.inner.max_seq_len()
                ))
                .into())
            }
            _ => {}
        }
        self.window = Some(size);
        Ok(())
    }

    /// Tokens the model has consumed since the last reset (the next token's position).
    #[wasm_bindgen(getter)]
    pub fn position(&self) -> usize {
        self.inner.position()
    }

    /// Tokens whose keys and values the cache holds (0 with the cache off).
    #[wasm_bindgen(getter = cacheLen)]
    pub fn cache_len(&self) -> usize {
        self.inner.cache_len()
    }

    /// Bytes the cache's buffers hold right now (for "prealloc", the whole allocation).
    #[wasm_bindgen(getter = cacheBytes)]
    pub fn cache_bytes(&self) -> usize {
        self.inner.cache_bytes()
    }

    /// 2 × layers × kvHeads × headDim × cacheLen × 4 bytes: what the textbook formula predicts.
    #[wasm_bindgen(getter = cacheBytesFormula)]
    pub fn cache_bytes_formula(&self) -> usize {
        self.inner.cache_bytes_formula()
    }

    /// Longest sequence accepted.
    #[wasm_bindgen(getter = maxSeqLen)]
    pub fn max_seq_len(&self) -> usize {
        self.inner.max_seq_len()
    }

    /// The burn backend running the model: "flex" or "ndarray".
    #[wasm_bindgen(getter)]
    pub fn backend(&self) -> String {
        self.backend.name().to_string()
    }

    /// The model's hyper-parameters, as a plain object.
    #[wasm_bindgen(getter, unchecked_return_type = "ModelConfig")]
    pub fn config(&self) -> Result<JsValue, JsValue> {
        to_js(self.inner.model().config())
    }

    /// Token ids of `text` (no special tokens added).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, JsValue> {
        Ok(self.inner.tokenizer().encode(text)?)
    }

    /// Text of token ids.
    pub fn decode(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Uint32Array | number[]")] ids: Vec<u32>,
    ) -> Result<String, JsValue> {
        Ok(self.inner.tokenizer().decode(&ids)?)
    }
}

impl Generator {
    fn build(
        options: &ModelOptions,
        load: impl FnOnce(&burn::tensor::Device) -> crate::Result<Loaded>,
    ) -> Result<Generator, JsValue> {
        console_error_panic_hook::set_once();
        let generator_options: GeneratorOptions = options.generator_options()?;
        let backend = options.backend()?;
        let inner = Engine::new(load(&backend.device())?, generator_options)?;
        Ok(Generator {
            inner,
            backend,
            window: options.window,
        })
    }
}

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

fn model_options(what: &str, value: &JsValue, extra: &[&str]) -> Result<ModelOptions, Error> {
    read_options(what, value, ModelOptions::KEYS, extra)
}

fn run_options(what: &str, value: &JsValue, extra: &[&str]) -> Result<GenerateOptions, Error> {
    read_options::<RunOptions>(what, value, RunOptions::KEYS, extra)?.generate_options()
}

/// The function under `key`, if any.
fn callback(options: &JsValue, key: &str) -> Result<Option<Function>, Error> {
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
fn flag(options: &JsValue, key: &str) -> Result<Option<bool>, Error> {
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
fn to_js<T: Serialize + ?Sized>(value: &T) -> Result<JsValue, JsValue> {
    value
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(Into::into)
}

fn event_to_js(event: Option<TokenEvent>) -> Result<JsValue, JsValue> {
    event.map_or(Ok(JsValue::NULL), |event| to_js(&event))
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

/// Downloads every URL in turn, reporting progress over all of them, through
/// the browser cache when there is one. A failure names the URL.
async fn fetch_all(
    urls: &[String],
    on_progress: Option<&Function>,
    browser_cache: bool,
) -> Result<Vec<Vec<u8>>, JsValue> {
    let cache = if browser_cache {
        open_cache().await
    } else {
        None
    };
    let mut responses = Vec::new();
    for url in urls {
        let cached = match &cache {
            Some(cache) => cached(cache, url).await,
            None => None,
        };
        let from_cache = cached.is_some();
        let response = match cached {
            Some(response) => response,
            None => fetch(url).await?,
        };
        responses.push((url, response, from_cache));
    }
    let lengths: Option<Vec<f64>> = responses
        .iter()
        .map(|(_, r, _)| content_length(r))
        .collect();
    let total = lengths.map(|l| l.iter().sum::<f64>());
    let mut loaded = 0.0;
    let mut bodies = Vec::new();
    for (url, response, from_cache) in responses {
        let bytes = read_body(url, &response, content_length(&response), &mut |chunk| {
            loaded += chunk as f64;
            match on_progress {
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
            store(cache, url, &bytes).await;
        }
        bodies.push(bytes);
    }
    Ok(bodies)
}

async fn fetch(url: &str) -> Result<Response, JsValue> {
    let global = js_sys::global();
    let fail = |why: String| -> JsValue { Error::invalid(format!("fetching {url}: {why}")).into() };
    let fetch: Function = Reflect::get(&global, &"fetch".into())
        .ok()
        .and_then(|f| f.dyn_into().ok())
        .ok_or_else(|| fail("this environment has no fetch()".into()))?;
    let promise: js_sys::Promise = fetch
        .call1(&global, &url.into())
        .map_err(|e| fail(message(&e)))?
        .unchecked_into();
    let response: Response = JsFuture::from(promise)
        .await
        .map_err(|e| fail(message(&e)))?
        .unchecked_into();
    if !response.ok() {
        return Err(fail(format!(
            "HTTP {} {}",
            response.status(),
            response.status_text()
        )));
    }
    Ok(response)
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

async fn read_body(
    url: &str,
    response: &Response,
    length: Option<f64>,
    on_chunk: &mut dyn FnMut(usize) -> Result<(), JsValue>,
) -> Result<Vec<u8>, JsValue> {
    let fail = |e: JsValue| -> JsValue {
        Error::invalid(format!("reading {url}: {}", message(&e))).into()
    };
    let mut bytes = Vec::with_capacity(length.unwrap_or(0.0) as usize);
    let Some(body) = response.body() else {
        return Ok(bytes);
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
        let start = bytes.len();
        bytes.resize(start + chunk.length() as usize, 0);
        chunk.copy_to(&mut bytes[start..]);
        if let Err(e) = on_chunk(chunk.length() as usize) {
            let _ = reader.cancel();
            return Err(e);
        }
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

/// Best effort: a full disk or a refused write only costs a download next time.
async fn store(cache: &Cache, url: &str, bytes: &[u8]) {
    let headers = Object::new();
    let _ = Reflect::set(
        &headers,
        &"content-length".into(),
        &bytes.len().to_string().into(),
    );
    let init = ResponseInit::new();
    init.set_headers(&headers);
    let body = Uint8Array::from(bytes);
    if let Ok(response) = Response::new_with_opt_buffer_source_and_init(Some(&body), &init) {
        let _ = JsFuture::from(cache.put_with_str(url, &response)).await;
    }
}
