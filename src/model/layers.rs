//! The small building blocks both architectures share, holding burn tensors
//! uploaded from host weights (or, for quantized matrices, the host weights themselves).

use std::sync::Arc;

use burn::tensor::{Device, Tensor, TensorData};

use crate::budget;
use crate::elementwise::{self, Gate};
use crate::error::Result;
use crate::quant::QuantMatrix;
use crate::weights::{check_shape, tensor_as_f32, HostTensor, TensorSource};

pub(crate) fn upload2(t: HostTensor, device: &Device) -> Tensor<2> {
    let [rows, cols] = [t.shape[0], t.shape[1]];
    Tensor::from_data(TensorData::new(t.data, [rows, cols]), device)
}

pub(crate) fn upload1(t: HostTensor, device: &Device) -> Tensor<1> {
    let len = t.data.len();
    Tensor::from_data(TensorData::new(t.data, [len]), device)
}

/// Row-major `[rows, cols]` `data` to `[cols, rows]`, within the memory
/// budget; `what` names the tensor if memory runs out.
fn transpose(
    data: &[f32],
    [rows, cols]: [usize; 2],
    what: impl Fn() -> String,
) -> Result<HostTensor> {
    let mut out = budget::vec_filled(what, rows * cols, 0.0f32)?;
    for (r, row) in data.chunks_exact(cols).enumerate() {
        for (c, &x) in row.iter().enumerate() {
            out[c * rows + r] = x;
        }
    }
    Ok(HostTensor::new(vec![cols, rows], out))
}

/// Reads a tensor and checks its shape against the config in one step.
pub(crate) fn load(src: &dyn TensorSource, name: &str, shape: &[usize]) -> Result<HostTensor> {
    src.tensor(name)?.expect_shape(name, shape)
}

/// `y = x·W + b`.
#[derive(Debug)]
pub(crate) struct Linear {
    weight: Weight,
    bias: Option<Tensor<1>>,
}

#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // a few hundred per model, built once
enum Weight {
    /// `[in, out]` on the device, so a one-row `x` reads `W` row by row.
    Dense(Tensor<2>),
    /// `[out, in]` in integer groups on the host, shared with a tied embedding.
    Quant(Arc<QuantMatrix>),
    /// `[out, in]` in `f32` on the host: a tied embedding's own table, where a
    /// transposed copy would hold the model's largest matrix twice.
    Rows(Arc<Vec<f32>>),
}

/// From how many rows a quantized layer is faster dequantized for one burn
/// GEMM than through [`QuantMatrix::matmul`]. Natively burn's register-blocked
/// GEMMs win once a prompt or the cache-off baseline reuses each weight about
/// 16 times; in wasm ours win at every length (docs/performance.md has the
/// measurements). Both paths agree to `f32` rounding.
const DENSE_FROM_ROWS: Option<usize> = if cfg!(target_arch = "wasm32") {
    None
} else {
    Some(16)
};

/// Whether a tied dense LM head multiplies the embedding table where it is
/// ([`Weight::Rows`]) rather than a transposed copy through burn's GEMM. In
/// wasm, whose 4 GiB hold everything, the copy is the model's largest matrix a
/// second time; natively memory is not the limit and the GEMM is faster (GPT-2
/// decodes about 10% faster with it).
const TIED_HEAD_IN_PLACE: bool = cfg!(target_arch = "wasm32");

impl Linear {
    /// From a PyTorch `nn.Linear` weight `name`, stored `[out, in]`.
    pub fn from_out_in(
        name: &str,
        weight: HostTensor,
        bias: Option<HostTensor>,
        device: &Device,
    ) -> Result<Self> {
        let shape = [weight.shape[0], weight.shape[1]];
        let weight = transpose(&weight.data, shape, || tensor_as_f32(name))?;
        Ok(Self::from_in_out(weight, bias, device))
    }

    /// From a weight already stored `[in, out]` (GPT-2's Conv1D).
    pub fn from_in_out(weight: HostTensor, bias: Option<HostTensor>, device: &Device) -> Self {
        Linear {
            weight: Weight::Dense(upload2(weight, device)),
            bias: bias.map(|b| upload1(b, device)),
        }
    }

    /// The bias-free `[out, in]` weight `name`, kept quantized when the file
    /// has it in a grouped format. `rows`, if given, reorders the output rows.
    pub fn load(
        src: &dyn TensorSource,
        name: &str,
        shape: [usize; 2],
        rows: Option<&[usize]>,
        device: &Device,
    ) -> Result<Self> {
        if let Some(m) = src.quantized(name)? {
            check_shape(name, &m.shape(), &shape)?;
            let m = match rows {
                Some(order) => m.select_rows(order, || format!("tensor `{name}`"))?,
                None => m,
            };
            return Ok(Linear::quantized(Arc::new(m)));
        }
        let w = load(src, name, &shape)?;
        let w = match rows {
            Some(order) => w.select_rows(name, order)?,
            None => w,
        };
        Linear::from_out_in(name, w, None, device)
    }

