//! Reading GGUF files (llama.cpp's format) into [`HostTensor`]s.
//!
//! A GGUF file is: magic `GGUF`, version, tensor count, metadata count, the
//! metadata key/value pairs, one info record per tensor (name, dims, ggml
//! type, offset), padding to `general.alignment`, then the tensor data. All
//! integers are little-endian; we read versions 2 and 3 (version 1 used 32-bit
//! counts and is long gone from the wild).
//!
//! The bytes may come from anywhere (a user's download in the browser), so the
//! parser treats every count and offset as hostile: every read goes through a
//! bounds-checked cursor, nothing is allocated from a count before checking the
//! remaining bytes could hold that many items, and problems are reported as
//! [`Error::Weights`] naming the part of the file that is wrong.
//!
//! Quantized tensors are dequantized to `f32` exactly as ggml's reference
//! `dequantize_row_*` functions in `ggml-quants.c` do (same operations in the
//! same order, so results are bit-identical to an FMA-free build of ggml).
//!
//! [`parse`] reads the header, metadata ([`metadata`]) and tensor infos;
//! [`types`] is the ggml type table; the block layouts live in [`crate::quant::blocks`].

mod metadata;
mod parse;
mod types;

#[cfg(test)]
pub(crate) mod test_writer;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::collections::HashMap;
use std::ops::Range;

use super::bytes::{pieces, FileBytes, PIECE};
use super::HostTensor;
use crate::budget;
use crate::error::{Error, Result};
use crate::quant::blocks::{
    BlockQ2K, BlockQ3K, BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ5K, BlockQ5_0, BlockQ5_1, BlockQ6K,
    BlockQ8_0, GroupBlock,
};
use crate::quant::QuantMatrix;
pub use metadata::MetaValue;
use parse::{alignment, read_metadata, read_preamble, read_tensor_infos, Reader};
pub use types::GgmlType;

const MAGIC: &[u8; 4] = b"GGUF";
const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml's `GGML_MAX_DIMS`; more dimensions mean a corrupt or foreign file.
const MAX_DIMS: u32 = 4;
/// Nested arrays are legal but never deeper than 2 in practice; the cap keeps a
/// crafted file from recursing until the (small, in wasm) stack overflows.
const MAX_ARRAY_DEPTH: usize = 8;
const ALIGNMENT_KEY: &str = "general.alignment";
/// The bytes first read for the header, metadata and tensor infos (doubled
/// until they hold them all): enough for the vocabularies of today's models.
const HEADER_GUESS: usize = 8 << 20;

/// Where one tensor lives, as declared by its info record.
#[derive(Debug, Clone)]
pub(super) struct TensorInfo {
    /// GGUF order: `dims[0]` (ggml's `ne0`) is the fastest-varying dimension.
    pub(super) dims: Vec<usize>,
    pub(super) n_elements: usize,
    pub(super) type_id: u32,
    /// Relative to the start of the data section.
    pub(super) offset: u64,
}

/// A GGUF file with header, metadata and tensor infos parsed; the tensor data
/// is read from its [`FileBytes`] one tensor (or piece of one) at a time.
#[derive(Debug)]
pub struct GgufFile {
    bytes: Box<dyn FileBytes>,
    header: Header,
}

impl GgufFile {
    /// A file held in memory: see [`Self::from_file`].
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self> {
        Self::from_file(Box::new(bytes))
    }

    /// Parses and validates everything but the tensor data itself: every
    /// tensor of a known type has its byte range, alignment and block
    /// divisibility checked here, so loading fails early on a truncated file.
    /// The header is read from the first [`HEADER_GUESS`] bytes, twice as
    /// many while they do not hold it all, up to the whole file. Any other
    /// error (not a GGUF file, an unknown type) is reported at once, without
    /// reading more of a file that may be large and is not a model.
    pub fn from_file(bytes: Box<dyn FileBytes>) -> Result<Self> {
        let len = bytes.len();
        let mut prefix = HEADER_GUESS.min(len);
        let header = loop {
            match Header::parse(&bytes.read(0..prefix)?) {
                Ok(header) => break header,
                Err((e, ran_out)) if !ran_out || prefix == len => return Err(e),
                Err(_) => prefix = prefix.saturating_mul(2).min(len),
            }
        };
        // Outside the loop: a tensor past the end (a truncated download) is
        // reported without reading more of the file.
        header.check_tensors(len)?;
        Ok(Self { bytes, header })
    }

