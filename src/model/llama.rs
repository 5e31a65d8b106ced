//! Llama (SmolLM2, Llama 3.x shapes): RMSNorm, rotary position embeddings,
//! grouped-query attention, SwiGLU MLP, tied or untied LM head. Qwen3 is the
//! same with an RMSNorm over each head's queries and keys before RoPE.

use burn::tensor::{Device, Tensor, TensorData};

use super::layers::{gated, load, Embedding, Linear, RmsNorm};
use super::rope::Rope;
use super::Past;
use crate::config::{Architecture, ModelConfig};
use crate::elementwise::Gate;
use crate::error::Result;
use crate::weights::TensorSource;

#[derive(Debug)]
pub struct Llama {
    embed: Embedding,
    layers: Vec<Layer>,
    norm: RmsNorm,
    lm_head: Linear,
    device: Device,
    rope: Rope,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
}

#[derive(Debug)]
struct Layer {
    input_norm: RmsNorm,
    q: Linear,
    k: Linear,
    v: Linear,
    /// Qwen3's per-head norms of queries and keys.
    qk_norms: Option<(RmsNorm, RmsNorm)>,
    o: Linear,
    post_norm: RmsNorm,
    gate: Linear,
    up: Linear,
    down: Linear,
}

/// Where the weights come from decides their names and the q/k row order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LlamaLayout {
    /// HF safetensors: `model.layers.0.self_attn.q_proj.weight`, rotate-half RoPE rows.
    HuggingFace,
    /// llama.cpp GGUF: `blk.0.attn_q.weight`; for the `llama` architecture,
    /// q/k rows permuted for interleaved (adjacent-pair) RoPE.
    Gguf,
}

impl LlamaLayout {
    fn name(self, hf: &str) -> String {
        if self == LlamaLayout::HuggingFace {
            return hf.to_string();
        }
        match hf {
            "model.embed_tokens.weight" => "token_embd.weight".into(),
            "model.norm.weight" => "output_norm.weight".into(),
            "lm_head.weight" => "output.weight".into(),
            _ => match hf
                .strip_prefix("model.layers.")
                .and_then(|r| r.split_once('.'))
            {
                Some((i, suffix)) => format!("blk.{i}.{}", gguf_suffix(suffix)),
                None => hf.to_string(),
            },
        }
    }
}

/// llama.cpp's name for the HF layer tensor `suffix` of a Llama-like block
/// (`self_attn.q_proj.weight` → `attn_q.weight`); unknown names pass through.
pub(super) fn gguf_suffix(suffix: &str) -> &str {
    match suffix {
        "input_layernorm.weight" => "attn_norm.weight",
        "self_attn.q_proj.weight" => "attn_q.weight",
        "self_attn.k_proj.weight" => "attn_k.weight",
        "self_attn.v_proj.weight" => "attn_v.weight",
        "self_attn.q_norm.weight" => "attn_q_norm.weight",
        "self_attn.k_norm.weight" => "attn_k_norm.weight",
        "self_attn.o_proj.weight" => "attn_output.weight",
        "post_attention_layernorm.weight" => "ffn_norm.weight",
        "mlp.gate_proj.weight" => "ffn_gate.weight",
        "mlp.up_proj.weight" => "ffn_up.weight",
        "mlp.down_proj.weight" => "ffn_down.weight",
        other => other,
    }
}

/// The row order that undoes llama.cpp's q/k permutation: GGUF row
/// `h·d + 2i + j` holds HF row `h·d + j·d/2 + i`.
fn unpermuted_rows(rows: usize, heads: usize) -> Vec<usize> {
    let head_dim = rows / heads;
    let half = head_dim / 2;
    let mut order = vec![0; rows];
    for h in 0..heads {
        for i in 0..half {
            for j in 0..2 {
                order[h * head_dim + j * half + i] = h * head_dim + 2 * i + j;
            }
        }
    }
    order
}

