//! Reading pretrained weights into plain `f32` host tensors, or, for GGUF's
//! block-quantized matrices, into [`QuantMatrix`] (integer groups, never widened).
//!
//! Each format module turns bytes into [`HostTensor`]s by name; the model
//! modules then check shapes against the config and move them to a burn
//! device. Keeping this layer free of burn makes it testable on its own and
//! lets the browser hand us bytes it downloaded.

pub mod bytes;
pub mod gguf;
pub mod safetensors;

use crate::budget;
use crate::error::{Error, Result};
use crate::quant::QuantMatrix;

/// A dense row-major `f32` tensor in host memory, fresh from a weights file.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    /// Row-major shape, outermost dimension first (PyTorch order).
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl HostTensor {
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        Self { shape, data }
    }

    /// Fails with the tensor's name and both shapes when `expected` differs.
    pub fn expect_shape(self, name: &str, expected: &[usize]) -> Result<Self> {
        check_shape(name, &self.shape, expected)?;
        Ok(self)
    }

    /// A `[rows, cols]` tensor whose row `i` is this one's row `order[i]`;
    /// `name` names it if memory runs out.
    pub fn select_rows(&self, name: &str, order: &[usize]) -> Result<Self> {
        let cols = self.shape[1];
        let mut data = budget::vec_with_capacity(|| tensor_as_f32(name), order.len() * cols)?;
        for &r in order {
            data.extend_from_slice(&self.data[r * cols..(r + 1) * cols]);
        }
        Ok(HostTensor::new(vec![order.len(), cols], data))
    }
}

/// How a tensor's values in `f32` are named when memory runs out.
pub(crate) fn tensor_as_f32(name: &str) -> String {
    format!("tensor `{name}` as f32")
}

/// Fails with the tensor's name and both shapes when they differ.
pub(crate) fn check_shape(name: &str, shape: &[usize], expected: &[usize]) -> Result<()> {
    if shape == expected {
        return Ok(());
    }
    Err(Error::tensor(
        name,
        format!("shape {shape:?} does not match the config, which needs {expected:?}"),
    ))
}

/// A missing-tensor error that names a few real tensors, so a user can tell
/// a typo from a file of another model family.
pub(crate) fn missing_tensor(name: &str, format: &str, names_in_file: &[String]) -> Error {
    let examples: Vec<String> = names_in_file
        .iter()
        .take(3)
        .map(|n| format!("`{n}`"))
        .collect();
    let problem = if examples.is_empty() {
        format!("not found: the {format} file contains no tensors")
    } else {
        format!(
            "not found in the {format} file ({} tensors, e.g. {}); is this the right model?",
            names_in_file.len(),
            examples.join(", ")
        )
    };
    Error::tensor(name, problem)
}

/// Anything that hands out named tensors: a safetensors file, a GGUF file, a random initializer.
pub trait TensorSource {
    /// The tensor called `name`, or `Error::Tensor` saying it is missing.
    fn tensor(&self, name: &str) -> Result<HostTensor>;
    fn contains(&self, name: &str) -> bool;
    /// The matrix `name` in grouped integer form, if the file stores it in a
    /// format that converts to it exactly; `None` means read it with [`Self::tensor`].
    fn quantized(&self, _name: &str) -> Result<Option<QuantMatrix>> {
        Ok(None)
    }
}

impl TensorSource for safetensors::SafetensorsFile {
    fn tensor(&self, name: &str) -> Result<HostTensor> {
        safetensors::SafetensorsFile::tensor(self, name)
    }
    fn contains(&self, name: &str) -> bool {
        safetensors::SafetensorsFile::contains(self, name)
    }
}

impl TensorSource for gguf::GgufFile {
    fn tensor(&self, name: &str) -> Result<HostTensor> {
        gguf::GgufFile::tensor(self, name)
    }
    fn quantized(&self, name: &str) -> Result<Option<QuantMatrix>> {
        gguf::GgufFile::quantized(self, name)
    }
    fn contains(&self, name: &str) -> bool {
        gguf::GgufFile::contains(self, name)
    }
}