    /// The GGUF format version (2 or 3).
    pub fn version(&self) -> u32 {
        self.header.version
    }

    /// The data alignment in bytes (`general.alignment`, default 32).
    pub fn alignment(&self) -> u64 {
        self.header.alignment
    }

    pub fn metadata(&self, key: &str) -> Option<&MetaValue> {
        self.header.metadata.get(key)
    }

    /// All metadata keys, sorted (handy for error messages and debugging).
    pub fn metadata_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.header.metadata.keys().cloned().collect();
        keys.sort();
        keys
    }

    /// Accepts any integer type whose value fits, since converters differ in the width they write.
    pub fn get_u32(&self, key: &str) -> Result<u32> {
        let value = self.require(key)?;
        let n = value
            .as_integer()
            .ok_or_else(|| wrong_type(key, value, "an integer"))?;
        u32::try_from(n).map_err(|_| {
            Error::config(format!(
                "GGUF metadata key `{key}` is {n}, which does not fit in u32"
            ))
        })
    }

    /// Accepts f32 or f64.
    pub fn get_f32(&self, key: &str) -> Result<f32> {
        let value = self.require(key)?;
        value
            .as_float()
            .ok_or_else(|| wrong_type(key, value, "f32"))
    }

    pub fn get_str(&self, key: &str) -> Result<&str> {
        match self.require(key)? {
            MetaValue::Str(s) => Ok(s),
            other => Err(wrong_type(key, other, "string")),
        }
    }

    pub fn get_str_array(&self, key: &str) -> Result<Vec<&str>> {
        self.array(key, "string", |v| match v {
            MetaValue::Str(s) => Some(s.as_str()),
            _ => None,
        })
    }

    /// Accepts arrays of any integer type whose values fit in i32.
    pub fn get_i32_array(&self, key: &str) -> Result<Vec<i32>> {
        self.array(key, "i32", |v| {
            v.as_integer().and_then(|n| i32::try_from(n).ok())
        })
    }

    /// Accepts arrays of f32 or f64 (e.g. `tokenizer.ggml.scores`).
    pub fn get_f32_array(&self, key: &str) -> Result<Vec<f32>> {
        self.array(key, "f32", MetaValue::as_float)
    }

    /// Tensor names in file order.
    pub fn tensor_names(&self) -> Vec<String> {
        self.header.order.clone()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.header.tensors.contains_key(name)
    }

    pub fn tensor_type(&self, name: &str) -> Result<GgmlType> {
        let info = self.info(name)?;
        known_type(name, info)
    }

    /// Shape in PyTorch order (GGUF dims reversed), without reading the data.
    pub fn tensor_shape(&self, name: &str) -> Result<Vec<usize>> {
        Ok(self.info(name)?.dims.iter().rev().copied().collect())
    }

    /// Dequantizes one tensor to `f32`. The shape is the GGUF dims reversed:
    /// ggml's `ne0` varies fastest, which is the last dimension in row-major order.
    pub fn tensor(&self, name: &str) -> Result<HostTensor> {
        let info = self.info(name)?;
        let ty = known_type(name, info)?;
        let dequant = ty.dequantizer().ok_or_else(|| {
            Error::weights(format!(
                "tensor `{name}` has type {ty}, which this engine cannot dequantize; supported types are {} \
                 (re-quantize the model to one of them, e.g. Q8_0 or Q4_K_M)",
                GgmlType::supported_list()
            ))
        })?;
        let raw = self.raw(name, info, ty)?;
        let mut data = budget::vec_filled(|| super::tensor_as_f32(name), info.n_elements, 0.0)?;
        dequant(&raw, &mut data);
        Ok(HostTensor::new(
            info.dims.iter().rev().copied().collect(),
            data,
        ))
    }

    /// The 2-D tensor `name` in the grouped integer form the engine multiplies
    /// with directly (see [`crate::quant`]), or `None` for the float types
    /// (F32, F16, BF16), which [`Self::tensor`] reads.
    pub fn quantized(&self, name: &str) -> Result<Option<QuantMatrix>> {
        let info = self.info(name)?;
        let ty = known_type(name, info)?;
        let &[cols, rows] = &info.dims[..] else {
            return Ok(None);
        };
        let m = match ty {
            GgmlType::Q4_0 => self.unpacked::<BlockQ4_0>(name, info, ty, rows, cols),
            GgmlType::Q4_1 => self.unpacked::<BlockQ4_1>(name, info, ty, rows, cols),
            GgmlType::Q5_0 => self.unpacked::<BlockQ5_0>(name, info, ty, rows, cols),
            GgmlType::Q5_1 => self.unpacked::<BlockQ5_1>(name, info, ty, rows, cols),
            GgmlType::Q8_0 => self.unpacked::<BlockQ8_0>(name, info, ty, rows, cols),
            GgmlType::Q2_K => self.unpacked::<BlockQ2K>(name, info, ty, rows, cols),
            GgmlType::Q3_K => self.unpacked::<BlockQ3K>(name, info, ty, rows, cols),
            GgmlType::Q4_K => self.unpacked::<BlockQ4K>(name, info, ty, rows, cols),
            GgmlType::Q5_K => self.unpacked::<BlockQ5K>(name, info, ty, rows, cols),
            GgmlType::Q6_K => self.unpacked::<BlockQ6K>(name, info, ty, rows, cols),
            _ => return Ok(None),
        };
        m.map(Some)
    }

    /// Tensor `name`'s blocks of `B` unpacked into a [`QuantMatrix`], read
    /// [`PIECE`] bytes at a time.
    fn unpacked<B: GroupBlock>(
        &self,
        name: &str,
        info: &TensorInfo,
        ty: GgmlType,
        rows: usize,
        cols: usize,
    ) -> Result<QuantMatrix> {
        let range = byte_range(name, info, ty, self.header.data_start, self.bytes.len())?;
        let mut m = QuantMatrix::for_blocks::<B>(rows, cols, || {
            format!("tensor `{name}` in {ty}'s integer groups")
        })?;
        let start = range.start;
        for piece in pieces(range, size_of::<B>(), PIECE) {
            let first = (piece.start - start) / size_of::<B>();
            m.unpack_blocks::<B>(first, &self.bytes.read(piece)?);
        }
        Ok(m)
    }

    /// The data bytes of a tensor whose type is known.
    fn raw(&self, name: &str, info: &TensorInfo, ty: GgmlType) -> Result<Cow<'_, [u8]>> {
        let range = byte_range(name, info, ty, self.header.data_start, self.bytes.len())?;
        self.bytes.read(range)
    }

    /// The fingerprint hash ([`crate::fingerprint::hash`]) of the whole file,
    /// read [`PIECE`] bytes at a time.
    pub fn hash(&self) -> Result<u64> {
        let mut hasher = crate::fingerprint::Hasher::new();
        hasher.part_len(self.bytes.len());
        for piece in pieces(0..self.bytes.len(), 1, PIECE) {
            hasher.update(&self.bytes.read(piece)?);
        }
        Ok(hasher.digest())
    }

    fn info(&self, name: &str) -> Result<&TensorInfo> {
        self.header
            .tensors
            .get(name)
            .ok_or_else(|| super::missing_tensor(name, "GGUF", &self.header.order))
    }

    fn require(&self, key: &str) -> Result<&MetaValue> {
        self.header
            .metadata
            .get(key)
            .ok_or_else(|| Error::config(format!("GGUF metadata key `{key}` is missing")))
    }

    /// Converts every element of an array value with `convert`, naming the first element that does not fit.
    fn array<'a, T>(
        &'a self,
        key: &str,
        elem: &str,
        convert: impl Fn(&'a MetaValue) -> Option<T>,
    ) -> Result<Vec<T>> {
        let value = self.require(key)?;
        let MetaValue::Array(items) = value else {
            return Err(wrong_type(key, value, &format!("array of {elem}")));
        };
        items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                convert(item).ok_or_else(|| {
                    Error::config(format!(
                        "GGUF metadata key `{key}` element {i} is {}, expected {elem}",
                        item.describe()
                    ))
                })
            })
            .collect()
    }
}

