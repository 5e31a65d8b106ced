//! The decoder: one [`Model`] type over the two architectures, with the checks
//! every forward pass needs (token ids, positions, cache room) done up front so
//! that a bad call changes nothing, and [`Past`]: how the decoders' layers
//! call attention, with or without the KV cache.

pub mod gemma3;
pub mod gpt2;
pub mod layers;
pub mod llama;
pub mod random;
mod rope;

use burn::tensor::{s, Device, Tensor, TensorData};

use crate::attention::{self, Heads, Run};
use crate::cache::{self, KvCache, LayerCache, LayerPlan};
use crate::config::{Architecture, ModelConfig};
use crate::error::{Error, Result};
use crate::weights::gguf::GgufFile;
use crate::weights::safetensors::SafetensorsFile;
use crate::weights::TensorSource;
use gemma3::{Gemma3, Gemma3Layout};
use gpt2::{Gpt2, RandomGpt2Weights};
use layers::floats;
use llama::{Llama, LlamaLayout};

#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // one per model, never moved around
enum Decoder {
    Gpt2(Gpt2),
    Llama(Llama),
    Gemma3(Gemma3),
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
            Architecture::Gemma3 => {
                let layout = match layout {
                    LlamaLayout::HuggingFace => Gemma3Layout::hugging_face(src),
                    LlamaLayout::Gguf => Gemma3Layout::Gguf,
                };
                Decoder::Gemma3(Gemma3::load(&config, src, &layout, device)?)
            }
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

    /// Logits `[vocab]` for the last of `ids`, which follow the tokens `cache`
    /// holds: the cached path, where each token is computed once.
    pub fn forward_last(&self, ids: &[u32], cache: &mut KvCache) -> Result<Vec<f32>> {
        let start = cache.position();
        self.check(ids, start, cache.max_len())?;
        let layers = cache.layers_mut();
        let logits = crate::pool::on_pool(|| {
            let hidden = self.forward(ids, start, &mut Past::Cached(layers));
            self.logits_of_last(hidden)
        });
        cache.advance(ids.len());
        logits
    }

    /// Logits `[vocab]` for the last of `ids`, the whole sequence from position
    /// 0, without a cache: the baseline that recomputes everything for every
    /// token. Each layer is masked as its plan says, as the cache would.
    pub fn forward_last_uncached(&self, ids: &[u32], plans: &[LayerPlan]) -> Result<Vec<f32>> {
        self.check(ids, 0, cache::max_len(plans))?;
        let scale = self.config.attention_scale();
        crate::pool::on_pool(|| {
            self.logits_of_last(self.forward(ids, 0, &mut Past::Recomputed { plans, scale }))
        })
    }

    /// The logits of every position of `ids`, the whole sequence from position
    /// 0 without a cache (each layer masked as its plan says): `each(i, logits)`
    /// gets row `i`, the distribution of the token after `ids[i]`. The LM head
    /// runs over [`HEAD_ROWS`] positions at a time, so at most that many rows
    /// of `[vocab]` logits are held at once, however long the sequence.
    pub fn forward_all_uncached(
        &self,
        ids: &[u32],
        plans: &[LayerPlan],
        mut each: impl FnMut(usize, &[f32]),
    ) -> Result<()> {
        self.check(ids, 0, cache::max_len(plans))?;
        let scale = self.config.attention_scale();
        let hidden =
            crate::pool::on_pool(|| self.forward(ids, 0, &mut Past::Recomputed { plans, scale }));
        let vocab = self.config.vocab_size;
        for from in (0..ids.len()).step_by(HEAD_ROWS) {
            let to = (from + HEAD_ROWS).min(ids.len());
            let logits = self.head_logits(hidden.clone().slice(s![from..to, ..]))?;
            for (row, logits) in logits.chunks_exact(vocab).enumerate() {
                each(from + row, logits);
            }
        }
        Ok(())
    }

    /// Fails with `ContextFull`, before anything runs, unless `n` more tokens
    /// after `position` fit both in the model's context and in `max_len`
    /// (what the cache's layers hold, when they are not all windows).
    pub fn check_room(&self, position: usize, n: usize, max_len: Option<usize>) -> Result<()> {
        // Saturating: `n` may come from the caller (a u32 in wasm32's 32-bit usize).
        let total = position.saturating_add(n);
        let full = |why: String, remedy: &str| {
            Err(Error::ContextFull(format!(
                "{total} tokens ({position} so far + {n} new) would not fit: {why}; {remedy}"
            )))
        };
        // First, as neither a larger maxSeqLen nor a window would help here.
        let context = self.config.max_position_embeddings;
        if total > context {
            return full(
                format!("the model's context is {context} positions"),
                "reset, or send fewer tokens",
            );
        }
        if let Some(max_len) = max_len.filter(|&max_len| total > max_len) {
            return full(
                format!("maxSeqLen is {max_len}"),
                "reset, raise maxSeqLen, or use the window strategy",
            );
        }
        Ok(())
    }