    fn quantized(m: Arc<QuantMatrix>) -> Self {
        Linear {
            weight: Weight::Quant(m),
            bias: None,
        }
    }

    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let y = match &self.weight {
            Weight::Dense(w) => x.matmul(w.clone()),
            Weight::Quant(m) if DENSE_FROM_ROWS.is_some_and(|rows| x.dims()[0] >= rows) => {
                let device = x.device();
                let w = TensorData::new(m.dequantize(), m.shape());
                x.matmul(Tensor::<2>::from_data(w, &device).transpose())
            }
            Weight::Quant(m) => on_host(x, m.shape()[0], |x, n| m.matmul(x, n)),
            Weight::Rows(w) => {
                let cols = x.dims()[1];
                on_host(x, w.len() / cols, |x, n| times_rows(w, x, [n, cols]))
            }
        };
        match &self.bias {
            Some(b) => y + b.clone().unsqueeze_dim(0),
            None => y,
        }
    }
}

/// `[n, out]` from `matmul(x's values, n)`, for weights multiplied on the host.
fn on_host(x: Tensor<2>, out: usize, matmul: impl FnOnce(&[f32], usize) -> Vec<f32>) -> Tensor<2> {
    let [n, _] = x.dims();
    let device = x.device();
    let y = matmul(&floats(x), n);
    Tensor::from_data(TensorData::new(y, [n, out]), &device)
}

/// `x · wᵀ` for `x` row-major `[n, cols]` and `w` row-major with rows of
/// `cols`: each row of `w` read once, against every row of `x` (a prompt's
/// few, the cache-off pass's dozens), which stay in cache.
fn times_rows(w: &[f32], x: &[f32], [n, cols]: [usize; 2]) -> Vec<f32> {
    let rows = w.len() / cols;
    let mut out = vec![0.0f32; n * rows];
    for (o, w) in w.chunks_exact(cols).enumerate() {
        for (r, x) in x.chunks_exact(cols).enumerate() {
            out[r * rows + o] = elementwise::dot(w, x);
        }
    }
    out
}

/// A tensor's values, row-major. The model computes in `f32` throughout, and
/// `convert` makes sure of it, so reading them back cannot fail.
pub(crate) fn floats<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("converted to f32 just before")
}

/// A gated MLP's hidden activations, `act(gate) · up` for `gate` and `up`
/// `[n, hidden]`, in one pass over host copies ([`elementwise::gated`]).
pub(crate) fn gated(act: Gate, gate: Tensor<2>, up: Tensor<2>) -> Tensor<2> {
    let (dims, device) = (gate.dims(), gate.device());
    let (mut g, u) = (floats(gate), floats(up));
    elementwise::gated(act, &mut g, &u);
    Tensor::from_data(TensorData::new(g, dims), &device)
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

    /// Over each head of `x` `[n, heads · head_dim]` on its own (q/k norms).
    pub fn forward_per_head(&self, x: Tensor<2>, head_dim: usize) -> Tensor<2> {
        let [n, width] = x.dims();
        self.forward(x.reshape([n * width / head_dim, head_dim]))
            .reshape([n, width])
    }
}

/// Token embeddings kept on the host: a lookup is a row copy, and the same
/// table can serve as the tied LM head.
#[derive(Debug)]
pub(crate) struct Embedding {
    table: Table,
    dim: usize,
}

#[derive(Debug)]
enum Table {
    Dense(Arc<Vec<f32>>),
    Quant(Arc<QuantMatrix>),
}