/// Everything in a GGUF file before its tensor data, parsed.
#[derive(Debug)]
struct Header {
    version: u32,
    alignment: u64,
    data_start: u64,
    metadata: HashMap<String, MetaValue>,
    /// Tensor names in file order.
    order: Vec<String>,
    tensors: HashMap<String, TensorInfo>,
}

impl Header {
    /// The header at the start of `bytes`; on error, also whether it ran
    /// past their end (a longer prefix of the file may hold the header).
    fn parse(bytes: &[u8]) -> std::result::Result<Self, (Error, bool)> {
        let mut r = Reader::new(bytes);
        Self::read(&mut r).map_err(|e| (e, r.ran_out.get()))
    }

    fn read(r: &mut Reader<'_>) -> Result<Self> {
        let version = read_preamble(r)?;
        r.what = "the header".into();
        let n_tensors = r.u64()?;
        let n_kv = r.u64()?;
        let metadata = read_metadata(r, n_kv)?;
        let alignment = alignment(&metadata)?;
        let (order, tensors) = read_tensor_infos(r, n_tensors)?;
        let data_start = (r.pos as u64).next_multiple_of(alignment);
        Ok(Header {
            version,
            alignment,
            data_start,
            metadata,
            order,
            tensors,
        })
    }

    /// Checks every tensor of a known type against a file of `file_len` bytes.
    fn check_tensors(&self, file_len: usize) -> Result<()> {
        for name in &self.order {
            if let Some(info) = self.tensors.get(name) {
                check_tensor(name, info, self.alignment, self.data_start, file_len)?;
            }
        }
        Ok(())
    }
}

