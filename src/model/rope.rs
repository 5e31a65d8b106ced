//! Rotary position embeddings (RoPE), shared by the decoders that use them.

use burn::tensor::{s, Device, Tensor, TensorData};

use crate::config::RopeScaling;

/// Rotary position embeddings in HF's rotate-half form: dimension `i` of the
/// first half pairs with `i + d/2`, rotated by `position × inv_freq[i]`.
#[derive(Debug)]
pub(crate) struct Rope {
    inv_freq: Vec<f64>,
    head_dim: usize,
}

impl Rope {
    /// For heads of `head_dim` with base `theta`, stretched as `scaling` says.
    pub fn new(head_dim: usize, theta: f64, scaling: Option<&RopeScaling>) -> Self {
        let d = head_dim;
        let base: Vec<f64> = (0..d / 2)
            .map(|i| theta.powf(-((2 * i) as f64) / d as f64))
            .collect();
        let inv_freq = match scaling {
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
    pub fn tables(&self, start: usize, n: usize, device: &Device) -> (Tensor<3>, Tensor<3>) {
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
    pub fn apply(&self, x: Tensor<3>, cos: &Tensor<3>, sin: &Tensor<3>) -> Tensor<3> {
        let half = self.head_dim / 2;
        let first = x.clone().slice(s![.., .., 0..half]);
        let second = x.clone().slice(s![.., .., half..self.head_dim]);
        let rotated = Tensor::cat(vec![second.neg(), first], 2);
        x * cos.clone() + rotated * sin.clone()
    }
}
