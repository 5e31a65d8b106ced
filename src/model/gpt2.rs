//! GPT-2: learned position embeddings, pre-LayerNorm blocks, a fused QKV
//! projection stored `[in, out]` (HF's Conv1D), GELU (tanh), tied LM head.

use burn::tensor::{activation::gelu_approximate, s, Device, Tensor, TensorData};

use super::layers::{load, Embedding, LayerNorm, Linear};
use super::Past;
use crate::budget;
use crate::config::ModelConfig;
use crate::error::Result;
use crate::weights::{HostTensor, TensorSource};

#[derive(Debug)]
pub struct Gpt2 {
    wte: Embedding,
    wpe: Embedding,
    blocks: Vec<Block>,
    ln_f: LayerNorm,
    lm_head: Linear,
    device: Device,
    heads: usize,
    head_dim: usize,
}

#[derive(Debug)]
struct Block {
    ln_1: LayerNorm,
    c_attn: Linear,
    c_proj: Linear,
    ln_2: LayerNorm,
    c_fc: Linear,
    mlp_proj: Linear,
}

/// HF checkpoints name tensors `h.0...` or `transformer.h.0...`; accept both.
fn resolve(src: &dyn TensorSource, name: &str) -> String {
    let prefixed = format!("transformer.{name}");
    if !src.contains(name) && src.contains(&prefixed) {
        prefixed
    } else {
        name.to_string()
    }
}

