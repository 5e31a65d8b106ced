//! Model hyper-parameters, read from a Hugging Face `config.json`, from GGUF
//! metadata, or built in (the KV-cache article's GPT-2 124M).

use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::weights::gguf::GgufFile;

/// Which decoder family the weights belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Architecture {
    /// Learned positions, LayerNorm, fused QKV, GELU (tanh), tied head.
    Gpt2,
    /// RMSNorm, RoPE, grouped-query attention, SwiGLU.
    Llama,
}

/// How RoPE frequencies are stretched for long contexts (`rope_scaling` in HF configs).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(
    tag = "type",
    rename_all = "lowercase",
    rename_all_fields = "camelCase"
)]
pub enum RopeScaling {
    /// Positions divided by `factor`.
    Linear { factor: f64 },
    /// Llama 3.1/3.2: low frequencies divided by `factor`, high ones kept, a smooth blend between.
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position_embeddings: f64,
    },
}

/// Serialized in camelCase: this is what JS sees as `Generator.config`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelConfig {
    pub architecture: Architecture,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    /// Fewer than `num_heads` means grouped-query attention: each K/V head serves a group of query heads.
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub intermediate_size: usize,
    /// Longest sequence the model was trained for; GPT-2 cannot go past it (its positions are a table).
    pub max_position_embeddings: usize,
    pub norm_eps: f64,
    pub rope_theta: f64,
    pub rope_scaling: Option<RopeScaling>,
    /// GPT-2 in HF has a bias on the fused QKV projection; the article's GPT-2 does not.
    pub qkv_bias: bool,
    pub tie_word_embeddings: bool,
    pub bos_token_id: Option<u32>,
    /// Generation stops at any of these unless the caller overrides them.
    pub eos_token_ids: Vec<u32>,
}

impl ModelConfig {
    /// The KV-cache article's GPT-2 124M: vocab 50257, context 1024, 768 dim, 12 heads, 12 layers, no QKV bias.
    pub fn gpt2_124m() -> Self {
        ModelConfig {
            architecture: Architecture::Gpt2,
            vocab_size: 50257,
            hidden_size: 768,
            num_layers: 12,
            num_heads: 12,
            num_kv_heads: 12,
            head_dim: 64,
            intermediate_size: 4 * 768,
            max_position_embeddings: 1024,
            norm_eps: 1e-5,
            rope_theta: 0.0,
            rope_scaling: None,
            qkv_bias: false,
            tie_word_embeddings: true,
            bos_token_id: Some(50256),
            eos_token_ids: vec![50256],
        }
    }

    /// Parses a Hugging Face `config.json` (`model_type` `gpt2` or `llama`).
    pub fn from_hf_json(json: &str) -> Result<Self> {
        let v: Value = serde_json::from_str(json)
            .map_err(|e| Error::config(format!("config.json is not valid JSON: {e}")))?;
        let cfg = HfJson(&v);
        let model_type = cfg.str("model_type")?;
        let config = match model_type {
            "gpt2" => Self::gpt2_from_hf(&cfg)?,
            "llama" => Self::llama_from_hf(&cfg)?,
            other => {
                return Err(Error::config(format!(
                    "model_type `{other}` is not supported (supported: gpt2, llama)"
                )))
            }
        };
        config.validate()?;
        Ok(config)
    }

    fn gpt2_from_hf(cfg: &HfJson) -> Result<Self> {
        let hidden_size = cfg.usize("n_embd")?;
        let num_heads = cfg.usize("n_head")?;
        let act = cfg.opt_str("activation_function").unwrap_or("gelu_new");
        if !matches!(act, "gelu_new" | "gelu_pytorch_tanh") {
            return Err(Error::config(format!(
                "activation_function `{act}` is not supported for gpt2 (supported: gelu_new)"
            )));
        }
        let eos = cfg.opt_ids("eos_token_id")?.unwrap_or_default();
        Ok(ModelConfig {
            architecture: Architecture::Gpt2,
            vocab_size: cfg.usize("vocab_size")?,
            hidden_size,
            num_layers: cfg.usize("n_layer")?,
            num_heads,
            num_kv_heads: num_heads,
            head_dim: hidden_size / num_heads.max(1),
            intermediate_size: cfg.opt_usize("n_inner")?.unwrap_or(4 * hidden_size),
            max_position_embeddings: cfg.usize("n_positions")?,
            norm_eps: cfg.opt_f64("layer_norm_epsilon")?.unwrap_or(1e-5),
            rope_theta: 0.0,
            rope_scaling: None,
            qkv_bias: true,
            tie_word_embeddings: true,
            bos_token_id: cfg
                .opt_ids("bos_token_id")?
                .and_then(|ids| ids.first().copied()),
            eos_token_ids: eos,
        })
    }

