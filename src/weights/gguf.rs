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

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;

use half::{bf16, f16};

use super::HostTensor;
use crate::error::{Error, Result};
use crate::quant::{self, Group, QuantMatrix, GROUP};

const MAGIC: &[u8; 4] = b"GGUF";
const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml's `GGML_MAX_DIMS`; more dimensions mean a corrupt or foreign file.
const MAX_DIMS: u32 = 4;
/// Nested arrays are legal but never deeper than 2 in practice; the cap keeps a
/// crafted file from recursing until the (small, in wasm) stack overflows.
const MAX_ARRAY_DEPTH: usize = 8;
const ALIGNMENT_KEY: &str = "general.alignment";

/// One metadata value, typed as the file declares it.
#[derive(Debug, Clone, PartialEq)]
pub enum MetaValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    Str(String),
    U64(u64),
    I64(i64),
    F64(f64),
    Array(Vec<MetaValue>),
}

impl MetaValue {
    /// Human-readable type for error messages, e.g. `array of string`.
    pub fn type_name(&self) -> String {
        match self {
            MetaValue::U8(_) => "u8".into(),
            MetaValue::I8(_) => "i8".into(),
            MetaValue::U16(_) => "u16".into(),
            MetaValue::I16(_) => "i16".into(),
            MetaValue::U32(_) => "u32".into(),
            MetaValue::I32(_) => "i32".into(),
            MetaValue::F32(_) => "f32".into(),
            MetaValue::Bool(_) => "bool".into(),
            MetaValue::Str(_) => "string".into(),
            MetaValue::U64(_) => "u64".into(),
            MetaValue::I64(_) => "i64".into(),
            MetaValue::F64(_) => "f64".into(),
            MetaValue::Array(items) => match items.first() {
                Some(first) => format!("array of {}", first.type_name()),
                None => "empty array".into(),
            },
        }
    }

    /// Type plus value for scalars; just the type for strings and arrays, which may be huge.
    fn describe(&self) -> String {
        match self {
            MetaValue::Str(_) | MetaValue::Array(_) => self.type_name(),
            MetaValue::U8(v) => format!("u8 {v}"),
            MetaValue::I8(v) => format!("i8 {v}"),
            MetaValue::U16(v) => format!("u16 {v}"),
            MetaValue::I16(v) => format!("i16 {v}"),
            MetaValue::U32(v) => format!("u32 {v}"),
            MetaValue::I32(v) => format!("i32 {v}"),
            MetaValue::F32(v) => format!("f32 {v}"),
            MetaValue::Bool(v) => format!("bool {v}"),
            MetaValue::U64(v) => format!("u64 {v}"),
            MetaValue::I64(v) => format!("i64 {v}"),
            MetaValue::F64(v) => format!("f64 {v}"),
        }
    }

    /// Any integer variant widened losslessly, so getters can accept whatever width a converter chose.
    fn as_integer(&self) -> Option<i128> {
        Some(match *self {
            MetaValue::U8(v) => v.into(),
            MetaValue::I8(v) => v.into(),
            MetaValue::U16(v) => v.into(),
            MetaValue::I16(v) => v.into(),
            MetaValue::U32(v) => v.into(),
            MetaValue::I32(v) => v.into(),
            MetaValue::U64(v) => v.into(),
            MetaValue::I64(v) => v.into(),
            _ => return None,
        })
    }

    fn as_float(&self) -> Option<f32> {
        match *self {
            MetaValue::F32(v) => Some(v),
            MetaValue::F64(v) => Some(v as f32),
            _ => None,
        }
    }
}

/// Dequantizes whole blocks: `src` holds `n` blocks of `type_size` bytes, `dst` `n * block_size` values.
type Dequant = fn(&[u8], &mut [f32]);