impl Gpt2 {
    pub fn load(config: &ModelConfig, src: &dyn TensorSource, device: &Device) -> Result<Self> {
        let (d, ff, vocab) = (
            config.hidden_size,
            config.intermediate_size,
            config.vocab_size,
        );
        let get = |name: &str, shape: &[usize]| load(src, &resolve(src, name), shape);
        let norm = |prefix: &str| -> Result<LayerNorm> {
            Ok(LayerNorm::new(
                get(&format!("{prefix}.weight"), &[d])?,
                get(&format!("{prefix}.bias"), &[d])?,
                config.norm_eps,
                device,
            ))
        };
        let conv1d = |prefix: &str, n_in: usize, n_out: usize, bias: bool| -> Result<Linear> {
            let weight = get(&format!("{prefix}.weight"), &[n_in, n_out])?;
            let bias = if bias {
                Some(get(&format!("{prefix}.bias"), &[n_out])?)
            } else {
                None
            };
            Ok(Linear::from_in_out(weight, bias, device))
        };
        let blocks = (0..config.num_layers)
            .map(|i| {
                let p = format!("h.{i}");
                Ok(Block {
                    ln_1: norm(&format!("{p}.ln_1"))?,
                    c_attn: conv1d(&format!("{p}.attn.c_attn"), d, 3 * d, config.qkv_bias)?,
                    c_proj: conv1d(&format!("{p}.attn.c_proj"), d, d, true)?,
                    ln_2: norm(&format!("{p}.ln_2"))?,
                    c_fc: conv1d(&format!("{p}.mlp.c_fc"), d, ff, true)?,
                    mlp_proj: conv1d(&format!("{p}.mlp.c_proj"), ff, d, true)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let embedding =
            |name: &str, rows: usize| Embedding::load(src, &resolve(src, name), [rows, d]);
        let wte = embedding("wte.weight", vocab)?;
        let lm_head = wte.tied_head(device)?;
        Ok(Gpt2 {
            device: device.clone(),
            wpe: embedding("wpe.weight", config.max_position_embeddings)?,
            wte,
            blocks,
            ln_f: norm("ln_f")?,
            lm_head,
            heads: config.num_heads,
            head_dim: config.head_dim,
        })
    }

    /// Final hidden states `[n, hidden]` for `ids` at positions `start..start + n`.
    /// The caller has checked ids, positions and cache room.
    pub(crate) fn forward(&self, ids: &[u32], start: usize, past: &mut Past) -> Tensor<2> {
        let n = ids.len();
        let dim = self.heads * self.head_dim;
        let device = self.device.clone();
        let tokens = self.wte.rows(ids.iter().map(|&id| id as usize));
        let positions = self.wpe.rows(start..start + n);
        let summed: Vec<f32> = tokens.iter().zip(&positions).map(|(t, p)| t + p).collect();
        let mut x = Tensor::<2>::from_data(TensorData::new(summed, [n, dim]), &device);

        for (i, block) in self.blocks.iter().enumerate() {
            let qkv = block.c_attn.forward(block.ln_1.forward(x.clone()));
            let split = |part: usize| {
                qkv.clone()
                    .slice(s![.., part * dim..(part + 1) * dim])
                    .reshape([n, self.heads, self.head_dim])
                    .swap_dims(0, 1)
            };
            let attn = past.attend(i, start, split(0), split(1), split(2));
            let attn = attn.swap_dims(0, 1).reshape([n, dim]);
            x = x + block.c_proj.forward(attn);
            let h = gelu_approximate(block.c_fc.forward(block.ln_2.forward(x.clone())));
            x = x + block.mlp_proj.forward(h);
        }
        self.ln_f.forward(x)
    }

    pub(crate) fn lm_head(&self) -> &Linear {
        &self.lm_head
    }
}

/// Seeded random weights for the article's GPT-2 124M, so the demo needs no download.
/// Each tensor draws from its own stream (seed and name), so the result does not
/// depend on load order, backend or platform.
pub struct RandomGpt2Weights {
    config: ModelConfig,
    seed: u64,
}

impl RandomGpt2Weights {
    pub fn new(config: ModelConfig, seed: u64) -> Self {
        RandomGpt2Weights { config, seed }
    }

    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        let c = &self.config;
        let (d, ff) = (c.hidden_size, c.intermediate_size);
        let layer_suffix = name
            .strip_prefix("h.")
            .and_then(|r| r.split_once('.'))
            .map(|(_, s)| s);
        Some(match (name, layer_suffix) {
            ("wte.weight", _) => vec![c.vocab_size, d],
            ("wpe.weight", _) => vec![c.max_position_embeddings, d],
            ("ln_f.weight" | "ln_f.bias", _) => vec![d],
            (_, Some("ln_1.weight" | "ln_1.bias" | "ln_2.weight" | "ln_2.bias")) => vec![d],
            (_, Some("attn.c_attn.weight")) => vec![d, 3 * d],
            (_, Some("attn.c_attn.bias")) if c.qkv_bias => vec![3 * d],
            (_, Some("attn.c_proj.weight")) => vec![d, d],
            (_, Some("attn.c_proj.bias" | "mlp.c_proj.bias")) => vec![d],
            (_, Some("mlp.c_fc.weight")) => vec![d, ff],
            (_, Some("mlp.c_fc.bias")) => vec![ff],
            (_, Some("mlp.c_proj.weight")) => vec![ff, d],
            _ => return None,
        })
    }
}

impl TensorSource for RandomGpt2Weights {
    fn tensor(&self, name: &str) -> Result<HostTensor> {
        let shape = self
            .shape(name)
            .ok_or_else(|| crate::error::Error::tensor(name, "not part of GPT-2"))?;
        let len = shape.iter().product();
        let what = || crate::weights::tensor_as_f32(name);
        let data = if name.ends_with("ln_1.weight")
            || name.ends_with("ln_2.weight")
            || name == "ln_f.weight"
        {
            budget::vec_filled(what, len, 1.0)?
        } else if name.ends_with(".bias") {
            budget::vec_filled(what, len, 0.0)?
        } else {
            super::random::uniform(self.seed, name, len, 0.02)?
        };
        Ok(HostTensor::new(shape, data))
    }

    fn contains(&self, name: &str) -> bool {
        self.shape(name).is_some()
    }
}