/// Up-front validation of one tensor; unknown type ids are left for [`GgufFile::tensor`] to report.
fn check_tensor(
    name: &str,
    info: &TensorInfo,
    alignment: u64,
    data_start: u64,
    file_len: usize,
) -> Result<()> {
    if !info.offset.is_multiple_of(alignment) {
        return Err(Error::weights(format!(
            "tensor `{name}` starts at data offset {}, which is not a multiple of the file's alignment {alignment}; the file is corrupt",
            info.offset
        )));
    }
    match GgmlType::from_id(info.type_id) {
        Some(ty) => byte_range(name, info, ty, data_start, file_len).map(|_| ()),
        None => Ok(()),
    }
}

fn wrong_type(key: &str, value: &MetaValue, expected: &str) -> Error {
    Error::config(format!(
        "GGUF metadata key `{key}` has type {}, expected {expected}",
        value.type_name()
    ))
}

fn known_type(name: &str, info: &TensorInfo) -> Result<GgmlType> {
    GgmlType::from_id(info.type_id).ok_or_else(|| {
        Error::weights(format!(
            "tensor `{name}` has ggml type id {}, which this engine does not know (the file may need a newer reader); \
             supported types are {}",
            info.type_id,
            GgmlType::supported_list()
        ))
    })
}

/// The tensor's bytes in the file, after checking block divisibility, overflow and file length.
fn byte_range(
    name: &str,
    info: &TensorInfo,
    ty: GgmlType,
    data_start: u64,
    file_len: usize,
) -> Result<Range<usize>> {
    let row = info.dims.first().copied().unwrap_or(1);
    if row % ty.block_size() != 0 {
        return Err(Error::weights(format!(
            "tensor `{name}` has rows of {row} elements, which is not a multiple of the {ty} block size {}; the file is corrupt",
            ty.block_size()
        )));
    }
    // u128 cannot overflow here: offsets are u64 and sizes at most usize × 292.
    let n_bytes = (info.n_elements / ty.block_size()) as u128 * ty.type_size() as u128;
    let start = data_start as u128 + info.offset as u128;
    let end = start + n_bytes;
    if end > file_len as u128 {
        return Err(Error::weights(format!(
            "GGUF file is truncated: tensor `{name}` needs bytes {start}..{end} but the file has {file_len}"
        )));
    }
    Ok(start as usize..end as usize)
}
