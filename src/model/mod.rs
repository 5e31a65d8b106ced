//! The decoder: one [`Model`] type over the two architectures, with the checks
//! every forward pass needs (token ids, positions, cache room) done up front so
//! that a bad call changes nothing.

pub mod gpt2;
pub mod layers;
pub mod llama;
pub mod random;
mod rope;

use burn::tensor::{s, Device, Tensor};

use crate::cache::KvCache;
use crate::config::{Architecture, ModelConfig};
use crate::error::{Error, Result};
use crate::weights::gguf::GgufFile;
use crate::weights::safetensors::SafetensorsFile;
use crate::weights::TensorSource;
use gpt2::{Gpt2, RandomGpt2Weights};
use llama::{Llama, LlamaLayout};

#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // one per model, never moved around
enum Decoder {
    Gpt2(Gpt2),
    Llama(Llama),
}

/// A loaded decoder on a burn device. It holds weights only; the KV cache is
/// passed in, so one model can serve cached and uncached runs.
#[derive(Debug)]
pub struct Model {
    config: ModelConfig,
    decoder: Decoder,
    device: Device,
}

impl Model {
    /// From HF safetensors and the matching `config.json`.
    pub fn from_safetensors(
        config: ModelConfig,
        weights: &SafetensorsFile,
        device: &Device,
    ) -> Result<Self> {
        Self::from_source(config, weights, LlamaLayout::HuggingFace, device)
    }

    /// From a llama.cpp GGUF file; the config comes from its metadata.
    pub fn from_gguf(gguf: &GgufFile, device: &Device) -> Result<Self> {
        Self::from_source(
            ModelConfig::from_gguf(gguf)?,
            gguf,
            LlamaLayout::Gguf,
            device,
        )
    }

    /// The article's GPT-2 124M with seeded random weights.
    pub fn random_gpt2(seed: u64, device: &Device) -> Result<Self> {
        let config = ModelConfig::gpt2_124m();
        let weights = RandomGpt2Weights::new(config.clone(), seed);
        Self::from_source(config, &weights, LlamaLayout::HuggingFace, device)
    }

    fn from_source(
        config: ModelConfig,
        src: &dyn TensorSource,
        layout: LlamaLayout,
        device: &Device,
    ) -> Result<Self> {
        config.validate()?;
        let decoder = match config.architecture {
            Architecture::Gpt2 => Decoder::Gpt2(Gpt2::load(&config, src, device)?),
            Architecture::Llama | Architecture::Qwen3 => {
                Decoder::Llama(Llama::load(&config, src, layout, device)?)
            }
            Architecture::Gemma3 => return Err(Error::config(
                "the gemma3 architecture is not supported yet (it needs per-layer cache windows)",
            )),
        };
        Ok(Model {
            config,
            decoder,
            device: device.clone(),
        })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Longest position this model can encode, if it has such a limit (GPT-2's position table).
    pub fn position_limit(&self) -> Option<usize> {
        match self.config.architecture {
            Architecture::Gpt2 => Some(self.config.max_position_embeddings),
            Architecture::Llama | Architecture::Qwen3 | Architecture::Gemma3 => None,
        }
    }

    /// Logits `[vocab]` for the last of `ids`, which sit at positions following
    /// what `cache` holds (or at `0..` without a cache, the no-cache baseline
    /// that recomputes the whole sequence). `window` limits how far back each
    /// token attends, matching a sliding-window cache.
    pub fn forward_last(
        &self,
        ids: &[u32],
        mut cache: Option<&mut KvCache>,
        window: Option<usize>,
    ) -> Result<Vec<f32>> {
        let start = cache.as_ref().map_or(0, |c| c.position());
        self.check(ids, start, cache.as_deref())?;
        let hidden = match &self.decoder {
            Decoder::Gpt2(m) => m.forward(ids, start, cache.as_deref_mut(), window),
            Decoder::Llama(m) => m.forward(ids, start, cache, window),
        };
        let n = ids.len();
        // Only the last position's logits are needed to pick the next token.
        let last: Tensor<2> = hidden.slice(s![n - 1..n, ..]);
        let head = match &self.decoder {
            Decoder::Gpt2(m) => m.lm_head(),
            Decoder::Llama(m) => m.lm_head(),
        };
        head.forward(last)
            .into_data()
            .try_to_vec::<f32>()
            .map_err(|e| {
                Error::invalid(format!("reading logits back from the device failed: {e:?}"))
            })
    }

    fn check(&self, ids: &[u32], start: usize, cache: Option<&KvCache>) -> Result<()> {
        if ids.is_empty() {
            return Err(Error::invalid("no tokens to run (empty prompt?)"));
        }
        let vocab = self.config.vocab_size;
        if let Some(bad) = ids.iter().find(|&&id| id as usize >= vocab) {
            return Err(Error::invalid(format!(
                "token id {bad} is outside the model's vocabulary (size {vocab})"
            )));
        }
        let max_len = cache.and_then(KvCache::max_len);
        crate::cache::check_fits(start, ids.len(), self.position_limit(), max_len)
    }
}
