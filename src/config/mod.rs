//! Model hyper-parameters, read from a Hugging Face `config.json` ([`hf`]),
//! from GGUF metadata ([`gguf`]), or built in (the KV-cache article's GPT-2 124M).

mod gguf;
mod hf;

use serde::Serialize;

use crate::error::{Error, Result};

/// Which decoder family the weights belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
#[serde(rename_all = "lowercase")]
pub enum Architecture {
    /// Learned positions, LayerNorm, fused QKV, GELU (tanh), tied head.
    Gpt2,
    /// RMSNorm, RoPE, grouped-query attention, SwiGLU (SmolLM2, Llama 3).
    Llama,
    /// Llama with an RMSNorm on each head's queries and keys before RoPE.
    Qwen3,
    /// Gemma 3: embeddings scaled by √hidden, q/k RMSNorm, RMSNorms before and
    /// after attention and MLP, GeGLU (tanh GELU), tied head, sliding-window
    /// (local) layers between full-attention (global) ones, each kind with its
    /// own RoPE base.
    Gemma3,
}

impl Architecture {
    pub fn name(self) -> &'static str {
        match self {
            Architecture::Gpt2 => "gpt2",
            Architecture::Llama => "llama",
            Architecture::Qwen3 => "qwen3",
            Architecture::Gemma3 => "gemma3",
        }
    }

    fn uses_rope(self) -> bool {
        self != Architecture::Gpt2
    }
}

/// How RoPE frequencies are stretched for long contexts (`rope_scaling` in HF configs).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
#[serde(
    tag = "type",
    rename_all = "lowercase",
    rename_all_fields = "camelCase"
)]
pub enum RopeScaling {
    /// Positions divided by `factor`.
    Linear {
        /// How much longer a context than trained for.
        factor: f64,
    },
    /// Llama 3.1/3.2: low frequencies divided by `factor`, high ones kept, a smooth blend between.
    Llama3 {
        /// How much longer a context than trained for.
        factor: f64,
        /// Wavelengths longer than `original_max_position_embeddings / low_freq_factor` are divided by `factor`.
        low_freq_factor: f64,
        /// Wavelengths shorter than `original_max_position_embeddings / high_freq_factor` are kept.
        high_freq_factor: f64,
        /// The context the model was first trained for.
        original_max_position_embeddings: f64,
    },
}

