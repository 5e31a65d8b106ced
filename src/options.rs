//! Options as the JS API spells them: camelCase keys, every one optional,
//! unknown keys refused. They deserialize from any serde format, so the wasm
//! bindings read them from JS objects, the CLI builds them from its flags, and
//! native code and tests read them from JSON; all get the same checks and the
//! same error messages.
//!
//! Each struct carries its TypeScript name and turns, checked, into the
//! engine's options: [`ModelOptions`] into [`CacheOptions`] (how the
//! generator keeps its cache), [`PrefillOptions`] (what `prefill` and
//! `generate` take) into [`RunOptions`] (one run's limits and sampling).

use serde::{Deserialize, Deserializer};

use crate::backend::BackendKind;
use crate::cache::{CacheStrategy, KvDtype};
use crate::error::{Error, Result};
use crate::generate::{CacheOptions, ChatOptions, RunOptions};
use crate::sampling::SamplingParams;

/// How to build a generator: `{ cache, window, sinks, kvDtype, maxSeqLen, seed, backend, useCache }`.
/// Every key is optional; unknown keys throw.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct ModelOptions {
    /// `"concat"` (the default), `"prealloc"` or `"window"`.
    #[cfg_attr(
        target_arch = "wasm32",
        tsify(type = r#""concat" | "prealloc" | "window" | null"#)
    )]
    pub cache: Option<String>,
    /// Sliding-window size; only with `cache: "window"`, between 1 and `maxSeqLen`.
    pub window: Option<usize>,
    /// Attention sinks: the first `sinks` tokens stay visible besides the
    /// window (default 0); only with `cache: "window"`, fewer than `window`.
    pub sinks: Option<usize>,
    /// How the cache stores keys and values: `"f32"` (the default), `"f16"` or
    /// `"int8"` (blocks of 32 with an f16 scale); no effect with `useCache: false`.
    #[cfg_attr(
        target_arch = "wasm32",
        tsify(type = r#""f32" | "f16" | "int8" | null"#)
    )]
    pub kv_dtype: Option<String>,
    /// Longest sequence (and what `prealloc` allocates); default min(model context, 1024).
    pub max_seq_len: Option<usize>,
    /// Seed of `randomGpt2`'s weights (models from files bring their own weights).
    pub seed: Option<u64>,
    /// `"flex"` (the default) or `"ndarray"`.
    #[cfg_attr(target_arch = "wasm32", tsify(type = r#""flex" | "ndarray" | null"#))]
    pub backend: Option<String>,
    /// `true` by default; `false` recomputes the whole sequence every step.
    pub use_cache: Option<bool>,
}

impl ModelOptions {
    /// Every key, as JS spells it.
    pub const KEYS: &'static [&'static str] = &[
        "cache",
        "window",
        "maxSeqLen",
        "sinks",
        "kvDtype",
        "seed",
        "backend",
        "useCache",
    ];

    pub fn backend(&self) -> Result<BackendKind> {
        self.backend
            .as_deref()
            .map_or_else(|| Ok(BackendKind::default()), BackendKind::parse)
    }

    /// The cache options, checked as far as they can be without a model
    /// (the model's context is checked by [`crate::Generator::new`]).
    pub fn cache_options(&self) -> Result<CacheOptions> {
        let name = self.cache.as_deref().unwrap_or("concat");
        let strategy = CacheStrategy::parse(name, self.window)?;
        if strategy.window().is_none() && self.window.is_some() {
            return Err(Error::invalid(format!(
                "option `window` only applies with cache: \"window\" (cache is \"{name}\")"
            )));
        }
        if self.max_seq_len == Some(0) {
            return Err(Error::invalid("maxSeqLen must be at least 1, got 0"));
        }
        if let Some(size) = strategy.window() {
            let most = self
                .max_seq_len
                .map_or(String::new(), |n| format!(" ({n})"));
            if size == 0 || self.max_seq_len.is_some_and(|n| size > n) {
                return Err(Error::invalid(format!(
                    "window must be between 1 and maxSeqLen{most}, got {size}"
                )));
            }
        }
        let strategy = strategy.with_sinks(self.sinks.unwrap_or(0))?;
        let kv_dtype = self
            .kv_dtype
            .as_deref()
            .map_or(Ok(KvDtype::F32), KvDtype::parse)?;
        Ok(CacheOptions {
            strategy,
            kv_dtype,
            max_seq_len: self.max_seq_len,
            use_cache: self.use_cache.unwrap_or(true),
        })
    }

    /// Seed of the random weights (0 when not given).
    pub fn weights_seed(&self) -> u64 {
        self.seed.unwrap_or(0)
    }
}

