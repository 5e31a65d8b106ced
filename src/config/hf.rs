//! [`ModelConfig`] from a Hugging Face `config.json`.

use serde_json::Value;

use super::{every_nth_global, Architecture, ModelConfig, RopeScaling};
use crate::error::{Error, Result};

pub(super) fn parse(json: &str) -> Result<ModelConfig> {
    let v: Value = serde_json::from_str(json)
        .map_err(|e| Error::config(format!("config.json is not valid JSON: {e}")))?;
    let cfg = HfJson(&v);
    match cfg.str("model_type")? {
        "gpt2" => gpt2(&cfg),
        "llama" => llama(&cfg, Architecture::Llama),
        "qwen3" => llama(&cfg, Architecture::Qwen3),
        "gemma3_text" => gemma3(&cfg),
        // The multimodal Gemma 3 configs keep the language model's under `text_config`.
        "gemma3" => gemma3(&HfJson(cfg.get("text_config").ok_or_else(|| {
            HfJson::missing("text_config")
        })?)),
        other => Err(Error::config(format!(
            "model_type `{other}` is not supported (supported: gpt2, llama, qwen3, gemma3_text, gemma3)"
        ))),
    }
}

fn gpt2(cfg: &HfJson) -> Result<ModelConfig> {
    let hidden_size = cfg.usize("n_embd")?;
    let num_heads = cfg.usize("n_head")?;
    let act = cfg.opt_str("activation_function").unwrap_or("gelu_new");
    if !matches!(act, "gelu_new" | "gelu_pytorch_tanh") {
        return Err(Error::config(format!(
            "activation_function `{act}` is not supported for gpt2 (supported: gelu_new)"
        )));
    }
    Ok(ModelConfig {
        architecture: Architecture::Gpt2,
        vocab_size: cfg.usize("vocab_size")?,
        hidden_size,
        num_layers: cfg.usize("n_layer")?,
        num_heads,
        num_kv_heads: num_heads,
        head_dim: hidden_size / num_heads.max(1),
        intermediate_size: cfg
            .opt_usize("n_inner")?
            .unwrap_or(hidden_size.saturating_mul(4)),
        max_position_embeddings: cfg.usize("n_positions")?,
        norm_eps: cfg.opt_f64("layer_norm_epsilon")?.unwrap_or(1e-5),
        rope_theta: 0.0,
        rope_scaling: None,
        qkv_bias: true,
        tie_word_embeddings: true,
        bos_token_id: cfg.first_id("bos_token_id")?,
        eos_token_ids: cfg.opt_ids("eos_token_id")?.unwrap_or_default(),
        layer_windows: Vec::new(),
        local_rope_theta: None,
        query_pre_attn_scalar: None,
    })
}

/// The fields Llama, Qwen3 and Gemma 3 configs share, with the defaults of
/// `architecture`'s HF config class.
fn rope_decoder(cfg: &HfJson, architecture: Architecture) -> Result<ModelConfig> {
    let hidden_size = cfg.usize("hidden_size")?;
    let num_heads = cfg.usize("num_attention_heads")?;
    let gemma = architecture == Architecture::Gemma3;
    for flag in ["attention_bias", "mlp_bias"] {
        if cfg.opt_bool(flag)? == Some(true) {
            return Err(Error::config(format!(
                "`{flag}: true` is not supported ({} without biases only)",
                architecture.name()
            )));
        }
    }
    Ok(ModelConfig {
        architecture,
        vocab_size: cfg.usize("vocab_size")?,
        hidden_size,
        num_layers: cfg.usize("num_hidden_layers")?,
        num_heads,
        num_kv_heads: cfg.opt_usize("num_key_value_heads")?.unwrap_or(num_heads),
        head_dim: match cfg.opt_usize("head_dim")? {
            Some(d) => d,
            None if gemma => 256,
            None => hidden_size / num_heads.max(1),
        },
        intermediate_size: cfg.usize("intermediate_size")?,
        max_position_embeddings: cfg
            .opt_usize("max_position_embeddings")?
            .unwrap_or(if gemma { 131_072 } else { 2048 }),
        norm_eps: cfg.opt_f64("rms_norm_eps")?.unwrap_or(1e-6),
        rope_theta: cfg.opt_f64("rope_theta")?.unwrap_or(if gemma {
            1_000_000.0
        } else {
            10_000.0
        }),
        rope_scaling: rope_scaling(cfg.get("rope_scaling"))?,
        qkv_bias: false,
        tie_word_embeddings: cfg.opt_bool("tie_word_embeddings")?.unwrap_or(gemma),
        bos_token_id: cfg.first_id("bos_token_id")?,
        eos_token_ids: cfg.opt_ids("eos_token_id")?.unwrap_or_default(),
        layer_windows: Vec::new(),
        local_rope_theta: None,
        query_pre_attn_scalar: None,
    })
}

