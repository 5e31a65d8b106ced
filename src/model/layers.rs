//! The small building blocks both architectures share, holding burn tensors
//! uploaded from host weights.

use burn::tensor::{Device, Tensor, TensorData};

use crate::error::Result;
use crate::weights::{HostTensor, TensorSource};

pub(crate) fn upload2(t: HostTensor, device: &Device) -> Tensor<2> {
    let [rows, cols] = [t.shape[0], t.shape[1]];
    Tensor::from_data(TensorData::new(t.data, [rows, cols]), device)
}

pub(crate) fn upload1(t: HostTensor, device: &Device) -> Tensor<1> {
    let len = t.data.len();
    Tensor::from_data(TensorData::new(t.data, [len]), device)
}

/// Row-major `[rows, cols]` to `[cols, rows]`.
pub(crate) fn transpose(t: &HostTensor) -> HostTensor {
    let (rows, cols) = (t.shape[0], t.shape[1]);
    let mut out = vec![0.0f32; rows * cols];
    for (r, row) in t.data.chunks_exact(cols).enumerate() {
        for (c, &x) in row.iter().enumerate() {
            out[c * rows + r] = x;
        }
    }
    HostTensor::new(vec![cols, rows], out)
}

/// Reads a tensor and checks its shape against the config in one step.
pub(crate) fn load(src: &dyn TensorSource, name: &str, shape: &[usize]) -> Result<HostTensor> {
    src.tensor(name)?.expect_shape(name, shape)
}

/// `y = x·W + b` with `W` stored `[in, out]`, so a one-row `x` reads `W` row by row.
#[derive(Debug)]
pub(crate) struct Linear {
    weight: Tensor<2>,
    bias: Option<Tensor<1>>,
}

impl Linear {
    /// From a PyTorch `nn.Linear` weight, stored `[out, in]`.
    pub fn from_out_in(weight: HostTensor, bias: Option<HostTensor>, device: &Device) -> Self {
        Self::from_in_out(transpose(&weight), bias, device)
    }

    /// From a weight already stored `[in, out]` (GPT-2's Conv1D).
    pub fn from_in_out(weight: HostTensor, bias: Option<HostTensor>, device: &Device) -> Self {
        Linear {
            weight: upload2(weight, device),
            bias: bias.map(|b| upload1(b, device)),
        }
    }

    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let y = x.matmul(self.weight.clone());
        match &self.bias {
            Some(b) => y + b.clone().unsqueeze_dim(0),
            None => y,
        }
    }
}

/// GPT-2's LayerNorm: normalise each row to zero mean, unit variance, then scale and shift.
#[derive(Debug)]
pub(crate) struct LayerNorm {
    weight: Tensor<1>,
    bias: Tensor<1>,
    eps: f64,
}

impl LayerNorm {
    pub fn new(weight: HostTensor, bias: HostTensor, eps: f64, device: &Device) -> Self {
        LayerNorm {
            weight: upload1(weight, device),
            bias: upload1(bias, device),
            eps,
        }
    }

    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let mean = x.clone().mean_dim(1);
        let centered = x - mean;
        let var = centered.clone().square().mean_dim(1);
        let normed = centered / (var + self.eps).sqrt();
        normed * self.weight.clone().unsqueeze_dim(0) + self.bias.clone().unsqueeze_dim(0)
    }
}

/// Llama's RMSNorm: scale each row by the inverse of its root mean square; no centring, no shift.
#[derive(Debug)]
pub(crate) struct RmsNorm {
    weight: Tensor<1>,
    eps: f64,
}

impl RmsNorm {
    pub fn new(weight: HostTensor, eps: f64, device: &Device) -> Self {
        RmsNorm {
            weight: upload1(weight, device),
            eps,
        }
    }

    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let rms = (x.clone().square().mean_dim(1) + self.eps).sqrt();
        x / rms * self.weight.clone().unsqueeze_dim(0)
    }
}

/// Token embeddings kept on the host: a lookup is a row copy, and the same
/// table (transposed, on the device) can serve as the tied LM head.
#[derive(Debug)]
pub(crate) struct Embedding {
    table: Vec<f32>,
    dim: usize,
}

impl Embedding {
    pub fn new(table: HostTensor) -> Self {
        Embedding {
            dim: table.shape[1],
            table: table.data,
        }
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Rows for `ids`, `[ids.len(), dim]` flattened; ids were validated by the caller.
    pub fn rows(&self, ids: impl IntoIterator<Item = usize>) -> Vec<f32> {
        let mut out = Vec::new();
        for id in ids {
            out.extend_from_slice(&self.table[id * self.dim..(id + 1) * self.dim]);
        }
        out
    }

    /// The LM head `[dim, vocab]` that tied embeddings imply.
    pub fn tied_head(&self, device: &Device) -> Tensor<2> {
        let vocab = self.table.len() / self.dim;
        upload2(
            transpose(&HostTensor::new(vec![vocab, self.dim], self.table.clone())),
            device,
        )
    }
}