/// How to run (`prefill` and `generate`): `{ maxTokens, temperature, topK, topP, seed, stopIds,
/// chat, systemPrompt }`. Every key is optional; unknown keys throw.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct PrefillOptions {
    /// New tokens at most (default 64).
    pub max_tokens: Option<usize>,
    /// 0 (the default) is greedy. Checked as given, then used as the nearest 32-bit float on
    /// its side of 0: past 3.4e38 it is 3.4e38 (sampling is uniform, as from about 1e30 on), and
    /// below 1.4e-45 (but above 0) it is 1.4e-45 (nearly greedy).
    #[serde(deserialize_with = "temperature_option")]
    pub temperature: Option<f32>,
    /// 0 (the default) keeps every token.
    pub top_k: Option<usize>,
    /// In (0, 1]; 1 (the default) keeps every token. Checked as given, then used as the nearest
    /// 32-bit float on its side of 0: below 1.4e-45 it is 1.4e-45, which keeps the likeliest
    /// token alone.
    #[serde(deserialize_with = "top_p_option")]
    pub top_p: Option<f32>,
    /// Sampling seed (default 0).
    pub seed: Option<u64>,
    /// Ids that stop the run (an array, a typed array or a `Set`); absent or `null` means the
    /// model's EOS ids, `[]` none.
    #[cfg_attr(
        target_arch = "wasm32",
        tsify(type = "number[] | Uint32Array | Set<number> | null")
    )]
    pub stop_ids: Option<Vec<u32>>,
    /// Wrap the prompt in the ChatML template.
    pub chat: Option<bool>,
    /// System message for `chat`.
    pub system_prompt: Option<String>,
}

impl PrefillOptions {
    /// Every key, as JS spells it.
    pub const KEYS: &'static [&'static str] = &[
        "maxTokens",
        "temperature",
        "topK",
        "topP",
        "seed",
        "stopIds",
        "chat",
        "systemPrompt",
    ];

    /// The run options, with the sampling parameters checked.
    pub fn run_options(&self) -> Result<RunOptions> {
        let defaults = RunOptions::default();
        let sampling = SamplingParams {
            temperature: self.temperature.unwrap_or(defaults.sampling.temperature),
            top_k: self.top_k.unwrap_or(defaults.sampling.top_k),
            top_p: self.top_p.unwrap_or(defaults.sampling.top_p),
            seed: self.seed.unwrap_or(defaults.sampling.seed),
        };
        sampling.validate()?;
        if self.system_prompt.is_some() && self.chat != Some(true) {
            return Err(Error::invalid(
                "option `systemPrompt` only applies with chat: true",
            ));
        }
        Ok(RunOptions {
            max_new_tokens: self.max_tokens.unwrap_or(defaults.max_new_tokens),
            sampling,
            stop_ids: self.stop_ids.clone(),
            chat: self.chat.unwrap_or(false),
            system_prompt: self.system_prompt.clone(),
        })
    }
}

impl PrefillOptions {
    /// The run keys of `chat`'s options: all but `chat` (a chat turn always
    /// is one); `chat` also takes `reuse`, a flag read on its own.
    pub fn chat_keys() -> Vec<&'static str> {
        Self::KEYS
            .iter()
            .copied()
            .filter(|&key| key != "chat")
            .collect()
    }

    /// The options of a chat turn: these (without `chat`), and `reuse` (default true).
    pub fn chat_options(&self, reuse: Option<bool>) -> Result<ChatOptions> {
        if self.chat.is_some() {
            return Err(Error::invalid(
                "option `chat` does not apply to chat(), whose turns are always in the chat template",
            ));
        }
        let run = PrefillOptions {
            chat: Some(true),
            ..self.clone()
        };
        Ok(ChatOptions {
            run: run.run_options()?,
            reuse: reuse.unwrap_or(true),
        })
    }
}

/// The smallest positive 32-bit float (about 1.4e-45).
const F32_TINIEST: f32 = f32::from_bits(1);

