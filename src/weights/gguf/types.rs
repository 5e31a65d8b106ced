//! The ggml tensor element types: id, name, block geometry and dequantizer of each.

use std::fmt;

use half::{bf16, f16};

use crate::quant::blocks::{
    self, Block, BlockQ2K, BlockQ3K, BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ5K, BlockQ5_0,
    BlockQ5_1, BlockQ6K, BlockQ8_0,
};

/// Dequantizes whole blocks: `src` holds `n` blocks of `type_size` bytes, `dst` `n * block_size` values.
type Dequant = fn(&[u8], &mut [f32]);

/// Declares [`GgmlType`] and its per-type facts from one table, so the id,
/// name, block geometry and dequantizer of a type cannot drift apart.
macro_rules! ggml_types {
    ($($(#[$doc:meta])* $ty:ident = $id:literal, $block:expr, $bytes:expr, $dequant:expr;)*) => {
        /// A ggml tensor element type. Discriminants are the ids stored in GGUF files.
        #[allow(non_camel_case_types)]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u32)]
        pub enum GgmlType {
            $($(#[$doc])* $ty = $id,)*
        }

        impl GgmlType {
            pub(super) const ALL: &'static [GgmlType] = &[$(GgmlType::$ty,)*];

            pub fn from_id(id: u32) -> Option<Self> {
                match id {
                    $($id => Some(GgmlType::$ty),)*
                    _ => None,
                }
            }

            pub fn id(self) -> u32 {
                self as u32
            }

            pub fn name(self) -> &'static str {
                match self {
                    $(GgmlType::$ty => stringify!($ty),)*
                }
            }

            /// Elements per block (1 for plain float and int types).
            pub fn block_size(self) -> usize {
                match self {
                    $(GgmlType::$ty => $block,)*
                }
            }

            /// Bytes per block.
            pub fn type_size(self) -> usize {
                match self {
                    $(GgmlType::$ty => $bytes,)*
                }
            }

            pub(super) fn dequantizer(self) -> Option<Dequant> {
                match self {
                    $(GgmlType::$ty => $dequant,)*
                }
            }
        }
    };
}

ggml_types! {
    F32 = 0, 1, 4, Some(dequant_f32);
    F16 = 1, 1, 2, Some(dequant_f16);
    Q4_0 = 2, BlockQ4_0::LEN, size_of::<BlockQ4_0>(), Some(blocks::dequantize::<BlockQ4_0>);
    Q4_1 = 3, BlockQ4_1::LEN, size_of::<BlockQ4_1>(), Some(blocks::dequantize::<BlockQ4_1>);
    Q5_0 = 6, BlockQ5_0::LEN, size_of::<BlockQ5_0>(), Some(blocks::dequantize::<BlockQ5_0>);
    Q5_1 = 7, BlockQ5_1::LEN, size_of::<BlockQ5_1>(), Some(blocks::dequantize::<BlockQ5_1>);
    Q8_0 = 8, BlockQ8_0::LEN, size_of::<BlockQ8_0>(), Some(blocks::dequantize::<BlockQ8_0>);
    /// ggml's current `block_q8_1` (two f16 + 32 bytes); gguf-py still lists the older 40-byte layout.
    Q8_1 = 9, 32, 36, None;
    Q2_K = 10, BlockQ2K::LEN, size_of::<BlockQ2K>(), Some(blocks::dequantize::<BlockQ2K>);
    Q3_K = 11, BlockQ3K::LEN, size_of::<BlockQ3K>(), Some(blocks::dequantize::<BlockQ3K>);
    Q4_K = 12, BlockQ4K::LEN, size_of::<BlockQ4K>(), Some(blocks::dequantize::<BlockQ4K>);
    Q5_K = 13, BlockQ5K::LEN, size_of::<BlockQ5K>(), Some(blocks::dequantize::<BlockQ5K>);
    Q6_K = 14, BlockQ6K::LEN, size_of::<BlockQ6K>(), Some(blocks::dequantize::<BlockQ6K>);
    Q8_K = 15, 256, 292, None;
    IQ2_XXS = 16, 256, 66, None;
    IQ2_XS = 17, 256, 74, None;
    IQ3_XXS = 18, 256, 98, None;
    IQ1_S = 19, 256, 50, None;
    IQ4_NL = 20, 32, 18, None;
    IQ3_S = 21, 256, 110, None;
    IQ2_S = 22, 256, 82, None;
    IQ4_XS = 23, 256, 136, None;
    I8 = 24, 1, 1, None;
    I16 = 25, 1, 2, None;
    I32 = 26, 1, 4, None;
    I64 = 27, 1, 8, None;
    F64 = 28, 1, 8, None;
    IQ1_M = 29, 256, 56, None;
    BF16 = 30, 1, 2, Some(dequant_bf16);
    TQ1_0 = 34, 256, 54, None;
    TQ2_0 = 35, 256, 66, None;
    MXFP4 = 39, 32, 17, None;
    NVFP4 = 40, 64, 36, None;
    Q1_0 = 41, 128, 18, None;
}

impl GgmlType {
    /// Whether [`super::GgufFile::tensor`] can turn this type into `f32`.
    pub fn is_supported(self) -> bool {
        self.dequantizer().is_some()
    }

    pub(super) fn supported_list() -> String {
        let names: Vec<&str> = Self::ALL
            .iter()
            .filter(|t| t.is_supported())
            .map(|t| t.name())
            .collect();
        names.join(", ")
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

// The plain float types; the quantized ones are read by `crate::quant::blocks`.

fn dequant_f32(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.as_chunks::<4>().0.iter().zip(dst) {
        *y = f32::from_le_bytes(*b);
    }
}

fn dequant_f16(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.as_chunks::<2>().0.iter().zip(dst) {
        *y = f16::from_le_bytes(*b).to_f32();
    }
}

fn dequant_bf16(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.as_chunks::<2>().0.iter().zip(dst) {
        *y = bf16::from_le_bytes(*b).to_f32();
    }
}
