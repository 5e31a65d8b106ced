//! The exported `Generator` class: each method reads its arguments (through
//! [`super::convert`]), calls the engine's [`crate::Generator`], and returns
//! plain JS values. Engine errors are thrown as JS `Error`s.

use js_sys::{Function, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use super::convert::{
    abort_signal, boolean, bytes, callback, chat_options, encode_special, event_to_js, flag,
    integer, js_bytes, model_options, run_options, score_to_js, string, text, to_js, token_ids,
    whole,
};
use super::crash::install_panic_hook;
use super::fetch::{download, Download, ModelFiles};
use super::snapshot::CacheSnapshot;
use crate::backend::BackendKind;
use crate::cache::{CacheStrategy, KvDtype};
use crate::error::Error;
use crate::generate::{CacheOptions, Generator as Engine, TokenEvent};
use crate::load::{self, Loaded};
use crate::options::{ModelOptions, RemoteModel};
use crate::tokenizer::Tokenizer;

/// A decoder LLM with its tokenizer and KV cache. Every method throws an
/// `Error` saying what is wrong, and a failed call leaves the generator as it
/// was (a run stopped by a throwing `onToken` keeps the tokens it produced:
/// see `GenerateOptions.onToken`). If the engine itself crashes (a bug), that
/// call and every later one on this generator throw "the engine crashed:
/// create a new one"; generators created afterwards work.
#[wasm_bindgen]
pub struct Generator {
    inner: Engine,
    backend: BackendKind,
    /// Window size for `cacheStrategy = "window"`, remembered across strategy changes.
    window: Option<usize>,
}

#[wasm_bindgen]
impl Generator {
    /// A model from Hugging Face files: `config.json` text, `model.safetensors` bytes,
    /// `tokenizer.json` text, and in the options, for the chat template, `tokenizer_config.json`'s.
    #[wasm_bindgen(js_name = fromHfFiles)]
    pub fn from_hf_files(
        #[wasm_bindgen(unchecked_param_type = "string")] config_json: JsValue,
        #[wasm_bindgen(unchecked_param_type = "Uint8Array")] weights: JsValue,
        #[wasm_bindgen(unchecked_param_type = "string")] tokenizer_json: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "HfFilesOptions")] options: JsValue,
    ) -> Result<Generator, JsValue> {
        let config_json = string(
            &config_json,
            "fromHfFiles: configJson (the text of config.json)",
        )?;
        let tokenizer_json = string(
            &tokenizer_json,
            "fromHfFiles: tokenizerJson (the text of tokenizer.json)",
        )?;
        let tokenizer_config = text(&options, "tokenizerConfig")?;
        let options = model_options("model", &options, &["tokenizerConfig"])?;
        let weights = js_bytes(&weights, "fromHfFiles: weights (model.safetensors)")?;
        let tokenizer = Tokenizer::from_hf(&tokenizer_json, tokenizer_config.as_deref())?;
        Self::build(&options, |device| {
            load::from_hf_file(&config_json, Box::new(weights), tokenizer, device)
        })
    }

    /// A model from the bytes of a `.gguf` file (weights, config and tokenizer).
    #[wasm_bindgen(js_name = fromGguf)]
    pub fn from_gguf(
        #[wasm_bindgen(unchecked_param_type = "Uint8Array")] file: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "ModelOptions")] options: JsValue,
    ) -> Result<Generator, JsValue> {
        let options = model_options("model", &options, &[])?;
        let file = js_bytes(&file, "fromGguf: the .gguf file's bytes")?;
        Self::build(&options, |device| {
            load::from_gguf_file(Box::new(file), device)
        })
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
    /// `config.json`, `model.safetensors` and `tokenizer.json` (and, for the
    /// chat template, `tokenizer_config.json` where it has one). Streams with
    /// progress and keeps the files in the browser Cache API when there is one;
    /// `signal` cancels the download (rejecting with an `AbortError`).
    pub async fn load(
        #[wasm_bindgen(unchecked_param_type = "string")] url: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "LoadOptions")] options: JsValue,
    ) -> Result<Generator, JsValue> {
        install_panic_hook();
        let url = string(&url, "load: the model's URL")?;
        let model = model_options(
            "load",
            &options,
            &["onProgress", "browserCache", "signal", "onStoreError"],
        )?;
        // Check everything that can be checked before downloading anything.
        model.cache_options()?;
        model.backend()?;
        let how = Download {
            on_progress: callback(&options, "onProgress")?,
            browser_cache: flag(&options, "browserCache")?.unwrap_or(true),
            signal: abort_signal(&options, "signal")?,
            on_store_error: callback(&options, "onStoreError")?,
        };
        let source = RemoteModel::from_url(&url)?;
        match download(&source, &how).await? {
            ModelFiles::Gguf(file) => Self::build(&model, |device| {
                load::from_gguf_file(Box::new(file), device)
            }),
            ModelFiles::HfFolder {
                config_json,
                tokenizer_json,
                tokenizer_config_json,
                weights,
            } => {
                let tokenizer =
                    Tokenizer::from_hf(&tokenizer_json, tokenizer_config_json.as_deref())?;
                Self::build(&model, |device| {
                    load::from_hf_file(&config_json, Box::new(weights), tokenizer, device)
                })
            }
        }
    }

    /// Runs `prompt` (after whatever the sequence already holds) and then one
    /// token at a time until a stop id, `maxTokens`, or a full context. An
    /// empty prompt continues the sequence from the token sampled last (its
    /// `promptIds` are then empty); it throws for a fresh sequence and after a
    /// run that ended on a stop id, which leave nothing to continue from.
    #[wasm_bindgen(unchecked_return_type = "Generation")]
    pub fn generate(
        &mut self,
        #[wasm_bindgen(unchecked_param_type = "string")] prompt: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "GenerateOptions")] options: JsValue,
    ) -> Result<JsValue, JsValue> {
        let prompt = string(&prompt, "generate: the prompt")?;
        let run = run_options("generate", &options, &["onToken"])?;
        let on_token = on_token(&options)?;
        to_js(&self.inner.try_generate(&prompt, &run, on_token)?)
    }

    /// One chat turn: the user's `message` in the model's chat template, and
    /// the reply. The conversation stays in the generator until `reset()` (or
    /// a turn with another `systemPrompt`, which starts a new one): with
    /// `reuse` (the default) a turn prefills only its own tokens after the
    /// cache of the turns before, and a new conversation starts from the
    /// cache of its system prompt, computed once; `reuse: false` recomputes
    /// the whole conversation. `prefilled` and `reused` in the result say
    /// which. Throws for a model without a known chat template.
    #[wasm_bindgen(unchecked_return_type = "Generation")]
    pub fn chat(
        &mut self,
        #[wasm_bindgen(unchecked_param_type = "string")] message: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "ChatOptions")] options: JsValue,
    ) -> Result<JsValue, JsValue> {
        let message = string(&message, "chat: the message")?;
        let chat = chat_options("chat", &options, &["onToken"])?;
        let on_token = on_token(&options)?;
        to_js(&self.inner.try_chat(&message, &chat, on_token)?)
    }

    /// `chat` a token at a time, as `prefill` is to `generate`: adds the user's
    /// `message` to the conversation, prefills it and returns the reply's
    /// first token, or null; then `step()` once per token, and `finish()` for
    /// the turn's summary. A worker can yield between tokens, and so stop a
    /// reply early; the next turn continues after the tokens it has.
    #[wasm_bindgen(js_name = chatPrefill, unchecked_return_type = "TokenEvent | null")]
    pub fn chat_prefill(
        &mut self,
        #[wasm_bindgen(unchecked_param_type = "string")] message: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "ChatPrefillOptions")] options: JsValue,
    ) -> Result<JsValue, JsValue> {
        let message = string(&message, "chatPrefill: the message")?;
        let chat = chat_options("chatPrefill", &options, &[])?;
        event_to_js(self.inner.chat_prefill(&message, &chat)?)
    }

    /// Runs the prompt and returns the first new token, or null (a stop id, or maxTokens 0).
    /// Then call `step()` once per token, so a worker can yield between tokens. An empty
    /// prompt continues the sequence, as in `generate`.
    #[wasm_bindgen(unchecked_return_type = "TokenEvent | null")]
    pub fn prefill(
        &mut self,
        #[wasm_bindgen(unchecked_param_type = "string")] prompt: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "PrefillOptions")] options: JsValue,
    ) -> Result<JsValue, JsValue> {
        let prompt = string(&prompt, "prefill: the prompt")?;
        let run = run_options("prefill", &options, &[])?;
        event_to_js(self.inner.prefill(&prompt, &run)?)
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

    /// Teacher-forced scoring of `text` (the sequence starts afresh): its ids,
    /// each predicted token's negative log-likelihood in nats (`nll[i]` for
    /// `ids[i + 1]`) and the perplexity, exp(mean nll). With the cache on, the
    /// tokens run one by one through the cache's settings (window, ...); with
    /// `useCache = false`, one causal pass over the whole text.
    #[wasm_bindgen(unchecked_return_type = "Score")]
    pub fn score(
        &mut self,
        #[wasm_bindgen(unchecked_param_type = "string")] text: JsValue,
    ) -> Result<JsValue, JsValue> {
        let text = string(&text, "score: the text")?;
        score_to_js(&self.inner.score(&text)?)
    }

    /// `score` in parts, as `prefill` is to `generate`, so that a worker can
    /// yield (and stop) between them: checks `text`, starts the sequence
    /// afresh and returns how many predictions there are to make (its tokens
    /// less one). Then `scoreStep(count)` until it returns 0, then
    /// `scoreFinish()` for the score, the same as `score(text)`'s.
    #[wasm_bindgen(js_name = scoreStart)]
    pub fn score_start(
        &mut self,
        #[wasm_bindgen(unchecked_param_type = "string")] text: JsValue,
    ) -> Result<usize, JsValue> {
        let text = string(&text, "scoreStart: the text")?;
        Ok(self.inner.score_start(&text)?)
    }

    /// Makes up to `count` (a whole number, at least 1) more of the
    /// predictions `scoreStart` began, token by token through the cache (with
    /// `useCache = false`, all of them at once); returns how many are left.
    /// Throws if no scoring is in progress or the sequence changed since it
    /// began (a reset, a run, new settings).
    #[wasm_bindgen(js_name = scoreStep)]
    pub fn score_step(
        &mut self,
        #[wasm_bindgen(unchecked_param_type = "number")] count: JsValue,
    ) -> Result<usize, JsValue> {
        let count = whole(&count, "scoreStep: count", 1, u32::MAX as u64)?;
        Ok(self.inner.score_step(count as usize)?)
    }

    /// The score of the text `scoreStart` began, once `scoreStep` returned 0.
    #[wasm_bindgen(js_name = scoreFinish, unchecked_return_type = "Score")]
    pub fn score_finish(&mut self) -> Result<JsValue, JsValue> {
        score_to_js(&self.inner.score_finish()?)
    }

    /// The sequence as it stands (tokens, position, every layer's cache
    /// entries, the settings), to `restore` later. Throws during a run
    /// (between `prefill` and the `step()` that returns null).
    pub fn snapshot(&self) -> Result<CacheSnapshot, JsValue> {
        Ok(CacheSnapshot {
            inner: self.inner.snapshot()?,
        })
    }

    /// Puts the sequence back as a snapshot (or its `toBytes()`) holds it: the
    /// next tokens are those that would have followed it, and a `chat` turn
    /// continues the conversation it holds. Throws, changing
    /// nothing, for a snapshot of another model, taken with other cache
    /// settings, of a newer format, or truncated or damaged bytes.
    pub fn restore(
        &mut self,
        #[wasm_bindgen(unchecked_param_type = "CacheSnapshot | Uint8Array")] snapshot: JsValue,
    ) -> Result<(), JsValue> {
        let what = "restore: the snapshot (a CacheSnapshot or its toBytes())";
        // A CacheSnapshot is read through its bytes: one path for both forms.
        let value = match Reflect::get(&snapshot, &"toBytes".into()) {
            Ok(to_bytes) if snapshot.is_object() && to_bytes.is_function() => {
                to_bytes.unchecked_into::<Function>().call0(&snapshot)?
            }
            _ => snapshot,
        };
        Ok(self.inner.restore_bytes(&bytes(&value, what)?)?)
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

    /// Turns the KV cache on or off; the sequence starts afresh.
    #[wasm_bindgen(setter = useCache)]
    pub fn set_use_cache(
        &mut self,
        #[wasm_bindgen(unchecked_param_type = "boolean")] use_cache: JsValue,
    ) -> Result<(), JsValue> {
        let use_cache = boolean(&use_cache, "useCache")?;
        Ok(self.inner.set_use_cache(use_cache)?)
    }

    /// "concat", "prealloc" or "window" (which uses `window`); setting it resets the cache.
    #[wasm_bindgen(getter = cacheStrategy)]
    pub fn cache_strategy(&self) -> String {
        self.inner.options().strategy.name().to_string()
    }

    /// Switches the cache strategy; the sequence starts afresh.
    #[wasm_bindgen(setter = cacheStrategy)]
    pub fn set_cache_strategy(
        &mut self,
        #[wasm_bindgen(unchecked_param_type = r#""concat" | "prealloc" | "window""#)] name: JsValue,
    ) -> Result<(), JsValue> {
        let name = string(&name, "cacheStrategy")?;
        if name == "window" && self.window.is_none() {
            return Err(Error::invalid(
                "the `window` cache strategy needs a window size: set `window` first (g.window = 64), or pass it in the options",
            )
            .into());
        }
        let strategy = CacheStrategy::parse(&name, self.window)?;
        self.inner.set_strategy(strategy)?;
        Ok(())
    }

    /// Attention sinks: the first tokens kept visible besides the window (0 by
    /// default, and without the "window" strategy).
    #[wasm_bindgen(getter)]
    pub fn sinks(&self) -> usize {
        self.inner.options().strategy.sinks()
    }

    /// Sets the attention sinks (fewer than `window`; only with the "window"
    /// strategy, else only 0); the sequence starts afresh.
    #[wasm_bindgen(setter)]
    pub fn set_sinks(
        &mut self,
        #[wasm_bindgen(unchecked_param_type = "number")] sinks: JsValue,
    ) -> Result<(), JsValue> {
        let sinks = integer(&sinks, "sinks")?;
        let sinks = usize::try_from(sinks).map_err(|_| {
            Error::invalid(format!("sinks must be a whole number >= 0, got {sinks}"))
        })?;
        let strategy = self.inner.options().strategy.with_sinks(sinks)?;
        Ok(self.inner.set_strategy(strategy)?)
    }

    /// How the cache stores keys and values: "f32", "f16" or "int8" (blocks
    /// of 32 numbers with an f16 scale); no effect with the cache off.
    #[wasm_bindgen(getter = kvDtype)]
    pub fn kv_dtype(&self) -> String {
        self.inner.options().kv_dtype.name().to_string()
    }

    /// Switches the cache's precision; the sequence starts afresh.
    #[wasm_bindgen(setter = kvDtype)]
    pub fn set_kv_dtype(
        &mut self,
        #[wasm_bindgen(unchecked_param_type = r#""f32" | "f16" | "int8""#)] name: JsValue,
    ) -> Result<(), JsValue> {
        let dtype = KvDtype::parse(&string(&name, "kvDtype")?)?;
        Ok(self.inner.set_kv_dtype(dtype)?)
    }

    /// The sliding-window size (undefined until given); setting it while the
    /// strategy is "window" resets the cache.
    #[wasm_bindgen(getter)]
    pub fn window(&self) -> Option<usize> {
        self.window
    }

    /// Sets the sliding-window size (1..=maxSeqLen); with the "window" strategy, the sequence starts afresh.
    #[wasm_bindgen(setter)]
    pub fn set_window(
        &mut self,
        #[wasm_bindgen(unchecked_param_type = "number")] size: JsValue,
    ) -> Result<(), JsValue> {
        let size = integer(&size, "window")?;
        let most = self.inner.max_seq_len();
        if size < 1 || size as u64 > most as u64 {
            return Err(Error::invalid(format!(
                "window must be between 1 and maxSeqLen ({most}), got {size}"
            ))
            .into());
        }
        let size = size as usize;
        if let CacheStrategy::Window { sinks, .. } = self.inner.options().strategy {
            self.inner
                .set_strategy(CacheStrategy::Window { size, sinks: 0 }.with_sinks(sinks)?)?;
        }
        self.window = Some(size);
        Ok(())
    }

    /// Crashes the engine as a bug would, for the tests of what a crash does
    /// (tests/node/crash.test.mjs): `"panic"` panics, `"abort"` aborts without
    /// a panic (as running out of memory does). Not part of the API.
    #[doc(hidden)]
    #[wasm_bindgen(js_name = _crashForTests, skip_typescript)]
    pub fn crash_for_tests(how: &str) {
        install_panic_hook();
        match how {
            "abort" => std::process::abort(),
            _ => panic!("a panic on purpose, for the tests"),
        }
    }

    /// Tokens the model has consumed since the last reset (the next token's position).
    #[wasm_bindgen(getter)]
    pub fn position(&self) -> usize {
        self.inner.position()
    }

    /// Whether the model has a chat template (from its GGUF, or from the
    /// `tokenizer_config.json` given to `fromHfFiles`), which `chat` and
    /// `{ chat: true }` need.
    #[wasm_bindgen(getter = hasChatTemplate)]
    pub fn has_chat_template(&self) -> bool {
        self.inner.tokenizer().chat_template().is_ok()
    }

    /// Entries held by each layer (a model's local layers keep their own
    /// window); empty with the cache off.
    #[wasm_bindgen(getter = cacheLayerLens)]
    pub fn cache_layer_lens(&self) -> Vec<u32> {
        self.inner
            .cache_layer_lens()
            .into_iter()
            .map(|n| n as u32)
            .collect()
    }

    /// Tokens whose keys and values the cache's longest layer holds (0 with the cache off).
    #[wasm_bindgen(getter = cacheLen)]
    pub fn cache_len(&self) -> usize {
        self.inner.cache_len()
    }

    /// Bytes the cache's buffers hold right now (for "prealloc", the whole allocation).
    #[wasm_bindgen(getter = cacheBytes)]
    pub fn cache_bytes(&self) -> usize {
        self.inner.cache_bytes()
    }

    /// What the textbook formula predicts for the entries held: 2 × layers × kvHeads ×
    /// cacheLen × the bytes of a row of headDim numbers in `kvDtype` (headDim × 4 in f32, × 2
    /// in f16, headDim + 2 per block of 32 in int8), each layer counted with its own length
    /// (a model's window layers hold at most their window). Compare it with `cacheBytes`.
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

    /// Token ids of `text`: none added, or with `{ special: true }` the ids a
    /// prompt starts with (the model's BOS in front where it wants one), as
    /// `kvcache tokenize` prints them.
    pub fn encode(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] text: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "EncodeOptions")] options: JsValue,
    ) -> Result<Vec<u32>, JsValue> {
        let text = string(&text, "encode: the text")?;
        let tokenizer = self.inner.tokenizer();
        Ok(match encode_special(&options)? {
            true => tokenizer.encode_prompt(&text, true)?,
            false => tokenizer.encode(&text)?,
        })
    }

    /// Text of token ids.
    pub fn decode(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Uint32Array | number[]")] ids: JsValue,
    ) -> Result<String, JsValue> {
        let ids = token_ids(&ids, "decode: ids")?;
        Ok(self.inner.tokenizer().decode(&ids)?)
    }
}

/// The options' `onToken` as a per-token callback for the engine: each event
/// passed to JS, a throw stopping the run.
fn on_token(options: &JsValue) -> Result<impl FnMut(&TokenEvent) -> Result<(), JsValue>, JsValue> {
    let on_token = callback(options, "onToken")?;
    Ok(move |event: &TokenEvent| {
        if let Some(on_token) = &on_token {
            on_token.call1(&JsValue::NULL, &to_js(event)?)?;
        }
        Ok(())
    })
}

impl Generator {
    /// The engine's generator, for the [`super::bench::Bench`] measurements.
    pub(super) fn engine(&self) -> &Engine {
        &self.inner
    }

    fn build(
        options: &ModelOptions,
        load: impl FnOnce(&burn::tensor::Device) -> crate::Result<Loaded>,
    ) -> Result<Generator, JsValue> {
        install_panic_hook();
        let cache_options: CacheOptions = options.cache_options()?;
        let backend = options.backend()?;
        let inner = Engine::new(load(&backend.device())?, cache_options)?;
        Ok(Generator {
            inner,
            backend,
            window: options.window,
        })
    }
}