/// The model's hyper-parameters. Serialized in camelCase: this is what JS sees as `Generator.config`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
#[serde(rename_all = "camelCase")]
pub struct ModelConfig {
    /// The decoder family.
    pub architecture: Architecture,
    /// Number of token ids the model has embeddings for.
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Number of decoder layers (each with its own KV cache).
    pub num_layers: usize,
    /// Query heads per layer.
    pub num_heads: usize,
    /// Fewer than `num_heads` means grouped-query attention: each K/V head serves a group of query heads.
    pub num_kv_heads: usize,
    /// Width of one attention head.
    pub head_dim: usize,
    /// Width of the feed-forward layer.
    pub intermediate_size: usize,
    /// Longest sequence the model was trained for; GPT-2 cannot go past it (its positions are a table).
    pub max_position_embeddings: usize,
    /// Epsilon of the LayerNorm / RMSNorm layers.
    pub norm_eps: f64,
    /// RoPE base frequency (0 for GPT-2, which has learned positions).
    pub rope_theta: f64,
    /// Applies to the layers without a window of their own (Gemma 3 stretches only its global layers).
    pub rope_scaling: Option<RopeScaling>,
    /// GPT-2 in HF has a bias on the fused QKV projection; the article's GPT-2 does not.
    pub qkv_bias: bool,
    /// Whether the output head reuses the token embeddings.
    pub tie_word_embeddings: bool,
    /// Beginning-of-sequence token id, if the model has one.
    pub bos_token_id: Option<u32>,
    /// Generation stops at any of these unless the caller overrides them.
    pub eos_token_ids: Vec<u32>,
    /// Each layer's own sliding window, for models that mix local and global
    /// layers (Gemma 3: five local layers of 512 positions per global one);
    /// empty when every layer attends to the whole sequence.
    pub layer_windows: Vec<Option<usize>>,
    /// RoPE base of the layers with a window of their own, where it differs
    /// from `rope_theta` (Gemma 3: 10,000).
    pub local_rope_theta: Option<f64>,
    /// Attention multiplies q·k by 1/√`query_pre_attn_scalar` (HF Gemma 3's
    /// config); without it, by 1/√`head_dim`.
    pub query_pre_attn_scalar: Option<f64>,
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
            layer_windows: Vec::new(),
            local_rope_theta: None,
            query_pre_attn_scalar: None,
        }
    }

    /// Parses a Hugging Face `config.json` (`model_type` `gpt2`, `llama`,
    /// `qwen3`, `gemma3_text` or `gemma3`).
    pub fn from_hf_json(json: &str) -> Result<Self> {
        let config = hf::parse(json)?;
        config.validate()?;
        Ok(config)
    }

    /// Reads the config from GGUF metadata (`general.architecture` `llama`,
    /// `qwen3` or `gemma3`, and its keys as llama.cpp writes them).
    pub fn from_gguf(file: &crate::weights::gguf::GgufFile) -> Result<Self> {
        let config = gguf::parse(file)?;
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
        self.validate_sizes()?;
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
        if self.architecture.uses_rope() && !self.head_dim.is_multiple_of(2) {
            return Err(Error::config(format!(
                "head_dim ({}) must be even for RoPE",
                self.head_dim
            )));
        }
        if !self.layer_windows.is_empty() && self.layer_windows.len() != self.num_layers {
            return Err(Error::config(format!(
                "{} layer kinds (sliding or full attention) are given for {} layers",
                self.layer_windows.len(),
                self.num_layers
            )));
        }
        let context = self.max_position_embeddings;
        for window in self.layer_windows.iter().flatten() {
            if *window == 0 {
                return Err(Error::config(
                    "the sliding window must be at least 1 position (found 0)",
                ));
            }
            if *window > context {
                return Err(Error::config(format!(
                    "the sliding window ({window}) is larger than the model's context ({context} positions)"
                )));
            }
        }
        if self
            .query_pre_attn_scalar
            .is_some_and(|s| s.is_nan() || s <= 0.0)
        {
            return Err(Error::config("query_pre_attn_scalar must be positive"));
        }
        self.validate_numbers()
    }

    /// Refuses sizes no real model has, before anything is sized from them
    /// (a corrupt header must not make the loader allocate gigabytes). The
    /// products are taken in 64 bits, so nothing wraps.
    fn validate_sizes(&self) -> Result<()> {
        let most = [
            ("vocab_size", self.vocab_size, 1 << 24),
            ("hidden_size", self.hidden_size, 1 << 17),
            ("num_layers", self.num_layers, 1 << 12),
            ("num_heads", self.num_heads, 1 << 12),
            ("head_dim", self.head_dim, 1 << 14),
            ("intermediate_size", self.intermediate_size, 1 << 20),
            (
                "max_position_embeddings",
                self.max_position_embeddings,
                1 << 24,
            ),
        ];
        for (name, value, limit) in most {
            if value > limit {
                return Err(Error::config(format!(
                    "{name} {value} is larger than any model's (at most {limit})"
                )));
            }
        }
        let attention_width = self.num_heads as u64 * self.head_dim as u64;
        if attention_width > 1 << 17 {
            return Err(Error::config(format!(
                "num_heads × head_dim = {} × {} = {attention_width} is larger than any model's (at most {})",
                self.num_heads,
                self.head_dim,
                1u64 << 17
            )));
        }
        Ok(())
    }

    /// Refuses epsilons and RoPE parameters that cannot give a working model
    /// (zero, negative, NaN, infinite, or absurdly large).
    fn validate_numbers(&self) -> Result<()> {
        // 1e300 as "1e300", not 301 digits.
        let shown = |value: f64| {
            let plain = value.to_string();
            if plain.len() > 16 {
                format!("{value:e}")
            } else {
                plain
            }
        };
        if !(self.norm_eps.is_finite() && self.norm_eps > 0.0 && self.norm_eps < 1.0) {
            return Err(Error::config(format!(
                "the norm epsilon must be a finite number between 0 and 1 (exclusive), got {}",
                shown(self.norm_eps)
            )));
        }
        let positive = |name: &str, value: f64| {
            if value.is_finite() && value > 0.0 {
                Ok(())
            } else {
                Err(Error::config(format!(
                    "{name} must be a finite number > 0, got {}",
                    shown(value)
                )))
            }
        };
        if self.architecture.uses_rope() {
            positive("rope_theta", self.rope_theta)?;
        }
        if let Some(theta) = self.local_rope_theta {
            positive("the local layers' rope_theta", theta)?;
        }
        if let Some(scalar) = self.query_pre_attn_scalar {
            positive("query_pre_attn_scalar", scalar)?;
        }
        // Every number of the scaling (its JSON form: a NaN or infinity becomes null).
        if let Some(scaling) = &self.rope_scaling {
            let fields = serde_json::to_value(scaling).unwrap_or_default();
            for (key, value) in fields.as_object().into_iter().flatten() {
                if key != "type" {
                    positive(
                        &format!("rope_scaling.{key}"),
                        value.as_f64().unwrap_or(f64::NAN),
                    )?;
                }
            }
        }
        Ok(())
    }

    /// What attention multiplies q·k by before the softmax.
    pub fn attention_scale(&self) -> f32 {
        let scalar = self.query_pre_attn_scalar.unwrap_or(self.head_dim as f64);
        (1.0 / scalar.sqrt()) as f32
    }

    /// The sliding window that the model itself imposes on layer `layer`, if
    /// any (Gemma 3's local layers); `None`: the layer attends to the whole
    /// sequence, and the user's cache strategy applies.
    pub fn layer_window(&self, layer: usize) -> Option<usize> {
        self.layer_windows.get(layer).copied().flatten()
    }

    /// RoPE base and scaling of the layers with a window of their own
    /// (`local`) or of the others: Gemma 3's local layers have their own base
    /// and are never stretched.
    pub fn rope_of(&self, local: bool) -> (f64, Option<&RopeScaling>) {
        match (local, self.local_rope_theta) {
            (true, Some(theta)) => (theta, None),
            _ => (self.rope_theta, self.rope_scaling.as_ref()),
        }
    }
}

/// llama.cpp's and HF's default layer pattern for Gemma 3: every `period`-th
/// layer global, the others local with `window`.
pub(crate) fn every_nth_global(
    num_layers: usize,
    period: usize,
    window: usize,
) -> Vec<Option<usize>> {
    (0..num_layers)
        .map(|i| (period == 0 || (i + 1) % period != 0).then_some(window))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemma3_layers_are_five_local_then_one_global() {
        let w = every_nth_global(18, 6, 512);
        let global: Vec<usize> = (0..18).filter(|&i| w[i].is_none()).collect();
        assert_eq!(global, vec![5, 11, 17]);
        assert_eq!(w[0], Some(512));
    }

    #[test]
    fn sliding_windows_must_fit_the_context() {
        let mut c = ModelConfig::gpt2_124m();
        c.layer_windows = vec![Some(0); 12];
        assert!(c.validate().unwrap_err().to_string().contains("at least 1"));
        c.layer_windows = vec![Some(2048); 12];
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("2048") && err.contains("1024"), "{err}");
        c.layer_windows = vec![Some(8); 3];
        assert!(c.validate().is_err());
    }
}
