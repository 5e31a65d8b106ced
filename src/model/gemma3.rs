//! Gemma 3 (text): token embeddings scaled by √hidden, grouped-query attention
//! with an RMSNorm over each head's queries and keys, RMSNorms before *and*
//! after both attention and the MLP, a GeGLU MLP (tanh GELU), and the
//! embedding table as LM head. Local layers attend over a sliding window
//! with their own RoPE base; every few layers a global one sees everything.
//!
//! HF's Gemma RMSNorm scales by `1 + w`; llama.cpp's converter adds the 1 when
//! it writes a GGUF, so GGUF norms scale by `w` as stored. We add 1 to HF's at
//! load time (in `f32`, as HF computes `1.0 + weight.float()`).

use burn::tensor::{Device, Tensor, TensorData};

use super::layers::{gated, load, Embedding, Linear, RmsNorm};
use super::llama::gguf_suffix;
use super::rope::Rope;
use super::Past;
use crate::config::ModelConfig;
use crate::elementwise::Gate;
use crate::error::Result;
use crate::weights::{HostTensor, TensorSource};

#[derive(Debug)]
pub struct Gemma3 {
    embed: Embedding,
    /// √hidden, as an `f32` (llama.cpp's `sqrtf(n_embd)`).
    embed_scale: f32,
    layers: Vec<Layer>,
    norm: RmsNorm,
    lm_head: Linear,
    /// RoPE of the global layers, and of the local ones (another base).
    global_rope: Rope,
    local_rope: Rope,
    device: Device,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
}

#[derive(Debug)]
struct Layer {
    /// Attends over a window of its own, with the local RoPE.
    local: bool,
    input_norm: RmsNorm,
    q: Linear,
    k: Linear,
    v: Linear,
    q_norm: RmsNorm,
    k_norm: RmsNorm,
    o: Linear,
    post_attention_norm: RmsNorm,
    pre_ffn_norm: RmsNorm,
    gate: Linear,
    up: Linear,
    down: Linear,
    post_ffn_norm: RmsNorm,
}

/// Where the weights come from decides their names and what a norm weight means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gemma3Layout {
    /// HF safetensors under `prefix` (`model.` for `Gemma3ForCausalLM`; the
    /// multimodal checkpoints nest the language model deeper); norms scale by `1 + w`.
    HuggingFace { prefix: String },
    /// llama.cpp GGUF names (`blk.0.attn_q.weight`); norms scale by `w`.
    Gguf,
}

impl Gemma3Layout {
    /// The HF layout whose embedding table `src` has.
    pub fn hugging_face(src: &dyn TensorSource) -> Self {
        let prefix = ["model.", "model.language_model.", "language_model.model."]
            .into_iter()
            .find(|p| src.contains(&format!("{p}embed_tokens.weight")))
            .unwrap_or("model.");
        Gemma3Layout::HuggingFace {
            prefix: prefix.to_string(),
        }
    }

    /// The file's name for `hf`, an HF name below the prefix (`layers.0.mlp.up_proj.weight`).
    fn name(&self, hf: &str) -> String {
        let prefix = match self {
            Gemma3Layout::HuggingFace { prefix } => return format!("{prefix}{hf}"),
            Gemma3Layout::Gguf => "blk",
        };
        let global = match hf {
            "embed_tokens.weight" => Some("token_embd.weight"),
            "norm.weight" => Some("output_norm.weight"),
            _ => None,
        };
        if let Some(name) = global {
            return name.to_string();
        }
        let Some((i, suffix)) = hf.strip_prefix("layers.").and_then(|r| r.split_once('.')) else {
            return hf.to_string();
        };
        // Gemma's four block norms; the rest is named as in a Llama block.
        let gguf = match suffix {
            "post_attention_layernorm.weight" => "post_attention_norm.weight",
            "pre_feedforward_layernorm.weight" => "ffn_norm.weight",
            "post_feedforward_layernorm.weight" => "post_ffw_norm.weight",
            other => gguf_suffix(other),
        };
        format!("{prefix}.{i}.{gguf}")
    }

    /// The scale a norm weight stands for.
    fn norm_scale(&self, mut w: HostTensor) -> HostTensor {
        if matches!(self, Gemma3Layout::HuggingFace { .. }) {
            w.data.iter_mut().for_each(|x| *x += 1.0);
        }
        w
    }
}