impl Embedding {
    /// The `[vocab, dim]` table `name`, kept quantized when the file has it so.
    pub fn load(src: &dyn TensorSource, name: &str, shape: [usize; 2]) -> Result<Self> {
        let table = match src.quantized(name)? {
            Some(m) => {
                check_shape(name, &m.shape(), &shape)?;
                Table::Quant(Arc::new(m))
            }
            None => Table::Dense(Arc::new(load(src, name, &shape)?.data)),
        };
        Ok(Embedding {
            table,
            dim: shape[1],
        })
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Rows for `ids`, `[ids.len(), dim]` flattened; ids were validated by the caller.
    pub fn rows(&self, ids: impl IntoIterator<Item = usize>) -> Vec<f32> {
        let mut out = Vec::new();
        for id in ids {
            match &self.table {
                Table::Dense(t) => out.extend_from_slice(&t[id * self.dim..(id + 1) * self.dim]),
                Table::Quant(m) => m.row_into(id, &mut out),
            }
        }
        out
    }

    /// The LM head that tied embeddings imply, sharing a quantized table, and a
    /// dense one where [`TIED_HEAD_IN_PLACE`] says so (else it is transposed).
    pub fn tied_head(&self, device: &Device) -> Result<Linear> {
        Ok(match &self.table {
            Table::Dense(t) if TIED_HEAD_IN_PLACE => Linear {
                weight: Weight::Rows(t.clone()),
                bias: None,
            },
            Table::Dense(t) => {
                let shape = [t.len() / self.dim, self.dim];
                let what = || "the LM head (the token embeddings, tied) as f32".to_string();
                Linear::from_in_out(transpose(t, shape, what)?, None, device)
            }
            Table::Quant(m) => Linear::quantized(m.clone()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::BackendKind;

    /// A file holding one quantized matrix under any name.
    struct OneMatrix(QuantMatrix);

    impl TensorSource for OneMatrix {
        fn tensor(&self, name: &str) -> Result<HostTensor> {
            Err(crate::error::Error::tensor(name, "only quantized here"))
        }
        fn contains(&self, _name: &str) -> bool {
            true
        }
        fn quantized(&self, _name: &str) -> Result<Option<QuantMatrix>> {
            Ok(Some(self.0.clone()))
        }
    }

    #[cfg(target_arch = "wasm32")]
    wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

    /// A dense layer goes through burn's GEMM (in the browser its SIMD128
    /// kernels, which gemm runs only with its `wasm-simd128-enable` feature:
    /// without them a prompt took longer than decoding it token by token), or,
    /// for a tied head held as the embedding's rows, through
    /// [`times_rows`]. Both checked against the sums in f64, over several row
    /// counts.
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    fn dense_layers_match_the_sums() {
        #[cfg(target_arch = "wasm32")]
        assert!(
            gemm::get_wasm_simd128(),
            "gemm's SIMD128 kernels are off (its feature `wasm-simd128-enable`)"
        );
        let ([d_in, d_out], device) = ([96, 43], BackendKind::default().device());
        let value = |i: usize, scale: f32| ((i * 7919 % 101) as f32 / 50.0 - 1.0) * scale;
        let w: Vec<f32> = (0..d_out * d_in).map(|i| value(i, 0.1)).collect();
        let bias: Vec<f32> = (0..d_out).map(|o| value(o + 3, 1.0)).collect();
        let transposed = Linear::from_out_in(
            "w",
            HostTensor::new(vec![d_out, d_in], w.clone()),
            Some(HostTensor::new(vec![d_out], bias.clone())),
            &device,
        )
        .unwrap();
        let rows = Linear {
            weight: Weight::Rows(Arc::new(w.clone())),
            bias: Some(upload1(HostTensor::new(vec![d_out], bias.clone()), &device)),
        };
        for (name, layer) in [("burn's GEMM", &transposed), ("the rows", &rows)] {
            for n in [1, 2, 3, 5, 7] {
                let x: Vec<f32> = (0..n * d_in).map(|i| value(i + 11, 1.0)).collect();
                let x_tensor = Tensor::from_data(TensorData::new(x.clone(), [n, d_in]), &device);
                let y = floats(layer.forward(x_tensor));
                for r in 0..n {
                    for o in 0..d_out {
                        let want: f64 = bias[o] as f64
                            + (0..d_in)
                                .map(|i| x[r * d_in + i] as f64 * w[o * d_in + i] as f64)
                                .sum::<f64>();
                        let got = y[r * d_out + o] as f64;
                        assert!(
                            (got - want).abs() < 1e-5,
                            "{name}, {n} rows, [{r}, {o}]: {got} against {want}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn quantized_weights_of_the_wrong_shape_are_refused() {
        let src = OneMatrix(QuantMatrix::new(
            [2, 32],
            32,
            vec![0; 64],
            vec![0.0; 2],
            None,
        ));
        let device = BackendKind::default().device();
        let err = Linear::load(&src, "blk.0.ffn_up.weight", [3, 32], None, &device).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("blk.0.ffn_up.weight")
                && msg.contains("[2, 32]")
                && msg.contains("[3, 32]"),
            "{msg}"
        );
        let err = Embedding::load(&src, "token_embd.weight", [2, 64]).unwrap_err();
        assert!(err.to_string().contains("[2, 64]"), "{err}");
    }
}