impl Llama {
    pub fn load(
        config: &ModelConfig,
        src: &dyn TensorSource,
        layout: LlamaLayout,
        device: &Device,
    ) -> Result<Self> {
        let c = config;
        let (d, hd, ff) = (c.hidden_size, c.head_dim, c.intermediate_size);
        let (q_dim, kv_dim) = (c.num_heads * hd, c.num_kv_heads * hd);
        let get = |hf: &str, shape: &[usize]| load(src, &layout.name(hf), shape);
        let linear = |hf: &str, n_out: usize, n_in: usize| -> Result<Linear> {
            Linear::load(src, &layout.name(hf), [n_out, n_in], None, device)
        };
        // llama.cpp reorders a Llama's q/k rows for interleaved RoPE (not
        // Qwen3's, which it rotates in halves); restore HF order so one RoPE serves both.
        let permuted = layout == LlamaLayout::Gguf && c.architecture == Architecture::Llama;
        let qk = |hf: &str, n_out: usize, heads: usize| -> Result<Linear> {
            let order = permuted.then(|| unpermuted_rows(n_out, heads));
            Linear::load(src, &layout.name(hf), [n_out, d], order.as_deref(), device)
        };
        let norm_of = |hf: &str, dim: usize| -> Result<RmsNorm> {
            Ok(RmsNorm::new(get(hf, &[dim])?, c.norm_eps, device))
        };
        let norm = |hf: &str| norm_of(hf, d);
        let layers = (0..c.num_layers)
            .map(|i| {
                let p = format!("model.layers.{i}");
                Ok(Layer {
                    input_norm: norm(&format!("{p}.input_layernorm.weight"))?,
                    q: qk(&format!("{p}.self_attn.q_proj.weight"), q_dim, c.num_heads)?,
                    k: qk(
                        &format!("{p}.self_attn.k_proj.weight"),
                        kv_dim,
                        c.num_kv_heads,
                    )?,
                    v: linear(&format!("{p}.self_attn.v_proj.weight"), kv_dim, d)?,
                    qk_norms: match c.architecture {
                        Architecture::Qwen3 => Some((
                            norm_of(&format!("{p}.self_attn.q_norm.weight"), hd)?,
                            norm_of(&format!("{p}.self_attn.k_norm.weight"), hd)?,
                        )),
                        _ => None,
                    },
                    o: linear(&format!("{p}.self_attn.o_proj.weight"), d, q_dim)?,
                    post_norm: norm(&format!("{p}.post_attention_layernorm.weight"))?,
                    gate: linear(&format!("{p}.mlp.gate_proj.weight"), ff, d)?,
                    up: linear(&format!("{p}.mlp.up_proj.weight"), ff, d)?,
                    down: linear(&format!("{p}.mlp.down_proj.weight"), d, ff)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let embed = Embedding::load(
            src,
            &layout.name("model.embed_tokens.weight"),
            [c.vocab_size, d],
        )?;
        let lm_head = if c.tie_word_embeddings {
            embed.tied_head(device)?
        } else {
            linear("lm_head.weight", c.vocab_size, d)?
        };
        Ok(Llama {
            device: device.clone(),
            embed,
            layers,
            norm: norm("model.norm.weight")?,
            lm_head,
            rope: Rope::new(hd, c.rope_theta, c.rope_scaling.as_ref()),
            heads: c.num_heads,
            kv_heads: c.num_kv_heads,
            head_dim: hd,
        })
    }

    /// Final hidden states `[n, hidden]` for `ids` at positions `start..start + n`.
    /// The caller has checked ids and cache room.
    pub(crate) fn forward(&self, ids: &[u32], start: usize, past: &mut Past) -> Tensor<2> {
        let n = ids.len();
        let device = self.device.clone();
        let rows = self.embed.rows(ids.iter().map(|&id| id as usize));
        let mut x = Tensor::<2>::from_data(TensorData::new(rows, [n, self.embed.dim()]), &device);
        let (cos, sin) = self.rope.tables(start, n, &device);
        let heads = |t: Tensor<2>, h: usize| t.reshape([n, h, self.head_dim]).swap_dims(0, 1);

        for (i, layer) in self.layers.iter().enumerate() {
            let h = layer.input_norm.forward(x.clone());
            let (mut q, mut k) = (layer.q.forward(h.clone()), layer.k.forward(h.clone()));
            if let Some((q_norm, k_norm)) = &layer.qk_norms {
                q = q_norm.forward_per_head(q, self.head_dim);
                k = k_norm.forward_per_head(k, self.head_dim);
            }
            let q = self.rope.apply(heads(q, self.heads), &cos, &sin);
            let k = self.rope.apply(heads(k, self.kv_heads), &cos, &sin);
            let v = heads(layer.v.forward(h), self.kv_heads);
            let attn = past.attend(i, start, q, k, v);
            x = x + layer.o.forward(
                attn.swap_dims(0, 1)
                    .reshape([n, self.heads * self.head_dim]),
            );
            let h = layer.post_norm.forward(x.clone());
            x = x + layer.down.forward(gated(
                Gate::Silu,
                layer.gate.forward(h.clone()),
                layer.up.forward(h),
            ));
        }
        self.norm.forward(x)
    }

    pub(crate) fn lm_head(&self) -> &Linear {
        &self.lm_head
    }
}
