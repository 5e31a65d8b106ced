//! [`ModelConfig`] from GGUF metadata: the `{arch}.*` keys llama.cpp writes,
//! with llama.cpp's defaults where a key is absent.

use super::{every_nth_global, Architecture, ModelConfig, RopeScaling};
use crate::error::{Error, Result};
use crate::weights::gguf::{GgufFile, MetaValue};

/// llama.cpp's Gemma 3 defaults: every 6th layer global, local layers with RoPE base 10,000.
const GEMMA3_GLOBAL_PERIOD: usize = 6;
const GEMMA3_LOCAL_ROPE_THETA: f64 = 10_000.0;

pub(super) fn parse(gguf: &GgufFile) -> Result<ModelConfig> {
    let arch = gguf.get_str("general.architecture")?;
    let architecture = match arch {
        "llama" => Architecture::Llama,
        "qwen3" => Architecture::Qwen3,
        "gemma3" => Architecture::Gemma3,
        other => {
            return Err(Error::config(format!(
                "GGUF architecture `{other}` is not supported (supported: llama, qwen3, gemma3; for gpt2 use HF safetensors)"
            )))
        }
    };
    let keys = Keys { gguf, arch };
    let hidden_size = keys.u32("embedding_length")?;
    let num_heads = keys.u32("attention.head_count")?;
    let vocab_size = match keys.opt_u32("vocab_size")? {
        Some(n) => n,
        None => gguf.get_str_array("tokenizer.ggml.tokens")?.len(),
    };
    // Gemma 3 states its head size (256 ≠ 640 / 4); llama.cpp's Llama the rotated part.
    let head_dim = match (
        keys.opt_u32("attention.key_length")?,
        keys.opt_u32("rope.dimension_count")?,
    ) {
        (Some(d), _) | (None, Some(d)) => d,
        (None, None) => hidden_size / num_heads.max(1),
    };
    let opt_id = |k: &str| gguf.metadata(k).map(|_| gguf.get_u32(k)).transpose();
    let mut config = ModelConfig {
        architecture,
        vocab_size,
        hidden_size,
        num_layers: keys.u32("block_count")?,
        num_heads,
        num_kv_heads: keys
            .opt_u32("attention.head_count_kv")?
            .unwrap_or(num_heads),
        head_dim,
        intermediate_size: keys.u32("feed_forward_length")?,
        max_position_embeddings: keys.u32("context_length")?,
        norm_eps: keys.f32("attention.layer_norm_rms_epsilon")? as f64,
        rope_theta: keys.opt_f32("rope.freq_base")?.unwrap_or(10_000.0) as f64,
        rope_scaling: rope_scaling(&keys)?,
        qkv_bias: false,
        tie_word_embeddings: !gguf.contains("output.weight"),
        bos_token_id: opt_id("tokenizer.ggml.bos_token_id")?,
        eos_token_ids: opt_id("tokenizer.ggml.eos_token_id")?.into_iter().collect(),
        layer_windows: Vec::new(),
        local_rope_theta: None,
        // llama.cpp scales by 1/√head_dim (Gemma 3's 27B aside); GGUFs carry no other.
        query_pre_attn_scalar: None,
    };
    if architecture == Architecture::Gemma3 {
        let window = keys.u32("attention.sliding_window")?;
        config.layer_windows = match gguf.metadata(&keys.key("attention.sliding_window_pattern")) {
            // Newer converters list, per layer, whether it slides.
            Some(MetaValue::Array(flags)) => flags
                .iter()
                .map(|f| match f {
                    MetaValue::Bool(true) => Ok(Some(window)),
                    MetaValue::Bool(false) => Ok(None),
                    other => Err(Error::config(format!(
                        "GGUF metadata `{}` should list booleans, found {}",
                        keys.key("attention.sliding_window_pattern"),
                        other.type_name()
                    ))),
                })
                .collect::<Result<_>>()?,
            Some(_) => every_nth_global(
                config.num_layers,
                keys.u32("attention.sliding_window_pattern")?,
                window,
            ),
            None => every_nth_global(config.num_layers, GEMMA3_GLOBAL_PERIOD, window),
        };
        config.local_rope_theta = Some(
            keys.opt_f32("rope.freq_base_swa")?
                .map_or(GEMMA3_LOCAL_ROPE_THETA, f64::from),
        );
    }
    if let Some(value) = keys.opt_u32("attention.value_length")? {
        if value != head_dim {
            return Err(Error::config(format!(
                "value heads of {value} differ from key heads of {head_dim}; not supported"
            )));
        }
    }
    Ok(config)
}

/// `{arch}.rope.scaling.type`: `none` or `linear` (Gemma 3's larger models,
/// applied to their global layers); llama.cpp's other types are refused.
fn rope_scaling(keys: &Keys) -> Result<Option<RopeScaling>> {
    let kind_key = keys.key("rope.scaling.type");
    match keys.gguf.metadata(&kind_key) {
        None => Ok(None),
        Some(_) => match keys.gguf.get_str(&kind_key)? {
            "none" => Ok(None),
            "linear" => Ok(Some(RopeScaling::Linear {
                factor: keys.f32("rope.scaling.factor")? as f64,
            })),
            other => Err(Error::config(format!(
                "GGUF rope scaling `{other}` ({kind_key}) is not supported (supported: none, linear)"
            ))),
        },
    }
}

/// The `{arch}.*` metadata keys.
struct Keys<'a> {
    gguf: &'a GgufFile,
    arch: &'a str,
}

impl Keys<'_> {
    fn key(&self, k: &str) -> String {
        format!("{}.{k}", self.arch)
    }
    fn u32(&self, k: &str) -> Result<usize> {
        Ok(self.gguf.get_u32(&self.key(k))? as usize)
    }
    fn opt_u32(&self, k: &str) -> Result<Option<usize>> {
        let key = self.key(k);
        self.gguf
            .metadata(&key)
            .map(|_| self.gguf.get_u32(&key).map(|n| n as usize))
            .transpose()
    }
    fn f32(&self, k: &str) -> Result<f32> {
        self.gguf.get_f32(&self.key(k))
    }
    fn opt_f32(&self, k: &str) -> Result<Option<f32>> {
        let key = self.key(k);
        self.gguf
            .metadata(&key)
            .map(|_| self.gguf.get_f32(&key))
            .transpose()
    }
}
