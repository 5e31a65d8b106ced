//! Which burn backend runs the model. burn 0.22 picks the backend through the
//! `Device` at run time, so both can be compiled in and chosen per model.

use burn::tensor::Device;

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// burn's newer portable CPU backend; measured faster on one-row matmuls (decoding).
    Flex,
    /// The `ndarray` backend the design names.
    NdArray,
}

impl BackendKind {
    /// Every backend compiled into this build, default first.
    pub fn available() -> Vec<BackendKind> {
        [
            #[cfg(feature = "flex")]
            BackendKind::Flex,
            #[cfg(feature = "ndarray")]
            BackendKind::NdArray,
        ]
        .to_vec()
    }

    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Flex => "flex",
            BackendKind::NdArray => "ndarray",
        }
    }

    pub fn parse(name: &str) -> Result<Self> {
        let kind = match name {
            "flex" => BackendKind::Flex,
            "ndarray" => BackendKind::NdArray,
            other => {
                return Err(Error::invalid(format!(
                    "unknown backend `{other}` (expected flex or ndarray)"
                )))
            }
        };
        let available = Self::available();
        if !available.contains(&kind) {
            let names: Vec<&str> = available.iter().map(|b| b.name()).collect();
            return Err(Error::invalid(format!(
                "backend `{name}` is not compiled into this build, which has {} (cargo feature `{name}`)",
                names.join(" and ")
            )));
        }
        Ok(kind)
    }

    pub fn device(self) -> Device {
        match self {
            #[cfg(feature = "flex")]
            BackendKind::Flex => Device::flex(),
            #[cfg(feature = "ndarray")]
            // burn 0.22 deprecates burn-ndarray in favour of flex; the design keeps it as the baseline.
            #[allow(deprecated)]
            BackendKind::NdArray => Device::ndarray(),
            #[allow(unreachable_patterns)]
            _ => unreachable!("parse() only returns compiled backends"),
        }
    }
}

impl Default for BackendKind {
    fn default() -> Self {
        Self::available()[0]
    }
}

#[cfg(not(any(feature = "flex", feature = "ndarray")))]
compile_error!("enable at least one backend feature: `flex` or `ndarray`");