/// `temperature` as given (a JS number is an f64), checked, then as the 32-bit float sampling
/// uses: past `f32::MAX` it is `f32::MAX` (uniform sampling either way), and a positive number
/// too small for an f32 is the smallest positive one (so it still samples, nearly greedily).
pub fn temperature(value: f64) -> std::result::Result<f32, String> {
    if !value.is_finite() || value < 0.0 {
        return Err(format!(
            "temperature must be a finite number >= 0 (0 = greedy), got {}",
            js_number(value)
        ));
    }
    Ok(nearest_f32(value))
}

/// `topP` as given, checked, then as a 32-bit float: a number too small for an f32 is the
/// smallest positive one, which keeps the likeliest token alone (as `topP` 1e-300 would).
pub fn top_p(value: f64) -> std::result::Result<f32, String> {
    if !(value > 0.0 && value <= 1.0) {
        return Err(format!("topP must be in (0, 1], got {}", js_number(value)));
    }
    Ok(nearest_f32(value))
}

/// The f32 nearest `value` (finite, >= 0) that keeps its side of 0: at most `f32::MAX`, and
/// not 0 for a positive number.
fn nearest_f32(value: f64) -> f32 {
    match value as f32 {
        rounded if rounded.is_infinite() => f32::MAX,
        rounded if rounded == 0.0 && value > 0.0 => F32_TINIEST,
        rounded => rounded,
    }
}

/// An optional `temperature`, read as an f64 and checked by [`temperature`].
fn temperature_option<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<f32>, D::Error> {
    Option::<f64>::deserialize(d)?
        .map(temperature)
        .transpose()
        .map_err(serde::de::Error::custom)
}

/// An optional `topP`, read as an f64 and checked by [`top_p`].
fn top_p_option<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<f32>, D::Error> {
    Option::<f64>::deserialize(d)?
        .map(top_p)
        .transpose()
        .map_err(serde::de::Error::custom)
}

/// A number as JS writes it (`String(n)`): `5`, `-0.5`, `1e+308`, `1e-7`, `NaN`, `Infinity`,
/// so that a message shows the number the caller wrote.
pub fn js_number(n: f64) -> String {
    let magnitude = n.abs();
    if n.is_nan() {
        "NaN".into()
    } else if n.is_infinite() {
        if n > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else if n == 0.0 {
        "0".into() // -0 too, as JS writes it
    } else if !(1e-6..1e21).contains(&magnitude) {
        let text = format!("{n:e}");
        match text.contains("e-") {
            true => text,
            false => text.replacen('e', "e+", 1),
        }
    } else {
        format!("{n}")
    }
}

/// Refuses a key that no option has, naming the ones that exist. Serde's
/// `deny_unknown_fields` does this for JSON, but JS objects are read field by
/// field, so the bindings check the object's own keys with this first.
/// `what` names the call, e.g. `"generate"`.
pub fn check_keys<S: AsRef<str>>(what: &str, keys: &[S], allowed: &[&str]) -> Result<()> {
    for key in keys {
        let key = key.as_ref();
        if !allowed.contains(&key) {
            return Err(Error::invalid(format!(
                "unknown {what} option `{key}` (expected one of: {})",
                allowed.join(", ")
            )));
        }
    }
    Ok(())
}

/// Where a model at a URL keeps its files: one `.gguf`, or a Hugging Face
/// folder with `config.json`, `model.safetensors` and `tokenizer.json`, and
/// perhaps `tokenizer_config.json` (the chat template).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteModel {
    Gguf(String),
    HfFolder {
        config: String,
        weights: String,
        tokenizer: String,
        tokenizer_config: String,
    },
}