impl Gemma3 {
    pub fn load(
        config: &ModelConfig,
        src: &dyn TensorSource,
        layout: &Gemma3Layout,
        device: &Device,
    ) -> Result<Self> {
        let c = config;
        let (d, hd, ff) = (c.hidden_size, c.head_dim, c.intermediate_size);
        let (q_dim, kv_dim) = (c.num_heads * hd, c.num_kv_heads * hd);
        let linear = |hf: &str, n_out: usize, n_in: usize| -> Result<Linear> {
            Linear::load(src, &layout.name(hf), [n_out, n_in], None, device)
        };
        let norm = |hf: &str, dim: usize| -> Result<RmsNorm> {
            let name = layout.name(hf);
            let w = layout.norm_scale(load(src, &name, &[dim])?);
            Ok(RmsNorm::new(w, c.norm_eps, device))
        };
        let layers = (0..c.num_layers)
            .map(|i| {
                let p = format!("layers.{i}");
                Ok(Layer {
                    local: c.layer_window(i).is_some(),
                    input_norm: norm(&format!("{p}.input_layernorm.weight"), d)?,
                    q: linear(&format!("{p}.self_attn.q_proj.weight"), q_dim, d)?,
                    k: linear(&format!("{p}.self_attn.k_proj.weight"), kv_dim, d)?,
                    v: linear(&format!("{p}.self_attn.v_proj.weight"), kv_dim, d)?,
                    q_norm: norm(&format!("{p}.self_attn.q_norm.weight"), hd)?,
                    k_norm: norm(&format!("{p}.self_attn.k_norm.weight"), hd)?,
                    o: linear(&format!("{p}.self_attn.o_proj.weight"), d, q_dim)?,
                    post_attention_norm: norm(&format!("{p}.post_attention_layernorm.weight"), d)?,
                    pre_ffn_norm: norm(&format!("{p}.pre_feedforward_layernorm.weight"), d)?,
                    gate: linear(&format!("{p}.mlp.gate_proj.weight"), ff, d)?,
                    up: linear(&format!("{p}.mlp.up_proj.weight"), ff, d)?,
                    down: linear(&format!("{p}.mlp.down_proj.weight"), d, ff)?,
                    post_ffn_norm: norm(&format!("{p}.post_feedforward_layernorm.weight"), d)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let embed = Embedding::load(src, &layout.name("embed_tokens.weight"), [c.vocab_size, d])?;
        let rope = |local: bool| {
            let (theta, scaling) = c.rope_of(local);
            Rope::new(hd, theta, scaling)
        };
        Ok(Gemma3 {
            embed_scale: (d as f32).sqrt(),
            lm_head: embed.tied_head(device)?,
            embed,
            layers,
            norm: norm("norm.weight", d)?,
            global_rope: rope(false),
            local_rope: rope(true),
            device: device.clone(),
            heads: c.num_heads,
            kv_heads: c.num_kv_heads,
            head_dim: hd,
        })
    }

    /// Final hidden states `[n, hidden]` for `ids` at positions `start..start + n`.
    /// The caller has checked ids and cache room.
    pub(crate) fn forward(&self, ids: &[u32], start: usize, past: &mut Past) -> Tensor<2> {
        let n = ids.len();
        let device = &self.device;
        let mut rows = self.embed.rows(ids.iter().map(|&id| id as usize));
        rows.iter_mut().for_each(|x| *x *= self.embed_scale);
        let mut x = Tensor::<2>::from_data(TensorData::new(rows, [n, self.embed.dim()]), device);
        let global = self.global_rope.tables(start, n, device);
        let local = self.local_rope.tables(start, n, device);
        let heads = |t: Tensor<2>, h: usize| t.reshape([n, h, self.head_dim]).swap_dims(0, 1);

        for (i, layer) in self.layers.iter().enumerate() {
            let (rope, (cos, sin)) = match layer.local {
                true => (&self.local_rope, &local),
                false => (&self.global_rope, &global),
            };
            let h = layer.input_norm.forward(x.clone());
            let q = layer
                .q_norm
                .forward_per_head(layer.q.forward(h.clone()), self.head_dim);
            let k = layer
                .k_norm
                .forward_per_head(layer.k.forward(h.clone()), self.head_dim);
            let q = rope.apply(heads(q, self.heads), cos, sin);
            let k = rope.apply(heads(k, self.kv_heads), cos, sin);
            let v = heads(layer.v.forward(h), self.kv_heads);
            let attn = past.attend(i, start, q, k, v);
            let attn = layer.o.forward(
                attn.swap_dims(0, 1)
                    .reshape([n, self.heads * self.head_dim]),
            );
            x = x + layer.post_attention_norm.forward(attn);
            let h = layer.pre_ffn_norm.forward(x.clone());
            let h = gated(
                Gate::GeluTanh,
                layer.gate.forward(h.clone()),
                layer.up.forward(h),
            );
            x = x + layer.post_ffn_norm.forward(layer.down.forward(h));
        }
        self.norm.forward(x)
    }

    pub(crate) fn lm_head(&self) -> &Linear {
        &self.lm_head
    }
}
