//! Llama (SmolLM2, Llama 3.x shapes): RMSNorm, rotary position embeddings,
//! grouped-query attention, SwiGLU MLP, tied or untied LM head.

use burn::tensor::{activation::silu, s, Device, Tensor, TensorData};

use super::layers::{load, Embedding, Linear, RmsNorm};
use crate::attention::attend;
use crate::cache::KvCache;
use crate::config::{ModelConfig, RopeScaling};
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
    /// llama.cpp GGUF: `blk.0.attn_q.weight`, q/k rows permuted for interleaved (adjacent-pair) RoPE.
    Gguf,
}

impl LlamaLayout {
    fn name(self, hf: &str) -> String {
        if self == LlamaLayout::HuggingFace {
            return hf.to_string();
        }
        fn map(suffix: &str) -> &str {
            match suffix {
                "input_layernorm.weight" => "attn_norm.weight",
                "self_attn.q_proj.weight" => "attn_q.weight",
                "self_attn.k_proj.weight" => "attn_k.weight",
                "self_attn.v_proj.weight" => "attn_v.weight",
                "self_attn.o_proj.weight" => "attn_output.weight",
                "post_attention_layernorm.weight" => "ffn_norm.weight",
                "mlp.gate_proj.weight" => "ffn_gate.weight",
                "mlp.up_proj.weight" => "ffn_up.weight",
                "mlp.down_proj.weight" => "ffn_down.weight",
                other => other,
            }
        }
        match hf {
            "model.embed_tokens.weight" => "token_embd.weight".into(),
            "model.norm.weight" => "output_norm.weight".into(),
            "lm_head.weight" => "output.weight".into(),
            _ => match hf
                .strip_prefix("model.layers.")
                .and_then(|r| r.split_once('.'))
            {
                Some((i, suffix)) => format!("blk.{i}.{}", map(suffix)),
                None => hf.to_string(),
            },
        }
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
        // GGUF's q/k rows are reordered for interleaved RoPE; restore HF order so one RoPE serves both.
        let qk = |hf: &str, n_out: usize, heads: usize| -> Result<Linear> {
            let order = (layout == LlamaLayout::Gguf).then(|| unpermuted_rows(n_out, heads));
            Linear::load(src, &layout.name(hf), [n_out, d], order.as_deref(), device)
        };
        let norm =
            |hf: &str| -> Result<RmsNorm> { Ok(RmsNorm::new(get(hf, &[d])?, c.norm_eps, device)) };
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
            embed.tied_head(device)
        } else {
            linear("lm_head.weight", c.vocab_size, d)?
        };
        Ok(Llama {
            device: device.clone(),
            embed,
            layers,
            norm: norm("model.norm.weight")?,
            lm_head,
            rope: Rope::new(c),
            heads: c.num_heads,
            kv_heads: c.num_kv_heads,
            head_dim: hd,
        })
    }

    /// Final hidden states `[n, hidden]` for `ids` at positions `start..start + n`.
    /// The caller has checked ids and cache room.
    pub fn forward(
        &self,
        ids: &[u32],
        start: usize,
        mut cache: Option<&mut KvCache>,
        window: Option<usize>,
    ) -> Tensor<2> {
        let n = ids.len();
        let device = self.device.clone();
        let rows = self.embed.rows(ids.iter().map(|&id| id as usize));
        let mut x = Tensor::<2>::from_data(TensorData::new(rows, [n, self.embed.dim()]), &device);
        let (cos, sin) = self.rope.tables(start, n, &device);
        let heads = |t: Tensor<2>, h: usize| t.reshape([n, h, self.head_dim]).swap_dims(0, 1);

        for (i, layer) in self.layers.iter().enumerate() {
            let h = layer.input_norm.forward(x.clone());
            let q = self
                .rope
                .apply(heads(layer.q.forward(h.clone()), self.heads), &cos, &sin);
            let k = self
                .rope
                .apply(heads(layer.k.forward(h.clone()), self.kv_heads), &cos, &sin);
            let v = heads(layer.v.forward(h), self.kv_heads);
            let layer_cache = cache.as_deref_mut().map(|c| c.layer_mut(i));
            let attn = attend(q, k, v, layer_cache, start, window);
            x = x + layer.o.forward(
                attn.swap_dims(0, 1)
                    .reshape([n, self.heads * self.head_dim]),
            );
            let h = layer.post_norm.forward(x.clone());
            x = x + layer
                .down
                .forward(silu(layer.gate.forward(h.clone())) * layer.up.forward(h));
        }
        if let Some(cache) = cache {
            cache.advance(n);
        }
        self.norm.forward(x)
    }

    pub(crate) fn lm_head(&self) -> &Linear {
        &self.lm_head
    }
}

/// Rotary position embeddings in HF's rotate-half form: dimension `i` of the
/// first half pairs with `i + d/2`, rotated by `position × inv_freq[i]`.
#[derive(Debug)]
struct Rope {
    inv_freq: Vec<f64>,
    head_dim: usize,
}

impl Rope {
    fn new(c: &ModelConfig) -> Self {
        let d = c.head_dim;
        let base: Vec<f64> = (0..d / 2)
            .map(|i| c.rope_theta.powf(-((2 * i) as f64) / d as f64))
            .collect();
        let inv_freq = match &c.rope_scaling {
            None => base,
            Some(RopeScaling::Linear { factor }) => base.iter().map(|f| f / factor).collect(),
            Some(RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            }) => {
                let low_wavelen = original_max_position_embeddings / low_freq_factor;
                let high_wavelen = original_max_position_embeddings / high_freq_factor;
                base.iter()
                    .map(|&f| {
                        let wavelen = 2.0 * std::f64::consts::PI / f;
                        if wavelen < high_wavelen {
                            f
                        } else if wavelen > low_wavelen {
                            f / factor
                        } else {
                            let smooth = (original_max_position_embeddings / wavelen
                                - low_freq_factor)
                                / (high_freq_factor - low_freq_factor);
                            (1.0 - smooth) * f / factor + smooth * f
                        }
                    })
                    .collect()
            }
        };
        Rope {
            inv_freq,
            head_dim: d,
        }
    }

    /// cos and sin `[1, n, head_dim]` for positions `start..start + n` (each half repeated).
    fn tables(&self, start: usize, n: usize, device: &Device) -> (Tensor<3>, Tensor<3>) {
        let (mut cos, mut sin) = (
            Vec::with_capacity(n * self.head_dim),
            Vec::with_capacity(n * self.head_dim),
        );
        for p in start..start + n {
            for _half in 0..2 {
                for f in &self.inv_freq {
                    let angle = p as f64 * f;
                    cos.push(angle.cos() as f32);
                    sin.push(angle.sin() as f32);
                }
            }
        }
        let shape = [1, n, self.head_dim];
        (
            Tensor::from_data(TensorData::new(cos, shape), device),
            Tensor::from_data(TensorData::new(sin, shape), device),
        )
    }

    /// `x·cos + rotate_half(x)·sin` for `x` of shape `[heads, n, head_dim]`.
    fn apply(&self, x: Tensor<3>, cos: &Tensor<3>, sin: &Tensor<3>) -> Tensor<3> {
        let half = self.head_dim / 2;
        let first = x.clone().slice(s![.., .., 0..half]);
        let second = x.clone().slice(s![.., .., half..self.head_dim]);
        let rotated = Tensor::cat(vec![second.neg(), first], 2);
        x * cos.clone() + rotated * sin.clone()
    }
}