    fn llama_from_hf(cfg: &HfJson) -> Result<Self> {
        if let Some(act) = cfg.opt_str("hidden_act") {
            if act != "silu" {
                return Err(Error::config(format!(
                    "hidden_act `{act}` is not supported for llama (supported: silu)"
                )));
            }
        }
        for flag in ["attention_bias", "mlp_bias"] {
            if cfg.opt_bool(flag)? == Some(true) {
                return Err(Error::config(format!(
                    "`{flag}: true` is not supported (llama without biases only)"
                )));
            }
        }
        let hidden_size = cfg.usize("hidden_size")?;
        let num_heads = cfg.usize("num_attention_heads")?;
        Ok(ModelConfig {
            architecture: Architecture::Llama,
            vocab_size: cfg.usize("vocab_size")?,
            hidden_size,
            num_layers: cfg.usize("num_hidden_layers")?,
            num_heads,
            num_kv_heads: cfg.opt_usize("num_key_value_heads")?.unwrap_or(num_heads),
            head_dim: cfg
                .opt_usize("head_dim")?
                .unwrap_or(hidden_size / num_heads.max(1)),
            intermediate_size: cfg.usize("intermediate_size")?,
            max_position_embeddings: cfg.opt_usize("max_position_embeddings")?.unwrap_or(2048),
            norm_eps: cfg.opt_f64("rms_norm_eps")?.unwrap_or(1e-6),
            rope_theta: cfg.opt_f64("rope_theta")?.unwrap_or(10000.0),
            rope_scaling: rope_scaling_from_hf(cfg.0.get("rope_scaling"))?,
            qkv_bias: false,
            tie_word_embeddings: cfg.opt_bool("tie_word_embeddings")?.unwrap_or(false),
            bos_token_id: cfg
                .opt_ids("bos_token_id")?
                .and_then(|ids| ids.first().copied()),
            eos_token_ids: cfg.opt_ids("eos_token_id")?.unwrap_or_default(),
        })
    }

    /// Reads a Llama config from GGUF metadata (`llama.*` keys, as llama.cpp writes them).
    pub fn from_gguf(gguf: &GgufFile) -> Result<Self> {
        let arch = gguf.get_str("general.architecture")?;
        if arch != "llama" {
            return Err(Error::config(format!(
                "GGUF architecture `{arch}` is not supported (supported: llama; for gpt2 use HF safetensors)"
            )));
        }
        let key = |k: &str| format!("llama.{k}");
        let hidden_size = gguf.get_u32(&key("embedding_length"))? as usize;
        let num_heads = gguf.get_u32(&key("attention.head_count"))? as usize;
        let vocab_size = match gguf.get_u32(&key("vocab_size")) {
            Ok(n) => n as usize,
            Err(_) => gguf.get_str_array("tokenizer.ggml.tokens")?.len(),
        };
        let head_dim = match gguf.get_u32(&key("rope.dimension_count")) {
            Ok(d) => d as usize,
            Err(_) => hidden_size / num_heads.max(1),
        };
        let opt_u32 = |k: &str| gguf.metadata(k).map(|_| gguf.get_u32(k)).transpose();
        let config = ModelConfig {
            architecture: Architecture::Llama,
            vocab_size,
            hidden_size,
            num_layers: gguf.get_u32(&key("block_count"))? as usize,
            num_heads,
            num_kv_heads: opt_u32(&key("attention.head_count_kv"))?
                .map_or(num_heads, |n| n as usize),
            head_dim,
            intermediate_size: gguf.get_u32(&key("feed_forward_length"))? as usize,
            max_position_embeddings: gguf.get_u32(&key("context_length"))? as usize,
            norm_eps: gguf.get_f32(&key("attention.layer_norm_rms_epsilon"))? as f64,
            rope_theta: gguf
                .metadata(&key("rope.freq_base"))
                .map(|_| gguf.get_f32(&key("rope.freq_base")))
                .transpose()?
                .unwrap_or(10000.0) as f64,
            rope_scaling: None,
            qkv_bias: false,
            tie_word_embeddings: !gguf.contains("output.weight"),
            bos_token_id: opt_u32("tokenizer.ggml.bos_token_id")?,
            eos_token_ids: opt_u32("tokenizer.ggml.eos_token_id")?
                .into_iter()
                .collect(),
        };
        if let Some(kind) = gguf.metadata(&key("rope.scaling.type")) {
            if !matches!(kind, crate::weights::gguf::MetaValue::Str(s) if s == "none") {
                return Err(Error::config(
                    "GGUF rope scaling (llama.rope.scaling.type) is not supported",
                ));
            }
        }
        config.validate()?;
        Ok(config)
    }

    /// Catches configs whose numbers cannot describe a working model, before any tensor is allocated.
    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_layers", self.num_layers),
            ("num_heads", self.num_heads),
            ("num_kv_heads", self.num_kv_heads),
            ("head_dim", self.head_dim),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(Error::config(format!("{name} must be positive")));
            }
        }
        if !self.num_heads.is_multiple_of(self.num_kv_heads) {
            return Err(Error::config(format!(
                "num_attention_heads ({}) must be a multiple of num_key_value_heads ({})",
                self.num_heads, self.num_kv_heads
            )));
        }
        if self.architecture == Architecture::Gpt2
            && self.num_heads * self.head_dim != self.hidden_size
        {
            return Err(Error::config(format!(
                "n_embd ({}) must be divisible by n_head ({})",
                self.hidden_size, self.num_heads
            )));
        }
        if self.architecture == Architecture::Llama && !self.head_dim.is_multiple_of(2) {
            return Err(Error::config(format!(
                "head_dim ({}) must be even for RoPE",
                self.head_dim
            )));
        }
        Ok(())
    }

    /// Bytes of keys plus values for `len` tokens: 2 × layers × kv_heads × head_dim × len × 4 (f32).
    pub fn kv_bytes_for(&self, len: usize) -> usize {
        2 * self.num_layers * self.num_kv_heads * self.head_dim * len * std::mem::size_of::<f32>()
    }
}

fn rope_scaling_from_hf(value: Option<&Value>) -> Result<Option<RopeScaling>> {
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
                    .map(|n| n as usize)
                    .ok_or_else(|| Self::wrong(key, "a non-negative integer", v))
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