impl RemoteModel {
    /// A URL whose path ends in `.gguf` is a GGUF file; anything else is a folder.
    pub fn from_url(url: &str) -> Result<Self> {
        if url.trim().is_empty() {
            return Err(Error::invalid(
                "the model URL is empty: give a .gguf file or a folder holding config.json, model.safetensors and tokenizer.json",
            ));
        }
        let cut = url.find(['?', '#']).unwrap_or(url.len());
        let (path, suffix) = url.split_at(cut);
        if path.to_ascii_lowercase().ends_with(".gguf") {
            return Ok(RemoteModel::Gguf(url.to_string()));
        }
        let slash = if path.ends_with('/') { "" } else { "/" };
        let file = |name: &str| format!("{path}{slash}{name}{suffix}");
        Ok(RemoteModel::HfFolder {
            config: file("config.json"),
            weights: file("model.safetensors"),
            tokenizer: file("tokenizer.json"),
            tokenizer_config: file("tokenizer_config.json"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(json: &str) -> Result<CacheOptions> {
        serde_json::from_str::<ModelOptions>(json)
            .map_err(|e| Error::invalid(e.to_string()))?
            .cache_options()
    }

    fn run(json: &str) -> Result<RunOptions> {
        serde_json::from_str::<PrefillOptions>(json)
            .map_err(|e| Error::invalid(e.to_string()))?
            .run_options()
    }

    #[test]
    fn empty_options_are_the_defaults() {
        assert_eq!(model("{}").unwrap(), CacheOptions::default());
        assert_eq!(run("{}").unwrap(), RunOptions::default());
    }

    #[test]
    fn model_options_are_read() {
        let o = model(
            r#"{"cache":"window","window":8,"sinks":2,"kvDtype":"int8","maxSeqLen":32,"useCache":false}"#,
        )
        .unwrap();
        assert_eq!(o.strategy, CacheStrategy::Window { size: 8, sinks: 2 });
        assert_eq!(o.kv_dtype, KvDtype::Int8);
        assert_eq!(o.max_seq_len, Some(32));
        assert!(!o.use_cache);
        assert_eq!(
            model(r#"{"cache":"prealloc"}"#).unwrap().strategy,
            CacheStrategy::Prealloc
        );
    }

    #[test]
    fn run_options_are_read() {
        let o = run(r#"{"maxTokens":5,"temperature":0.7,"topK":3,"topP":0.9,"seed":4,"stopIds":[],"chat":true,"systemPrompt":"hi"}"#).unwrap();
        assert_eq!(o.max_new_tokens, 5);
        assert_eq!(
            o.sampling,
            SamplingParams {
                temperature: 0.7,
                top_k: 3,
                top_p: 0.9,
                seed: 4
            }
        );
        assert_eq!(o.stop_ids, Some(vec![]));
        assert!(o.chat);
        assert_eq!(run(r#"{"stopIds":null}"#).unwrap().stop_ids, None);
    }

    #[test]
    fn bad_options_say_what_is_wrong() {
        for (json, says) in [
            (r#"{"cach":"concat"}"#, "unknown field `cach`"),
            (r#"{"cache":"ring"}"#, "unknown cache strategy `ring`"),
            (r#"{"cache":"window"}"#, "needs a window size"),
            (
                r#"{"cache":"window","window":0}"#,
                "window must be between 1 and maxSeqLen",
            ),
            (
                r#"{"cache":"window","window":9,"maxSeqLen":8}"#,
                "between 1 and maxSeqLen (8), got 9",
            ),
            (r#"{"window":4}"#, "only applies with cache: \"window\""),
            (r#"{"maxSeqLen":0}"#, "maxSeqLen must be at least 1"),
            (r#"{"kvDtype":"q8_0"}"#, "unknown kvDtype `q8_0`"),
            (
                r#"{"sinks":2}"#,
                "sinks only apply with the window strategy",
            ),
            (
                r#"{"cache":"window","window":4,"sinks":4}"#,
                "sinks must be smaller than the window (4), got 4",
            ),
        ] {
            let err = model(json).unwrap_err().to_string();
            assert!(err.contains(says), "{json}: {err}");
        }
        assert!(serde_json::from_str::<ModelOptions>(r#"{"backend":"gpu"}"#)
            .unwrap()
            .backend()
            .unwrap_err()
            .to_string()
            .contains("unknown backend `gpu`"));
        for (json, says) in [
            (r#"{"maxToken":3}"#, "unknown field `maxToken`"),
            (
                r#"{"temperature":-1}"#,
                "temperature must be a finite number >= 0",
            ),
            (r#"{"topP":0}"#, "topP must be in (0, 1]"),
            (r#"{"topP":1.5}"#, "topP must be in (0, 1]"),
            (r#"{"systemPrompt":"x"}"#, "only applies with chat: true"),
        ] {
            let err = run(json).unwrap_err().to_string();
            assert!(err.contains(says), "{json}: {err}");
        }
        let nan = PrefillOptions {
            temperature: Some(f32::NAN),
            ..PrefillOptions::default()
        };
        assert!(nan
            .run_options()
            .unwrap_err()
            .to_string()
            .contains("temperature"));
    }

    #[test]
    fn sampling_numbers_are_checked_as_given() {
        // JSON numbers are f64s, as JS numbers are: the check and the message see the number
        // given, not its 32-bit rounding (-1e308 was "got -inf", 1.0000000001 passed as 1).
        for (json, says) in [
            (
                r#"{"temperature":-1e308}"#,
                "temperature must be a finite number >= 0 (0 = greedy), got -1e+308",
            ),
            (r#"{"temperature":-1e-300}"#, "(0 = greedy), got -1e-300"),
            (
                r#"{"topP":1.0000000001}"#,
                "topP must be in (0, 1], got 1.0000000001",
            ),
            (r#"{"topP":-1e-300}"#, "topP must be in (0, 1], got -1e-300"),
            (r#"{"topP":2e300}"#, "topP must be in (0, 1], got 2e+300"),
        ] {
            let err = run(json).unwrap_err().to_string();
            assert!(err.contains(says), "{json}: {err}");
        }
        // In range, but past what an f32 holds: the nearest f32 on the same side of 0.
        let sampling = |json: &str| run(json).unwrap().sampling;
        assert_eq!(sampling(r#"{"temperature":1e308}"#).temperature, f32::MAX);
        assert_eq!(
            sampling(r#"{"temperature":1e-300}"#).temperature,
            F32_TINIEST
        );
        assert_eq!(sampling(r#"{"topP":1e-300}"#).top_p, F32_TINIEST);
        assert_eq!(
            sampling(r#"{"temperature":0.7,"topP":0.9}"#).temperature,
            0.7
        );
        assert_eq!(sampling(r#"{"topP":0.9}"#).top_p, 0.9);
        assert_eq!(sampling(r#"{"temperature":0}"#).temperature, 0.0);
        assert_eq!(
            run(r#"{"temperature":null,"topP":null}"#).unwrap(),
            RunOptions::default()
        );
    }

    #[test]
    fn numbers_are_written_as_js_writes_them() {
        for (n, js) in [
            (5.0, "5"),
            (-0.5, "-0.5"),
            (-0.0, "0"),
            (1.0000000001, "1.0000000001"),
            (1e308, "1e+308"),
            (-1e308, "-1e+308"),
            (1e21, "1e+21"),
            (123456789012345680000.0, "123456789012345680000"),
            (0.000001, "0.000001"),
            (1.5e-7, "1.5e-7"),
            (1e-300, "1e-300"),
            (f64::NAN, "NaN"),
            (f64::NEG_INFINITY, "-Infinity"),
        ] {
            assert_eq!(js_number(n), js, "{n:e}");
        }
    }

    #[test]
    fn keys_are_the_fields() {
        for key in ModelOptions::KEYS {
            serde_json::from_str::<ModelOptions>(&format!("{{\"{key}\": null}}")).unwrap();
        }
        for key in PrefillOptions::KEYS {
            serde_json::from_str::<PrefillOptions>(&format!("{{\"{key}\": null}}")).unwrap();
        }
        assert!(check_keys(
            "generate",
            &["maxTokens", "onToken"],
            &[PrefillOptions::KEYS, &["onToken"]].concat()
        )
        .is_ok());
        let err = check_keys(
            "generate",
            &["maxTokens", "max_tokens"],
            PrefillOptions::KEYS,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains(
                "unknown generate option `max_tokens` (expected one of: maxTokens, temperature"
            ),
            "{err}"
        );
    }

    #[test]
    fn urls_name_a_gguf_or_a_folder() {
        assert_eq!(
            RemoteModel::from_url("https://x.test/m/tiny.GGUF?download=1").unwrap(),
            RemoteModel::Gguf("https://x.test/m/tiny.GGUF?download=1".into())
        );
        let folder = RemoteModel::HfFolder {
            config: "/models/tiny/config.json".into(),
            weights: "/models/tiny/model.safetensors".into(),
            tokenizer: "/models/tiny/tokenizer.json".into(),
            tokenizer_config: "/models/tiny/tokenizer_config.json".into(),
        };
        assert_eq!(RemoteModel::from_url("/models/tiny").unwrap(), folder);
        assert_eq!(RemoteModel::from_url("/models/tiny/").unwrap(), folder);
        match RemoteModel::from_url("https://x.test/tiny/?v=2").unwrap() {
            RemoteModel::HfFolder { config, .. } => {
                assert_eq!(config, "https://x.test/tiny/config.json?v=2")
            }
            other => panic!("{other:?}"),
        }
        assert!(RemoteModel::from_url(" ").is_err());
    }
}