/// Declares [`GgmlType`] and its per-type facts from one table, so the id,
/// name, block geometry and dequantizer of a type cannot drift apart.
macro_rules! ggml_types {
    ($($(#[$doc:meta])* $ty:ident = $id:literal, $block:literal, $bytes:literal, $dequant:expr;)*) => {
        /// A ggml tensor element type. Discriminants are the ids stored in GGUF files.
        #[allow(non_camel_case_types)]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u32)]
        pub enum GgmlType {
            $($(#[$doc])* $ty = $id,)*
        }

        impl GgmlType {
            const ALL: &'static [GgmlType] = &[$(GgmlType::$ty,)*];

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

            fn dequantizer(self) -> Option<Dequant> {
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
    Q4_0 = 2, 32, 18, Some(dequant_q4_0);
    Q4_1 = 3, 32, 20, Some(dequant_q4_1);
    Q5_0 = 6, 32, 22, Some(dequant_q5_0);
    Q5_1 = 7, 32, 24, Some(dequant_q5_1);
    Q8_0 = 8, 32, 34, Some(dequant_q8_0);
    /// ggml's current `block_q8_1` (two f16 + 32 bytes); gguf-py still lists the older 40-byte layout.
    Q8_1 = 9, 32, 36, None;
    Q2_K = 10, 256, 84, Some(dequant_q2_k);
    Q3_K = 11, 256, 110, Some(dequant_q3_k);
    Q4_K = 12, 256, 144, Some(dequant_q4_k);
    Q5_K = 13, 256, 176, Some(dequant_q5_k);
    Q6_K = 14, 256, 210, Some(dequant_q6_k);
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
    /// Whether [`GgufFile::tensor`] can turn this type into `f32`.
    pub fn is_supported(self) -> bool {
        self.dequantizer().is_some()
    }

    /// For the formats made of `scale · q + offset` groups of 32: the block
    /// unpacker, and whether the offsets are used.
    fn group_format(self) -> Option<(Unpack, bool)> {
        match self {
            GgmlType::Q4_0 => Some((unpack_q4_0, false)),
            GgmlType::Q4_1 => Some((unpack_q4_1, true)),
            GgmlType::Q5_0 => Some((unpack_q5_0, false)),
            GgmlType::Q5_1 => Some((unpack_q5_1, true)),
            GgmlType::Q8_0 => Some((unpack_q8_0, false)),
            GgmlType::Q4_K => Some((unpack_q4_k, true)),
            GgmlType::Q5_K => Some((unpack_q5_k, true)),
            _ => None,
        }
    }

    fn supported_list() -> String {
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

/// Where one tensor lives, as declared by its info record.
#[derive(Debug, Clone)]
struct TensorInfo {
    /// GGUF order: `dims[0]` (ggml's `ne0`) is the fastest-varying dimension.
    dims: Vec<usize>,
    n_elements: usize,
    type_id: u32,
    /// Relative to the start of the data section.
    offset: u64,
}

/// A whole GGUF file held in memory, with header, metadata and tensor infos parsed.
///
/// It owns the bytes for the same reason as `SafetensorsFile`: the browser
/// hands us one buffer, and dequantizing one tensor at a time keeps peak memory low.
#[derive(Debug)]
pub struct GgufFile {
    bytes: Vec<u8>,
    version: u32,
    alignment: u64,
    data_start: u64,
    metadata: HashMap<String, MetaValue>,
    /// Tensor names in file order.
    order: Vec<String>,
    tensors: HashMap<String, TensorInfo>,
}

impl GgufFile {
    /// Parses and validates everything but the tensor data itself: every
    /// tensor of a known type has its byte range, alignment and block
    /// divisibility checked here, so loading fails early on a truncated file.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self> {
        let mut r = Reader::new(&bytes);
        let version = read_preamble(&mut r)?;
        r.what = "the header".into();
        let n_tensors = r.u64()?;
        let n_kv = r.u64()?;
        let metadata = read_metadata(&mut r, n_kv)?;
        let alignment = alignment(&metadata)?;
        let (order, tensors) = read_tensor_infos(&mut r, n_tensors)?;
        let data_start = (r.pos as u64).next_multiple_of(alignment);
        for name in &order {
            if let Some(info) = tensors.get(name) {
                check_tensor(name, info, alignment, data_start, bytes.len())?;
            }
        }
        Ok(Self {
            bytes,
            version,
            alignment,
            data_start,
            metadata,
            order,
            tensors,
        })
    }

    /// The GGUF format version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The data alignment in bytes (`general.alignment`, default 32).
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    pub fn metadata(&self, key: &str) -> Option<&MetaValue> {
        self.metadata.get(key)
    }

    /// All metadata keys, sorted (handy for error messages and debugging).
    pub fn metadata_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.metadata.keys().cloned().collect();
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
        self.order.clone()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
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
        let mut data = alloc_f32(name, info.n_elements)?;
        dequant(raw, &mut data);
        Ok(HostTensor::new(
            info.dims.iter().rev().copied().collect(),
            data,
        ))
    }

    /// The 2-D tensor `name` in the grouped 8-bit form the engine multiplies
    /// with directly (see [`crate::quant`]), or `None` for types without that
    /// form (F32, F16, BF16, Q2_K, Q3_K, Q6_K), which [`Self::tensor`] reads.
    pub fn quantized(&self, name: &str) -> Result<Option<QuantMatrix>> {
        let info = self.info(name)?;
        let ty = known_type(name, info)?;
        let (Some((unpack, offsets)), &[cols, rows]) = (ty.group_format(), &info.dims[..]) else {
            return Ok(None);
        };
        let raw = self.raw(name, info, ty)?;
        let per_block = ty.block_size() / GROUP;
        let groups = raw.chunks_exact(ty.type_size()).flat_map(|block| {
            let mut groups = [Group::default(); 8];
            unpack(block, &mut groups[..per_block]);
            groups.into_iter().take(per_block)
        });
        Ok(Some(QuantMatrix::from_groups(rows, cols, offsets, groups)))
    }

    /// The data bytes of a tensor whose type is known.
    fn raw(&self, name: &str, info: &TensorInfo, ty: GgmlType) -> Result<&[u8]> {
        let range = byte_range(name, info, ty, self.data_start, self.bytes.len())?;
        self.bytes
            .get(range)
            .ok_or_else(|| Error::weights(format!("tensor `{name}` lies outside the GGUF file")))
    }

    fn info(&self, name: &str) -> Result<&TensorInfo> {
        self.tensors
            .get(name)
            .ok_or_else(|| super::missing_tensor(name, "GGUF", &self.order))
    }

    fn require(&self, key: &str) -> Result<&MetaValue> {
        self.metadata
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

/// Allocates fallibly so an out-of-memory in the browser becomes an error instead of an abort.
fn alloc_f32(name: &str, n: usize) -> Result<Vec<f32>> {
    let mut data = Vec::new();
    data.try_reserve_exact(n).map_err(|_| {
        Error::weights(format!(
            "not enough memory to dequantize tensor `{name}` ({n} values as f32)"
        ))
    })?;
    data.resize(n, 0.0);
    Ok(data)
}

// ---------------------------------------------------------------------------
// Parsing

/// A cursor over the file that reports truncation with the part being read.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// What is being read, for error messages ("metadata value of `general.name`").
    what: String,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self {
            bytes,
            pos: 0,
            what: "the header".into(),
        }
    }

    fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.pos)
    }

    fn truncated(&self, n: u64) -> Error {
        if n > self.bytes.len() as u64 {
            return self.corrupt(format_args!(
                "it declares {n} bytes, more than the whole file ({} bytes)",
                self.bytes.len()
            ));
        }
        Error::weights(format!(
            "GGUF file is truncated: {} needs bytes {}..{} but the file has {}",
            self.what,
            self.pos,
            self.pos as u128 + n as u128,
            self.bytes.len()
        ))
    }

    fn corrupt(&self, problem: impl fmt::Display) -> Error {
        Error::weights(format!(
            "GGUF file is corrupt at byte {} ({}): {problem}",
            self.pos, self.what
        ))
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8]> {
        let end = usize::try_from(n)
            .ok()
            .and_then(|n| self.pos.checked_add(n));
        match end.and_then(|end| self.bytes.get(self.pos..end)) {
            Some(slice) => {
                self.pos += slice.len();
                Ok(slice)
            }
            None => Err(self.truncated(n)),
        }
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        match self
            .bytes
            .get(self.pos..)
            .and_then(|rest| rest.first_chunk::<N>())
        {
            Some(chunk) => {
                self.pos += N;
                Ok(*chunk)
            }
            None => Err(self.truncated(N as u64)),
        }
    }

    fn u8(&mut self) -> Result<u8> {
        self.array::<1>().map(|[b]| b)
    }
    fn u16(&mut self) -> Result<u16> {
        self.array().map(u16::from_le_bytes)
    }
    fn u32(&mut self) -> Result<u32> {
        self.array().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Result<u64> {
        self.array().map(u64::from_le_bytes)
    }

    /// Invalid UTF-8 is replaced rather than rejected: one odd token string
    /// should not make a whole model unloadable.
    fn string(&mut self) -> Result<String> {
        let len = self.u64()?;
        let raw = self.take(len)?;
        Ok(String::from_utf8_lossy(raw).into_owned())
    }

    /// Rejects `count` items of at least `min_size` bytes each when the rest of
    /// the file cannot hold them, before anything is allocated for them.
    fn check_count(&self, count: u64, min_size: usize, items: &str) -> Result<usize> {
        let fits = (self.remaining() / min_size.max(1)) as u64;
        if count > fits {
            return Err(Error::weights(format!(
                "GGUF file is truncated or corrupt: {} declares {count} {items}, but only {} bytes remain at byte {}",
                self.what,
                self.remaining(),
                self.pos
            )));
        }
        Ok(count as usize)
    }

    fn value(&mut self, ty: u32, depth: usize) -> Result<MetaValue> {
        Ok(match ty {
            0 => MetaValue::U8(self.u8()?),
            1 => MetaValue::I8(self.u8()? as i8),
            2 => MetaValue::U16(self.u16()?),
            3 => MetaValue::I16(self.u16()? as i16),
            4 => MetaValue::U32(self.u32()?),
            5 => MetaValue::I32(self.u32()? as i32),
            6 => MetaValue::F32(f32::from_bits(self.u32()?)),
            7 => MetaValue::Bool(self.u8()? != 0),
            8 => MetaValue::Str(self.string()?),
            9 => self.array_value(depth)?,
            10 => MetaValue::U64(self.u64()?),
            11 => MetaValue::I64(self.u64()? as i64),
            12 => MetaValue::F64(f64::from_bits(self.u64()?)),
            other => return Err(self.corrupt(format_args!("unknown metadata value type {other}"))),
        })
    }

    fn array_value(&mut self, depth: usize) -> Result<MetaValue> {
        if depth >= MAX_ARRAY_DEPTH {
            return Err(self.corrupt(format_args!(
                "arrays are nested more than {MAX_ARRAY_DEPTH} deep"
            )));
        }
        let elem_ty = self.u32()?;
        let count = self.u64()?;
        let min_size = min_value_size(elem_ty)
            .ok_or_else(|| self.corrupt(format_args!("unknown array element type {elem_ty}")))?;
        let count = self.check_count(count, min_size, "array elements")?;
        let mut items = Vec::with_capacity(count);
        for _ in 0..count {
            items.push(self.value(elem_ty, depth + 1)?);
        }
        Ok(MetaValue::Array(items))
    }
}

/// Smallest encoding of a value of type `ty`: used to bound counts before allocating.
fn min_value_size(ty: u32) -> Option<usize> {
    match ty {
        0 | 1 | 7 => Some(1),
        2 | 3 => Some(2),
        4..=6 => Some(4),
        8 | 10..=12 => Some(8),
        9 => Some(12),
        _ => None,
    }
}

/// Checks the magic and version, with hints for the usual wrong files.
fn read_preamble(r: &mut Reader) -> Result<u32> {
    let magic = r.bytes.first_chunk::<4>();
    if magic != Some(MAGIC) {
        return Err(bad_magic(r.bytes));
    }
    r.pos = 4;
    match r.u32()? {
        v @ (2 | 3) => Ok(v),
        1 => Err(Error::weights(
            "GGUF version 1 is not supported; re-convert the model with a current llama.cpp",
        )),
        v if matches!(v.swap_bytes(), 2 | 3) => Err(Error::weights(
            "this GGUF file is big-endian; only little-endian GGUF files are supported",
        )),
        v => Err(Error::weights(format!(
            "GGUF version {v} is not supported (this reader knows versions 2 and 3)"
        ))),
    }
}

fn bad_magic(bytes: &[u8]) -> Error {
    let start: String = bytes
        .iter()
        .take(4)
        .flat_map(|b| std::ascii::escape_default(*b))
        .map(char::from)
        .collect();
    let hint = if bytes.get(8) == Some(&b'{') {
        " (it looks like a safetensors file)"
    } else if matches!(bytes.get(..4), Some(b"lmgg" | b"fmgg" | b"tjgg" | b"algg")) {
        " (it is a pre-GGUF ggml file; re-convert it with a current llama.cpp)"
    } else {
        ""
    };
    Error::weights(format!(
        "not a GGUF file: it starts with \"{start}\" instead of \"GGUF\"{hint}"
    ))
}

fn read_metadata(r: &mut Reader, n_kv: u64) -> Result<HashMap<String, MetaValue>> {
    // Smallest entry: 8-byte key length, empty key, 4-byte type, 1-byte value.
    let n_kv = r.check_count(n_kv, 13, "metadata entries")?;
    let mut metadata = HashMap::with_capacity(n_kv);
    for i in 0..n_kv {
        r.what = format!("metadata entry #{i}");
        let key = r.string()?;
        r.what = format!("metadata value of `{key}`");
        let ty = r.u32()?;
        let value = r.value(ty, 0)?;
        if metadata.insert(key.clone(), value).is_some() {
            return Err(r.corrupt(format_args!("metadata key `{key}` appears twice")));
        }
    }
    Ok(metadata)
}

/// `general.alignment` if present; ggml requires a power of two.
fn alignment(metadata: &HashMap<String, MetaValue>) -> Result<u64> {
    let Some(value) = metadata.get(ALIGNMENT_KEY) else {
        return Ok(DEFAULT_ALIGNMENT);
    };
    match value.as_integer().and_then(|n| u32::try_from(n).ok()) {
        Some(a) if a.is_power_of_two() => Ok(a.into()),
        _ => Err(Error::weights(format!(
            "GGUF metadata `{ALIGNMENT_KEY}` is {}; it must be a power of two that fits in u32",
            value.describe()
        ))),
    }
}

fn read_tensor_infos(
    r: &mut Reader,
    n_tensors: u64,
) -> Result<(Vec<String>, HashMap<String, TensorInfo>)> {
    r.what = "the tensor count".into();
    // Smallest record: 8-byte name length, empty name, n_dims, type, offset.
    let n_tensors = r.check_count(n_tensors, 24, "tensors")?;
    let mut order = Vec::with_capacity(n_tensors);
    let mut tensors = HashMap::with_capacity(n_tensors);
    for i in 0..n_tensors {
        r.what = format!("tensor info #{i}");
        let name = r.string()?;
        r.what = format!("tensor info #{i} (`{name}`)");
        let info = read_tensor_info(r, &name)?;
        if tensors.insert(name.clone(), info).is_some() {
            return Err(r.corrupt(format_args!("tensor name `{name}` appears twice")));
        }
        order.push(name);
    }
    Ok((order, tensors))
}

fn read_tensor_info(r: &mut Reader, name: &str) -> Result<TensorInfo> {
    let n_dims = r.u32()?;
    if n_dims > MAX_DIMS {
        return Err(r.corrupt(format_args!(
            "tensor `{name}` has {n_dims} dimensions; GGUF allows at most {MAX_DIMS}"
        )));
    }
    let mut dims = Vec::with_capacity(n_dims as usize);
    for _ in 0..n_dims {
        let d = r.u64()?;
        // ggml stores dims as int64; a value past i64::MAX is a negative dimension.
        let d = usize::try_from(d).ok().filter(|_| d <= i64::MAX as u64).ok_or_else(|| {
            r.corrupt(format_args!("tensor `{name}` has dimension {d}, which is negative or too large for this platform"))
        })?;
        dims.push(d);
    }
    let n_elements = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| {
            r.corrupt(format_args!(
                "tensor `{name}` has dimensions {dims:?}, whose element count overflows"
            ))
        })?;
    let type_id = r.u32()?;
    let offset = r.u64()?;
    Ok(TensorInfo {
        dims,
        n_elements,
        type_id,
        offset,
    })
}

// ---------------------------------------------------------------------------
// Dequantization, one function per type, each a port of ggml's dequantize_row_*.

/// Pairs each `TS`-byte block of `src` with its `BS` outputs in `dst`.
fn blocks<'a, const TS: usize, const BS: usize>(
    src: &'a [u8],
    dst: &'a mut [f32],
) -> impl Iterator<Item = (&'a [u8; TS], &'a mut [f32; BS])> {
    src.as_chunks::<TS>()
        .0
        .iter()
        .zip(dst.as_chunks_mut::<BS>().0.iter_mut())
}

fn f16_le(lo: u8, hi: u8) -> f32 {
    f16::from_bits(u16::from_le_bytes([lo, hi])).to_f32()
}

fn dequant_f32(src: &[u8], dst: &mut [f32]) {
    for (b, y) in blocks::<4, 1>(src, dst) {
        y[0] = f32::from_le_bytes(*b);
    }
}

fn dequant_f16(src: &[u8], dst: &mut [f32]) {
    for (b, y) in blocks::<2, 1>(src, dst) {
        y[0] = f16_le(b[0], b[1]);
    }
}

fn dequant_bf16(src: &[u8], dst: &mut [f32]) {
    for (b, y) in blocks::<2, 1>(src, dst) {
        y[0] = bf16::from_le_bytes(*b).to_f32();
    }
}

// The 32-element formats are `scale · q + offset` per group of 32 (see
// `crate::quant`): each has an unpacker to that form, which the engine keeps
// in memory, and its dequantizer applies `quant::dequant` to the groups.

/// Fills the groups of one block (`block_size / 32` of them).
type Unpack = fn(&[u8], &mut [Group]);

/// Dequantizes through the groups; `offsets` is false for the symmetric formats.
fn dequant_groups<const TS: usize, const BS: usize>(
    src: &[u8],
    dst: &mut [f32],
    unpack: Unpack,
    offsets: bool,
) {
    let mut groups = [Group::default(); 8];
    for (b, y) in blocks::<TS, BS>(src, dst) {
        let groups = &mut groups[..BS / GROUP];
        unpack(b, groups);
        for (g, out) in groups.iter().zip(y.as_chunks_mut::<GROUP>().0) {
            let offset = offsets.then_some(g.offset);
            for (v, &q) in out.iter_mut().zip(&g.q) {
                *v = quant::dequant(q, g.scale, offset);
            }
        }
    }
}

/// `{ f16 d; u8 qs[16] }`: low nibbles are elements 0..16, high nibbles 16..32, offset by 8.
fn unpack_q4_0(b: &[u8], out: &mut [Group]) {
    let g = &mut out[0];
    g.scale = f16_le(b[0], b[1]);
    for (j, &q) in b[2..18].iter().enumerate() {
        g.q[j] = (q & 0x0F) as i8 - 8;
        g.q[j + 16] = (q >> 4) as i8 - 8;
    }
}

/// `{ f16 d; f16 m; u8 qs[16] }`: unsigned nibbles scaled by `d`, shifted by `m`.
fn unpack_q4_1(b: &[u8], out: &mut [Group]) {
    let g = &mut out[0];
    (g.scale, g.offset) = (f16_le(b[0], b[1]), f16_le(b[2], b[3]));
    for (j, &q) in b[4..20].iter().enumerate() {
        g.q[j] = (q & 0x0F) as i8;
        g.q[j + 16] = (q >> 4) as i8;
    }
}

/// The 5th bit of each of the 32 elements, from the little-endian `qh` word.
fn high_bits(qh: u32, j: usize) -> (u8, u8) {
    (
        ((qh >> j) as u8 & 1) << 4,
        ((qh >> (j + 16)) as u8 & 1) << 4,
    )
}

/// Nibbles `qs` plus fifth bits `qh`, less `bias`.
fn five_bit(g: &mut Group, qh: &[u8], qs: &[u8], bias: i8) {
    let qh = u32::from_le_bytes([qh[0], qh[1], qh[2], qh[3]]);
    for (j, &q) in qs.iter().enumerate() {
        let (h0, h1) = high_bits(qh, j);
        g.q[j] = ((q & 0x0F) | h0) as i8 - bias;
        g.q[j + 16] = ((q >> 4) | h1) as i8 - bias;
    }
}

/// `{ f16 d; u8 qh[4]; u8 qs[16] }`: Q4_0 plus a fifth bit per element, offset by 16.
fn unpack_q5_0(b: &[u8], out: &mut [Group]) {
    out[0].scale = f16_le(b[0], b[1]);
    five_bit(&mut out[0], &b[2..6], &b[6..22], 16);
}

/// `{ f16 d; f16 m; u8 qh[4]; u8 qs[16] }`: Q4_1 plus a fifth bit per element.
fn unpack_q5_1(b: &[u8], out: &mut [Group]) {
    (out[0].scale, out[0].offset) = (f16_le(b[0], b[1]), f16_le(b[2], b[3]));
    five_bit(&mut out[0], &b[4..8], &b[8..24], 0);
}

/// `{ f16 d; i8 qs[32] }`.
fn unpack_q8_0(b: &[u8], out: &mut [Group]) {
    let g = &mut out[0];
    g.scale = f16_le(b[0], b[1]);
    for (q, &byte) in g.q.iter_mut().zip(&b[2..34]) {
        *q = byte as i8;
    }
}

fn dequant_q4_0(src: &[u8], dst: &mut [f32]) {
    dequant_groups::<18, 32>(src, dst, unpack_q4_0, false);
}

fn dequant_q4_1(src: &[u8], dst: &mut [f32]) {
    dequant_groups::<20, 32>(src, dst, unpack_q4_1, true);
}

fn dequant_q5_0(src: &[u8], dst: &mut [f32]) {
    dequant_groups::<22, 32>(src, dst, unpack_q5_0, false);
}

fn dequant_q5_1(src: &[u8], dst: &mut [f32]) {
    dequant_groups::<24, 32>(src, dst, unpack_q5_1, true);
}

fn dequant_q8_0(src: &[u8], dst: &mut [f32]) {
    dequant_groups::<34, 32>(src, dst, unpack_q8_0, false);
}

/// K-quant super-blocks of 256 hold 16 groups of 16 (Q2_K, Q3_K, Q6_K) or
/// 8 groups of 32 (Q4_K, Q5_K). For the 16-groups types, group `g` reads
/// its 2-bit fields from the 32-byte chunk `g / 8`, half `g % 2`, at bit shift
/// `2 * ((g / 2) % 4)`.
fn k_group(g: usize) -> (usize, u32) {
    (32 * (g / 8) + 16 * (g % 2), 2 * ((g / 2) % 4) as u32)
}

/// `{ u8 scales[16]; u8 qs[64]; f16 d; f16 dmin }`: 2-bit values, 4-bit scale and min per group.
fn dequant_q2_k(src: &[u8], dst: &mut [f32]) {
    for (b, y) in blocks::<84, 256>(src, dst) {
        let (scales, qs) = (&b[..16], &b[16..80]);
        let (d, dmin) = (f16_le(b[80], b[81]), f16_le(b[82], b[83]));
        for (g, out) in y.as_chunks_mut::<16>().0.iter_mut().enumerate() {
            let (at, shift) = k_group(g);
            let dl = d * (scales[g] & 0x0F) as f32;
            let ml = dmin * (scales[g] >> 4) as f32;
            for (v, &q) in out.iter_mut().zip(&qs[at..at + 16]) {
                *v = dl * ((q >> shift) & 3) as f32 - ml;
            }
        }
    }
}

/// The 16 signed 6-bit group scales of Q3_K, packed into 12 bytes: low
/// nibbles in bytes 0..8 (low half then high half), top two bits in bytes 8..12.
fn q3_k_scale(scales: &[u8], g: usize) -> i32 {
    let low = if g < 8 {
        scales[g] & 0x0F
    } else {
        scales[g - 8] >> 4
    };
    let high = (scales[8 + g % 4] >> (2 * (g / 4))) & 3;
    (low | (high << 4)) as i32 - 32
}

/// `{ u8 hmask[32]; u8 qs[64]; u8 scales[12]; f16 d }`: 2 low bits plus a
/// high bit that, when clear, subtracts 4.
fn dequant_q3_k(src: &[u8], dst: &mut [f32]) {
    for (b, y) in blocks::<110, 256>(src, dst) {
        let (hmask, qs, scales) = (&b[..32], &b[32..96], &b[96..108]);
        let d = f16_le(b[108], b[109]);
        for (g, out) in y.as_chunks_mut::<16>().0.iter_mut().enumerate() {
            let (at, shift) = k_group(g);
            let dl = d * q3_k_scale(scales, g) as f32;
            let bit = 1u8 << (g / 2);
            let hm = &hmask[16 * (g % 2)..16 * (g % 2) + 16];
            for ((v, &q), &h) in out.iter_mut().zip(&qs[at..at + 16]).zip(hm) {
                let sub = if h & bit != 0 { 0 } else { 4 };
                *v = dl * (((q >> shift) & 3) as i32 - sub) as f32;
            }
        }
    }
}

/// ggml's `get_scale_min_k4`: the 8 (scale, min) 6-bit pairs of Q4_K/Q5_K packed in 12 bytes.
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// Group `j`'s scale and offset for the Q4_K/Q5_K formula `d·sc·q − dmin·m`
/// (as `scale · q + offset`: the same float operations, so the same bits).
fn k4_group(g: &mut Group, d: f32, dmin: f32, scales: &[u8], j: usize) {
    let (sc, m) = scale_min_k4(j, scales);
    (g.scale, g.offset) = (d * sc as f32, -(dmin * m as f32));
}

/// Q4_K and Q5_K share their scales and nibble layout: 32-byte chunk `p` of
/// `qs` holds group `2p` in its low nibbles and `2p + 1` in its high ones;
/// `fifth(p, j)` gives Q5_K's fifth bits of element `j` of both groups.
fn unpack_k4(b: &[u8], qs: &[u8], out: &mut [Group], fifth: impl Fn(usize, usize) -> (u8, u8)) {
    let (d, dmin) = (f16_le(b[0], b[1]), f16_le(b[2], b[3]));
    let scales = &b[4..16];
    for (p, (pair, q)) in out.chunks_exact_mut(2).zip(qs.chunks_exact(32)).enumerate() {
        let [lo, hi] = pair else { continue };
        k4_group(lo, d, dmin, scales, 2 * p);
        k4_group(hi, d, dmin, scales, 2 * p + 1);
        for (j, &q) in q.iter().enumerate() {
            let (h1, h2) = fifth(p, j);
            lo.q[j] = ((q & 0x0F) + h1) as i8;
            hi.q[j] = ((q >> 4) + h2) as i8;
        }
    }
}

/// `{ f16 d; f16 dmin; u8 scales[12]; u8 qs[128] }`.
fn unpack_q4_k(b: &[u8], out: &mut [Group]) {
    unpack_k4(b, &b[16..144], out, |_, _| (0, 0));
}

/// `{ f16 d; f16 dmin; u8 scales[12]; u8 qh[32]; u8 qs[128] }`: Q4_K plus a
/// fifth bit per element; chunk `p` takes bits `2p` and `2p + 1` of `qh`.
fn unpack_q5_k(b: &[u8], out: &mut [Group]) {
    let qh = &b[16..48];
    let bit = |j: usize, mask: u8| if qh[j] & mask != 0 { 16 } else { 0 };
    unpack_k4(b, &b[48..176], out, |p, j| {
        (bit(j, 1 << (2 * p)), bit(j, 2 << (2 * p)))
    });
}

fn dequant_q4_k(src: &[u8], dst: &mut [f32]) {
    dequant_groups::<144, 256>(src, dst, unpack_q4_k, true);
}

fn dequant_q5_k(src: &[u8], dst: &mut [f32]) {
    dequant_groups::<176, 256>(src, dst, unpack_q5_k, true);
}

/// `{ u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d }`: 6-bit values offset by
/// 32. Each half (128 elements) has four quarters of 32: quarter `k` takes
/// nibble `k / 2` of `ql[l + 32 * (k % 2)]` and bits `2k..2k+2` of `qh[l]`.
fn dequant_q6_k(src: &[u8], dst: &mut [f32]) {
    for (b, y) in blocks::<210, 256>(src, dst) {
        let d = f16_le(b[208], b[209]);
        // ggml computes `d * sc[is] * q` left to right, so folding `d * sc` first is bit-identical.
        let scales: [f32; 16] = std::array::from_fn(|i| d * (b[192 + i] as i8) as f32);
        for (n, half) in y.as_chunks_mut::<128>().0.iter_mut().enumerate() {
            let (ql, qh) = (&b[64 * n..64 * n + 64], &b[128 + 32 * n..128 + 32 * n + 32]);
            for (k, quarter) in half.as_chunks_mut::<32>().0.iter_mut().enumerate() {
                let ql = &ql[32 * (k % 2)..32 * (k % 2) + 32];
                let (lshift, hshift) = (4 * (k / 2), 2 * k);
                for (l, ((v, &lo), &hi)) in quarter.iter_mut().zip(ql).zip(qh).enumerate() {
                    let q = (((lo >> lshift) & 0x0F) | (((hi >> hshift) & 3) << 4)) as i32 - 32;
                    *v = scales[8 * n + l / 16 + 2 * k] * q as f32;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes GGUF files by hand, so tests can also write broken ones.
    struct Builder {
        version: u32,
        alignment: usize,
        n_kv: u64,
        kv: Vec<u8>,
        n_tensors: u64,
        infos: Vec<u8>,
        data: Vec<u8>,
    }

    fn put_str(out: &mut Vec<u8>, s: &str) {
        out.extend((s.len() as u64).to_le_bytes());
        out.extend(s.as_bytes());
    }

    fn str_bytes(s: &str) -> Vec<u8> {
        let mut out = Vec::new();
        put_str(&mut out, s);
        out
    }

    /// Encoded array value (element type, count, elements), as it follows a type-9 tag.
    fn array_bytes(elem_ty: u32, count: u64, elems: &[u8]) -> Vec<u8> {
        let mut out = elem_ty.to_le_bytes().to_vec();
        out.extend(count.to_le_bytes());
        out.extend(elems);
        out
    }

    impl Builder {
        fn new() -> Self {
            Self {
                version: 3,
                alignment: 32,
                n_kv: 0,
                kv: vec![],
                n_tensors: 0,
                infos: vec![],
                data: vec![],
            }
        }

        fn kv(mut self, key: &str, ty: u32, value: &[u8]) -> Self {
            put_str(&mut self.kv, key);
            self.kv.extend(ty.to_le_bytes());
            self.kv.extend(value);
            self.n_kv += 1;
            self
        }

        fn kv_u32(self, key: &str, v: u32) -> Self {
            self.kv(key, 4, &v.to_le_bytes())
        }

        fn kv_str(self, key: &str, v: &str) -> Self {
            self.kv(key, 8, &str_bytes(v))
        }

        fn align(mut self, alignment: u32) -> Self {
            self.alignment = alignment as usize;
            self.kv_u32(ALIGNMENT_KEY, alignment)
        }

        /// Adds an info record only, pointing wherever the test says.
        fn tensor_info(mut self, name: &str, dims: &[u64], ty: u32, offset: u64) -> Self {
            put_str(&mut self.infos, name);
            self.infos.extend((dims.len() as u32).to_le_bytes());
            for d in dims {
                self.infos.extend(d.to_le_bytes());
            }
            self.infos.extend(ty.to_le_bytes());
            self.infos.extend(offset.to_le_bytes());
            self.n_tensors += 1;
            self
        }

        /// Adds a tensor and its data, correctly aligned.
        fn tensor(mut self, name: &str, dims: &[u64], ty: GgmlType, data: &[u8]) -> Self {
            let offset = self.data.len().next_multiple_of(self.alignment);
            self.data.resize(offset, 0);
            self.data.extend(data);
            self.tensor_info(name, dims, ty.id(), offset as u64)
        }

        fn build(&self) -> Vec<u8> {
            let mut out = b"GGUF".to_vec();
            out.extend(self.version.to_le_bytes());
            out.extend(self.n_tensors.to_le_bytes());
            out.extend(self.n_kv.to_le_bytes());
            out.extend(&self.kv);
            out.extend(&self.infos);
            out.resize(out.len().next_multiple_of(self.alignment), 0);
            out.extend(&self.data);
            out
        }
    }

    macro_rules! fixture {
        ($name:literal) => {
            (
                include_bytes!(concat!("../../tests/fixtures/quants/", $name, ".bin")).as_slice(),
                include_bytes!(concat!("../../tests/fixtures/quants/", $name, ".f32")).as_slice(),
            )
        };
    }

    const TINY: &[u8] = include_bytes!("../../tests/fixtures/gguf/tiny.gguf");

    fn fixtures() -> Vec<(GgmlType, &'static [u8], &'static [u8])> {
        let all = [
            (GgmlType::F16, fixture!("f16")),
            (GgmlType::BF16, fixture!("bf16")),
            (GgmlType::Q4_0, fixture!("q4_0")),
            (GgmlType::Q4_1, fixture!("q4_1")),
            (GgmlType::Q5_0, fixture!("q5_0")),
            (GgmlType::Q5_1, fixture!("q5_1")),
            (GgmlType::Q8_0, fixture!("q8_0")),
            (GgmlType::Q2_K, fixture!("q2_k")),
            (GgmlType::Q3_K, fixture!("q3_k")),
            (GgmlType::Q4_K, fixture!("q4_k")),
            (GgmlType::Q5_K, fixture!("q5_k")),
            (GgmlType::Q6_K, fixture!("q6_k")),
        ];
        all.into_iter()
            .map(|(ty, (raw, want))| (ty, raw, want))
            .collect()
    }

    fn le_f32(bytes: &[u8]) -> Vec<f32> {
        bytes
            .as_chunks::<4>()
            .0
            .iter()
            .map(|b| f32::from_le_bytes(*b))
            .collect()
    }

    fn f32_bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    /// Exact comparison, bit for bit (so -0.0 vs 0.0 counts), with a useful failure message.
    fn assert_bits_eq(what: &str, got: &[f32], want: &[f32]) {
        assert_eq!(got.len(), want.len(), "{what}: length");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert_eq!(
                g.to_bits(),
                w.to_bits(),
                "{what}: element {i} is {g:e}, gguf-py says {w:e}"
            );
        }
    }

    fn weights_err<T: fmt::Debug>(r: Result<T>) -> String {
        match r {
            Err(Error::Weights(m)) => m,
            other => panic!("expected Error::Weights, got {other:?}"),
        }
    }

    fn config_err<T: fmt::Debug>(r: Result<T>) -> String {
        match r {
            Err(Error::Config(m)) => m,
            other => panic!("expected Error::Config, got {other:?}"),
        }
    }

    /// A valid file exercising every metadata value type and a few tensor types.
    fn sample_file() -> Vec<u8> {
        let (q8, _) = fixture!("q8_0");
        let (q4k, _) = fixture!("q4_k");
        let tokens: Vec<u8> = ["<s>", "hi", ""]
            .iter()
            .flat_map(|s| str_bytes(s))
            .collect();
        let inner = array_bytes(5, 2, &[1, 0, 0, 0, 2, 0, 0, 0]);
        Builder::new()
            .kv_str("general.architecture", "llama")
            .kv_u32("llama.block_count", 2)
            .kv("u8", 0, &[7])
            .kv("i8", 1, &[0xfb])
            .kv("u16", 2, &[1, 2])
            .kv("i16", 3, &[0xff, 0xff])
            .kv("i32", 5, &(-3i32).to_le_bytes())
            .kv("f32", 6, &1.5f32.to_le_bytes())
            .kv("bool", 7, &[1])
            .kv("u64", 10, &(1u64 << 40).to_le_bytes())
            .kv("i64", 11, &(-1i64).to_le_bytes())
            .kv("f64", 12, &0.25f64.to_le_bytes())
            .kv("tokens", 9, &array_bytes(8, 3, &tokens))
            .kv("nested", 9, &array_bytes(9, 1, &inner))
            .tensor(
                "f32",
                &[3, 2],
                GgmlType::F32,
                &f32_bytes(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
            )
            .tensor("q8_0", &[64, 4], GgmlType::Q8_0, q8)
            .tensor("q4_k", &[256], GgmlType::Q4_K, &q4k[..144])
            .build()
    }

    #[test]
    fn dequantizers_match_gguf_py_bit_for_bit() {
        for (ty, raw, want) in fixtures() {
            let want = le_f32(want);
            let mut got = vec![f32::NAN; want.len()];
            (ty.dequantizer().unwrap())(raw, &mut got);
            assert_bits_eq(ty.name(), &got, &want);
        }
    }

    #[test]
    fn quantized_tensors_load_through_a_file_with_reversed_shape() {
        for (ty, raw, want) in fixtures() {
            let n_blocks = raw.len() / ty.type_size();
            let row = (2 * ty.block_size()) as u64;
            let rows = (n_blocks / 2) as u64;
            let file =
                GgufFile::from_bytes(Builder::new().tensor("w", &[row, rows], ty, raw).build())
                    .unwrap();
            assert_eq!(file.tensor_type("w").unwrap(), ty);
            let t = file.tensor("w").unwrap();
            assert_eq!(t.shape, vec![rows as usize, row as usize], "{ty}");
            assert_bits_eq(ty.name(), &t.data, &le_f32(want));
            // The grouped 8-bit form holds exactly the same weights, for the types that have it.
            let grouped = file.quantized("w").unwrap();
            let expect_grouped = [
                GgmlType::Q4_0,
                GgmlType::Q4_1,
                GgmlType::Q5_0,
                GgmlType::Q5_1,
                GgmlType::Q8_0,
                GgmlType::Q4_K,
                GgmlType::Q5_K,
            ]
            .contains(&ty);
            assert_eq!(grouped.is_some(), expect_grouped, "{ty}");
            if let Some(m) = grouped {
                assert_eq!(m.shape(), [rows as usize, row as usize], "{ty}");
                assert_bits_eq(ty.name(), &m.dequantize(), &le_f32(want));
            }
        }
    }

    #[test]
    fn reads_file_written_by_gguf_py() {
        let f = GgufFile::from_bytes(TINY.to_vec()).unwrap();
        assert_eq!(f.version(), 3);
        assert_eq!(f.alignment(), 64);
        assert_eq!(
            f.tensor_names(),
            [
                "f32.weight",
                "f32.3d",
                "f16.bias",
                "q8_0.weight",
                "q4_k.weight"
            ]
        );
        assert_eq!(f.get_str("general.architecture").unwrap(), "llama");
        assert_eq!(f.get_str("general.name").unwrap(), "tiny test");
        assert_eq!(f.get_u32("llama.context_length").unwrap(), 2048);
        assert_eq!(
            f.get_u32("llama.block_count").unwrap(),
            2,
            "u64 value must be accepted"
        );
        assert_eq!(f.get_f32("llama.rope.freq_base").unwrap(), 10000.0);
        assert_eq!(f.get_f32("test.f64").unwrap(), 0.125);
        assert_eq!(f.metadata("test.flag"), Some(&MetaValue::Bool(true)));
        assert_eq!(f.metadata("test.negative_i8"), Some(&MetaValue::I8(-5)));
        assert_eq!(
            f.get_str_array("tokenizer.ggml.tokens").unwrap(),
            ["<s>", "hello", "w\u{f6}rld"]
        );
        assert_eq!(
            f.get_f32_array("tokenizer.ggml.scores").unwrap(),
            [0.0, -1.5, -2.25]
        );
        assert_eq!(
            f.get_i32_array("tokenizer.ggml.token_type").unwrap(),
            [3, 1, 1]
        );
        let nested = MetaValue::Array(vec![
            MetaValue::Array(vec![MetaValue::I32(1), MetaValue::I32(2)]),
            MetaValue::Array(vec![MetaValue::I32(3)]),
        ]);
        assert_eq!(f.metadata("test.nested"), Some(&nested));

        let t = f.tensor("f32.weight").unwrap();
        assert_eq!(
            (t.shape, t.data),
            (vec![2, 3], vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
        );
        let t = f.tensor("f32.3d").unwrap();
        assert_eq!(t.shape, vec![2, 3, 4]);
        assert_eq!(t.data, (0..24).map(|i| i as f32 - 12.0).collect::<Vec<_>>());
        let t = f.tensor("f16.bias").unwrap();
        assert_eq!((t.shape, t.data), (vec![4], vec![0.5, -1.0, 2.0, 65504.0]));
        let t = f.tensor("q8_0.weight").unwrap();
        assert_eq!(t.shape, vec![2, 128]);
        assert_bits_eq("q8_0.weight", &t.data, &le_f32(fixture!("q8_0").1));
        let t = f.tensor("q4_k.weight").unwrap();
        assert_eq!(t.shape, vec![2, 512]);
        assert_bits_eq("q4_k.weight", &t.data, &le_f32(fixture!("q4_k").1));
    }

    #[test]
    fn reads_every_metadata_type() {
        let f = GgufFile::from_bytes(sample_file()).unwrap();
        assert_eq!(f.metadata("u8"), Some(&MetaValue::U8(7)));
        assert_eq!(f.metadata("i8"), Some(&MetaValue::I8(-5)));
        assert_eq!(f.metadata("u16"), Some(&MetaValue::U16(0x0201)));
        assert_eq!(f.metadata("i16"), Some(&MetaValue::I16(-1)));
        assert_eq!(f.metadata("i32"), Some(&MetaValue::I32(-3)));
        assert_eq!(f.metadata("f32"), Some(&MetaValue::F32(1.5)));
        assert_eq!(f.metadata("bool"), Some(&MetaValue::Bool(true)));
        assert_eq!(f.metadata("u64"), Some(&MetaValue::U64(1 << 40)));
        assert_eq!(f.metadata("i64"), Some(&MetaValue::I64(-1)));
        assert_eq!(f.metadata("f64"), Some(&MetaValue::F64(0.25)));
        assert_eq!(f.get_str_array("tokens").unwrap(), ["<s>", "hi", ""]);
        assert_eq!(f.get_u32("u8").unwrap(), 7);
        assert_eq!(f.get_u32("u16").unwrap(), 0x0201);
        assert_eq!(f.metadata_keys().len(), 14);
        assert_eq!(f.tensor_shape("q8_0").unwrap(), vec![4, 64]);
        assert!(f.contains("q4_k") && !f.contains("q4_k.weight"));
        let t = f.tensor("f32").unwrap();
        assert_eq!(
            (t.shape, t.data),
            (vec![2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
        );
        assert_eq!(
            f.tensor("q4_k").unwrap().data,
            le_f32(fixture!("q4_k").1)[..256]
        );
    }

    #[test]
    fn getters_explain_missing_and_mistyped_keys() {
        let f = GgufFile::from_bytes(sample_file()).unwrap();
        assert_eq!(
            config_err(f.get_u32("llama.nope")),
            "GGUF metadata key `llama.nope` is missing"
        );
        assert_eq!(
            config_err(f.get_f32("general.architecture")),
            "GGUF metadata key `general.architecture` has type string, expected f32"
        );
        assert_eq!(
            config_err(f.get_str("u8")),
            "GGUF metadata key `u8` has type u8, expected string"
        );
        assert!(config_err(f.get_u32("i8")).contains("-5, which does not fit in u32"));
        assert!(config_err(f.get_u32("u64")).contains("does not fit"));
        assert!(config_err(f.get_u32("f32")).contains("has type f32, expected an integer"));
        assert!(config_err(f.get_str_array("u8")).contains("has type u8, expected array of string"));
        assert!(config_err(f.get_i32_array("tokens")).contains("element 0 is string"));
        assert!(config_err(f.get_str_array("nested"))
            .contains("element 0 is array of i32, expected string"));
        let wide = Builder::new().kv(
            "ids",
            9,
            &array_bytes(11, 2, &[[0; 8], (-3_000_000_000i64).to_le_bytes()].concat()),
        );
        let f = GgufFile::from_bytes(wide.build()).unwrap();
        assert_eq!(
            config_err(f.get_i32_array("ids")),
            "GGUF metadata key `ids` element 1 is i64 -3000000000, expected i32"
        );
    }

    #[test]
    fn missing_tensor_is_a_tensor_error_naming_it() {
        let f = GgufFile::from_bytes(sample_file()).unwrap();
        for r in [
            f.tensor("output.weight").map(|_| ()),
            f.tensor_type("output.weight").map(|_| ()),
        ] {
            match r {
                Err(Error::Tensor { name, problem }) => {
                    assert_eq!(name, "output.weight");
                    assert!(
                        problem.contains("3 tensors") && problem.contains("`f32`"),
                        "{problem}"
                    );
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn every_truncation_is_an_error() {
        for bytes in [sample_file(), TINY.to_vec()] {
            for cut in 0..bytes.len() {
                weights_err(GgufFile::from_bytes(bytes[..cut].to_vec()));
            }
        }
    }

    #[test]
    fn truncation_messages_say_where() {
        let bytes = sample_file();
        let m = weights_err(GgufFile::from_bytes(bytes[..bytes.len() - 10].to_vec()));
        assert!(
            m.contains("truncated")
                && m.contains("`q4_k`")
                && m.contains(&format!("has {}", bytes.len() - 10)),
            "{m}"
        );
        let m = weights_err(GgufFile::from_bytes(bytes[..30].to_vec()));
        assert!(
            m.contains("truncated or corrupt") && m.contains("declares 14 metadata entries"),
            "{m}"
        );
        let small = Builder::new().kv_str("general.name", "hello world").build();
        let m = weights_err(GgufFile::from_bytes(small[..64].to_vec()));
        assert!(m.contains("truncated: metadata value of `general.name` needs bytes 56..67 but the file has 64"), "{m}");
    }

    #[test]
    fn bad_magic_and_versions() {
        assert!(weights_err(GgufFile::from_bytes(vec![])).contains("not a GGUF file"));
        let mut bytes = sample_file();
        bytes[..4].copy_from_slice(b"GGUX");
        let m = weights_err(GgufFile::from_bytes(bytes));
        assert!(m.contains("not a GGUF file") && m.contains("GGUX"), "{m}");
        let mut st = 2u64.to_le_bytes().to_vec();
        st.extend(b"{}");
        assert!(weights_err(GgufFile::from_bytes(st)).contains("safetensors"));

        let with_version = |v: u32| {
            let mut b = Builder::new();
            b.version = v;
            GgufFile::from_bytes(b.build())
        };
        assert!(with_version(2).is_ok());
        assert!(weights_err(with_version(1)).contains("version 1"));
        assert!(weights_err(with_version(3u32.swap_bytes())).contains("big-endian"));
        assert!(weights_err(with_version(9)).contains("version 9"));
    }

    #[test]
    fn unknown_tensor_type_fails_only_when_read() {
        let file = Builder::new()
            .kv_u32("a", 1)
            .tensor_info("blk.0.ffn_up.weight", &[32], 99, 0)
            .build();
        let f = GgufFile::from_bytes(file).unwrap();
        for m in [
            weights_err(f.tensor_type("blk.0.ffn_up.weight")),
            weights_err(f.tensor("blk.0.ffn_up.weight")),
        ] {
            assert!(
                m.contains("`blk.0.ffn_up.weight`")
                    && m.contains("type id 99")
                    && m.contains("Q4_K"),
                "{m}"
            );
        }
    }

    #[test]
    fn known_but_unsupported_type_is_named() {
        let f = GgufFile::from_bytes(
            Builder::new()
                .tensor("w", &[256], GgmlType::IQ2_XXS, &[0; 66])
                .build(),
        )
        .unwrap();
        assert_eq!(f.tensor_type("w").unwrap(), GgmlType::IQ2_XXS);
        let m = weights_err(f.tensor("w"));
        assert!(
            m.contains("`w`") && m.contains("IQ2_XXS") && m.contains("Q8_0"),
            "{m}"
        );
    }

    #[test]
    fn bad_tensor_infos() {
        let m = weights_err(GgufFile::from_bytes(
            Builder::new().tensor_info("w", &[1; 5], 0, 0).build(),
        ));
        assert!(m.contains("`w`") && m.contains("5 dimensions"), "{m}");
        let m = weights_err(GgufFile::from_bytes(
            Builder::new()
                .tensor_info("w", &[1 << 40, 1 << 40], 0, 0)
                .build(),
        ));
        assert!(m.contains("overflows"), "{m}");
        let m = weights_err(GgufFile::from_bytes(
            Builder::new().tensor_info("w", &[u64::MAX], 0, 0).build(),
        ));
        assert!(m.contains("negative"), "{m}");
        let m = weights_err(GgufFile::from_bytes(
            Builder::new().tensor_info("w", &[100], 0, 0).build(),
        ));
        assert!(
            m.contains("truncated") && m.contains("`w`") && m.contains("needs bytes 64..464"),
            "{m}"
        );
        let m = weights_err(GgufFile::from_bytes(
            Builder::new()
                .tensor_info("w", &[1], 0, u64::MAX - 3)
                .build(),
        ));
        assert!(m.contains("alignment"), "{m}");
        let m = weights_err(GgufFile::from_bytes(
            Builder::new()
                .tensor_info("w", &[1], 0, u64::MAX - 31)
                .build(),
        ));
        assert!(m.contains("truncated"), "{m}");
        let m = weights_err(GgufFile::from_bytes(
            Builder::new()
                .tensor("a", &[1], GgmlType::F32, &[0; 4])
                .tensor_info("w", &[1], 0, 4)
                .build(),
        ));
        assert!(m.contains("`w`") && m.contains("alignment 32"), "{m}");
        let m = weights_err(GgufFile::from_bytes(
            Builder::new()
                .tensor("w", &[16, 2], GgmlType::Q8_0, &[0; 34])
                .build(),
        ));
        assert!(m.contains("`w`") && m.contains("Q8_0 block size 32"), "{m}");
        let dup = Builder::new()
            .tensor("w", &[1], GgmlType::F32, &[0; 4])
            .tensor("w", &[1], GgmlType::F32, &[0; 4]);
        assert!(weights_err(GgufFile::from_bytes(dup.build())).contains("appears twice"));
    }

    #[test]
    fn absurd_counts_are_rejected_before_allocating() {
        let mut b = Builder::new().kv_u32("a", 1);
        b.n_kv = u64::MAX;
        assert!(weights_err(GgufFile::from_bytes(b.build())).contains("declares"));
        let mut b = Builder::new();
        b.n_tensors = u64::MAX / 2;
        assert!(weights_err(GgufFile::from_bytes(b.build())).contains("declares"));
        let mut key = (u64::MAX).to_le_bytes().to_vec();
        key.extend([0; 16]);
        let mut b = Builder::new();
        b.kv = key;
        b.n_kv = 1;
        let m = weights_err(GgufFile::from_bytes(b.build()));
        assert!(
            m.contains("metadata entry #0") && m.contains("more than the whole file"),
            "{m}"
        );
        let huge_array = array_bytes(0, u64::MAX, &[]);
        assert!(weights_err(GgufFile::from_bytes(
            Builder::new().kv("a", 9, &huge_array).build()
        ))
        .contains("declares"));
        let huge_strings = array_bytes(8, 1 << 50, &[0; 64]);
        assert!(weights_err(GgufFile::from_bytes(
            Builder::new().kv("a", 9, &huge_strings).build()
        ))
        .contains("declares"));
    }

    #[test]
    fn bad_metadata() {
        let m = weights_err(GgufFile::from_bytes(
            Builder::new().kv("general.x", 13, &[0; 8]).build(),
        ));
        assert!(
            m.contains("unknown metadata value type 13") && m.contains("general.x"),
            "{m}"
        );
        let m = weights_err(GgufFile::from_bytes(
            Builder::new()
                .kv("a", 9, &array_bytes(42, 1, &[0; 8]))
                .build(),
        ));
        assert!(m.contains("unknown array element type 42"), "{m}");
        let mut deep = array_bytes(0, 0, &[]);
        for _ in 0..20 {
            deep = array_bytes(9, 1, &deep);
        }
        assert!(weights_err(GgufFile::from_bytes(
            Builder::new().kv("a", 9, &deep).build()
        ))
        .contains("nested"));
        let dup = Builder::new().kv_u32("a", 1).kv_u32("a", 2);
        assert!(weights_err(GgufFile::from_bytes(dup.build())).contains("`a` appears twice"));
        let bad_utf8 = Builder::new().kv("s", 8, &[2, 0, 0, 0, 0, 0, 0, 0, 0xff, b'x']);
        assert_eq!(
            GgufFile::from_bytes(bad_utf8.build())
                .unwrap()
                .get_str("s")
                .unwrap(),
            "\u{fffd}x"
        );
    }

    #[test]
    fn alignment_is_respected_and_validated() {
        let f = GgufFile::from_bytes(
            Builder::new()
                .align(128)
                .tensor("a", &[1], GgmlType::F32, &f32_bytes(&[1.0]))
                .tensor("b", &[2], GgmlType::F32, &f32_bytes(&[2.0, 3.0]))
                .build(),
        )
        .unwrap();
        assert_eq!(f.alignment(), 128);
        assert_eq!(f.tensor("b").unwrap().data, vec![2.0, 3.0]);
        for bad in [0, 3, 48] {
            let m = weights_err(GgufFile::from_bytes(
                Builder::new().kv_u32(ALIGNMENT_KEY, bad).build(),
            ));
            assert!(m.contains("power of two"), "{m}");
        }
        let m = weights_err(GgufFile::from_bytes(
            Builder::new().kv_str(ALIGNMENT_KEY, "32").build(),
        ));
        assert!(m.contains("power of two"), "{m}");
    }

    #[test]
    fn empty_and_scalar_tensors() {
        let f = GgufFile::from_bytes(
            Builder::new()
                .tensor("empty", &[0, 3], GgmlType::Q8_0, &[])
                .tensor("scalar", &[], GgmlType::F32, &f32_bytes(&[7.0]))
                .build(),
        )
        .unwrap();
        let t = f.tensor("empty").unwrap();
        assert_eq!((t.shape, t.data.len()), (vec![3, 0], 0));
        let t = f.tensor("scalar").unwrap();
        assert_eq!((t.shape, t.data), (vec![], vec![7.0]));
    }

    #[test]
    fn type_table_is_consistent() {
        for &ty in GgmlType::ALL {
            assert_eq!(GgmlType::from_id(ty.id()), Some(ty));
            assert!(ty.block_size() > 0 && ty.type_size() > 0);
        }
        assert_eq!(GgmlType::from_id(4), None);
        assert_eq!(
            GgmlType::supported_list(),
            "F32, F16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, BF16"
        );
    }

    /// Random byte corruption must only ever produce errors, never panics.
    #[test]
    fn corrupted_bytes_never_panic() {
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for base in [sample_file(), TINY.to_vec()] {
            for _ in 0..3000 {
                let mut bytes = base.clone();
                for _ in 0..1 + next() % 4 {
                    let i = (next() % bytes.len() as u64) as usize;
                    bytes[i] = next() as u8;
                }
                if let Ok(f) = GgufFile::from_bytes(bytes) {
                    for name in f.tensor_names() {
                        let _ = f.tensor(&name);
                    }
                    for key in f.metadata_keys() {
                        let _ = (
                            f.get_u32(&key),
                            f.get_f32(&key),
                            f.get_str_array(&key),
                            f.get_i32_array(&key),
                        );
                    }
                }
            }
        }
    }
}