fn llama(cfg: &HfJson, architecture: Architecture) -> Result<ModelConfig> {
    if let Some(act) = cfg.opt_str("hidden_act") {
        if act != "silu" {
            return Err(Error::config(format!(
                "hidden_act `{act}` is not supported for {} (supported: silu)",
                architecture.name()
            )));
        }
    }
    if cfg.opt_bool("use_sliding_window")? == Some(true) {
        return Err(Error::config(format!(
            "`use_sliding_window: true` is not supported for {}",
            architecture.name()
        )));
    }
    rope_decoder(cfg, architecture)
}

/// Gemma 3 (`Gemma3TextConfig`): `layer_types` or, in older configs,
/// `sliding_window_pattern` say which layers are local; local layers use
/// `rope_local_base_freq` (or `rope_parameters.sliding_attention`).
fn gemma3(cfg: &HfJson) -> Result<ModelConfig> {
    let act = cfg
        .opt_str("hidden_activation")
        .or_else(|| cfg.opt_str("hidden_act"))
        .unwrap_or("gelu_pytorch_tanh");
    if act != "gelu_pytorch_tanh" {
        return Err(Error::config(format!(
            "hidden_activation `{act}` is not supported for gemma3 (supported: gelu_pytorch_tanh)"
        )));
    }
    for capping in ["final_logit_softcapping", "attn_logit_softcapping"] {
        if cfg.get(capping).is_some() {
            return Err(Error::config(format!(
                "`{capping}` is not supported for gemma3 (Gemma 3 has none)"
            )));
        }
    }
    let mut config = rope_decoder(cfg, Architecture::Gemma3)?;
    let window = cfg.opt_usize("sliding_window")?.unwrap_or(4096);
    config.layer_windows = match cfg.get("layer_types") {
        Some(Value::Array(kinds)) => kinds
            .iter()
            .map(|kind| match kind.as_str() {
                Some("sliding_attention") => Ok(Some(window)),
                Some("full_attention") => Ok(None),
                _ => Err(Error::config(format!(
                    "`layer_types` should list \"sliding_attention\" or \"full_attention\", found {kind}"
                ))),
            })
            .collect::<Result<_>>()?,
        Some(other) => return Err(HfJson::wrong("layer_types", "a list", other)),
        None => {
            let period = match cfg.opt_usize("sliding_window_pattern")? {
                Some(p) => p,
                None => cfg.opt_usize("_sliding_window_pattern")?.unwrap_or(6),
            };
            every_nth_global(config.num_layers, period, window)
        }
    };
    let parameters = cfg.get("rope_parameters").map(HfJson);
    let theta_of = |kind: &str| {
        parameters
            .as_ref()
            .and_then(|p| p.get(kind))
            .map(|p| HfJson(p).f64("rope_theta"))
            .transpose()
    };
    if let Some(theta) = theta_of("full_attention")? {
        config.rope_theta = theta;
        config.rope_scaling =
            rope_scaling(parameters.as_ref().and_then(|p| p.get("full_attention")))?;
    }
    config.local_rope_theta = Some(match theta_of("sliding_attention")? {
        Some(theta) => theta,
        None => cfg.opt_f64("rope_local_base_freq")?.unwrap_or(10_000.0),
    });
    config.query_pre_attn_scalar = Some(cfg.opt_f64("query_pre_attn_scalar")?.unwrap_or(256.0));
    Ok(config)
}