    /// Final hidden states `[n, hidden]` of `ids` at positions `start..`.
    fn forward(&self, ids: &[u32], start: usize, past: &mut Past) -> Tensor<2> {
        match &self.decoder {
            Decoder::Gpt2(m) => m.forward(ids, start, past),
            Decoder::Llama(m) => m.forward(ids, start, past),
            Decoder::Gemma3(m) => m.forward(ids, start, past),
        }
    }

    /// Only the last position's logits are needed to pick the next token.
    fn logits_of_last(&self, hidden: Tensor<2>) -> Result<Vec<f32>> {
        let n = hidden.dims()[0];
        self.head_logits(hidden.slice(s![n - 1..n, ..]))
    }

    /// The LM head over final hidden states `[rows, hidden]`: logits `[rows, vocab]`, row-major.
    fn head_logits(&self, hidden: Tensor<2>) -> Result<Vec<f32>> {
        let head = match &self.decoder {
            Decoder::Gpt2(m) => m.lm_head(),
            Decoder::Llama(m) => m.lm_head(),
            Decoder::Gemma3(m) => m.lm_head(),
        };
        head.forward(hidden)
            .into_data()
            .try_to_vec::<f32>()
            .map_err(|e| {
                Error::invalid(format!("reading logits back from the device failed: {e:?}"))
            })
    }

    fn check(&self, ids: &[u32], start: usize, max_len: Option<usize>) -> Result<()> {
        if ids.is_empty() {
            return Err(Error::invalid("no tokens to run (empty prompt?)"));
        }
        let vocab = self.config.vocab_size;
        if let Some(bad) = ids.iter().find(|&&id| id as usize >= vocab) {
            return Err(Error::invalid(format!(
                "token id {bad} is outside the model's vocabulary (size {vocab})"
            )));
        }
        self.check_room(start, ids.len(), max_len)
    }
}

/// Positions per LM-head pass in [`Model::forward_all_uncached`]: bounds the
/// logits held at once to this many rows of `[vocab]` (12 MiB for a 49k vocabulary).
pub const HEAD_ROWS: usize = 64;

/// Where each layer's attention finds the keys and values of the tokens
/// before this forward pass's.
pub(crate) enum Past<'a> {
    /// Nowhere: the pass is the whole sequence, from position 0, and layer `i`
    /// is masked as `plans[i]` says.
    Recomputed { plans: &'a [LayerPlan], scale: f32 },
    /// In the KV cache's layers; the pass's tokens follow what they hold.
    Cached(&'a mut [LayerCache]),
}

impl Past<'_> {
    /// Self-attention of layer `layer` for the pass's tokens at positions
    /// `start..`: `q` is `[heads, n, head_dim]`, `k` and `v` are
    /// `[kv_heads, n, head_dim]`; returns `[heads, n, head_dim]`.
    pub(crate) fn attend(
        &mut self,
        layer: usize,
        start: usize,
        q: Tensor<3>,
        k: Tensor<3>,
        v: Tensor<3>,
    ) -> Tensor<3> {
        match self {
            // No cache: the tokens attend to one another.
            Past::Recomputed { plans, scale } => {
                let ([query, n, dim], kv) = (q.dims(), k.dims()[0]);
                let heads = Heads {
                    query,
                    kv,
                    dim,
                    scale: *scale,
                };
                let device = q.device();
                let (k, v) = (floats(k), floats(v));
                let run = Run::chunk(&k, &v, n, start);
                let out =
                    attention::over_rows(&floats(q), start, heads, plans[layer].mask(), &[run]);
                Tensor::from_data(TensorData::new(out, [query, n, dim]), &device)
            }
            // A cache: the layer stores the new keys and values, then the new
            // queries attend over all it holds (on the first call, just those).
            Past::Cached(layers) => {
                let [heads, n, dim] = q.dims();
                let device = q.device();
                let out = layers[layer].attend(start, &floats(q), &floats(k), &floats(v));
                Tensor::from_data(TensorData::new(out, [heads, n, dim]), &device)
            }
        }
    }
}