fn rope_scaling(value: Option<&Value>) -> Result<Option<RopeScaling>> {
    let Some(v) = value.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let cfg = HfJson(v);
    let kind = cfg
        .opt_str("rope_type")
        .or_else(|| cfg.opt_str("type"))
        .unwrap_or("default");
    let factor = || {
        cfg.f64("factor")
            .map_err(|e| Error::config(format!("rope_scaling: {e}")))
    };
    match kind {
        "default" => Ok(None),
        "linear" => Ok(Some(RopeScaling::Linear { factor: factor()? })),
        "llama3" => Ok(Some(RopeScaling::Llama3 {
            factor: factor()?,
            low_freq_factor: cfg.f64("low_freq_factor")?,
            high_freq_factor: cfg.f64("high_freq_factor")?,
            original_max_position_embeddings: cfg.f64("original_max_position_embeddings")?,
        })),
        other => Err(Error::config(format!(
            "rope_scaling type `{other}` is not supported (supported: linear, llama3)"
        ))),
    }
}

/// Typed access to a JSON object whose error messages name the missing key.
struct HfJson<'a>(&'a Value);

impl HfJson<'_> {
    fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key).filter(|v| !v.is_null())
    }
    fn missing(key: &str) -> Error {
        Error::config(format!("`{key}` is missing"))
    }
    fn wrong(key: &str, want: &str, got: &Value) -> Error {
        Error::config(format!("`{key}` should be {want}, found {got}"))
    }
    fn str(&self, key: &str) -> Result<&str> {
        self.opt_str(key).ok_or_else(|| Self::missing(key))
    }
    fn opt_str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }
    fn usize(&self, key: &str) -> Result<usize> {
        self.opt_usize(key)?.ok_or_else(|| Self::missing(key))
    }
    fn opt_usize(&self, key: &str) -> Result<Option<usize>> {
        self.get(key)
            .map(|v| {
                v.as_u64()
                    .ok_or_else(|| Self::wrong(key, "a non-negative integer", v))
                    .and_then(|n| {
                        // On wasm32 a usize has 32 bits: a larger number would wrap to a small one.
                        usize::try_from(n).map_err(|_| Self::wrong(key, "an integer below 2^32", v))
                    })
            })
            .transpose()
    }
    fn f64(&self, key: &str) -> Result<f64> {
        self.opt_f64(key)?.ok_or_else(|| Self::missing(key))
    }
    fn opt_f64(&self, key: &str) -> Result<Option<f64>> {
        self.get(key)
            .map(|v| v.as_f64().ok_or_else(|| Self::wrong(key, "a number", v)))
            .transpose()
    }
    /// The first id of `key` (configs may list several).
    fn first_id(&self, key: &str) -> Result<Option<u32>> {
        Ok(self.opt_ids(key)?.and_then(|ids| ids.first().copied()))
    }
    fn opt_bool(&self, key: &str) -> Result<Option<bool>> {
        self.get(key)
            .map(|v| {
                v.as_bool()
                    .ok_or_else(|| Self::wrong(key, "true or false", v))
            })
            .transpose()
    }
    /// Token ids may be one integer or a list of them (Llama 3 lists several EOS ids).
    fn opt_ids(&self, key: &str) -> Result<Option<Vec<u32>>> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let as_id = |v: &Value| {
            v.as_u64()
                .filter(|&n| n <= u32::MAX as u64)
                .map(|n| n as u32)
        };
        let ids = match v {
            Value::Array(items) => items.iter().map(as_id).collect::<Option<Vec<_>>>(),
            single => as_id(single).map(|id| vec![id]),
        };
        ids.map(Some)
            .ok_or_else(|| Self::wrong(key, "a token id or a list of them", v))
    }
}
